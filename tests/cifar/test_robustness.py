"""The standard robustness evaluation (robustness.py): the ensemble target, the cascade and its worst case, the
budget of every attack, and the sanity checks both ways on a tiny trained model."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gfs.cifar import attacks
from gfs.cifar import paper_protocol
from gfs.cifar import cnn
from gfs.cifar import dataset
from gfs.cifar import robustness
from gfs.cifar import ensembles


def fitted_model(num_g=3, numerics="exact", seed=0):
    model = paper_protocol.make_adversarial_cnn("corrected", 16, seed=seed)
    images = torch.rand(16 * num_g + 8, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    model.group_action.fit_noise = 0.0
    ensembles.fit_group_action(model, cnn.compute_features(model, images), num_g, 1.0, seed=1, numerics=numerics)
    return model, images[-8:]


# ---- the ensemble target -----------------------------------------------------------------------

@torch.no_grad()
def test_target_is_the_log_mean_probability_of_three_members_by_hand():
    model, x = fitted_model(num_g=3)
    target = attacks.EnsembleMeanProbability(model, "group")
    layer, W, b = model.group_action, model.readout.weight.double(), model.readout.bias.double()
    H = model.features(x).double()
    probabilities = [F.softmax(F.leaky_relu(H @ layer.g[n], 0.1) @ layer.pi[n] @ W.T + b, dim=-1) for n in range(3)]
    by_hand = torch.log((probabilities[0] + probabilities[1] + probabilities[2]) / 3)
    torch.testing.assert_close(target(x), by_hand, rtol=1e-6, atol=1e-7)  # the float32 trunk runs twice
    # two members only is another function
    assert not torch.allclose(target(x), torch.log((probabilities[0] + probabilities[1]) / 2), atol=1e-3)


def test_every_member_gives_the_ensemble_gradient_and_none_is_left_out():
    """d mean_n p_n(y | x) / dx = mean_n d p_n(y | x) / dx, each member's term through its own wrapper."""
    model, x = fitted_model(num_g=3)
    y = torch.arange(len(x)) % 10

    def gradient(target):
        image = x.clone().requires_grad_(True)
        target(image).exp().gather(1, y[:, None]).sum().backward()  # sum over images of p(y | x)
        return image.grad

    ensemble = attacks.EnsembleMeanProbability(model, "group")
    members = []
    for n in range(3):
        member = attacks.EnsembleMeanProbability(model, "group")
        member.lower, member.upper = ensemble.lower[n:n + 1], ensemble.upper[n:n + 1]
        members.append(gradient(member))
        assert float(members[-1].abs().sum()) > 0, n  # every member's gradient reaches the image
    total = gradient(ensemble)
    torch.testing.assert_close(total, sum(members) / 3, rtol=1e-4, atol=1e-9)
    for n in range(3):  # leaving one member out gives another gradient
        rest = sum(m for k, m in enumerate(members) if k != n)
        assert not torch.allclose(total, rest / 2, rtol=1e-3, atol=1e-9), n


# ---- the cascade and its worst case ------------------------------------------------------------

class PixelClassifier(torch.nn.Module):
    """class = round(9 x[:, 0, 0, 0]): an attack 'breaks' an image by moving that pixel."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return -(x[:, 0, 0, 0, None] * 9 - torch.arange(10.0)).abs()


def fake_attack(name, runs_on, breaks, calls):
    """An attack that records the images it is run on and breaks those in `breaks` (suite indices)."""
    def run(target, x, y, index, radius, r, context):
        calls[name] = calls.get(name, []) + index.tolist()
        x_adv = x.clone()
        hit = torch.tensor([i in breaks for i in index.tolist()])
        x_adv[hit, 0, 0, 0] = ((y[hit] + 1) % 10).float() / 9
        return x_adv
    kind = {"single": "single-step", "transfer": "transfer", "white": "white-box"}.get(name, "gradient-free")
    return robustness.Attack(name, name, kind, runs_on, run)


def test_cascade_runs_later_attacks_on_survivors_and_robust_is_the_worst_case():
    y = torch.arange(8) % 10
    x = torch.zeros(8, 3, 32, 32)
    x[:, 0, 0, 0] = y.float() / 9
    x[7, 0, 0, 0] = 1.0  # image 7 is wrong on clean data
    calls = {}
    suite = (fake_attack("single", "every", {0, 5}, calls), fake_attack("transfer", "every", {1}, calls),
             fake_attack("white", "audit", {2}, calls), fake_attack("later", "survivors", {3, 4}, calls),
             fake_attack("last", "survivors", {4, 5}, calls))
    out = robustness.run_suite(PixelClassifier(), x, y, [0.1], None, suite, audit=2)
    assert out["clean"].tolist() == [True] * 7 + [False]
    assert calls["single"] == calls["transfer"] == list(range(7))  # every image right on clean data
    assert calls["white"] == [0, 1, 2, 3, 4, 6]  # the audit images 0, 1 and the survivors elsewhere (not 5)
    assert calls["later"] == [3, 4, 6] and calls["last"] == [6]  # the survivors of everything before
    summary = robustness.summarise(out, suite)
    expected = [False, False, False, False, False, False, True, False]  # by hand: only image 6 survives all
    assert summary["robust"][0].tolist() == expected and summary["robust_acc"][0] == 1 / 8
    assert summary["decided"][:, 0].tolist() == [2, 1, 1, 2, 0]  # first broken by each attack, in order
    np.testing.assert_allclose(summary["alone_acc"][:3, 0], [1 / 2, 1 / 2, 1.0])  # alone, on the 2 audit images
    assert np.isnan(summary["alone_acc"][3:]).all()
    np.testing.assert_allclose(summary["cumulative_acc"][:, 0], [5 / 8, 4 / 8, 3 / 8, 1 / 8, 1 / 8])


def test_worst_case_is_right_only_under_every_attack():
    # per-image outcomes of three attacks on five images (constructed): right = True
    correct = np.array([[1, 1, 0, 1, 0], [1, 0, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=bool)
    assert robustness.worst_case(correct).tolist() == [True, False, False, False, False]
    assert robustness.worst_case(correct).tolist() != np.any(correct, axis=0).tolist()  # a best case differs
    clean = np.ones(5, dtype=bool)
    summary = robustness.summarise({"clean": clean, "correct": correct[:, None], "linf": 0, "low": 0, "high": 1},
                                   robustness.ATTACKS[:3])
    assert summary["robust_acc"].tolist() == [0.2]


def test_sanity_checks_fire_on_constructed_outcomes():
    suite = robustness.ATTACKS  # fgsm, transfer, apgd-ce alone (on all images here: no audit subset); apgd-dlr, square
    clean = np.ones(100, dtype=bool)
    correct = np.ones((5, 2, 100), dtype=bool)
    correct[0, :, :40] = False  # FGSM breaks 40 images at both radii
    correct[1, :, :30] = False  # transfer 30
    correct[2, :, :50] = False  # APGD-CE 50: stronger than both
    assert all(ok.all() for ok in robustness.sanity_checks(clean, correct, suite).values())
    weak = correct.copy()
    weak[2, :, 20:50] = True  # APGD-CE breaks only 20: weaker than FGSM and than transfer
    checks = robustness.sanity_checks(clean, weak, suite)
    assert not checks["iterative_vs_single_step"].any() and not checks["white_box_vs_transfer"].any()
    rising = correct.copy()
    rising[:, 1, :50] = True  # the larger radius leaves more images robust
    rising[0, 1, 50:60] = False
    checks = robustness.sanity_checks(clean, rising, suite)
    assert checks["monotone_in_radius"].tolist() == [True, False]


# ---- a tiny trained model: budgets and the sanity checks both ways ------------------------------

SMALL = dict(apgd_steps=20, apgd_restarts=1, square_queries=50, transfer_steps=10, audit_images=60)
RADII = (8 / 255, 32 / 255, 64 / 255)  # the tiny classes are far apart: 8/255 leaves the original intact


@pytest.fixture(scope="module")
def tiny_model(tiny_cifar):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_images, train_labels = dataset.load_cifar10(tiny_cifar, train=True, download=False)
        test_images, test_labels = dataset.load_cifar10(tiny_cifar, train=False, download=False)
        split = paper_protocol.adversarial_splits(train_images, train_labels, test_images, test_labels, "corrected", 16, 5)
        model = paper_protocol.make_adversarial_cnn("corrected", 16, seed=0)
        cnn.train_models([model], [split["train"]], [0], jobs=1, epochs=2, progress=False)
        yield model, split
    finally:
        torch.set_num_threads(threads)


def test_every_attack_stays_within_the_radius_and_the_pixel_range(tiny_model):
    model, split = tiny_model
    x, y = split["eval"][0][:40], split["eval"][1][:40]
    ensembles.fit_group_action(model, cnn.compute_features(model, split["fit"][0]), 5, 10.0, seed=0, numerics="exact")
    radius = 8 / 255
    generator = torch.Generator().manual_seed(0)
    context = robustness.Context(model, SMALL, 0, {0: robustness.transfer_images(model, x, y, radius, SMALL, generator)})
    for target in (model, attacks.EnsembleMeanProbability(model, "group")):
        for attack in robustness.ATTACKS:
            x_adv = attack.run(target, x, y, torch.arange(len(x)), radius, 0, context)
            assert x_adv.shape == x.shape, attack.name
            x_adv = x_adv.detach()
            assert float((x_adv - x).abs().max()) <= radius + 1e-6, attack.name
            assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, attack.name


@pytest.fixture(scope="module")
def tiny_sweeps(tiny_model):
    """The suite at small settings, and the same with APGD-CE weakened to one small step without restarts."""
    model, split = tiny_model
    radii = RADII
    weak = robustness.Attack("apgd_ce", "one small step", "white-box", "audit",
                             lambda target, x, y, index, radius, r, context: attacks.pgd(
                                 target, x, y, radius=radius, step=radius / 8, iterations=1, random_start=False))
    weakened = tuple(weak if a.name == "apgd_ce" else a for a in robustness.ATTACKS)
    run = lambda suite: robustness.robustness_sweep(model, split["fit"][0], *split["eval"], num_g=5, numerics=("exact",),
                                                    group_scale=10.0, radii=radii, images=100, settings=SMALL,
                                                    attacks=suite)["exact"]
    return run(robustness.ATTACKS), run(weakened)


def test_the_suite_passes_its_sanity_checks_and_a_weakened_attack_trips_them(tiny_sweeps):
    full, weakened = tiny_sweeps
    assert full["clean_acc_original"] > 0.5
    assert not robustness.sanity_failures(full), robustness.sanity_failures(full)
    failures = robustness.sanity_failures(weakened)
    assert any("single-step" in line for line in failures), failures
    for c in robustness.CLASSIFIERS:  # the attacks do hurt, and the worst case is below each attack alone
        assert full[f"robust_acc_{c}"][-1] < full[f"clean_acc_{c}"] or full[f"clean_acc_{c}"] < 0.2, c
        assert np.all(full[f"robust_acc_{c}"] <= np.nanmin(full[f"alone_acc_{c}"], axis=0) + 1e-12), c
        assert np.all(full[f"linf_{c}"] <= np.asarray(RADII) + 1e-6), c
        assert np.all(full[f"low_{c}"] >= 0) and np.all(full[f"high_{c}"] <= 1), c


def test_the_suite_refuses_settings_it_does_not_know_before_any_attack():
    with pytest.raises(ValueError, match="the suite's settings are apgd_steps"):
        robustness.robustness_sweep(None, None, None, None, num_g=5, group_scale=10.0, radii=RADII, images=10,
                                    settings=dict(SMALL, square_querys=50))


def test_paired_statistics_of_the_suite_add_up(tiny_sweeps):
    full, _ = tiny_sweeps
    for name, (a, b) in robustness.COMPARISONS.items():
        np.testing.assert_allclose(full[f"{name}_diff"], full[f"robust_acc_{a}"] - full[f"robust_acc_{b}"], atol=1e-12)
        np.testing.assert_allclose(full[f"{name}_diff"], (full[f"{name}_gained"] - full[f"{name}_lost"]) / 100,
                                   atol=1e-12)
    data = robustness.robustness_figure_data([{"exact": full}, {"exact": full}], [0, 1], [1, 0], "exact")
    assert data["robust_acc_independent"].shape == (2, 3) and data["group_vs_independent_p"].shape == (2, 3)
    np.testing.assert_allclose(data["group_vs_independent_diff"], data["group_vs_original_diff"], atol=1e-12)
