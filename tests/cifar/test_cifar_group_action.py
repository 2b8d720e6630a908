"""The group-action layer: an exact symmetry on the data pi is fitted on, the identity as eps -> 0."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from gfs.cifar import cnn
from gfs.cifar import symmetry
from gfs.cifar import ensembles

HIDDEN = 16


def model_and_features(num_images=200, seed=0):
    """An (untrained) CNN and the pre-activations H of random images: the symmetry holds for any weights."""
    model = cnn.make_cnn(hidden=HIDDEN, seed=seed, fit_noise=0.0)
    with torch.no_grad():  # confident outputs, so that probabilities are sensitive to the hidden layer
        model.features[6].weight.mul_(10.0)  # pre-activations of order 1, like a trained net's
        model.readout.weight.mul_(10.0)
    images = torch.rand(num_images, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return model, cnn.compute_features(model, images), images


def test_network_layout_matches_the_paper():
    """Pool-then-LeakyReLU and channels-last are the paper's Conv-LeakyReLU-MaxPool on x - 0.5."""
    model, _, images = model_and_features(8)
    conv, linear = model.features[2], model.features[6]
    paper_order = nn.Sequential(conv, nn.LeakyReLU(0.01), nn.MaxPool2d(2), nn.Flatten(), linear)
    assert torch.allclose(model.features(images), paper_order(images - 0.5), atol=1e-6)
    assert linear.in_features == 8192 and linear.out_features == HIDDEN
    assert isinstance(model.head(torch.zeros(2, HIDDEN)), torch.Tensor)
    assert torch.allclose(model(images).sum(dim=1), torch.ones(8), atol=1e-6)  # softmax output
    logits_model = cnn.make_cnn(softmax_output=False)
    assert not torch.allclose(logits_model(images).sum(dim=1), torch.ones(8), atol=1e-2)


def test_relu_sqr_is_the_papers_activation():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    expected = torch.where(x > 0, x, 0.1 * x) ** 2 + 0.01 * x
    assert torch.allclose(symmetry.relu_sqr(x), expected)
    assert symmetry.relu_sqr(torch.tensor(-0.5)) < 0  # non-monotone on (-1, 0)


def logits(model, features, mode, generator=None):
    """Readout of the hidden activations: [1, B, 10] for 'plain', [num_g, B, 10] for an ensemble."""
    layer = model.group_action
    if mode == "plain":
        return model.readout(layer.sigma(features)).unsqueeze(0)
    return model.readout(layer.members(features, mode, generator))


def relative_gap(a, b):
    """max |a - b| / max |b|: float32 round-off gives ~1e-6 to 1e-4 here, a real change ~1e-2 or more."""
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("eps", [0.1, 1.0])
@torch.no_grad()
def test_moved_network_equals_original_on_fit_batches(eps):
    num_g = 6
    model, features, _ = model_and_features()
    layer = ensembles.fit_group_action(model, features, num_g, eps, seed=3)
    original = logits(model, features, "plain")[0]
    moved = logits(model, features, "group")  # [num_g, B, 10]
    for n in range(num_g):
        rows = slice(n * HIDDEN, (n + 1) * HIDDEN)  # member n was fitted on these images
        assert relative_gap(moved[n, rows], original[rows]) < 1e-3, n
    # ... while its weights differ: V' = g^T V (the Linear(8192, h) rows) and U' = U pi^T.
    V, U = model.features[6].weight, model.readout.weight
    for n in range(num_g):
        assert (layer.g[n].T @ V - V).norm() > 0.05 * V.norm()
        assert (U @ layer.pi[n].T - U).norm() > 0.05 * U.norm()
    # On images pi never saw, the symmetry is only approximate (the point of the ensemble).
    new = slice(num_g * HIDDEN, None)
    assert relative_gap(moved[:, new], original[new].expand_as(moved[:, new])) > 1e-2


@torch.no_grad()
def test_full_model_forward_matches_feature_path():
    """model(x) in an ensemble mode gives the same members as the fast feature-only path."""
    model, features, images = model_and_features(40)
    ensembles.fit_group_action(model, features, 2, 0.5, seed=1)
    for mode in ("group", "g_inverse"):
        model.group_action.set_mode(mode)
        out = model(images[:10])
        assert out.shape == (2 * 10, 10) and out.dtype == torch.float32
        assert torch.allclose(out.sum(dim=1), torch.ones(20), atol=1e-5)
        members = model.members(images[:10], mode)
        assert members.shape == (2, 10, 10)
        assert torch.allclose(out.reshape(2, 10, 10), members, atol=1e-6)
        fast = member_logits_of(model, features[:10], mode).softmax(dim=-1)
        assert fast.shape == (2, 10, 10) and fast.dtype == torch.float32
        assert (members - fast).abs().max() < 1e-3
    model.group_action.set_mode("plain")
    assert model(images[:10]).shape == (10, 10)


def member_logits_of(model, features, mode):
    """Every member's logits [M, B, C] on features [B, h], one draw of the mode's member matrices."""
    return ensembles.member_logits(model, features, *model.group_action.member_matrices(mode))


def accuracy_of(logits, labels):
    """evaluate_ensemble's dict for given member logits [M, B, C] (its tally of one chunk)."""
    return ensembles._accuracies(*ensembles._tally(logits), labels, logits.shape[0])


def test_modes_are_validated():
    model, _, _ = model_and_features(8)
    with pytest.raises(ValueError):
        model.group_action.set_mode("rotate")
    with pytest.raises(RuntimeError):  # group needs a fitted pi
        model.group_action.set_mode("group")


@torch.no_grad()
def test_small_eps_gives_the_original_network():
    model, features, _ = model_and_features()
    unseen = features[64:]
    original = logits(model, unseen, "plain")
    ensembles.fit_group_action(model, features, 4, 1e-6, seed=0)
    generator = torch.Generator().manual_seed(0)
    for mode in ("group", "g_inverse", "perm_interp", "random"):
        members = logits(model, unseen, mode, generator)
        # pi = sigma(Hg)^-1 sigma(H) amplifies eps by the condition number of sigma(H) (~1e4 for
        # these random features), hence the looser bound for 'group'.
        assert relative_gap(members, original.expand_as(members)) < (1e-3 if mode == "group" else 1e-5), mode
    # shuffle pairs g with a row-permuted pi, a permutation of the hidden units: not the original.
    shuffled = logits(model, unseen, "shuffle", generator)
    assert relative_gap(shuffled, original.expand_as(shuffled)) > 0.1


@torch.no_grad()
def test_ensembles_drift_away_with_eps():
    model, features, _ = model_and_features()
    unseen = features[64:]
    original = logits(model, unseen, "plain")
    gaps = []
    for eps in (1e-5, 1e-4, 1e-3):
        ensembles.fit_group_action(model, features, 4, eps, seed=0)
        gaps.append(relative_gap(logits(model, unseen, "group"), original.expand(4, -1, -1)))
    # first order in eps: ten times eps, ten times the change
    assert 5 < gaps[1] / gaps[0] < 20 and 5 < gaps[2] / gaps[1] < 20


def test_overflow_is_detected_not_silent():
    """At large eps expm(eps T) overflows float32 (paper B9); the cell must be flagged, not poisoned."""
    model, features, _ = model_and_features()
    ensembles.fit_group_action(model, features, 4, 200.0, seed=0)
    assert not torch.isfinite(model.group_action.g).all()
    logits = member_logits_of(model, features[64:], "group")
    assert logits.shape == (4, len(features) - 64, 10)
    zeros = torch.zeros(len(features) - 64, dtype=torch.long)
    result = accuracy_of(logits, zeros)
    chunked = ensembles.evaluate_ensemble(model, features[64:], zeros, "group", chunk=7)  # the same, in chunks
    for key in ("vote_acc", "mean_acc", "finite_frac"):
        assert result[key] == pytest.approx(chunked[key])
    np.testing.assert_array_equal(result["mean_correct"], chunked["mean_correct"])
    assert result["finite_frac"] < 1.0
    assert np.isfinite(result["vote_acc"]) and np.isfinite(result["mean_acc"])

    labels = torch.arange(len(features) - 64) % 10
    grid = ensembles.evaluate_grid(model, features[64:], labels, features[:64], [2, 4], [200.0, 1e-3],
                               seed=0)
    assert grid["overflow_group"][0].any() and not grid["overflow_group"][1].any()
    assert grid["vote_acc_group"].shape == (2, 2)
    assert np.isfinite(grid["vote_acc_group"]).all()
    for key in ("num_g", "group_scale", "original_acc", "original_mean_acc"):
        assert key in grid
    for mode in symmetry.ENSEMBLE_MODES:
        assert grid[f"overflow_{mode}"].dtype == bool


def test_vote_mean_and_nonfinite_members():
    labels = torch.tensor([0, 1])
    # three members: two vote for the right class weakly, one for the wrong class strongly
    probabilities = torch.tensor([
        [[0.6, 0.4], [0.4, 0.6]],
        [[0.6, 0.4], [0.4, 0.6]],
        [[0.01, 0.99], [0.99, 0.01]],
    ])
    result = accuracy_of(probabilities.log(), labels)  # logits with these softmaxes
    assert result["vote_acc"] == 1.0      # majority vote: 2 of 3 right on both images
    assert result["mean_acc"] == 0.0      # mean probability: 0.4 vs 0.6, wrong on both
    assert result["finite_frac"] == 1.0
    # A NaN member is left out (the paper let it vote for class 0).
    with_nan = torch.cat([probabilities[:1].log(), torch.full((2, 2, 2), float("nan"))])
    result = accuracy_of(with_nan, torch.tensor([1, 1]))
    assert result["vote_acc"] == 0.5 and result["finite_frac"] == pytest.approx(1 / 3)


def test_group_elements_are_seeded_and_shaped():
    model, features, _ = model_and_features(80)
    layer = ensembles.fit_group_action(model, features, 5, 0.3, seed=7)
    g_first, pi_first = layer.g.clone(), layer.pi.clone()
    assert layer.g.shape == (5, HIDDEN, HIDDEN) and layer.pi.shape == (5, HIDDEN, HIDDEN)
    assert layer.g.dtype == torch.float32 and layer.pi.dtype == torch.float32
    assert torch.allclose(layer.g, torch.linalg.matrix_exp(0.3 * layer.T))
    # T ~ N(0, 1/h): its entries have variance about 1/h
    assert abs(float(layer.T.var()) * HIDDEN - 1.0) < 0.2
    layer = ensembles.fit_group_action(model, features, 5, 0.3, seed=7)
    assert torch.equal(layer.g, g_first) and torch.equal(layer.pi, pi_first)
    layer = ensembles.fit_group_action(model, features, 5, 0.3, seed=8)
    assert not torch.equal(layer.g, g_first)
    with pytest.raises(ValueError):
        ensembles.fit_group_action(model, features, 6, 0.3)  # needs 96 images, has 80


def test_pi_composes_like_a_group_action():
    """pi(g1 g2, H) = pi(g2, H g1) pi(g1, H) for square, full-rank batches (row-major convention)."""
    torch.manual_seed(0)
    sigma = symmetry.relu_sqr
    H = torch.randn(HIDDEN, HIDDEN, dtype=torch.float64)
    g1 = torch.linalg.matrix_exp(0.3 * torch.randn(HIDDEN, HIDDEN, dtype=torch.float64) / 4)
    g2 = torch.linalg.matrix_exp(0.3 * torch.randn(HIDDEN, HIDDEN, dtype=torch.float64) / 4)
    pi = lambda g, H: torch.linalg.lstsq(sigma(H @ g), sigma(H)).solution
    assert torch.allclose(pi(g1 @ g2, H), pi(g2, H @ g1) @ pi(g1, H), atol=1e-8)
