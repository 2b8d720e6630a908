"""Agreement off the fitting images (ensembles.py): known values, and the fit-size experiment."""
import numpy as np
import torch

from gfs.cifar import cnn
from gfs.cifar import ensembles


def model_and_features(n=400, seed=0):
    model = cnn.make_cnn("leaky_relu", 16, softmax_output=False, seed=seed, fit_noise=0.0, numerics="exact")
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return model, cnn.compute_features(model, images)


@torch.no_grad()
def test_a_member_equal_to_the_original_agrees_everywhere():
    model, features = model_and_features()
    eye = torch.eye(16, dtype=torch.float64)[None].repeat(2, 1, 1)
    measured = ensembles.held_out_agreement(model, features, eye, eye, chunk=64)
    assert measured["agreement"] == 1.0 and measured["agreement_min"] == 1.0
    assert measured["gap_p90"] < 1e-12 and measured["nonfinite"] == 0.0


@torch.no_grad()
def test_a_non_finite_member_disagrees_even_where_its_argmax_is_the_original_class():
    """A member whose outputs are not finite (an overflowed g or pi) disagrees on every image, and its gap is inf.
    Its NaN logits have argmax 0 (torch ranks NaN highest), and the original predicts class 0 everywhere here, so
    only the finiteness mask keeps it from counting as agreeing."""
    model, features = model_and_features(200)
    model.readout.bias[0] += 1e3  # the original predicts class 0 on every image
    eye = torch.eye(16, dtype=torch.float64)
    nan_member = torch.full((16, 16), float("nan"), dtype=torch.float64)
    lower, upper = torch.stack([eye, eye]), torch.stack([eye, nan_member])
    logits = ensembles.member_logits(model, features, lower, upper)
    assert bool((logits[0].argmax(dim=-1) == 0).all()) and bool((logits[1].argmax(dim=-1) == 0).all())
    measured = ensembles.held_out_agreement(model, features, lower, upper, chunk=64)
    assert measured["agreement"] == 0.5 and measured["agreement_min"] == 0.0  # members 1.0 and 0.0
    assert measured["nonfinite"] == 0.5 and measured["gap_p90"] == np.inf and measured["gap_p10"] < 1e-12
    assert measured["saturated"] <= 0.5  # only the finite member can count as saturated


@torch.no_grad()
def test_a_head_with_two_classes_swapped_gives_the_known_agreement():
    model, features = model_and_features()
    model.readout.bias.zero_()  # then a member can swap two classes through its upper matrix alone
    W = model.readout.weight.double().T  # [h, C], full column rank
    swap = torch.eye(10, dtype=torch.float64)[[3, 1, 2, 0, 4, 5, 6, 7, 8, 9]]  # classes 0 and 3 swapped
    upper = (W @ swap @ torch.linalg.pinv(W))[None]
    lower = torch.eye(16, dtype=torch.float64)[None]
    original = ensembles.member_logits(model, features, lower, lower)[0]
    predicted = original.argmax(dim=-1)
    assert {0, 3} & set(predicted.tolist()), "the random model must predict class 0 or 3 somewhere"
    measured = ensembles.held_out_agreement(model, features, lower, upper, chunk=64)
    expected = 1 - float(((predicted == 0) | (predicted == 3)).double().mean())
    assert abs(measured["agreement"] - expected) < 1e-12
    # the relative gap of each image: |z_0 - z_3| / max |z|, by hand
    gaps = (original[:, 0] - original[:, 3]).abs() / original.abs().amax(dim=-1)
    assert abs(measured["gap_p50"] - float(np.quantile(gaps.numpy(), 0.5, method="nearest"))) < 1e-9


@torch.no_grad()
def test_fit_size_experiment_fits_by_least_squares_beyond_h():
    model, features = model_and_features(n=600)
    labels = torch.arange(200) % 10
    out = ensembles.fit_size_experiment(model, features[200:], features[:200], labels, seed=0,
                                        scales=(1e-3, 1.0), sizes=(16, 32), num_g=4)
    assert out["heldout_agreement"].shape == (2, 2) and out["mean_acc"].shape == (2, 2)
    assert out["fit_error"][0, 0] < 1e-9 and out["fit_error"][1, 0] < 1e-6  # 16 images: pi interpolates them
    assert out["heldout_agreement"][0].min() > 0.99  # tiny scale: the moved networks are the original
    assert out["fit_error"][1, 1] > out["fit_error"][1, 0]  # 32 > h images: least squares, no longer exact
    assert np.all((out["heldout_saturated"] >= 0) & (out["heldout_saturated"] <= 1))
