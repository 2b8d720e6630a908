"""The batched closed-form trainer against plain autograd gradient descent."""
import numpy as np
import pytest
import torch
from torch import nn

torch.set_num_threads(1)  # tiny matrices: threads only add synchronisation cost

from gfs.runs.command_line import mark_diverged
from models import ACTIVATIONS, conserved_Q, elementwise_output, radial_output, radial_Q
from gfs.training import gradient_descent, record_schedule

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


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_float32_update_is_correctly_rounded(m):
    # Weights and target on a grid of 1/16: the residual and both gradient products are then exact
    # in float32, so each updated weight must be exactly the float32 rounding of its exact value.
    generator = torch.Generator().manual_seed(m)
    grid = lambda *shape: torch.randint(-8, 9, shape, generator=generator).float() / 16  # noqa: E731
    U, V, Y = grid(3, m, 50), grid(3, 10, 50), grid(m, 10)
    out = gradient_descent(U, V, Y, 1e-3, 1, activation="linear", record_steps=[0, 1])
    scale = float(torch.tensor(1e-3) * (2.0 / (m * 10)))  # the float32 step scale the trainer uses
    E = U.double() @ V.double().transpose(1, 2) - Y.double()
    exact_U = U.double() - scale * (E @ V.double())  # exact in float64: few significant bits
    exact_V = V.double() - scale * (E.transpose(1, 2) @ U.double())
    assert np.array_equal(out["U"], exact_U.float().double().numpy())
    assert np.array_equal(out["V"], exact_V.float().double().numpy())
    assert not np.array_equal(out["U"], U.double().numpy())  # the step did something


def paper_style_sgd(U, V, Y, lr, steps):
    """The paper's loop: autograd, nn.MSELoss, torch.optim.SGD (float32, linear net). Returns U, V."""
    net = TwoLayer(U, V, "elementwise", "linear")
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.MSELoss()(net(), Y).backward()
        optimizer.step()
    return net.U.detach(), net.V.detach()


@pytest.mark.parametrize("m", [1, 2, 3])
def test_float32_drift_of_Q_is_no_larger_than_the_paper_loops(m):
    # Small output dims once had a fused update that was not correctly rounded: Q drifted several
    # times faster in float32 than in the paper's code. Both against the same float64 run.
    generator = torch.Generator().manual_seed(m)
    U = 0.1 * torch.randn(2, m, 50, generator=generator)
    V = 0.1 * torch.randn(2, 10, 50, generator=generator)
    Y = torch.randn(m, 10, generator=generator)
    lr, steps = 0.002, 2000
    reference = gradient_descent(U.double(), V.double(), Y.double(), lr, steps, record_steps=[0, steps])["Q"][:, -1]
    ours = gradient_descent(U, V, Y, lr, steps, record_steps=[0, steps])["Q"][:, -1]
    paper = [float(conserved_Q(*(w.double() for w in paper_style_sgd(U[r], V[r], Y, lr, steps)), "linear"))
             for r in range(2)]
    drift_ours, drift_paper = np.abs(ours - reference).sum(), np.abs(np.array(paper) - reference).sum()
    assert drift_paper > 0
    assert drift_ours <= 1.5 * drift_paper, (drift_ours, drift_paper)


def test_recording_does_not_change_the_run(monkeypatch):
    from gfs import training
    U, V, Y = random_batch(6, runs=2, dtype=torch.float32)
    sparse = gradient_descent(U, V, Y, [0.05, 0.01], 500, activation="tanh", record_steps=[0, 200, 500])
    monkeypatch.setattr(training, "RECORD_CHUNK_ELEMENTS", 7 * 2 * (5 * 10 + 5 * 50 + 10 * 50))  # 7 records a chunk
    dense = gradient_descent(U, V, Y, [0.05, 0.01], 500, activation="tanh", record_steps=np.arange(501))
    assert np.array_equal(dense["U"], sparse["U"]) and np.array_equal(dense["V"], sparse["V"])
    for key in ("loss", "Q"):
        assert np.array_equal(dense[key][:, [0, 200, 500]], sparse[key])
        assert np.isfinite(dense[key]).all()
    # Q is recorded in float64 from the weights themselves
    final_Q = conserved_Q(torch.from_numpy(dense["U"]), torch.from_numpy(dense["V"]), "tanh").numpy()
    assert np.allclose(dense["Q"][:, -1], final_Q, rtol=1e-14, atol=0)


@pytest.mark.parametrize("model, activation", [("elementwise", "tanh"), ("radial", None)])
def test_compacted_batch_gives_each_run_the_steps_of_the_full_batch(monkeypatch, model, activation, capsys):
    """With stop_below the runs still training continue as a smaller batch (training.COMPACT_WHEN): each run's
    steps to the loss, its records up to then and its divergence are those of the batch that never compacts
    (float64; to round-off), and the loop stops no earlier than the slowest."""
    from gfs import training
    generator = torch.Generator().manual_seed(3)
    scales = torch.tensor([0.05, 0.3, 1.0, 0.1, 0.6, 0.02]).double()  # converge at very different steps
    U = torch.randn(6, 3, 4, generator=generator, dtype=torch.float64) * scales[:, None, None]
    V = torch.randn(6, 5, 4, generator=generator, dtype=torch.float64) * scales[:, None, None] + 0.3 * (model == "radial")
    Y = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    lr = torch.tensor([0.05, 0.04, 0.06, 0.05, 0.03, 40.0]).double()  # each its own; the last run diverges
    kwargs = dict(model=model, activation=activation or "linear", stop_below=0.3, record_steps=np.arange(3001))
    runs = {}
    for when in (0.0, training.COMPACT_WHEN):  # 0: never compacts
        monkeypatch.setattr(training, "COMPACT_WHEN", when)
        runs[when] = gradient_descent(U, V, Y, lr, 3000, **kwargs)
    never, compacted = runs[0.0], runs[training.COMPACT_WHEN]
    steps = {w: training.first_step_below(r["steps"], r["loss"], 0.3) for w, r in runs.items()}
    assert (steps[0.0] > 0).sum() >= 4 and len(set(steps[0.0][steps[0.0] > 0])) >= 4  # they do differ
    assert np.array_equal(steps[0.0], steps[training.COMPACT_WHEN])
    assert np.array_equal(never["diverged_at"], compacted["diverged_at"])
    assert (compacted["diverged_at"][-1] > 0) == (model == "elementwise")  # (the radial run at lr 40 does not)
    for r, s in enumerate(steps[0.0]):
        if s > 0:
            # tanh's vectorised kernel rounds a tensor's tail elements differently: equal to round-off
            assert np.allclose(never["loss"][r, :s + 1], compacted["loss"][r, :s + 1], rtol=1e-10, atol=0)
            assert np.allclose(never["Q"][r, :s + 1], compacted["Q"][r, :s + 1], rtol=1e-10, atol=1e-12)
    assert np.isnan(compacted["loss"][np.argmin(np.where(steps[0.0] > 0, steps[0.0], 10**9)), -1])  # left early
    assert compacted["trained_steps"] >= steps[0.0].max()
    assert ("run 5 diverged" in capsys.readouterr().err) == (model == "elementwise")  # its number in the batch
