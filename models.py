"""Shared code of the gradient-flow figure scripts (Figs. 3-7, 9).

Two-layer networks on whitened input (X = I_n), in the paper repository's convention:
U is m x k (second layer), V is n x k (first layer; the paper's V transposed), and the
network output is U sigma(V^T), an m x n matrix. Every function below also takes a leading
batch dimension R ("runs"), so one call trains every learning rate or init scale of a figure.

Contents, top to bottom:
  data and initialisation   paper_target, paper_normal
  elementwise model         elementwise_output, conserved_Q, q_normaliser
  radial model              radial_output, radial_Q
  training                  record_schedule, gradient_descent
  Hessian                   squared_loss_hessian
  command line and files    figure_parser, setup_run, save_figure, load_figure_data
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")
PAPER_SEED = 12345


# ----------------------------------------------------------------------------------------------
# Data and initialisation (the exact random draws of the paper's code)

def paper_normal(rows, cols, std, mean=0.0, seed=PAPER_SEED):
    """A rows x cols float32 CPU tensor drawn exactly as the paper's code draws it.

    The paper seeds, calls torch.rand (which advances the generator), then overwrites the
    values with normal_(mean, std). Repeating that order reproduces its numbers bit for bit.
    """
    torch.manual_seed(seed)
    # float32 on the CPU generator, as in the paper, whatever torch's default dtype is
    return torch.rand(rows, cols, dtype=torch.float32).normal_(mean=mean, std=std)


def paper_target(m, n, seed=PAPER_SEED):
    """The regression target Y, m x n, standard normal (paper: seed 12345)."""
    return paper_normal(m, n, std=1.0, seed=seed)


# ----------------------------------------------------------------------------------------------
# Elementwise two-layer model: output U sigma(V^T), conserved quantity Q

def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    return activation


def activate(activation, x):
    """sigma(x) elementwise for one of ACTIVATIONS."""
    check_activation(activation)
    if activation == "linear":
        return x
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation](x)


def elementwise_output(U, V, activation):
    """Network output U sigma(V^T).  U: [..., m, k], V: [..., n, k] -> [..., m, n]."""
    return U @ activate(activation, V).transpose(-1, -2)


def _q_terms(U, V, activation):
    """The two halves of Q (paper-code scaling): returns (u_term, v_term), each of shape [...].

    Q = u_term - v_term. Relative to the paper's docstring formula
    Q_doc = 1/2 Tr[U^T U] - sum_{j,a} int^{V_ja} sigma(x)/sigma'(x) dx, the code (and so the
    legends of Figs. 3, 6, 9) uses 2 Q_doc for linear/relu, 2 Q_doc + const for tanh
    (F = cosh^2) and Q_doc for sigmoid (F = x + e^x). All of them are conserved.
    """
    check_activation(activation)
    uu = U.square().sum(dim=(-1, -2))
    if activation == "linear":
        return uu, V.square().sum(dim=(-1, -2))
    if activation == "relu":
        return uu, torch.relu(V).square().sum(dim=(-1, -2))
    if activation == "tanh":
        return uu, torch.cosh(V).square().sum(dim=(-1, -2))
    return 0.5 * uu, (V + torch.exp(V)).sum(dim=(-1, -2))  # sigmoid


def conserved_Q(U, V, activation):
    """Conserved quantity of gradient flow for the elementwise net.  U: [..., m, k], V: [..., n, k] -> [...]."""
    u_term, v_term = _q_terms(U, V, activation)
    return u_term - v_term


def q_normaliser(U, V, activation):
    """The 'sum' analogue of Q (u_term + v_term) that Fig. 3 divides by.  -> [...]."""
    u_term, v_term = _q_terms(U, V, activation)
    return u_term + v_term


# ----------------------------------------------------------------------------------------------
# Radial model (Fig. 7): each hidden neuron's row of V^T is mapped z -> z / |z|^2

def radial_output(U, V):
    """U (V^T / rowwise |V^T|^2).  U: [..., m, k], V: [..., n, k] -> [..., m, n]."""
    Vt = V.transpose(-1, -2)
    return U @ (Vt / Vt.square().sum(dim=-1, keepdim=True))


def radial_Q(U, V):
    """Conserved quantity of the radial net, |U|^2 + |V|^2 (the per-neuron scaling symmetry).  -> [...]."""
    return U.square().sum(dim=(-1, -2)) + V.square().sum(dim=(-1, -2))


# ----------------------------------------------------------------------------------------------
# Training: full-batch gradient descent on the MSE loss, many runs at once

def record_schedule(total_steps, dense_until=10_000, relative_resolution=1e-3):
    """Steps (counts of applied updates, 0..total_steps) at which loss and Q are recorded.

    Every step up to `dense_until`, then a spacing of at most `relative_resolution` times the
    step, rounded down to a power of ten: a crossing step read off the record is exact below
    `dense_until` and within 0.1 % above, and curves are indistinguishable from every step.
    Returns a sorted int64 numpy array that always holds 0 and total_steps.
    """
    steps = [np.arange(0, min(dense_until, total_steps) + 1)]
    start = dense_until
    while start < total_steps:
        stop = min(start * 10, total_steps)
        spacing = max(1, 10 ** int(math.floor(math.log10(start * relative_resolution))))
        steps.append(np.arange(start, stop + 1, spacing))
        start = stop
    steps.append(np.array([total_steps]))
    return np.unique(np.concatenate(steps)).astype(np.int64)


def _elementwise_backward(activation):
    """d loss / d V from d loss / d sigma(V), given A = sigma(V), as one fused op."""
    if activation == "linear":
        return lambda grad_A, A: grad_A
    if activation == "relu":
        return lambda grad_A, A: torch.ops.aten.threshold_backward(grad_A, A, 0)
    if activation == "tanh":
        return torch.ops.aten.tanh_backward
    return torch.ops.aten.sigmoid_backward


def gradient_descent(U, V, Y, lr, steps, model="elementwise", activation="linear",
                     record_steps=None, loss_kind="frobenius", progress=None):
    """Full-batch GD on the mean-squared error, for R runs at once, with hand-written gradients.

    The loss trained on is torch.nn.MSELoss: mean over the m*n entries of (Y - output)^2, as in
    the paper's code. Gradients are computed in closed form (no autograd graph) so a step is a
    handful of batched matrix products; tests check them against autograd.

    Args:
        U: [R, m, k] and V: [R, n, k] initial weights (not modified).
        Y: [m, n] target.
        lr: float or [R] learning rates.
        steps: number of GD updates.
        model: "elementwise" (U sigma(V^T)) or "radial" (U V^T / rowwise|V^T|^2).
        activation: one of ACTIVATIONS, for the elementwise model.
        record_steps: sorted int array of update counts at which to record; default record_schedule.
        loss_kind: what to record as "loss": "frobenius" |Y - out|_F, "squared" |Y - out|_F^2,
            "mse_over_normY" MSE / |Y|_F (the quantity Fig. 7 plots).
        progress: an optional tqdm-like object; its update(n) is called at every record.

    Returns a dict of numpy arrays: steps [T], loss [R, T], Q [R, T] (recorded before the update
    with that index is applied, i.e. after `steps[t]` updates), U [R, m, k], V [R, n, k] (final),
    diverged_at [R] (first recorded step whose loss is not finite, -1 if none). A run that
    diverges is stopped: its later records are NaN.
    """
    if model not in ("elementwise", "radial"):
        raise ValueError(f"unknown model {model!r}")
    if model == "elementwise":
        check_activation(activation)
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    record_steps = record_schedule(steps) if record_steps is None else np.asarray(record_steps, np.int64)
    if record_steps.size == 0 or record_steps[0] < 0 or record_steps[-1] > steps or np.any(np.diff(record_steps) <= 0):
        raise ValueError("record_steps must be increasing and within [0, steps]")

    U = U.detach().clone()
    V = V.detach().clone()
    runs, m, n = U.shape[0], Y.shape[0], Y.shape[1]
    dtype, device = U.dtype, U.device
    negY = (-Y).to(device=device, dtype=dtype).expand(runs, m, n).contiguous()
    lr = torch.as_tensor(lr, dtype=dtype, device=device).reshape(-1)
    lr = lr.expand(runs) if lr.numel() == 1 else lr
    # d MSE / d output = 2 (out - Y) / (m n); folding lr in gives each run's update scale.
    step_scale = (lr * (2.0 / (m * n))).reshape(runs, 1, 1)
    norm_Y = float(torch.linalg.norm(Y.double()))
    backward = _elementwise_backward(activation) if model == "elementwise" else None

    n_rec = len(record_steps)
    loss_rec = torch.full((runs, n_rec), float("nan"), dtype=dtype, device=device)
    q_rec = torch.full((runs, n_rec), float("nan"), dtype=dtype, device=device)
    diverged_at = np.full(runs, -1, dtype=np.int64)
    finite_check_every = max(1, n_rec // 200)  # host syncs are rare: about 200 per run

    # Every buffer is preallocated and every transposed view made once: at these sizes a step
    # costs a few microseconds of dispatch per op, so the loop does nothing but the ops.
    shared_lr = bool((lr == lr[0]).all())
    scale = float(step_scale.flatten()[0]) if shared_lr else 1.0
    E = torch.empty(runs, m, n, dtype=dtype, device=device)       # output - Y
    G = E if shared_lr else torch.empty_like(E)                    # lr-scaled dL/d output
    linear = model == "elementwise" and activation == "linear"
    A = V if linear else torch.empty_like(V)                       # hidden activations, [R, n, k]
    grad_A = torch.empty_like(V)
    A_t, G_t = A.transpose(1, 2), G.transpose(1, 2)
    if model == "elementwise":
        sigma = {"linear": None, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                 "relu": lambda x, out: torch.clamp_min(x, 0.0, out=out)}[activation]
    else:
        work = torch.empty_like(V)
        sq_norm = torch.empty(runs, 1, V.shape[2], dtype=dtype, device=device)  # |column of V|^2
        dot = torch.empty_like(sq_norm)

    def forward():
        """E = output - Y and A for the current U, V."""
        if model == "radial":
            torch.sum(torch.mul(V, V, out=work), dim=1, keepdim=True, out=sq_norm)
            torch.div(V, sq_norm, out=A)
        elif sigma is not None:
            sigma(V, out=A)
        torch.baddbmm(negY, U, A_t, out=E)

    def update():
        """One GD step from the E and A left by forward()."""
        if not shared_lr:
            torch.mul(E, step_scale, out=G)
        torch.bmm(G_t, U, out=grad_A)               # lr dL/dA; uses U before its update
        U.baddbmm_(G, A, alpha=-scale)               # U -= lr dL/dU = G A
        if model == "elementwise":
            V.sub_(backward(grad_A, A), alpha=scale)
        else:
            # d(z/|z|^2)/dz = (I - 2 z z^T / |z|^2) / |z|^2 for each hidden column z of V,
            # so dL/dz = g / |z|^2 - 2 (g . A) A with A = z / |z|^2.
            torch.sum(torch.mul(grad_A, A, out=work), dim=1, keepdim=True, out=dot)
            grad_A.div_(sq_norm).addcmul_(dot, A, value=-2.0)
            V.sub_(grad_A, alpha=scale)

    def record(rec):
        sq = E.square().sum(dim=(1, 2))
        if loss_kind == "frobenius":
            loss_rec[:, rec] = sq.sqrt()
        elif loss_kind == "squared":
            loss_rec[:, rec] = sq
        else:
            loss_rec[:, rec] = sq / (m * n) / norm_Y
        q_rec[:, rec] = conserved_Q(U, V, activation) if model == "elementwise" else radial_Q(U, V)

    done = 0  # updates applied so far
    for rec, target in enumerate(record_steps.tolist()):
        for _ in range(target - done):
            forward()
            update()
        if progress is not None:
            progress.update(target - done)
        done = target
        forward()
        record(rec)
        if (rec + 1) % finite_check_every == 0 or rec + 1 == n_rec:
            bad = ~torch.isfinite(loss_rec[:, rec]).cpu().numpy()
            for r in np.flatnonzero(bad & (diverged_at < 0)):
                finite_so_far = torch.isfinite(loss_rec[r, :rec + 1]).cpu().numpy()
                diverged_at[r] = record_steps[np.flatnonzero(~finite_so_far)[0]]
                print(f"warning: run {r} diverged (loss not finite) at step {diverged_at[r]}; "
                      "it is stopped and marked in the plot", file=sys.stderr)
            if np.all(diverged_at >= 0):
                break

    loss_np = loss_rec.cpu().double().numpy()
    q_np = q_rec.cpu().double().numpy()
    for r in np.flatnonzero(diverged_at >= 0):
        after = record_steps >= diverged_at[r]
        loss_np[r, after] = np.nan
        q_np[r, after] = np.nan
    return {"steps": record_steps, "loss": loss_np, "Q": q_np,
            "U": U.cpu().double().numpy(), "V": V.cpu().double().numpy(), "diverged_at": diverged_at}


def first_step_below(steps, loss, threshold):
    """First recorded step at which loss < threshold, per run; -1 where never.  loss: [R, T] -> [R]."""
    below = np.asarray(loss) < threshold
    return np.where(below.any(axis=-1), np.asarray(steps)[below.argmax(axis=-1)], -1)


# ----------------------------------------------------------------------------------------------
# Hessian of the squared loss |Y - U sigma(V^T)|_F^2 over the flattened (U, V)

def squared_loss_hessian(U, V, Y, activation):
    """Hessian in float64 of |Y - U sigma(V^T)|^2 w.r.t. concat(U.flatten(), V.flatten()).

    U: [m, k], V: [n, k], Y: [m, n] -> [(m+n)k, (m+n)k], symmetric.
    """
    m, k = U.shape
    Y = torch.as_tensor(Y, dtype=torch.float64)

    def loss(flat):
        U_, V_ = flat[: m * k].reshape(m, k), flat[m * k:].reshape(-1, k)
        return (Y - elementwise_output(U_, V_, activation)).square().sum()

    flat = torch.cat([torch.as_tensor(U, dtype=torch.float64).flatten(),
                      torch.as_tensor(V, dtype=torch.float64).flatten()])
    H = torch.autograd.functional.hessian(loss, flat)  # one double-backward per row: fastest at this size
    return 0.5 * (H + H.T)


# ----------------------------------------------------------------------------------------------
# Running several independent trainings at once (one worker process each)

def parallel_map(function, job_args, jobs):
    """[function(*args) for args in job_args], run in up to `jobs` worker processes.

    Each training is a long loop of tiny tensor ops that leaves a core mostly idle in
    dispatch, and threads contend for the GIL, so independent runs go to separate processes.
    `function` must be importable (defined at module top level). jobs <= 1 runs in-process.
    """
    job_args = list(job_args)
    if jobs <= 1 or len(job_args) <= 1:
        return [function(*args) for args in job_args]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # fork starts workers instantly (as torch's DataLoader does on Linux); the parent has run no
    # parallel op yet, so no thread pool is copied. Elsewhere, spawn.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(job_args)), mp_context=context,
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(function, *args) for args in job_args]
        return [future.result() for future in futures]


# ----------------------------------------------------------------------------------------------
# Command line, output files

class UsageError(Exception):
    """Bad input from the user: reported as one line, without a traceback."""


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def figure_parser(description, activations=None, steps_help="number of gradient-descent steps"):
    """The flags every figure script shares (same names and meanings everywhere).

    activations: the script's default activations, or None if it has no --activations flag.
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that run in seconds (smoke test); not the paper's numbers")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"{steps_help} for every run (default: the paper's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train: auto picks cuda when a GPU is available")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="floating-point precision of training (the paper: float32)")
    parser.add_argument("--out", default="figures", metavar="DIR",
                        help="output folder; figures go to sub-folders named as in the paper's repository")
    parser.add_argument("--plot-only", action="store_true",
                        help="re-plot from the saved .npz/.json data in DIR, without training")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                        help="worker processes for independent runs (CPU only; 1 = no workers)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if activations is not None:
        parser.add_argument("--activations", default=",".join(activations),
                            help=f"comma-separated subset of {','.join(activations)}")
    return parser


def parse_figure_args(parser, argv=None):
    """Parse and validate the shared flags. Returns args with .device (torch.device),
    .dtype (torch.dtype) and .activations (list) resolved; bad input exits with one line."""
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "activations"):
            names = [a.strip() for a in args.activations.split(",") if a.strip()]
            if not names:
                raise UsageError("--activations is empty")
            for name in names:
                if name not in ACTIVATIONS:
                    raise UsageError(f"unknown activation {name!r} in --activations; "
                                     f"choose from {', '.join(ACTIVATIONS)}")
            args.activations = names
        args.device = resolve_device(args.device)
        args.dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        if args.device.type == "cuda":
            args.jobs = 1  # one process drives the GPU
        else:
            torch.set_num_threads(1)  # matrices this small only lose time to thread synchronisation
        check_output_dir(args.out, create=not args.plot_only)
    except UsageError as error:
        fail(parser.prog, error)
    return args


def fail(prog, message):
    """Print 'prog: error: message' on stderr and exit with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def resolve_device(name="auto"):
    """'auto' (or None/'') | 'cpu' | 'cuda[:i]' | a torch.device -> torch.device;
    UsageError for cuda without a GPU."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was requested but no CUDA GPU is available (use cpu or auto)")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def check_output_dir(path, create=True):
    """Make sure `path` is (or can become) a writable folder; UsageError otherwise."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"output folder {path!r} exists and is not a folder")
    if not create:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to output folder {path!r}: {error.strerror or error}")


def progress_bar(total, description, disable=False, position=0):
    """A tqdm bar (on stderr), or a silent stand-in when disabled."""
    from tqdm import tqdm  # plain text bars: also fine inside notebooks, without ipywidgets
    return tqdm(total=total, desc=description, disable=disable, position=position,
                unit="step", unit_scale=True, leave=True, mininterval=0.5, dynamic_ncols=True)


def run_metadata(args, started):
    """Settings common to every saved figure: versions, device, run time, flags."""
    import matplotlib
    return {
        "quick": bool(args.quick),
        "device": str(args.device),
        "dtype": str(args.dtype).replace("torch.", ""),
        "jobs": args.jobs,
        "run_seconds": round(time.time() - started, 2),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "matplotlib": matplotlib.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores"
                   + (f", {torch.cuda.get_device_name()}" if args.device.type == "cuda" else ""),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _atomic_write(path, write):
    """Call write(temporary_path), then move it to `path`: a file appears complete or not at all."""
    folder = os.path.dirname(path) or "."
    suffix = os.path.splitext(path)[1]
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _to_json(value):
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return value


def save_figure(fig, out_dir, name, data, settings):
    """Save `fig` as DIR/name.pdf and .png, `data` (dict of arrays) as .npz, `settings` as .json.

    Each file is written to a temporary name first and then renamed, so an interrupted run
    leaves no half-written file. `name` may contain a sub-folder (e.g. 'Q-dynamics/x').
    Returns the list of written paths.
    """
    import matplotlib.pyplot as plt
    stem = os.path.join(out_dir, name)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    arrays = {key: np.asarray(value) for key, value in data.items()}
    paths = [stem + ext for ext in (".npz", ".json", ".pdf", ".png")]
    _atomic_write(paths[0], lambda p: np.savez_compressed(open(p, "wb"), **arrays))
    _atomic_write(paths[1], lambda p: open(p, "w").write(json.dumps(_to_json(settings), indent=2) + "\n"))
    # Fixed metadata keep the PDF and PNG byte-identical across runs.
    _atomic_write(paths[2], lambda p: fig.savefig(p, format="pdf", bbox_inches="tight",
                                                   metadata={"CreationDate": None, "Creator": None}))
    _atomic_write(paths[3], lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight",
                                                   metadata={"Software": None}))
    plt.close(fig)
    return paths


def load_figure_data(out_dir, name):
    """Load the (data, settings) saved by save_figure; UsageError if they are missing."""
    stem = os.path.join(out_dir, name)
    if not (os.path.isfile(stem + ".npz") and os.path.isfile(stem + ".json")):
        raise UsageError(f"no saved data at {stem}.npz/.json; run without --plot-only first")
    with np.load(stem + ".npz", allow_pickle=False) as saved:
        data = {key: saved[key] for key in saved.files}
    with open(stem + ".json") as f:
        settings = json.load(f)
    return data, settings


# ----------------------------------------------------------------------------------------------
# Plot helpers

def step_formatter():
    """Tick labels for step axes: 0, 2e5, 4e5 ... computed from the tick values (none hard-coded)."""
    from matplotlib.ticker import FuncFormatter

    def label(value, _position):
        if value == 0:
            return "0"
        mantissa, exponent = f"{value:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}" if abs(value) >= 1e4 else f"{value:g}"
    return FuncFormatter(label)


def plot_loss_curves(ax, data, linewidth):
    """One curve per run: data['loss'] [R, T] against data['steps'], log y, legend data['labels'];
    a run that diverged gets '(diverged)' in its label and an 'x' at its last finite point."""
    for run, label in enumerate(data["labels"]):
        diverged = data["diverged_at"][run] >= 0
        ax.plot(data["steps"], data["loss"][run], color=f"C{run}", linewidth=linewidth,
                label=str(label) + (" (diverged)" if diverged else ""))
        mark_diverged(ax, data["steps"], data["loss"][run], data["diverged_at"][run], f"C{run}")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(step_formatter())


def mark_diverged(ax, steps, values, diverged_at, color):
    """Put an 'x' at the last finite point of a run that diverged (NaN/inf loss)."""
    if diverged_at < 0:
        return
    finite = np.isfinite(values)
    if finite.any():
        last = np.flatnonzero(finite)[-1]
        ax.plot(steps[last], values[last], "x", color=color, markersize=12, markeredgewidth=3)


# ----------------------------------------------------------------------------------------------
# The common driver of the figure scripts

def steps_per_activation(args, paper_steps, quick_steps):
    """{activation: steps} for the selected activations, longest first (so parallel workers
    finish together): --steps if given, else the quick or the paper's settings."""
    steps = {a: args.steps or (quick_steps if args.quick else paper_steps)[a] for a in args.activations}
    return dict(sorted(steps.items(), key=lambda item: -item[1]))


def run_figure_script(parser, argv, make_jobs, train, plot, summarise):
    """Parse the shared flags, then train (or, with --plot-only, load) and save every figure.

    make_jobs(args) -> list of (figure_name, train_args, settings): train(*train_args, show_progress,
    position) returns the figure's data dict (numpy arrays); plot(data) returns a matplotlib
    figure; summarise(figure_name, data) returns a one-line summary printed after saving.
    Jobs run in up to --jobs worker processes, in the order given (put the longest first).
    """
    args = parse_figure_args(parser, argv)
    started = time.time()
    try:
        jobs = make_jobs(args)
        if args.plot_only:
            for name, _, _ in jobs:
                data, settings = load_figure_data(args.out, name)
                save_figure(plot(data), args.out, name, data, settings)
                print(f"re-plotted {os.path.join(args.out, name)}.pdf from saved data")
            return
        job_args = [tuple(train_args) + (not args.no_progress, position)
                    for position, (_, train_args, _) in enumerate(jobs)]
        results = parallel_map(train, job_args, args.jobs)
        for (name, _, settings), data in zip(jobs, results):
            settings = {**settings, **run_metadata(args, started)}
            paths = save_figure(plot(data), args.out, name, data, settings)
            print(f"{summarise(name, data)} -> {paths[2]}")
        print(f"done in {time.time() - started:.1f} s")
    except UsageError as error:
        fail(parser.prog, error)
    return args
