#!/usr/bin/env python3
"""Write DIR/REPORT.md: which of the paper's claims hold in the saved figure data.

usage: python make_report.py [--out DIR] [--cifar-dir DIR]

Reads only the .npz/.json files that the figure scripts and notebooks saved under DIR (default
figures/); nothing is retrained. The report is one table of claims, SECTIONS below. A claim names
the saved files it reads, a measurement (loaded file -> the keyword arguments of its rule), a rule
(a pure function: numbers -> Result) whose docstring is the rule printed in the report, and the
paper code's numbers (paper_numbers.py) in the rule's form, so the same rule is run on them too.
One loop, check(), loads, measures and judges every claim:
  - no saved data: "not run", with the command that makes it;
  - a file that cannot be read, is incomplete or lacks a key: "data error" naming the file and
    what is wrong, no verdict; the other claims still get theirs and the exit status is 1;
  - a diverged run is named as such and left out: the claim cannot be tested on it (partly at best);
  - --quick data: verdicts labelled as smoke-test values;
  - activations are found on disk, so one beyond the paper's four is reported too.

Adding a claim: a rule (its {keyword} defaults are filled into its docstring), a measurement and one
Claim(...) in SECTIONS. Taking Q (or anything) from another saved key: change the measurement's one
line that reads it. Several seeds: let the measurement return PerSeed([...]) (one dict of the rule's
arguments per seed, seed 0 first); apply() judges each seed and over_seeds() combines them
("holds in k of N seeds", with the spread of Result.value).
"""
import argparse
import glob
import inspect
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple, Optional

import numpy as np

import paper_numbers as paper

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_TESTED = "not tested"  # a unit (activation, attack) the rule has no reference for: left out of the verdict
NOT_RUN, DATA_ERROR = "not run", "data error"  # no saved data / unreadable data: never verdicts
FIG10_MARGIN, FIG11_MARGIN, CHANCE = 0.02, 0.01, 0.1


class Result(NamedTuple):
    """A rule's answer. deciding: the deciding numbers in a few words (summary table); value: the one
    number that decides, where there is one (its spread is reported over seeds)."""
    verdict: str
    text: str
    deciding: str = ""
    value: Optional[float] = None


class PerSeed(list):
    """A measurement over seeds: one dict of the rule's keyword arguments per seed, seed 0 first."""


def combine(verdicts):
    """Over the {units}: reproduced if the rule gives reproduced for each, not reproduced if for none, partly
    otherwise (one without a reference to test against is left out)."""
    tested = [v for v in verdicts if v != NOT_TESTED]
    if tested and all(v == REPRODUCED for v in tested):
        return REPRODUCED
    return NOT_REPRODUCED if all(v == NOT_REPRODUCED for v in tested) else PARTLY


def worst(verdicts):
    """Over the {units}: the worst of their verdicts."""
    order = (NOT_REPRODUCED, PARTLY, REPRODUCED)
    return min((v for v in verdicts if v != NOT_TESTED), key=order.index, default=NOT_REPRODUCED)


def over_seeds(results):
    """Over seeds: reproduced if the rule gives reproduced in every seed, not reproduced if in none, partly
    otherwise; says in how many seeds it holds and the spread of the deciding number."""
    k, values = sum(r.verdict == REPRODUCED for r in results), [r.value for r in results]
    spread = ""
    if None not in values:
        v = np.array(values, dtype=float)
        spread = f"deciding number {fmt(v.mean())} ± {fmt(v.std())} [{fmt(v.min())}, {fmt(v.max())}]"
    fails = [f"seed {i}: {r.verdict} ({r.text})" for i, r in enumerate(results) if r.verdict != REPRODUCED]
    text = "; ".join([f"holds in {k} of {len(results)} seeds"] + [spread] * bool(spread)
                     + [f"seed 0: {results[0].text}"] + fails[:3])
    return Result(combine([r.verdict for r in results]), text,
                  f"{k}/{len(results)} seeds" + (f", {spread}" if spread else ""),
                  None if None in values else float(np.mean(values)))


def without_diverged(rule, diverged_at=None, labels=None, **arguments):
    """A diverged run is named and left out: the claim cannot be tested on it, so the verdict is partly at best,
    and with fewer than two runs left it cannot be tested at all (not reproduced). Arguments with one entry per
    run are filtered; labels names the runs."""
    diverged = np.asarray(diverged_at if diverged_at is not None else [], dtype=int) >= 0
    if not diverged.any():
        return rule(**arguments)
    names = [f"{labels[i] if labels is not None else f'run {i}'} diverged at step {int(diverged_at[i]):,}"
             for i in np.flatnonzero(diverged)]
    if (~diverged).sum() < 2:
        return Result(NOT_REPRODUCED, "cannot be tested: " + "; ".join(names), f"{diverged.sum()} run(s) diverged")
    r = rule(**{k: np.asarray(v)[~diverged] if np.ndim(v) > 0 and len(v) == len(diverged) else v
                for k, v in arguments.items()})
    return Result(PARTLY if r.verdict == REPRODUCED else r.verdict, "; ".join([r.text] + names) + " (left out)",
                  f"{r.deciding} ({diverged.sum()} run(s) diverged)", r.value)


# ----------------------------------------------------------------------------------------------
# Rules: numbers in, Result out; diverged runs never reach them. The first docstring paragraph
# is the rule printed in the report ({keyword} defaults filled in); the second gives the shapes.

def rule_q_conserved(lrs, max_drift, threshold=1e-3):
    """Every run's max |dQ~| < {threshold}: reproduced; all below 10 x {threshold}: partly; otherwise not reproduced.

    lrs, max_drift: [R] per run."""
    drifts = {f"lr {lr:g}": float(d) if np.isfinite(d) else math.inf for lr, d in zip(lrs, max_drift)}
    top, above = max(drifts, key=drifts.get), [k for k, d in drifts.items() if d >= threshold]
    verdict = REPRODUCED if not above else PARTLY if drifts[top] < 10 * threshold else NOT_REPRODUCED
    return Result(verdict, f"largest max |dQ~| {fmt(drifts[top])} ({top})" + (
        f"; at or above {fmt(threshold)}: {', '.join(above)}" if above else ""), fmt(drifts[top]), drifts[top])


def rule_drift_proportional(lrs, max_drift, factor=2.0):
    """In float64, max |dQ~| / lr differs by at most a factor {factor:g} across the learning rates: reproduced;
    otherwise not reproduced.

    lrs, max_drift: [R] per run."""
    ratios = np.asarray(max_drift, dtype=float) / np.asarray(lrs, dtype=float)
    if not np.all(np.isfinite(ratios)) or np.any(ratios <= 0):
        return Result(NOT_REPRODUCED, "a drift is zero or not finite", "not testable")
    spread = float(ratios.max() / ratios.min())
    text = "drift/lr = " + ", ".join(f"{fmt(r)} (lr {lr:g})" for r, lr in zip(ratios, lrs)) + f"; max/min {spread:.3g}"
    return Result(REPRODUCED if spread <= factor else NOT_REPRODUCED, text, f"{spread:.3g}", spread)


def rule_q_distribution(samples, expected, term_scale, standard_errors=4, relative_spread=0.05):
    """The sample mean lies within {standard_errors} standard errors (std/sqrt(samples)) of the analytic E[Q], and
    the std is below {relative_spread:.0%} of the expected size of Q's two terms (e.g. Tr U^T U + Tr V^T V = m + h
    for linear): both: reproduced; one: partly; neither: not reproduced. Without an analytic E[Q] and term size
    (an activation added later): not tested.

    samples: [S] Q per initialisation; expected: E[Q] (NaN: unknown); term_scale: size of Q's two terms (None)."""
    samples = np.asarray(samples, dtype=float)
    mean, std = float(samples.mean()), float(samples.std())
    if term_scale is None or not np.isfinite(expected):
        return Result(NOT_TESTED, f"mean {mean:.6g} ± {fmt(std)}; no analytic E[Q] and term size",
                      f"{mean:.4g} ± {std:.3g} (not tested)")
    offset, spread = abs(mean - expected) / max(std / math.sqrt(len(samples)), 1e-300), std / abs(term_scale)
    mean_ok, narrow = offset <= standard_errors, spread <= relative_spread
    text = (f"mean {mean:.6g} vs E[Q] {expected:.6g}: {offset:.2g} standard errors "
            f"({'within' if mean_ok else 'more than'} {standard_errors}); std {fmt(std)} = {spread:.2%} of the "
            f"terms' size {fmt(term_scale)} ({'below' if narrow else 'above'} {relative_spread:.0%})")
    return Result(REPRODUCED if mean_ok and narrow else PARTLY if mean_ok or narrow else NOT_REPRODUCED, text,
                  f"{mean:.6g} ± {std:.3g} (E {expected:.6g})", offset)


def rule_faster_with_larger_Q(Q0, steps):
    """The steps to reach the loss threshold fall strictly as |Q0| grows (a run that never reaches it counts as
    infinitely slow): reproduced; otherwise not reproduced.

    Q0, steps: [R] per run (steps = -1: never reached)."""
    order = np.argsort(np.abs(np.asarray(Q0, dtype=float)))
    s = np.where(np.asarray(steps) < 0, np.inf, np.asarray(steps, dtype=float))[order]
    falling = bool(np.all(s[1:] < s[:-1]))  # inf < inf is False: two runs that never converge do not 'fall'
    text = " -> ".join(f"|Q| {fmt(abs(Q0[i]))}: {fmt_steps(steps[i])}" for i in order)
    return Result(REPRODUCED if falling else NOT_REPRODUCED, ("falls" if falling else "does not fall") + f" with |Q|: "
                  + text, " / ".join(fmt_steps(x) for x in steps))


def rule_same_initial_function(initial_outputs, tolerance=1e-4):
    """The relative max difference between the runs' initial outputs is below {tolerance}: reproduced.

    initial_outputs: [R, m, n]."""
    out = np.asarray(initial_outputs, dtype=float)
    difference = float(np.abs(out - out[0]).max() / max(np.abs(out[0]).max(), 1e-300))
    return Result(REPRODUCED if difference < tolerance else NOT_REPRODUCED,
                  f"largest relative difference of the initial outputs {fmt(difference)}", fmt(difference), difference)


def rule_steps_proportional_to_Q(Q0, steps, total_steps, factor=2.0):
    """For consecutive runs (by Q) that reach the loss threshold, (steps ratio) / (Q ratio) lies within a factor
    {factor:g}; a run that never reaches it is consistent if the last converged run's steps times the Q ratio exceed
    the step budget; at least two runs must converge. All consistent: reproduced; some: partly.

    Q0, steps: [R] per run (steps = -1: never reached); total_steps: the step budget."""
    Q0, steps = np.asarray(Q0, dtype=float), np.asarray(steps)
    order = np.argsort(Q0)
    done, parts, checks = [i for i in order if steps[i] >= 0], [], []
    for a, b in zip(done, done[1:]):
        checks.append(1 / factor <= (steps[b] / max(steps[a], 1)) / (Q0[b] / Q0[a]) <= factor)
        parts.append(f"Q x{Q0[b] / Q0[a]:.3g} -> steps x{steps[b] / max(steps[a], 1):.3g}")
    for i in (i for i in order if steps[i] < 0):
        projected = steps[done[-1]] * Q0[i] / Q0[done[-1]] if done and Q0[i] > Q0[done[-1]] else None
        checks.append(projected is not None and projected > total_steps)
        parts.append(f"Q {fmt(Q0[i])} never reaches the loss although a larger Q does" if projected is None else
                     f"Q {fmt(Q0[i])} never reaches it in {total_steps:,} steps (projected {projected:,.0f}: "
                     f"{'consistent' if checks[-1] else 'inconsistent'})")
    deciding = (" / ".join(fmt_steps(s) for s in steps) + f" steps (of {total_steps:,}) for Q "
                + " / ".join(fmt(q) for q in Q0))
    if len(done) < 2:
        return Result(NOT_REPRODUCED, "; ".join([f"only {len(done)} run(s) reach the loss, so the ratio cannot be "
                                                 "measured"] + parts), deciding)
    return Result(combine([REPRODUCED if c else NOT_REPRODUCED for c in checks]), "; ".join(parts), deciding)


def rule_hessian_rank(nonzero_counts, final_losses, expected_rank, at_minimum=1e-6):
    """Every run at a global minimum (squared loss < {at_minimum}) has exactly m*n nonzero Hessian eigenvalues
    (above the script's threshold). All runs at a minimum and right: reproduced; some runs not at a minimum (not
    checked): partly; a wrong count, or no run at a minimum: not reproduced.

    nonzero_counts, final_losses: [R] per run; expected_rank: m*n."""
    counts, at_min = np.asarray(nonzero_counts), np.asarray(final_losses, dtype=float) < at_minimum
    wrong = any(c != expected_rank for c, a in zip(counts, at_min) if a)
    text = (f"{int(at_min.sum())} of {len(counts)} runs at a global minimum (squared loss < {fmt(at_minimum)}); "
            f"nonzero counts {', '.join(str(int(c)) for c in counts)} (expected {expected_rank})")
    return Result(NOT_REPRODUCED if wrong or not at_min.any() else REPRODUCED if at_min.all() else PARTLY, text,
                  ", ".join(sorted({str(int(c)) for c in counts})))


def monotone(x, y):
    """'increasing', 'decreasing' or 'not monotone': y as x grows."""
    d = np.diff(np.asarray(y, dtype=float)[np.argsort(np.asarray(x, dtype=float))])
    return "increasing" if np.all(d > 0) else "decreasing" if np.all(d < 0) else "not monotone"


def rule_sharpness_grows_with_Q(Q0, largest, init_std=None):
    """The largest Hessian eigenvalue increases strictly with |Q0|: reproduced; otherwise not reproduced.

    Q0, largest, init_std: [R] per run."""
    trend = monotone(np.abs(Q0), largest)
    text = f"largest eigenvalue is {trend} in |Q| (max/min {np.max(largest) / np.min(largest):.3g})"
    if init_std is not None and trend != "increasing":
        text += f"; in the init scale it is {monotone(init_std, largest)}"
    return Result(REPRODUCED if trend == "increasing" else NOT_REPRODUCED, text, trend)


def rows_within(eps, diff, margin=FIG10_MARGIN):
    """'eps in {...}': the rows of diff [E, G] whose every cell is within margin (a NaN cell is not)."""
    within = np.all(np.abs(np.nan_to_num(np.asarray(diff, dtype=float), nan=np.inf)) <= margin, axis=1)
    inside = sorted(float(e) for e, w in zip(eps, within) if w)
    return "eps in {" + (", ".join(f"{e:g}" for e in inside) or "none") + "}"


def rule_ensemble_margin(eps, group_minus_original, margin=FIG10_MARGIN):
    """|group - original| <= {margin} (majority vote, every num_g) in every row with eps <= 0.1: reproduced; only in
    the rows with eps <= 0.01: partly; otherwise not reproduced.

    eps: [E]; group_minus_original: [E, G] vote accuracy minus the original's."""
    eps, diff = np.asarray(eps, dtype=float), np.abs(np.asarray(group_minus_original, dtype=float))
    ok = np.all(np.nan_to_num(diff, nan=np.inf) <= margin, axis=1)
    small, smaller = ok[eps <= 0.1 + 1e-12], ok[eps <= 0.01 + 1e-12]
    verdict = REPRODUCED if small.size and small.all() else PARTLY if smaller.size and smaller.all() else NOT_REPRODUCED
    rows = ", ".join(f"eps {e:g}: max |diff| {np.nanmax(d) if np.isfinite(d).any() else math.nan:.3g}"
                     for e, d in sorted(zip(eps, diff), key=lambda t: -t[0]))
    within = rows_within(eps, group_minus_original, margin)
    return Result(verdict, f"rows within {margin}: {within}; {rows}", f"within the margin for {within}")


def differences_at(eps, group, other, eps_checked):
    """{eps: group - other, [G]} at the checked eps present in the grid."""
    return {float(e): np.asarray(group, float)[i] - np.asarray(other, float)[i]
            for i, e in enumerate(eps) if any(abs(e - c) < 1e-9 for c in eps_checked)}


def rule_group_beats_baselines(eps, group, baselines, margin=FIG10_MARGIN, eps_checked=(1.0, 10.0)):
    """At eps = 1 and at eps = 10, group's vote accuracy averaged over num_g exceeds each baseline's by more than
    {margin} and is higher in most cells; all pairs: reproduced, some: partly, none: not reproduced.

    eps: [E]; group and each of baselines ({name: array}): [E, G] vote accuracies."""
    pairs = {(e, name): d for name, values in baselines.items()
             for e, d in differences_at(eps, group, values, eps_checked).items()}
    beats = [bool(np.nanmean(d) > margin and np.mean(d > 0) > 0.5) for d in pairs.values()]
    parts = [f"eps {e:g} vs {name}: {np.nanmean(d):+.3f}" for (e, name), d in pairs.items()]
    return Result(combine([REPRODUCED if b else NOT_REPRODUCED for b in beats]),
                  "; ".join(f"{p} ({'beats' if b else 'does not beat'})" for p, b in zip(parts, beats))
                  or "the grid has none of the checked eps", "; ".join(parts))


def rule_group_vs_perm_interp(eps, group, perm_interp, margin=FIG10_MARGIN, eps_checked=(1.0, 10.0)):
    """At eps = 1 and at eps = 10, the group ensemble is ahead of the interpolated permutation: its vote accuracy
    averaged over num_g is higher by more than {margin} (within {margin}: a tie). Ahead at both: reproduced; at one:
    partly; at neither: not reproduced.

    eps: [E]; group, perm_interp: [E, G] vote accuracies."""
    diffs = differences_at(eps, group, perm_interp, eps_checked)
    means = [float(np.nanmean(d)) for d in diffs.values()]
    parts = [f"eps {e:g}: {m:+.3f}" for e, m in zip(diffs, means)]
    text = "; ".join(f"{p} ({'group ahead' if m > margin else 'perm_interp ahead' if m < -margin else 'tie'}; group "
                     f"higher in {int(np.sum(d > 0))} of {d.size} cells)"
                     for p, m, d in zip(parts, means, diffs.values()))
    return Result(combine([REPRODUCED if m > margin else NOT_REPRODUCED for m in means]),
                  f"group - perm_interp: {text or 'the grid has none of the checked eps'}", ", ".join(parts))


def rule_group_more_robust(strengths, acc_original, acc_group, n_images=None, margin=FIG11_MARGIN, chance=CHANCE):
    """At every attack strength > 0 the group ensemble's vote accuracy is not lower than the original's by more than
    the threshold, and at some strength it is higher by more than the threshold while itself above chance + {margin}
    (a gain between accuracies at or below chance is not counted); threshold = max({margin}, 2 sqrt(p(1-p)/n)), p the
    original's accuracy and n the number of evaluation images (two binomial standard errors). Reproduced if so;
    better somewhere but worse elsewhere: partly; never better: not reproduced.

    strengths, acc_original, acc_group: [S]; n_images: images behind each accuracy."""
    strengths = np.asarray(strengths, dtype=float)
    original, group = np.asarray(acc_original, dtype=float), np.asarray(acc_group, dtype=float)
    d = np.round(group - original, 6)  # accuracies are counts / n: drop float32 noise
    threshold = np.full(len(d), margin)
    if n_images:
        threshold = np.maximum(margin, 2 * np.sqrt(original * (1 - original) / n_images))
    attacked = strengths > 0
    gain = attacked & (d > threshold)
    better, worse = gain & (group > chance + margin), attacked & (d < -threshold)
    text = ("group - original at strength " + ", ".join(f"{s:g}: {x:+.3f}" for s, x in zip(strengths, d))
            + f"; better at {int(better.sum())} and worse at {int(worse.sum())} of {int(attacked.sum())} attacked "
            f"strengths (threshold {', '.join(f'{x:.3f}' for x in threshold[attacked])}"
            + (f" for {n_images} images)" if n_images else ")"))
    if (gain & ~better).any():
        text += (f"; gains at strength {', '.join(f'{s:g}' for s in strengths[gain & ~better])} not counted: the "
                 f"ensemble is at or below chance there ({', '.join(f'{a:.3f}' for a in group[gain & ~better])})")
    verdict = REPRODUCED if better.any() and not worse.any() else PARTLY if better.any() else NOT_REPRODUCED
    return Result(verdict, text, ", ".join(f"{x:+.3f}" for x in d[attacked]))


# ----------------------------------------------------------------------------------------------
# Measurements that need more than one line (the others are in the table of claims)

def max_abs(values):
    """[R, T] -> [R]: largest |value| over the finite records (a diverged run's later records are NaN)."""
    values = np.asarray(values, dtype=float)
    return np.abs(np.where(np.isfinite(values), values, 0.0)).max(axis=-1)


def fig3_drift(f, dtype=None):
    if dtype and f.settings.get("dtype", dtype) != dtype:
        raise DataError(f"{f.name}.json: dtype is {f.settings['dtype']}, not {dtype}")
    return dict(runs(f, lrs="lr"), max_drift=max_abs(f["delta_Q_tilde"]))


def expected_term_scale(activation, m, h, n):
    """E[u_term + v_term] for U ~ N(0, 1/h) (m x h), V ~ N(0, 1/n) (n x h), paper-code scaling: the size of the two
    terms whose difference is Q, against which its spread is measured. None where not known."""
    v = 1.0 / n
    return {"linear": m + h, "relu": m + h / 2, "tanh": m + n * h * (1 + math.exp(2 * v)) / 2,
            "sigmoid": m / 2 + n * h * math.exp(v / 2)}.get(activation)


def fig45_samples(f):
    m, h, n = (int(x) for x in f["shape_mhn"])
    return dict(samples=f["Q"], expected=float(f.data.get("expected_Q", math.nan)),
                term_scale=expected_term_scale(f.setting("activation"), m, h, n))


def runs(f, **keys):
    """The rule's per-run arguments read from keys of f, with the runs' divergence steps and names."""
    return dict({arg: f[key] for arg, key in keys.items()}, diverged_at=f["diverged_at"], labels=f.data.get("labels"))


def fig11_accuracies(f, protocol):  # today's single-seed files; small, so that the new format can replace it
    return dict(strengths=f["strengths"], acc_original=f[f"acc_{protocol}_original"],
                acc_group=f[f"acc_{protocol}_group"],
                n_images=f.settings.get("per_protocol", {}).get(protocol, {}).get("num_eval"))


def legend_Qs(labels):
    return [paper.legend_Q(label) for label in labels]


# ----------------------------------------------------------------------------------------------
# Per-figure tables: the measured numbers beside the paper code's

def fmt(x):
    """Short number: 3 significant digits."""
    if x is None:
        return "-"
    x = float(x)
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else f"{x:.3g}"


def fmt_steps(s):
    return "never" if s is None or s < 0 else f"{int(s):,}"


def table(headers, rows):
    rows = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + rows + [""] if rows else []


def item(values, index):
    """values[index], or None where there is no such entry (no reference for this run)."""
    return values[index] if values is not None and index < len(values) else None


def last_finite(values):
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def mark(f, r):
    return f" (diverged at step {int(f['diverged_at'][r]):,})" if f["diverged_at"][r] >= 0 else ""


def per_run(get, files):
    """(activation, figure, run index, lr, max |dQ~|) for every run of Fig. 3's files."""
    return [(a, f, r, lr, d) for a, f in get(files).items()
            for r, (lr, d) in enumerate(zip(f["lr"], max_abs(f["delta_Q_tilde"])))]


def fig3_tables(get):
    ref, ref64 = paper.FIG3_FINAL_DRIFT["linear"], paper.FIG3_FLOAT64_FINAL_DRIFT
    float32 = table(["activation", "lr", "max abs dQ~", "final dQ~", "paper's code [R] final dQ~", "final loss",
                     "paper's code [R] final loss"],
                    [[a, f"{lr:g}", fmt(d) + mark(f, r), fmt(last_finite(f["delta_Q_tilde"][r])),
                      fmt(item(paper.FIG3_FINAL_DRIFT.get(a), r)), fmt(last_finite(f["loss"][r])),
                      fmt(item(paper.FIG3_FINAL_LOSS.get(a), r))] for a, f, r, lr, d in per_run(get, FIG3)])
    float64 = table(["activation", "lr", "max abs dQ~", "max abs dQ~ / lr", "paper's code [R] float64 final dQ~"],
                    [[a, f"{lr:g}", fmt(d) + mark(f, r), fmt(d / lr), fmt(item(ref64.get(a), r))]
                     for a, f, r, lr, d in per_run(get, FIG3_FLOAT64)])
    return float32 + (["Loss is |Y - U sigma(V^T)|_F after the last step. In float32, round-off can make the final "
                       "|dQ~| at lr = 0.001 larger than at lr = 0.01, as in the paper's code (linear: "
                       f"{fmt(ref[2])} vs {fmt(ref[1])} [R]); the float64 runs isolate the discretisation effect.", ""]
                      if float32 else []) + (["Float64 runs (folder `float64/`):", ""] + float64 if float64 else [])


def fig45_table(get):
    rows = []
    for f in [*get(FIG4).values(), *get(FIG5).values()]:
        a, (m, h, n), Q = f.setting("activation"), (int(x) for x in f["shape_mhn"]), f["Q"]
        ref = paper.FIG45_Q_STATS.get((a, (m, h, n)))
        rows.append([a, f"{m}, {h}, {n}", len(Q), f"{Q.mean():.6g} ± {Q.std():.3g}", f"[{Q.min():.6g}, {Q.max():.6g}]",
                     f"{float(f.data.get('expected_Q', math.nan)):.6g}",
                     f"{ref.mean:g} ± {ref.std:g} [{ref.min:g}, {ref.max:g}]" if ref else "-"])
    return table(["activation", "m, h, n", "samples", "mean ± std", "[min, max]", "analytic E[Q]",
                  "paper's code [R] (1000 samples)"], rows)


def fig6_table(get):
    rows = []
    for a, f in get(FIG6).items():
        for r, (std, Q0, steps) in enumerate(zip(f["init_std"], f["Q0"], f["steps_to_converge"])):
            ref = paper.FIG6_STEPS.get(a, {}).get(float(std))
            rows.append([a, f"{std:g}", fmt(Q0), fmt(f["loss"][r][0]), fmt_steps(steps) + mark(f, r), fmt_steps(ref),
                         f"{steps / ref - 1:+.2%}" if ref and steps >= 0 else "-", fmt(last_finite(f["loss"][r]))])
    return table(["activation", "init std", "Q0", "initial loss", "steps to 1e-2", "paper's code [R]", "difference",
                  "final loss"], rows) + ["Caveat: Q and the initial loss change together here (a larger init also has "
                                          "a larger initial loss), so this figure alone does not separate Q from the "
                                          "initial function; Fig. 7 does.", ""] * bool(rows)


def fig7_table(get):
    return [line for f in get(FIG7).values() for line in table(
        ["Q0", f"steps to 1e-2 (of {int(f['steps'][-1]):,})", f"paper's code [R] (of {paper.FIG7_STEP_BUDGET:,})",
         f"initial loss (paper's code [R]: {fmt(paper.FIG7_INITIAL_LOSS)})", "final loss (MSE/abs Y)",
         "max relative drift of Q"],
        [[fmt(Q0), fmt_steps(s) + mark(f, r), fmt_steps(item(paper.FIG7_STEPS, r)), fmt(f["loss"][r][0]),
          fmt(last_finite(f["loss"][r])), fmt(np.nanmax(np.abs(f["Q"][r] - Q0)) / abs(Q0))]
         for r, (Q0, s) in enumerate(zip(f["Q0"], f["steps_to_converge"]))])]


def fig9_table(get):
    rows = [[a, f"{std:g}", fmt(Q0), fmt(item(legend_Qs(paper.FIG9_LEGENDS.get(a, [])), r)), f"{top:.4g}" + mark(f, r),
             fmt(item(paper.FIG9_LARGEST_EIGENVALUE.get(a), r)), int(f["nonzero_count"][r]), fmt(f["final_loss"][r])]
            for a, f in get(FIG9).items()
            for r, (std, Q0, top) in enumerate(zip(f["init_std"], f["Q0"], f["largest_eigenvalue"]))]
    return table(["activation", "init std", "Q0", "paper's code [R] Q", "largest eigenvalue", "paper's code [R]",
                  "nonzero eigenvalues", "final squared loss"], rows) + [paper.FIG9_NOTE, ""] * bool(rows)


def describe_cifar_source(source, folder):
    kind = {"official": "the official CIFAR-10 release (torchvision's MD5 check passed)",
            "unverified": "a copy of CIFAR-10 that fails torchvision's MD5 check (for example a re-encoded copy, or a "
                          "test fixture); accuracies can differ slightly from those on the official files"}
    return (f"CIFAR-10 data: {kind.get(source, repr(source))}; read from a folder named "
            f"`{os.path.basename(os.path.normpath(str(folder)))}`.")


def fig10_table(get):
    lines = []
    for f in get(FIG10).values():
        eps, original, data = f["eps"], float(f["original_acc"]), f.settings.get("data", {})
        modes = [m for m in ("group", "perm_interp", "g_inverse", "random", "shuffle") if f"vote_acc_{m}" in f.data]
        diff = {m: f[f"vote_acc_{m}"] - original for m in modes}
        flag = {m: np.asarray(f.data.get(f"overflow_{m}", np.zeros_like(diff[m]))).any(axis=1) for m in modes}
        ref = {e: paper.FIG10_ROWS["group"].get(float(e)) for e in eps}
        rows = [[f"{e:g}"] + [f"{np.nanmean(diff[m][i]):+.3f} [{np.nanmin(diff[m][i]):+.3f}, "
                              f"{np.nanmax(diff[m][i]):+.3f}]" + "*" * bool(flag[m][i]) for m in modes]
                + [f"{np.mean(ref[e]):+.3f} [{min(ref[e]):+.3f}, {max(ref[e]):+.3f}]" if ref[e] else
                   "within ±0.003" if e <= 0.01 else "-"] for i, e in enumerate(eps)]
        lines += [f"Original model: accuracy {original:.3f} (one trained model for the whole grid; num_g = "
                  f"{', '.join(str(int(g)) for g in f['num_g'])}). Each cell: ensemble vote accuracy - original, mean "
                  "over num_g [min, max]; * = a cell with overflowing (non-finite) members.", ""]
        lines += table(["eps"] + modes + ["paper's code [C] group"], rows) + [
            f"Rows within {FIG10_MARGIN} of the original, for context: "
            + ", ".join(f"{m} {rows_within(eps, diff[m])}" for m in modes if m != "group")
            + " (staying close at small eps is not specific to the group action).", "", paper.FIG10_NOTE, "",
            describe_cifar_source(data.get("source", "?"), data.get("folder", "?"))
            + f" Evaluation: {data.get('eval_split', '?')} split, {data.get('eval_images', '?')} images.", ""]
    return lines


def accuracy(f, protocol, model, i):
    """'vote (mean probability)' accuracy of a model at the i-th attack strength."""
    mean = f.data.get(f"mean_acc_{protocol}_{model}")
    return f"{f[f'acc_{protocol}_{model}'][i]:.3f}" + (f" ({mean[i]:.3f})" if mean is not None else "")


def fig11_tables(get):
    lines, names = [], {"original": "original", "group": "group", "g_inverse": "g^-1", "perm_interp": "perm_interp"}
    for method, f in get(FIG11).items():
        protocols = [p for p in f.settings.get("protocols", ["paper", "corrected"]) if f"acc_{p}_original" in f.data]
        models, ref = [m for m in names if f"acc_{protocols[0]}_{m}" in f.data], paper.FIG11_ACCURACY.get(method, {})
        rows = [[p, f"{s:g}"] + [accuracy(f, p, m, i) for m in models]
                + [f"{ref['original'][i]:.3f} / {ref['group'][i]:.3f}"
                   if p == "paper" and i < len(ref.get("original", ())) else "-"]
                for p in protocols for i, s in enumerate(f["strengths"])]
        lines += [f"**{method}** (strength = {'iterations' if method == 'PGD' else 'epsilon'}). Accuracy: majority "
                  "vote, mean probability in brackets.", ""] + table(
            ["protocol", "strength"] + [names[m] for m in models] + ["paper's code [C] original / group (mean prob.)"],
            rows)
    for f in list(get(FIG11).values())[:1]:
        st = f.settings
        lines += [f"Chance is {CHANCE:g}. The attacks are computed on the single original model and transferred to the "
                  "ensembles, as in the paper: this is robustness to transfer, not to a white-box attack on the "
                  "ensemble. " + "".join(f"{p}: original clean accuracy {float(f[f'acc_{p}_original'][0]):.3f}, on "
                                         f"clean images clamped to [0, 1] (no attack) "
                                         f"{float(f.data[f'clamp_only_acc_{p}']):.3f}. " for p in ("paper", "corrected")
                                         if f"clamp_only_acc_{p}" in f.data and f"acc_{p}_original" in f.data), "",
                  describe_cifar_source(st.get("data_source", "?"), st.get("data_dir", "?")) + f" "
                  f"{st.get('num_train_images', '?')} training and {st.get('num_test_images', '?')} test images.", ""]
    return lines


# ----------------------------------------------------------------------------------------------
# The table of claims

@dataclass(frozen=True)
class Files:
    """The saved files a claim reads: DIR/<pattern with {} = unit>.npz and .json, one pair per unit."""
    pattern: str
    units: tuple              # the paper's: activations, histogram shapes or attacks ("" for a single file)
    make: str                 # the command that makes them ({out}: the report's folder)
    kind: str = "activations"
    discover: bool = False    # also every other activation with saved files
    plots: bool = True        # show their .png in the section
    notebook: str = ""        # a CIFAR notebook: the not-run note says whether CIFAR-10 was there


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
FIG6 = Files("Q-convergence/elementwise_{}_convergence", A, "python Q_convergence_elementwise.py --out {out}",
             discover=True)
FIG7 = Files("Q-convergence/radial_zoomed_1e6", ("",), "python Q_convergence_radial.py --out {out}")
FIG9 = Files("Q-hessian-eigenvalues/Q-sharpness_{}_mnk_10_5_50", A, "python Q_hessian_eigenvalues.py --out {out}",
             discover=True)
FIG10 = Files("ensemble/cnn_cifar_leakyrelu2_main_acc", ("",), "python run_notebook.py ensemble_CIFAR.ipynb --out "
              "{out}", notebook="ensemble_CIFAR.ipynb")
FIG11 = Files("ensemble/cnn_cifar_leakyrelu_{}_h16_g200_eps10", ("FGSM", "PGD"), "python run_notebook.py "
              "adversarial_CIFAR.ipynb --out {out}", "attacks", notebook="adversarial_CIFAR.ipynb")

SECTIONS = (
    Section("Fig. 3: Q is nearly conserved under gradient descent", (
        Claim("Fig. 3", "Q nearly conserved under GD, every lr (float32)",
              "Under gradient descent the conserved quantity of gradient flow stays nearly constant: its relative "
              "drift dQ~ = |Q_t|/N_0 - |Q_1|/N_0 stays below 1e-3 at every learning rate (0.1, 0.01, 0.001) and "
              "activation.",
              FIG3, fig3_drift, rule_q_conserved, over=worst),
        Claim("Fig. 3", "float64: drift of Q proportional to lr",
              "Without round-off (float64) the drift of Q is a pure discretisation effect: it is proportional to the "
              "learning rate.", FIG3_FLOAT64, partial(fig3_drift, dtype="float64"), rule_drift_proportional)),
            fig3_tables),
    Section("Figs. 4-5: Q is sharply concentrated at initialisation", (
        Claim("Fig. 4", "Q concentrated at init around its analytic mean",
              "With the common initialisation (U ~ N(0, 1/h), V ~ N(0, 1/n)), Q is sharply concentrated around its "
              "analytic mean for every activation, so gradient flow from such an initialisation reaches only a small "
              "part of the minimum.", FIG4, fig45_samples, rule_q_distribution),
        Claim("Fig. 5", "centre of Q set by the layer sizes (E[Q] = m - h)",
              "The centre of the Q distribution is set by the layer sizes: for the linear net E[Q] = m - h, -100 for "
              "(m, h, n) = (100, 200, 100) and +100 for (200, 100, 100).", FIG5, fig45_samples,
              rule_q_distribution)), fig45_table),
    Section("Fig. 6: convergence speed depends on Q (elementwise activations)", (
        Claim("Fig. 6", "larger |Q| reaches a fixed loss in fewer steps",
              "At learning rate 1e-3 the initialisation's Q sets how fast gradient descent converges: for every "
              "activation, the run with larger |Q| (larger init scale) reaches a fixed loss (|Y - U sigma(V^T)|_F < "
              "1e-2) in fewer steps.", FIG6, partial(runs, Q0="Q0", steps="steps_to_converge"),
              rule_faster_with_larger_Q,
              paper=lambda: {a: dict(Q0=legend_Qs(paper.FIG6_LEGENDS[a]), steps=list(paper.FIG6_STEPS[a].values()))
                             for a in paper.FIG6_STEPS}),), fig6_table),
    Section("Fig. 7: convergence time proportional to Q (radial activation)", (
        Claim("Fig. 7", "radial runs start from the same function",
              "The four radial runs (init scales 0.01, 0.1, 1, 10, aligned with the SVD of Y) compute the same initial "
              "function and differ only in Q.", FIG7, lambda f: dict(initial_outputs=f["initial_output"]),
              rule_same_initial_function),
        Claim("Fig. 7", "steps to converge proportional to Q (radial)",
              "For the radial activation the time to converge grows in proportion to Q: 100x more Q needs about 100x "
              "more steps to reach a fixed loss (MSE/|Y|_F < 1e-2).", FIG7,
              lambda f: dict(runs(f, Q0="Q0", steps="steps_to_converge"), total_steps=int(f["steps"][-1])),
              rule_steps_proportional_to_Q,
              paper=lambda: {"": dict(Q0=legend_Qs(paper.FIG7_LEGENDS), total_steps=paper.FIG7_STEP_BUDGET,
                                      steps=[-1 if s is None else s for s in paper.FIG7_STEPS])})), fig7_table),
    Section("Fig. 9: Hessian spectrum at the minimum against Q", (
        Claim("Fig. 9", "m*n = 50 nonzero Hessian eigenvalues at the minimum",
              "At a global minimum the Hessian of |Y - U sigma(V^T)|^2 has exactly m*n = 50 nonzero eigenvalues (of "
              "750): the minimum is flat in all other directions.", FIG9,
              lambda f: dict(runs(f, nonzero_counts="nonzero_count", final_losses="final_loss"),
                             expected_rank=int(f.setting("m")) * int(f.setting("n"))), rule_hessian_rank),
        Claim("Fig. 9", "largest Hessian eigenvalue grows with |Q|",
              "Larger |Q| gives a sharper minimum: the largest Hessian eigenvalue grows with |Q|.", FIG9,
              partial(runs, Q0="Q0", largest="largest_eigenvalue", init_std="init_std"), rule_sharpness_grows_with_Q,
              paper=lambda: {a: dict(Q0=legend_Qs(paper.FIG9_LEGENDS[a]), largest=paper.FIG9_LARGEST_EIGENVALUE[a])
                             for a in paper.FIG9_LEGENDS})), fig9_table),
    # Figs. 10-11 read today's single-seed files; their measurements are small, to be replaced with the new format.
    Section("Fig. 10: ensembles from the nonlinear group action (CIFAR-10)", (
        Claim("Fig. 10", f"group ensemble within {FIG10_MARGIN} of the original at small eps",
              "Ensembles built with the nonlinear, data-dependent group action keep the original model's accuracy at "
              "small eps (the moved copies are near-exact symmetries of the network).", FIG10,
              lambda f: dict(eps=f["eps"], group_minus_original=f["vote_acc_group"] - float(f["original_acc"])),
              rule_ensemble_margin,
              paper=lambda: {"": dict(eps=list(paper.FIG10_ROWS["group"]),
                                      group_minus_original=list(paper.FIG10_ROWS["group"].values()))}),
        Claim("Fig. 10", "group beats g^-1, random, shuffle at eps = 1 and 10",
              "At large eps (1 and 10) the group ensemble loses less accuracy than the baselines g^-1, random and "
              "shuffle.", FIG10,
              lambda f: dict(eps=f["eps"], group=f["vote_acc_group"], baselines={
                  m: f[f"vote_acc_{m}"] for m in ("g_inverse", "random", "shuffle") if f"vote_acc_{m}" in f.data}),
              rule_group_beats_baselines),
        Claim("Fig. 10", "group beats the interpolated permutation at eps = 1 and 10",
              "At large eps (1 and 10) the group ensemble also beats the interpolated permutation, the baseline that, "
              "like the group action, keeps the function at small eps (g^-1, random and shuffle destroy it by "
              "construction).", FIG10,
              lambda f: dict(eps=f["eps"], group=f["vote_acc_group"], perm_interp=f["vote_acc_perm_interp"]),
              rule_group_vs_perm_interp,
              paper=lambda: {"": dict(eps=list(paper.FIG10_ROWS["perm_interp"]), **{
                  m: [paper.FIG10_ROWS[m][e] for e in paper.FIG10_ROWS["perm_interp"]] for m in ("group", "perm_interp")
              })})
    ), fig10_table),
    Section("Fig. 11: adversarial robustness of the group ensemble (CIFAR-10)", (
        Claim("Fig. 11", "group more robust than original (paper's protocol)",
              "Under the paper's protocol (adversarial images computed on the single model and transferred; data in "
              "[-0.5, 0.5] clamped to [0, 1]; each image attacked twice), the group ensemble is more robust than the "
              "original model to FGSM and PGD.", FIG11, partial(fig11_accuracies, protocol="paper"),
              rule_group_more_robust,
              paper=lambda: {m: dict(strengths=paper.FIG11_STRENGTHS[m], acc_original=acc["original"],
                                     acc_group=acc["group"], n_images=paper.FIG11_IMAGES)
                             for m, acc in paper.FIG11_ACCURACY.items()}),
        Claim("Fig. 11", "group more robust than original (corrected protocol)",
              "Under the corrected protocol (valid pixel range, one attack per image, logits, official test split), "
              "the group ensemble is more robust than the original model to FGSM and PGD.", FIG11,
              partial(fig11_accuracies, protocol="corrected"), rule_group_more_robust)), fig11_tables),
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
        self.name, stem = name, os.path.join(out_dir, name)
        try:
            with np.load(stem + ".npz", allow_pickle=False) as saved:
                self.data = {key: saved[key] for key in saved.files}
        except Exception as error:  # a truncated zip, a corrupt member, not an .npz at all
            raise DataError(f"{name}.npz cannot be read ({one_line(error)})") from None
        try:
            with open(stem + ".json") as f:
                self.settings = json.load(f)
        except Exception as error:
            raise DataError(f"{name}.json cannot be read ({one_line(error)})") from None
        if not isinstance(self.settings, dict):
            raise DataError(f"{name}.json is not a JSON object")
        self.quick = bool(self.settings.get("quick", False))

    def __getitem__(self, key):
        if key not in self.data:
            raise DataError(f"{self.name}.npz lacks key {key!r}")
        return self.data[key]

    def setting(self, key):
        if key not in self.settings:
            raise DataError(f"{self.name}.json lacks setting {key!r}")
        return self.settings[key]


class Loader:
    """Each saved figure loaded once. load(files) -> {unit: Figure, DataError or None (absent)}."""

    def __init__(self, out_dir):
        self.out_dir, self.cache = out_dir, {}

    def units(self, files):
        """The paper's units, then (discover) every other activation that has a saved file, sorted."""
        head, _, tail = files.pattern.partition("{}")
        paths = glob.glob(os.path.join(glob.escape(self.out_dir), files.pattern.format("*") + ".*")) * files.discover
        found = [re.fullmatch(re.escape(head) + r"(.+)" + re.escape(tail) + r"\.(npz|json)",
                              os.path.relpath(p, self.out_dir).replace(os.sep, "/")) for p in paths]
        return list(files.units) + sorted({m.group(1) for m in found if m} - set(files.units))

    def one(self, name):
        if name not in self.cache:
            npz, js = (os.path.isfile(os.path.join(self.out_dir, name + ext)) for ext in (".npz", ".json"))
            try:
                self.cache[name] = (Figure(self.out_dir, name) if npz and js else None if not (npz or js) else
                                    DataError(f"{name}{'.json' if npz else '.npz'} is missing beside "
                                              f"{name}{'.npz' if npz else '.json'} (an incomplete save)"))
            except DataError as error:
                self.cache[name] = error
        return self.cache[name]

    def load(self, files):
        return {u: self.one(files.pattern.format(u)) for u in self.units(files)}

    def get(self, files):
        return {u: f for u, f in self.load(files).items() if isinstance(f, Figure)}


# ----------------------------------------------------------------------------------------------
# The loop: load, measure, judge; then render

def doc_text(function, **fields):
    """The first paragraph of a docstring on one line, {fields} and the keyword defaults filled in."""
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    return " ".join(inspect.getdoc(function).split("\n\n")[0].split()).format(**defaults, **fields)


def apply(rule, measurement):
    """One unit's Result: the rule on its measurement, or on each seed's, combined by over_seeds."""
    if isinstance(measurement, PerSeed):
        return over_seeds([without_diverged(rule, **seed) for seed in measurement])
    return without_diverged(rule, **measurement)


def combine_units(over, results):
    """{unit: Result} -> one Result: the verdicts combined by `over`, texts and deciding numbers joined."""
    if list(results) == [""]:
        return results[""]
    return Result(over([r.verdict for r in results.values()]),
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
            results[unit] = apply(claim.rule, claim.measure(f))
        except Exception as error:  # a wrong shape or type in the file: reported, never a verdict
            errors.append(str(error) if isinstance(error, DataError) else
                          f"{f.name}.npz cannot be checked ({one_line(error)})")
    if errors:
        return Checked(claim, DATA_ERROR, "; ".join(errors), errors[0])
    result, missing = combine_units(claim.over, results), ", ".join(u for u, f in loaded.items() if f is None)
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


def label(verdict, quick):
    return f"{verdict} (smoke test)" if quick and verdict not in (NOT_RUN, DATA_ERROR) else verdict


def render_claim(c):
    claim, several = c.claim, len(c.claim.files.units) > 1 or c.claim.files.discover
    rule = doc_text(claim.rule) + (" " + doc_text(claim.over, units=claim.files.kind)) * several
    head = f"**No verdict: {DATA_ERROR}.**" if c.verdict == DATA_ERROR else f"**Verdict: {label(c.verdict, c.quick)}.**"
    lines = [f"**Claim ({claim.figure}).** {claim.text}", "", f"{head} {c.text}.", "", f"*Rule:* {rule}", ""]
    if claim.paper is not None and c.verdict not in (NOT_RUN, DATA_ERROR):
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
    return (settings.get("command") or settings.get("notebook") or notebooks.get(settings.get("figure"))
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
        errors += [c.text for c in checked if c.verdict == DATA_ERROR]
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
              "rows), **not reproduced** (it holds nowhere, or cannot be tested on this data), **not run** (no data), "
              "**data error** (a file could not be read: no verdict). A diverged run is reported as diverged and left "
              "out: the claim cannot be tested on it, so the verdict is partly at best. Reference numbers: **[R]** "
              "re-run of the paper's code with its seeds (CPU, float32: a faithful port should match them); **[C]** "
              "saved outputs of the paper's notebooks (GPU, unseeded, a new model per cell: qualitative only).", "",
              "## Summary", ""]
    lines += table(["figure", "claim", "verdict", "deciding numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs])
    lines += [f"Total run time of the saved figures: **{fmt_seconds(total)}** ({len(per_command)} runs, each counted "
              f"once) on {', '.join(machines) or 'an unknown machine'}.", ""]
    lines += table(["run", "wall time"], [[f"`{k}`", fmt_seconds(v)] for k, v in sorted(per_command.items())])
    lines += [line for _, _, section_lines in done for line in section_lines]
    return "\n".join(lines).rstrip() + "\n", list(dict.fromkeys(errors))


def write_atomic(path, text):
    """Write text to path complete or not at all, with the usual permissions (0666 less the umask)."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
