"""Spherical coordinates and the invertible single-sample action of the paper's later algorithm:
to_spherical, from_spherical, spherical_frame, r_matrix, invertible_action.
"""

import torch


# ----------------------------------------------------------------------------------------------
# Spherical coordinates and the invertible single-sample action
#
# z = r (cos a1, sin a1 cos a2, ..., sin a1 ... sin a_{n-2} cos a_{n-1}, sin a1 ... sin a_{n-1}),
# a1 ... a_{n-2} in [0, pi], a_{n-1} in (-pi, pi]. The paper's version takes every angle from
# arccos, which loses the sign of the last entry, and divides by products of sines, which is NaN
# on axis vectors; atan2 of tail norms has neither problem. All functions accept leading batch
# dimensions; use float64 for tight round trips.

def to_spherical(z):
    """z [..., n] (n >= 2) -> (r [...], angles [..., n - 1])."""
    if z.shape[-1] < 2:
        raise ValueError("spherical coordinates need n >= 2 entries")
    squares = z.square()
    # tail[..., k] = |z[..., k + 1:]|
    tail = squares.flip(-1).cumsum(-1).flip(-1)[..., 1:].sqrt()
    r = squares.sum(-1).sqrt()
    angles = torch.atan2(tail[..., :-1], z[..., :-2])
    last = torch.atan2(z[..., -1], z[..., -2]).unsqueeze(-1)
    return r, torch.cat([angles, last], dim=-1)


def from_spherical(r, angles):
    """(r [...], angles [..., n - 1]) -> z [..., n]; the inverse of to_spherical."""
    ones = torch.ones_like(angles[..., :1])
    sin_products = torch.cat([ones, torch.cumprod(angles.sin(), dim=-1)], dim=-1)  # prod_{j<k} sin a_j
    cosines = torch.cat([angles.cos(), ones], dim=-1)
    return r.unsqueeze(-1) * sin_products * cosines


def spherical_frame(angles):
    """The orthonormal frame O [..., n, n] (det +1) of spherical coordinates at `angles` [..., n-1].

    Column 1 is the radial unit vector, column k + 1 the unit vector along d z / d a_k. Built as
    the product of plane rotations G_{n-1}(a_{n-1}) ... G_1(a_1) (G_k rotates e_k towards
    e_{k+1}), which is defined and smooth for every angle, axis vectors included.
    """
    n = angles.shape[-1] + 1
    O = torch.eye(n, dtype=angles.dtype, device=angles.device).expand(*angles.shape[:-1], n, n).clone()
    for k in range(n - 1):
        c, s = angles[..., k, None].cos(), angles[..., k, None].sin()
        row_k, row_next = O[..., k, :].clone(), O[..., k + 1, :].clone()
        O[..., k, :] = c * row_k - s * row_next
        O[..., k + 1, :] = s * row_k + c * row_next
    return O


def r_matrix(z):
    """R = r O for z [..., n]: R R^T = r^2 I, first column = z, det R > 0 (z nonzero)."""
    r, angles = to_spherical(z)
    return r[..., None, None] * spherical_frame(angles)


def invertible_action(sigma_h, sigma_gh):
    """pi(g, h) = R(sigma(h)) R(sigma(gh))^{-1}, an invertible (conformal) h x h matrix.

    sigma_h, sigma_gh: [..., n], nonzero. It satisfies pi @ sigma_gh = sigma_h, replacing the
    rank-one sigma(h) sigma(gh)^+ of a single sample by a genuine GL(n) element. R^{-1} = O^T / r.
    """
    r, angles = to_spherical(sigma_gh)
    R_inverse = spherical_frame(angles).transpose(-1, -2) / r[..., None, None]
    return r_matrix(sigma_h) @ R_inverse
