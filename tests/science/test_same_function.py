"""Same function, different Q: the per-neuron symmetry move, the orbit walked by the same-function experiments, the
Gauss-Newton eigenvalues they use, and the seeds of the training scripts."""
import math

import numpy as np
import pytest
import torch

from models import ACTIVATIONS, PAPER_SEED, conserved_Q, elementwise_output, get_activation, move_along_symmetry, orbit_scales, paper_init, paper_normal, symmetry_limit
from gfs.training import gauss_newton_eigenvalues, gradient_descent, gradient_descent_seeds, squared_loss_hessian

F64 = torch.float64
PAPER = ["linear", "relu", "tanh", "sigmoid"]
# F(sigma^-1(y)), written in terms of the hidden value y = sigma(v): Q after the move is known without the inverse
F_OF_HIDDEN = {"linear": lambda y: y ** 2 / 2, "relu": lambda y: y ** 2 / 2,
               "tanh": lambda y: y ** 2 / (2 * (1 - y ** 2)),                   # sinh^2(atanh y) / 2
               "sigmoid": lambda y: torch.log(y / (1 - y)) + y / (1 - y) - 1}   # logit y + e^(logit y) - 1


def draw(seed, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", PAPER)
def test_symmetry_move_keeps_the_output_and_changes_Q_by_the_intended_amount(name):
    act = get_activation(name)
    U, V = draw(1, 5, 50, scale=0.5), draw(2, 10, 50, scale=0.5)
    lambdas = 0.5 + 0.5 * torch.rand(50, generator=torch.Generator().manual_seed(3), dtype=F64)  # inside every range
    U1, V1 = move_along_symmetry(U, V, name, lambdas)
    out, out1 = elementwise_output(U, V, name), elementwise_output(U1, V1, name)
    assert float((out1 - out).abs().max() / out.abs().max()) < 1e-10
    # Q after the move from the hidden values lambda_a sigma(V[:, a]) and U[:, a] / lambda_a, in closed form
    hidden = lambdas * act.sigma(V)
    moved = F_OF_HIDDEN[name](hidden)
    if name == "relu":
        moved = torch.where(V > 0, moved, torch.zeros_like(moved))  # F = 0 below 0, where the move keeps V
    expected = act.paper_scale * (0.5 * (U / lambdas).square().sum() - moved.sum())
    assert float(conserved_Q(U1, V1, name, "zero")) == pytest.approx(float(expected), rel=1e-10, abs=1e-10)
    assert abs(float(expected - conserved_Q(U, V, name, "zero"))) > 1.0  # and that is another Q


@pytest.mark.parametrize("name", PAPER)
def test_the_moved_minimum_keeps_the_loss_at_its_minimum(name):
    """A trained minimum moved along the orbit: the loss stays (float64), Q and the sharpness move."""
    U0, V0 = paper_init(4, 3, 20, [0.5])
    Y = elementwise_output(draw(4, 4, 20), draw(5, 3, 20, scale=0.5), name)  # a target the net can fit exactly
    result = gradient_descent(U0[0].double(), V0[0].double(), Y, 0.05, 6000, activation=name, loss_kind="squared",
                              record_steps=[0, 6000])
    U, V = torch.from_numpy(result["U"][0]), torch.from_numpy(result["V"][0])
    loss = float((Y - elementwise_output(U, V, name)).square().sum())
    assert loss < 1e-8
    lambdas = orbit_scales(V, name, 1 / 4, 4.0)
    U1, V1 = move_along_symmetry(U, V, name, lambdas[:, None].expand(-1, 20))  # [L, m, k]: one point per lambda
    moved_loss = (Y - elementwise_output(U1, V1, name)).square().sum(dim=(-1, -2))
    assert float((moved_loss - loss).abs().max()) < 1e-12
    Q = conserved_Q(U1, V1, name, "zero")
    assert float(Q.max() - Q.min()) > 1.0 and bool((Q[1:] < Q[:-1]).all())  # Q falls along lambda


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_orbit_scales_stay_inside_sigmas_range(name):
    V = draw(6, 3, 10, 50, scale=1.5)  # three networks
    limit = symmetry_limit(V, name)
    low, high = ACTIVATIONS[name].sigma_range
    assert bool(torch.isinf(limit).all()) == (high == math.inf and low in (0.0, -math.inf))
    lambdas = orbit_scales(V, name, 1 / 4, 4.0)
    assert lambdas.shape == (3, 7) and bool((lambdas[:, 3] == 1).all()) and bool((lambdas.diff(dim=1) > 0).all())
    assert bool((lambdas[:, -1] <= torch.minimum(torch.full_like(limit, 4.0), limit)).all())
    U = draw(7, 3, 5, 50)
    move_along_symmetry(U[:, None], V[:, None], name, lambdas[..., None].expand(-1, -1, 50))  # raises if outside
    if torch.isfinite(limit).all():  # just past the limit, the move leaves the range
        with pytest.raises(ValueError, match="leaves"):
            move_along_symmetry(U, V, name, (limit * 1.001)[:, None].expand(-1, 50))


@pytest.mark.parametrize("name", PAPER)
def test_gauss_newton_eigenvalues_are_the_hessians_at_a_zero_loss_minimum(name):
    U, V = draw(8, 2, 6, 12, scale=0.7), draw(9, 2, 3, 12, scale=0.7)
    for u, v, top in zip(U, V, gauss_newton_eigenvalues(U, V, name)):
        Y = elementwise_output(u, v, name)  # the loss is exactly 0 here
        hessian = torch.linalg.eigvalsh(squared_loss_hessian(u, v, Y, name))
        assert torch.allclose(top, hessian[-len(top):], rtol=1e-9, atol=1e-9)
        assert float(hessian[:-len(top)].abs().max()) < 1e-9  # the rest is flat


def test_seeds_draw_the_papers_recipe_with_other_torch_seeds():
    U, V = paper_init(5, 10, 50, [0.01, 0.1], seeds=3)
    assert U.shape == (3, 2, 5, 50) and V.shape == (3, 2, 10, 50)
    assert torch.equal(U[0, 1], paper_normal(5, 50, 0.1)) and torch.equal(V[2, 0], paper_normal(10, 50, 0.01,
                                                                                                   seed=PAPER_SEED + 2))
    assert torch.equal(U[1, 1], 10 * U[1, 0]) or torch.allclose(U[1, 1], 10 * U[1, 0])  # one draw, two scales
    assert not torch.allclose(U[0], U[1])


@pytest.mark.parametrize("name", ["linear", "sigmoid"])
def test_seed_0_does_not_depend_on_the_number_of_seeds(name):
    """gradient_descent_seeds trains seed 0 alone: bit for bit a single-seed run (sigmoid's vectorised kernels
    would round it differently inside a larger batch); seeds 1.. stop early when asked, with the same crossings."""
    U, V = paper_init(5, 10, 50, [0.1, 1.0], seeds=3)
    Y = paper_normal(5, 10, 1.0)
    lr = [0.1, 0.05]  # one per run of a seed
    alone = gradient_descent(U[0], V[0], Y, lr, 1500, activation=name)
    together = gradient_descent_seeds(U, V, Y, lr, 1500, activation=name, rest_stop_below=2.0)
    assert np.array_equal(alone["loss"], together["loss"][0]) and np.array_equal(alone["Q"], together["Q"][0])
    assert together["loss"].shape == (3, 2, len(alone["steps"])) and together["diverged_at"].shape == (3, 2)
    rest = gradient_descent(U[1:].flatten(0, 1), V[1:].flatten(0, 1), Y, lr * 2, 1500, activation=name)
    crossing = lambda loss: np.where((loss < 2.0).any(-1), (loss < 2.0).argmax(-1), -1)  # noqa: E731
    assert np.array_equal(crossing(together["loss"][1:].reshape(4, -1)), crossing(rest["loss"]))
    assert together["trained_steps"][1] < 1500 and np.isnan(together["loss"][1:, :, -1]).all()
