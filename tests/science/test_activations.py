"""The activation table (models.ACTIVATIONS): each entry's F, inverse, E[F], Q conventions and the
symmetry move, checked for every registered activation, so a new entry is tested without a new test."""
import math

import mpmath
import pytest
import torch
from scipy import integrate

from models import ACTIVATIONS, conserved_Q, elementwise_output, expected_Q, get_activation, move_along_symmetry, q_normaliser
from gfs.training import gradient_descent, squared_loss_hessian

NAMES = list(ACTIVATIONS)
F64 = torch.float64


def sigma_over_sigma_prime(act, x):
    """sigma(x) / sigma'(x) at the float x, sigma' by autograd (independent of the entry's F)."""
    t = torch.tensor(x, dtype=F64, requires_grad=True)
    value = act.sigma(t)
    (slope,) = torch.autograd.grad(value, t)
    return float((value / slope).detach())


def draw(seed, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", NAMES)
def test_F_is_the_integral_from_zero_of_sigma_over_sigma_prime(name):
    act = ACTIVATIONS[name]
    assert float(act.F(torch.zeros(1, dtype=F64))) == 0.0
    x = torch.linspace(-3, 3, 61, dtype=F64).requires_grad_()
    value = act.sigma(x)
    (slope,) = torch.autograd.grad(value.sum(), x)
    (dF,) = torch.autograd.grad(act.F(x).sum(), x)
    where = slope > 0  # ReLU: sigma' = 0 below 0, where sigma/sigma' is not defined
    assert where.sum() >= 30
    assert torch.allclose(dF[where], (value / slope)[where], rtol=1e-12, atol=1e-12)
    # F's values, not just its slope: against adaptive quadrature of sigma/sigma'
    for b in (-2.5, -0.7, 0.3, 1.0, 2.5):
        if sigma_over_sigma_prime(act, b) != sigma_over_sigma_prime(act, b):  # NaN: ReLU below 0
            continue
        reference, _ = integrate.quad(lambda t: sigma_over_sigma_prime(act, t), 0.0, b, epsabs=1e-13, epsrel=1e-13)
        assert float(act.F(torch.tensor(b, dtype=F64))) == pytest.approx(reference, rel=1e-10, abs=1e-12), b


def test_softplus_F_matches_a_high_precision_reference():
    mpmath.mp.dps = 40
    F = ACTIVATIONS["softplus"].F
    integrand = lambda t: mpmath.log1p(mpmath.exp(t)) * (1 + mpmath.exp(-t))  # noqa: E731  softplus / sigmoid
    for x in (-60.0, -40.0, -10.0, -1.0, -1e-3, 1e-3, 0.5, 3.0, 10.0, 40.0, 60.0):
        reference = float(mpmath.quad(integrand, [0, x]))
        ours = float(F(torch.tensor(x, dtype=F64)))
        assert abs(ours - reference) <= 1e-10 * max(1.0, abs(reference)), (x, ours, reference)


@pytest.mark.parametrize("name", NAMES)
def test_inverse_undoes_sigma_on_its_range(name):
    act = ACTIVATIONS[name]
    x = torch.linspace(-4, 4, 81, dtype=F64)
    y = act.sigma(x)
    low, high = act.sigma_range
    inside = (y > low) & (y < high)
    assert inside.sum() >= 40
    assert torch.allclose(act.inverse(y[inside]), x[inside], rtol=1e-10, atol=1e-10)


def paper_code_Q_and_normaliser(U, V, name):
    """The paper code's compute_Q and Fig. 3 normaliser, written out as it writes them."""
    uu = torch.trace(U.T @ U)
    if name == "linear":
        return uu - torch.trace(V.T @ V), uu + torch.trace(V.T @ V)
    if name == "relu":
        return uu - torch.relu(V).square().sum(), uu + torch.relu(V).square().sum()
    if name == "tanh":
        return uu - torch.cosh(V).square().sum(), uu + torch.cosh(V).square().sum()
    return 0.5 * uu - V.sum() - torch.exp(V).sum(), 0.5 * uu + V.sum() + torch.exp(V).sum()


@pytest.mark.parametrize("name", ["linear", "relu", "tanh", "sigmoid"])
def test_paper_convention_is_the_paper_codes_Q(name):
    U, V = draw(0, 5, 50, scale=0.7), draw(1, 10, 50, scale=0.7)
    Q, N0 = paper_code_Q_and_normaliser(U, V, name)
    assert float(conserved_Q(U, V, name)) == pytest.approx(float(Q), rel=1e-12, abs=1e-10)
    assert float(q_normaliser(U, V, name)) == pytest.approx(float(N0), rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_zero_convention_vanishes_at_zero_and_differs_by_a_constant(name):
    act = ACTIVATIONS[name]
    zeros_U, zeros_V = torch.zeros(3, 4, dtype=F64), torch.zeros(2, 4, dtype=F64)
    assert float(conserved_Q(zeros_U, zeros_V, name, convention="zero")) == 0.0
    U, V = draw(2, 3, 4), draw(3, 2, 4)
    shift = conserved_Q(U, V, name, convention="paper") - conserved_Q(U, V, name, convention="zero")
    assert float(shift) == pytest.approx(-act.paper_constant * 8, abs=1e-12)
    normaliser = float(q_normaliser(U, V, name, convention="zero"))
    assert normaliser >= abs(float(conserved_Q(U, V, name, convention="zero"))) - 1e-12
    with pytest.raises(ValueError, match="unknown Q convention"):
        conserved_Q(U, V, name, convention="shifted")


@pytest.mark.parametrize("name", [n for n in NAMES if ACTIVATIONS[n].expected_F is not None])
def test_expected_F_in_closed_form(name):
    act = ACTIVATIONS[name]
    for var in (0.01, 0.3, 1.0):
        s = math.sqrt(var)

        def weighted(x):  # F(x) times the normal density
            density = math.exp(-x * x / (2 * var)) / math.sqrt(2 * math.pi * var)
            return float(act.F(torch.tensor(x, dtype=F64))) * density
        reference = sum(integrate.quad(weighted, a, b, epsabs=1e-14, epsrel=1e-12)[0]
                        for a, b in ((-12 * s, 0.0), (0.0, 12 * s)))
        assert act.expected_F(var) == pytest.approx(reference, rel=1e-9, abs=1e-14), var


@pytest.mark.parametrize("name", [n for n in NAMES if ACTIVATIONS[n].expected_F is not None])
@pytest.mark.parametrize("convention", ["paper", "zero"])
def test_expected_Q_against_monte_carlo(name, convention):
    m, k, n, draws = 20, 30, 10, 4000
    u_var, v_var = 1 / k, 1 / n
    generator = torch.Generator().manual_seed(7)
    U = torch.randn(draws, m, k, generator=generator, dtype=F64) * math.sqrt(u_var)
    V = torch.randn(draws, n, k, generator=generator, dtype=F64) * math.sqrt(v_var)
    Q = conserved_Q(U, V, name, convention=convention).numpy()
    standard_error = Q.std() / math.sqrt(draws)
    assert abs(Q.mean() - expected_Q(name, m, k, n, u_var, v_var, convention)) < 4 * standard_error


def test_expected_Q_of_an_activation_without_closed_form_is_nan():
    assert math.isnan(expected_Q("softplus", 5, 5, 5, 0.1, 0.1))


@pytest.mark.parametrize("name", NAMES)
def test_symmetry_move_keeps_the_output_and_moves_Q(name):
    U, V = draw(4, 2, 5, 40, scale=0.5), draw(5, 2, 8, 40, scale=0.3)  # a batch of two networks
    lambdas = 0.8 + 0.45 * torch.rand(2, 40, generator=torch.Generator().manual_seed(6), dtype=F64)
    U1, V1 = move_along_symmetry(U, V, name, lambdas)
    out, out1 = elementwise_output(U, V, name), elementwise_output(U1, V1, name)
    assert (out1 - out).abs().max() < 1e-10 * max(1.0, float(out.abs().max()))
    assert (conserved_Q(U1, V1, name) - conserved_Q(U, V, name)).abs().min() > 1e-3  # another point of the orbit
    assert not torch.equal(V1, V)
    U_same, V_same = move_along_symmetry(U, V, name, torch.ones(40, dtype=F64))
    assert torch.equal(U_same, U) and torch.equal(V_same, V)
    if name == "relu":  # non-positive pre-activations carry no information and stay as they are
        assert torch.equal(V1[V <= 0], V[V <= 0])


@pytest.mark.parametrize("name", [n for n in NAMES if ACTIVATIONS[n].sigma_range != (-math.inf, math.inf)])
def test_symmetry_move_out_of_range_is_refused(name):
    U, V = draw(8, 3, 6, scale=0.5), draw(9, 4, 6, scale=0.5)
    with pytest.raises(ValueError, match="leaves .* range"):
        move_along_symmetry(U, V, name, torch.full((6,), -3.0, dtype=F64))
    with pytest.raises(ValueError, match="nonzero"):
        move_along_symmetry(U, V, name, torch.zeros(6, dtype=F64))


def test_unknown_activation_fails_with_one_line_naming_the_choices():
    U, V, Y = draw(10, 3, 4), draw(11, 2, 4), draw(12, 3, 2)
    calls = [lambda: get_activation("swish"), lambda: conserved_Q(U, V, "swish"),
             lambda: elementwise_output(U, V, "swish"), lambda: squared_loss_hessian(U, V, Y, "swish"),
             lambda: move_along_symmetry(U, V, "swish", torch.ones(4)),
             lambda: gradient_descent(U[None], V[None], Y, 0.1, 1, activation="swish")]
    for call in calls:
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and "'swish'" in message and ", ".join(ACTIVATIONS) in message
