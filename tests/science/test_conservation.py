"""Conservation laws of gradient flow and their breaking by gradient descent (float64)."""
import numpy as np
import pytest
import torch

from models import ACTIVATIONS, conserved_Q, elementwise_output, get_activation, radial_output, radial_Q
from gfs.training import gradient_descent, squared_loss_hessian

M, N, K = 5, 10, 50


def random_params(seed, m=M, n=N, k=K, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    return scale * draw(m, k), scale * draw(n, k), draw(m, n)


def mse(U, V, Y, activation):
    out = radial_output(U, V) if activation == "radial" else elementwise_output(U, V, activation)
    return (Y - out).square().mean()


def gradients(function, U, V):
    U, V = U.clone().requires_grad_(), V.clone().requires_grad_()
    return torch.autograd.grad(function(U, V), (U, V))


def flat(*tensors):
    return torch.cat([t.flatten() for t in tensors])


@pytest.mark.parametrize("activation", list(ACTIVATIONS) + ["radial"])
def test_gradient_of_Q_is_orthogonal_to_gradient_of_loss(activation):
    for seed in range(3):
        U, V, Y = random_params(seed, k=5 if activation == "radial" else K)
        q_of = (lambda U, V: radial_Q(U, V)) if activation == "radial" else (lambda U, V: conserved_Q(U, V, activation))
        grad_Q = flat(*gradients(q_of, U, V))
        grad_L = flat(*gradients(lambda U, V: mse(U, V, Y, activation), U, V))
        cosine = torch.dot(grad_Q, grad_L) / (grad_Q.norm() * grad_L.norm())
        assert abs(cosine) < 1e-12, (activation, float(cosine))


def test_a_non_conserved_quantity_is_not_orthogonal():
    # The check above can fail: |U|^2 + |V|^2 is not conserved for the linear net.
    U, V, Y = random_params(0)
    grad_S = flat(*gradients(lambda U, V: U.square().sum() + V.square().sum(), U, V))
    grad_L = flat(*gradients(lambda U, V: mse(U, V, Y, "linear"), U, V))
    assert abs(torch.dot(grad_S, grad_L) / (grad_S.norm() * grad_L.norm())) > 1e-3


def test_linear_gd_step_changes_Q_by_exactly_lr_squared_term():
    U, V, Y = random_params(1)
    for lr in (0.3, 0.05, 1e-3):
        grad_U, grad_V = gradients(lambda U, V: mse(U, V, Y, "linear"), U, V)
        out = gradient_descent(U[None], V[None], Y, lr, 1, activation="linear", record_steps=[0, 1])
        change = out["Q"][0, 1] - out["Q"][0, 0]
        predicted = lr ** 2 * float(grad_U.square().sum() - grad_V.square().sum())
        assert change == pytest.approx(predicted, rel=1e-8, abs=1e-14)
        assert abs(predicted) > 1e-10  # the identity is not trivially 0 = 0


@pytest.mark.parametrize("activation", list(ACTIVATIONS) + ["radial"])
def test_drift_of_Q_over_fixed_flow_time_is_proportional_to_step_size(activation):
    model = "radial" if activation == "radial" else "elementwise"
    U, V, Y = random_params(2, k=5 if model == "radial" else K, scale=0.5 if model == "elementwise" else 1.0)
    flow_time = 2.0 if model == "elementwise" else 50.0
    drifts = []
    for lr in (0.02, 0.01, 0.005) if model == "elementwise" else (1.0, 0.5, 0.25):
        steps = int(round(flow_time / lr))
        out = gradient_descent(U[None], V[None], Y, lr, steps, model=model, activation=activation,
                               record_steps=[0, steps])
        drifts.append(abs(out["Q"][0, 1] - out["Q"][0, 0]))
    assert drifts[0] > 1e-8
    assert drifts[0] / drifts[1] == pytest.approx(2.0, rel=0.1)
    assert drifts[1] / drifts[2] == pytest.approx(2.0, rel=0.1)


def test_radial_sum_of_squared_norms_is_conserved_per_neuron():
    U, V, Y = random_params(3, k=5, scale=1.0)
    out = gradient_descent(U[None], V[None], Y, 1e-3, 2000, model="radial", record_steps=[0, 2000])
    U1, V1 = torch.from_numpy(out["U"][0]), torch.from_numpy(out["V"][0])
    per_neuron_0 = U.square().sum(0) + V.square().sum(0)
    per_neuron_1 = U1.square().sum(0) + V1.square().sum(0)
    assert torch.allclose(per_neuron_0, per_neuron_1, rtol=1e-5)
    assert not torch.allclose(U, U1, rtol=1e-3)  # the weights did move
    assert out["loss"][0, 1] < out["loss"][0, 0]


def test_linear_hessian_matches_closed_form():
    m, n, k = 4, 3, 6
    U, V, Y = random_params(4, m=m, n=n, k=k)
    E = (U @ V.T - Y).numpy()
    # d out_ij / dU_ab = delta_ia V_jb ; d out_ij / dV_cb = delta_jc U_ib
    J = np.zeros((m * n, (m + n) * k))
    for i in range(m):
        for j in range(n):
            for b in range(k):
                J[i * n + j, i * k + b] = V[j, b]
                J[i * n + j, m * k + j * k + b] = U[i, b]
    H = 2 * J.T @ J
    # The second differential 4 <E, dU dV^T> puts 2 E_ij at (U_ib, V_jb) and at (V_jb, U_ib).
    for i in range(m):
        for j in range(n):
            for b in range(k):
                H[i * k + b, m * k + j * k + b] += 2 * E[i, j]
                H[m * k + j * k + b, i * k + b] += 2 * E[i, j]
    assert np.allclose(squared_loss_hessian(U, V, Y, "linear").numpy(), H, atol=1e-10)


def previous_hessian(U, V, Y, activation):
    """The implementation before torch.func: torch.autograd.functional.hessian, one double-backward
    per row. Kept here as the reference (and timed against the new one in benchmarks/)."""
    m, k = U.shape
    sigma = get_activation(activation).sigma
    Y = torch.as_tensor(Y, dtype=torch.float64)

    def loss(flat):
        U_, V_ = flat[: m * k].reshape(m, k), flat[m * k:].reshape(-1, k)
        return (Y - U_ @ sigma(V_).T).square().sum()

    flat = torch.cat([torch.as_tensor(U, dtype=torch.float64).flatten(),
                      torch.as_tensor(V, dtype=torch.float64).flatten()])
    H = torch.autograd.functional.hessian(loss, flat)
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_hessian_equals_the_previous_implementation(activation):
    U, V, Y = random_params(5, m=10, n=5, k=50)  # Fig. 9's sizes: 750 weights
    H = squared_loss_hessian(U, V, Y, activation)
    reference = previous_hessian(U, V, Y, activation)
    assert H.shape == (750, 750) and torch.equal(H, H.T)
    assert (H - reference).abs().max() <= 1e-12 * max(1.0, float(reference.abs().max()))
    assert reference.abs().max() > 1.0  # a real Hessian was compared
