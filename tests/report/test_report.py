"""make_report.py on small saved data written here: every claim reproduced and every check passing on base data, then
broken one at a time (a failing check marks its figure broken); Q shifted by a constant (a claim about |Q| whose
verdict then differs between the conventions says so; the others do not move); unreadable files, diverged runs, new
activations, seeds; and `make figures QUICK=1` end to end. The rules themselves are tested in test_verdict_rules.py,
test_toy_rules.py and test_cifar_claims.py.

The synthetic data are shaped like the scripts' output, built from the paper code's numbers (paper_numbers.py) or
made up; nothing is read from, or written into, the repository's figures/.
"""
import glob
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from gfs.cifar import dataset
import make_report as mr
from gfs.runs.saved_files import settings_digest
from gfs import paper_numbers as paper
import Q_convergence_elementwise as fig6
import Q_convergence_radial as fig7
import Q_distribution as fig45
import Q_dynamics_elementwise as fig3
import Q_hessian_eigenvalues as fig9
from Q_dynamics_elementwise import delta_Q_tilde, max_abs
from helpers import EPS, group_minus_original, quick_values
from gfs.report.claims_fig10 import EXACT
from gfs.report.verdict_rules import NOT_REPRODUCED, PARTLY, REPRODUCED
from gfs.report import verdict_rules

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_figure(root, name, data, settings):
    """Write root/name.npz and .json as save_figure does (no plot): the .json names the figure and
    is sealed with the .npz."""
    stem = os.path.join(root, name)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    np.savez(stem + ".npz", **{k: np.asarray(v) for k, v in data.items()})
    settings = dict(settings, figure_name=name, npz_sha256=hashlib.sha256(open(stem + ".npz", "rb").read()).hexdigest())
    settings["settings_sha256"] = settings_digest(settings)
    with open(stem + ".json", "w") as f:
        json.dump(settings, f)


def edit_figure(root, name, **changes):
    """Change some arrays of a saved figure (and re-seal its .json, as a new run would)."""
    with np.load(os.path.join(root, name + ".npz")) as saved:
        data = {k: saved[k] for k in saved.files}
    with open(os.path.join(root, name + ".json")) as f:
        settings = json.load(f)
    write_figure(root, name, {**data, **changes}, settings)


def save_as(root, name, new_name, keep=False):
    """The saved figure `name` as a run that saved it under `new_name` would have left it."""
    with np.load(os.path.join(root, name + ".npz")) as saved, open(os.path.join(root, name + ".json")) as f:
        write_figure(root, new_name, {k: saved[k] for k in saved.files}, json.load(f))
    for ext in () if keep else (".npz", ".json"):
        os.remove(os.path.join(root, name + ext))


def run_settings(command, seconds, quick=False, **extra):
    return {"quick": quick, "device": "cpu", "dtype": "float32", "run_seconds": seconds, "command": command,
            "machine": "x86_64, 2 cores", "created": "2026-01-01T00:00:00", **extra}


# The paper code's Q is ours plus a constant for tanh and sigmoid (-n k; here made up per file) in Figs. 3-5, whose
# claims do not depend on it; in the files of the |Q| trends (Figs. 6 and 9) the base data keep both conventions
# equal, and shift_paper_keys moves the paper's. Per-run numbers have a leading seed axis, as the scripts save them.
PAPER_CONSTANT = {"tanh": -250.0, "sigmoid": -500.0}
SEEDS = 6  # of Figs. 6 and 9 and their same-function and per-neuron files (5 series give a sign test p of 1/32)
# Made-up sharpness trends for tanh and sigmoid, increasing with |Q from 0|; with the paper code's constant (minus
# 250) tanh's Q is not monotone in |Q|, as in the paper's Fig. 9
FIG9_BASE = {"tanh": ([0.0002, 15.0, 24.0, -168.0], [16.0, 25.1, 69.7, 117.8]),
             "sigmoid": ([-0.005, 7.0, 27.6, 50.0], [60.0, 80.0, 110.0, 150.0])}


PER_NEURON_SEEDS = 8  # of the per-neuron files: every seed one vote, Holm over the statistics (test_per_neuron_rules)


def per_neuron_orbits(follow="min_abs"):
    """Per-neuron statistics and a value [PER_NEURON_SEEDS, 2, 5] along the two per-neuron orbits of each seed: the
    sum grows on the first ('together') and falls on the second ('opposed'), the spread and min |Q_a| grow on both.
    The value follows min |Q_a| (which predicts it, and the spread too; the sum, up on one orbit and down on the
    other, does not), or the sum."""
    t, seeds = np.linspace(0, 1, 5), PER_NEURON_SEEDS
    total = np.stack([5.0 + 10 * t, 15.0 - 10 * t])
    spread = np.stack([1 + 3 * t, 1 + 3 * t])
    min_abs = np.stack([1 + 2 * t, 1 + 2 * t]) + 0.01 * np.arange(seeds)[:, None, None]
    stats = {"sum_zero": np.broadcast_to(total, (seeds, 2, 5)), "spread": np.broadcast_to(spread, (seeds, 2, 5)),
             "min_abs_zero": min_abs, "edge_distance": np.ones((seeds, 2, 5))}
    stats.update(sum_paper=stats["sum_zero"], min_abs_paper=stats["min_abs_zero"])
    return stats, (1 + min_abs) if follow == "min_abs" else np.broadcast_to(total, (seeds, 2, 5))


def fig3_data(drift, constant, records=5):
    """Fig. 3 data with the largest |dQ~| (Q from 0) drift [3] per run; the paper code's keys differ by constant."""
    Q0, N0 = -1.93, 7.15
    Q = Q0 - np.outer(drift, np.r_[0, np.linspace(0, 1, records - 1)]) * N0  # |Q_t| / N_0 grows by drift after step 1
    data = {"steps": np.arange(records) * 100, "loss": np.full((3, records), 1e-3), "lr": [0.1, 0.01, 0.001],
            "labels": ["lr=0.1", "lr=0.01", "lr=0.001"], "delta_Q_tilde_steps": np.arange(1, records) * 100,
            "final_loss": np.full((1, 3), 1e-3), "diverged_at": np.full((1, 3), -1),
            "drift_bound_zero": 2 * np.asarray(drift)[None]}
    for suffix, shift, size in (("_zero", 0.0, N0), ("", constant, N0 + abs(constant))):
        delta = delta_Q_tilde(Q + shift, np.full(3, size))
        data.update({f"Q0{suffix}": np.full((1, 3), Q0 + shift), f"normaliser{suffix}": np.full((1, 3), size),
                     f"delta_Q_tilde{suffix}": delta, f"max_delta_Q_tilde{suffix}": max_abs(delta)[None]})
    data["Q"], data["max_Q_change_zero"] = Q + constant, max_abs((Q - Q[:, :1]) / N0)[None]
    return data


def write_toy_figures(root, activations=paper.PAPER_ACTIVATIONS, quick=False, float64=True):
    """Figs. 3-9 data files shaped like the scripts' output, on which every toy claim holds."""
    from Q_distribution import expected_Q_at_init

    from gfs.per_neuron import HIGHER_ORDER
    from models import get_activation
    steps, rng = np.arange(0, 401, 100), np.random.default_rng(0)
    grow = 1 + 0.1 * np.arange(SEEDS)[:, None]  # seed s: the same trends, other numbers
    for i, act in enumerate(activations):
        c, settings = PAPER_CONSTANT.get(act, 0.0), dict(quick=quick, activation=act,
                                                          paper_constant=get_activation(act).paper_constant)
        fig6_settings = dict(settings, learning_rate=fig6.LEARNING_RATE, converged_loss=fig6.CONVERGED_LOSS,
                             init_std=fig6.ORBIT_INIT_STD)  # as the script saves them (init_std: the orbits')
        fig9_settings = dict(settings, m=fig9.M, n=fig9.N, hidden=fig9.HIDDEN, init_stds=fig9.INIT_STDS,
                             plotted_run=fig9.PER_NEURON_PLOTTED)
        name = fig3.figure_name(act)
        data = fig3_data(np.array([6.9e-4, 7.0e-5, 7.0e-6]) * (1 + 0.1 * i), c)  # proportional to lr
        fig3_settings = dict(settings, learning_rates=fig3.LEARNING_RATES, bound_higher_order=HIGHER_ORDER)
        write_figure(root, name, data, run_settings("Q_dynamics_elementwise.py", 700.0, **fig3_settings))
        if float64:
            write_figure(os.path.join(root, "float64"), name, data, run_settings(
                "Q_dynamics_elementwise.py --dtype float64", 900.0, **fig3_settings, dtype="float64"))
        Q0 = np.array([-0.0193, -1.93, -193]) * (1 + i) * grow
        write_figure(root, fig6.figure_name(act),
                     {"steps": steps, "loss": np.ones((3, len(steps))), "Q": np.zeros((3, len(steps))),
                      "Q0_zero": Q0, "Q0": Q0, "init_std": [0.01, 0.1, 1.0],
                      "labels": [f"Q={q:.3g}" for q in Q0[0]],
                      "steps_to_converge": np.array([102_050, 59_577, 3_496]) * grow.astype(int),
                      "initial_loss": np.full((SEEDS, 3), 7.3), "final_loss": np.full(3, 1e-3),
                      "diverged_at": np.full((SEEDS, 3), -1)},
                     run_settings("Q_convergence_elementwise.py --seeds 3 --same-function", 700.0, **fig6_settings,
                                  steps=400_000))
        lambdas = np.broadcast_to(np.geomspace(0.25, 4, 7), (SEEDS, 7))
        Q = np.array([41.5, 15.9, 4.8, -1.9, -8.7, -22.1, -59.1]) * grow
        output = np.random.default_rng(i).standard_normal((5, 10))
        write_figure(root, fig6.figure_name(act, "same_function"),
                     {"lambdas": lambdas, "Q0_zero": Q, "Q0": Q, "off_data_gap": np.full((SEEDS, 7), 0.1),
                      "steps_to_converge": (70_000 - 800 * np.abs(Q)).astype(int),
                      "initial_output": np.broadcast_to(output, (SEEDS, 7, 5, 10))
                      * (1 + 1e-8 * rng.random((SEEDS, 7, 1, 1))),
                      "diverged_at": np.full((SEEDS, 7), -1), "trained_steps": 70_000, "step_budget": 400_000},
                     run_settings("Q_convergence_elementwise.py --seeds 3 --same-function", 700.0, **fig6_settings))
        stats, value = per_neuron_orbits()
        write_figure(root, fig6.figure_name(act, "per_neuron"),
                     {**stats, "steps_to_converge": (100_000 * value).astype(int), "step_budget": 400_000,
                      "diverged_at": np.full((PER_NEURON_SEEDS, 2, 5), -1),
                      "training_gap": np.full((PER_NEURON_SEEDS, 2, 5), 1e-8),
                      "off_data_gap": np.full((PER_NEURON_SEEDS, 2, 5), 0.05)},
                     run_settings("Q_convergence_elementwise.py --seeds 3 --same-function", 700.0, **fig6_settings))
        Q0, top = FIG9_BASE.get(act, ([0.001 * (1 + i), 17.3, 69.3, 156], [17.7, 30.0, 107.5, 239.5]))
        Q0, top = np.array(Q0) * grow, np.array(top) * grow
        write_figure(root, fig9.figure_name(act),
                     {"Q0_zero": Q0, "Q0": Q0, "largest_eigenvalue": top, "nonzero_count": np.full((SEEDS, 4), 50),
                      "final_loss": np.full((SEEDS, 4), 1e-10), "init_std": [0.001, 0.3, 0.6, 0.9],
                      "diverged_at": np.full((SEEDS, 4), -1)},
                     run_settings("Q_hessian_eigenvalues.py --seeds 3 --same-function", 20.0, **fig9_settings))
        Q = Q0[..., None] + np.array([600, 200, 60, 0, -60, -200, -600])  # [S, 4, 7] along each minimum's orbit
        write_figure(root, fig9.figure_name(act, "same_function"),
                     {"lambdas": np.broadcast_to(lambdas[:, None], Q.shape), "Q_zero": Q, "Q": Q,
                      "off_data_gap": np.full(Q.shape, 0.2),
                      "init_std": [0.001, 0.3, 0.6, 0.9],
                      "largest_eigenvalue": 10 + 0.3 * np.abs(Q), "largest_eigenvalue_hessian": np.full((4, 2), 190.0),
                      "output": np.broadcast_to(output.T, Q.shape + (10, 5)), "loss": np.full(Q.shape, 1e-10),
                      "final_loss": np.full((SEEDS, 4), 1e-10), "diverged_at": np.full((SEEDS, 4), -1)},
                     run_settings("Q_hessian_eigenvalues.py --seeds 3 --same-function", 20.0, **fig9_settings))
        per_run = lambda a: np.broadcast_to(a[:, None], (PER_NEURON_SEEDS, 4) + a.shape[1:])  # noqa: E731 [S, 4, ...]
        write_figure(root, fig9.figure_name(act, "per_neuron"),
                     {**{k: per_run(v) for k, v in stats.items()}, "largest_eigenvalue": per_run(10 * value),
                      "training_gap": np.full((PER_NEURON_SEEDS, 4, 2, 5), 1e-15),
                      "off_data_gap": np.full((PER_NEURON_SEEDS, 4, 2, 5), 0.1),
                      "final_loss": np.full((PER_NEURON_SEEDS, 4), 1e-10),
                      "diverged_at": np.full((PER_NEURON_SEEDS, 4), -1)},
                     run_settings("Q_hessian_eigenvalues.py --seeds 3 --same-function", 20.0, **fig9_settings))
    for act, (m, h, n) in [(a, (100, 100, 100)) for a in activations] + [("linear", (100, 200, 100)),
                                                                         ("linear", (200, 100, 100))]:
        known = act in paper.PAPER_ACTIVATIONS
        Q = rng.normal(expected_Q_at_init(act, m, h, n, "zero") if known else 3.0, 2.0, 1000)
        constant = expected_Q_at_init(act, m, h, n) - expected_Q_at_init(act, m, h, n, "zero") if known else 0.0
        write_figure(root, fig45.figure_name(act, (m, h, n)),
                     {"Q_zero": Q, "Q": Q + constant, "shape_mhn": [m, h, n],
                      "expected_Q_zero": expected_Q_at_init(act, m, h, n, "zero") if known else math.nan,
                      "expected_Q": expected_Q_at_init(act, m, h, n) if known else math.nan,
                      "Q_terms_zero": 200.0, "Q_terms_paper": 200.0 + abs(constant)},
                     run_settings("Q_distribution.py", 30.0, quick, activation=act, shape_mhn=[m, h, n]))
    Q0, base = np.array([0.002, 0.2, 20.0, 2000.0]), rng.standard_normal((5, 10))
    write_figure(root, fig7.FIGURE,
                 {"steps": np.array([0, 1_000_000]), "loss": np.full((4, 2), 0.135), "Q": Q0[:, None] * np.ones(2),
                  "Q0": Q0[None], "steps_to_converge": [[69, 6_750, 674_771, -1]],
                  "initial_output": np.stack([base] * 4)[None], "initial_loss": np.full((1, 4), 0.135),
                  "final_loss": np.full((1, 4), 1e-3), "diverged_at": np.full((1, 4), -1)},
                 run_settings("Q_convergence_radial.py", 500.0, quick, init_scales=fig7.INIT_SCALES,
                              converged_loss=fig7.CONVERGED_LOSS))


def shift_paper_keys(root, shift, names=None):
    """Add `shift` to every value of Q in the paper code's convention (and to its size N_0, by |shift|), as if the
    paper's code had another integration constant; Q from 0 (the *_zero keys) stays as it is. names: only these
    saved figures (default: all)."""
    for path in glob.glob(os.path.join(root, "**", "*.npz"), recursive=True):
        name = os.path.relpath(path, root)[:-4]
        if names is not None and name not in names:
            continue
        with np.load(path) as saved:
            data = {k: saved[k] for k in saved.files}
        changes = {k: data[k] + shift for k in ("Q0", "Q", "expected_Q") if k in data and "radial" not in name}
        if "delta_Q_tilde" in data:  # Fig. 3: the drift, recomputed from the shifted records and N_0
            changes["normaliser"] = data["normaliser"] + abs(shift)
            changes["delta_Q_tilde"] = delta_Q_tilde(changes["Q"], changes["normaliser"][0])
            changes["max_delta_Q_tilde"] = max_abs(changes["delta_Q_tilde"])[None]
        edit_figure(root, name, **changes)


CIFAR_SEEDS = 3
FIG10 = dataset.fig10("paper")  # the paper's settings: h = 16, num_g = 200, group scale 10
FIG11_PAPER = dataset.fig11("{}", 16, 200, 10.0)
ROBUSTNESS = dataset.fig11("robustness", 16, 200, 10.0)  # + "_exact"
FIT_SIZE = dataset.FIT_SIZE
FIG11_BASE = {"FGSM": ([0, 0.003, 0.006, 0.009, 0.012], [0.6, 0.3, 0.2, 0.15, 0.12], [0.55, 0.36, 0.27, 0.22, 0.18]),
              "PGD": ([0, 1, 2, 3], [0.6, 0.2, 0.15, 0.12], [0.55, 0.26, 0.21, 0.18])}


def per_seed(values):
    """The same numbers in every seed: [S, ...]."""
    return np.broadcast_to(np.asarray(values), (CIFAR_SEEDS,) + np.shape(values)).copy()


def mcnemar_keys(prefix, diff, n, lost=0.05):
    """p_<comparison>_{diff,gained,lost,p} [S, K] for an accuracy difference diff [K] on n images, with lost * n
    discordant images against a (McNemar's exact p as the notebook computes it)."""
    from scipy.stats import binomtest
    lost = np.full(len(diff), round(lost * n))
    gained = lost + np.round(np.asarray(diff) * n).astype(int)
    p = [binomtest(int(g), int(g + d), 0.5).pvalue for g, d in zip(gained, lost)]
    return {f"{prefix}_diff": per_seed((gained - lost) / n), f"{prefix}_gained": per_seed(gained),
            f"{prefix}_lost": per_seed(lost), f"{prefix}_p": per_seed(p)}


def robustness_data():
    """The standard robustness evaluation's arrays (either numerics) on which every claim holds: under the suite the
    group gains over the original, the independent CNN and the shared-trunk ensemble; every sanity check passes;
    the members agree with the original on held-out images."""
    from gfs.cifar import robustness
    radii, n = np.array([1, 2, 4, 8]) / 255, 1000
    accuracy = {"original": np.array([0.40, 0.20, 0.05, 0.0])}
    accuracy.update(group=accuracy["original"] + [0.06, 0.06, 0.04, 0.0], perm_interp=accuracy["original"] + 0.01,
                    independent=accuracy["original"] + 0.01, deep=accuracy["original"] + 0.015)
    attacks, checks = len(robustness.ATTACKS), len(robustness.SANITY_CHECKS)
    data = {"seeds": np.arange(CIFAR_SEEDS), "control_seeds": np.arange(1000, 1003), "radii": radii,
            "suite_images": n, "group_scale": 10.0, "num_g": 200, **{k: 1 for k in robustness.SUITE_SETTINGS},
            "symmetry_error": per_seed(1e-6), "symmetry_error_fitted": per_seed(1e-6)}
    for c in robustness.ALL_CLASSIFIERS:
        data.update({f"robust_acc_{c}": per_seed(accuracy[c]), f"clean_acc_{c}": per_seed(0.6),
                     f"decided_{c}": per_seed(np.arange(attacks * 4).reshape(attacks, 4)),
                     f"sanity_{c}": per_seed(np.ones((checks, 4), bool)),
                     f"alone_acc_{c}": per_seed(np.tile(accuracy[c], (attacks, 1))),
                     f"cumulative_acc_{c}": per_seed(np.tile(accuracy[c], (attacks, 1))),
                     f"audit_robust_acc_{c}": per_seed(accuracy[c]), f"doubled_acc_{c}": per_seed(accuracy[c]),
                     f"converged_{c}": per_seed(np.ones(4, bool)), f"strongest_{c}": per_seed(np.full(4, 4)),
                     f"square_curve_queries_{c}": per_seed(np.array([100, 1000, 5000])),
                     f"square_curve_{c}": per_seed(np.tile(accuracy[c][:, None], (1, 3)))})
    data["member_clean_acc_deep"] = per_seed(np.array([0.6, 0.61, 0.62]))
    for m in robustness.ENSEMBLES:
        data.update({f"heldout_{k}_{m}": per_seed(v) for k, v in (("agreement", 0.995), ("agreement_min", 0.99),
                     ("gap_p10", 1e-7), ("gap_p50", 1e-6), ("gap_p90", 1e-5), ("saturated", 0.0), ("nonfinite", 0.0))})
    for name, (a, b) in dict(robustness.COMPARISONS, group_vs_independent=("group", "independent"),
                             group_vs_deep=("group", "deep")).items():
        data.update(mcnemar_keys(name, accuracy[a] - accuracy[b], n, lost=0.02))
    return data


def suite_settings():
    """The saved .json's description of the suite (robustness.suite_description) and its settings."""
    from gfs.cifar import robustness
    return dict(robustness.suite_description(), settings={k: 1 for k in robustness.SUITE_SETTINGS}, images=1000)


def fit_size_data(largest=0.995):
    """The fit-size experiment's arrays: agreement grows with the images per element and reaches `largest`."""
    agreement = np.array([[0.3, 0.8, 0.95, largest]] * 3)
    return {"seeds": np.arange(CIFAR_SEEDS), "scales": [0.1, 1.0, 10.0], "sizes": [16, 64, 256, 1024], "members": 8,
            "original_acc": per_seed(0.55), "heldout_agreement": per_seed(agreement),
            "heldout_agreement_min": per_seed(agreement - 0.01), "heldout_gap_p50": per_seed(1 - agreement),
            "heldout_saturated": per_seed(np.zeros((3, 4))), "mean_acc": per_seed(0.5 + agreement * 0.05),
            "fit_error": per_seed(np.full((3, 4), 1e-3))}


def write_cifar_figures(root, quick=False):
    """Fig. 10-11 data files shaped like the notebooks' output (3 seeds, both numerics), on which every claim
    holds: every cell a symmetry, the paper notebook's group heat map [C] with baselines below it."""
    group = group_minus_original() + 0.55
    low = np.full_like(group, 0.1)
    low[3:] = group[3:]
    grid = {"seeds": np.arange(CIFAR_SEEDS), "num_g": [10, 20, 40, 60, 80, 100, 120], "group_scale": EPS,
            "original_acc": per_seed(0.55), "original_mean_acc": per_seed(0.55), "symmetry_tolerance": 1e-3,
            **{k: per_seed(np.full((7, 7), 1e-9)) for k in ("symmetry_error", "symmetry_error_hidden",
                                                               "symmetry_error_fitted")},
            **{f"heldout_{k}": per_seed(np.full((7, 7), v)) for k, v in (
                ("agreement", 0.995), ("agreement_min", 0.99), ("gap_p10", 1e-7), ("gap_p50", 1e-6), ("gap_p90", 1e-5),
                ("saturated", 0.0), ("nonfinite", 0.0))}}
    for mode, values in {"group": group, "perm_interp": group - 0.05, "g_inverse": low, "random": low,
                         "shuffle": low}.items():
        grid.update({f"vote_acc_{mode}": per_seed(values), f"mean_acc_{mode}": per_seed(values),
                     f"finite_frac_{mode}": per_seed(np.ones((7, 7))), f"overflow_{mode}": per_seed(values < -1)})
    for suffix, numerics in (("", "paper"), ("_exact", "exact")):
        write_figure(root, FIG10 + suffix, grid, run_settings(
            "ensemble_CIFAR.ipynb", 130.0, quick, figure="Fig. 10", numerics=numerics, fit_noise=1e-4, hidden=16,
            action_dtype="float32", modes=["group", "perm_interp", "g_inverse", "random", "shuffle"],
            data={"folder": "/home/someone/datasets/cifar", "source": "not the official release: MD5 differs from "
                  "torchvision's published checksum for data_batch_1", "digest": "ab" * 32, "official": False,
                  "eval_split": "test", "eval_images": 10000}))
    for method, (strengths, original, group) in FIG11_BASE.items():
        data = {"seeds": np.arange(CIFAR_SEEDS), "strengths": strengths, "clamp_only_acc": per_seed(0.28),
                **{k: per_seed(0.6) for k in ("symmetry_error", "symmetry_error_hidden", "symmetry_error_fitted")}}
        for m, values in {"original": original, "group": group, "g_inverse": [0.1] * len(strengths),
                          "perm_interp": original, "random": [0.1] * len(strengths),
                          "shuffle": [0.1] * len(strengths)}.items():
            data[f"acc_{m}"] = data[f"mean_acc_{m}"] = per_seed(values)
        write_figure(root, FIG11_PAPER.format(method), data, run_settings(
            "ipykernel_launcher.py -f kernel-1234.json", 1000.0, quick, notebook="adversarial_CIFAR.ipynb",
            protocol="paper", attack=method, num_eval=1000, data={
                "source": "the official release (every MD5 matches torchvision's published checksums)",
                "official": True, "digest": "cd" * 32, "folder": "/home/someone/datasets/cifar"}))
    for suffix, numerics in (("", "paper"), ("_exact", "exact")):
        write_figure(root, ROBUSTNESS + suffix, robustness_data(), run_settings(
            "ipykernel_launcher.py -f kernel-1234.json", 1000.0, quick, notebook="adversarial_CIFAR.ipynb",
            protocol="corrected", numerics=numerics, suite=suite_settings()))
    write_figure(root, FIT_SIZE, fit_size_data(), run_settings("ensemble_CIFAR.ipynb", 130.0, quick, figure="Fig. 10"))


def edit_exact(root, name, change):
    """Change arrays of the exact-numerics file `name`: change(data) -> {key: new array}."""
    with np.load(os.path.join(root, name + "_exact.npz")) as saved:
        data = {k: saved[k].copy() for k in saved.files}
    edit_figure(root, name + "_exact", **change(data))


def with_column(values, k, value):
    """values [S, K] with column k set to value."""
    values = values.copy()
    values[:, k] = value
    return values


CLAIMS = [c.short for s in mr.SECTIONS for c in s.claims if not c.check]
CHECKS = [c.short for s in mr.SECTIONS for c in s.claims if c.check]


def reading_row(text, claim, label, verdict=""):
    """The row of `label` (an activation, or 'tanh, zero') in the verdict table of the claim whose paragraph starts
    with `claim`, starting '| label | verdict | ' where a verdict is given."""
    start = text.index(claim)
    end = text.find("**Claim (", start + 1)
    prefix = f"| {label} | " + (f"{verdict} | " if verdict else "")
    return next(line for line in text[start:end if end > 0 else None].splitlines() if line.startswith(prefix))


def summary_rows(report, table="## What holds"):
    """{short claim: verdict} from the table that opens the report (| in a claim is escaped there); table="## Checks":
    {check: result} from the checks table."""
    rows, inside = {}, False
    for line in report.splitlines():
        inside = line == table or (inside and not (rows and not line))  # the first table after the heading
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if inside and line.startswith("| Fig") and len(cells) in (4, 5):
            rows[cells[1].replace("\\|", "|")] = cells[2].strip("*")
    return rows


def legend_words(text):
    """The verdict words the legend defines ('**passes / fails**: ...' defines both)."""
    legend = next(line for line in text.splitlines() if line.startswith("**Legend.**"))
    return {w for entry in re.findall(r"\*\*([^*]+)\*\*: ", legend) for w in entry.split(" / ")}


def report(out, *extra):
    """(exit status of make_report.py in this process, REPORT.md). Every verdict the report shows in its tables must
    be one the legend defines (a '(smoke test)' mark aside)."""
    status = mr.main(["--out", str(out), *extra])
    with open(os.path.join(out, "REPORT.md")) as f:
        text = f.read()
    shown = {v.removesuffix(" (smoke test)") for t in ("## What holds", "## Checks") for v in summary_rows(text, t).values()}
    assert shown <= legend_words(text), shown - legend_words(text)
    return status, text


@pytest.fixture(scope="module", autouse=True)
def each_rule_computed_once_per_input():
    """The claims' rules are pure functions of the measurements they are given, and most tests here change one
    figure of the base data, so the other claims get the same measurements again: within this module each rule runs
    once per distinct measurement (a key of its pickled arguments), which more than halves the module's time. The
    report is otherwise built in full each time (reading and checking every file, the checks, the tables), and a
    measurement that cannot be pickled is computed every time."""
    original, results = verdict_rules.without_diverged, {}

    def once(rule, **measurement):
        try:
            key = pickle.dumps((rule, measurement))
        except (pickle.PicklingError, AttributeError, TypeError):
            return original(rule, **measurement)
        if key not in results:
            results[key] = original(rule, **measurement)
        return results[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verdict_rules, "without_diverged", once)
        yield


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
    (figures / "Q-dynamics" / "elementwise_linear_loss_Q.png").write_bytes(b"\x89PNG")  # a saved plot is shown
    status, text = report(figures)
    assert "![](Q-dynamics/elementwise_linear_loss_Q.png)" in text
    assert status == 0 and summary_rows(text) == {short: REPRODUCED for short in CLAIMS}
    assert summary_rows(text, "## Checks") == {short: verdict_rules.PASSES for short in CHECKS}
    assert "| experiment | linear | relu | tanh | sigmoid |" in text  # the outputs off the training inputs
    assert "| Fig. 9 per-neuron | 0.1 / 0.1 | 0.1 / 0.1 | 0.1 / 0.1 | 0.1 / 0.1 |" in text
    assert "> **Smoke-test data**" not in text and "**No verdict: not run" not in text and DATA_ERROR_TEXT not in text
    assert f"**{mr.fmt_seconds(700 + 900 + 700 + 20 + 30 + 500 + 130 + 1000)}**" in text  # each command counted once
    # the CIFAR sections name the data: official or not, and the digest of the files read
    assert "CIFAR-10 data: the official release (every MD5 matches" in text and f"`{'cd' * 32}`" in text
    assert "not the official release: MD5 differs from torchvision's published checksum for 1 file;" in text
    # the same rule run on the paper code's numbers, where the claim has them
    assert "*The same rule on the paper code's numbers [R]:* reproduced (Q x" in text
    assert "*The same rule on the paper code's numbers [C]:* not reproduced (group - perm_interp" in text
    # the rule text is the first paragraph of the rule's docstring, with its thresholds filled in; a long rule prints
    # its gist there and points to docs/report.md, which states it in full
    trend = "*Rule:* Over seeds (the unit): a one-sided sign test p < 0.05, a 95 % bootstrap interval of the median "
    assert trend in text and text[text.index(trend):].split("\n")[0].endswith(" In full: docs/report.md, *Rules*.")
    assert "Holm-adjusted p < 0.05, an effect of at least 10% and 2 x the seeds' spread" in text  # per-neuron
    assert "In full: per seed" not in text and "In full: along" not in text  # the full rules are in the docs
    drift = "*Rule:* In float64, the largest change of Q from its initial value"  # a short rule: all of it, no pointer
    assert drift in text and "docs/report.md" not in text[text.index(drift):].split("\n")[0]
    # Fig. 4 is brief: each unit's deciding numbers (its verdict is the claim's), the same in both conventions
    assert re.search(r"\*\*Verdict: reproduced\.\*\* linear: mean [0-9.]+ SE off E\[Q\], std [0-9.]+% of terms; ", text)
    assert "{" + "threshold}" not in text
    # one page first: what holds (with what decides each row), then the legend; a shared rule is printed once
    assert text.index("## What holds") < text.index("**Legend.**") < text.index("## Checks") < text.index("## Fig. 3")
    # a claim the exact numerics decide: their deciding number (the section shows the paper numerics' too)
    assert "| group beats g^-1, random, shuffle at eps = 1 and 10 | **reproduced** | smallest lead over a " in text
    assert "| exact numerics, 3 seeds |" in text and "| 4 activations, 6 seeds |" in text
    assert text.count(trend) == 1
    assert '*Rule:* as for "larger |Q| reaches a fixed loss in fewer steps" above.' in text


DATA_ERROR_TEXT = "No verdict: data error"
TANH_F9 = fig9.figure_name("tanh")


SAME_6 = fig6.figure_name("tanh", "same_function")
SAME_9 = fig9.figure_name("relu", "same_function")


def break_radial_function(root):
    base = np.random.default_rng(1).standard_normal((5, 10))
    edit_figure(root, fig7.FIGURE, initial_output=np.stack([base, base, base * 1.01, base])[None])


def seeds_of(row, seeds=SEEDS):
    """One row of per-run numbers, the same in every seed: [seeds, runs]."""
    return np.tile(row, (seeds, 1))


def moved_one_point(root, name, key):
    """One point of seed 0's first orbit computes another function."""
    with np.load(os.path.join(root, name + ".npz")) as saved:
        outputs = saved[key].copy()
    outputs[(0,) * (outputs.ndim - 3) + (2,)] *= 1.01
    edit_figure(root, name, **{key: outputs})


def edit_both(root, name, key, values):
    """Set a quantity of Q in both conventions (key: the zero convention's; the paper's key from toy_rules.q_key)."""
    from gfs.report.toy_rules import q_key
    edit_figure(root, name, **{key: values, q_key(key, "paper"): values})


PER_NEURON_6, PER_NEURON_9 = fig6.figure_name("tanh", "per_neuron"), \
    fig9.figure_name("tanh", "per_neuron")


def follow_the_sum(root, name, key, scale):
    """The per-neuron value follows the sum of the Q_a: the sum predicts it."""
    _, total = per_neuron_orbits("sum")
    values = scale * total
    edit_figure(root, name, **{key: values if "convergence" in name
                               else np.broadcast_to(values[:, None], (PER_NEURON_SEEDS, 4, 2, 5))})


BREAKERS = {  # short claim -> (change the saved data so that its rule fails, the verdict then)
    "Q's change within the first-order bound of GD (float32)": (lambda r: edit_figure(
        r, fig3.figure_name("relu"), drift_bound_zero=[[1e-6] * 3]), PARTLY),
    "float64: drift of Q proportional to lr": (lambda r: edit_figure(
        r, "float64/" + fig3.figure_name("relu"), max_Q_change_zero=[[1e-4, 1e-5, 1e-5]]), PARTLY),  # in bound
    "Q concentrated at init around its analytic mean": (lambda r: edit_both(
        r, fig45.figure_name("tanh", fig45.FIG4_SHAPE), "Q_zero", np.random.default_rng(2).normal(-1 + 20, 2, 1000)),
        PARTLY),
    "centre of Q set by the layer sizes (E[Q] = m - h)": (lambda r: edit_both(
        r, fig45.figure_name("linear", fig45.FIG5_SHAPES[0]), "expected_Q_zero", 0.0), PARTLY),
    "larger |Q| reaches a fixed loss in fewer steps": (lambda r: edit_figure(
        r, fig6.figure_name("sigmoid"), steps_to_converge=seeds_of([3_496, 59_577, 102_050])),
        PARTLY),
    "same function: larger |Q| converges in fewer steps": (lambda r: edit_figure(
        r, SAME_6, steps_to_converge=seeds_of(np.arange(7) * 1000 + 10_000)), PARTLY),
    "per-neuron: a per-neuron statistic predicts the steps where |Q| does not": (
        lambda r: follow_the_sum(r, PER_NEURON_6, "steps_to_converge", 10_000), PARTLY),
    "steps to converge proportional to Q (radial)": (lambda r: edit_figure(
        r, fig7.FIGURE, steps_to_converge=[[69, 690, 6_900, 69_000]]), NOT_REPRODUCED),
    "largest Hessian eigenvalue grows with |Q|": (lambda r: edit_both(
        r, TANH_F9, "Q0_zero", seeds_of([paper.legend_Q(q) for q in paper.FIG9_LEGENDS["tanh"]])), PARTLY),
    "same function: sharpness grows with |Q| along the valley": (lambda r: edit_figure(
        r, SAME_9, largest_eigenvalue=np.full((SEEDS, 4, 7), 10.0) + np.arange(7)[::-1] % 3), PARTLY),
    "per-neuron: a per-neuron statistic predicts the sharpness where |Q| does not": (
        lambda r: follow_the_sum(r, PER_NEURON_9, "largest_eigenvalue", 10.0), PARTLY),
    "group-moved networks are symmetries on their fitting images": (lambda r: edit_exact(
        r, FIG10, lambda d: {"symmetry_error_fitted": np.where(np.array(EPS)[:, None] == 20, 0.5,
                                                               d["symmetry_error_fitted"])}), PARTLY),
    "group ensemble within 0.02 of the original at small eps": (lambda r: edit_exact(
        r, FIG10, lambda d: {"vote_acc_group": d["vote_acc_group"] - 0.05 * (np.arange(3)[:, None, None] == 0)
                             * (np.arange(7) == 3)[:, None]}), PARTLY),
    "group beats g^-1, random, shuffle at eps = 1 and 10": (lambda r: edit_exact(
        r, FIG10, lambda d: {"vote_acc_shuffle": d["vote_acc_group"] + 0.05}), PARTLY),
    "group beats the interpolated permutation at eps = 1 and 10": (lambda r: edit_exact(
        r, FIG10, lambda d: {"vote_acc_perm_interp": d["vote_acc_group"] + 0.05}), NOT_REPRODUCED),
    "group more robust than original (paper's protocol)": (lambda r: edit_figure(
        r, FIG11_PAPER.format("PGD"), acc_group=per_seed([0.55, 0.15, 0.1, 0.07])), PARTLY),
    "moved networks make the original's predictions on unseen images": (lambda r: edit_exact(
        r, FIG10, lambda d: {"heldout_agreement": np.where(np.array(EPS)[:, None] >= 1, 0.25, d["heldout_agreement"])}),
        PARTLY),
    "beyond the paper: fitted on more images, the action generalises": (lambda r: edit_figure(
        r, FIT_SIZE, heldout_agreement=per_seed(np.array([[0.3, 0.8, 0.95, 0.995]] * 2 + [[0.2, 0.3, 0.5, 0.6]]))),
        PARTLY),
    # a significant loss at 8/255 (the gains elsewhere, which the controls' claim reads, stay)
    "corrected: group more robust than original (standard evaluation)": (lambda r: edit_exact(
        r, ROBUSTNESS, lambda d: {"group_vs_original_diff": with_column(d["group_vs_original_diff"], 3, -0.03),
                                  "group_vs_original_p": with_column(d["group_vs_original_p"], 3, 1e-9)}), PARTLY),
    # the shared-trunk ensemble is as robust as the group: beyond the independent CNN only
    "corrected: gain beyond the controls (independent CNN, shared trunk)": (lambda r: edit_exact(
        r, ROBUSTNESS, lambda d: {"group_vs_perm_interp_p": np.full((3, 4), 0.5)}), PARTLY),
    "Fig. 11 members make the original's predictions on unseen images": (lambda r: edit_exact(
        r, ROBUSTNESS, lambda d: {"heldout_agreement_group": per_seed(0.23)}), NOT_REPRODUCED),
}


CHECK_BREAKERS = {  # check -> change the saved data so that it fails (its figure's claims are then broken)
    "float64: Q's change within the first-order bound of GD": lambda r: edit_figure(
        r, "float64/" + fig3.figure_name("tanh"), drift_bound_zero=[[1e-6] * 3]),
    "same function: the moved initialisations compute the same function": lambda r: moved_one_point(
        r, SAME_6, "initial_output"),
    "per-neuron orbits: the moved initialisations compute the same function": lambda r: edit_figure(
        r, PER_NEURON_6, training_gap=np.full((PER_NEURON_SEEDS, 2, 5), 1e-3)),
    "radial runs start from the same function": break_radial_function,
    "m*n nonzero Hessian eigenvalues at the minimum": lambda r: edit_figure(
        r, TANH_F9, nonzero_count=seeds_of([50, 61, 50, 50])),
    "same function: the moved minima compute the same function": lambda r: moved_one_point(r, SAME_9, "output"),
    "per-neuron orbits: the moved minima compute the same function": lambda r: edit_figure(
        r, PER_NEURON_9, training_gap=np.full((PER_NEURON_SEEDS, 4, 2, 5), 1e-8)),
}


def test_every_claims_module_is_in_the_report():
    """A claims module left out of make_report.CLAIM_MODULES would drop its figure from the report silently."""
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "gfs", "report", "claims_fig*.py"))}
    assert modules and modules == {m.__name__.rsplit(".", 1)[-1] for m in mr.CLAIM_MODULES}
    assert len(mr.SECTIONS) == sum(len(m.SECTIONS) for m in mr.CLAIM_MODULES)


def test_every_claim_and_check_has_a_breaker():
    assert sorted(BREAKERS) == sorted(CLAIMS) and sorted(CHECK_BREAKERS) == sorted(CHECKS)


@pytest.mark.parametrize("short", list(BREAKERS))
def test_each_rule_fails_on_saved_data_that_breaks_it(figures, short):
    change, verdict = BREAKERS[short]
    change(figures)
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and verdicts[short] == verdict
    assert all(v == REPRODUCED for s, v in verdicts.items() if s != short), verdicts  # the others unchanged
    assert set(summary_rows(text, "## Checks").values()) == {verdict_rules.PASSES}


@pytest.mark.parametrize("short", list(CHECK_BREAKERS))
def test_a_failing_check_marks_its_figure_broken(figures, short):
    """A check is an identity of the construction: it is not in the summary of claims, and when it fails the claims
    of its figure get no verdict (broken data) and make_report.py exits with status 1."""
    CHECK_BREAKERS[short](figures)
    status, text = report(figures)
    checks, verdicts = summary_rows(text, "## Checks"), summary_rows(text)
    figure = next(c.figure for s in mr.SECTIONS for c in s.claims if c.short == short)
    assert status == 1 and checks[short] == verdict_rules.FAILS and short not in verdicts
    assert all(v == verdict_rules.PASSES for s, v in checks.items() if s != short)
    of_figure = {c.short for s in mr.SECTIONS for c in s.claims if c.figure == figure and not c.check}
    assert of_figure and all(verdicts[s] == verdict_rules.BROKEN for s in of_figure)
    assert all(v == REPRODUCED for s, v in verdicts.items() if s not in of_figure)
    assert f"the check(s) {short} failed, so no verdict (as measured: reproduced" in text


def test_a_verdict_that_differs_between_the_conventions_is_reported_as_such(figures, tmp_path):
    """Constructed both ways. The base data have the same |Q| order in both conventions: every verdict is the same
    in both. Then the paper code's Q of tanh's Fig. 9 is moved by its constant (-250; Q from 0 stays): its |Q| is no
    longer ordered like the sharpness, so that claim depends on the convention, with both readings; a claim about a
    difference of Q (Fig. 3) and one whose |Q| order does not change (Fig. 6, Q < 0 moved further down) do not."""
    before = summary_rows(report(figures)[1])
    assert set(before.values()) == {REPRODUCED}
    shift_paper_keys(figures, -250.0, names=[TANH_F9, fig6.figure_name("tanh"),
                                              fig3.figure_name("tanh")])
    status, text = report(figures)
    after = summary_rows(text)
    assert status == 0 and after.pop("largest Hessian eigenvalue grows with |Q|") == "depends on the convention"
    before.pop("largest Hessian eigenvalue grows with |Q|")
    assert after == before
    claim = "**Claim (Fig. 9).** Larger |Q| gives a sharper minimum"
    assert "**Verdict: depends on the convention.** paper's convention: partly, zero convention: reproduced." in text
    assert reading_row(text, claim, "linear").startswith("| linear | reproduced | ")
    assert "| 0 of 6 | " in reading_row(text, claim, "tanh, paper's", "not reproduced")
    assert "| 6 of 6 | " in reading_row(text, claim, "tanh, zero", "reproduced")


@pytest.mark.parametrize("damage", ["truncated npz", "corrupt json", "missing key", "npz without json",
                                    "quick relabelled", "figure renamed"])
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
        with np.load(stem + ".npz") as saved, open(stem + ".json") as f:
            write_figure(figures, TANH_F9, {k: saved[k] for k in saved.files if k != "Q0_zero"}, json.load(f))
    elif damage in ("quick relabelled", "figure renamed"):  # a smoke test passed off as the full run, or another figure
        with open(stem + ".json") as f:
            settings = json.load(f)
        settings.update({"quick": not settings["quick"]} if damage == "quick relabelled" else
                        {"figure_name": TANH_F9, "script": "another.py"})
        with open(stem + ".json", "w") as f:
            json.dump(settings, f)
    else:
        os.remove(stem + ".json")
    status, text = report(figures)
    verdicts, checks = summary_rows(text), summary_rows(text, "## Checks")
    assert status == 1
    # no verdict for the claims that read the file (the rank check does not need Q0_zero) ...
    assert verdicts["largest Hessian eigenvalue grows with |Q|"] == mr.DATA_ERROR
    rank = "m*n nonzero Hessian eigenvalues at the minimum"
    assert checks[rank] == (verdict_rules.PASSES if damage == "missing key" else mr.DATA_ERROR)
    # ... the others still get theirs
    assert all(v == REPRODUCED for s, v in verdicts.items() if not s.startswith("largest Hessian"))
    assert DATA_ERROR_TEXT in text and "> **Data errors**: Fig. 9" in text
    line = next(x for x in text.splitlines() if x.startswith(f"**No verdict: {mr.DATA_ERROR}.**"))
    assert TANH_F9 in line and ({"truncated npz": "is not the file its .json describes",
                                 "corrupt json": ".json cannot be read", "missing key": "lacks key 'Q0_zero'",
                                 "npz without json": "is missing", "quick relabelled": "was edited after it was saved",
                                 "figure renamed": "was edited after it was saved"}[damage] in line)
    assert capsys.readouterr().err.count("make_report.py: data error:") >= 1


def test_unreadable_file_exits_non_zero_from_the_command_line(figures):
    with open(os.path.join(figures, fig7.FIGURE + ".npz"), "wb") as f:
        f.write(b"not a zip file")
    result = subprocess.run([sys.executable, os.path.join(REPO, "make_report.py"), "--out", str(figures)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1 and f"{fig7.FIGURE}.npz is not the file its .json describes" in result.stderr
    verdicts = summary_rows((figures / "REPORT.md").read_text())
    assert verdicts["steps to converge proportional to Q (radial)"] == mr.DATA_ERROR
    assert verdicts["larger |Q| reaches a fixed loss in fewer steps"] == REPRODUCED


def test_a_diverged_run_is_reported_as_diverged(figures):
    steps, diverged = seeds_of([102_050, 59_577, 3_496]), np.full((SEEDS, 3), -1)
    steps[2, 2], diverged[2, 2] = -1, 2_500  # seed 2's largest init diverged: left out, never 'slow'
    edit_figure(figures, "Q-convergence/elementwise_relu_convergence", steps_to_converge=steps, diverged_at=diverged)
    edit_figure(figures, fig7.FIGURE, steps_to_converge=[[69, 6_750, -1, -1]],
                diverged_at=[[-1, -1, 300, -1]])
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and set(summary_rows(text, "## Checks").values()) == {verdict_rules.PASSES}  # checks see every run
    assert verdicts["larger |Q| reaches a fixed loss in fewer steps"] == PARTLY  # never 'not reproduced' (slow)
    assert verdicts["steps to converge proportional to Q (radial)"] == PARTLY
    relu = reading_row(text, "**Claim (Fig. 6).** At learning rate", "relu", PARTLY)
    assert "| 5 of 5 (5 series, 1 left out) | 0.031 | " in relu  # seed 2 has no series left
    assert "run 2 diverged at step 300 (left out)" in text and "inconsistent" not in text
    assert "| relu | 1 | -386 | 7.3 | 3,496 (3,496 ± 0, 5 of 6 seeds) |" in text  # the spread leaves it out; Q once (relu)
    assert "| 20 | never (diverged at step 300) |" in text  # the table marks it too


def test_activations_beyond_the_papers_are_found_and_reported(figures):
    write_toy_figures(figures, activations=("softplus",))
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and all(v == REPRODUCED for v in verdicts.values())
    assert re.search(r"softplus: drift/bound <= 0\.5[;.]", text)  # Fig. 3 (its table has every learning rate)
    assert "| softplus | 0.1 | 0.00069 | 0.00138 |" in text
    assert "softplus: not tested (mean" in text  # Fig. 4: no analytic E[Q] for it, so it is left out
    assert "(Q-convergence/elementwise_softplus_convergence.png)" not in text  # no png written here
    assert "| softplus | 0.01 |" in text  # Fig. 6 table
    # a softplus run that fails its rule counts like any other activation
    edit_figure(figures, "Q-convergence/elementwise_softplus_convergence", steps_to_converge=seeds_of([1, 2, 3]))
    assert summary_rows(report(figures)[1])["larger |Q| reaches a fixed loss in fewer steps"] == PARTLY


def test_a_claim_holding_in_some_seeds_and_not_others(figures):
    """The seeds vote: a claimed trend in 4 of 6 seeds is no significant majority (sign test p = 0.34), whatever the
    effect; the table gives the spread over seeds."""
    fast, slow = [102_050, 59_577, 3_496], [3_496, 59_577, 102_050]
    edit_figure(figures, fig6.figure_name("tanh"),
                steps_to_converge=[fast, slow, fast, fast, slow, fast])
    size = np.abs(np.array([41.5, 15.9, 4.8, -1.9, -8.7, -22.1, -59.1]) * (1 + 0.1 * np.arange(SEEDS)[:, None]))
    steps = 70_000 - 800 * size
    steps[2] = 20_000 + 800 * size[2]  # seed 2 of the same-function experiment: slower with |Q|
    edit_figure(figures, SAME_6, steps_to_converge=steps.astype(int))
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0 and verdicts["larger |Q| reaches a fixed loss in fewer steps"] == PARTLY
    tanh = reading_row(text, "**Claim (Fig. 6).** At learning rate", "tanh", NOT_REPRODUCED)
    assert "| 4 of 6 | 0.34 | " in tanh and "| every (not significant) |" in tanh
    assert "| tanh | 1 | -579 | 7.3 | 3,496 (36,347 ± 5.09e+04) |" in text  # the spread over every seed
    # 5 of 6 seeds (one orbit each): one-sided p = 7/64 = 0.11, not significant either
    assert verdicts["same function: larger |Q| converges in fewer steps"] == PARTLY
    assert "| 5 of 6 | 0.11 | " in reading_row(text, "**Claim (Fig. 6).** The test of the claim", "tanh")
    assert all(v == REPRODUCED for s, v in verdicts.items() if "fewer steps" not in s)


def test_exact_numerics_decide_the_symmetry_claims(figures):
    """The claims that need moved networks that are symmetries are decided by the exact numerics; the paper numerics'
    verdict is shown beside it, and a failure there changes nothing."""
    edit_figure(figures, FIG10, vote_acc_perm_interp=per_seed(group_minus_original() + 0.6))
    edit_figure(figures, ROBUSTNESS, group_vs_original_p=np.full((3, 4), 0.5))
    status, text = report(figures)
    assert status == 0 and set(summary_rows(text).values()) == {REPRODUCED}
    assert "paper numerics: not reproduced (group - perm_interp (smaller row) -0.05 ± 0, holds in 0 of 3 " \
           "seeds)" in text  # shown by its deciding number: the exact numerics decide
    assert f"{EXACT}: reproduced (holds in 3 of 3 seeds" in text
    assert "Over the numerics: the exact numerics (float64 action, no fit noise) decide" in text


def test_cells_that_are_not_symmetries_support_no_claim(figures):
    error = per_seed(np.where(np.array(EPS)[:, None] == 1, 0.2, 1e-9) * np.ones((7, 7)))
    edit_figure(figures, FIG10 + "_exact", symmetry_error_fitted=error)
    edit_figure(figures, ROBUSTNESS + "_exact", symmetry_error_fitted=per_seed(0.5))
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0
    assert verdicts["group-moved networks are symmetries on their fitting images"] == PARTLY
    assert verdicts["group beats g^-1, random, shuffle at eps = 1 and 10"] == PARTLY  # eps 10 still counts
    assert verdicts["group beats the interpolated permutation at eps = 1 and 10"] == PARTLY
    assert verdicts["group ensemble within 0.02 of the original at small eps"] == REPRODUCED  # reads eps <= 0.1
    assert "eps 1: not a symmetry, cannot be tested" in text
    assert "exact numerics: partly (a symmetry up to eps 0.1, not at 1 (all 3 of 3 seeds))" in text
    # the suite's claims need moved networks that are symmetries: none here in the exact numerics, which decide
    assert verdicts["corrected: group more robust than original (standard evaluation)"] == verdict_rules.CANNOT_TEST
    assert verdicts["corrected: gain beyond the controls (independent CNN, shared trunk)"] == verdict_rules.CANNOT_TEST
    assert "cannot be tested (holds in 0 of 3 seeds; seed 0: cannot be tested (the moved networks are not " \
           "symmetries (symmetry error 0.5 > 0.001; as measured: reproduced)" in text
    assert "| 0.2 (1e-09) | 0 of 3 | " in text  # the table marks the exact numerics' row (noise-free fit in brackets)


def test_quick_file_names_are_found_and_two_matches_are_an_error(figures):
    """A quick run writes its settings into the Fig. 11 names (g5 for g200): the report reads them; two runs of
    different settings in one folder are a data error, not a silent choice."""
    for suffix in ("", "_exact"):
        save_as(figures, ROBUSTNESS + suffix, ROBUSTNESS.replace("g200", "g5") + suffix)
    save_as(figures, FIG11_PAPER.format("PGD"), FIG11_PAPER.format("PGD").replace("g200_eps10", "g5_eps1e-05"))
    status, text = report(figures)
    assert status == 0 and set(summary_rows(text).values()) == {REPRODUCED}
    save_as(figures, ROBUSTNESS.replace("g200", "g5"), ROBUSTNESS.replace("g200", "g7"), keep=True)
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 1 and all(verdicts[s] == mr.DATA_ERROR for s in verdicts if s.startswith("corrected"))
    assert verdicts["group more robust than original (paper's protocol)"] == REPRODUCED
    assert f"2 saved figures match {dataset.fig11('robustness', '*', '*', '*')}: " \
           "ensemble/cnn_cifar_leakyrelu_robustness_h16_g5_eps10, ensemble/cnn_cifar_leakyrelu_robustness_h16_g7_eps10" \
           in text


def test_a_failed_sanity_check_is_no_robustness_verdict(figures):
    """One violated sanity check (seed 1, the group, 2/255) makes both suite claims 'evaluation failed'."""
    from gfs.cifar import robustness
    sanity = per_seed(np.ones((len(robustness.SANITY_CHECKS), 4), bool))
    sanity[1, 0, 1] = False
    edit_figure(figures, ROBUSTNESS + "_exact", sanity_group=sanity)
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0
    for short in ("corrected: group more robust than original (standard evaluation)",
                  "corrected: gain beyond the controls (independent CNN, shared trunk)"):
        assert verdicts[short] == "evaluation failed", short
    assert "**No verdict: evaluation failed.** exact numerics: 1 sanity check(s)" in text
    assert f"seed 1, group, radius 2/255: {list(robustness.SANITY_CHECKS.values())[0]} fails" in text
    assert "**1 failed: evaluation failed**" in text  # the table says so too


def test_saved_data_from_before_the_new_measurements_is_not_run(figures):
    """A Fig. 10 grid without the held-out agreement, and no suite or fit-size files: 'not run', never an error."""
    for suffix in ("", "_exact"):
        with np.load(figures / (FIG10 + suffix + ".npz")) as saved, open(figures / (FIG10 + suffix + ".json")) as f:
            write_figure(figures, FIG10 + suffix, {k: saved[k] for k in saved.files if not k.startswith("heldout_")},
                         json.load(f))
        for ext in (".npz", ".json"):
            os.remove(figures / (ROBUSTNESS + suffix + ext))
    for ext in (".npz", ".json"):
        os.remove(figures / (FIT_SIZE + ext))
    status, text = report(figures)
    verdicts = summary_rows(text)
    assert status == 0
    assert verdicts["moved networks make the original's predictions on unseen images"] == "not run"
    assert "predates this measurement (no 'heldout_agreement')" in text
    assert all(verdicts[s] == "not run" for s in verdicts if s.startswith("corrected") or "beyond the paper" in s)
    assert verdicts["group more robust than original (paper's protocol)"] == REPRODUCED


def test_cifar_tables_show_the_deciding_numbers(figures):
    p = np.full((3, 4), 1e-9)
    p[1, 2] = 0.04  # seed 1, radius 4/255: the table shows the largest p over the seeds
    edit_figure(figures, ROBUSTNESS + "_exact", group_vs_independent_p=p)
    text = report(figures)[1]
    assert "(p ≤ 0.04)" in text and "(p ≤ 1e-09)" in text
    assert ("| eps | symmetry error, paper | symmetric, paper | group, paper | symmetry error, exact | symmetric, exact "
            "| group, exact | perm_interp | g_inverse | random | shuffle |") in text  # the baselines: the exact numerics'
    assert "| 1e-09 | 3 of 3 | -0.208 ± 0.000 | -0.258 ± 0.000 | -0.450 ± 0.000 |" in text  # minus the original


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
    assert "kernel.json" not in text and "`adversarial_CIFAR.ipynb` (cpu" in text  # a notebook's run: its name


def test_report_flags_quick_data_and_missing_figures(tmp_path):
    write_toy_figures(tmp_path, quick=True, float64=False)
    for ext in (".npz", ".json"):
        os.remove(tmp_path / (fig7.FIGURE + ext))
    os.remove(tmp_path / "Q-hessian-eigenvalues/Q-sharpness_relu_mnk_10_5_50.npz")
    os.remove(tmp_path / "Q-hessian-eigenvalues/Q-sharpness_relu_mnk_10_5_50.json")
    status, text = report(tmp_path, "--cifar-dir", str(tmp_path / "no_cifar_here"))
    verdicts = summary_rows(text)
    assert status == 0  # missing data is not an error
    assert verdicts["Q's change within the first-order bound of GD (float32)"] == "reproduced (smoke test)"
    assert verdicts["float64: drift of Q proportional to lr"] == mr.NOT_RUN
    assert verdicts["steps to converge proportional to Q (radial)"] == mr.NOT_RUN
    assert "Smoke-test data" in text and "not a reproduction" in text
    assert f"Make it with `make toy-figures OUT={tmp_path}`" in text  # the Makefile holds the scripts' flags
    assert "not run for relu" in text and f"Not run for relu: make it with `make toy-figures OUT={tmp_path}`" in text
    assert all(v == mr.NOT_RUN for s, v in verdicts.items() if "group" in s)
    assert "CIFAR-10 was not available" in text and "CIFAR_DIR=/path" in text
    assert "CIFAR-10 was probably not available" in report(tmp_path)[1]  # without --cifar-dir it cannot know


def test_a_rule_printed_by_its_gist_is_stated_in_full_in_the_docs():
    """A rule whose docstring's second paragraph is the pointer make_report.IN_FULL is printed by its first (the
    gist) with that pointer to docs/report.md, which must then name it (and so state it: docs/report.md's Rules)."""
    with open(os.path.join(REPO, "docs", "report.md"), encoding="utf-8") as f:
        docs = f.read()
    rules = {c.rule for section in mr.SECTIONS for c in section.claims}
    gists = [r for r in rules if "In full: docs/report.md" in mr.rule_text(r)]
    assert {r.__name__ for r in gists} >= {"rule_trend", "rule_predictors", "rule_within_gd_bound"}
    for rule in gists:
        assert f"`{rule.__module__.split('.')[-1]}.{rule.__name__}`" in docs, rule.__name__
        assert "In full:" not in mr.rule_text(rule).removesuffix(" In full: docs/report.md, *Rules*.")
    drift = next(r for r in rules if r.__name__ == "rule_drift_proportional")  # no 'In full:': printed whole
    assert mr.rule_text(drift) == mr.doc_text(drift) and "docs/report.md" not in mr.rule_text(drift)


def test_summary_names_units_that_read_alike_together():
    assert mr.units_text({"linear": "50 (all 10 of 10 seeds)", "relu": "50 (all 10 of 10 seeds)"}) == \
        "linear, relu: 50 (all 10 of 10 seeds)"
    # a shared ending is said once; a value's name before numbers too
    assert mr.units_text({"linear": "50 (all 10 of 10 seeds)", "relu": "50 (all 10 of 10 seeds)", "tanh": "49 (all "
                          "10 of 10 seeds)"}) == "linear, relu: 50; tanh: 49; each: (all 10 of 10 seeds)"
    assert mr.units_text({"a": "relative difference 1e-08 ± 2e-09, holds in 8 of 8 seeds",
                          "b": "relative difference 3e-08 ± 1e-09, holds in 8 of 8 seeds"}) == \
        "relative difference, a: 1e-08 ± 2e-09; b: 3e-08 ± 1e-09; each: holds in 8 of 8 seeds"
    # a shared start that is not a value's name stays with each unit; a short shared ending too
    symmetric = {"paper numerics": "a symmetry up to eps 0.001, not at 0.01", "exact numerics": "a symmetry up to eps "
                 "10, not at 20"}
    assert mr.units_text(symmetric) == "; ".join(f"{u}: {t}" for u, t in symmetric.items())
    assert mr.units_text({"x": "1 (a)", "y": "2 (a)"}) == "x: 1 (a); y: 2 (a)"


def test_report_rejects_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "make_report.py"), "--out", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2 and "no folder" in result.stderr and len(result.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# (c) make figures QUICK=1, end to end (scripts, float64 variant, both notebooks on tiny CIFAR, report)

@pytest.mark.slow
def test_make_figures_quick(quick_pipeline):
    out, result = quick_pipeline.out, quick_pipeline.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = (out / "REPORT.md").read_text()
    verdicts = summary_rows(text)
    assert len(verdicts) == len(CLAIMS) and "not run" not in " ".join(verdicts.values())
    assert all(v.endswith("(smoke test)") for v in verdicts.values())
    assert DATA_ERROR_TEXT not in text and "Data errors" not in text
    num_g = quick_values("adversarial_CIFAR.ipynb")["NUM_G"]  # Fig. 11's file names say a quick run's num_g
    for png in ("Q-dynamics/elementwise_linear_loss_Q.png", "ensemble/cnn_cifar_leakyrelu2_main_acc_exact.png",
                f"ensemble/cnn_cifar_leakyrelu_PGD_h16_g{num_g}_eps10.png",
                f"ensemble/cnn_cifar_leakyrelu_robustness_h16_g{num_g}_eps10_exact.png",
                "ensemble/fit_size_generalisation.png",
                "float64/Q-dynamics/elementwise_tanh_loss_Q.png"):
        assert (out / png).is_file(), sorted(os.listdir(out / "ensemble"))
    saved = {os.path.relpath(p, out) for p in glob.glob(str(out / "**" / "*.png"), recursive=True)}
    assert len(saved) > 40 and [png for png in sorted(saved) if f"]({png})" not in text] == []  # every figure shown
    assert "_g200_" not in text  # a quick run writes its own settings into the Fig. 11 names
