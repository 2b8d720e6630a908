"""Training and curvature of the gradient-flow figures (Figs. 3-7, 9): full-batch gradient descent on every run of a
figure at once, and the Hessian of the squared loss at the minimum. Shapes as in models.py; why the trainer is built
as it is: docs/performance.md.
"""
import contextlib
import math
import sys

import numpy as np
import torch

from models import conserved_Q, get_activation, identity, radial_Q

# ----------------------------------------------------------------------------------------------
# Training: full-batch gradient descent on the MSE loss, many runs at once

TRAINED_ON = "torch.nn.MSELoss (mean over m*n entries), full-batch GD"
RECORD_CHUNK_ELEMENTS = 2 ** 16  # records are kept as weights and evaluated in batches of this size (cache-sized)


def record_schedule(total_steps, dense_until=10_000, relative_resolution=1e-3):
    """Steps (counts of applied updates) at which loss and Q are recorded, a sorted int64 numpy array that holds 0
    and total_steps: every step up to `dense_until`, then at most `relative_resolution` times the step apart,
    rounded down to a power of ten (why: docs/conserved_quantities.md, "How Q is recorded")."""
    steps = [np.arange(0, min(dense_until, total_steps) + 1)]
    start = dense_until
    while start < total_steps:
        stop = min(start * 10, total_steps)
        spacing = max(1, 10 ** int(math.floor(math.log10(start * relative_resolution))))
        steps.append(np.arange(start, stop + 1, spacing))
        start = stop
    steps.append(np.array([total_steps]))
    return np.unique(np.concatenate(steps)).astype(np.int64)


def gradient_descent(U, V, Y, lr, steps, model="elementwise", activation="linear",
                     record_steps=None, loss_kind="frobenius", progress=None, stop_below=None, run_ids=None):
    """Full-batch GD on torch.nn.MSELoss (the mean over the m*n entries of (Y - output)^2, as in the paper's code) for
    R runs at once, with closed-form gradients (no autograd graph; tests check them against autograd).

    U: [R, m, k], V: [R, n, k] initial weights (not modified); Y: [m, n]; lr: float or [R]; steps: GD updates.
    model: "elementwise" (U sigma(V^T), sigma from `activation`, a name in ACTIVATIONS or an Activation) or "radial".
    record_steps: sorted update counts at which to record (default: record_schedule); progress: None or a tqdm-like bar.
    loss_kind: what "loss" records: "frobenius" |Y - out|_F, "squared" |Y - out|_F^2, "mse_over_normY" MSE / |Y|_F.
    stop_below: stop once every run has recorded a loss below this (or diverged), for step counts to a loss; once at
        most COMPACT_WHEN of the batch is still training, the rest continue alone (compact_and_continue). A run that
        stopped keeps the weights it had then, and NaN records.
    run_ids: the runs' numbers in warnings (default 0..R-1).

    Returns a dict of numpy arrays: steps [T]; loss, Q [R, T] after steps[t] updates (the loss in the training dtype
    from the forward pass's residual, the paper code's Q in float64 from the weights); final U [R, m, k], V [R, n, k];
    diverged_at [R], the first recorded step whose loss is not finite (-1 if none; the run is stopped, its later
    records NaN); trained_steps, the updates applied.
    """
    if model not in ("elementwise", "radial"):
        raise ValueError(f"unknown model {model!r}")
    act = get_activation(activation) if model == "elementwise" else None
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    record_steps = record_schedule(steps) if record_steps is None else np.asarray(record_steps, np.int64)
    if record_steps.size == 0 or record_steps[0] < 0 or record_steps[-1] > steps or np.any(np.diff(record_steps) <= 0):
        raise ValueError("record_steps must be increasing and within [0, steps]")
    if loss_kind not in ("frobenius", "squared", "mse_over_normY"):
        raise ValueError(f"unknown loss_kind {loss_kind!r}")

    runs, m, n = U.shape[0], Y.shape[0], Y.shape[1]
    run_ids = np.arange(runs) if run_ids is None else np.asarray(run_ids)
    initial_lr = lr
    dtype, device = U.dtype, U.device
    # E = output - Y, U and V are blocks of one buffer (64-byte aligned like separate tensors), so a record is one copy.
    shapes = [(runs, m, n), tuple(U.shape), tuple(V.shape)]
    sizes = [math.prod(shape) for shape in shapes]
    starts = np.cumsum([0] + [-(-size // 16) * 16 for size in sizes])
    state = torch.empty(int(starts[-1]), dtype=dtype, device=device)
    blocks = [state[start:start + size].view(shape) for start, size, shape in zip(starts, sizes, shapes)]
    E, U, V = blocks[0], blocks[1].copy_(U.detach()), blocks[2].copy_(V.detach())
    negY = (-Y).to(device=device, dtype=dtype).expand(runs, m, n).contiguous()
    lr = torch.as_tensor(lr, dtype=dtype, device=device).reshape(-1).expand(runs)  # one for all runs or one per run
    # d MSE / d output = 2 (out - Y) / (m n); folding lr in gives each run's update scale.
    step_scale = (lr * (2.0 / (m * n))).reshape(runs, 1, 1)
    norm_Y = float(torch.linalg.norm(Y.double()))

    # Every buffer preallocated, every transposed view made once: a step costs microseconds of dispatch per op.
    shared_lr = bool((lr == lr[0]).all())
    scale = float(step_scale.flatten()[0]) if shared_lr else 1.0
    G = E if shared_lr else torch.empty_like(E)                    # lr-scaled dL/d output
    A = V if act is not None and act.sigma is identity else torch.empty_like(V)  # hidden activations
    grad_A, grad_U = torch.empty_like(V), torch.empty_like(U)
    A_t, G_t = A.transpose(1, 2), G.transpose(1, 2)
    if act is None:
        work = torch.empty_like(V)
        sq_norm = torch.empty(runs, 1, V.shape[2], dtype=dtype, device=device)  # |column of V|^2
        dot = torch.empty_like(sq_norm)

    def forward():
        """E = output - Y and A for the current U, V."""
        if act is None:
            torch.sum(torch.mul(V, V, out=work), dim=1, keepdim=True, out=sq_norm)
            torch.div(V, sq_norm, out=A)
        elif A is not V:
            if act.sigma_takes_out:
                act.sigma(V, out=A)
            else:
                A.copy_(act.sigma(V))
        torch.baddbmm(negY, U, A_t, out=E)

    def update():
        """One GD step from the E and A left by forward()."""
        if not shared_lr:
            torch.mul(E, step_scale, out=G)
        torch.bmm(G_t, U, out=grad_A)               # lr dL/dA; uses U before its update
        # A plain product, then one subtraction: correctly rounded for every shape (the fused
        # U.baddbmm_(G, A) is not when m = 1, and biased: Q then drifts faster in float32).
        torch.bmm(G, A, out=grad_U)
        U.sub_(grad_U, alpha=scale)
        if act is not None:
            V.sub_(act.backward(grad_A, A, V), alpha=scale)
        else:
            # d(z/|z|^2)/dz = (I - 2 z z^T / |z|^2) / |z|^2 for each hidden column z of V,
            # so dL/dz = g / |z|^2 - 2 (g . A) A with A = z / |z|^2.
            torch.sum(torch.mul(grad_A, A, out=work), dim=1, keepdim=True, out=dot)
            grad_A.div_(sq_norm).addcmul_(dot, A, value=-2.0)
            V.sub_(grad_A, alpha=scale)

    # A record is one copy of the state (E, U, V) into a preallocated slot (no host sync); loss and Q come in chunks.
    n_rec = len(record_steps)
    chunk = max(1, min(n_rec, RECORD_CHUNK_ELEMENTS // state.numel()))
    saved = torch.empty(chunk, state.numel(), dtype=dtype, device=device)
    slots = saved.unbind(0)
    saved_E, saved_U, saved_V = [saved[:, start:start + size].unflatten(1, shape)
                                 for start, size, shape in zip(starts, sizes, shapes)]
    U64, V64 = saved_U.double(), saved_V.double()  # where Q is computed, float64 for every dtype
    loss_np, q_np = np.full((runs, n_rec), np.nan), np.full((runs, n_rec), np.nan)
    diverged_at = np.full(runs, -1, dtype=np.int64)
    reached = np.zeros(runs, dtype=bool)  # a loss below stop_below was recorded

    def evaluate(first, count):
        """Loss and Q of records first .. first+count-1 from the slots; marks diverged runs."""
        sq = saved_E[:count].square().sum(dim=(2, 3))  # [count, R]
        loss = {"frobenius": sq.sqrt(), "squared": sq, "mse_over_normY": sq / (m * n) / norm_Y}[loss_kind]
        U_, V_ = U64[:count].copy_(saved_U[:count]), V64[:count].copy_(saved_V[:count])
        Q = radial_Q(U_, V_) if act is None else conserved_Q(U_, V_, act)
        loss_np[:, first:first + count] = loss.T.double().cpu().numpy()
        q_np[:, first:first + count] = Q.T.cpu().numpy()
        for r in np.flatnonzero(~np.isfinite(loss_np[:, first:first + count]).all(axis=1) & (diverged_at < 0)):
            diverged_at[r] = record_steps[np.flatnonzero(~np.isfinite(loss_np[r]))[0]]
            print(f"warning: run {run_ids[r]} diverged (loss not finite) at step {diverged_at[r]}; "
                  "it is stopped and marked in the plot", file=sys.stderr)

    forward()  # from here on E and A always belong to the current weights
    done, slot, compact = 0, 0, False  # updates applied so far; next free record slot; continue the rest alone
    for rec, target in enumerate(record_steps.tolist()):
        for _ in range(target - done):
            update()
            forward()  # also the forward pass of the next update
        if progress is not None:
            progress.update(target - done)
        done = target
        slots[slot].copy_(state)
        slot += 1
        if slot == chunk or rec + 1 == n_rec:
            evaluate(rec + 1 - slot, slot)
            if stop_below is not None:
                reached |= (loss_np[:, rec + 1 - slot:rec + 1] < stop_below).any(axis=1)
            slot = 0
            active = (diverged_at < 0) & ~reached
            if not active.any():
                break
            if stop_below is not None and active.sum() <= COMPACT_WHEN * runs and rec + 1 < n_rec:
                compact = True
                break

    result = {"steps": record_steps, "loss": loss_np, "Q": q_np, "U": U.cpu().double().numpy(),
              "V": V.cpu().double().numpy(), "diverged_at": diverged_at, "trained_steps": done}
    if compact:
        compact_and_continue(result, active, U, V, Y, initial_lr, steps, progress, run_ids,
                             dict(model=model, activation=activation, loss_kind=loss_kind, stop_below=stop_below))
    stopped = (result["diverged_at"][:, None] >= 0) & (record_steps >= result["diverged_at"][:, None])  # [R, T]
    loss_np[stopped], q_np[stopped] = np.nan, np.nan
    return result


COMPACT_WHEN = 0.75  # continue the runs still training as a smaller batch once at most this fraction is left: a step
                    # costs about in proportion to the batch, and each compaction shrinks it by a quarter at least


def compact_and_continue(result, active, U, V, Y, lr, steps, progress, run_ids, kwargs):
    """Continue gradient_descent for its still active runs (bool [R]) alone, from their current weights in the batch
    U [R, m, k], V [R, n, k], over the steps and records left after result["trained_steps"]; complete its `result`
    with their records and final weights (the runs that stopped keep theirs, and NaN records after their stop)."""
    done, indices = result["trained_steps"], np.flatnonzero(active)
    lr = torch.as_tensor(lr, dtype=torch.float64).cpu().reshape(-1)
    lr = lr if lr.numel() == 1 else lr[torch.from_numpy(indices)]
    index = torch.from_numpy(indices).to(U.device)
    record_steps = result["steps"][result["steps"] > done] - done
    rest = gradient_descent(U.index_select(0, index), V.index_select(0, index), Y, lr, steps - done,
                            record_steps=record_steps, progress=progress, run_ids=run_ids[indices], **kwargs)
    first = len(result["steps"]) - len(record_steps)  # the continued batch's first record
    result["loss"][active, first:], result["Q"][active, first:] = rest["loss"], rest["Q"]
    result["U"][active], result["V"][active] = rest["U"], rest["V"]
    result["diverged_at"][active] = np.where(rest["diverged_at"] >= 0, rest["diverged_at"] + done, -1)
    result["trained_steps"] = done + rest["trained_steps"]


def gradient_descent_seeds(U, V, Y, lr, steps, progress=None, description="", *, rest_stop_below=None, **kwargs):
    """gradient_descent for the runs of several seeds: U [S, R, m, k], V [S, R, n, k] (seed 0 first); lr: one, or one
    per run of a seed [R]. Seed 0 trains in a batch of its own, so that it is bit for bit the single-seed run
    (docs/outputs.md, "Seeds"); seeds 1.. are one more batch, with stop_below=rest_stop_below. kwargs go to
    gradient_descent. Returns its dict with a leading seed axis on every per-run array ([S, R, T], [S, R, m, k],
    [S, R]); loss and Q records of a stopped batch are NaN after its stop. progress: None or a figure script's
    progress(total, description); one bar counts both batches' steps."""
    seeds, runs = U.shape[:2]
    lr = torch.as_tensor(lr, dtype=torch.float64).reshape(-1)  # one for all runs, or one per run of a seed
    with (progress(steps * (1 + (seeds > 1)), description) if progress else contextlib.nullcontext()) as bar:
        results = [gradient_descent(U[0], V[0], Y, lr, steps, progress=bar, **kwargs)]
        if seeds > 1:
            rest_lr = lr if lr.numel() == 1 else lr.repeat(seeds - 1)
            results.append(gradient_descent(U[1:].flatten(0, 1), V[1:].flatten(0, 1), Y, rest_lr, steps,
                                            progress=bar, stop_below=rest_stop_below, **kwargs))
            if bar is not None:
                bar.update(steps - results[-1]["trained_steps"])  # a stopped batch: fill the bar
    per_run = {key: np.concatenate([r[key] for r in results]).reshape(seeds, runs, *results[0][key].shape[1:])
               for key in ("loss", "Q", "U", "V", "diverged_at")}
    return {"steps": results[0]["steps"], "trained_steps": [r["trained_steps"] for r in results], **per_run}


def first_step_below(steps, loss, threshold):
    """First recorded step at which loss < threshold, per run; -1 where never.  loss: [R, T] -> [R]."""
    below = np.asarray(loss) < threshold
    return np.where(below.any(axis=-1), np.asarray(steps)[below.argmax(axis=-1)], -1)


# ----------------------------------------------------------------------------------------------
# Hessian of the squared loss |Y - U sigma(V^T)|_F^2 over the flattened (U, V)

def squared_loss_hessian(U, V, Y, activation):
    """Hessian in float64 of |Y - U sigma(V^T)|^2 w.r.t. concat(U.flatten(), V.flatten()), symmetric.
    U: [m, k], V: [n, k], Y: [m, n] -> [(m+n)k, (m+n)k]. Reverse-over-reverse with torch.func, all rows at once
    (at these sizes faster than forward-over-reverse, and the same numbers as one double-backward per row)."""
    m, k = U.shape
    act = get_activation(activation)
    Y = torch.as_tensor(Y, dtype=torch.float64)

    def loss(flat):
        U_, V_ = flat[: m * k].reshape(m, k), flat[m * k:].reshape(-1, k)
        return (Y - U_ @ act.sigma(V_).T).square().sum()

    flat = torch.cat([torch.as_tensor(U, dtype=torch.float64).flatten(),
                      torch.as_tensor(V, dtype=torch.float64).flatten()])
    H = torch.func.jacrev(torch.func.jacrev(loss))(flat)
    return 0.5 * (H + H.T)


def gauss_newton_eigenvalues(U, V, activation):
    """Eigenvalues (ascending) of 2 J J^T, J = d output / d (U, V) the m n x (m+n) k Jacobian, in float64.
    U: [..., m, k], V: [..., n, k] -> [..., m n]. The Hessian of |Y - U sigma(V^T)|^2 is 2 J^T J plus a term
    proportional to the residual, so at a zero-loss minimum its nonzero eigenvalues are these (at a trained minimum,
    squared loss ~1e-10, to about 1e-7 relative); an m n x m n problem, cheap enough for many points."""
    act = get_activation(activation)
    U, V = torch.as_tensor(U, dtype=torch.float64), torch.as_tensor(V, dtype=torch.float64)
    batch, (m, k) = U.shape[:-2], U.shape[-2:]

    def output(flat):
        return (flat[: m * k].reshape(m, k) @ act.sigma(flat[m * k:].reshape(-1, k)).T).flatten()

    flat = torch.cat([U.reshape(-1, m * k), V.reshape(-1, V.shape[-2] * k)], dim=1)
    J = torch.func.vmap(torch.func.jacrev(output))(flat)  # [B, m n, (m+n) k]
    return torch.linalg.eigvalsh(2 * J @ J.transpose(1, 2)).reshape(*batch, -1)
