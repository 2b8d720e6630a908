"""The claims of Fig. 10 (ensemble_CIFAR.ipynb): ensembles built from the nonlinear, data-dependent group action,
and the experiment beyond the paper on whether the action generalises. How each claim is judged: docs/report.md.
"""
import os

import numpy as np

from gfs.cifar import dataset  # the file names (dataset.py imports torch only to build images)
from gfs import paper_numbers as paper
from gfs.cifar.thresholds import AGREEMENT_THRESHOLD, SYMMETRY_TOLERANCE
from gfs.report.verdict_rules import (NOT_REPRODUCED, PARTLY, REPRODUCED, Claim, Files, PerSeed, Result, Section,
                                      combine, fmt, notebook_command, require, spread, table)

EXACT = "exact numerics"  # the unit label of the float64 action files (exact_decides)
FIG10_MARGIN = 0.02       # accuracy differences within it are ties
EPS_CHECKED = (1.0, 10.0)  # the large eps at which the paper compares the group ensemble with the baselines
NUMERICS_SUFFIXES, NUMERICS_NAMES = tuple(dataset.NUMERICS_SUFFIX.values()), ("paper numerics", EXACT)
SHORT_NAMES = {name: name.split()[0] for name in NUMERICS_NAMES}  # 'paper', 'exact': in table columns
NOTEBOOK = dataset.NOTEBOOKS["Fig. 10"]
FIG10 = Files(dataset.fig10("paper") + "{}", NUMERICS_SUFFIXES, notebook_command(NOTEBOOK), "numerics",
              notebook=NOTEBOOK, names=NUMERICS_NAMES)
FIT_SIZE = Files(dataset.FIT_SIZE, ("",), notebook_command(NOTEBOOK), notebook=NOTEBOOK)
AT_LARGE_EPS = " and ".join(f"{e:g}" for e in EPS_CHECKED)


def deciding_numerics(figures):
    """The numerics whose data decide (exact_decides) among {numerics name: ...}: the exact, else the only ones."""
    return EXACT if EXACT in figures else next(iter(figures), None)


def data_text(data):
    """The CIFAR-10 files a run read, in words, from its .json's 'data' (dataset.cifar10_provenance)."""
    digest, source = data.get("digest"), data.get("source", "not recorded (the run predates it)")
    head, _, names = source.rpartition(" checksum for ")
    if head and data.get("official") is False:  # the files whose MD5 differs, counted (the .json names them)
        count = len(names.split(", "))
        source = f"{head} checksum for {count} file{'s' * (count != 1)}"
    return (f"CIFAR-10 data: {source}"
            + (f"; SHA-256 digest of its files `{digest}` (per file: the .json)" if digest else "")
            + f"; read from a folder named `{os.path.basename(os.path.normpath(str(data.get('folder', '?'))))}`.")


def exact_decides(verdicts):
    """Over the numerics: the exact numerics (float64 action, no fit noise) decide: the claim needs moved networks
    that are symmetries, which the paper's float32 action with fit noise is not at large eps (its verdict is shown).

    verdicts: {unit label: verdict}."""
    return verdicts.get(EXACT, NOT_REPRODUCED)


def eps_set(group_scales, rows):
    """'eps in {0.1, 1}': the eps of the rows where rows [E] is True; 'eps <= 0.1' ('eps >= 1') where those are more
    than two and every eps up to (from) one."""
    scales, chosen = sorted(float(x) for x in group_scales), sorted(float(x) for x, r in zip(group_scales, rows) if r)
    if len(chosen) > 2 and chosen in (scales[:len(chosen)], scales[-len(chosen):]):
        return f"eps <= {chosen[-1]:g}" if chosen == scales[:len(chosen)] else f"eps >= {chosen[0]:g}"
    return "eps in {" + (", ".join(f"{e:g}" for e in chosen) or "none") + "}"


def rows_all_within(values, bound):
    """[E] bool: the rows of values [E, G] whose every cell has |cell| <= bound (a NaN cell has not)."""
    return np.all(np.abs(np.nan_to_num(np.asarray(values, dtype=float), nan=np.inf)) <= bound, axis=1)


def symmetric_rows(symmetric, rows):
    """[E] bool: the rows whose every cell is a symmetry. symmetric: [E, G] bool, or None (not measured: all count)."""
    return np.ones(rows, bool) if symmetric is None else np.all(np.asarray(symmetric, dtype=bool), axis=1)


def checked_rows(group_scales, eps_checked, symmetric):
    """(indices of the rows at the checked eps whose every cell is a symmetry, the untestable others in words)."""
    rows = symmetric_rows(symmetric, len(group_scales))
    present = [i for i, e in enumerate(group_scales) if any(abs(e - c) < 1e-9 for c in eps_checked)]
    return [i for i in present if rows[i]], [f"eps {float(group_scales[i]):g}: not a symmetry, cannot be tested"
                                             for i in present if not rows[i]]


# ----------------------------------------------------------------------------------------------
# Measurements and rules

def fig10_seeds(f, *names, **derived):
    """Per seed (PerSeed): the entries named in `names` and the `derived` ones ({argument: function of the entries}).
    The entries: group_scales [E]; symmetry_error [E, G] of the pi the ensemble uses; tolerance, as saved; symmetric
    [E, G] (error <= tolerance); original, the original's accuracy; each mode's vote accuracy [E, G] by its name."""
    tolerance, measured = f.symmetry_tolerance(), PerSeed()
    for s in range(len(f["seeds"])):
        seed = dict(group_scales=f["group_scale"], symmetry_error=f["symmetry_error_fitted"][s], tolerance=tolerance,
                    symmetric=f["symmetry_error_fitted"][s] <= tolerance, original=float(f["original_acc"][s]),
                    **{m: f[f"vote_acc_{m}"][s] for m in f.setting("modes")})
        measured.append(dict({n: seed[n] for n in names}, **{n: value(seed) for n, value in derived.items()}))
    return measured


def rule_symmetries(group_scales, symmetry_error, tolerance=SYMMETRY_TOLERANCE):
    """Every (num_g, eps) cell is a symmetry on the images pi was fitted on: its symmetry error (the largest relative
    gap between a moved network's logits and the original's there, for the pi the ensemble uses) is at most
    {tolerance:g}. Every row: reproduced; some rows: partly; none: not reproduced.

    group_scales: [E]; symmetry_error: [E, G] (inf or NaN: a member overflowed)."""
    error = np.nan_to_num(np.asarray(symmetry_error, dtype=float), nan=np.inf)
    rows = rows_all_within(error, tolerance)
    largest = ", ".join(f"eps {e:g}: {fmt(x)}" for e, x in zip(group_scales, error.max(axis=1)))
    return Result(REPRODUCED if rows.all() else PARTLY if rows.any() else NOT_REPRODUCED,
                  f"symmetries at {eps_set(group_scales, rows)}, not at {eps_set(group_scales, ~rows)}; largest error "
                  f"per row: {largest}",
                  symmetric_up_to(group_scales, rows))


def symmetric_up_to(group_scales, rows):
    """'a symmetry up to eps 10, not at 20': the largest group scale below which every row is a symmetry, and the
    smallest one that is not. group_scales: [E]; rows: [E] bool."""
    order = np.argsort(np.asarray(group_scales, dtype=float))
    broken = [float(group_scales[i]) for i in order if not rows[i]]
    below = [float(group_scales[i]) for i in order if rows[i] and (not broken or group_scales[i] < broken[0])]
    if not broken:
        return f"a symmetry at every eps (up to {float(np.max(group_scales)):g})"
    return (f"a symmetry up to eps {below[-1]:g}, not at {broken[0]:g}" if below else
            f"no symmetry from the smallest eps ({broken[0]:g}) on")


def rule_ensemble_margin(group_scales, group_minus_original, symmetric=None, margin=FIG10_MARGIN, small_eps=0.1,
                         smaller_eps=0.01):
    """In every row with eps <= {small_eps:g}, every cell is a symmetry and |group - original| <= {margin} (majority
    vote, every num_g): reproduced; only in the rows with eps <= {smaller_eps:g}: partly; otherwise not reproduced.
    A cell that is not a symmetry fails: it cannot support a claim about symmetry-moved networks.

    group_scales: [E]; group_minus_original: [E, G] vote accuracy - original's; symmetric: [E, G] bool or None."""
    group_scales, diff = np.asarray(group_scales, dtype=float), np.abs(np.asarray(group_minus_original, dtype=float))
    within = rows_all_within(diff, margin)
    symmetries = symmetric_rows(symmetric, len(group_scales))
    ok, small, smaller = within & symmetries, group_scales <= small_eps + 1e-12, group_scales <= smaller_eps + 1e-12
    verdict = (REPRODUCED if small.any() and ok[small].all() else PARTLY if smaller.any() and ok[smaller].all()
               else NOT_REPRODUCED)
    finite = np.isfinite(diff)  # an overflowing cell is NaN
    largest = np.where(finite.any(axis=1), np.where(finite, diff, -np.inf).max(axis=1), np.nan)
    rows = "max |diff| per eps: " + ", ".join(f"{e:g}: {fmt(d)}" for e, d in sorted(zip(group_scales, largest),
                                                                                  key=lambda t: -t[0]))
    text = (f"rows within {margin}: {eps_set(group_scales, within)}"
            + f"; not symmetries: {eps_set(group_scales, ~symmetries)}" * bool((~symmetries).any()) + f"; {rows}")
    deciding = largest[small & np.isfinite(largest)]
    return Result(verdict, text, f"within the margin and symmetries for {eps_set(group_scales, ok)}",
                  float(deciding.max()) if deciding.size else None,
                  f"largest |group - original| at eps <= {small_eps:g}")


def rule_group_beats_baselines(group_scales, group, baselines, symmetric=None, margin=FIG10_MARGIN,
                               eps_checked=EPS_CHECKED):
    """At each eps in {eps_checked}, group's vote accuracy averaged over num_g exceeds each baseline's by more than
    {margin} and is higher in most cells; all pairs: reproduced, some: partly, none: not reproduced. A row with a
    cell that is not a symmetry cannot be tested: its pairs count as not beating.

    group_scales: [E]; group, each of baselines ({name: array}): [E, G] vote accuracies; symmetric: [E, G] or None."""
    rows, untestable = checked_rows(group_scales, eps_checked, symmetric)
    group = np.asarray(group, dtype=float)
    pairs = {(float(group_scales[i]), name): group[i] - np.asarray(values, dtype=float)[i]
             for name, values in baselines.items() for i in rows}
    beats = [bool(np.nanmean(d) > margin and np.mean(d > 0) > 0.5) for d in pairs.values()]
    parts = [f"eps {e:g} vs {name}: {np.nanmean(d):+.3f}" for (e, name), d in pairs.items()]
    text = [f"{p} ({'beats' if b else 'does not beat'})" for p, b in zip(parts, beats)] + untestable
    return Result(combine([REPRODUCED if b else NOT_REPRODUCED for b in beats] + [NOT_REPRODUCED] * len(untestable)),
                  "; ".join(text) or "the grid has none of the checked eps", "; ".join(parts) or "not testable",
                  min((float(np.nanmean(d)) for d in pairs.values()), default=None), "smallest lead over a baseline")


def rule_group_vs_perm_interp(group_scales, group, perm_interp, symmetric=None, margin=FIG10_MARGIN,
                              eps_checked=EPS_CHECKED):
    """At each eps in {eps_checked}, the group ensemble is ahead of the interpolated permutation: its vote accuracy
    averaged over num_g is higher by more than {margin} (within {margin}: a tie). Ahead at both: reproduced; at one:
    partly; at neither: not reproduced. A row with a cell that is not a symmetry cannot be tested (not ahead).

    group_scales: [E]; group, perm_interp: [E, G] vote accuracies; symmetric: [E, G] bool (None: not measured)."""
    rows, untestable = checked_rows(group_scales, eps_checked, symmetric)
    diffs = {float(group_scales[i]): np.asarray(group, float)[i] - np.asarray(perm_interp, float)[i] for i in rows}
    means = [float(np.nanmean(d)) for d in diffs.values()]
    parts = [f"eps {e:g}: {m:+.3f}" for e, m in zip(diffs, means)]
    text = [f"{p} ({'group ahead' if m > margin else 'perm_interp ahead' if m < -margin else 'tie'}; group higher in "
            f"{int(np.sum(d > 0))} of {d.size} cells)" for p, m, d in zip(parts, means, diffs.values())] + untestable
    verdicts = [REPRODUCED if m > margin else NOT_REPRODUCED for m in means] + [NOT_REPRODUCED] * len(untestable)
    return Result(combine(verdicts),
                  f"group - perm_interp: {'; '.join(text) or 'the grid has none of the checked eps'}",
                  ", ".join(parts) or "not testable", min(means, default=None), "group - perm_interp (smaller row)")


def fig10_agreement(f):
    require(f, "heldout_agreement")
    return PerSeed(dict(group_scales=f["group_scale"], agreement=f["heldout_agreement"][s])
                   for s in range(len(f["seeds"])))


def rule_same_predictions(group_scales, agreement, threshold=AGREEMENT_THRESHOLD):
    """On held-out images (the evaluation images, never used for pi) every member makes the original's prediction:
    in every cell of a row the members agree with the original on at least {threshold:g} of the images (mean over
    the cell's members). Every row: reproduced; some rows: partly; none: not reproduced.

    group_scales: [E]; agreement: [E, G] the members' mean agreement per cell."""
    agreement = np.asarray(agreement, dtype=float)
    rows = rows_all_within(1 - agreement, 1 - threshold)
    lowest = ", ".join(f"eps {e:g}: {x:.3f}" for e, x in zip(group_scales, np.nanmin(agreement, axis=1)))
    return Result(REPRODUCED if rows.all() else PARTLY if rows.any() else NOT_REPRODUCED,
                  f"same predictions at {eps_set(group_scales, rows)}; lowest agreement per row: {lowest}",
                  f"same predictions at {eps_set(group_scales, rows)}", float(np.nanmin(agreement)), "lowest agreement")


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


# ----------------------------------------------------------------------------------------------
# Tables

def fig10_tables(figures):
    """One table over eps for both numerics ({name: Figure}): per numerics the symmetry error, the symmetric seeds and
    the group ensemble's vote accuracy - original; the baselines' from the numerics that decide (deciding_numerics)."""
    lines, columns, described = [], {}, []
    deciding = deciding_numerics(figures)
    for numerics, f in figures.items():
        group_scales, original, modes = f["group_scale"], f["original_acc"], f.setting("modes")
        error, noise_free = f["symmetry_error_fitted"], f["symmetry_error"]  # [S, E, G]
        symmetric = np.all(error <= f.symmetry_tolerance(), axis=2)  # [S, E]
        moved = {m: f[f"vote_acc_{m}"] - original[:, None, None] for m in modes}  # [S, E, G]
        diff = {m: moved[m].mean(axis=2) for m in modes}  # [S, E]
        flag = {m: np.asarray(f.data.get(f"overflow_{m}", np.zeros((1, len(group_scales), 1), bool))).any(axis=(0, 2))
                for m in modes}  # [E]
        short = SHORT_NAMES[numerics]
        columns[f"symmetry error, {short}"] = [fmt(e.max()) + ("" if np.allclose(e, n) else f" ({fmt(n.max())})")
                                               for e, n in zip(error.swapaxes(0, 1), noise_free.swapaxes(0, 1))]
        columns[f"symmetric, {short}"] = [f"{int(k)} of {len(original)}" for k in symmetric.sum(axis=0)]
        for m in modes if numerics == deciding else ("group",):
            columns[f"{m}, {short}" if m == "group" else m] = [spread(d) + "*" * bool(o)
                                                               for d, o in zip(diff[m].T, flag[m])]
        described.append(f"{numerics}: {f.settings.get('action_dtype', '?')} group action, fit noise "
                          f"{f.settings.get('fit_noise', '?')}")
        kept = np.all(symmetric, axis=0) & np.any(np.abs(diff["group"]) > FIG10_MARGIN, axis=0)
        if kept.any():
            losses = -diff["group"][:, kept]
            lines += [f"{numerics.capitalize()}: every cell at {eps_set(group_scales, kept)} is a symmetry on its "
                      f"fitting images in every seed, yet the group ensemble loses {fmt(losses.min())} to "
                      f"{fmt(losses.max())} there on the evaluation images: pi(g, H) is fitted to "
                      f"{f.setting('hidden')} images per member, and a symmetry on them is not one on other images.",
                      ""]
        if numerics == deciding:
            lines += [f"Rows within {FIG10_MARGIN} of the original in every cell ({numerics}, seed mean): "
                      + ", ".join(f"{m} {eps_set(group_scales, rows_all_within(moved[m].mean(axis=0), FIG10_MARGIN))}"
                                  for m in modes)
                      + " (staying close at small eps is not specific to the group action).", ""]
    if not figures:
        return lines
    f = figures[deciding]
    ref = {e: paper.FIG10_ROWS["group"].get(float(e)) for e in f["group_scale"]}
    columns["paper's code [C] group"] = [f"{np.mean(ref[e]):+.3f} [{min(ref[e]):+.3f}, {max(ref[e]):+.3f}]" if ref[e]
                                        else "within ±0.003" if e <= 0.01 else "-" for e in f["group_scale"]]
    head = [f"**Ensembles** ({'; '.join(described)}; {len(f['original_acc'])} seeds, one trained model each, original "
            f"accuracy {spread(f['original_acc'], '{:.3f}')}; num_g = {', '.join(str(int(g)) for g in f['num_g'])}). "
            "Symmetry error: largest over seeds and num_g, of the pi the ensembles use (noise-free fit's in brackets "
            f"where different); symmetric: seeds whose every cell of the row is at most {f.symmetry_tolerance():g} "
            "(the others are hatched in the plots and judged as no symmetry). Vote accuracy - original, mean over "
            f"num_g, mean ± std over seeds (baselines: {deciding}); *: overflowing (non-finite) members.", ""]
    lines = head + table(["eps", *columns], [[f"{e:g}", *(c[i] for c in columns.values())]
                                             for i, e in enumerate(f["group_scale"])]) + lines
    for f in list(figures.values())[:1]:
        if "deep_ensemble_acc" in f.data:  # the gain a real ensemble buys, beside the group ensemble's
            members = np.asarray(f["deep_member_acc"])
            lines += [f"Beyond the paper: a deep ensemble of {len(members)} CNNs trained like the originals from their "
                      f"own seeds ({', '.join(str(int(s)) for s in f['deep_ensemble_seeds'])}; mean probability) has "
                      f"accuracy {float(f['deep_ensemble_acc']):.3f}, its members {spread(members, '{:.3f}')}: a gain "
                      f"of {float(f['deep_ensemble_acc']) - members.mean():+.3f} over their mean and "
                      f"{float(f['deep_ensemble_acc']) - np.mean(f['original_acc']):+.3f} over the originals' mean "
                      "accuracy, the gain a real ensemble buys.", ""]
        data = f.settings.get("data", {})
        lines += [paper.FIG10_NOTE, "", data_text(data) + f" Evaluation: {data.get('eval_split', '?')} split, "
                  f"{data.get('eval_images', '?')} images.", ""]
    return lines


def fig10_agreement_tables(figures):
    """One table over eps: per numerics the members' held-out agreement (mean over num_g, mean ± std over seeds; the
    lowest cell); for the numerics that decide, the median relative logit gap and the saturated fraction."""
    done = {n: f for n, f in figures.items() if "heldout_agreement" in f.data}
    lines = [f"*Held-out agreement, {n}:* not run (the saved grid predates it)." for n in figures if n not in done]
    lines += [""] * bool(lines)
    if not done:
        return lines
    deciding = deciding_numerics(done)
    columns = {}
    for numerics, f in done.items():
        short, agreement = SHORT_NAMES[numerics], f["heldout_agreement"]  # [S, E, G]
        columns[f"agreement, {short}"] = [spread(a, "{:.3f}") for a in agreement.mean(axis=2).T]
        columns[f"lowest cell, {short}"] = [f"{a.min():.3f}" for a in agreement.swapaxes(0, 1)]
    f = done[deciding]
    columns[f"gap, {SHORT_NAMES[deciding]}"] = [
        f"{fmt(np.median(f['heldout_gap_p50'][:, i]))} ({fmt(np.median(f['heldout_gap_p10'][:, i]))} to "
        f"{fmt(np.median(f['heldout_gap_p90'][:, i]))})" for i in range(len(f["group_scale"]))]
    columns[f"saturated, {SHORT_NAMES[deciding]}"] = [f"{x.mean():.3f}" for x in f["heldout_saturated"].swapaxes(0, 1)]
    lines += ["**Held-out agreement** of each member with the original on the evaluation images (never used for pi), "
              "mean over num_g and seeds. Gap: max|z_member - z_original| / max|z_original| per member-image pair, "
              "median (10th to 90th percentile), medians over cells; saturated: pairs whose largest softmax "
              "probability rounds to 1.", ""]
    return lines + table(["eps", *columns], [[f"{e:g}", *(c[i] for c in columns.values())]
                                             for i, e in enumerate(f["group_scale"])])


def fit_size_tables(figures):
    lines = []
    for f in figures.values():
        original = f["original_acc"]
        rows = [[f"{s:g}", str(int(k)), spread(f["heldout_agreement"][:, i, j], "{:.3f}"),
                 spread(f["mean_acc"][:, i, j] - original), fmt(f["fit_error"][:, i, j].max())]
                for i, s in enumerate(f["scales"]) for j, k in enumerate(f["sizes"])]
        lines += [f"**Fit-size experiment** ({int(f['members'])} group elements, exact numerics, no fit noise; "
                  f"{len(f['seeds'])} seeds; original accuracy {spread(original, '{:.3f}')}): pi fitted by least "
                  "squares on k images per group element, measured on the evaluation images; mean ± std over seeds.",
                  ""]
        lines += table(["scale", "images per element", "agreement", "ensemble - original (mean prob.)",
                        "error on fitting images"], rows)
    return lines


# ----------------------------------------------------------------------------------------------
# The claims

SECTIONS = (
    Section("Fig. 10: ensembles from the nonlinear group action (CIFAR-10)", (
        Claim("Fig. 10", "group-moved networks are symmetries on their fitting images",
              "The premise: moved along the nonlinear, data-dependent group action, (U, V) -> (U pi(g, H), g V), the "
              "trained network computes the original's function on the h images H that pi (h x h, h the hidden "
              "width) was fitted on, in both numerics (paper: float32 with the paper's fit noise; exact: float64, no "
              "noise): a test of the numerics, since pi can match them exactly.", FIG10,
              lambda f: fig10_seeds(f, "group_scales", "symmetry_error", "tolerance"), rule_symmetries, brief=True),
        Claim("Fig. 10", "moved networks make the original's predictions on unseen images",
              "The premise's second half, what would make the ensembles ensembles of one function: on the evaluation "
              "images, which pi (fitted to h images, h x h unknowns) never saw, each moved network predicts the "
              "original's class.", FIG10, fig10_agreement, rule_same_predictions, over=exact_decides, brief=True),
        Claim("Fig. 10", f"group ensemble within {FIG10_MARGIN} of the original at small eps",
              "Ensembles built with the group action keep the original model's accuracy at small eps, where the moved "
              "copies are exact symmetries.", FIG10, lambda f: fig10_seeds(
                  f, "group_scales", "symmetric", group_minus_original=lambda c: c["group"] - c["original"]),
              rule_ensemble_margin,
              paper=lambda: {"": dict(group_scales=list(paper.FIG10_ROWS["group"]),
                                      group_minus_original=list(paper.FIG10_ROWS["group"].values()))},
              over=exact_decides),
        Claim("Fig. 10", f"group beats g^-1, random, shuffle at eps = {AT_LARGE_EPS}",
              f"At large eps ({AT_LARGE_EPS}) the group ensemble loses less accuracy than the baselines g^-1, random "
              "and shuffle.", FIG10, lambda f: fig10_seeds(
                  f, "group_scales", "group", "symmetric",
                  baselines=lambda c: {m: c[m] for m in ("g_inverse", "random", "shuffle")}),
              rule_group_beats_baselines, over=exact_decides),
        Claim("Fig. 10", f"group beats the interpolated permutation at eps = {AT_LARGE_EPS}",
              f"At large eps ({AT_LARGE_EPS}) the group ensemble also beats the interpolated permutation, the "
              "baseline that, like the group action, keeps the function at small eps (g^-1, random and shuffle "
              "destroy it by construction).", FIG10,
              lambda f: fig10_seeds(f, "group_scales", "group", "perm_interp", "symmetric"), rule_group_vs_perm_interp,
              paper=lambda: {"": dict(group_scales=list(paper.FIG10_ROWS["perm_interp"]), **{
                  m: [paper.FIG10_ROWS[m][e] for e in paper.FIG10_ROWS["perm_interp"]] for m in ("group", "perm_interp")
              })}, over=exact_decides),
        Claim("Fig. 10", "beyond the paper: fitted on more images, the action generalises",
              "Not in the paper: pi fitted by least squares on more images per group element than hidden units "
              "(the notebook's FIT_SIZES at its FIT_SIZE_SCALES; exact numerics) keeps the original's predictions on "
              "held-out images.", FIT_SIZE, fit_size_seeds, rule_action_generalises, brief=True),
    ), lambda get: fig10_tables(get(FIG10)) + fig10_agreement_tables(get(FIG10)) + fit_size_tables(get(FIT_SIZE))),
)
