"""The batched closed-form trainer against plain autograd gradient descent."""
import numpy as np
import pytest
import torch
from torch import nn

torch.set_num_threads(1)  # tiny matrices: threads only add synchronisation cost

from models import (ACTIVATIONS, conserved_Q, elementwise_output, gradient_descent, mark_diverged,
                    radial_output, radial_Q, record_schedule)

MODELS = [("elementwise", a) for a in ACTIVATIONS] + [("radial", "linear")]


def random_batch(seed, runs, m=5, n=10, k=50, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    U = 0.5 * torch.randn(runs, m, k, generator=generator, dtype=dtype)
    V = 0.5 * torch.randn(runs, n, k, generator=generator, dtype=dtype)
    return U, V, torch.randn(m, n, generator=generator, dtype=dtype)


def output(model, activation, U, V):
    return radial_output(U, V) if model == "radial" else elementwise_output(U, V, activation)


class TwoLayer(nn.Module):
    """The paper's style of model: parameters U, V trained by autograd and torch.optim.SGD."""

    def __init__(self, U, V, model, activation):
        super().__init__()
        self.U, self.V = nn.Parameter(U.clone()), nn.Parameter(V.clone())
        self.model, self.activation = model, activation

    def forward(self):
        return output(self.model, self.activation, self.U, self.V)


def autograd_gd(U, V, Y, lr, steps, model, activation):
    net = TwoLayer(U, V, model, activation)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    losses, qs = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.MSELoss()(net(), Y)
        with torch.no_grad():
            losses.append(float((Y - net()).norm()))
            qs.append(float(radial_Q(net.U, net.V) if model == "radial" else conserved_Q(net.U, net.V, activation)))
        loss.backward()
        optimizer.step()
    return net.U.detach(), net.V.detach(), np.array(losses), np.array(qs)


@pytest.mark.parametrize("model,activation", MODELS)
def test_one_step_equals_autograd_gradient(model, activation):
    k = 5 if model == "radial" else 50
    U, V, Y = random_batch(0, runs=3, k=k)
    lrs = [0.1, 0.02, 0.005]
    out = gradient_descent(U, V, Y, lrs, 1, model=model, activation=activation, record_steps=[0, 1])
    for r, lr in enumerate(lrs):
        U_r, V_r = U[r].clone().requires_grad_(), V[r].clone().requires_grad_()
        grad_U, grad_V = torch.autograd.grad(nn.MSELoss()(output(model, activation, U_r, V_r), Y), (U_r, V_r))
        assert np.allclose(out["U"][r], (U[r] - lr * grad_U).numpy(), rtol=0, atol=1e-13)
        assert np.allclose(out["V"][r], (V[r] - lr * grad_V).numpy(), rtol=0, atol=1e-13)
        assert grad_V.abs().max() > 1e-4  # a real gradient was compared


@pytest.mark.parametrize("model,activation", MODELS)
def test_trajectory_equals_plain_autograd_loop(model, activation):
    k = 5 if model == "radial" else 50
    U, V, Y = random_batch(1, runs=2, k=k)
    lr, steps = (0.05 if model == "elementwise" else 0.01), 300
    out = gradient_descent(U, V, Y, lr, steps, model=model, activation=activation,
                           record_steps=np.arange(steps + 1))
    for r in range(2):
        U_ref, V_ref, losses, qs = autograd_gd(U[r], V[r], Y, lr, steps, model, activation)
        assert np.allclose(out["U"][r], U_ref.numpy(), rtol=1e-9, atol=1e-11)
        assert np.allclose(out["V"][r], V_ref.numpy(), rtol=1e-9, atol=1e-11)
        assert np.allclose(out["loss"][r, :steps], losses, rtol=1e-9)
        assert np.allclose(out["Q"][r, :steps], qs, rtol=1e-9, atol=1e-11)
        assert losses[-1] < losses[0]  # it trained


def test_float32_runs_match_float64_closely():
    U, V, Y = random_batch(2, runs=1)
    out64 = gradient_descent(U, V, Y, 0.05, 200, activation="tanh")
    out32 = gradient_descent(U.float(), V.float(), Y.float(), 0.05, 200, activation="tanh")
    assert np.allclose(out32["loss"], out64["loss"], rtol=1e-4)


def test_diverging_run_is_stopped_and_reported_while_others_continue(capsys):
    U, V, Y = random_batch(3, runs=2)
    out = gradient_descent(U, V, Y, [50.0, 0.01], 400, activation="linear")
    assert out["diverged_at"][0] >= 0 and out["diverged_at"][1] == -1
    assert np.isnan(out["loss"][0, -1]) and np.isfinite(out["loss"][1]).all()
    first_bad = np.flatnonzero(~np.isfinite(out["loss"][0]))[0]
    assert out["diverged_at"][0] == out["steps"][first_bad]  # the first non-finite record
    assert np.isfinite(out["loss"][0, :first_bad]).all()
    assert "run 0 diverged" in capsys.readouterr().err
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    mark_diverged(ax, out["steps"], out["loss"][0], out["diverged_at"][0], "C0")
    assert len(ax.lines) == 1 and ax.lines[0].get_marker() == "x"
    plt.close(fig)


def test_record_schedule_is_dense_early_and_fine_enough_later():
    steps = record_schedule(1_000_000)
    assert steps[0] == 0 and steps[-1] == 1_000_000 and np.all(np.diff(steps) > 0)
    assert np.array_equal(steps[:10_001], np.arange(10_001))
    gaps = np.diff(steps)
    assert np.all(gaps <= np.maximum(1, 1e-3 * steps[:-1]) + 1e-9)
    assert len(steps) < 40_000
    assert record_schedule(7).tolist() == list(range(8))


def test_bad_arguments_raise_clear_errors():
    U, V, Y = random_batch(4, runs=1)
    with pytest.raises(ValueError, match="unknown activation"):
        gradient_descent(U, V, Y, 0.1, 10, activation="swish")
    with pytest.raises(ValueError, match="positive integer"):
        gradient_descent(U, V, Y, 0.1, 0)
    with pytest.raises(ValueError, match="record_steps"):
        gradient_descent(U, V, Y, 0.1, 10, record_steps=[0, 20])
