"""The claims of Fig. 11 (adversarial_CIFAR.ipynb): the adversarial robustness of the group ensemble, under the
paper's protocol and under the corrected protocol's standard robustness evaluation, with its controls. The suite's
attacks, classifiers, controls and sanity checks are read from the saved .json (robustness.suite_description), so
the report needs no torch. How each claim is judged: docs/report.md, *The CIFAR-10 claims*.
"""
import numpy as np

from gfs import paper_numbers as paper
from gfs.cifar import dataset
from gfs.cifar.suite_checks import CONVERGENCE_TOLERANCE, SANITY_CONFIDENCE, convergence_rows, failed_checks
from gfs.cifar.thresholds import SYMMETRY_TOLERANCE
from gfs.report.claims_fig10 import (EXACT, NUMERICS_NAMES, NUMERICS_SUFFIXES, data_text, exact_decides,
                                     rule_same_predictions)
from gfs.report.verdict_rules import (CANNOT_TEST, NOT_REPRODUCED, PARTLY, REPRODUCED, Claim, EvaluationFailed, Files,
                                      PerSeed, Result, Section, combine, fmt, notebook_command, require, spread, table)

FIG11_MARGIN, CHANCE = 0.01, 0.1  # a gain must exceed chance (10 classes) by the margin
ALPHA = 0.05  # family-wise error of a claim per attack: Bonferroni over its attacked strengths
NOTEBOOK = dataset.NOTEBOOKS["Fig. 11"]
FIG11_MAKE = notebook_command(NOTEBOOK)
FIG11_PAPER = Files(dataset.fig11("{}", "*", "*", "*"), tuple(paper.FIG11_STRENGTHS), FIG11_MAKE, "attacks",
                    notebook=NOTEBOOK)
FIG11_ROBUSTNESS = Files(dataset.fig11("robustness", "*", "*", "*") + "{}", NUMERICS_SUFFIXES, FIG11_MAKE,
                         "numerics", notebook=NOTEBOOK, names=NUMERICS_NAMES)


def sanity_failures(f):
    """The violated sanity checks of a robustness file (its sanity_<classifier> [S, K, R]), as lines."""
    suite = f.setting("suite")
    return failed_checks(f.data, suite["classifiers"] + suite.get("trained_controls", []),
                         suite["sanity_checks"].values())


# ----------------------------------------------------------------------------------------------
# Paired significance, and seeds that are no symmetry

def significant(strengths, diff, p, alpha=ALPHA):
    """McNemar at the attacked strengths (> 0), Bonferroni-corrected: (attacked, significant gain, significant loss:
    [K] bool each, the level alpha / number of attacked strengths that p must be below)."""
    attacked = np.asarray(strengths, dtype=float) > 0
    level = alpha / max(int(attacked.sum()), 1)
    below = attacked & (np.asarray(p, dtype=float) < level)
    return attacked, below & (np.asarray(diff, dtype=float) > 0), below & (np.asarray(diff, dtype=float) < 0), level


def tested_on_a_symmetry(result, symmetry_error, tolerance):
    """result where the moved networks are symmetries (error <= tolerance), else 'cannot be tested' (naming it)."""
    if symmetry_error <= tolerance:  # NaN (overflow) is no symmetry
        return result
    return Result(CANNOT_TEST, f"the moved networks are not symmetries (symmetry error {fmt(symmetry_error)} > "
                  f"{fmt(tolerance)}; as measured: {result.verdict})", "not a symmetry")


# ----------------------------------------------------------------------------------------------
# The paper's protocol

def fig11_paper(f):
    return PerSeed(dict(strengths=f["strengths"], acc_original=f["acc_original"][s], acc_group=f["acc_group"][s],
                        n_images=f.setting("num_eval")) for s in range(len(f["seeds"])))


def rule_group_more_robust(strengths, acc_original, acc_group, n_images=None, margin=FIG11_MARGIN, chance=CHANCE):
    """At every attack strength > 0 the group ensemble's vote accuracy is not lower than the original's by more than
    two binomial standard errors, and at some strength higher by more while above chance + {margin}.

    In full: docs/report.md, *Rules*.

    strengths, acc_original, acc_group: [S]; n_images: images behind each accuracy."""
    strengths = np.asarray(strengths, dtype=float)
    original, group = np.asarray(acc_original, dtype=float), np.asarray(acc_group, dtype=float)
    d = np.round(group - original, 6)  # accuracies are counts / n: drop float32 noise
    threshold = (np.maximum(margin, 2 * np.sqrt(original * (1 - original) / n_images)) if n_images
                 else np.full(len(d), margin))
    attacked = strengths > 0
    gain = attacked & (d > threshold)
    better, worse = gain & (group > chance + margin), attacked & (d < -threshold)
    text = ("group - original at strength " + ", ".join(f"{s:g}: {x:+.3f}" for s, x in zip(strengths, d))
            + f"; better at {int(better.sum())}, worse at {int(worse.sum())} of {int(attacked.sum())} (beyond "
            + "-".join(dict.fromkeys(f"{t:.3f}" for t in (threshold[attacked].min(), threshold[attacked].max()))) + ")")
    if (gain & ~better).any():
        text += (f"; not counted at {', '.join(f'{s:g}' for s in strengths[gain & ~better])}: at most chance + "
                 f"{margin} ({', '.join(f'{a:.3f}' for a in group[gain & ~better])})")
    verdict = REPRODUCED if better.any() and not worse.any() else PARTLY if better.any() else NOT_REPRODUCED
    return Result(verdict, text, ", ".join(f"{x:+.3f}" for x in d[attacked]))


# ----------------------------------------------------------------------------------------------
# The standard robustness evaluation

def fig11_suite(f, controls=False):
    """Per seed: the radii (x 255), group vs original on the robust per-image outcomes (diff, McNemar p), the group's
    robust accuracy and symmetry error; with controls, group vs each control. Failed sanity check: EvaluationFailed."""
    require(f, "robust_acc_group", "sanity_group", "alone_acc_deep", "converged_group")
    failures = sanity_failures(f)
    if failures:
        raise EvaluationFailed(f"{len(failures)} sanity check(s) of the robustness evaluation failed, so the "
                               f"attacks are not trustworthy here: {'; '.join(failures[:3])}")
    tolerance, suite = f.symmetry_tolerance(), f.setting("suite")

    def seed(s):
        measured = dict(radii=f["radii"] * 255, diff=f["group_vs_original_diff"][s], p=f["group_vs_original_p"][s],
                        accuracy=f["robust_acc_group"][s], symmetry_error=float(f["symmetry_error_fitted"][s]),
                        tolerance=tolerance)
        if controls:
            measured["controls"] = {suite["labels"][c]: (f[f"group_vs_{c}_diff"][s], f[f"group_vs_{c}_p"][s])
                                    for c in suite["controls"]}
        return measured
    return PerSeed(seed(s) for s in range(len(f["seeds"])))


def _gain(radii, diff, p, accuracy, alpha, chance, margin):
    """(attacked, significant gain where the ensemble is above chance + margin, significant loss, level): [R] bool."""
    attacked, up, down, level = significant(radii, diff, p, alpha)
    return attacked, up & (np.asarray(accuracy, dtype=float) > chance + margin), down, level


def rule_robust_gain(radii, diff, p, accuracy, symmetry_error=0.0, tolerance=SYMMETRY_TOLERANCE, alpha=ALPHA,
                     chance=CHANCE, margin=FIG11_MARGIN):
    """Per seed, the group ensemble's robust accuracy (right under every attack) is significantly above the
    original's at some radius and below it at none (McNemar, p < {alpha:g} / number of radii).

    In full: docs/report.md, *Rules*.

    radii: [R] (x 255); diff (group - original), p, accuracy (the group's robust accuracy): [R]."""
    attacked, gain, loss, level = _gain(radii, diff, p, accuracy, alpha, chance, margin)
    text = (", ".join(f"{r:g}/255: {d:+.3f} (p {q:.1g})" for r, d, q in zip(radii, diff, p))
            + f"; significant (p < {level:.3g}) gain at {int(gain.sum())}, loss at {int(loss.sum())} of "
            f"{int(attacked.sum())} radii")
    verdict = REPRODUCED if gain.any() and not loss.any() else PARTLY if gain.any() else NOT_REPRODUCED
    # the deciding radius: a significant loss (the smallest p), else the largest significant gain, else the smallest p
    p, diff = np.asarray(p, dtype=float), np.asarray(diff, dtype=float)
    i = (np.flatnonzero(loss)[np.argmin(p[loss])] if loss.any() else np.flatnonzero(gain)[np.argmax(diff[gain])]
         if gain.any() else int(np.argmin(np.where(attacked, p, np.inf))))
    deciding = f"{'loss' if loss.any() else 'gain' if gain.any() else 'no significant change'} at {radii[i]:g}/255"
    return tested_on_a_symmetry(Result(verdict, text, deciding, float(diff[i]),
                                       f"group - original at {radii[i]:g}/255", float(p[i])), symmetry_error, tolerance)


def rule_gain_beyond_controls(radii, diff, p, accuracy, controls, symmetry_error=0.0, tolerance=SYMMETRY_TOLERANCE,
                              alpha=ALPHA, chance=CHANCE, margin=FIG11_MARGIN):
    """At some radius the group ensemble's robust accuracy is significantly above the original's (as above) and
    above each control's on the same images (McNemar, p < {alpha:g} / number of radii).

    In full: docs/report.md, *Rules*.

    radii: [R] (x 255); diff, p (group vs original), accuracy: [R]; controls: {name: (diff, p) of group vs it, [R]}."""
    _, gain, _, _ = _gain(radii, diff, p, accuracy, alpha, chance, margin)
    beyond, parts = [], []
    for name, (cd, cq) in controls.items():
        _, ahead, behind, _ = significant(radii, cd, cq, alpha)
        beyond.append(bool((gain & ahead).any()))
        parts.append(f"{name}: beyond it at {int((gain & ahead).sum())}, significantly behind at {int(behind.sum())} "
                     f"radii")  # the differences per radius are in the section's table
    result = Result(combine([REPRODUCED if b else NOT_REPRODUCED for b in beyond]), "; ".join(parts),
                    ", ".join(f"{n}: {'beyond' if b else 'not beyond'}" for n, b in zip(controls, beyond)),
                    min(float(np.asarray(cd)[0]) for cd, _ in controls.values()),
                    f"lead over the strongest control at {float(radii[0]):g}/255")  # signed: a loss reads negative
    return tested_on_a_symmetry(result, symmetry_error, tolerance)


def fig11_agreement(f):
    require(f, "heldout_agreement_group")
    return PerSeed(dict(group_scales=[float(f["group_scale"])], agreement=[[a]]) for a in f["heldout_agreement_group"])


# ----------------------------------------------------------------------------------------------
# Tables

def fig11_tables(paper_protocol):
    """The paper's protocol per attack ({attack: Figure}): accuracy per strength, mean ± std over seeds."""
    lines = []
    for method, f in paper_protocol.items():
        models = [key[len("acc_"):] for key in f.data if key.startswith("acc_")]  # the original, then the modes
        ref = paper.FIG11_ACCURACY.get(method, {})
        rows = [[f"{s:g}"] + [spread(f[f"acc_{m}"][:, i], "{:.3f}") for m in models]
                + [spread(f["acc_group"][:, i] - f["acc_original"][:, i])]
                + [f"{ref['original'][i]:.3f} / {ref['group'][i]:.3f}" if i < len(ref.get("original", ())) else "-"]
                for i, s in enumerate(f["strengths"])]
        lines += [f"**{method}, paper's protocol** (strength = {'iterations' if method == 'PGD' else 'epsilon'}; "
                  f"majority-vote accuracy on {f.settings.get('num_eval', '?')} images, mean ± std over "
                  f"{len(f['seeds'])} seeds).", ""]
        lines += table(["strength", *models, "group - original", "paper's code [C] original / group (mean prob.)"],
                       rows)
    for f in list(paper_protocol.values())[:1]:
        lines += [f"Chance is {CHANCE:g}. The attacks are computed on the single original model and transferred to the "
                  f"ensembles. The original on clean images clamped to [0, 1] (no attack): "
                  f"{spread(f['clamp_only_acc'], '{:.3f}')}. The group's symmetry error (float32 with fit noise) per "
                  f"seed: {', '.join(fmt(x) for x in f['symmetry_error_fitted'])}: above {SYMMETRY_TOLERANCE:g}, so "
                  "these members are not symmetry-moved networks.", "",
                  data_text(f.settings.get("data", {})) + f" {f.settings.get('num_train_images', '?')} training and "
                  f"{f.settings.get('num_test_images', '?')} test images.", ""]
    return lines


def sanity_line(f, checks=""):
    failures = sanity_failures(f)
    return [f"Sanity checks{checks}: " + ("all passed." if not failures else f"**{len(failures)} failed: evaluation "
                                          "failed** (" + "; ".join(failures[:5]) + ")."), ""]


def robustness_tables(figures):
    """The exact numerics (which decide) in full: robust accuracy and paired differences per radius, convergence,
    Square's curves, held-out agreement, sanity checks; the other numerics: the group ensemble's rows only."""
    lines = []
    ordered = [(n, f) for n, f in sorted(figures.items(), key=lambda item: item[0] != EXACT)
               if "alone_acc_deep" in f.data]
    for k, (numerics, f) in enumerate(ordered):
        radii, suite = f["radii"] * 255, f.setting("suite")
        names, shown, attacks = suite["labels"], suite["shown_comparisons"], suite["attacks"]
        classifiers = ["group"] if k else suite["classifiers"] + suite.get("trained_controls", [])
        once = set(suite.get("trained_controls", []))  # attacked once: the same value in every seed
        rows = [[f"{r:g}/255"] + [f"{f[f'robust_acc_{c}'][0, i]:.3f}" if c in once else
                                  spread(f[f"robust_acc_{c}"][:, i], "{:.3f}") for c in classifiers]
                + [f"{spread(f[f'{key}_diff'][:, i])} (p ≤ {f[f'{key}_p'][:, i].max():.1g})" for key in shown]
                for i, r in enumerate(radii)]
        if k:
            lines += [f"**Standard robustness evaluation, {numerics}**: the group ensemble (settings and controls as "
                      "above; its convergence, Square and agreement arrays: the .npz and the notebook).", ""]
            lines += table(["radius", names["group"]] + list(shown.values()), rows) + sanity_line(f)
            continue
        settings = ", ".join(f"{key.replace('_', ' ')} {int(v)}" for key, v in suite["settings"].items())
        costly = "; ".join(f"{a} on {', '.join(on) or 'none'}" for a, on in suite.get("costly_attacks_on", {}).items())
        members = np.reshape(f["member_clean_acc_deep"], (-1, len(f["control_seeds"])))[0]
        lines += [f"**Standard robustness evaluation, {numerics}** ({len(f['seeds'])} seeds; the first "
                  f"{int(f['suite_images'])} test images; {settings}" + f"; the CPU budget: {costly}" * bool(costly)
                  + "). Robust: right on clean data and under every attack. The trained controls' seeds: "
                  + ", ".join(str(int(s)) for s in f["control_seeds"]) + " (the independent CNN is the first; clean "
                  f"accuracy of the deep ensemble {float(np.mean(f['clean_acc_deep'])):.3f}, of its members "
                  + ", ".join(f"{a:.3f}" for a in members) + "; attacked once, paired with every seed).", ""]
        lines += table(["radius"] + [names[c] for c in classifiers] + list(shown.values()), rows)
        short = [a["label"].split(" (")[0] for a in attacks]  # table headers; the full labels are listed below
        lines += ["Convergence (mean over seeds): robust accuracy after each attack of the cascade (in brackets: that "
                  f"attack alone on the audit images, which the sanity checks compare with a one-sided "
                  f"{SANITY_CONFIDENCE:.0%} binomial slack), then on the first {int(f['audit_images'])} (audit) "
                  "images before -> after doubling the iterations and restarts of the strongest white-box attack; "
                  f"\"not converged\" where doubling broke more than {CONVERGENCE_TOLERANCE:.1%} of them in a seed.",
                  ""]
        lines += table(["classifier", "radius"] + [f"after {a}" for a in short] + ["audit: doubled"],
                       convergence_rows(f.data, [a["label"] for a in attacks], classifiers, names, alone=True))
        queries = np.reshape(f["square_curve_queries_group"], (-1, np.shape(f["square_curve_group"])[-1]))[0]
        curves = {c: np.reshape(f[f"square_curve_{c}"], (-1, len(radii), len(queries))).mean(axis=0)
                  for c in classifiers}
        lines += table(["classifier", "radius", "Square alone after " + " / ".join(str(int(q)) for q in queries)
                        + " queries"], [[names[c], f"{r:g}/255", " / ".join(f"{v:.3f}" for v in curve[i])]
                                        for c, curve in curves.items() for i, r in enumerate(radii)
                                        if np.isfinite(curve[i]).all()])
        lines += ["Held-out agreement of the ensembles' members with the original (all evaluation images):", ""]
        lines += table(["ensemble", "agreement (mean over members)", "lowest member", "median gap", "saturated"],
                       [[names[m], spread(f[f"heldout_agreement_{m}"], "{:.3f}"),
                         spread(f[f"heldout_agreement_min_{m}"], "{:.3f}"), fmt(np.median(f[f"heldout_gap_p50_{m}"])),
                         spread(f[f"heldout_saturated_{m}"], "{:.3f}")] for m in ("group", "perm_interp")])
        lines += sanity_line(f, " (every attack meant to run ran alone on the audit images; each alone at most FGSM's "
                                "and each white-box one at most transfer's accuracy alone, plus a binomial slack; "
                                "monotone in the radius; suite_checks.py)")
    return lines


# ----------------------------------------------------------------------------------------------
# The claims

SECTIONS = (
    Section("Fig. 11: adversarial robustness of the group ensemble (CIFAR-10)", (
        Claim("Fig. 11", "group more robust than original (paper's protocol)",
              "Under the paper's protocol (attacks transferred from the single model; its data range, clamping and "
              "strengths; float32 action with fit noise), the group ensemble is more robust than the original to FGSM "
              "and PGD (accuracies compared: the protocol saves no per-image results).", FIG11_PAPER, fig11_paper,
              rule_group_more_robust, paper=lambda: {
                  m: dict(strengths=paper.FIG11_STRENGTHS[m], acc_original=acc["original"], acc_group=acc["group"],
                          n_images=paper.FIG11_IMAGES) for m, acc in paper.FIG11_ACCURACY.items()}),
        Claim("Fig. 11", "corrected: group more robust than original (standard evaluation)",
              "Under the corrected protocol (valid pixel range, logits, the test split) and the standard robustness "
              "evaluation (white-box through every member; right only if right under every attack), the group "
              "ensemble is more accurate than the original on the same images.",
              FIG11_ROBUSTNESS, fig11_suite, rule_robust_gain, over=exact_decides),
        Claim("Fig. 11", "corrected: gain beyond the controls (independent CNN, shared trunk)",
              "The gain is robustness from the symmetry: the group ensemble is also more accurate than an "
              "independent CNN, a shared-trunk ensemble and a deep ensemble under the same evaluation.",
              FIG11_ROBUSTNESS, lambda f: fig11_suite(f, controls=True), rule_gain_beyond_controls, over=exact_decides),
        Claim("Fig. 11", "Fig. 11 members make the original's predictions on unseen images",
              "The premise of the robustness claim: the moved networks of Fig. 11 (the notebook's NUM_G members at "
              "GROUP_SCALE) predict the original's class on held-out images (the evaluation images).",
              FIG11_ROBUSTNESS, fig11_agreement, rule_same_predictions, over=exact_decides)),
            lambda get: fig11_tables(get(FIG11_PAPER)) + robustness_tables(get(FIG11_ROBUSTNESS))),
)
