"""Per-neuron conserved quantities, per-neuron orbits, the normaliser of Q and the gradient-descent bound of Fig. 3
(float64, every registered activation)."""
import math

import numpy as np
import pytest
import torch

from gfs import per_neuron as pn
from models import ACTIVATIONS, conserved_Q, elementwise_output, neuron_limits, q_normaliser
from gfs.training import gradient_descent

M, N, K = 5, 10, 50


def random_params(seed, scale=0.5, m=M, n=N, k=K):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    return scale * draw(m, k), scale * draw(n, k), draw(m, n)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("convention", ["paper", "zero"])
def test_neuron_Q_sums_to_Q(activation, convention):
    U, V, _ = random_params(0)
    Q_a = pn.neuron_Q(U, V, activation, convention)
    assert Q_a.shape == (K,)
    assert float(Q_a.sum()) == pytest.approx(float(conserved_Q(U, V, activation, convention)), rel=1e-12, abs=1e-10)
    assert float(Q_a.std()) > 1e-3  # the neurons differ: a sum over the wrong axis would not sum to Q and vary


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_each_neuron_Q_is_conserved_with_drift_proportional_to_lr(activation):
    """Float64 GD over a fixed flow time: each Q_a drifts, and the drift halves with the step size (a discretisation
    effect of order lr); the loss did fall, so the weights moved."""
    U, V, Y = random_params(2)
    Q0, drifts, flow_time = pn.neuron_Q(U, V, activation), [], 2.0
    for lr in (0.02, 0.01, 0.005):
        steps = int(round(flow_time / lr))
        out = gradient_descent(U[None], V[None], Y, lr, steps, activation=activation, record_steps=[0, steps])
        assert out["loss"][0, 1] < 0.9 * out["loss"][0, 0]
        U_T, V_T = torch.from_numpy(out["U"][0]), torch.from_numpy(out["V"][0])
        drift = (pn.neuron_Q(U_T, V_T, activation) - Q0).abs()
        assert float(drift.max()) < 0.05 * float(q_normaliser(U, V, activation, "zero"))
        drifts.append(drift)
        assert float((U_T - U).abs().max()) > 1e-2  # the weights did move, far more than Q_a
    # A ReLU neuron with no positive entry keeps Q_a exactly (V gets no gradient), and one whose entry steps across 0
    # has an O(1) jump of its own: the neurons whose drift is not tiny are compared.
    active = drifts[0] > 0.05 * drifts[0].max()
    assert active.sum() >= K // 2
    for coarse, fine in zip(drifts, drifts[1:]):
        assert torch.allclose(coarse[active] / fine[active], torch.full_like(coarse[active], 2.0), rtol=0.15)


def test_the_per_neuron_conservation_test_can_fail():
    # |U[:, a]|^2 alone (no F term) is not conserved: its change does not shrink with lr
    U, V, Y = random_params(3)
    changes = []
    for lr in (0.02, 0.01):
        steps = int(round(2.0 / lr))
        out = gradient_descent(U[None], V[None], Y, lr, steps, activation="tanh", record_steps=[0, steps])
        changes.append(float((torch.from_numpy(out["U"][0]).square().sum(0) - U.square().sum(0)).abs().max()))
    assert changes[0] / changes[1] < 1.2


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_per_neuron_orbits_keep_the_function_and_move_the_statistics_as_intended(activation):
    U, V, _ = random_params(4, scale=0.3)
    moved_U, moved_V, lambdas = pn.per_neuron_orbits(U, V, activation)
    steps = pn.moved_points()
    assert moved_U.shape == (2 * len(steps), M, K) and lambdas.shape == (2 * len(steps), K)
    out = elementwise_output(U, V, activation)
    assert float((elementwise_output(moved_U, moved_V, activation) - out).abs().max()) < 1e-10 * float(out.abs().max())
    assert float(pn.training_gap(moved_U, moved_V, activation, U, V).max()) < 1e-10
    Q, moved = pn.neuron_Q(U, V, activation), pn.neuron_Q(moved_U, moved_V, activation)
    assert torch.allclose(moved, pn.orbit_targets(Q, steps), rtol=1e-9, atol=1e-9)  # every target reached
    stats = pn.neuron_statistics(moved_U, moved_V, activation)
    std = float(Q.std(unbiased=False))
    # both orbits: the spread times SPREAD_BASE^t; the sum moved by k c std, c = +SHIFT_SCALE t ("together") or -t
    for i, (t, sign) in enumerate([(t, 1) for t in steps] + [(t, -1) for t in steps]):
        assert float(stats["spread"][i]) == pytest.approx(pn.SPREAD_BASE ** t * std, rel=1e-8)
        assert float(stats["sum"][i]) == pytest.approx(float(Q.sum()) + K * sign * pn.SHIFT_SCALE * t * std, rel=1e-8)
    assert float((lambdas - 1).abs().max()) > 1e-3  # the neurons did move, each by its own lambda
    assert float(lambdas.std(dim=-1).min()) > 1e-4


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_statistic_varies_along_every_orbit(activation):
    """No statistic of the report is held fixed by the construction (issue: a statistic held constant where the value
    changes cannot predict, which handed the claim to the others): along each orbit (the network in the middle) the
    sum, the spread and min |Q_a| change in both conventions, and the sum and the spread move the same way on the
    "together" orbit and opposite ways on the "opposed" one. The edge distance changes where sigma's range has an
    edge and is 1 everywhere where it has none."""
    U, V, _ = random_params(7, scale=0.3)
    moved_U, moved_V, _ = pn.per_neuron_orbits(U, V, activation)
    for convention in ("paper", "zero"):
        stats = {k: pn.with_original(v.numpy(), pn.neuron_statistics(U, V, activation, convention)[k].numpy(), 0)
                 for k, v in pn.neuron_statistics(moved_U, moved_V, activation, convention).items()}  # [2, 5]
        for orbit in range(2):
            for key in ("sum", "spread", "min_abs"):
                assert np.ptp(stats[key][orbit]) > 1e-3 * np.abs(stats[key][orbit]).max(), (convention, orbit, key)
            assert (np.diff(stats["spread"][orbit]) > 0).all()
            assert (np.sign(np.diff(stats["sum"][orbit])) == (1, -1)[orbit]).all()
        low, high = ACTIVATIONS[activation].sigma_range
        if high < math.inf or -math.inf < low < 0:  # an edge the hidden values can approach
            assert (np.ptp(stats["edge_distance"], axis=-1) > 1e-6).all()
        else:
            assert (stats["edge_distance"] == 1).all()


def test_per_neuron_lambdas_are_not_capped_by_one_saturated_entry():
    """One lambda for all neurons stops at the most saturated entry of any neuron; per neuron, each stops only at its
    own. A neuron far from saturation can move much further than the network-wide cap."""
    U, V, _ = random_params(5, scale=0.3)
    V[0, 0] = 3.0  # one saturated tanh entry in neuron 0
    limits = neuron_limits(V, "tanh")
    assert float(limits[0]) < 1.01 and float(limits[1:].min()) > 1.1
    targets = pn.neuron_Q(U, V, "tanh") - 1.0  # every neuron one unit lower: lambda > 1 for all
    lambdas = pn.lambdas_for(U, V, "tanh", targets)
    assert float(lambdas[1:].max()) > 1.05 > float(limits[0])
    assert torch.all(lambdas < limits)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_edge_distance(activation):
    U, V, _ = random_params(6)
    distance = pn.edge_distance(V, activation)
    limits = neuron_limits(V, activation)
    assert torch.allclose(distance, torch.where(torch.isinf(limits), torch.ones_like(limits), 1 - 1 / limits))
    assert bool(((distance > 0) & (distance <= 1)).all())


@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS if math.isinf(ACTIVATIONS[a].sigma_range[1])])
def test_an_infinite_entry_on_a_side_without_an_edge_sets_no_limit(activation):
    """sigma(inf) = inf where sigma's range has no upper edge: that neuron can still move by any lambda (limit inf,
    edge distance 1), not NaN (inf / inf); its finite neighbour keeps its own limit."""
    V = torch.tensor([[math.inf, 0.5], [0.5, 0.5]], dtype=torch.float64)  # [n = 2, k = 2]
    assert torch.equal(neuron_limits(V, activation), neuron_limits(torch.full_like(V, 0.5), activation))
    assert torch.equal(pn.edge_distance(V, activation), pn.edge_distance(torch.full_like(V, 0.5), activation))


# ----------------------------------------------------------------------------------------------
# The normaliser: the size of Q's terms, entry by entry

def cancelling(U, V, activation):
    """The normaliser this package used before: 1/2 |U|^2 + |sum F(V)|, whose entries cancel."""
    act = ACTIVATIONS[activation]
    return act.paper_scale * (0.5 * U.square().sum() + act.F(V).sum().abs())


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_normaliser_is_the_size_of_the_terms_entry_by_entry(activation):
    U, V, _ = random_params(7)
    act = ACTIVATIONS[activation]
    expected = act.paper_scale * (0.5 * U.square().sum() + act.F(V).abs().sum())
    N0 = q_normaliser(U, V, activation, "zero")
    assert float(N0) == pytest.approx(float(expected), rel=1e-12)
    assert float(N0) >= abs(float(conserved_Q(U, V, activation, "zero")))
    # never smaller than |Q| of any network, nor than the sum of |Q_a|
    assert float(N0) >= float(pn.neuron_Q(U, V, activation).abs().sum()) - 1e-9


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_normaliser_does_not_cancel_where_F_changes_sign(activation):
    """F is negative below 0 for sigmoid and softplus: with V centred at 0 the entries of sum F cancel, so
    |sum F| is far smaller than sum |F|; the normaliser must be the latter."""
    U, V, _ = random_params(8, scale=1.0)
    N0 = float(q_normaliser(U, V, activation, "zero"))
    assert N0 > 2 * float(cancelling(U, V, activation))
    assert N0 > 2 * abs(float(conserved_Q(U, V, activation, "zero")))  # not merely |Q| either


def test_a_normaliser_smaller_than_Q_is_caught():
    # with small U, 1/2 |U|^2 + |sum F| can be smaller than |Q| = |1/2 |U|^2 - sum F| where sum F < 0
    U, V, _ = random_params(9, scale=0.1)
    V = V - 0.05  # sum F < 0 for sigmoid: F(x) = x + e^x - 1 < 0 below 0
    V = V * 10
    Q = abs(float(conserved_Q(U, V, "sigmoid", "zero")))
    assert float(q_normaliser(U, V, "sigmoid", "zero")) >= Q
    assert float(0.5 * U.square().sum()) < Q  # a normaliser of |U|^2 alone would be too small


# ----------------------------------------------------------------------------------------------
# The bound of Fig. 3

@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_curvature_of_Q_is_the_second_derivative_of_F(activation):
    _, V, _ = random_params(10)
    x = V.clone().requires_grad_()
    h = 1e-4
    F = ACTIVATIONS[activation].F
    second = (F(V + h) - 2 * F(V) + F(V - h)) / h ** 2
    far = (V.abs() > 10 * h)  # ReLU's F'' jumps at 0
    assert x.grad is None
    assert float(pn.curvature_of_Q(V, activation)) == pytest.approx(max(1.0, float(second[far].abs().max())), rel=1e-4)


def test_curvature_closed_forms():
    _, V, _ = random_params(11)
    assert float(pn.curvature_of_Q(V, "tanh")) == pytest.approx(float(torch.cosh(2 * V).max()), rel=1e-12)
    assert float(pn.curvature_of_Q(V, "sigmoid")) == pytest.approx(max(1.0, float(torch.exp(V).max())), rel=1e-12)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gd_drift_stays_within_the_first_order_bound(activation):
    U, V, Y = random_params(12)
    for lr in (0.05, 0.01):
        steps = int(round(2.0 / lr))
        out = gradient_descent(U[None], V[None], Y, lr, steps, activation=activation, loss_kind="squared",
                               record_steps=np.arange(steps + 1))
        mse = out["loss"][0] / (M * N)
        V_T = torch.from_numpy(out["V"][0])
        curvature = max(float(pn.curvature_of_Q(V, activation)), float(pn.curvature_of_Q(V_T, activation)))
        bound = pn.gd_drift_bound(activation, lr, mse[0] - mse.min(), curvature)
        drift = np.abs(out["Q"][0] - out["Q"][0, 0]).max()
        assert 1e-9 < drift <= bound
        # the bound is not vacuous (its worst-case curvature makes it loose for tanh: about 130 times here)
        assert bound < 1000 * drift


def test_off_data_gap_is_zero_for_linear_and_not_for_tanh():
    U, V, _ = random_params(13, scale=0.3)
    inputs = pn.off_data_inputs(N)
    assert inputs.shape == (N, pn.OFF_DATA_INPUTS)
    assert float(inputs.square().sum(0).mean()) == pytest.approx(1.0, rel=0.2)
    for activation, expected_zero in (("linear", True), ("tanh", False)):
        moved_U, moved_V, _ = pn.per_neuron_orbits(U, V, activation)
        gap = pn.off_data_gap(moved_U, moved_V, activation, U, V, inputs)
        assert bool((gap < 1e-12).all()) == expected_zero, (activation, gap)
        assert float(pn.training_gap(moved_U, moved_V, activation, U, V).max()) < 1e-12
    assert math.isfinite(float(gap.max()))


def test_with_original_places_the_network_in_the_middle():
    moved = np.arange(3 * 8).reshape(3, 8)
    full = pn.with_original(moved, -np.ones(3), 1)
    assert full.shape == (3, 2, 5)
    assert (full[:, :, 2] == -1).all() and full[0, 0].tolist() == [0, 1, -1, 2, 3] and full[0, 1].tolist() == [4, 5, -1, 6, 7]
    # Fig. 6's orbits: the ends only
    assert pn.with_original(np.arange(4)[None], -np.ones(1), 1)[0].tolist() == [[0, -1, 1], [2, -1, 3]]


def test_drift_bound_text_is_made_from_the_factor_the_code_applies(monkeypatch):
    """Fig. 3's printed bound (per_neuron.DRIFT_BOUND, in the script's settings and console line) states the factor
    HIGHER_ORDER that gd_drift_bound multiplies by."""
    assert pn.DRIFT_BOUND.startswith(f"{pn.HIGHER_ORDER:g} x ")
    base = pn.gd_drift_bound("linear", 0.1, 1.0, 1.0)
    assert base == pytest.approx(pn.HIGHER_ORDER * 0.1 / 2 * ACTIVATIONS["linear"].paper_scale)
    import importlib
    import Q_dynamics_elementwise as fig3
    args = fig3.make_parser().parse_args(["--quick", "--activations", "relu"])
    args.activations = ["relu"]
    settings = fig3.make_jobs(args)[0].settings
    assert pn.DRIFT_BOUND in settings["drift_bound_zero"] and settings["bound_higher_order"] == pn.HIGHER_ORDER
    importlib.reload(fig3)
