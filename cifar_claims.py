"""The report's claims on the held-out agreement (Fig. 10), the fit-size experiment and the standard robustness
evaluation (Fig. 11): for each claim, its measurement (saved figure -> the rule's arguments), its rule (numbers ->
Result; the first docstring paragraph is printed in the report) and its table, side by side. make_report.py lists
them in its SECTIONS.

Two outcomes are no verdict (Unjudged, raised by a measurement): NotRun, a saved file from before these
measurements existed (it lacks their keys), and EvaluationFailed, a violated sanity check of the robustness
evaluation: a weak or masked attack, so the report says "evaluation failed", never a robustness verdict.
"""
import numpy as np

from agreement import AGREEMENT_THRESHOLD
from verdict_rules import (ALPHA, CHANCE, FIG11_MARGIN, NOT_REPRODUCED, PARTLY, REPRODUCED, SYMMETRY_TOLERANCE,
                           PerSeed, Result, combine, eps_set, fmt, rows_all_within, significant, tested_on_a_symmetry)

EVALUATION_FAILED = "evaluation failed"


class Unjudged(Exception):
    """A claim that gets no verdict by design; `verdict` is what the report shows instead."""
    verdict = "not run"


class NotRun(Unjudged):
    """The saved file predates the measurement (no such keys): re-run the notebook."""


class EvaluationFailed(Unjudged):
    """A sanity check of the robustness evaluation failed: no robustness verdict."""
    verdict = EVALUATION_FAILED


def require(f, *keys):
    """NotRun unless the saved figure f has every key."""
    missing = [k for k in keys if k not in f.data]
    if missing:
        raise NotRun(f"{f.name}.npz predates this measurement (no {missing[0]!r}): re-run its notebook")


def spread(values, form="{:+.3f}"):
    values = np.asarray(values, dtype=float)
    return form.format(values.mean()) + f" ± {values.std():.3f}"


def table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |"
                                                                            for r in rows] + [""]


# ----------------------------------------------------------------------------------------------
# Fig. 10: the same predictions on unseen images

def fig10_agreement(f):
    require(f, "heldout_agreement")
    return PerSeed(dict(eps=f["eps"], agreement=f["heldout_agreement"][s]) for s in range(len(f["seeds"])))


def rule_same_predictions(eps, agreement, threshold=AGREEMENT_THRESHOLD):
    """On held-out images (the evaluation images, never used for pi) every member makes the original's prediction:
    in every cell of a row the members agree with the original on at least {threshold:g} of the images (mean over
    the cell's members). Every row: reproduced; some rows: partly; none: not reproduced. This is what would make
    an ensemble of moved networks an ensemble of one function.

    eps: [E]; agreement: [E, G] the members' mean agreement per cell."""
    agreement = np.asarray(agreement, dtype=float)
    rows = rows_all_within(1 - agreement, 1 - threshold)
    lowest = ", ".join(f"eps {e:g}: {x:.3f}" for e, x in zip(eps, np.nanmin(agreement, axis=1)))
    return Result(REPRODUCED if rows.all() else PARTLY if rows.any() else NOT_REPRODUCED,
                  f"same predictions at {eps_set(eps, rows)}; lowest agreement per row: {lowest}",
                  f"same predictions at {eps_set(eps, rows)}", float(np.nanmin(agreement)), "lowest agreement")


def fig10_agreement_tables(figures):
    """Per numerics: per eps, the members' held-out agreement (mean over num_g; the lowest cell), the median relative
    logit gap and the saturated fraction, mean over seeds."""
    lines = []
    for numerics, f in figures.items():
        if "heldout_agreement" not in f.data:
            lines += [f"*Held-out agreement, {numerics}:* not run (the saved grid predates it).", ""]
            continue
        rows = [[f"{e:g}", spread(f["heldout_agreement"][:, i].mean(axis=1), "{:.3f}"),
                 f"{f['heldout_agreement'][:, i].min():.3f}", fmt(np.median(f["heldout_gap_p50"][:, i])),
                 f"{fmt(np.median(f['heldout_gap_p10'][:, i]))} to {fmt(np.median(f['heldout_gap_p90'][:, i]))}",
                 f"{f['heldout_saturated'][:, i].mean():.3f}", fmt(f["symmetry_error_fitted"][:, i].max())]
                for i, e in enumerate(f["eps"])]
        lines += [f"**Held-out agreement, {numerics}**: each member against the original on the evaluation images "
                  "(never used for pi); mean over num_g and seeds. Relative logit gap per member-image pair "
                  "max|z_member - z_original| / max|z_original|: median, and 10th to 90th percentile (medians over "
                  "cells); saturated: pairs whose largest softmax probability rounds to 1. Beside it the symmetry error "
                  "on the fitting images (largest).", ""]
        lines += table(["eps", "agreement", "lowest cell", "median gap", "gap p10 to p90", "saturated",
                        "error on fitting images"], rows)
    return lines


# ----------------------------------------------------------------------------------------------
# Beyond the paper: does the action generalise when fitted on more images?

def fit_size_seeds(f):
    return PerSeed(dict(scales=f["scales"], sizes=f["sizes"], agreement=f["heldout_agreement"][s])
                   for s in range(len(f["seeds"])))


def rule_action_generalises(scales, sizes, agreement, threshold=AGREEMENT_THRESHOLD):
    """Fitted on more images than hidden units (least squares), the action generalises: at every group scale, with
    the most images per group element, the members agree with the original on at least {threshold:g} of the
    held-out images. Every scale: reproduced; some: partly; none: not reproduced.

    scales: [E]; sizes: [K] images per group element; agreement: [E, K] the members' mean agreement."""
    agreement = np.asarray(agreement, dtype=float)
    ok = agreement[:, -1] >= threshold
    parts = [f"scale {s:g}: " + ", ".join(f"{int(k)}: {a:.3f}" for k, a in zip(sizes, row))
             for s, row in zip(scales, agreement)]
    return Result(REPRODUCED if ok.all() else PARTLY if ok.any() else NOT_REPRODUCED,
                  f"agreement per images per element, {'; '.join(parts)}",
                  f"generalises at scale {', '.join(f'{s:g}' for s in np.asarray(scales)[ok]) or 'none'}",
                  float(agreement[:, -1].min()), f"lowest agreement at {int(sizes[-1])} images")


def fit_size_tables(figures):
    lines = []
    for f in figures.values():
        original = f["original_acc"]
        rows = [[f"{s:g}", str(int(k)), spread(f["heldout_agreement"][:, i, j], "{:.3f}"),
                 spread(f["mean_acc"][:, i, j] - original), fmt(np.median(f["heldout_gap_p50"][:, i, j])),
                 f"{f['heldout_saturated'][:, i, j].mean():.3f}", fmt(f["fit_error"][:, i, j].max())]
                for i, s in enumerate(f["scales"]) for j, k in enumerate(f["sizes"])]
        lines += [f"**Fit-size experiment** ({int(f['members'])} group elements, exact numerics, no fit noise; "
                  f"{len(f['seeds'])} seeds; original accuracy {spread(original, '{:.3f}')}): pi fitted on k images "
                  "per group element (k > 16: least squares), measured on the held-out evaluation images; mean ± "
                  "std over seeds.", ""]
        lines += table(["scale", "images per element", "agreement", "ensemble - original (mean prob.)", "median gap",
                        "saturated", "error on fitting images"], rows)
    return lines


# ----------------------------------------------------------------------------------------------
# Fig. 11: the standard robustness evaluation

def _sanity(f):
    """EvaluationFailed naming the violated checks, if any (the saved sanity_<classifier> [S, K, R])."""
    from robustness import sanity_failures
    failures = sanity_failures(f.data)
    if failures:
        raise EvaluationFailed(f"{len(failures)} sanity check(s) of the robustness evaluation failed, so the "
                               f"attacks are not trustworthy here: {'; '.join(failures[:3])}")


def fig11_suite(f, controls=False):
    """Per seed: the radii (x 255), group vs original on the robust per-image outcomes (diff, McNemar p), the
    group's robust accuracy, the symmetry error of the pi used; with controls, group vs the independent CNN and vs
    the shared-trunk ensemble."""
    require(f, "robust_acc_group", "sanity_group")
    _sanity(f)
    tolerance = f.symmetry_tolerance()

    def seed(s):
        measured = dict(radii=f["radii"] * 255, diff=f["group_vs_original_diff"][s], p=f["group_vs_original_p"][s],
                        accuracy=f["robust_acc_group"][s], symmetry_error=float(f["symmetry_error_fitted"][s]),
                        tolerance=tolerance)
        if controls:
            measured["controls"] = {name: (f[f"group_vs_{key}_diff"][s], f[f"group_vs_{key}_p"][s])
                                    for name, key in (("independent CNN", "independent"),
                                                      ("shared trunk", "perm_interp"))}
        return measured
    return PerSeed(seed(s) for s in range(len(f["seeds"])))


def _gain(radii, diff, p, accuracy, alpha, chance, margin):
    """(attacked, significant gain where the ensemble is above chance + margin, significant loss, level): [R] bool."""
    attacked, up, down, level = significant(radii, diff, p, alpha)
    return attacked, up & (np.asarray(accuracy, dtype=float) > chance + margin), down, level


def rule_robust_gain(radii, diff, p, accuracy, symmetry_error=0.0, tolerance=SYMMETRY_TOLERANCE, alpha=ALPHA,
                     chance=CHANCE, margin=FIG11_MARGIN):
    """Under the standard robustness evaluation (an image counts as right only if it is right under every attack of
    the suite: FGSM, transfer, APGD-CE and APGD-DLR through every member, Square), the group ensemble is
    significantly more accurate than the original at some L-inf radius and significantly less accurate at none
    (McNemar's exact test on the same images, p < {alpha:g} / number of radii, Bonferroni). A gain counts only where
    the ensemble is more than {margin} above chance ({chance:g}). Reproduced if so; a gain with a loss elsewhere:
    partly; no gain: not reproduced. If the moved networks are not symmetries on their fitting images (error above
    {tolerance:g}) the seed cannot be tested (not reproduced).

    radii: [R] (x 255); diff (group - original), p, accuracy (the group's robust accuracy): [R]."""
    attacked, gain, loss, level = _gain(radii, diff, p, accuracy, alpha, chance, margin)
    text = (", ".join(f"{r:g}/255: {d:+.3f} (p {q:.1g})" for r, d, q in zip(radii, diff, p))
            + f"; significant (p < {level:.3g}) gain at {int(gain.sum())}, loss at {int(loss.sum())} of "
            f"{int(attacked.sum())} radii")
    verdict = REPRODUCED if gain.any() and not loss.any() else PARTLY if gain.any() else NOT_REPRODUCED
    return tested_on_a_symmetry(Result(verdict, text, verdict, float(np.max(diff)), "largest group - original"),
                                symmetry_error, tolerance)


def rule_gain_beyond_controls(radii, diff, p, accuracy, controls, symmetry_error=0.0, tolerance=SYMMETRY_TOLERANCE,
                              alpha=ALPHA, chance=CHANCE, margin=FIG11_MARGIN):
    """At some radius the group ensemble's robust accuracy (standard evaluation) is significantly above the
    original's (as in the rule above) and significantly above each control's on the same images (McNemar, p <
    {alpha:g} / number of radii): the independent CNN (another seed, attacked by the same suite) rules out "any
    second network"; the shared-trunk ensemble (the interpolated permutation of the same trunk and scale: other
    heads on the same features) rules out "other heads on the attacked features" and so isolates the symmetry.
    Beyond both controls: reproduced; one: partly; neither: not reproduced. Not symmetries: cannot be tested.

    radii: [R] (x 255); diff, p (group vs original), accuracy: [R]; controls: {name: (diff [R], p [R])}, group vs the
    control."""
    _, gain, _, level = _gain(radii, diff, p, accuracy, alpha, chance, margin)
    beyond, parts = [], []
    for name, (cd, cq) in controls.items():
        _, ahead, behind, _ = significant(radii, cd, cq, alpha)
        beyond.append(bool((gain & ahead).any()))
        parts.append(f"group - {name} " + ", ".join(f"{r:g}/255: {d:+.3f} (p {q:.1g})" for r, d, q in
                                                     zip(radii, cd, cq))
                     + f": beyond it at {int((gain & ahead).sum())} radii, significantly behind at {int(behind.sum())}")
    result = Result(combine([REPRODUCED if b else NOT_REPRODUCED for b in beyond]), "; ".join(parts),
                    ", ".join(f"{n}: {'beyond' if b else 'not beyond'}" for n, b in zip(controls, beyond)),
                    min(float(np.max(cd)) for cd, _ in controls.values()), "largest lead over the weaker control")
    return tested_on_a_symmetry(result, symmetry_error, tolerance)


def fig11_agreement(f):
    require(f, "heldout_agreement_group")
    return PerSeed(dict(eps=[float(f["group_scale"])], agreement=[[a]]) for a in f["heldout_agreement_group"])


def robustness_tables(figures):
    """Per numerics: robust accuracy per radius and classifier, the paired differences with McNemar's largest p,
    the attack that first broke the images, held-out agreement of the ensembles, and the sanity checks."""
    from robustness import ATTACKS, CLASSIFIERS, SANITY_CHECKS, sanity_failures
    lines = []
    for numerics, f in figures.items():
        if "robust_acc_group" not in f.data:
            continue
        radii = f["radii"] * 255
        names = {"original": "original", "group": "group", "perm_interp": "shared trunk",
                 "independent": "independent CNN"}
        comparisons = (("group - original", "group_vs_original"), ("group - shared trunk", "group_vs_perm_interp"),
                       ("group - independent", "group_vs_independent"))
        rows = [[f"{r:g}/255"] + [spread(f[f"robust_acc_{c}"][:, k], "{:.3f}") for c in names]
                + [f"{spread(f[f'{key}_diff'][:, k])} (p ≤ {f[f'{key}_p'][:, k].max():.1g})" for _, key in comparisons]
                for k, r in enumerate(radii)]
        settings = ", ".join(f"{k.replace('_', ' ')} {int(f[k])}" for k in ("apgd_steps", "apgd_restarts", "square_queries",
                                                                              "transfer_steps", "audit_images"))
        lines += [f"**Standard robustness evaluation, {numerics}** ({len(f['seeds'])} seeds; the first "
                  f"{int(f['suite_images'])} test images for every classifier; {settings}). Robust accuracy: right on "
                  "clean data and under every attack; mean ± std over seeds; McNemar's p largest over seeds. The "
                  "independent CNN of a seed is another seed's original, so over the seeds its accuracies are the "
                  "original's; its comparison with the group is paired within each seed.", ""]
        lines += table(["radius"] + list(names.values()) + [h for h, _ in comparisons], rows)
        decided = sum(np.asarray(f[f"decided_{c}"]).sum(axis=0) for c in CLASSIFIERS)  # [A, R]
        lines += ["Images first broken by each attack (in the order of the suite, so the cheap attacks come first; "
                  "summed over seeds and the three classifiers; an image an earlier attack broke is not counted "
                  "again):", ""]
        lines += table(["radius"] + [a.label for a in ATTACKS],
                       [[f"{r:g}/255"] + [str(int(decided[a, k])) for a in range(len(ATTACKS))]
                        for k, r in enumerate(radii)])
        agreement = [[names[m], spread(f[f"heldout_agreement_{m}"], "{:.3f}"),
                      spread(f[f"heldout_agreement_min_{m}"], "{:.3f}"), fmt(np.median(f[f"heldout_gap_p50_{m}"])),
                      spread(f[f"heldout_saturated_{m}"], "{:.3f}")] for m in ("group", "perm_interp")]
        lines += ["Held-out agreement of the ensembles' members with the original (all evaluation images):", ""]
        lines += table(["ensemble", "agreement (mean over members)", "lowest member", "median gap", "saturated"],
                       agreement)
        failures = sanity_failures(f.data)
        lines += [f"Sanity checks ({'; '.join(text for text, _ in SANITY_CHECKS.values())}): "
                  + ("all passed." if not failures else f"**{len(failures)} failed: evaluation failed** ("
                     + "; ".join(failures[:5]) + ")."), ""]
    return lines
