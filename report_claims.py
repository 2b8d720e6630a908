"""Every claim and check of REPORT.md, registered once: its figure, its words, the files it reads,
the measurement (a saved figure -> the rule's arguments), the rule, and the section and tables it
appears in. make_report.py loads, judges and renders them; the rules themselves are in
verdict_rules.py, claims_toy.py (Figs. 3-9) and cifar_claims.py (Figs. 10-11).

Adding a claim: one Claim entry in its Section here, its rule (beside the others of its figures)
and the rule's test.
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np

import cifar_claims as cc
import cifar_files
from symmetry import ENSEMBLE_MODES
import Q_convergence_elementwise as fig6
import Q_convergence_radial as fig7
import Q_distribution as fig45
import Q_dynamics_elementwise as fig3
import Q_hessian_eigenvalues as fig9
import claims_toy as toy
import paper_numbers as paper
from report_tables import (
    FIG7_COLUMNS,
    FIG45_COLUMNS,
    fig3_tables,
    fig6_tables,
    fig9_tables,
    fig10_tables,
    fig11_tables,
    legend_Qs,
    run_table,
)
from verdict_rules import (
    EXACT,
    FIG10_MARGIN,
    PerSeed,
    combine,
    exact_decides,
    rule_drift_proportional,
    rule_ensemble_margin,
    rule_group_beats_baselines,
    rule_group_more_robust,
    rule_group_vs_perm_interp,
    rule_hessian_rank,
    rule_q_distribution,
    rule_same_initial_function,
    rule_steps_proportional_to_Q,
    rule_symmetries,
)


class DataError(Exception):
    """A saved file cannot be read, is incomplete or lacks something a claim needs; the message says what."""


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
                 **{m: f[f"vote_acc_{m}"][s] for m in ENSEMBLE_MODES}) for s in range(len(f["seeds"]))]


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
TOY_FIGURES = "make toy-figures OUT={out}"  # the Makefile holds each script's seeds and flags
FIG3 = Files(fig3.figure_name("{}"), A, TOY_FIGURES, discover=True)
FIG3_FLOAT64 = Files("float64/" + fig3.figure_name("{}"), A, TOY_FIGURES, discover=True, plots=False)
FIG4 = Files(fig45.figure_name("{}", fig45.FIG4_SHAPE), A, TOY_FIGURES, discover=True)
FIG5 = Files(fig45.figure_name("linear", ("{}",) * 3).replace("{}_{}_{}", "{}"),  # units: the shapes, m_h_n
             tuple("_".join(map(str, shape)) for shape in fig45.FIG5_SHAPES), TOY_FIGURES, "histograms (m_h_n)")
FIG6 = Files(fig6.figure_name("{}"), A, TOY_FIGURES, discover=True)
SAME_FUNCTION_6 = Files(fig6.figure_name("{}", "same_function"), A, TOY_FIGURES, discover=True)
PER_NEURON_6 = Files(fig6.figure_name("{}", "per_neuron"), A, TOY_FIGURES, discover=True)
FIG7 = Files(fig7.FIGURE, ("",), TOY_FIGURES)
FIG9 = Files(fig9.figure_name("{}"), A, TOY_FIGURES, discover=True)
SAME_FUNCTION_9 = Files(fig9.figure_name("{}", "same_function"), A, TOY_FIGURES, discover=True)
PER_NEURON_9 = Files(fig9.figure_name("{}", "per_neuron"), A, TOY_FIGURES, discover=True)
OFF_DATA = {"Fig. 6 same function": SAME_FUNCTION_6, "Fig. 6 per-neuron": PER_NEURON_6,
            "Fig. 9 same function": SAME_FUNCTION_9, "Fig. 9 per-neuron": PER_NEURON_9}
# The CIFAR files: cifar_files names them; '*' matches the settings a quick run writes into the names (g5 for g200).
NUMERICS_SUFFIXES, NUMERICS_NAMES = tuple(cifar_files.NUMERICS_SUFFIX.values()), ("paper numerics", EXACT)
FIG10_MAKE = "python run_notebook.py ensemble_CIFAR.ipynb --out {out}"
FIG11_MAKE = "python run_notebook.py adversarial_CIFAR.ipynb --out {out}"
FIG10 = Files(cifar_files.fig10("paper") + "{}", NUMERICS_SUFFIXES, FIG10_MAKE, "numerics",
              notebook="ensemble_CIFAR.ipynb", names=NUMERICS_NAMES)
FIT_SIZE = Files(cifar_files.FIT_SIZE, ("",), FIG10_MAKE, notebook="ensemble_CIFAR.ipynb")
FIG11_PAPER = Files(cifar_files.fig11("{}", "*", "*", "*"), ("FGSM", "PGD"), FIG11_MAKE, "attacks",
                    notebook="adversarial_CIFAR.ipynb")
FIG11_CORRECTED = Files(cifar_files.fig11("corrected", "*", "*", "*") + "{}", NUMERICS_SUFFIXES, FIG11_MAKE,
                        "numerics", notebook="adversarial_CIFAR.ipynb", names=NUMERICS_NAMES)
FIG11_ROBUSTNESS = Files(cifar_files.fig11("robustness", "*", "*", "*") + "{}", NUMERICS_SUFFIXES, FIG11_MAKE,
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
