"""The CPU budget of the standard robustness evaluation (robustness.py): the costly attacks left out on some
classifiers on purpose (skipped_attacks, run_suite's skip) are recorded, have no standalone accuracy and no checks,
while an attack that was meant to run and did nothing still fails its checks; and one seed's work split into parts
(the notebook's worker processes) joins into exactly the whole sweep."""
import numpy as np
import pytest
import torch

from gfs.cifar import paper_protocol, robustness

NAMES = [attack.name for attack in robustness.ATTACKS]
STRONG = (100, 90, 140, 135, 150, 120)  # images of 250 that each attack breaks alone (ATTACKS order)


def summary_of(breaks, skipped=(), n=250):
    """summarise() of constructed outcomes: attack a breaks the first breaks[a] images; skipped attacks did not run."""
    clean = np.ones(n, dtype=bool)
    correct = np.ones((len(NAMES), 1, n), dtype=bool)
    run = np.array([name not in skipped for name in NAMES])
    for a, k in enumerate(breaks):
        correct[a, :, :k] = not run[a]
    queries = np.where(correct[NAMES.index("square")], np.inf, 10.0)
    suite = {"clean": clean, "correct": correct, "audit": n, "attacks_run": run, "queries": queries,
             "query_budget": 100}
    return robustness.summarise(suite)


def failed(summary):
    return {name for name, ok in zip(robustness.SANITY_CHECKS, summary["sanity"]) if not ok.all()}


def test_skipped_attacks_names_the_costly_attacks_a_classifier_is_not_given():
    costly_on = {"apgd_t": ["original", "group_exact"], "square": ["group_exact"]}
    assert robustness.skipped_attacks(costly_on, "original") == ("square",)
    assert robustness.skipped_attacks(costly_on, "group_exact") == ()
    assert robustness.skipped_attacks(costly_on, "group_paper") == ("apgd_t", "square")
    assert robustness.skipped_attacks(None, "deep") == ()


@pytest.mark.parametrize("skipped", [("square",), ("apgd_t", "square")])
def test_a_skipped_attack_has_no_standalone_accuracy_and_no_checks_but_a_silent_one_fails(skipped):
    summary = summary_of(STRONG, skipped)
    assert failed(summary) == set()
    for name in NAMES:
        assert summary["attacks_run"][NAMES.index(name)] == (name not in skipped)
        assert np.isnan(summary["alone_acc"][NAMES.index(name)]).all() == (name in skipped), name
    assert np.isnan(summary["square_curve"]).all() == ("square" in skipped)
    # the same attacks meant to run but breaking nothing: their checks fire
    silent = summary_of([0 if name in skipped else k for name, k in zip(NAMES, STRONG)])
    assert {f"{name}_vs_fgsm" for name in skipped} <= failed(silent), failed(silent)


def test_run_suite_does_not_run_a_skipped_attack():
    calls = []

    def recording(name):
        def run(target, x, y, index, radius, r, context):
            calls.append(name)
            return x
        return run
    suite = tuple(attack._replace(run=recording(attack.name)) for attack in robustness.ATTACKS)
    target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    x = torch.rand(4, 3, 32, 32)
    y = robustness.predict(target, x)  # right on clean data
    out = robustness.run_suite(target, x, y, [0.01], None, suite, skip=("apgd_t", "square"))
    assert set(calls) == set(NAMES) - {"apgd_t", "square"}
    assert out["attacks_run"].tolist() == [name not in ("apgd_t", "square") for name in NAMES]


def test_one_seed_split_into_parts_joins_into_the_whole_sweep():
    torch.manual_seed(0)
    model = paper_protocol.make_adversarial_cnn("corrected", 16, seed=0)
    fit = torch.rand(16 * 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = robustness.predict(model.eval(), x)
    settings = dict(apgd_steps=3, apgd_restarts=1, apgdt_restarts=1, square_queries=5, transfer_steps=2, audit_images=6)
    costly_on = {"apgd_t": ["original", "group_exact"], "square": ["group_exact"]}
    sweep = lambda classifiers: robustness.robustness_sweep(model, fit, x, y, num_g=3, group_scale=1.0, radii=[8 / 255],
                                                            images=8, settings=settings, classifiers=classifiers,
                                                            costly_on=costly_on)
    whole = sweep(None)
    joined = robustness.join_sweeps([sweep(["original", "perm_interp", "group_paper"]), sweep(["group_exact"])])
    for numerics in whole:
        assert set(whole[numerics]) == set(joined[numerics]), numerics
        for key, value in whole[numerics].items():
            if key.startswith(("seconds_", "doubled_seconds_")):  # wall times
                continue
            np.testing.assert_array_equal(value, joined[numerics][key], err_msg=f"{numerics} {key}")
    assert whole["exact"]["attacks_run_group"].all() and not whole["paper"]["attacks_run_group"][-2:].any()
    assert whole["exact"]["attacks_run_original"].tolist() == [name != "square" for name in NAMES]


def test_the_notebook_parameters_name_exactly_the_suite_classifiers():
    from gfs.cifar import notebook_parameters
    from gfs.cifar.symmetry import NUMERICS
    expected = {c for c in robustness.ALL_CLASSIFIERS if c != "group"} | {f"group_{n}" for n in NUMERICS}
    assert set(notebook_parameters.CLASSIFIER_NAMES) == expected


def test_the_convergence_table_says_not_run_where_an_attack_was_left_out():
    from gfs.cifar.suite_checks import convergence_rows
    summary = summary_of(STRONG, ("square",))
    summary.update(strongest=np.array([NAMES.index("apgd_t")]), converged=np.array([True]),
                   doubled_acc=summary["robust_acc"], audit_robust_acc=summary["robust_acc"])
    data = {f"{k}_group": np.asarray(v)[None] for k, v in summary.items()}  # one seed
    data["radii"] = np.array([1 / 255])
    labels = [attack.label for attack in robustness.ATTACKS]
    (row,) = convergence_rows(data, labels, ["group"], {"group": "group"}, alone=True)
    square = 2 + NAMES.index("square")
    assert row[square] == "not run"
    apgd_t = row[2 + NAMES.index("apgd_t")]  # after it: 1 - 150/250 (the worst case); alone: the same 150 images
    assert apgd_t == "0.400 (0.400)", row
    assert "(APGD-T x 2)" in row[-1] and "not converged" not in row[-1]
