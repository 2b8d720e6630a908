"""make_report.py: every rule both ways, on its own and on small saved data written here; unreadable
files, diverged runs, new activations, seeds; and `make figures QUICK=1` end to end.

The synthetic data are built from the paper code's numbers (paper_numbers.py) or made up; nothing
is read from, or written into, the repository's figures/.
"""
import json
import math
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

import make_report as mr
import paper_numbers as paper
from make_report import NOT_REPRODUCED, NOT_TESTED, PARTLY, REPRODUCED, Result

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------------------------
# (a) The rules and the combining helpers, both ways

def test_combine_worst_and_not_tested():
    assert mr.combine([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert mr.combine([REPRODUCED, NOT_REPRODUCED]) == PARTLY
    assert mr.combine([PARTLY, PARTLY]) == PARTLY
    assert mr.combine([NOT_REPRODUCED]) == NOT_REPRODUCED
    assert mr.combine([]) == NOT_REPRODUCED
    assert mr.combine([REPRODUCED, NOT_TESTED]) == REPRODUCED  # an activation without a reference is left out
    assert mr.combine([NOT_TESTED]) == NOT_REPRODUCED
    assert mr.worst([REPRODUCED, PARTLY]) == PARTLY
    assert mr.worst([REPRODUCED, NOT_REPRODUCED, PARTLY]) == NOT_REPRODUCED
    assert mr.worst([REPRODUCED, NOT_TESTED]) == REPRODUCED


def test_over_seeds_holds_in_k_of_n():
    holds, fails = Result(REPRODUCED, "ok", "", 1.0), Result(NOT_REPRODUCED, "too slow", "", 3.0)
    result = mr.over_seeds([holds, holds, holds])
    assert result.verdict == REPRODUCED and "holds in 3 of 3 seeds" in result.text and result.deciding.startswith("3/3")
    result = mr.over_seeds([holds, fails, holds, fails])
    assert result.verdict == PARTLY and "holds in 2 of 4 seeds" in result.text
    assert "seed 1: not reproduced (too slow)" in result.text and "2 ± 1 [1, 3]" in result.text  # spread of .value
    result = mr.over_seeds([fails, fails])
    assert result.verdict == NOT_REPRODUCED and "holds in 0 of 2 seeds" in result.text
    assert "deciding number" not in mr.over_seeds([Result(REPRODUCED, "ok")] * 2).text  # no value: no spread


def test_q_conserved_rule():
    lrs = [0.1, 0.01, 0.001]
    assert mr.rule_q_conserved(lrs, paper.FIG3_FINAL_DRIFT["linear"]).verdict == REPRODUCED
    result = mr.rule_q_conserved(lrs, [6.9e-4, 3e-3, 4.4e-4])
    assert result.verdict == PARTLY and "lr 0.01" in result.text
    assert mr.rule_q_conserved(lrs, [0.17, 1e-5, 1e-5]).verdict == NOT_REPRODUCED
    assert mr.rule_q_conserved(lrs, [math.nan, 1e-5, 1e-5]).verdict == NOT_REPRODUCED


def test_drift_proportional_rule():
    lrs = [0.1, 0.01, 0.001]
    result = mr.rule_drift_proportional(lrs, paper.FIG3_FLOAT64_FINAL_DRIFT["linear"])
    assert result.verdict == REPRODUCED and "max/min 1.01" in result.text
    # float32: round-off makes the smallest rate drift more than the middle one
    assert mr.rule_drift_proportional(lrs, paper.FIG3_FINAL_DRIFT["linear"]).verdict == NOT_REPRODUCED
    assert mr.rule_drift_proportional(lrs, [6.9e-4, 0.0, 7e-6]).verdict == NOT_REPRODUCED


def sample_Q(activation, m, h, n, samples, rng):
    """Q (paper-code scaling) and the sum of its two terms at the fan-in normal initialisation."""
    Q, terms = [], []
    for _ in range(samples):
        U, V = rng.standard_normal((m, h)) / math.sqrt(h), rng.standard_normal((n, h)) / math.sqrt(n)
        u, v = {"linear": ((U ** 2).sum(), (V ** 2).sum()), "relu": ((U ** 2).sum(), (np.maximum(V, 0) ** 2).sum()),
                "tanh": ((U ** 2).sum(), (np.cosh(V) ** 2).sum()), "sigmoid": (0.5 * (U ** 2).sum(), (V + np.exp(V)).sum())
                }[activation]
        Q.append(u - v)
        terms.append(u + v)
    return np.array(Q), np.array(terms)


@pytest.mark.parametrize("activation,shape", [("linear", (100, 100, 100)), ("relu", (100, 100, 100)),
                                              ("tanh", (100, 100, 100)), ("sigmoid", (100, 100, 100)),
                                              ("linear", (200, 100, 100))])
def test_q_distribution_rule_on_sampled_initialisations(activation, shape):
    from Q_distribution import expected_Q
    Q, terms = sample_Q(activation, *shape, samples=300, rng=np.random.default_rng(1))
    scale = mr.expected_term_scale(activation, *shape)
    assert terms.mean() == pytest.approx(scale, rel=0.01)  # the scale is what the two terms add up to
    expected = expected_Q(activation, *shape)
    assert mr.rule_q_distribution(Q, expected, scale).verdict == REPRODUCED
    # Glorot instead of fan-in init would centre Fig. 5's shapes at 0: the mean rule must notice
    result = mr.rule_q_distribution(Q, expected + 10 * Q.std(), scale)
    assert result.verdict == PARTLY and "more than 4" in result.text


def test_q_distribution_rule_spread_and_unknown_activation():
    rng = np.random.default_rng(0)
    narrow, wide = rng.normal(0.0, 2.0, 1000), rng.normal(0.0, 40.0, 1000)  # wide: 20 % of the terms' size
    assert mr.rule_q_distribution(narrow, 0.0, 200.0).verdict == REPRODUCED
    result = mr.rule_q_distribution(wide, 0.0, 200.0)
    assert result.verdict == PARTLY and "above 5%" in result.text
    assert mr.rule_q_distribution(wide, 50.0, 200.0).verdict == NOT_REPRODUCED
    assert mr.expected_term_scale("softplus", 100, 100, 100) is None
    assert mr.rule_q_distribution(narrow, math.nan, None).verdict == NOT_TESTED


def test_faster_with_larger_Q_rule():
    Q0 = [paper.legend_Q(q) for q in paper.FIG6_LEGENDS["linear"]]
    steps = list(paper.FIG6_STEPS["linear"].values())
    assert mr.rule_faster_with_larger_Q(Q0, steps).verdict == REPRODUCED
    assert mr.rule_faster_with_larger_Q(Q0, steps[::-1]).verdict == NOT_REPRODUCED
    assert mr.rule_faster_with_larger_Q(Q0, [-1] + steps[1:]).verdict == REPRODUCED  # never = slowest
    assert mr.rule_faster_with_larger_Q(Q0, [-1, -1, steps[2]]).verdict == NOT_REPRODUCED  # a tie is not a fall
    # the order is by |Q|, not by the listed order
    assert mr.rule_faster_with_larger_Q([-1364, -500, -502], [7_511, 106_451, 63_679]).verdict == REPRODUCED


def test_same_initial_function_rule():
    base = np.random.default_rng(0).standard_normal((5, 10))
    assert mr.rule_same_initial_function(np.stack([base] * 4) * (1 + 1e-7)).verdict == REPRODUCED
    assert mr.rule_same_initial_function(np.stack([base, base, base * 1.01, base])).verdict == NOT_REPRODUCED


def test_steps_proportional_to_Q_rule():
    Q = [paper.legend_Q(q) for q in paper.FIG7_LEGENDS]
    result = mr.rule_steps_proportional_to_Q(Q, [69, 6_750, 674_771, -1], 1_000_000)
    assert result.verdict == REPRODUCED and "consistent" in result.text
    assert mr.rule_steps_proportional_to_Q(Q, [69, 690, 6_900, 69_000], 1_000_000).verdict == NOT_REPRODUCED  # sqrt
    result = mr.rule_steps_proportional_to_Q(Q, [69, 6_750, 7_000, -1], 1_000_000)  # the last should have converged
    assert result.verdict == PARTLY and "inconsistent" in result.text
    result = mr.rule_steps_proportional_to_Q(Q, [69, -1, -1, -1], 5_000)  # too short to tell
    assert result.verdict == NOT_REPRODUCED and "only 1 run" in result.text


def test_hessian_rank_rule():
    assert mr.rule_hessian_rank([50, 50, 50, 50], [1e-10, 1e-11, 1e-12, 1e-12], 50).verdict == REPRODUCED
    assert mr.rule_hessian_rank([285, 50, 50, 50], [11.2, 1e-10, 1e-11, 1e-12], 50).verdict == PARTLY
    assert mr.rule_hessian_rank([50, 61, 50, 50], [1e-10, 1e-11, 1e-12, 1e-12], 50).verdict == NOT_REPRODUCED
    assert mr.rule_hessian_rank([285, 285], [11.2, 12.0], 50).verdict == NOT_REPRODUCED


def test_sharpness_rule():
    legend = {a: [paper.legend_Q(q) for q in labels] for a, labels in paper.FIG9_LEGENDS.items()}
    top = paper.FIG9_LARGEST_EIGENVALUE
    assert mr.rule_sharpness_grows_with_Q(legend["linear"], top["linear"]).verdict == REPRODUCED
    result = mr.rule_sharpness_grows_with_Q(legend["tanh"], top["tanh"], init_std=[0.001, 0.3, 0.6, 0.9])
    assert result.verdict == NOT_REPRODUCED and "not monotone in |Q|" in result.text
    assert "init scale it is increasing" in result.text
    result = mr.rule_sharpness_grows_with_Q(legend["sigmoid"], top["sigmoid"])
    assert result.verdict == NOT_REPRODUCED and "decreasing in |Q|" in result.text


EPS = [20, 10, 1, 0.1, 0.01, 1e-3, 1e-4]


def group_minus_original():
    """The paper notebook's group - original heat map [C] for eps >= 0.1, small made-up cells below: [7, 7]."""
    return np.array([paper.FIG10_ROWS["group"][e] for e in (20, 10, 1, 0.1)]
                    + [(0.002, -0.003, 0, 0, 0.001, 0, 0)] * 3, dtype=float)


def test_ensemble_margin_rule():
    diff = group_minus_original()
    result = mr.rule_ensemble_margin(EPS, diff)
    assert result.verdict == REPRODUCED and "eps in {0.0001, 0.001, 0.01, 0.1}" in result.text
    worse = diff.copy()
    worse[3, 0] = -0.05  # eps = 0.1 loses 5 points in one cell
    assert mr.rule_ensemble_margin(EPS, worse).verdict == PARTLY
    worse[5, 2] = -0.03  # and eps = 1e-3 too
    assert mr.rule_ensemble_margin(EPS, worse).verdict == NOT_REPRODUCED
    nan_cell = diff.copy()
    nan_cell[3, 0] = np.nan  # an overflowing cell at eps = 0.1 is not within the margin
    assert mr.rule_ensemble_margin(EPS, nan_cell).verdict == PARTLY


def test_group_beats_baselines_rule():
    group = group_minus_original() + 0.55
    low = np.full_like(group, 0.1)  # g^-1, random and shuffle lose 0.45 at large eps
    low[3:] = 0.55
    result = mr.rule_group_beats_baselines(EPS, group, {"g_inverse": low, "random": low, "shuffle": low})
    assert result.verdict == REPRODUCED and result.text.count("(beats)") == 6
    assert mr.rule_group_beats_baselines(EPS, group, {"g_inverse": low, "shuffle": group + 0.05}).verdict == PARTLY
    assert mr.rule_group_beats_baselines([0.1, 0.01], group[3:5], {"random": low[3:5]}).verdict == NOT_REPRODUCED


def test_group_vs_perm_interp_rule():
    group = group_minus_original() + 0.55
    assert mr.rule_group_vs_perm_interp(EPS, group, group - 0.05).verdict == REPRODUCED
    result = mr.rule_group_vs_perm_interp(EPS, group, group + 0.05)
    assert result.verdict == NOT_REPRODUCED and "perm_interp ahead" in result.text
    tie = group.copy()
    tie[1] += 0.01  # eps = 10: within the margin, a tie; eps = 1: group ahead
    result = mr.rule_group_vs_perm_interp(EPS, group, np.where(np.arange(7)[:, None] == 2, group - 0.05, tie))
    assert result.verdict == PARTLY and "tie" in result.text and "group ahead" in result.text
    # the paper notebook's own heat maps [C]: perm_interp ahead at eps = 1 and 10
    eps = list(paper.FIG10_ROWS["perm_interp"])
    rows = {m: [paper.FIG10_ROWS[m][e] for e in eps] for m in ("group", "perm_interp")}
    assert mr.rule_group_vs_perm_interp(eps, rows["group"], rows["perm_interp"]).verdict == NOT_REPRODUCED


def test_group_more_robust_rule():
    strengths, acc = paper.FIG11_STRENGTHS, paper.FIG11_ACCURACY
    result = mr.rule_group_more_robust(strengths["FGSM"], acc["FGSM"]["original"], acc["FGSM"]["group"])
    assert result.verdict == REPRODUCED and "better at 2 and worse at 0" in result.text  # 0.109, 0.083: chance level
    # PGD: the paper notebook's gains (0.006 -> 0.038, 0.000 -> 0.026) are between accuracies below chance
    result = mr.rule_group_more_robust(strengths["PGD"], acc["PGD"]["original"], acc["PGD"]["group"])
    assert result.verdict == NOT_REPRODUCED and "at or below chance" in result.text
    assert mr.rule_group_more_robust([0, 1, 2], [0.6, 0.3, 0.0], [0.5, 0.35, 0.002]).verdict == REPRODUCED  # a tie
    assert mr.rule_group_more_robust([0, 1, 2, 3], [1.0, 0.9, 0.8, 0.7], [0.98, 0.85, 0.82, 0.6]).verdict == PARTLY
    # the threshold grows with the noise of an accuracy on few images: +0.03 counts on 1000 images, not on 100
    assert mr.rule_group_more_robust([0, 1, 2], [0.6, 0.2, 0.13], [0.55, 0.23, 0.16], 1000).verdict == REPRODUCED
    assert mr.rule_group_more_robust([0, 1, 2], [0.6, 0.2, 0.13], [0.55, 0.23, 0.16], 100).verdict == NOT_REPRODUCED
    # +10 images of 1000 (float32 accuracies) is within the noise, whatever the rounding
    result = mr.rule_group_more_robust(strengths["FGSM"], [0.559, 0.19599999, 0.134, 0.084, 0.05],
                                       [0.47400001, 0.206, 0.14399999, 0.102, 0.078], 1000)
    assert result.verdict == NOT_REPRODUCED and "better at 0" in result.text
    # a lower clean accuracy (strength 0) is not part of the rule; lower under attack is
    assert mr.rule_group_more_robust([0, 1, 2], [0.6, 0.3, 0.2], [0.5, 0.25, 0.2]).verdict == NOT_REPRODUCED


def test_a_diverged_run_is_left_out_and_named_not_slow():
    Q0, steps = [-0.0193, -1.93, -193], [102_050, 59_577, -1]
    # counted as never converging, the largest-|Q| run would make the steps not fall ...
    assert mr.apply(mr.rule_faster_with_larger_Q, dict(Q0=Q0, steps=steps, diverged_at=[-1, -1, -1])).verdict \
        == NOT_REPRODUCED
    # ... but it diverged: left out, named, and the verdict is partly at best
    result = mr.apply(mr.rule_faster_with_larger_Q, dict(Q0=Q0, steps=steps, diverged_at=[-1, -1, 1234],
                                                         labels=["Q=-0.0193", "Q=-1.93", "Q=-193"]))
    assert result.verdict == PARTLY and "Q=-193 diverged at step 1,234" in result.text and "never" not in result.text
    result = mr.apply(mr.rule_faster_with_larger_Q, dict(Q0=Q0, steps=steps, diverged_at=[5, -1, 7]))
    assert result.verdict == NOT_REPRODUCED and "cannot be tested" in result.text  # one run left
    # a rule that fails on the runs left still fails
    result = mr.apply(mr.rule_faster_with_larger_Q, dict(Q0=Q0, steps=[3_496, 59_577, 1], diverged_at=[-1, -1, 9]))
    assert result.verdict == NOT_REPRODUCED and "diverged at step 9" in result.text


# ----------------------------------------------------------------------------------------------
# (b) The report on small saved data: every claim reproduced on the base data, then broken one at a time

def write_figure(root, name, data, settings):
    """Write root/name.npz and .json as the figure scripts do (no plot)."""
    stem = os.path.join(root, name)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    np.savez(stem + ".npz", **{k: np.asarray(v) for k, v in data.items()})
    with open(stem + ".json", "w") as f:
        json.dump(settings, f)


def edit_figure(root, name, **changes):
    """Change some arrays of a saved figure."""
    with np.load(os.path.join(root, name + ".npz")) as saved:
        data = {k: saved[k] for k in saved.files}
    np.savez(os.path.join(root, name + ".npz"), **{**data, **{k: np.asarray(v) for k, v in changes.items()}})


def run_settings(command, seconds, quick=False, **extra):
    return {"quick": quick, "device": "cpu", "dtype": "float32", "run_seconds": seconds, "command": command,
            "machine": "x86_64, 2 cores", "created": "2026-01-01T00:00:00", **extra}


# A made-up sharpness trend for tanh and sigmoid, increasing with |Q| (the paper code's is not)
FIG9_BASE = {"tanh": ([-250, -300, -350, -418], [16.0, 25.1, 69.7, 117.8]),
             "sigmoid": ([-200, -222, -243, -250], [127.1, 127.7, 129.7, 133.6])}


def write_toy_figures(root, activations=paper.PAPER_ACTIVATIONS, quick=False, float64=True):
    """Figs. 3-9 data files shaped like the scripts' output, on which every toy claim holds."""
    steps, rng = np.arange(0, 401, 100), np.random.default_rng(0)
    from Q_distribution import expected_Q
    for i, act in enumerate(activations):
        drift = np.array([6.9e-4, 7.0e-5, 7.0e-6]) * (1 + 0.1 * i)  # proportional to lr
        data = {"steps": steps, "loss": np.full((3, len(steps)), 1e-3), "Q": np.zeros((3, len(steps))), "Q0": [0.0] * 3,
                "delta_Q_tilde": drift[:, None] * np.linspace(0, 1, len(steps)), "lr": [0.1, 0.01, 0.001],
                "labels": ["lr=0.1", "lr=0.01", "lr=0.001"], "normaliser": [1.0] * 3, "diverged_at": [-1, -1, -1]}
        name = f"Q-dynamics/elementwise_{act}_loss_Q"
        write_figure(root, name, data, run_settings("Q_dynamics_elementwise.py", 700.0, quick, activation=act))
        if float64:
            write_figure(os.path.join(root, "float64"), name, data, run_settings(
                "Q_dynamics_elementwise.py --dtype float64", 900.0, quick, activation=act, dtype="float64"))
        Q0 = [-0.0193 * (1 + i), -1.93 * (1 + i), -193 * (1 + i)]
        write_figure(root, f"Q-convergence/elementwise_{act}_convergence",
                     {"steps": steps, "loss": np.ones((3, len(steps))), "Q0": Q0, "init_std": [0.01, 0.1, 1.0],
                      "steps_to_converge": [102_050, 59_577, 3_496], "diverged_at": [-1] * 3,
                      "labels": [f"Q={q:.3g}" for q in Q0]},
                     run_settings("Q_convergence_elementwise.py", 700.0, quick, activation=act))
        Q0, top = FIG9_BASE.get(act, ([0.001 * (1 + i), 17.3, 69.3, 156], [17.7, 30.0, 107.5, 239.5]))
        write_figure(root, f"Q-hessian-eigenvalues/Q-sharpness_{act}_mnk_10_5_50",
                     {"Q0": Q0, "largest_eigenvalue": top, "nonzero_count": [50] * 4, "final_loss": [1e-10] * 4,
                      "init_std": [0.001, 0.3, 0.6, 0.9], "diverged_at": [-1] * 4},
                     run_settings("Q_hessian_eigenvalues.py", 20.0, quick, activation=act, m=10, n=5))
    for act, (m, h, n) in [(a, (100, 100, 100)) for a in activations] + [("linear", (100, 200, 100)),
                                                                         ("linear", (200, 100, 100))]:
        known = act in paper.PAPER_ACTIVATIONS
        write_figure(root, f"Q-distribution/{act}_mhn_{m}_{h}_{n}",
                     {"Q": rng.normal(expected_Q(act, m, h, n) if known else 3.0, 2.0, 1000), "shape_mhn": [m, h, n],
                      "expected_Q": expected_Q(act, m, h, n) if known else math.nan},
                     run_settings("Q_distribution.py", 30.0, quick, activation=act))
    Q0, base = np.array([0.002, 0.2, 20.0, 2000.0]), rng.standard_normal((5, 10))
    write_figure(root, "Q-convergence/radial_zoomed_1e6",
                 {"steps": np.array([0, 1_000_000]), "loss": np.full((4, 2), 0.135), "Q": Q0[:, None] * np.ones(2),
                  "Q0": Q0, "steps_to_converge": [69, 6_750, 674_771, -1], "initial_output": np.stack([base] * 4),
                  "diverged_at": [-1] * 4},
                 run_settings("Q_convergence_radial.py", 500.0, quick))


FIG11_BASE = {"FGSM": ([0, 0.003, 0.006, 0.009, 0.012], [0.6, 0.3, 0.2, 0.15, 0.12], [0.55, 0.36, 0.27, 0.22, 0.18]),
              "PGD": ([0, 1, 2, 3], [0.6, 0.2, 0.15, 0.12], [0.55, 0.26, 0.21, 0.18])}


def write_cifar_figures(root, quick=False):
    """Fig. 10-11 data files shaped like the notebooks' output, on which every claim holds."""
    group = group_minus_original() + 0.55
    low = np.full_like(group, 0.1)
    low[3:] = group[3:]
    grid = {"num_g": [10, 20, 40, 60, 80, 100, 120], "eps": EPS, "original_acc": 0.55}
    for mode, values in {"group": group, "perm_interp": group - 0.05, "g_inverse": low, "random": low,
                         "shuffle": low}.items():
        grid.update({f"vote_acc_{mode}": values, f"mean_acc_{mode}": values, f"overflow_{mode}": values < -1})
    write_figure(root, "ensemble/cnn_cifar_leakyrelu2_main_acc", grid,
                 {"figure": "Fig. 10", "quick": quick, "device": "cpu", "machine": "x86_64, 2 cores",
                  "run_seconds": {"training": 100.0, "grid": 20.0, "total": 130.0},
                  "data": {"folder": "/home/someone/datasets/cifar", "source": "unverified", "eval_split": "test",
                           "eval_images": 10000}})
    for method, (strengths, original, group) in FIG11_BASE.items():
        data = {"strengths": strengths}
        for protocol in ("paper", "corrected"):
            for m, values in {"original": original, "group": group, "g_inverse": [0.1] * len(strengths),
                              "perm_interp": original}.items():
                data[f"acc_{protocol}_{m}"] = data[f"mean_acc_{protocol}_{m}"] = values
            data[f"clamp_only_acc_{protocol}"] = 0.28
        write_figure(root, f"ensemble/cnn_cifar_leakyrelu_{method}_h16_g200_eps10", data, run_settings(
            "adversarial_CIFAR.ipynb", 1000.0, quick, attack=method, protocols=["paper", "corrected"],
            per_protocol={"paper": {"num_eval": 1000}, "corrected": {"num_eval": 10000}}, data_source="official",
            data_dir="/home/someone/datasets/cifar"))


CLAIMS = [c.short for s in mr.SECTIONS for c in s.claims]


def summary_rows(report):
    """{short claim: verdict} from the summary table (| in a claim is escaped there)."""
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| Fig") and len(cells) == 4:
            rows[cells[1].replace("\\|", "|")] = cells[2].strip("*")
    return rows


def report(out, *extra):
    """(exit status of make_report.py in this process, REPORT.md)."""
    status = mr.main(["--out", str(out), *extra])
    with open(os.path.join(out, "REPORT.md")) as f:
        return status, f.read()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    write_toy_figures(root)
    write_cifar_figures(root)
    return root


@pytest.fixture
def figures(base, tmp_path):
    """A fresh copy of the base data to change."""
    return shutil.copytree(base, tmp_path / "figures")


def test_every_claim_holds_on_the_base_data(figures):
    status, text = report(figures)
    assert status == 0 and summary_rows(text) == {short: REPRODUCED for short in CLAIMS}
    assert "Smoke-test" not in text and "**not run**:" not in text and DATA_ERROR_TEXT not in text
    assert f"**{mr.fmt_seconds(700 + 900 + 700 + 20 + 30 + 500 + 130 + 1000)}**" in text  # each command counted once
    assert "official CIFAR-10 release" in text and "fails torchvision's MD5 check" in text
    # the same rule run on the paper code's numbers, where the claim has them
    assert "*The same rule on the paper code's numbers [R]:* partly (linear: reproduced" in text  # Fig. 9 sharpness
    assert "*The same rule on the paper code's numbers [C]:* not reproduced (group - perm_interp" in text
    # the rule text is the rule's docstring, with its thresholds filled in
    assert "*Rule:* Every run's max |dQ~| < 0.001: reproduced; all below 10 x 0.001: partly" in text
    assert "{" + "threshold}" not in text


DATA_ERROR_TEXT = "No verdict: data error"
TANH_F9 = "Q-hessian-eigenvalues/Q-sharpness_tanh_mnk_10_5_50"


def break_radial_function(root):
    base = np.random.default_rng(1).standard_normal((5, 10))
    edit_figure(root, "Q-convergence/radial_zoomed_1e6", initial_output=np.stack([base, base, base * 1.01, base]))


BREAKERS = {  # short claim -> (change the saved data so that its rule fails, the verdict then)
    "Q nearly conserved under GD, every lr (float32)": (lambda r: edit_figure(
        r, "Q-dynamics/elementwise_relu_loss_Q", delta_Q_tilde=np.full((3, 5), 0.05)), NOT_REPRODUCED),
    "float64: drift of Q proportional to lr": (lambda r: edit_figure(
        r, "float64/Q-dynamics/elementwise_relu_loss_Q", delta_Q_tilde=np.full((3, 5), 1e-4)), PARTLY),
    "Q concentrated at init around its analytic mean": (lambda r: edit_figure(
        r, "Q-distribution/tanh_mhn_100_100_100", Q=np.random.default_rng(2).normal(-10001 + 20, 2, 1000)), PARTLY),
    "centre of Q set by the layer sizes (E[Q] = m - h)": (lambda r: edit_figure(
        r, "Q-distribution/linear_mhn_100_200_100", expected_Q=0.0), PARTLY),
    "larger |Q| reaches a fixed loss in fewer steps": (lambda r: edit_figure(
        r, "Q-convergence/elementwise_sigmoid_convergence", steps_to_converge=[3_496, 59_577, 102_050]), PARTLY),
    "radial runs start from the same function": (break_radial_function, NOT_REPRODUCED),
    "steps to converge proportional to Q (radial)": (lambda r: edit_figure(
        r, "Q-convergence/radial_zoomed_1e6", steps_to_converge=[69, 690, 6_900, 69_000]), NOT_REPRODUCED),
    "m*n = 50 nonzero Hessian eigenvalues at the minimum": (lambda r: edit_figure(
        r, TANH_F9, nonzero_count=[50, 61, 50, 50]), PARTLY),
    "largest Hessian eigenvalue grows with |Q|": (lambda r: edit_figure(
        r, TANH_F9, Q0=[paper.legend_Q(q) for q in paper.FIG9_LEGENDS["tanh"]]), PARTLY),
    "group ensemble within 0.02 of the original at small eps": (lambda r: edit_figure(
        r, "ensemble/cnn_cifar_leakyrelu2_main_acc", vote_acc_group=group_minus_original() + 0.55
        - 0.05 * (np.arange(7) == 3)[:, None]), PARTLY),
    "group beats g^-1, random, shuffle at eps = 1 and 10": (lambda r: edit_figure(
        r, "ensemble/cnn_cifar_leakyrelu2_main_acc", vote_acc_shuffle=group_minus_original() + 0.6), PARTLY),
    "group beats the interpolated permutation at eps = 1 and 10": (lambda r: edit_figure(
        r, "ensemble/cnn_cifar_leakyrelu2_main_acc", vote_acc_perm_interp=group_minus_original() + 0.6),
        NOT_REPRODUCED),
    "group more robust than original (paper's protocol)": (lambda r: edit_figure(
        r, "ensemble/cnn_cifar_leakyrelu_PGD_h16_g200_eps10", acc_paper_group=[0.55, 0.15, 0.1, 0.07]), PARTLY),
    "group more robust than original (corrected protocol)": (lambda r: [edit_figure(
        r, f"ensemble/cnn_cifar_leakyrelu_{m}_h16_g200_eps10", acc_corrected_group=FIG11_BASE[m][1])
        for m in FIG11_BASE], NOT_REPRODUCED),
}


def test_every_claim_has_a_breaker():
    assert sorted(BREAKERS) == sorted(CLAIMS)


@pytest.mark.parametrize("short", list(BREAKERS))
def test_each_rule_fails_on_saved_data_that_breaks_it(figures, short):
    change, verdict = BREAKERS[short]
    change(figures)
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and verdicts[short] == verdict
    assert all(v == REPRODUCED for s, v in verdicts.items() if s != short), verdicts  # the others unchanged


@pytest.mark.parametrize("damage", ["truncated npz", "corrupt json", "missing key", "npz without json"])
def test_unreadable_data_is_an_error_not_a_verdict(figures, damage, capsys):
    stem = os.path.join(figures, TANH_F9)
    if damage == "truncated npz":
        with open(stem + ".npz", "rb") as f:
            head = f.read(200)
        with open(stem + ".npz", "wb") as f:
            f.write(head)
    elif damage == "corrupt json":
        with open(stem + ".json", "w") as f:
            f.write('{"quick": fal')
    elif damage == "missing key":
        edit_figure(figures, TANH_F9)
        with np.load(stem + ".npz") as saved:
            np.savez(stem + ".npz", **{k: saved[k] for k in saved.files if k != "Q0"})
    else:
        os.remove(stem + ".json")
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 1
    # no verdict for the claims that read the file (the rank claim does not need Q0) ...
    assert verdicts["largest Hessian eigenvalue grows with |Q|"] == mr.DATA_ERROR
    if damage != "missing key":
        assert verdicts["m*n = 50 nonzero Hessian eigenvalues at the minimum"] == mr.DATA_ERROR
    # ... the others still get theirs
    assert all(v == REPRODUCED for s, v in verdicts.items() if not s.startswith(("m*n", "largest Hessian")))
    assert DATA_ERROR_TEXT in text and f"> **Data errors**: Fig. 9" in text
    line = next(x for x in text.splitlines() if x.startswith(f"**No verdict: {mr.DATA_ERROR}.**"))
    assert TANH_F9 in line and ({"truncated npz": "cannot be read", "corrupt json": ".json cannot be read",
                                 "missing key": "lacks key 'Q0'", "npz without json": "is missing"}[damage] in line)
    assert capsys.readouterr().err.count("make_report.py: data error:") >= 1


def test_unreadable_file_exits_non_zero_from_the_command_line(figures):
    with open(os.path.join(figures, "Q-convergence/radial_zoomed_1e6.npz"), "wb") as f:
        f.write(b"not a zip file")
    result = subprocess.run([sys.executable, os.path.join(REPO, "make_report.py"), "--out", str(figures)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1 and "radial_zoomed_1e6.npz cannot be read" in result.stderr
    verdicts = summary_rows((figures / "REPORT.md").read_text())
    assert verdicts["steps to converge proportional to Q (radial)"] == mr.DATA_ERROR
    assert verdicts["larger |Q| reaches a fixed loss in fewer steps"] == REPRODUCED


def test_a_diverged_run_is_reported_as_diverged(figures):
    edit_figure(figures, "Q-convergence/elementwise_relu_convergence", steps_to_converge=[102_050, 59_577, -1],
                diverged_at=[-1, -1, 2_500])
    edit_figure(figures, "Q-convergence/radial_zoomed_1e6", steps_to_converge=[69, 6_750, -1, -1],
                diverged_at=[-1, -1, 300, -1])
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0
    assert verdicts["larger |Q| reaches a fixed loss in fewer steps"] == PARTLY  # never 'not reproduced' (slow)
    assert verdicts["steps to converge proportional to Q (radial)"] == PARTLY
    assert "relu: partly (falls with |Q|: |Q| 0.0386: 102,050 -> |Q| 3.86: 59,577; Q=-386 diverged at step 2,500 " \
           "(left out))" in text
    assert "run 2 diverged at step 300 (left out)" in text and "inconsistent" not in text
    assert "| relu | 1 | -386 | 1 | never (diverged at step 2,500) |" in text  # the table marks it too


def test_activations_beyond_the_papers_are_found_and_reported(figures):
    write_toy_figures(figures, activations=("softplus",))
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and all(v == REPRODUCED for v in verdicts.values())
    assert "softplus: reproduced (largest max |dQ~|" in text  # Fig. 3
    assert "softplus: not tested (mean" in text  # Fig. 4: no analytic E[Q] for it, so it is left out
    assert "![Q-convergence/elementwise_softplus_convergence]" not in text  # no png written here
    assert "| softplus | 0.01 |" in text  # Fig. 6 table
    # a softplus run that fails its rule counts like any other activation
    edit_figure(figures, "Q-convergence/elementwise_softplus_convergence", steps_to_converge=[1, 2, 3])
    assert summary_rows(report(figures)[1])["larger |Q| reaches a fixed loss in fewer steps"] == PARTLY


def test_a_claim_over_seeds(figures, monkeypatch):
    """A measurement that returns PerSeed is judged per seed: 'holds in k of N seeds'."""
    def per_seed(f):  # steps_to_converge [seeds, runs]
        return mr.PerSeed(dict(Q0=f["Q0"], steps=s, diverged_at=f["diverged_at"]) for s in f["steps_to_converge"])

    claim = mr.Claim("Fig. 6", "over seeds", "Larger |Q| converges faster, in every seed.", mr.FIG6, per_seed,
                     mr.rule_faster_with_larger_Q)
    monkeypatch.setattr(mr, "SECTIONS", (mr.Section("Fig. 6: seeds", (claim,), lambda get: []),))
    fast, slow = [102_050, 59_577, 3_496], [3_496, 59_577, 102_050]
    for act in paper.PAPER_ACTIVATIONS:
        edit_figure(figures, f"Q-convergence/elementwise_{act}_convergence", steps_to_converge=[fast, fast, fast])
    status, text = report(figures)
    assert status == 0 and summary_rows(text) == {"over seeds": REPRODUCED} and "holds in 3 of 3 seeds" in text
    edit_figure(figures, "Q-convergence/elementwise_tanh_convergence", steps_to_converge=[fast, slow, fast])
    status, text = report(figures)
    assert summary_rows(text) == {"over seeds": PARTLY} and "tanh: partly (holds in 2 of 3 seeds" in text
    assert "seed 1: not reproduced (does not fall" in text


def test_report_file_permissions_and_no_machine_paths(figures):
    old = os.umask(0o022)
    try:
        report(figures)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(figures / "REPORT.md").st_mode) == 0o644
    assert not [p for p in os.listdir(figures) if p.startswith(".tmp")]
    text = (figures / "REPORT.md").read_text()
    assert "/home/someone" not in text and "shared/" not in text and "folder named `cifar`" in text


def test_report_flags_quick_data_and_missing_figures(tmp_path):
    write_toy_figures(tmp_path, quick=True, float64=False)
    for ext in (".npz", ".json"):
        os.remove(tmp_path / ("Q-convergence/radial_zoomed_1e6" + ext))
    os.remove(tmp_path / "Q-hessian-eigenvalues/Q-sharpness_relu_mnk_10_5_50.npz")
    os.remove(tmp_path / "Q-hessian-eigenvalues/Q-sharpness_relu_mnk_10_5_50.json")
    status, text = report(tmp_path, "--cifar-dir", str(tmp_path / "no_cifar_here"))
    verdicts = summary_rows(text)
    assert status == 0  # missing data is not an error
    assert verdicts["Q nearly conserved under GD, every lr (float32)"] == "reproduced (smoke test)"
    assert verdicts["float64: drift of Q proportional to lr"] == mr.NOT_RUN
    assert verdicts["steps to converge proportional to Q (radial)"] == mr.NOT_RUN
    assert "Smoke-test data" in text and "not a reproduction" in text
    assert "python Q_convergence_radial.py --out" in text and "--dtype float64" in text
    assert "not run for relu" in text and "Not run for relu: make it with `python Q_hessian_eigenvalues.py" in text
    assert all(v == mr.NOT_RUN for s, v in verdicts.items() if "group" in s)
    assert "CIFAR-10 was not available" in text and "CIFAR_DIR=/path" in text
    assert "CIFAR-10 was probably not available" in report(tmp_path)[1]  # without --cifar-dir it cannot know


def test_report_rejects_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "make_report.py"), "--out", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and "no folder" in result.stderr and len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# (c) make figures QUICK=1, end to end (scripts, float64 variant, both notebooks on tiny CIFAR, report)

@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_figures_quick(tmp_path, tiny_cifar):
    out = tmp_path / "figures"
    result = subprocess.run(["make", "-o", ".venv/.installed", "figures", "QUICK=1", f"OUT={out}",
                             f"CIFAR_DIR={tiny_cifar}"], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = (out / "REPORT.md").read_text()
    verdicts = summary_rows(text)
    assert len(verdicts) == len(CLAIMS) and "not run" not in " ".join(verdicts.values())
    assert all(v.endswith("(smoke test)") for v in verdicts.values())
    assert DATA_ERROR_TEXT not in text and "Data errors" not in text
    for png in ("Q-dynamics/elementwise_linear_loss_Q.png", "ensemble/cnn_cifar_leakyrelu2_main_acc.png",
                "ensemble/cnn_cifar_leakyrelu_PGD_h16_g200_eps10.png", "float64/Q-dynamics/elementwise_tanh_loss_Q.png"):
        assert (out / png).is_file()
        assert f"]({png})" in text or png.startswith("float64")
