"""Per-neuron conserved quantities and per-neuron orbits (beyond the paper; docs/conserved_quantities.md).

The symmetry of the elementwise net U sigma(V^T) on whitened input acts on each hidden neuron a by its own lambda_a
(models.move_along_symmetry), so gradient flow conserves k quantities, one per neuron,

    Q_a = paper_scale * (1/2 |U[:, a]|^2 - sum_j F(V[j, a]))   (zero convention; "paper": minus paper_constant * n),

whose sum over a is models.conserved_Q. Everything goes through the activation table models.ACTIVATIONS: a new
activation needs no change here. Shapes: U [..., m, k], V [..., n, k]; per-neuron arrays [..., k].
"""
import math

import numpy as np
import torch

from models import _check_convention, elementwise_output, get_activation, move_along_symmetry, neuron_limits

OFF_DATA_INPUTS = 20         # random inputs on which moved networks are compared (off_data_gap)
OFF_DATA_SEED = 2023         # their torch seed
BISECTION_STEPS = 200        # bisection in log lambda: float64 resolution long before this
HIGHER_ORDER = 2.0           # gd_drift_bound's allowance for the terms of higher order in lr
DRIFT_BOUND = f"{HIGHER_ORDER:g} x paper_scale x lr/2 x max(1, max |F''|) x (L_0 - L_T)"  # gd_drift_bound, in words
STATISTICS = ("sum", "spread", "min_abs", "edge_distance")  # per-neuron statistics (neuron_statistics)
# The per-neuron orbits (orbit_targets, SETTINGS["orbits"]) change both the sum of the Q_a and their spread, so that
# no statistic of the report is held fixed by construction (docs/conserved_quantities.md). t = 0: the network itself.
ORBIT_STEPS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SPREAD_BASE = 4.0            # the spread of the Q_a times 1/4 .. 4 along an orbit
SHIFT_SCALE = 2.0            # every Q_a moved by up to 2 of their std (the sum by up to 2 k std)
FAMILIES = ("together", "opposed")
OFF_DATA_NOTE = (f"largest |output - original output| / largest |original output| on {OFF_DATA_INPUTS} random "
                 f"inputs x ~ N(0, I_n / n) (torch seed {OFF_DATA_SEED}), off the training inputs X = I_n: the "
                 "symmetry is one of the training loss, exact only on the training inputs")
SETTINGS = {  # saved with every per-neuron figure, with its orbit_steps
    "move": "each neuron a by its own lambda_a: U[:, a] / lambda_a, V[:, a] -> sigma^-1(lambda_a sigma(V[:, a])), "
            "lambda_a found by bisection so that Q_a reaches its target (lambdas_for)",
    "orbits": f"[S, 2, P]: target Q_a = mean + s (Q_a - mean) + c std(Q_a), s = {SPREAD_BASE:g}^t, at the "
              f"orbit_steps t; orbit 0 '{FAMILIES[0]}' c = {SHIFT_SCALE:g} t (the sum and the spread grow together), "
              f"orbit 1 '{FAMILIES[1]}' c = -{SHIFT_SCALE:g} t (the spread grows, the sum falls); t = 0 is the network",
    "spread_base": SPREAD_BASE, "shift_scale": SHIFT_SCALE,
    "Q_neurons": "Q_a = paper_scale (1/2 |U[:, a]|^2 - sum_j F(V[j, a])), F from 0 (zero convention; the paper's is "
                 "lower by paper_constant * n per neuron), before and after training",
    "statistics": "sum_zero/sum_paper: sum of Q_a; spread: std over neurons; min_abs_zero/min_abs_paper: min |Q_a|; "
                  "edge_distance: min over entries of 1 - sigma(v)/edge (neuron_statistics)",
    "training_gap": "as off_data_gap, on the training inputs (X = I): the construction keeps it ~1e-16",
}


def neuron_Q(U, V, activation, convention="zero"):
    """Q_a per hidden neuron.  U: [..., m, k], V: [..., n, k] -> [..., k]; sums to models.conserved_Q."""
    _check_convention(convention)
    act = get_activation(activation)
    Q = act.paper_scale * (0.5 * U.square().sum(dim=-2) - act.F(V).sum(dim=-2))
    return (Q - act.paper_constant * V.shape[-2]) if convention == "paper" else Q


def edge_distance(V, activation):
    """How far each neuron's most saturated entry is from the edge of sigma's range, 1 - sigma(v) / edge over the
    edge that the symmetry moves it towards (1 - 1/lambda_max: 1 where the range has no edge there).
    V: [..., n, k] -> [..., k], in (0, 1]."""
    act = get_activation(activation)
    hidden, (low, high) = act.sigma(V), act.sigma_range
    room = torch.ones_like(hidden)
    if high < math.inf:  # a side without an edge leaves room 1, even for an infinite entry (inf / inf would be NaN)
        room = torch.where(hidden > 0, 1 - hidden / high, room)
    if low > -math.inf:
        room = torch.where(hidden < 0, 1 - hidden / low, room)
    return room.amin(dim=-2)


def neuron_statistics(U, V, activation, convention="zero"):
    """The statistics a per-neuron claim tests, {name: [...]} for U [..., m, k], V [..., n, k]: sum: sum_a Q_a (=
    conserved_Q); spread: the std of the Q_a (free of the convention: it shifts every Q_a alike); min_abs: min_a |Q_a|
    (depends on it); edge_distance: the most saturated neuron's (edge_distance; free of it)."""
    Q = neuron_Q(U, V, activation, convention)
    return {"sum": Q.sum(dim=-1), "spread": Q.std(dim=-1, unbiased=False), "min_abs": Q.abs().amin(dim=-1),
            "edge_distance": edge_distance(V, activation).amin(dim=-1)}


def lambdas_for(U, V, activation, targets):
    """Per neuron, the lambda_a that moves neuron a to Q_a = targets[..., a] (zero convention) at a fixed function, by
    bisection in log lambda in float64 (Q_a falls strictly in lambda_a on (0, lambda_max_a), from +inf to -inf, so
    every target is reached). U: [..., m, k], V: [..., n, k], targets: [..., k] -> lambdas [..., k] (float64)."""
    U, V, targets = U.double(), V.double(), torch.as_tensor(targets, dtype=torch.float64)
    shape = torch.broadcast_shapes(targets.shape, U.shape[:-2] + U.shape[-1:])
    U, V = U.expand(*shape[:-1], *U.shape[-2:]), V.expand(*shape[:-1], *V.shape[-2:])
    top = neuron_limits(V, activation).clamp(max=1e6).log()
    low, high = torch.full(shape, -math.log(1e6), dtype=torch.float64), top.expand(shape).clone()
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        U_, V_ = move_along_symmetry(U, V, activation, middle.exp().clamp(max=torch.finfo(torch.float64).max))
        above = neuron_Q(U_, V_, activation) > targets  # lambda too small: Q_a falls as lambda grows
        low, high = torch.where(above, middle, low), torch.where(above, high, middle)
    return ((low + high) / 2).exp()


def orbit_targets(Q, steps=ORBIT_STEPS):
    """Per-neuron targets of the two per-neuron orbits of each network, [..., 2 len(steps), k] (the "together" orbit's
    points first): mean + s (Q_a - mean) + c std(Q_a) with s = SPREAD_BASE^t and c = +-SHIFT_SCALE t at the steps t.
    Q: [..., k] (zero convention). Along both orbits the sum moves by k c std and the spread is s std."""
    mean, std = Q.mean(dim=-1, keepdim=True), Q.std(dim=-1, unbiased=False, keepdim=True)
    scales_and_shifts = [(SPREAD_BASE ** t, sign * SHIFT_SCALE * t) for sign in (1, -1) for t in steps]
    return torch.stack([mean + s * (Q - mean) + c * std for s, c in scales_and_shifts], dim=-2)


def moved_points(steps=ORBIT_STEPS):
    """The orbit steps of the points other than the network itself (t = 0)."""
    return [t for t in steps if t != 0]


def per_neuron_orbits(U, V, activation, steps=ORBIT_STEPS):
    """Move each network to the points of its two per-neuron orbits other than itself (moved_points), each neuron by
    its own lambda, at a fixed function on the training inputs. U: [..., m, k], V: [..., n, k] -> U' [..., P, m, k],
    V' [..., P, n, k], lambdas [..., P, k] (float64); P = 2 (len(steps) - 1) points, the "together" orbit's first."""
    U, V = U.double(), V.double()
    targets = orbit_targets(neuron_Q(U, V, activation), moved_points(steps))
    lambdas = lambdas_for(U.unsqueeze(-3), V.unsqueeze(-3), activation, targets)
    moved_U, moved_V = move_along_symmetry(U.unsqueeze(-3), V.unsqueeze(-3), activation, lambdas)
    return moved_U, moved_V, lambdas


def off_data_inputs(n, count=OFF_DATA_INPUTS, seed=OFF_DATA_SEED):
    """Random inputs from the data distribution, [n, count] float64: x ~ N(0, I_n / n), so E|x|^2 = 1, the norm of
    every training input (the columns of X = I_n)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, count, generator=generator, dtype=torch.float64) / math.sqrt(n)


def off_data_gap(U, V, activation, reference_U, reference_V, inputs):
    """max |U sigma(V^T X) - U_ref sigma(V_ref^T X)| / max |U_ref sigma(V_ref^T X)| on inputs X [n, count]: ~1e-16 for
    a symmetry-moved network on the training inputs (X = I), not off them. U: [..., m, k], V: [..., n, k] -> [...]."""
    sigma = get_activation(activation).sigma
    out = U @ sigma(V.transpose(-1, -2) @ inputs)
    ref = reference_U @ sigma(reference_V.transpose(-1, -2) @ inputs)
    return (out - ref).abs().amax(dim=(-1, -2)) / ref.abs().amax(dim=(-1, -2)).clamp_min(1e-300)


def training_gap(U, V, activation, reference_U, reference_V):
    """off_data_gap on the training inputs themselves (X = I): what the construction keeps fixed. -> [...]."""
    out, ref = elementwise_output(U, V, activation), elementwise_output(reference_U, reference_V, activation)
    return (out - ref).abs().amax(dim=(-1, -2)) / ref.abs().amax(dim=(-1, -2)).clamp_min(1e-300)


def curvature_of_Q(V, activation):
    """max(1, max |F''(V)|) over the entries, F'' by automatic differentiation of the table's F: bounds the change of
    Q in one gradient-descent step (Q's Hessian: paper_scale * diag(1 on U, -F''(V) on V)). V: [..., n, k] -> [...]."""
    act = get_activation(activation)
    x = V.detach().double().clone().requires_grad_()
    (first,) = torch.autograd.grad(act.F(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    return second.abs().flatten(-2).amax(dim=-1).clamp_min(1.0)


def gd_drift_bound(activation, lr, loss_decrease, curvature):
    """HIGHER_ORDER * paper_scale * lr/2 * curvature * loss_decrease: a bound on |Q_T - Q_0| in Q's units after gradient
    descent at step size lr (derived in docs/conserved_quantities.md); arrays broadcast."""
    return HIGHER_ORDER * get_activation(activation).paper_scale * lr / 2 * curvature * loss_decrease


def with_original(moved, original, axis):
    """Per-point numbers of per_neuron_orbits and the network's own -> the two orbits (FAMILIES), the network itself
    in the middle of each. moved: a numpy array or CPU tensor with the P moved points on `axis` (a non-negative
    index), the "together" orbit's first; original: the same without that axis. Returns the array with that axis
    replaced by two: [2, P / 2 + 1] (orbit, point)."""
    moved, original = np.moveaxis(np.asarray(moved), axis, -1), np.asarray(original)[..., None]
    half = moved.shape[-1] // 2
    rows = [np.concatenate([part[..., :half // 2], original, part[..., half // 2:]], axis=-1)
            for part in (moved[..., :half], moved[..., half:])]
    return np.moveaxis(np.stack(rows, axis=-2), (-2, -1), (axis, axis + 1))


def orbit_statistics(U_moved, V_moved, U, V, activation, orbit):
    """The per-neuron figures' statistics of the moved points U_moved [..., P, m, k], V_moved [..., P, n, k]
    (per_neuron_orbits) and of the network itself U [..., m, k], V [..., n, k], each joined by orbit(moved, itself)
    (with_original at the P axis): STATISTICS, sum and min_abs in both conventions (sum_zero, sum_paper, ...)."""
    zero, paper = ([neuron_statistics(x, y, activation, c) for x, y in ((U_moved, V_moved), (U, V))]
                   for c in ("zero", "paper"))
    return {**{f"{k}_zero" if k in ("sum", "min_abs") else k: orbit(zero[0][k], zero[1][k]) for k in STATISTICS},
            **{f"{k}_paper": orbit(paper[0][k], paper[1][k]) for k in ("sum", "min_abs")}}


def orbit_gaps(U_moved, V_moved, U, V, activation, inputs, orbit):
    """training_gap and off_data_gap (on `inputs`) of the moved points against the network itself (shapes as in
    orbit_statistics), joined by orbit(moved, 0)."""
    U, V = U.unsqueeze(-3), V.unsqueeze(-3)
    zeros = np.zeros(U.shape[:-3])
    return {"training_gap": orbit(training_gap(U_moved, V_moved, activation, U, V), zeros),
            "off_data_gap": orbit(off_data_gap(U_moved, V_moved, activation, U, V, inputs), zeros)}


PLOTTED = (("sum_zero", "sum of $Q_a$ (= Q, from 0)", "symlog"), ("spread", "spread (std) of $Q_a$", "log"),
           ("min_abs_zero", "min $|Q_a|$ (from 0)", "log"),
           ("edge_distance", "most saturated neuron: distance from the edge", "linear"))
FAMILY_LABELS = {"together": "sum and spread grow together", "opposed": "spread grows, sum falls"}


def plot_orbits(data, value_key, value_label, title, mark=None):
    """The per-neuron figure: value_key [S, 2, P] against each statistic of PLOTTED, one panel each; the "together"
    orbit in C0, the "opposed" one in C1, each from its t = -1 end (a dot); seed 0 bold, other seeds thin. mark: an
    optional [S, 2, P] bool of points to draw with an x (e.g. runs that never reached the loss, at the budget)."""
    import matplotlib.pyplot as plt
    values = np.asarray(data[value_key], dtype=float)
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 4), sharey=True)
    for ax, (key, label, scale) in zip(axes, PLOTTED):
        x = np.asarray(data[key], dtype=float)
        for s in range(len(values)):
            for f, family in enumerate(FAMILIES):
                ax.plot(x[s, f], values[s, f], "-", color=f"C{f}", linewidth=2 if s == 0 else 0.7,
                        alpha=1 if s == 0 else 0.4, label=f"{FAMILY_LABELS[family]}, seed 0" if s == 0 else None)
                ax.plot(x[s, f, :1], values[s, f, :1], "o", color=f"C{f}", markersize=5 if s == 0 else 3,
                        alpha=1 if s == 0 else 0.4)
                if mark is not None and np.asarray(mark)[s, f].any():
                    ax.plot(x[s, f][mark[s, f]], values[s, f][mark[s, f]], "x", color="C3", markersize=8)
        ax.set_xscale(scale, **({"linthresh": 1} if scale == "symlog" else {}))
        ax.set_xlabel(label, fontsize=11)
    if len(values) > 1:
        axes[0].plot([], [], "-", color="0.5", linewidth=0.7,
                     label="seed 1" if len(values) == 2 else f"seeds 1-{len(values) - 1}")
    axes[0].plot([], [], "o", color="0.3", markersize=4, label="orbit start (t = -1)")
    axes[0].set_ylabel(value_label, fontsize=11)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
