"""The science of the gradient-flow figures (Figs. 3-7, 9): initialisation, activations, models, conserved quantities.

Two-layer networks on whitened input (X = I_n): U [..., m, k] (second layer), V [..., n, k] (first layer, the
paper's V transposed), output U sigma(V^T) [..., m, n]; the leading dimensions are runs. The mathematics and the
two conventions of Q: docs/conserved_quantities.md.
"""
import math
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
    """A rows x cols float32 CPU tensor drawn as the paper's code draws it, bit for bit: seed, torch.rand (which
    advances the generator), then normal_(mean, std) over its values."""
    torch.manual_seed(seed)
    # float32 on the CPU generator, as in the paper, whatever torch's default dtype is
    return torch.rand(rows, cols, dtype=torch.float32).normal_(mean=mean, std=std)


def paper_target(m, n):
    """The regression target Y, m x n, standard normal (paper: seed 12345)."""
    return paper_normal(m, n, std=1.0)


def paper_init(m, n, k, stds, seeds=1):
    """U [S, R, m, k] and V [S, R, n, k], float32: for seed s < S and init std stds[r], each drawn by paper_normal
    after seed_of(s) (SEED_RULE: seed 0 is the paper's initialisation, and every seed learns the same Y)."""
    U = torch.stack([torch.stack([paper_normal(m, k, std, seed=seed_of(s)) for std in stds]) for s in range(seeds)])
    V = torch.stack([torch.stack([paper_normal(n, k, std, seed=seed_of(s)) for std in stds]) for s in range(seeds)])
    return U, V


# ----------------------------------------------------------------------------------------------
# Activations: one entry each; everything else looks them up here

@dataclass(frozen=True)
class Activation:
    """An elementwise activation sigma and what the package derives from it (each field: docs/conserved_quantities.md,
    "Adding an activation"). backward(grad_A, A, V) -> dL/dV, given grad_A = dL/dA and A = sigma(V);
    F(x) = int_0^x sigma(t) / sigma'(t) dt, elementwise, differentiable; inverse: sigma^-1 on sigma_range (low, high);
    the paper code's Q is paper_scale * (1/2 |U|^2 - sum F(V)) - paper_constant * (entries of V)."""
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
    """The function F(x) = int_0^x integrand(t) dt, elementwise, by a fixed `nodes`-point Gauss-Legendre rule on
    [0, x]; autograd gives F' = integrand exactly. For softplus's sigma/sigma', 32 nodes give F to about 1e-12
    relative in float64 for |x| up to 40 and 1e-10 up to 60 (tests check it against a high-precision reference)."""
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
               F=lambda x: torch.sinh(x).square() / 2, inverse=torch.atanh, sigma_range=(-1.0, 1.0), paper_scale=2.0,
               expected_F=lambda var: math.expm1(2 * var) / 4, paper_constant=1.0, sigma_takes_out=True),
    Activation("sigmoid", sigma=torch.sigmoid, backward=lambda grad_A, A, V: torch.ops.aten.sigmoid_backward(grad_A, A),
               F=lambda x: x + torch.expm1(x), inverse=torch.logit, sigma_range=(0.0, 1.0), paper_scale=1.0,
               expected_F=lambda var: math.expm1(var / 2), paper_constant=1.0, sigma_takes_out=True),
    # Beyond the paper.
    Activation("elu", sigma=torch.nn.functional.elu,
               backward=lambda grad_A, A, V: torch.where(V > 0, grad_A, grad_A * (A + 1)),
               F=lambda x: torch.where(x > 0, x.square() / 2, x + torch.expm1(-x)),
               inverse=lambda y: torch.where(y > 0, y, torch.log1p(y)), sigma_range=(-1.0, math.inf),
               expected_F=_elu_expected_F),
    Activation("softplus", sigma=torch.nn.functional.softplus, backward=lambda grad_A, A, V: grad_A * torch.sigmoid(V),
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
    "zero": paper_scale * (1/2 |U|^2 - sum_{j,a} F(V_ja)), 0 at U = 0, V = 0 for every activation; "paper": that
    minus paper_constant * n k, what the paper's code computes and its legends show."""
    _check_convention(convention)
    act = get_activation(activation)
    Q = act.paper_scale * (0.5 * U.square().sum(dim=(-1, -2)) - act.F(V).sum(dim=(-1, -2)))
    return (Q - act.paper_constant * (V.shape[-1] * V.shape[-2])) if convention == "paper" else Q


def q_normaliser(U, V, activation, convention="paper"):
    """N_0, the size that Fig. 3 divides Q by.  -> [...]. "paper": the paper code's 'sum' analogue of Q,
    paper_scale * (1/2 |U|^2 + sum F(V)) + paper_constant * n k; "zero": paper_scale * (1/2 |U|^2 + sum |F(V)|), the
    size of Q's terms entry by entry (|Q| <= N_0; why not |sum F|: docs/conserved_quantities.md)."""
    _check_convention(convention)
    act = get_activation(activation)
    half_uu = 0.5 * U.square().sum(dim=(-1, -2))
    if convention == "zero":
        return act.paper_scale * (half_uu + act.F(V).abs().sum(dim=(-1, -2)))
    return act.paper_scale * (half_uu + act.F(V).sum(dim=(-1, -2))) + act.paper_constant * (V.shape[-1] * V.shape[-2])


def expected_Q(activation, m, k, n, u_var, v_var, convention="paper"):
    """E[Q] for U (m x k) with i.i.d. N(0, u_var) entries and V (n x k) with i.i.d. N(0, v_var) entries;
    NaN for an activation without a closed-form E[F] (float)."""
    act = get_activation(activation)
    if act.expected_F is None:
        return math.nan
    Q = act.paper_scale * (0.5 * m * k * u_var - n * k * act.expected_F(v_var))
    return (Q - act.paper_constant * n * k) if convention == "paper" else Q


def move_along_symmetry(U, V, activation, lambdas):
    """(U', V'), another point with the same network function and another Q: per hidden neuron a,
    U[:, a] -> U[:, a] / lambda_a and V[:, a] -> sigma^-1(lambda_a sigma(V[:, a])). U: [..., m, k], V: [..., n, k],
    lambdas: [k] or [..., k], nonzero. Entries where lambda_a sigma(v) equals sigma(v) stay as they are (lambda_a = 1,
    ReLU's non-positive entries). ValueError if lambda_a sigma(V[j, a]) leaves sigma's range."""
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


def neuron_limits(V, activation):
    """Per neuron, the largest lambda > 0 such that lambda * sigma(V[:, a]) stays inside sigma's range
    (inf for linear, ReLU, softplus: any lambda > 0 works; every lambda below it also works).
    V: [..., n, k] -> [..., k]."""
    act = get_activation(activation)
    hidden, (low, high) = act.sigma(V), act.sigma_range
    limits = torch.full_like(hidden, math.inf)
    if high < math.inf:  # a side without an edge sets no limit, even for an infinite entry (inf / inf would be NaN)
        limits = torch.where(hidden > 0, high / hidden, limits)
    if low > -math.inf:
        limits = torch.where(hidden < 0, low / hidden, limits)
    return limits.amin(dim=-2)


def symmetry_limit(V, activation):
    """The largest lambda for all hidden neurons at once (the smallest neuron_limits).  V: [..., n, k] -> [...]."""
    return neuron_limits(V, activation).amin(dim=-1)


def orbit_scales(V, activation, smallest, largest, per_side=3, reach=0.9):
    """Lambdas for a walk along the symmetry orbit of each network: [..., 2 * per_side + 1], ascending, 1 in the
    middle (the network itself). Below 1: per_side geometric steps down to `smallest`. Above 1: per_side steps
    up to `largest`, or, where sigma's range ends first (tanh, sigmoid, ELU), to symmetry_limit ** reach, so the
    top step stays inside the range (reach < 1: a fixed fraction of the way there in log lambda). V: [..., n, k]."""
    top = symmetry_limit(V.double(), activation).pow(reach).clamp(max=float(largest))  # [...]
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
