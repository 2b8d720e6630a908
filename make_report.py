#!/usr/bin/env python3
"""Write DIR/REPORT.md: which of the paper's claims hold in the saved figure data.

usage: python make_report.py [--out DIR] [--cifar-dir DIR]

Reads only the .npz/.json files that the figure scripts and notebooks saved under DIR (default figures/);
nothing is retrained. The report is one table of claims, SECTIONS below. A claim names the files it reads,
a measurement (loaded file -> the keyword arguments of its rule), a rule (a pure function: numbers -> Result)
whose docstring is the rule printed in the report, and the paper code's numbers (paper_numbers.py) in the
rule's form, so the same rule is run on them too. One loop, check(), loads, measures and judges every claim:
  - no saved data: "not run", with the command that makes it;
  - a file that cannot be read, is incomplete or lacks a key: "data error" naming the file and what is wrong,
    no verdict; the other claims still get theirs and the exit status is 1;
  - a diverged run is named and left out: the claim cannot be tested on it (partly at best), never "slow";
  - several seeds (per-run arrays [seed, run]): the rule is judged per seed, "holds in k of N seeds";
  - --quick data: verdicts labelled as smoke-test values;
  - activations are found on disk, so one beyond the paper's four is reported too;
  - CIFAR-10 (Figs. 10-11): one file per numerics (paper: float32 action with fit noise; exact: float64); a claim
    about symmetry-moved networks counts only cells that are symmetries and is decided by the exact numerics; a
    quick run's file names (other num_g and eps) are found through '*' in the claim's file pattern.
A claim about the size of Q (conventions=True) is judged in both conventions of Q (the paper code's integration
constant and F(0) = 0): where they disagree its verdict is "depends on the convention", with both readings. A
check (check=True) is an identity of the construction, not a result: it goes to the checks table, and a failing
check marks its figure's data as broken (its claims get no verdict).

Adding a claim: a rule (its {keyword} defaults are filled into its docstring), a measurement (usually one
runs(...) call naming the saved keys) and one Claim(...) in SECTIONS.
"""
import argparse
import glob
import inspect
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np

import cifar_claims as cc
import claims_toy as toy
import paper_numbers as paper
from command_line import UsageError
from report_tables import (FIG10_MODES, FIG45_COLUMNS, FIG7_COLUMNS, fig3_tables, fig6_tables, fig9_tables,
                           fig10_tables, fig11_tables, legend_Qs, run_table, table)
from saved_files import load_figure_data, write_atomic
from verdict_rules import (EXACT, FIG10_MARGIN, REPRODUCED, SYMMETRY_TOLERANCE, PerSeed, Result, apply, combine,
                           exact_decides, rule_drift_proportional, rule_ensemble_margin, rule_group_beats_baselines, rule_group_more_robust, rule_group_vs_perm_interp,
                           rule_hessian_rank, rule_q_distribution, rule_same_initial_function, rule_steps_proportional_to_Q, rule_symmetries)

NOT_RUN, DATA_ERROR = "not run", "data error"  # no saved data / unreadable data: never verdicts
BROKEN, PASSES, FAILS = toy.BROKEN, toy.PASSES, toy.FAILS  # broken data: a check failed; a check's result
Q_CONVENTION = ("Gradient flow conserves 1/2 |U|^2 - sum F(V) with F' = sigma/sigma', up to a constant: the integration "
                "constant of F is a choice. Two are used: the paper code's (its legends; Q lower by n k for tanh and "
                "sigmoid, about -500 at a small initialisation) and the zero convention, F(0) = 0 (Q = 0 at U = 0, "
                "V = 0). Differences of Q (its drift, its change along an orbit) and the spread of the per-neuron Q_a "
                "are the same in both; the size |Q| is not, for tanh and sigmoid (linear and ReLU are homogeneous: "
                "both conventions agree). Every claim about |Q| is judged in both, and where the verdicts differ it is "
                "**depends on the convention**, with both readings. Sizes of Q (N_0) add the sizes of its terms, "
                "1/2 |U|^2 + sum |F(V)|, whose entries do not cancel.")


# ----------------------------------------------------------------------------------------------
# Measurements: a saved figure -> the rule's keyword arguments

def runs(f, name=None, **keys):
    """The rule's arguments, one dict per seed (PerSeed; a single seed: its dict). A string value names a saved
    key: an array with a leading seed axis ([seed, run, ...], as the training scripts save per-run numbers) gives
    each seed its row, any other array is shared by all seeds; anything else is passed as it is. Each dict also
    gets the runs' divergence steps and, from the key `name`, their names ('init std 0.1')."""
    diverged = np.atleast_2d(f["diverged_at"])  # [seed, run]

    def value(key, seed):
        if not isinstance(key, str):
            return key  # a constant argument
        array = f[key]
        return array[seed] if np.ndim(array) >= 2 and len(array) == len(diverged) else array

    measured = []
    for s in range(len(diverged)):
        names = None if name is None else [f"{name.replace('_', ' ')} {x:.3g}" for x in value(name, s)]
        measured.append(dict({arg: value(key, s) for arg, key in keys.items()}, diverged_at=diverged[s], labels=names))
    return measured[0] if len(measured) == 1 else PerSeed(measured)


def fig3_drift(f, dtype=None):
    if dtype and f.settings.get("dtype", dtype) != dtype:
        raise DataError(f"{f.name}.json: dtype is {f.settings['dtype']}, not {dtype}")
    return runs(f, "lr", lrs="lr", max_drift="max_Q_change_zero" if dtype else "max_delta_Q_tilde_zero")


def fig45_samples(f, convention):
    key = toy.q_key  # 'Q_zero' -> 'Q' for the paper's convention
    return dict(samples=f[key("Q_zero", convention)], expected=float(f[key("expected_Q_zero", convention)]),
                term_scale=float(f["Q_terms_zero" if convention == "zero" else "Q_terms_paper"]))


def same_function(f):
    return runs(f, initial_outputs="initial_output", float64=f.settings.get("dtype") == "float64")


def fig10_seeds(f):
    """A Fig. 10 file per seed: eps [E]; error [E, G], the symmetry error of the pi the ensemble uses (with the fit
    noise of its numerics); symmetric [E, G], error at most the saved tolerance; original, the original's accuracy;
    and each mode's vote accuracy [E, G] under its name."""
    tolerance = f.symmetry_tolerance()
    return [dict(eps=f["eps"], error=f["symmetry_error_fitted"][s], tolerance=tolerance,
                 symmetric=f["symmetry_error_fitted"][s] <= tolerance, original=float(f["original_acc"][s]),
                 **{m: f[f"vote_acc_{m}"][s] for m in FIG10_MODES}) for s in range(len(f["seeds"]))]


def fig11_paper(f):
    return PerSeed(dict(strengths=f["strengths"], acc_original=f["acc_original"][s], acc_group=f["acc_group"][s],
                        n_images=f.setting("num_eval")) for s in range(len(f["seeds"])))


# ----------------------------------------------------------------------------------------------
# The table of claims

@dataclass(frozen=True)
class Files:
    """The saved files a claim reads: DIR/<pattern with {} = unit>.npz and .json, one pair per unit. A '*' in the
    pattern stands for one part of a file name (no '_' or '/'), such as the settings a quick run writes into its
    names (g5 for g200): the one saved figure that matches is read."""
    pattern: str
    units: tuple              # the paper's: activations, histogram shapes or attacks ("" for a single file)
    make: str                 # the command that makes them ({out}: the report's folder)
    kind: str = "activations"
    discover: bool = False    # also every other activation with saved files
    plots: bool = True        # show their .png in the section
    notebook: str = ""        # a CIFAR notebook: the not-run note says whether CIFAR-10 was there
    names: tuple = ()         # the units' names in the report, if not the units themselves

    def label(self, unit):
        return dict(zip(self.units, self.names)).get(unit, unit)


@dataclass(frozen=True)
class Claim:
    figure: str               # "Fig. 3"
    short: str                # the claim in a few words (summary table)
    text: str                 # the claim in one sentence
    files: Files
    measure: Callable         # Figure -> dict of the rule's keyword arguments (or PerSeed of such dicts)
    rule: Callable            # (**measurement) -> Result; its docstring is the rule in the report
    paper: Optional[Callable] = None  # () -> {unit: the rule's arguments from the paper code's numbers}
    over: Callable = combine  # the units' verdicts -> one; its docstring follows the rule's
    conventions: bool = False  # measure(f, convention): judged in both conventions of Q (claims_toy.both_conventions)
    check: bool = False       # an identity of the construction: the checks table; failing marks the figure broken


@dataclass(frozen=True)
class Section:
    title: str
    claims: tuple
    tables: Callable          # (get: Files -> {unit: Figure}) -> lines: the measured and the paper's numbers


A = paper.PAPER_ACTIVATIONS
FIG3 = Files("Q-dynamics/elementwise_{}_loss_Q", A, "python Q_dynamics_elementwise.py --out {out}", discover=True)
FIG3_FLOAT64 = Files("float64/Q-dynamics/elementwise_{}_loss_Q", A, "python Q_dynamics_elementwise.py --dtype "
                     "float64 --out {out}/float64", discover=True, plots=False)
FIG4 = Files("Q-distribution/{}_mhn_100_100_100", A, "python Q_distribution.py --out {out}", discover=True)
FIG5 = Files("Q-distribution/linear_mhn_{}", ("100_200_100", "200_100_100"), "python Q_distribution.py --out {out}",
             "histograms (m_h_n)")
FIG6 = Files("Q-convergence/elementwise_{}_convergence", A,
             "python Q_convergence_elementwise.py --seeds 5 --same-function --out {out}", discover=True)
SAME_FUNCTION_6 = Files("Q-convergence/same_function_{}_convergence", A,
                        "python Q_convergence_elementwise.py --seeds 5 --same-function --out {out}", discover=True)
PER_NEURON_6 = Files("Q-convergence/per_neuron_{}_convergence", A,
                     "python Q_convergence_elementwise.py --seeds 5 --same-function --out {out}", discover=True)
FIG7 = Files("Q-convergence/radial_zoomed_1e6", ("",), "python Q_convergence_radial.py --out {out}")
FIG9 = Files("Q-hessian-eigenvalues/Q-sharpness_{}_mnk_10_5_50", A,
             "python Q_hessian_eigenvalues.py --seeds 10 --same-function --out {out}", discover=True)
SAME_FUNCTION_9 = Files("Q-hessian-eigenvalues/same_function_{}_sharpness_mnk_10_5_50", A,
                        "python Q_hessian_eigenvalues.py --seeds 10 --same-function --out {out}", discover=True)
PER_NEURON_9 = Files("Q-hessian-eigenvalues/per_neuron_{}_sharpness_mnk_10_5_50", A,
                     "python Q_hessian_eigenvalues.py --seeds 10 --same-function --out {out}", discover=True)
OFF_DATA = {"Fig. 6 same function": SAME_FUNCTION_6, "Fig. 6 per-neuron": PER_NEURON_6,
            "Fig. 9 same function": SAME_FUNCTION_9, "Fig. 9 per-neuron": PER_NEURON_9}
NUMERICS_SUFFIXES, NUMERICS_NAMES = ("", "_exact"), ("paper numerics", EXACT)  # CIFAR file names; report names
FIG10 = Files("ensemble/cnn_cifar_leakyrelu2_main_acc{}", NUMERICS_SUFFIXES, "python run_notebook.py "
              "ensemble_CIFAR.ipynb --out {out}", "numerics", notebook="ensemble_CIFAR.ipynb", names=NUMERICS_NAMES)
FIG11_MAKE = "python run_notebook.py adversarial_CIFAR.ipynb --out {out}"
FIG11_PAPER = Files("ensemble/cnn_cifar_leakyrelu_{}_h16_g*_eps*", ("FGSM", "PGD"), FIG11_MAKE, "attacks",
                    notebook="adversarial_CIFAR.ipynb")
FIG11_CORRECTED = Files("ensemble/cnn_cifar_leakyrelu_corrected_h16_g*_eps*{}", NUMERICS_SUFFIXES, FIG11_MAKE,
                        "numerics", notebook="adversarial_CIFAR.ipynb", names=NUMERICS_NAMES)
FIT_SIZE = Files("ensemble/fit_size_generalisation", ("",), "python run_notebook.py ensemble_CIFAR.ipynb --out {out}",
                 notebook="ensemble_CIFAR.ipynb")
FIG11_ROBUSTNESS = Files("ensemble/cnn_cifar_leakyrelu_robustness_h16_g*_eps*{}", NUMERICS_SUFFIXES, FIG11_MAKE,
                         "numerics", notebook="adversarial_CIFAR.ipynb", names=NUMERICS_NAMES)

SECTIONS = (
    Section("Fig. 3: Q is nearly conserved under gradient descent", (
        Claim("Fig. 3", "Q's change within the first-order bound of GD (float32)",
              "Under gradient descent the conserved quantity of gradient flow stays nearly constant: its change from "
              "the start, |Q_t - Q_0| (a difference of Q: the same in both conventions), stays within the bound that "
              "a first-order expansion of a gradient-descent step gives, at every learning rate (0.1, 0.01, 0.001) and "
              "activation.", FIG3, partial(runs, name="lr", lrs="lr", drift="max_Q_change_zero",
                                           bound="drift_bound_zero"), toy.rule_within_gd_bound),
        Claim("Fig. 3", "float64: drift of Q proportional to lr",
              "Without round-off (float64) the drift of Q is a pure discretisation effect: it is proportional to the "
              "learning rate (measured from the initial Q: dQ~ starts after the first step, whose drift dominates at "
              "lr 0.1 for sigmoid; a ratio of differences of Q, the same in both conventions).", FIG3_FLOAT64,
              partial(fig3_drift, dtype="float64"), rule_drift_proportional),
        Claim("Fig. 3", "float64: Q's change within the first-order bound of GD",
              "Without round-off (float64), the change of Q stays within the bound of gradient descent at every "
              "learning rate: what exceeds it in float32 is round-off.", FIG3_FLOAT64,
              partial(runs, name="lr", lrs="lr", drift="max_Q_change_zero", bound="drift_bound_zero"),
              toy.rule_within_gd_bound)),
            lambda get: fig3_tables(get(FIG3), get(FIG3_FLOAT64))),
    Section("Figs. 4-5: Q is sharply concentrated at initialisation", (
        Claim("Fig. 4", "Q concentrated at init around its analytic mean",
              "With the common initialisation (U ~ N(0, 1/h), V ~ N(0, 1/n)), Q is sharply concentrated around its "
              "analytic mean for every activation, so gradient flow from such an initialisation reaches only a small "
              "part of the minimum (its spread compared with the size of Q's terms, in each convention).", FIG4,
              fig45_samples, rule_q_distribution, conventions=True),
        Claim("Fig. 5", "centre of Q set by the layer sizes (E[Q] = m - h)",
              "The centre of the Q distribution is set by the layer sizes: for the linear net E[Q] = m - h, -100 for "
              "(m, h, n) = (100, 200, 100) and +100 for (200, 100, 100).", FIG5, fig45_samples,
              rule_q_distribution, conventions=True)),
            lambda get: run_table({**get(FIG4), **get(FIG5)}, FIG45_COLUMNS, lambda f: 1, "histogram")),
    Section("Fig. 6: convergence speed depends on Q (elementwise activations)", (
        Claim("Fig. 6", "larger |Q| reaches a fixed loss in fewer steps",
              "At learning rate 1e-3 the initialisation's Q sets how fast gradient descent converges: for every "
              "activation, the run with larger |Q| (larger init scale) reaches a fixed loss (|Y - U sigma(V^T)|_F < "
              "1e-2) in fewer steps.", FIG6, toy.fig6_trend, toy.rule_trend, conventions=True),
        Claim("Fig. 6", "same function: the moved initialisations compute the same function",
              "Moving the paper's initialisation along the per-neuron symmetry changes Q but not the network's function "
              "on the training inputs.", SAME_FUNCTION_6, same_function, rule_same_initial_function, check=True),
        Claim("Fig. 6", "same function: larger |Q| converges in fewer steps",
              "The test of the claim without the confound: from one initial function, moved along the symmetry to "
              "other Q, the run with larger |Q| reaches the loss 1e-2 in fewer steps.", SAME_FUNCTION_6,
              toy.same_function6_trend, toy.rule_trend, conventions=True),
        Claim("Fig. 6", "per-neuron orbits: the moved initialisations compute the same function",
              "Moving each neuron by its own lambda keeps the network's function on the training inputs.",
              PER_NEURON_6, lambda f: dict(gaps=f["training_gap"], float64=f.settings.get("dtype") == "float64"),
              toy.rule_gap_below, check=True),
        Claim("Fig. 6", "per-neuron: a per-neuron statistic predicts the steps where |Q| does not",
              "Beyond the paper: along per-neuron orbits (each neuron its own lambda; the spread of the per-neuron "
              "Q_a at a fixed sum, and the sum at a fixed spread) a per-neuron statistic (the spread of Q_a, min |Q_a| "
              "or the most saturated neuron's distance from the edge of sigma's range) predicts the steps to the "
              "loss 1e-2, where the sum |Q| does not.", PER_NEURON_6, toy.per_neuron6, toy.rule_predictors,
              conventions=True)), lambda get: fig6_tables(get(FIG6), get(SAME_FUNCTION_6), get(PER_NEURON_6))),
    Section("Fig. 7: convergence time proportional to Q (radial activation)", (
        Claim("Fig. 7", "radial runs start from the same function",
              "The four radial runs (init scales 0.01, 0.1, 1, 10, aligned with the SVD of Y) compute the same initial "
              "function and differ only in Q.", FIG7, same_function, rule_same_initial_function, check=True),
        Claim("Fig. 7", "steps to converge proportional to Q (radial)",
              "For the radial activation the time to converge grows in proportion to Q = |U|^2 + |V|^2 (a sum of "
              "squares: no integration constant): 100x more Q needs about 100x more steps to reach a fixed loss "
              "(MSE/|Y|_F < 1e-2).", FIG7,
              lambda f: runs(f, Q0="Q0", steps="steps_to_converge", total_steps=int(f["steps"][-1])),
              rule_steps_proportional_to_Q,
              paper=lambda: {"": dict(Q0=legend_Qs(paper.FIG7_LEGENDS), total_steps=paper.FIG7_STEP_BUDGET,
                                      steps=[-1 if s is None else s for s in paper.FIG7_STEPS])})),
            lambda get: run_table(get(FIG7), FIG7_COLUMNS, first=None)),
    Section("Fig. 9: Hessian spectrum at the minimum against Q", (
        Claim("Fig. 9", "m*n = 50 nonzero Hessian eigenvalues at the minimum",
              "At a global minimum the Hessian of |Y - U sigma(V^T)|^2 has exactly m*n = 50 nonzero eigenvalues (of "
              "750): at zero loss it is 2 J^T J, of rank at most m n by construction.", FIG9,
              lambda f: runs(f, "init_std", nonzero_counts="nonzero_count", final_losses="final_loss",
                             expected_rank=int(f.setting("m")) * int(f.setting("n"))), rule_hessian_rank, check=True),
        Claim("Fig. 9", "largest Hessian eigenvalue grows with |Q|",
              "Larger |Q| gives a sharper minimum: the largest Hessian eigenvalue grows with |Q|.", FIG9,
              toy.fig9_trend, toy.rule_trend, conventions=True),
        Claim("Fig. 9", "same function: the moved minima compute the same function",
              "Moving a trained minimum along the per-neuron symmetry keeps the network function on the training "
              "inputs, so the loss stays at its minimum.", SAME_FUNCTION_9,
              partial(runs, initial_outputs="output", float64=True), rule_same_initial_function, check=True),
        Claim("Fig. 9", "same function: sharpness grows with |Q| along the valley",
              "The test of the claim at a fixed function: moving each trained minimum along the valley of minima "
              "(the symmetry orbit), the largest Hessian eigenvalue grows with |Q|.", SAME_FUNCTION_9,
              toy.same_function9_trend, toy.rule_trend, conventions=True),
        Claim("Fig. 9", "per-neuron orbits: the moved minima compute the same function",
              "Moving each neuron of a minimum by its own lambda keeps the network's function on the training inputs.",
              PER_NEURON_9, lambda f: dict(gaps=f["training_gap"]), toy.rule_gap_below, check=True),
        Claim("Fig. 9", "per-neuron: a per-neuron statistic predicts the sharpness where |Q| does not",
              "Beyond the paper: along per-neuron orbits of the trained minima (the spread of the per-neuron Q_a at a "
              "fixed sum, and the sum at a fixed spread) a per-neuron statistic predicts the largest Hessian "
              "eigenvalue, where the sum |Q| does not.", PER_NEURON_9, toy.per_neuron9, toy.rule_predictors,
              conventions=True)),
            lambda get: fig9_tables(get(FIG9), get(SAME_FUNCTION_9), get(PER_NEURON_9))),
    Section("Fig. 10: ensembles from the nonlinear group action (CIFAR-10)", (
        Claim("Fig. 10", "group-moved networks are symmetries on their fitting images",
              "The premise of the ensembles: moving the trained network along the nonlinear, data-dependent group "
              "action, (U, V) -> (U pi(g, H), g V), gives networks that compute the original's function on the images "
              "H that pi was fitted on, in both numerics (paper: float32 with the paper's fit noise; exact: float64, "
              "no noise). pi is 16 x 16 and fitted on 16 images, so it can match them exactly: this premise tests the "
              "numerics, and the accuracy on other images (the claims below) tests whether the moved networks keep "
              "the function.", FIG10, lambda f: PerSeed(
                  dict(eps=c["eps"], symmetry_error=c["error"], tolerance=c["tolerance"]) for c in fig10_seeds(f)),
              rule_symmetries),
        Claim("Fig. 10", "moved networks make the original's predictions on unseen images",
              "The second half of the premise, what would make the ensembles ensembles of one function: on held-out "
              "images (the evaluation images, which pi never saw) each moved network predicts the original's class. "
              "The symmetry error above measures the fitting images only; with 16 images for 16 x 16 unknowns pi "
              "interpolates them and is unconstrained elsewhere.", FIG10, cc.fig10_agreement,
              cc.rule_same_predictions, over=exact_decides),
        Claim("Fig. 10", f"group ensemble within {FIG10_MARGIN} of the original at small eps",
              "Ensembles built with the group action keep the original model's accuracy at small eps, where the moved "
              "copies are exact symmetries.", FIG10, lambda f: PerSeed(
                  dict(eps=c["eps"], group_minus_original=c["group"] - c["original"], symmetric=c["symmetric"])
                  for c in fig10_seeds(f)), rule_ensemble_margin,
              paper=lambda: {"": dict(eps=list(paper.FIG10_ROWS["group"]),
                                      group_minus_original=list(paper.FIG10_ROWS["group"].values()))},
              over=exact_decides),
        Claim("Fig. 10", "group beats g^-1, random, shuffle at eps = 1 and 10",
              "At large eps (1 and 10) the group ensemble loses less accuracy than the baselines g^-1, random and "
              "shuffle.", FIG10, lambda f: PerSeed(
                  dict(eps=c["eps"], group=c["group"], baselines={m: c[m] for m in ("g_inverse", "random", "shuffle")},
                       symmetric=c["symmetric"]) for c in fig10_seeds(f)), rule_group_beats_baselines,
              over=exact_decides),
        Claim("Fig. 10", "group beats the interpolated permutation at eps = 1 and 10",
              "At large eps (1 and 10) the group ensemble also beats the interpolated permutation, the baseline that, "
              "like the group action, keeps the function at small eps (g^-1, random and shuffle destroy it by "
              "construction).", FIG10, lambda f: PerSeed(
                  dict(eps=c["eps"], group=c["group"], perm_interp=c["perm_interp"], symmetric=c["symmetric"])
                  for c in fig10_seeds(f)), rule_group_vs_perm_interp,
              paper=lambda: {"": dict(eps=list(paper.FIG10_ROWS["perm_interp"]), **{
                  m: [paper.FIG10_ROWS[m][e] for e in paper.FIG10_ROWS["perm_interp"]] for m in ("group", "perm_interp")
              })}, over=exact_decides),
        Claim("Fig. 10", "beyond the paper: fitted on more images, the action generalises",
              "Not in the paper: fitting pi by least squares on more images per group element than hidden units (16, "
              "64, 256, 1,024 images; group scales 0.1, 1, 10; exact numerics) makes the moved networks keep the "
              "original's predictions on held-out images.", FIT_SIZE, cc.fit_size_seeds, cc.rule_action_generalises),
    ), lambda get: fig10_tables(get(FIG10)) + cc.fig10_agreement_tables(get(FIG10)) + cc.fit_size_tables(get(FIT_SIZE))),
    Section("Fig. 11: adversarial robustness of the group ensemble (CIFAR-10)", (
        Claim("Fig. 11", "group more robust than original (paper's protocol)",
              "Under the paper's protocol (adversarial images computed on the single model and transferred; data in "
              "[-0.5, 0.5] clamped to [0, 1]; each image attacked twice; its strengths; float32 action with fit "
              "noise), the group ensemble is more robust than the original model to FGSM and PGD. This protocol "
              "saves no per-image results, so the rule compares accuracies, not pairs.", FIG11_PAPER, fig11_paper,
              rule_group_more_robust,
              paper=lambda: {m: dict(strengths=paper.FIG11_STRENGTHS[m], acc_original=acc["original"],
                                     acc_group=acc["group"], n_images=paper.FIG11_IMAGES)
                             for m, acc in paper.FIG11_ACCURACY.items()}),
        Claim("Fig. 11", "corrected: group more robust than original (standard evaluation)",
              "Under the corrected protocol (valid pixel range, logits, the official test split) and a standard "
              "robustness evaluation (L-inf radii 1, 2, 4, 8/255; FGSM, transfer from the original, APGD-CE and "
              "APGD-DLR on the ensemble's mean probability through every member, and the gradient-free Square, an "
              "image counting as right only if right under all of them), the group ensemble is more accurate than "
              "the original, paired on the same images.", FIG11_ROBUSTNESS, cc.fig11_suite, cc.rule_robust_gain,
              over=exact_decides),
        Claim("Fig. 11", "corrected: gain beyond the controls (independent CNN, shared trunk)",
              "The gain is robustness from the symmetry: under the same evaluation the group ensemble is also more "
              "accurate than an independently trained CNN and than a shared-trunk ensemble (the interpolated "
              "permutation: other heads on the same trunk and features).", FIG11_ROBUSTNESS,
              partial(cc.fig11_suite, controls=True), cc.rule_gain_beyond_controls, over=exact_decides),
        Claim("Fig. 11", "Fig. 11 members make the original's predictions on unseen images",
              "The premise of the robustness claim: the 200 moved networks of Fig. 11 (scale 10) predict the "
              "original's class on held-out images (the evaluation images).", FIG11_ROBUSTNESS, cc.fig11_agreement,
              cc.rule_same_predictions, over=exact_decides)),
            lambda get: fig11_tables(get(FIG11_PAPER), get(FIG11_CORRECTED)) + cc.robustness_tables(get(FIG11_ROBUSTNESS))),
)

# ----------------------------------------------------------------------------------------------
# Loading: an unreadable file becomes a DataError that names the file and what is wrong

class DataError(Exception):
    """A saved file cannot be read, is incomplete or lacks something a claim needs; the message says what."""


def one_line(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


class Figure:
    """One saved figure: .data (the .npz arrays) and .settings (its .json)."""

    def __init__(self, out_dir, name):
        self.name = name
        try:  # the checks of --plot-only: the .json unedited, naming this figure, sealed with this .npz
            data, self.settings = load_figure_data(out_dir, name, again="re-run what made it")
        except UsageError as error:
            raise DataError(str(error).replace(os.path.join(out_dir, ""), "", 1)) from None
        self.data = dict(data)
        self.quick = bool(self.settings.get("quick", False))

    def __getitem__(self, key):
        if key not in self.data:
            raise DataError(f"{self.name}.npz lacks key {key!r}")
        return self.data[key]

    def symmetry_tolerance(self):
        """The CIFAR files' mark above which a moved network is no symmetry (saved with Fig. 10's data)."""
        return float(self.data.get("symmetry_tolerance", SYMMETRY_TOLERANCE))

    def setting(self, key):
        if key not in self.settings:
            raise DataError(f"{self.name}.json lacks setting {key!r}")
        return self.settings[key]


class Loader:
    """Each saved figure loaded once. load(files) -> {unit: Figure, DataError or None (absent)}."""

    def __init__(self, out_dir):
        self.out_dir, self.cache, self.loaded = out_dir, {}, {}

    def units(self, files):
        """The paper's units, then (discover) every other activation that has a saved file, sorted."""
        head, _, tail = files.pattern.partition("{}")
        paths = glob.glob(os.path.join(glob.escape(self.out_dir), files.pattern.format("*") + ".*")) * files.discover
        found = [re.fullmatch(re.escape(head) + r"(.+)" + re.escape(tail) + r"\.(npz|json)",
                              os.path.relpath(p, self.out_dir).replace(os.sep, "/")) for p in paths]
        return list(files.units) + sorted({m.group(1) for m in found if m} - set(files.units))

    def resolve(self, name):
        """The saved figure a name with '*' stands for (the name itself if none matches: not run)."""
        regex = "[^/_]+".join(re.escape(part) for part in name.split("*")) + r"\.(npz|json)"
        paths = glob.glob(os.path.join(glob.escape(self.out_dir), name + ".*"))
        found = sorted({os.path.splitext(p)[0] for p in (os.path.relpath(p, self.out_dir).replace(os.sep, "/")
                                                          for p in paths) if re.fullmatch(regex, p)})
        if len(found) > 1:
            raise DataError(f"{len(found)} saved figures match {name}: {', '.join(found)}; keep one")
        return found[0] if found else name

    def one(self, pattern):
        if pattern not in self.cache:
            try:
                name = self.resolve(pattern) if "*" in pattern else pattern
                npz, js = (os.path.isfile(os.path.join(self.out_dir, name + ext)) for ext in (".npz", ".json"))
                self.cache[pattern] = (Figure(self.out_dir, name) if npz and js else None if not (npz or js) else
                                       DataError(f"{name}{'.json' if npz else '.npz'} is missing beside "
                                                 f"{name}{'.npz' if npz else '.json'} (an incomplete save)"))
            except DataError as error:
                self.cache[pattern] = error
        return self.cache[pattern]

    def load(self, files):
        if files not in self.loaded:  # the folder is globbed once per file set
            self.loaded[files] = {files.label(u): self.one(files.pattern.format(u)) for u in self.units(files)}
        return self.loaded[files]

    def get(self, files):
        return {u: f for u, f in self.load(files).items() if isinstance(f, Figure)}


# ----------------------------------------------------------------------------------------------
# The loop: load, measure, judge; then render

def doc_text(function, **fields):
    """The first paragraph of a docstring on one line, {fields} and the keyword defaults filled in."""
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    return " ".join(inspect.getdoc(function).split("\n\n")[0].split()).format(**defaults, **fields)


def combine_units(over, results):
    """{unit: Result} -> one Result: the verdicts combined by `over`, texts and deciding numbers joined."""
    if list(results) == [""]:
        return results[""]
    return Result(over({u: r.verdict for u, r in results.items()}),
                  "; ".join(f"{u}: {r.verdict} ({r.text})" for u, r in results.items()),
                  "; ".join(f"{u} {r.deciding}" for u, r in results.items()))


@dataclass
class Checked:
    claim: Claim
    verdict: str              # a verdict, NOT_RUN or DATA_ERROR
    text: str
    deciding: str = ""
    quick: bool = False
    note: str = ""            # for the section: how to make the missing data


def check(claim, loader, cifar_dir):
    """One claim against the saved data: a verdict, or not run, or a data error (never a verdict)."""
    loaded = loader.load(claim.files)
    errors, results = [str(f) for f in loaded.values() if isinstance(f, DataError)], {}
    figures = {u: f for u, f in loaded.items() if isinstance(f, Figure)}
    if not errors and not figures:
        text, deciding, note = not_run_note(claim.files, loader.out_dir, cifar_dir)
        return Checked(claim, NOT_RUN, text, deciding, note=note)
    for unit, f in figures.items() if not errors else ():
        try:
            results[unit] = ({c: apply(claim.rule, claim.measure(f, c)) for c in toy.CONVENTIONS} if claim.conventions
                             else apply(claim.rule, toy.every_run(claim.measure(f)) if claim.check else claim.measure(f)))
        except cc.Unjudged as status:  # no verdict by design: data from before the measurement, or a failed evaluation
            return Checked(claim, status.verdict, f"{unit}: {status}" if unit else str(status), status.verdict)
        except Exception as error:  # a wrong shape or type in the file: reported, never a verdict
            errors.append(str(error) if isinstance(error, DataError) else
                          f"{f.name}.npz cannot be checked ({one_line(error)})")
    if errors:
        return Checked(claim, DATA_ERROR, "; ".join(errors), errors[0])
    missing = ", ".join(u for u, f in loaded.items() if f is None)
    result = (toy.conventions_result(claim.over, results, combine_units) if claim.conventions
              else combine_units(claim.over, results))
    note = f"Not run for {missing}: make it with `{claim.files.make.format(out=loader.out_dir)}`." if missing else ""
    return Checked(claim, result.verdict, result.text + f"; not run for {missing}" * bool(missing), result.deciding,
                   any(f.quick for f in figures.values()), note)


def not_run_note(files, out, cifar_dir):
    """(explanation, a few words for the summary table, the section's note on how to make the data)."""
    if not files.notebook:
        return ("no data", "no data",
                f"**{NOT_RUN}**: no saved data in `{out}`. Make it with `{files.make.format(out=out)}`.")
    if cifar_dir is not None and os.path.isfile(os.path.join(cifar_dir, "cifar-10-batches-py", "data_batch_1")):
        why = "notebook failed (CIFAR-10 present)"
        return why, why, (f"**{NOT_RUN}**: no saved data for this figure in `{out}`, although CIFAR-10 is present in "
                          f"`{cifar_dir}`: the notebook did not finish. Run `python run_notebook.py {files.notebook} "
                          f"--out {out} --cifar-dir {cifar_dir}` to see its error.")
    why = "skipped: CIFAR-10 not available" if cifar_dir is not None else "skipped: no data (CIFAR-10 missing?)"
    return why, why, (
        f"**{NOT_RUN}**: no saved data for this figure in `{out}`. " + (
            f"CIFAR-10 was not available: `{cifar_dir}` holds no `cifar-10-batches-py/`." if cifar_dir is not None
            else "CIFAR-10 was probably not available (offline and no data), or the notebook failed.")
        + " Provide CIFAR-10 with `make figures CIFAR_DIR=/path` where /path contains `cifar-10-batches-py/` (the "
        "official python release), or let the notebooks download it into `data/` (the default CIFAR_DIR) when online. "
        f"Then run `python run_notebook.py {files.notebook} --out {out} --cifar-dir /path` and `python make_report.py "
        f"--out {out}` (or `make figures CIFAR_DIR=/path`, which does both).")


def label(verdict, quick, check=False):
    if check and verdict not in (NOT_RUN, DATA_ERROR):
        verdict = PASSES if verdict == REPRODUCED else FAILS
    return (f"{verdict} (smoke test)" if quick and verdict not in (NOT_RUN, DATA_ERROR, BROKEN, cc.EVALUATION_FAILED)
            else verdict)


def render_claim(c):
    claim, several = c.claim, len(c.claim.files.units) > 1 or c.claim.files.discover
    rule = doc_text(claim.rule) + (" " + doc_text(claim.over, units=claim.files.kind)) * several
    kind = "Check" if claim.check else "Verdict"
    head = (f"**No verdict: {c.verdict}.**" if c.verdict in (DATA_ERROR, cc.EVALUATION_FAILED, NOT_RUN) else
            f"**{kind}: {label(c.verdict, c.quick, claim.check)}.**")
    lines = [f"**{'Check' if claim.check else 'Claim'} ({claim.figure}).** {claim.text}", "", f"{head} {c.text}.", "",
             f"*Rule:* {rule}", ""]
    if claim.paper is not None and c.verdict not in (NOT_RUN, DATA_ERROR, cc.EVALUATION_FAILED):
        ref = combine_units(claim.over, {u: apply(claim.rule, m) for u, m in claim.paper().items()})
        lines += [f"*The same rule on the paper code's numbers {'[C]' if claim.files.notebook else '[R]'}:* "
                  f"{ref.verdict} ({ref.text}).", ""]
    return lines


def render_section(section, checked, loader, errors):
    """The section's lines; a data error met in its tables is added to errors."""
    figures = {f.name: f for c in section.claims for f in loader.get(c.files).values()}
    plots = [name for c in section.claims if c.files.plots for name in (f.name for f in loader.get(c.files).values())]
    images = [f"![{n}]({n}.png)" for n in dict.fromkeys(plots)
              if os.path.isfile(os.path.join(loader.out_dir, n + ".png"))]
    lines = [f"## {section.title}", ""] + (images + [""] if images else [])
    if any(c.quick for c in checked):
        lines += ["> **Smoke-test data** (`--quick`): the verdicts below are smoke-test values of the rules on tiny "
                  "settings, not a reproduction of the paper.", ""]
    lines += [line for c in checked for line in render_claim(c)]
    lines += [line for note in dict.fromkeys(c.note for c in checked if c.note) for line in (note, "")]
    try:
        lines += section.tables(loader.get)
    except Exception as error:
        message = str(error) if isinstance(error, DataError) else one_line(error)
        errors += [f"{section.title.split(':')[0]} table: {message}"] * (not any(message in e for e in errors))
        lines += [f"*Table not shown ({DATA_ERROR}):* {message}.", ""]
    by_run = {}
    for st in (f.settings for f in figures.values()):
        by_run[run_key(st)] = max(by_run.get(run_key(st), st), st, key=lambda s: s.get("created", ""))
    produced = [f"`{key}` ({st.get('device', '?')}, {st.get('dtype', 'float32')}, "
                f"{'quick' if st.get('quick') else 'full'} settings, {fmt_seconds(run_seconds(st))}, "
                f"{st.get('created', '?')})" for key, st in by_run.items()]
    return lines + (["*Data:* " + "; ".join(produced) + ".", ""] if produced else [])


def run_key(settings):
    """Which run a figure came from: its command line (a script writes several figures per run)."""
    notebooks = {"Fig. 10": "ensemble_CIFAR.ipynb", "Fig. 11": "adversarial_CIFAR.ipynb"}
    return (settings.get("notebook") or settings.get("command") or notebooks.get(settings.get("figure"))
            or settings.get("figure") or "?")


def run_seconds(settings):
    value = settings.get("run_seconds")
    value = value.get("total") if isinstance(value, dict) else value
    return float(value) if isinstance(value, (int, float)) else None


def fmt_seconds(seconds):
    if seconds is None:
        return "run time unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def run_time_summary(out_dir):
    """Total wall time of the runs behind DIR's figures, each command counted once (a script writes its whole run
    time into every figure it saves), and the machines they ran on."""
    per_command, machines = {}, set()
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "**", "*.json"), recursive=True)):
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue  # an unreadable .json is reported by the claim that reads it
        if isinstance(st, dict) and run_seconds(st) is not None:
            per_command[run_key(st)] = max(per_command.get(run_key(st), 0.0), run_seconds(st))
            machines.add(f"{st.get('machine', '?')} ({st.get('device', '?')})")
    return sum(per_command.values()), per_command, sorted(machines)


BANNERS = (("Not run", "no saved data; each section says why and how to make it",
            lambda cs: all(c.verdict == NOT_RUN for c in cs)),
           ("Data errors", "a saved file could not be read or lacks a key: no verdict, the section names the file; "
            "`make_report.py` exits with status 1", lambda cs: any(c.verdict == DATA_ERROR for c in cs)),
           ("Smoke-test data", "from `--quick` runs on tiny settings: their verdicts only show that the pipeline "
            "works, they are not a reproduction. Run `make figures` for the paper's settings",
            lambda cs: any(c.quick for c in cs)))


def build_report(out_dir, cifar_dir=None):
    """(the text of REPORT.md for the figures saved under out_dir, the data errors met)."""
    loader, errors, done = Loader(out_dir), [], []
    for section in SECTIONS:
        checked = [check(claim, loader, cifar_dir) for claim in section.claims]
        toy.mark_broken(checked, (NOT_RUN, DATA_ERROR))
        errors += [c.text for c in checked if c.verdict in (DATA_ERROR, BROKEN)]
        done.append((section.title.split(":")[0], checked, render_section(section, checked, loader, errors)))
    total, per_command, machines = run_time_summary(out_dir)
    lines = ["# Reproduction report", "",
             f"Generated by `make_report.py` on {time.strftime('%Y-%m-%d %H:%M %Z')} from the data saved in "
             f"`{out_dir}` (nothing is retrained). Paper: Zhao, Ganev, Walters, Yu, Dehmamy, *Symmetries, Flat Minima, "
             "and the Conserved Quantities of Gradient Flow*, ICLR 2023.", ""]
    for title, why, applies in BANNERS:
        figures = [name for name, cs, _ in done if applies(cs)]
        lines += [f"> **{title}**: {', '.join(figures)} ({why}).", ""] if figures else []
    lines += ["Each verdict comes from a fixed rule, stated with its claim, applied to the saved numbers: "
              "**reproduced** (the rule holds everywhere), **partly** (it holds for some activations, attacks or "
              "rows), **not reproduced** (it holds nowhere, or cannot be tested on this data), **depends on the "
              "convention** (the paper code's and the zero convention of Q give different verdicts; both are shown), "
              "**not run** (no data), **data error** (a file could not be read: no verdict), **broken data** (a check "
              "of the figure's construction failed: no verdict). A diverged run is reported as diverged and left "
              "out: the claim cannot be tested on it, so the verdict is partly at best. **Seeds**: where a figure "
              "was run from several random initialisations (seed 0 is the paper's draw and the one plotted), a trend "
              "of |Q| is judged over the series of all seeds (a sign test, and an effect beyond a stated minimum and "
              "the spread over seeds); another rule is applied to each seed, and the verdict says in how many seeds "
              "it holds fully (reproduced: all; not reproduced: it holds, even partly, in none; so partly with 0 of N "
              "seeds means partly in some) and gives the spread of the deciding number. Reference numbers: **[R]** re-run of the paper's code with its seeds "
              "(CPU, float32: a faithful port should match them); **[C]** saved outputs of the paper's notebooks (GPU, "
              "unseeded, a new model per cell: qualitative only).", "", f"**Q.** {Q_CONVENTION}", "", "## Summary", ""]
    lines += table(["figure", "claim", "verdict", "deciding numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs if not c.claim.check])
    lines += ["## Checks", "", "Identities of the construction, not results: moved networks compute the same function "
              "on the training inputs (X = I makes each entry of V one pre-activation, so only a bug could fail it), "
              "and the Hessian at a zero-loss minimum has rank at most m n. A failing check marks its figure's data as "
              "broken. The symmetry is one of the training loss: off the training inputs the moved networks compute "
              "other functions (the second table; exact only for the linear net).", ""]
    lines += table(["figure", "check", "result", "numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick, True)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs if c.claim.check])
    lines += toy.off_data_table({name: loader.get(files) for name, files in OFF_DATA.items()})
    lines += [f"Total run time of the saved figures: **{fmt_seconds(total)}** ({len(per_command)} runs, each counted "
              f"once) on {', '.join(machines) or 'an unknown machine'}.", ""]
    lines += table(["run", "wall time"], [[f"`{k}`", fmt_seconds(v)] for k, v in sorted(per_command.items())])
    lines += [line for _, _, section_lines in done for line in section_lines]
    return "\n".join(lines).rstrip() + "\n", list(dict.fromkeys(errors))


def main(argv=None):
    parser = argparse.ArgumentParser(description="write DIR/REPORT.md from the saved figure data")
    parser.add_argument("--out", default="figures", help="folder holding the saved figures (default: figures)")
    parser.add_argument("--cifar-dir", default=None,
                        help="CIFAR_DIR used by the notebooks: lets the report say whether CIFAR-10 was available")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.out):
        print(f"make_report.py: error: no folder {args.out!r}; make the figures first (make figures)", file=sys.stderr)
        return 2
    text, errors = build_report(args.out, args.cifar_dir)
    path = os.path.join(args.out, "REPORT.md")
    try:
        write_atomic(path, text)
    except OSError as error:
        print(f"make_report.py: error: cannot write {path!r}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({sum(len(s.claims) for s in SECTIONS)} claims)")
    for error in errors:
        print(f"make_report.py: data error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

