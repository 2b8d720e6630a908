"""The science of the gradient-flow figures (Figs. 3-7, 9): models, conserved quantities, trainer, Hessian.

Two-layer networks on whitened input (X = I_n), in the paper repository's convention:
U is m x k (second layer), V is n x k (first layer; the paper's V transposed), and the
network output is U sigma(V^T), an m x n matrix. Every function below also takes leading
batch dimensions ("runs"), so one call trains every learning rate or init scale of a figure.
The command line, worker processes, saved files and the figure driver are in command_line.py,
processes.py, saved_files.py and figure_driver.py.

Contents, top to bottom:
  data and initialisation   PAPER_SEED, SEED_RULE, seed_of, paper_normal, paper_target, paper_init
  activations               Activation, ACTIVATIONS (the table), get_activation, integral_from_zero
  elementwise model         elementwise_output, conserved_Q, q_normaliser, expected_Q,
                            move_along_symmetry, symmetry_limit, orbit_scales
  radial model              radial_output, radial_Q
  training                  TRAINED_ON, record_schedule, gradient_descent, gradient_descent_seeds,
                            first_step_below
  Hessian                   squared_loss_hessian, gauss_newton_eigenvalues
"""
import math
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

PAPER_SEED = 12345
SEED_RULE = ("seed 0 is the paper's draw (torch.manual_seed(12345)); seed s draws the same way after "
             "torch.manual_seed(12345 + s); the target Y is the paper's for every seed")


def seed_of(s):
    """The torch seed of draw s (0: the paper's): PAPER_SEED + s."""
    return PAPER_SEED + int(s)


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


def paper_init(m, n, k, stds, seeds=1, mean=0.0):
    """U [S, R, m, k] and V [S, R, n, k], float32: for seed s < S and init std stds[r], U and V are each
    drawn as the paper draws them (paper_normal) after seed_of(s). Seed 0 is the paper's initialisation;
    the target Y (paper_target) does not depend on s: every seed learns the same task."""
    U = torch.stack([torch.stack([paper_normal(m, k, std, mean, seed_of(s)) for std in stds]) for s in range(seeds)])
    V = torch.stack([torch.stack([paper_normal(n, k, std, mean, seed_of(s)) for std in stds]) for s in range(seeds)])
    return U, V


# ----------------------------------------------------------------------------------------------
# Activations: one entry each; everything else looks them up here

@dataclass(frozen=True)
class Activation:
    """An elementwise activation sigma and everything the package derives from it.

    sigma(x): the activation, elementwise on a tensor.
    backward(grad_A, A, V): dL/dV from grad_A = dL/dA, given A = sigma(V) (the trainer's
        closed-form backward; tests check it against autograd).
    F(x): int_0^x sigma(t) / sigma'(t) dt, elementwise and differentiable (F' = sigma/sigma').
        The conserved quantity of gradient flow is 1/2 |U|^2 - sum_{j,a} F(V_ja).
    inverse(y): sigma^-1 on sigma_range, the open interval (low, high) of sigma's values; needed
        to move along the symmetry (move_along_symmetry).
    expected_F(var): E[F(v)] for v ~ N(0, var), in closed form; None if there is none.
    paper_scale, paper_constant: the paper code's Q, shown in its legends, is
        paper_scale * (1/2 |U|^2 - sum F(V)) - paper_constant * (number of entries of V).
        Activations that the paper does not have keep 1 and 0: Q is then the formula itself.
    sigma_takes_out: sigma also accepts out= (torch's own ops do); saves the trainer an
        allocation per step.
    """
    name: str
    sigma: Callable
    backward: Callable
    F: Callable
    inverse: Callable
    sigma_range: tuple
    expected_F: Optional[Callable] = None
    paper_scale: float = 1.0
    paper_constant: float = 0.0
    sigma_takes_out: bool = False


def identity(x, out=None):
    """sigma of the linear network (the trainer uses V itself as the hidden activations)."""
    return x if out is None else out.copy_(x)


def relu(x, out=None):
    return torch.relu(x) if out is None else torch.clamp_min(x, 0.0, out=out)


def integral_from_zero(integrand, nodes=32):
    """F(x) = int_0^x integrand(t) dt, elementwise, for an F with no closed form.

    A fixed `nodes`-point Gauss-Legendre rule on [0, x], evaluated in torch. For a smooth integrand
    such as softplus's sigma/sigma', 32 nodes give F to about 1e-12 relative in float64 for |x|
    up to 40 and 1e-10 up to 60 (tests check it against a high-precision reference). Autograd
    gives F'(x) = integrand(x) exactly, so Q's gradient is exact. Returns the function F.
    """
    points, weights = np.polynomial.legendre.leggauss(nodes)
    fractions, weights = ((points + 1) / 2).tolist(), (weights / 2).tolist()

    class IntegralFromZero(torch.autograd.Function):
        @staticmethod
        def forward(x):
            total = torch.zeros_like(x)
            for fraction, weight in zip(fractions, weights):  # one node at a time: memory of one x
                total.add_(integrand(fraction * x), alpha=weight)
            return total * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * integrand(x)

    return IntegralFromZero.apply


def _elu_expected_F(var):
    # F = v^2/2 above 0 and v + e^-v - 1 below: E[v^2/2; v > 0] = var/4, E[v; v < 0] = -s/sqrt(2 pi),
    # E[e^-v; v < 0] = e^{var/2} Phi(s), P(v < 0) = 1/2.
    s = math.sqrt(var)
    return var / 4 - s / math.sqrt(2 * math.pi) + math.exp(var / 2) * (1 + math.erf(s / math.sqrt(2))) / 2 - 0.5


ACTIVATIONS = {a.name: a for a in [
    # The paper's four. Backward: torch's fused ops, as autograd uses them. Paper scaling: its code
    # computes Tr U^T U - Tr V^T V (linear), Tr U^T U - sum relu(V)^2, Tr U^T U - sum cosh^2 V
    # (= 2 (|U|^2/2 - sum sinh^2 V / 2) - n k) and |U|^2/2 - sum (V + e^V) (F = x + e^x - 1).
    Activation("linear", sigma=identity, backward=lambda grad_A, A, V: grad_A,
               F=lambda x: x.square() / 2, inverse=identity, sigma_range=(-math.inf, math.inf),
               expected_F=lambda var: var / 2, paper_scale=2.0, sigma_takes_out=True),
    Activation("relu", sigma=relu, backward=lambda grad_A, A, V: torch.ops.aten.threshold_backward(grad_A, A, 0),
               F=lambda x: torch.relu(x).square() / 2, inverse=identity, sigma_range=(0.0, math.inf),
               expected_F=lambda var: var / 4, paper_scale=2.0, sigma_takes_out=True),
    Activation("tanh", sigma=torch.tanh, backward=lambda grad_A, A, V: torch.ops.aten.tanh_backward(grad_A, A),
               F=lambda x: torch.sinh(x).square() / 2, inverse=torch.atanh, sigma_range=(-1.0, 1.0),
               expected_F=lambda var: math.expm1(2 * var) / 4, paper_scale=2.0, paper_constant=1.0,
               sigma_takes_out=True),
    Activation("sigmoid", sigma=torch.sigmoid,
               backward=lambda grad_A, A, V: torch.ops.aten.sigmoid_backward(grad_A, A),
               F=lambda x: x + torch.expm1(x), inverse=torch.logit, sigma_range=(0.0, 1.0),
               expected_F=lambda var: math.expm1(var / 2), paper_scale=1.0, paper_constant=1.0,
               sigma_takes_out=True),
    # Beyond the paper.
    Activation("elu", sigma=torch.nn.functional.elu,
               backward=lambda grad_A, A, V: torch.where(V > 0, grad_A, grad_A * (A + 1)),
               F=lambda x: torch.where(x > 0, x.square() / 2, x + torch.expm1(-x)),
               inverse=lambda y: torch.where(y > 0, y, torch.log1p(y)), sigma_range=(-1.0, math.inf),
               expected_F=_elu_expected_F),
    Activation("softplus", sigma=torch.nn.functional.softplus,
               backward=lambda grad_A, A, V: grad_A * torch.sigmoid(V),
               F=integral_from_zero(lambda x: torch.nn.functional.softplus(x) / torch.sigmoid(x)),
               inverse=lambda y: torch.log(torch.expm1(y)), sigma_range=(0.0, math.inf)),
]}


def get_activation(activation):
    """The table entry of a name (an Activation passes through); ValueError naming the choices."""
    if isinstance(activation, Activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[activation]


# ----------------------------------------------------------------------------------------------
# Elementwise two-layer model: output U sigma(V^T), conserved quantity Q

Q_CONVENTIONS = ("paper", "zero")


def elementwise_output(U, V, activation):
    """Network output U sigma(V^T).  U: [..., m, k], V: [..., n, k] -> [..., m, n]."""
    return U @ get_activation(activation).sigma(V).transpose(-1, -2)


def _check_convention(convention):
    if convention not in Q_CONVENTIONS:
        raise ValueError(f"unknown Q convention {convention!r}; choose from {', '.join(Q_CONVENTIONS)}")


def conserved_Q(U, V, activation, convention="paper"):
    """Conserved quantity of gradient flow for the elementwise net.  U: [..., m, k], V: [..., n, k] -> [...].

    Gradient flow on any loss of U sigma(V^T) keeps 1/2 |U|^2 - sum_{j,a} F(V_ja) fixed, with
    F(x) = int_0^x sigma/sigma' (so does any multiple of it plus a constant). Two conventions:
      "zero":  paper_scale * (1/2 |U|^2 - sum F(V)): 0 at U = 0, V = 0 for every activation, so
               ratios and orderings of |Q| do not depend on a choice of integration constant;
      "paper": the zero convention minus paper_constant * (n k): what the paper's code computes and
               its legends show (the same for linear and ReLU; n k lower for tanh and sigmoid).
    """
    _check_convention(convention)
    act = get_activation(activation)
    Q = act.paper_scale * (0.5 * U.square().sum(dim=(-1, -2)) - act.F(V).sum(dim=(-1, -2)))
    if convention == "paper" and act.paper_constant:
        Q = Q - act.paper_constant * (V.shape[-1] * V.shape[-2])
    return Q


def q_normaliser(U, V, activation, convention="paper"):
    """N_0, the size that Fig. 3 divides Q by.  -> [...].

    "paper": the paper code's 'sum' analogue of Q, paper_scale * (1/2 |U|^2 + sum F(V)) +
        paper_constant * (n k) (e.g. Tr U^T U + sum cosh^2 V for tanh);
    "zero": paper_scale * (1/2 |U|^2 + sum |F(V)|), the size of Q's terms entry by entry, so |Q| <= N_0 and no
        entries cancel (|sum F| would: F is negative below 0 for sigmoid and softplus).
    Both equal for linear and ReLU.
    """
    _check_convention(convention)
    act = get_activation(activation)
    F = act.F(V)
    half_uu = 0.5 * U.square().sum(dim=(-1, -2))
    if convention == "zero":
        return act.paper_scale * (half_uu + F.abs().sum(dim=(-1, -2)))
    return act.paper_scale * (half_uu + F.sum(dim=(-1, -2))) + act.paper_constant * (V.shape[-1] * V.shape[-2])


def expected_Q(activation, m, k, n, u_var, v_var, convention="paper"):
    """E[Q] for U (m x k) with i.i.d. N(0, u_var) entries and V (n x k) with i.i.d. N(0, v_var) entries;
    NaN for an activation without a closed-form E[F] (float)."""
    act = get_activation(activation)
    if act.expected_F is None:
        return math.nan
    Q = act.paper_scale * (0.5 * m * k * u_var - n * k * act.expected_F(v_var))
    return Q - act.paper_constant * n * k if convention == "paper" else Q


def move_along_symmetry(U, V, activation, lambdas):
    """Another point with the same network function: per hidden neuron a (column a of U and V),
    U[:, a] -> U[:, a] / lambda_a and V[:, a] -> sigma^-1(lambda_a sigma(V[:, a])).

    U: [..., m, k], V: [..., n, k], lambdas: [k] or [..., k] (nonzero). Q changes (that is the
    point: other Q, same output). Entries where lambda_a sigma(v) equals sigma(v) are kept as they
    are (lambda_a = 1, and ReLU's non-positive entries, whose sigma is 0). ValueError if
    lambda_a sigma(V[j, a]) leaves sigma's range. Returns (U', V').
    """
    act = get_activation(activation)
    lambdas = torch.as_tensor(lambdas, dtype=V.dtype, device=V.device)
    if not bool(torch.isfinite(lambdas).all()) or bool((lambdas == 0).any()):
        raise ValueError("move_along_symmetry: every lambda must be finite and nonzero")
    column_scale = lambdas.unsqueeze(-2)  # [..., 1, k]
    hidden = act.sigma(V)
    moved = column_scale * hidden
    keep = moved == hidden
    low, high = act.sigma_range
    outside = ~keep & ~((moved > low) & (moved < high))
    if bool(outside.any()):
        raise ValueError(f"move_along_symmetry: lambda * sigma(V) leaves {act.name}'s range ({low:g}, {high:g}) "
                         f"at {int(outside.sum())} entries; choose lambdas closer to 1")
    return U / column_scale, torch.where(keep, V, act.inverse(torch.where(keep, hidden, moved)))


def symmetry_limit(V, activation):
    """The largest lambda > 0 such that lambda * sigma(V) stays inside sigma's range for every entry
    (inf for linear, ReLU, softplus: any lambda > 0 works; every lambda below it also works).
    V: [..., n, k] -> [...] (one lambda for all hidden neurons of a network)."""
    act = get_activation(activation)
    hidden = act.sigma(V).flatten(-2)
    low, high = act.sigma_range
    limits = torch.full_like(hidden, math.inf)
    if high < math.inf:
        limits = torch.where(hidden > 0, high / hidden, limits)
    if low > -math.inf:
        limits = torch.where(hidden < 0, low / hidden, limits)
    return limits.amin(dim=-1)


def orbit_scales(V, activation, smallest, largest, per_side=3, reach=0.9):
    """Lambdas for a walk along the symmetry orbit of each network: [..., 2 * per_side + 1], ascending, 1 in the
    middle (the network itself). Below 1: per_side geometric steps down to `smallest`. Above 1: per_side steps
    up to `largest`, or, where sigma's range ends first (tanh, sigmoid, ELU), to symmetry_limit ** reach, so the
    top step stays inside the range (reach < 1: a fixed fraction of the way there in log lambda). V: [..., n, k]."""
    limit = symmetry_limit(V.double(), activation)
    top = torch.minimum(torch.as_tensor(float(largest), dtype=torch.float64), limit.pow(reach))
    fractions = torch.arange(1, per_side + 1, dtype=torch.float64) / per_side      # [per_side]
    below = torch.as_tensor(float(smallest), dtype=torch.float64).pow(fractions.flip(0))
    above = top.unsqueeze(-1).pow(fractions)                                       # [..., per_side]
    return torch.cat([below.expand(*top.shape, per_side), torch.ones(*top.shape, 1, dtype=torch.float64), above], -1)


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

TRAINED_ON = "torch.nn.MSELoss (mean over m*n entries), full-batch GD"
RECORD_CHUNK_ELEMENTS = 2 ** 16  # records are kept as weights and evaluated in batches of this size (cache-sized)


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


def gradient_descent(U, V, Y, lr, steps, model="elementwise", activation="linear",
                     record_steps=None, loss_kind="frobenius", progress=None, q_convention="paper",
                     stop_below=None):
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
        activation: a name in ACTIVATIONS (or an Activation), for the elementwise model.
        record_steps: sorted int array of update counts at which to record; default record_schedule.
        loss_kind: what to record as "loss": "frobenius" |Y - out|_F, "squared" |Y - out|_F^2,
            "mse_over_normY" MSE / |Y|_F (the quantity Fig. 7 plots).
        progress: an optional tqdm-like object; its update(n) is called with the steps done.
        q_convention: "paper" or "zero", see conserved_Q (the elementwise model only).
        stop_below: stop training once every run has recorded a loss below this (or diverged); the
            records after the stop are NaN. For step counts to a loss, where no curve is plotted.

    Returns a dict of numpy arrays: steps [T], loss [R, T], Q [R, T] (after `steps[t]` updates),
    U [R, m, k], V [R, n, k] (final), diverged_at [R] (first recorded step whose loss is not
    finite, -1 if none), trained_steps (updates applied: steps unless stop_below stopped early). The loss is computed in the training dtype from the residual of the
    forward pass, as training computes it; Q in float64 from the weights, so its record has no
    round-off of its own. A run that diverges is stopped: its later records are NaN.
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
    dtype, device = U.dtype, U.device
    # The residual E = output - Y and the weights U, V are contiguous blocks of one buffer (each
    # 64-byte aligned, as a tensor of its own would be), so that a record is one copy.
    shapes = [(runs, m, n), tuple(U.shape), tuple(V.shape)]
    sizes = [math.prod(shape) for shape in shapes]
    starts = np.cumsum([0] + [-(-size // 16) * 16 for size in sizes])
    state = torch.empty(int(starts[-1]), dtype=dtype, device=device)
    blocks = [state[start:start + size].view(shape) for start, size, shape in zip(starts, sizes, shapes)]
    E, U, V = blocks[0], blocks[1].copy_(U.detach()), blocks[2].copy_(V.detach())
    negY = (-Y).to(device=device, dtype=dtype).expand(runs, m, n).contiguous()
    lr = torch.as_tensor(lr, dtype=dtype, device=device).reshape(-1)
    lr = lr.expand(runs) if lr.numel() == 1 else lr
    # d MSE / d output = 2 (out - Y) / (m n); folding lr in gives each run's update scale.
    step_scale = (lr * (2.0 / (m * n))).reshape(runs, 1, 1)
    norm_Y = float(torch.linalg.norm(Y.double()))

    # Every buffer is preallocated and every transposed view made once: at these sizes a step
    # costs a few microseconds of dispatch per op, so the loop does nothing but the ops.
    shared_lr = bool((lr == lr[0]).all())
    scale = float(step_scale.flatten()[0]) if shared_lr else 1.0
    G = E if shared_lr else torch.empty_like(E)                    # lr-scaled dL/d output
    A = V if act is not None and act.sigma is identity else torch.empty_like(V)  # hidden activations
    grad_A = torch.empty_like(V)
    grad_U = torch.empty_like(U)
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

    # A record is one copy of the state (E, U, V) into a slot of a preallocated buffer, with no
    # host sync; loss and Q are computed a chunk of records at a time.
    n_rec = len(record_steps)
    chunk = max(1, min(n_rec, RECORD_CHUNK_ELEMENTS // state.numel()))
    saved = torch.empty(chunk, state.numel(), dtype=dtype, device=device)
    slots = saved.unbind(0)
    saved_E, saved_U, saved_V = [saved[:, start:start + size].unflatten(1, shape)
                                 for start, size, shape in zip(starts, sizes, shapes)]
    U64, V64 = saved_U.double(), saved_V.double()  # where Q is computed, float64 for every dtype
    loss_np = np.full((runs, n_rec), np.nan)
    q_np = np.full((runs, n_rec), np.nan)
    diverged_at = np.full(runs, -1, dtype=np.int64)
    reached = np.zeros(runs, dtype=bool)  # a loss below stop_below was recorded

    def evaluate(first, count):
        """Loss and Q of records first .. first+count-1 from the slots; marks diverged runs."""
        sq = saved_E[:count].square().sum(dim=(2, 3))  # [count, R]
        loss = {"frobenius": sq.sqrt(), "squared": sq, "mse_over_normY": sq / (m * n) / norm_Y}[loss_kind]
        U_, V_ = U64[:count].copy_(saved_U[:count]), V64[:count].copy_(saved_V[:count])
        Q = radial_Q(U_, V_) if act is None else conserved_Q(U_, V_, act, q_convention)
        loss_np[:, first:first + count] = loss.T.double().cpu().numpy()
        q_np[:, first:first + count] = Q.T.cpu().numpy()
        for r in np.flatnonzero(~np.isfinite(loss_np[:, first:first + count]).all(axis=1) & (diverged_at < 0)):
            diverged_at[r] = record_steps[np.flatnonzero(~np.isfinite(loss_np[r]))[0]]
            print(f"warning: run {r} diverged (loss not finite) at step {diverged_at[r]}; "
                  "it is stopped and marked in the plot", file=sys.stderr)

    forward()  # from here on E and A always belong to the current weights
    done, slot = 0, 0  # updates applied so far; next free record slot
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
            if np.all((diverged_at >= 0) | reached):
                break

    for r in np.flatnonzero(diverged_at >= 0):
        after = record_steps >= diverged_at[r]
        loss_np[r, after] = np.nan
        q_np[r, after] = np.nan
    return {"steps": record_steps, "loss": loss_np, "Q": q_np, "U": U.cpu().double().numpy(),
            "V": V.cpu().double().numpy(), "diverged_at": diverged_at, "trained_steps": done}


def seeds_progress_total(steps, seeds):
    """The steps gradient_descent_seeds reports to its progress bar: seed 0's batch, then one batch for the rest."""
    return steps * (1 + (seeds > 1))


def gradient_descent_seeds(U, V, Y, lr, steps, progress=None, rest_stop_below=None, **kwargs):
    """gradient_descent for the runs of several seeds: U [S, R, m, k], V [S, R, n, k] (seed 0 first).

    lr: one learning rate, or one per run of a seed [R]. Seed 0, the paper's draw, is trained in a batch of its
    own, so its numbers are those of a single-seed run whatever the number of seeds (torch's vectorised sigmoid,
    ELU and softplus round the tail elements of a tensor differently, so a run's last bits depend on the batch
    size). Seeds 1.. are one more batch, stopped with stop_below=rest_stop_below where only step counts are
    wanted from them. kwargs go to gradient_descent. Returns its dict with a leading seed axis on every per-run
    array ([S, R, T], [S, R, m, k], [S, R]); loss and Q records of a stopped batch are NaN after its stop.
    progress: its update(n) gets both batches' steps (seeds_progress_total in all).
    """
    seeds, runs = U.shape[:2]
    lr = torch.as_tensor(lr, dtype=torch.float64).reshape(-1)  # one for all runs, or one per run of a seed
    results = [gradient_descent(U[0], V[0], Y, lr, steps, progress=progress, **kwargs)]
    if seeds > 1:
        rest_lr = lr if lr.numel() == 1 else lr.repeat(seeds - 1)
        results.append(gradient_descent(U[1:].flatten(0, 1), V[1:].flatten(0, 1), Y, rest_lr, steps,
                                        progress=progress, stop_below=rest_stop_below, **kwargs))
        if progress is not None:
            progress.update(steps - results[-1]["trained_steps"])  # a stopped batch: fill the bar
    merged = {"steps": results[0]["steps"], "trained_steps": [r["trained_steps"] for r in results]}
    for key in ("loss", "Q", "U", "V", "diverged_at"):
        merged[key] = np.concatenate([r[key] for r in results]).reshape(seeds, runs, *results[0][key].shape[1:])
    return merged


def first_step_below(steps, loss, threshold):
    """First recorded step at which loss < threshold, per run; -1 where never.  loss: [R, T] -> [R]."""
    below = np.asarray(loss) < threshold
    return np.where(below.any(axis=-1), np.asarray(steps)[below.argmax(axis=-1)], -1)


# ----------------------------------------------------------------------------------------------
# Hessian of the squared loss |Y - U sigma(V^T)|_F^2 over the flattened (U, V)

def squared_loss_hessian(U, V, Y, activation):
    """Hessian in float64 of |Y - U sigma(V^T)|^2 w.r.t. concat(U.flatten(), V.flatten()).

    U: [m, k], V: [n, k], Y: [m, n] -> [(m+n)k, (m+n)k], symmetric. Reverse-over-reverse
    differentiation with torch.func, vectorised over all (m+n)k rows at once (at these sizes faster
    than forward-over-reverse, and the same numbers as one double-backward per row).
    """
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
    proportional to the residual, so at a zero-loss minimum its nonzero eigenvalues are exactly these (2 J^T J
    and 2 J J^T share them); at a trained minimum (squared loss ~1e-10) they agree with squared_loss_hessian's to
    about 1e-7 relative. An m n x m n problem instead of (m+n) k x (m+n) k: cheap enough for many points.
    """
    act = get_activation(activation)
    U, V = torch.as_tensor(U, dtype=torch.float64), torch.as_tensor(V, dtype=torch.float64)
    batch, (m, k) = U.shape[:-2], U.shape[-2:]

    def output(flat):
        return (flat[: m * k].reshape(m, k) @ act.sigma(flat[m * k:].reshape(-1, k)).T).flatten()

    flat = torch.cat([U.reshape(-1, m * k), V.reshape(-1, V.shape[-2] * k)], dim=1)
    J = torch.func.vmap(torch.func.jacrev(output))(flat)  # [B, m n, (m+n) k]
    return torch.linalg.eigvalsh(2 * J @ J.transpose(1, 2)).reshape(*batch, -1)

