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
from gfs.cifar import robustness_report
from gfs.cifar import suite_checks


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


def constructed_outcomes(breaks, n=250, radii=2):
    """clean [n] all right, correct [A, R, n] with attack a (ATTACKS order) breaking the first breaks[a] images."""
    clean = np.ones(n, dtype=bool)
    correct = np.ones((len(breaks), radii, n), dtype=bool)
    for a, k in enumerate(breaks):
        correct[a, :, :k] = False
    return clean, correct


def failed_checks(clean, correct, suite=robustness.ATTACKS):
    summary = robustness.summarise({"clean": clean, "correct": correct, "audit": len(clean)}, suite)
    return {name for name, ok in zip(robustness.SANITY_CHECKS, summary["sanity"]) if not ok.all()}


# fgsm, transfer, apgd-ce, apgd-dlr, apgd-t, square: the iterative ones stronger than both cheap ones
STRONG = (100, 90, 140, 135, 150, 120)


def test_every_attack_has_its_own_sanity_checks_and_a_strong_suite_passes_them():
    names = set(robustness.SANITY_CHECKS)
    for attack in robustness.ATTACKS[2:]:
        assert f"{attack.name}_vs_fgsm" in names, attack.name
        assert (f"{attack.name}_vs_transfer" in names) == (attack.kind == "white-box"), attack.name
    assert {"complete", "monotone_in_radius"} <= names
    assert failed_checks(*constructed_outcomes(STRONG)) == set()


@pytest.mark.parametrize("a", range(2, 6))
def test_weakening_any_one_attack_fires_its_check(a):
    weak = list(STRONG)
    weak[a] = 60  # breaks 60 of 250 images, FGSM 100: 0.16 below it, beyond the slack (about 0.11)
    failed = failed_checks(*constructed_outcomes(weak))
    assert f"{robustness.ATTACKS[a].name}_vs_fgsm" in failed, failed
    assert all(name.startswith(robustness.ATTACKS[a].name) for name in failed), failed


@pytest.mark.parametrize("dropped", ["apgd_ce", "apgd_dlr", "apgd_t", "square"])
def test_dropping_any_attack_fires_the_completeness_check(dropped):
    keep = [a for a, attack in enumerate(robustness.ATTACKS) if attack.name != dropped]
    clean, correct = constructed_outcomes(STRONG)
    failed = failed_checks(clean, correct[keep], tuple(robustness.ATTACKS[a] for a in keep))
    assert "complete" in failed and f"{dropped}_vs_fgsm" in failed, failed
    # run on survivors only (no standalone accuracy on the audit images) counts as dropped too
    survivors_only = tuple(a._replace(runs_on="survivors") if a.name == dropped else a for a in robustness.ATTACKS)
    assert "complete" in failed_checks(clean, correct, survivors_only)


def test_the_slack_is_the_binomial_bound_of_the_number_of_audit_images():
    # z_0.99 sqrt(2 p (1 - p) / n) + 1 / n, by hand: z = 2.3263, p = 0.5, n = 250 -> 2.3263 * 0.044721 + 0.004
    assert suite_checks.sanity_slack(0.5, 0.5, 250) == pytest.approx(0.108037, abs=1e-5)
    assert suite_checks.sanity_slack(0.0, 0.0, 1000) == pytest.approx(0.001)  # at p = 0 one image of rounding
    assert suite_checks.sanity_slack(0.3, 0.3, 1000) < suite_checks.sanity_slack(0.3, 0.3, 250) / 1.9  # ~ 1 / sqrt(n)
    # both sides of the bound: an attack worse than FGSM by just under / over the slack passes / fails
    for n in (250, 1000):
        fgsm_breaks = n // 2
        slack = suite_checks.sanity_slack(0.5, 0.5, n)
        for extra, fires in ((-2, False), (+2, True)):
            worse = int(np.floor(slack * n)) + extra  # images the white-box attack leaves beyond FGSM's
            breaks = [fgsm_breaks, 0, fgsm_breaks - worse, n, n, n]
            breaks[1] = fgsm_breaks  # transfer as FGSM
            failed = failed_checks(*constructed_outcomes(breaks, n))
            assert ("apgd_ce_vs_fgsm" in failed) == fires, (n, extra, failed)


def test_monotone_in_radius_fires_when_the_larger_radius_keeps_more():
    clean, correct = constructed_outcomes(STRONG)
    correct[:, 1, :] = True
    correct[:, 1, :80] = False  # the larger radius breaks fewer images
    assert "monotone_in_radius" in failed_checks(clean, correct)


# ---- convergence -------------------------------------------------------------------------------

def budget_attack(name, kind, runs_on, doubles):
    """Breaks the first settings['apgd_steps'] images of the suite (so doubling the steps breaks more)."""
    def run(target, x, y, index, radius, r, context):
        x_adv = x.clone()
        hit = index < context.settings["apgd_steps"]
        x_adv[hit, 0, 0, 0] = ((y[hit] + 1) % 10).float() / 9
        return x_adv
    return robustness.Attack(name, name, kind, runs_on, run, doubles)


@pytest.mark.parametrize("doubles, converged", [(("apgd_steps",), False), ((), True)])
def test_doubling_the_strongest_attack_fires_the_convergence_check_only_when_it_breaks_more(doubles, converged):
    n = 400
    y = torch.arange(n) % 10
    x = torch.zeros(n, 3, 32, 32)
    x[:, 0, 0, 0] = y.float() / 9
    suite = (robustness.ATTACKS[0]._replace(run=lambda *args: args[1]),  # FGSM that breaks nothing
             robustness.ATTACKS[1]._replace(run=lambda *args: args[1]),
             budget_attack("strong", "white-box", "audit", doubles))
    context = robustness.Context({"apgd_steps": 100, "audit_images": 200}, 0, {})
    out = robustness.run_suite(PixelClassifier(), x, y, [0.1], context, suite)
    assert out["strongest"].tolist() == [2]
    summary = robustness.summarise(out, suite)
    assert summary["audit_robust_acc"].tolist() == [0.5]  # 100 of the 200 audit images survive 100 steps
    if converged:
        assert summary["doubled_broken"].tolist() == [0] and summary["converged"].tolist() == [True]
    else:  # 200 steps break every audit image: 100 more, far beyond 0.5 %
        assert summary["doubled_broken"].tolist() == [100] and summary["converged"].tolist() == [False]
        assert summary["doubled_acc"].tolist() == [0.0]


def test_convergence_tolerance_is_half_a_percent_of_the_audit_images():
    assert suite_checks.converged([1, 2, 5, 6], 1000).tolist() == [True, True, True, False]
    assert suite_checks.converged([1, 2], 250).tolist() == [True, False]  # 2 / 250 = 0.8 %


# ---- a tiny trained model: budgets and the sanity checks both ways ------------------------------

SMALL = dict(apgd_steps=5, apgd_restarts=1, apgdt_restarts=1, square_queries=50, transfer_steps=5, audit_images=20)
RADII = (8 / 255, 32 / 255, 64 / 255)  # the tiny classes are far apart: 8/255 leaves the original intact


@pytest.fixture(scope="module")
def tiny_model(tiny_cifar):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_images, train_labels = dataset.load_cifar10(tiny_cifar, train=True, download=False)
        test_images, test_labels = dataset.load_cifar10(tiny_cifar, train=False, download=False)
        split = paper_protocol.adversarial_splits(train_images, train_labels, test_images, test_labels, "corrected", 16, 5)
        # the original (seed 0) and two controls from their own seeds (1000, 1001)
        models = [paper_protocol.make_adversarial_cnn("corrected", 16, seed=seed) for seed in (0, 1000, 1001)]
        cnn.train_models(models, [split["train"]] * 3, [0, 1000, 1001], jobs=1, epochs=2, progress=False)
        yield models[0], split, models[1:]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_every_attack_stays_within_the_radius_and_the_pixel_range(tiny_model):
    model, split, controls = tiny_model
    x, y = split["eval"][0][:40], split["eval"][1][:40]
    ensembles.fit_group_action(model, cnn.compute_features(model, split["fit"][0]), 5, 10.0, seed=0, numerics="exact")
    radius = 8 / 255
    generator = torch.Generator().manual_seed(0)
    context = robustness.Context(SMALL, 0, {0: robustness.transfer_images(model, x, y, radius, SMALL, generator)})
    for target in (model, attacks.EnsembleMeanProbability(model, "group")):
        for attack in robustness.ATTACKS:
            x_adv = attack.run(target, x, y, torch.arange(len(x)), radius, 0, context)
            if isinstance(x_adv, tuple):  # Square: (x_adv, the query at which each image broke)
                x_adv, queries = x_adv
                assert queries.shape == (len(x),) and float(queries.min()) >= 1, attack.name
            assert x_adv.shape == x.shape, attack.name
            x_adv = x_adv.detach()
            assert float((x_adv - x).abs().max()) <= radius + 1e-6, attack.name
            assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, attack.name


@pytest.fixture(scope="module")
def tiny_sweeps(tiny_model):
    """The suite at small settings (with the trained controls' figure data), and the same with APGD-CE weakened to
    one small step without restarts."""
    model, split, controls = tiny_model
    weak = robustness.Attack("apgd_ce", "one small step", "white-box", "audit",
                             lambda target, x, y, index, radius, r, context: attacks.pgd(
                                 target, x, y, radius=radius, step=radius / 8, iterations=1, random_start=False))
    weakened = robustness.ATTACKS[:2] + (weak,)  # the cheap attacks and the weakened one (the rest would pass)
    run = lambda suite: robustness.robustness_sweep(model, split["fit"][0], *split["eval"], num_g=5, numerics=("exact",),
                                                    group_scale=10.0, radii=RADII, images=100, settings=SMALL,
                                                    attacks=suite)["exact"]
    control_data = robustness.control_sweep(controls, *split["eval"], radii=RADII, images=100, settings=SMALL,
                                        seed=1000)
    return run(robustness.ATTACKS), run(weakened), control_data


@pytest.mark.slow
def test_the_suite_passes_its_sanity_checks_and_a_weakened_attack_trips_them(tiny_sweeps):
    full, weakened, controls = tiny_sweeps
    assert full["clean_acc_original"] > 0.5
    # On the tiny data a random search finds no adversarial pattern in 100 queries, where one FGSM step does: Square's
    # own check fires there, as it should (the constructed tests above cover it both ways); every other check passes.
    gradient_failures = [line for line in robustness.sanity_failures(full) + robustness.sanity_failures(controls)
                         if not line.endswith(f"{robustness.SANITY_CHECKS['square_vs_fgsm']} fails")]
    assert not gradient_failures, gradient_failures
    failures = robustness.sanity_failures(weakened)
    assert any("one small step alone <= FGSM alone" in line for line in failures) or \
        any("APGD-CE alone <= FGSM alone" in line for line in failures), failures
    data = dict(full, **controls)
    for c in robustness.ALL_CLASSIFIERS:  # the attacks do hurt, and the worst case is below each attack alone
        assert data[f"robust_acc_{c}"][-1] < data[f"clean_acc_{c}"] or data[f"clean_acc_{c}"] < 0.2, c
        # on the audit images the worst case is below each attack alone
        assert np.all(data[f"audit_robust_acc_{c}"] <= np.nanmin(data[f"alone_acc_{c}"], axis=0) + 1e-12), c
        assert np.all(data[f"linf_{c}"] <= np.asarray(RADII) + 1e-6), c
        assert np.all(data[f"low_{c}"] >= 0) and np.all(data[f"high_{c}"] <= 1), c
        assert data[f"square_curve_{c}"].shape == (len(RADII), len(data[f"square_curve_queries_{c}"])), c
        assert np.all(np.diff(data[f"square_curve_{c}"], axis=-1) <= 0), c  # more queries break more
        # Square's curve ends at its standalone accuracy
        np.testing.assert_allclose(data[f"square_curve_{c}"][:, -1], data[f"alone_acc_{c}"][-1], atol=1e-12)
        assert np.all(data[f"doubled_acc_{c}"] <= data[f"audit_robust_acc_{c}"]), c


@pytest.mark.slow
@torch.no_grad()
def test_deep_ensemble_is_the_log_mean_probability_of_its_members_by_hand(tiny_model):
    model, split, controls = tiny_model
    x = split["eval"][0][:8]
    a, b = controls
    by_hand = torch.log((F.softmax(a(x), dim=-1) + F.softmax(b(x), dim=-1)) / 2)
    torch.testing.assert_close(robustness.DeepEnsemble([a, b])(x), by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(robustness.DeepEnsemble([a, a])(x), F.log_softmax(a(x), dim=-1), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(robustness.DeepEnsemble([a, b])(x), F.log_softmax(a(x), dim=-1), atol=1e-3)


def test_the_suite_refuses_settings_it_does_not_know_before_any_attack():
    with pytest.raises(ValueError, match="the suite's settings are apgd_steps"):
        robustness.robustness_sweep(None, None, None, None, num_g=5, group_scale=10.0, radii=RADII, images=10,
                                    settings=dict(SMALL, square_querys=50))


@pytest.mark.slow
def test_paired_statistics_of_the_suite_add_up(tiny_sweeps):
    full, _, controls = tiny_sweeps
    for name, (a, b) in robustness.COMPARISONS.items():
        np.testing.assert_allclose(full[f"{name}_diff"], full[f"robust_acc_{a}"] - full[f"robust_acc_{b}"], atol=1e-12)
        np.testing.assert_allclose(full[f"{name}_diff"], (full[f"{name}_gained"] - full[f"{name}_lost"]) / 100,
                                   atol=1e-12)
    data = robustness.robustness_figure_data([{"exact": full}, {"exact": full}], [0, 1], controls, [1000, 1001], "exact")
    for c in robustness.TRAINED_CONTROLS:
        assert data[f"robust_acc_{c}"].shape == (2, 3) and data[f"group_vs_{c}_p"].shape == (2, 3)
        np.testing.assert_allclose(data[f"group_vs_{c}_diff"],
                                   data["robust_acc_group"] - controls[f"robust_acc_{c}"][None], atol=1e-12)
    assert data["control_seeds"].tolist() == [1000, 1001]
    text = robustness_report.robustness_table(data)
    assert "deep ensemble" in text and "doubling" in text


@torch.no_grad()
def test_deep_ensemble_of_softmax_output_cnns_averages_their_probabilities():
    """Fig. 10's CNN outputs probabilities: the deep ensemble averages them, not a softmax of them."""
    members = [cnn.make_cnn("relu_sqr", 16, softmax_output=True, seed=seed) for seed in (1000, 1001)]
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    by_hand = torch.log((members[0](x) + members[1](x)) / 2)
    torch.testing.assert_close(robustness.DeepEnsemble(members)(x), by_hand, rtol=1e-5, atol=1e-6)
    y = robustness.predict(robustness.DeepEnsemble(members), x)
    measured = robustness.deep_ensemble_accuracy(members, x, y)  # its own predictions as labels: accuracy 1
    assert measured["deep_ensemble_acc"] == 1.0 and measured["deep_member_acc"].shape == (2,)
