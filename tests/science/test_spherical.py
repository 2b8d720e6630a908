"""Spherical coordinates, the R = r O matrix and the invertible single-sample action."""
import pytest
import torch

from gfs.cifar import symmetry
from gfs import spherical

TOL = 1e-10  # float64 throughout; every check is on absolute values


def mixed_sign_vectors(seed=0, count=200):
    """Seeded random vectors of sizes 2..9 with entries of both signs (as a list)."""
    generator = torch.Generator().manual_seed(seed)
    vectors = []
    for i in range(count):
        n = 2 + i % 8
        vectors.append(torch.randn(n, generator=generator, dtype=torch.float64) * (0.1 + 3 * torch.rand(1, generator=generator, dtype=torch.float64)))
    return vectors


def axis_vectors(max_n=6):
    """+-c e_k for every size and axis: the cases where the paper's version divides by zero."""
    vectors = []
    for n in range(2, max_n + 1):
        for k in range(n):
            for sign in (1.0, -1.0):
                z = torch.zeros(n, dtype=torch.float64)
                z[k] = sign * 2.5
                vectors.append(z)
    return vectors


ALL_VECTORS = mixed_sign_vectors() + axis_vectors() + [
    torch.tensor([0.3, -0.2, -0.5], dtype=torch.float64),  # the paper's code returns [.3, -.2, .5]
    torch.tensor([-1.0, 0.0, 0.0, 1e-12], dtype=torch.float64),
    torch.tensor([0.0, 0.0, -3.0, 4.0], dtype=torch.float64),
]


def test_round_trip_every_vector():
    for z in ALL_VECTORS:
        r, angles = spherical.to_spherical(z)
        assert torch.isfinite(angles).all(), z
        assert abs(float(r) - float(z.norm())) < TOL
        assert (angles[:-1] >= 0).all() and (angles[:-1] <= torch.pi).all()  # the polar angles
        assert (spherical.from_spherical(r, angles) - z).abs().max() < TOL, z


def test_negative_last_entry_keeps_its_sign():
    z = torch.tensor([0.3, -0.2, -0.5], dtype=torch.float64)
    back = spherical.from_spherical(*spherical.to_spherical(z))
    assert back[-1] < 0 and abs(float(back[-1]) + 0.5) < TOL


def test_batched_round_trip():
    z = torch.randn(5, 7, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r, angles = spherical.to_spherical(z)
    assert r.shape == (5, 7) and angles.shape == (5, 7, 3)
    assert (spherical.from_spherical(r, angles) - z).abs().max() < TOL
    R = spherical.r_matrix(z)
    assert R.shape == (5, 7, 4, 4)
    assert (R[..., :, 0] - z).abs().max() < TOL


def test_r_matrix_properties():
    for z in ALL_VECTORS:
        R = spherical.r_matrix(z)
        n, r2 = len(z), float(z.square().sum())
        assert (R @ R.T - r2 * torch.eye(n, dtype=torch.float64)).abs().max() < TOL * max(1.0, r2), z
        assert (R[:, 0] - z).abs().max() < TOL, z  # the first COLUMN is z
        assert torch.linalg.det(R) > 0, z
        assert abs(float(torch.linalg.det(R)) - r2 ** (n / 2)) < 1e-8 * r2 ** (n / 2)


def test_frame_columns_are_the_spherical_unit_vectors():
    """Where the coordinates are regular, column k + 1 of O is d z / d a_k normalised."""
    generator = torch.Generator().manual_seed(1)
    for n in (2, 3, 5, 8):
        angles = 0.2 + 2.7 * torch.rand(n - 1, generator=generator, dtype=torch.float64)  # away from 0, pi
        jacobian = torch.autograd.functional.jacobian(
            lambda a: spherical.from_spherical(torch.tensor(1.0, dtype=torch.float64), a), angles)
        O = spherical.spherical_frame(angles)
        directions = jacobian / jacobian.norm(dim=0, keepdim=True)
        assert (O[:, 1:] - directions).abs().max() < TOL
        assert (O[:, 0] - spherical.from_spherical(torch.tensor(1.0, dtype=torch.float64), angles)).abs().max() < TOL


def test_invertible_action_maps_sigma_gh_to_sigma_h():
    generator = torch.Generator().manual_seed(2)
    for n in (2, 4, 16):
        for _ in range(20):
            h = torch.randn(n, generator=generator, dtype=torch.float64)
            T = torch.randn(n, n, generator=generator, dtype=torch.float64) / n ** 0.5
            g = torch.linalg.matrix_exp(0.5 * T)
            sigma_h, sigma_gh = symmetry.relu_sqr(h), symmetry.relu_sqr(g @ h)
            pi = spherical.invertible_action(sigma_h, sigma_gh)
            assert (pi @ sigma_gh - sigma_h).abs().max() < TOL * max(1.0, float(sigma_h.abs().max()))
            # invertible and conformal: every singular value is |sigma(h)| / |sigma(gh)|
            singular = torch.linalg.svdvals(pi)
            ratio = float(sigma_h.norm() / sigma_gh.norm())
            assert (singular - ratio).abs().max() < 1e-9 * ratio
            assert torch.linalg.det(pi) > 0


def test_invertible_action_on_axis_vectors():
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    minus_e3 = torch.tensor([0.0, 0.0, -2.0], dtype=torch.float64)
    pi = spherical.invertible_action(minus_e3, e1)
    assert torch.isfinite(pi).all()
    assert (pi @ e1 - minus_e3).abs().max() < TOL
    pi_back = spherical.invertible_action(e1, minus_e3)
    assert (pi_back @ pi - torch.eye(3, dtype=torch.float64)).abs().max() < TOL


def test_too_short_vectors_are_rejected():
    with pytest.raises(ValueError):
        spherical.to_spherical(torch.tensor([1.0]))
