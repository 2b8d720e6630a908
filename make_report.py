#!/usr/bin/env python3
"""Write DIR/REPORT.md: which of the paper's claims hold in the saved figure data.

usage: python make_report.py [--out DIR] [--cifar-dir DIR]

Reads only the .npz/.json files that the figure scripts and notebooks saved under DIR (default
figures/); nothing is trained or rerun. For every figure the report gives the paper's claim in
one sentence, the measured numbers, the numbers of the paper's code where they are known, and a
verdict (reproduced / partly / not reproduced) with the rule that produced it. Figures whose data
come from a --quick run are labelled as smoke-test values. Missing figures are listed with the
command that makes them. REPORT.md is written atomically (complete or absent).

The verdict rules are the small pure functions verdict_* below: numbers in, (verdict, explanation)
out, so the tests exercise each rule both ways.

Reference numbers (paper_notes.md, section 2) are tagged:
  [R] re-running the paper's own code with its seeds (CPU, float32): what a faithful port must give;
  [C] the saved outputs of the paper's notebooks (GPU, unseeded, one model per cell): qualitative.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_RUN = "not run"
ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid")

# ----------------------------------------------------------------------------------------------
# Numbers of the paper's code (paper_notes.md section 2; [R] re-run, [C] saved notebook outputs)

# Fig. 3 [R]: final Delta Q~ and final |Y - U sigma(V^T)|_F at lr 0.1 / 0.01 / 0.001 (float32).
PAPER_FIG3_FINAL_DRIFT = {"linear": (6.9e-4, 8.9e-5, 4.4e-4), "relu": (3.6e-4, 1.3e-4, -1.9e-4),
                          "tanh": (1.5e-5, 1.8e-6, 6.1e-6), "sigmoid": (-1.7e-6, 1.8e-7, 6.3e-5)}
PAPER_FIG3_FINAL_LOSS = {"linear": (3.0e-6, 3.2e-5, 4.3e-4), "relu": (8.7e-6, 9.0e-5, 1.1e-3),
                         "tanh": (3.4e-6, 3.8e-5, 5.0e-4), "sigmoid": (1.7e-5, 2.3e-4, 3.6e-3)}
PAPER_FIG3_FLOAT64_LINEAR = (6.9e-4, 7.0e-5, 7.0e-6)  # [R] float64 re-run, linear
# Figs. 4-5 [R]: mean, std, min, max of Q over 1000 initialisations, keyed by (activation, m, h, n).
PAPER_FIG45 = {("linear", 100, 100, 100): (0.06, 1.94, -5.06, 6.34),
               ("relu", 100, 100, 100): (50.04, 1.77, 45.2, 55.2),
               ("tanh", 100, 100, 100): (-10000.9, 1.96, -10006.1, -9994.6),
               ("sigmoid", 100, 100, 100): (-10000.2, 20.8, -10063.8, -9929.6),
               ("linear", 100, 200, 100): (-100.1, 2.23, -106.5, -92.4),
               ("linear", 200, 100, 100): (99.9, 2.30, 93.3, 106.8)}
# Fig. 6 [R]: steps to reach |.|_F < 1e-2 at init std 0.01 / 0.1 / 1.
PAPER_FIG6_STEPS = {"linear": (102_050, 59_577, 3_496), "relu": (223_077, 139_574, 8_790),
                    "tanh": (106_451, 63_679, 7_511), "sigmoid": (481_176, 323_606, 57_050)}
# Fig. 7 [R]: updates to reach MSE/|Y|_F < 1e-2 at scale 0.01 / 0.1 / 1 / 10 (None: never in 1e6).
# The paper's log counts entries from 1 (70 and 6,751 for the first two); these are applied updates.
PAPER_FIG7_STEPS = (69, 6_750, 674_771, None)
# Fig. 9 [R]: legend Q and largest Hessian eigenvalue at init std 0.001 / 0.3 / 0.6 / 0.9.
PAPER_FIG9 = {"linear": ((1.93e-4, 17.3, 69.3, 156), (17.7, 30.0, 107.5, 239.5)),
              "relu": ((3.25e-4, 29.2, 117, 263), (17.2, 22.3, 66.4, 146.7)),
              "tanh": ((-250, -235, -226, -418), (16.0, 25.1, 69.7, 117.8)),
              "sigmoid": ((-250, -243, -222, -200), (127.1, 127.7, 129.7, 133.6))}
# Fig. 10 [C]: heat-map rows (vote accuracy - original), num_g = 10 ... 120, per eps.
PAPER_FIG10_ROWS = {
    "group": {20: (-.372, -.318, -.43, -.413, -.413, -.38, -.46), 10: (-.352, -.366, -.285, -.233, -.325, -.247, -.201),
              1: (-.295, -.246, -.219, -.188, -.159, -.129, -.221), 0.1: (-.017, .005, -.007, 0, 0, .001, .003)},
    "perm_interp": {20: (-.344, -.245, -.104, -.068, -.042, -.214, -.075),
                    10: (-.297, -.224, -.277, -.21, -.171, -.186, -.144),
                    1: (-.148, -.042, -.065, -.127, -.165, -.051, -.179)},
}
PAPER_FIG10_TEXT = ("paper's code [C] (saved notebook outputs; a new model per cell, original accuracy "
                    "0.442-0.594): for eps <= 0.01 every method except shuffle is within 0.003 of the "
                    "original; at eps = 0.1 group, g^-1 and perm_interp stay within 0.017, random loses "
                    "up to 0.089; at eps >= 1 g^-1 loses 0.376-0.511, random 0.37-0.533, shuffle 0.29-0.544 "
                    "(at every eps); group beats g^-1, random and shuffle at eps = 1 and 10 but is worse "
                    "than perm_interp; at eps = 20 group is about equal to random and shuffle.")
# Fig. 11 [C]: printed accuracies (mean softmax) under the paper's protocol.
PAPER_FIG11 = {"FGSM": {"original": (.598, .210, .133, .066, .028), "group": (.538, .223, .158, .109, .083),
                        "g_inverse": (.089, .115, .101, .106, .100), "perm_interp": (.556, .225, .132, .078, .036)},
               "PGD": {"original": (.576, .006, .000, .000), "group": (.460, .038, .002, .026),
                       "g_inverse": (.111, .095, .110, .090), "perm_interp": (.557, .013, .000, .000)}}

# ----------------------------------------------------------------------------------------------
# Rules (thresholds are stated in the report next to every verdict)

FIG3_DRIFT = 1e-3          # reproduced if every run's max |dQ~| is below this (partly below 10x)
FIG3_PROPORTIONAL = 2.0    # float64: drift / lr may vary by at most this factor across learning rates
FIG45_STANDARD_ERRORS = 4  # |mean - E[Q]| within this many standard errors std/sqrt(samples)
FIG45_RELATIVE_SPREAD = 0.05  # std of Q below this fraction of the size of its two terms
FIG7_SAME_FUNCTION = 1e-4  # relative max difference of the initial outputs
FIG7_RATIO_FACTOR = 2.0    # steps ratio within this factor of the Q ratio
FIG9_AT_MINIMUM = 1e-6     # squared loss below which a run counts as at a global minimum
FIG10_MARGIN = 0.02        # 'within a small margin' and 'beats' thresholds (accuracy)
FIG11_MARGIN = 0.01        # 'better' / 'worse' thresholds (accuracy)
CHANCE = 0.1


def combine(verdicts):
    """One verdict from several: reproduced if all are, not reproduced if none is, else partly."""
    verdicts = list(verdicts)
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if not verdicts or all(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return PARTLY


def verdict_q_conserved(max_drifts, threshold=FIG3_DRIFT):
    """Fig. 3. max_drifts: {run label: max |dQ~| over the run} (inf or NaN for a diverged run)."""
    drifts = {k: float(v) if np.isfinite(v) else math.inf for k, v in max_drifts.items()}
    worst = max(drifts, key=drifts.get)
    text = f"largest max |dQ~| is {fmt(drifts[worst])} ({worst})"
    if all(d < threshold for d in drifts.values()):
        return REPRODUCED, f"every run stays below {fmt(threshold)}; {text}"
    if all(d < 10 * threshold for d in drifts.values()):
        above = [k for k, d in drifts.items() if d >= threshold]
        return PARTLY, f"{len(above)} run(s) reach {fmt(threshold)} but stay below {fmt(10 * threshold)}: {', '.join(above)}"
    above = [k for k, d in drifts.items() if d >= 10 * threshold]
    return NOT_REPRODUCED, f"{len(above)} run(s) drift by {fmt(10 * threshold)} or more: {', '.join(above)}; {text}"


def verdict_drift_proportional(lrs, drifts, factor=FIG3_PROPORTIONAL):
    """Fig. 3, float64: drift proportional to lr, i.e. drift/lr equal within `factor` across lrs."""
    ratios = np.asarray(drifts, dtype=float) / np.asarray(lrs, dtype=float)
    if not np.all(np.isfinite(ratios)) or np.any(ratios <= 0):
        return NOT_REPRODUCED, "a drift is zero or not finite"
    spread = float(ratios.max() / ratios.min())
    text = "drift/lr = " + ", ".join(f"{fmt(r)} (lr {lr:g})" for r, lr in zip(ratios, lrs)) + f"; max/min {spread:.3g}"
    return (REPRODUCED if spread <= factor else NOT_REPRODUCED), text


def verdict_q_distribution(samples, expected, term_scale, standard_errors=FIG45_STANDARD_ERRORS,
                           relative_spread=FIG45_RELATIVE_SPREAD):
    """Figs. 4-5, one histogram. samples: Q of each initialisation; expected: analytic E[Q];
    term_scale: expected size of Q's two terms added (the scale Q is a difference of)."""
    samples = np.asarray(samples, dtype=float)
    mean, std = float(samples.mean()), float(samples.std())
    standard_error = std / math.sqrt(len(samples))
    offset = abs(mean - expected) / max(standard_error, 1e-300)
    spread = std / abs(term_scale)
    mean_ok, narrow = offset <= standard_errors, spread <= relative_spread
    text = (f"mean {mean:.6g} vs E[Q] {expected:.6g}: {offset:.2g} standard errors "
            f"({'within' if mean_ok else 'more than'} {standard_errors}); std {fmt(std)} = {spread:.2%} of the "
            f"terms' size {fmt(term_scale)} ({'below' if narrow else 'above'} {relative_spread:.0%})")
    return (REPRODUCED if mean_ok and narrow else PARTLY if mean_ok or narrow else NOT_REPRODUCED), text


def expected_term_scale(activation, m, h, n):
    """E[u_term + v_term] for U ~ N(0, 1/h) (m x h), V ~ N(0, 1/n) (n x h), paper-code scaling:
    the size of the two terms whose difference is Q, against which its spread is measured."""
    var_v = 1.0 / n
    return {"linear": m + h, "relu": m + h / 2,
            "tanh": m + n * h * (1 + math.exp(2 * var_v)) / 2,
            "sigmoid": m / 2 + n * h * math.exp(var_v / 2)}[activation]


def steps_or_inf(steps):
    """-1 (never reached) -> inf."""
    return np.where(np.asarray(steps) < 0, np.inf, np.asarray(steps, dtype=float))


def verdict_faster_with_larger_Q(Q0, steps):
    """Fig. 6, one activation: steps to the loss threshold fall strictly as |Q0| grows (-1 = never)."""
    order = np.argsort(np.abs(np.asarray(Q0, dtype=float)))
    s = steps_or_inf(steps)[order]
    text = " -> ".join(f"|Q| {fmt(abs(Q0[i]))}: {fmt_steps(steps[i])}" for i in order)
    falling = bool(np.all(s[1:] < s[:-1]))  # inf < inf is False: two runs that never converge do not 'fall'
    return (REPRODUCED if falling else NOT_REPRODUCED), ("falls" if falling else "does not fall") + f" with |Q|: {text}"


def verdict_same_initial_function(initial_outputs, tolerance=FIG7_SAME_FUNCTION):
    """Fig. 7: every run's initial output equals the first run's (relative max difference)."""
    out = np.asarray(initial_outputs, dtype=float)
    difference = float(np.abs(out - out[0]).max() / max(np.abs(out[0]).max(), 1e-300))
    text = f"largest relative difference of the initial outputs {fmt(difference)} (rule: < {fmt(tolerance)})"
    return (REPRODUCED if difference < tolerance else NOT_REPRODUCED), text


def verdict_steps_proportional_to_Q(Q0, steps, total_steps, factor=FIG7_RATIO_FACTOR):
    """Fig. 7: among runs that reach the loss, steps ratio = Q ratio within `factor`; a run that
    never does must be one whose projected count (last converged run's steps x Q ratio) exceeds
    the step budget."""
    Q0 = np.asarray(Q0, dtype=float)
    steps = np.asarray(steps)
    order = np.argsort(Q0)
    done = [i for i in order if steps[i] >= 0]
    never = [i for i in order if steps[i] < 0]
    parts, checks = [], []
    for a, b in zip(done, done[1:]):
        ratio = (steps[b] / max(steps[a], 1)) / (Q0[b] / Q0[a])
        checks.append(1 / factor <= ratio <= factor)
        parts.append(f"Q x{Q0[b] / Q0[a]:.3g} -> steps x{steps[b] / max(steps[a], 1):.3g}")
    for i in never:
        if not done or Q0[i] < Q0[done[-1]]:
            checks.append(False)
            parts.append(f"Q {fmt(Q0[i])} never reaches the loss although a larger Q does")
            continue
        projected = steps[done[-1]] * Q0[i] / Q0[done[-1]]
        checks.append(projected > total_steps)
        parts.append(f"Q {fmt(Q0[i])} never reaches it in {total_steps:,} steps (projected {projected:,.0f}: "
                     f"{'consistent' if projected > total_steps else 'inconsistent'})")
    if len(done) < 2:
        return NOT_REPRODUCED, (f"only {len(done)} run(s) reach the loss, so the ratio cannot be measured; "
                                + "; ".join(parts))
    return combine([REPRODUCED if c else NOT_REPRODUCED for c in checks]), "; ".join(parts)


def verdict_hessian_rank(nonzero_counts, final_losses, expected_rank, at_minimum=FIG9_AT_MINIMUM):
    """Fig. 9: at a global minimum (squared loss < at_minimum) exactly expected_rank (= m n)
    eigenvalues are nonzero. Runs not at a minimum make it 'partly' at best."""
    counts, losses = np.asarray(nonzero_counts), np.asarray(final_losses, dtype=float)
    at_min = losses < at_minimum
    wrong = [int(c) for c, a in zip(counts, at_min) if a and c != expected_rank]
    text = (f"{int(at_min.sum())} of {len(counts)} runs at a global minimum (squared loss < {fmt(at_minimum)}); "
            f"nonzero counts {', '.join(str(int(c)) for c in counts)} (expected {expected_rank})")
    if wrong or not at_min.any():
        return NOT_REPRODUCED, text
    return (REPRODUCED if at_min.all() else PARTLY), text


def monotone(x, y):
    """'increasing', 'decreasing' or 'not monotone': y as x grows (x sorted ascending)."""
    order = np.argsort(np.asarray(x, dtype=float))
    d = np.diff(np.asarray(y, dtype=float)[order])
    return "increasing" if np.all(d > 0) else "decreasing" if np.all(d < 0) else "not monotone"


def verdict_sharpness_grows_with_Q(Q0, largest, init_std=None):
    """Fig. 9, one activation: the largest Hessian eigenvalue increases strictly with |Q0|."""
    trend = monotone(np.abs(Q0), largest)
    spread = float(np.max(largest) / np.min(largest))
    text = f"largest eigenvalue is {trend} in |Q| (max/min {spread:.3g})"
    if init_std is not None and trend != "increasing":
        text += f"; in the init scale it is {monotone(init_std, largest)}"
    return (REPRODUCED if trend == "increasing" else NOT_REPRODUCED), text


def verdict_ensemble_margin(eps, group_minus_original, margin=FIG10_MARGIN):
    """Fig. 10: the group ensemble stays within `margin` of the original at small eps.
    group_minus_original: [E, G]. Reproduced if every cell with eps <= 0.1 is within the margin
    (the paper's code: within 0.017), partly if only those with eps <= 0.01 are."""
    eps = np.asarray(eps, dtype=float)
    diff = np.asarray(group_minus_original, dtype=float)
    within = np.all(np.abs(np.nan_to_num(diff, nan=np.inf)) <= margin, axis=1)  # per eps row
    inside = sorted(float(e) for e, w in zip(eps, within) if w)
    rows = ", ".join(f"eps {e:g}: max |diff| {np.nanmax(np.abs(d)) if np.isfinite(d).any() else math.nan:.3g}"
                     for e, d in sorted(zip(eps, diff), key=lambda t: -t[0]))
    text = f"rows within {margin}: eps in {{{', '.join(f'{e:g}' for e in inside) or 'none'}}}; {rows}"
    small, smaller = eps <= 0.1 + 1e-12, eps <= 0.01 + 1e-12
    if small.any() and within[small].all():
        return REPRODUCED, text
    if smaller.any() and within[smaller].all():
        return PARTLY, text
    return NOT_REPRODUCED, text


def verdict_group_beats_baselines(eps, group, baselines, margin=FIG10_MARGIN, eps_checked=(1.0, 10.0)):
    """Fig. 10: at eps = 1 and 10 the group ensemble beats each of `baselines` ({name: [E, G]}),
    i.e. its accuracy averaged over num_g is higher by more than `margin` and it is higher in
    most cells. Reproduced if it beats all of them at every checked eps present, partly if some."""
    eps = np.asarray(eps, dtype=float)
    group = np.asarray(group, dtype=float)
    rows = [i for i, e in enumerate(eps) if any(abs(e - c) < 1e-9 for c in eps_checked)]
    if not rows:
        return NOT_REPRODUCED, f"the grid has none of eps = {', '.join(f'{e:g}' for e in eps_checked)}"
    results, parts = [], []
    for i in rows:
        for name, values in baselines.items():
            d = group[i] - np.asarray(values, dtype=float)[i]
            beats = bool(np.nanmean(d) > margin and np.mean(d > 0) > 0.5)
            results.append(REPRODUCED if beats else NOT_REPRODUCED)
            parts.append(f"eps {eps[i]:g} vs {name}: {np.nanmean(d):+.3f} ({'beats' if beats else 'does not beat'})")
    return combine(results), "; ".join(parts)


def verdict_group_more_robust(strengths, acc_original, acc_group, n_images=None, margin=FIG11_MARGIN,
                              chance=CHANCE):
    """Fig. 11, one attack and protocol: at attack strengths > 0 the group ensemble is better at
    some strength and worse at none. Better: accuracy higher by more than the threshold and itself
    above chance + margin (a gain between accuracies at or below chance, where a constant guess
    scores 0.1, is not robustness). Worse: lower by more than the threshold. The threshold is
    max(margin, 2 sqrt(p (1 - p) / n_images)), p the original's accuracy: two binomial standard
    errors of an accuracy measured on n_images images, so a gain of a few images is not counted."""
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
    if better.any() and not worse.any():
        return REPRODUCED, text
    return (PARTLY if better.any() else NOT_REPRODUCED), text


# ----------------------------------------------------------------------------------------------
# Formatting

def fmt(x):
    """Short number: 3 significant digits."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def fmt_steps(s):
    return "never" if s is None or s < 0 else f"{int(s):,}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


class DataError(Exception):
    """A saved file lacks something the report needs; the message says what."""


class Figure:
    """One figure's saved data: .data (arrays), .settings (json), with clear errors for missing keys."""

    def __init__(self, out_dir, name):
        self.name, self.stem = name, os.path.join(out_dir, name)
        with np.load(self.stem + ".npz", allow_pickle=False) as saved:
            self.data = {key: saved[key] for key in saved.files}
        with open(self.stem + ".json") as f:
            self.settings = json.load(f)

    def __getitem__(self, key):
        if key not in self.data:
            raise DataError(f"data file {self.name}.npz lacks key {key!r}")
        return self.data[key]

    @property
    def quick(self):
        return bool(self.settings.get("quick", False))


def load(out_dir, name):
    """Figure or None when its .npz/.json are absent."""
    stem = os.path.join(out_dir, name)
    if os.path.isfile(stem + ".npz") and os.path.isfile(stem + ".json"):
        return Figure(out_dir, name)
    return None


class Section:
    """A figure's part of the report: title, claims [(claim, verdict, rule, explanation)], lines."""

    def __init__(self, title, names, out_dir):
        self.title, self.names, self.out_dir = title, names, out_dir
        self.claims, self.lines, self.figures, self.quick = [], [], [], False
        self.variant_figures = []  # data that feed a claim but whose plots are not shown (float64)

    def load_all(self):
        self.figures = [f for f in (load(self.out_dir, n) for n in self.names) if f is not None]
        self.quick = any(f.quick for f in self.figures)
        return self.figures

    def claim(self, figure, short, text, verdict, rule, explanation, key=""):
        """figure: 'Fig. 3'; short: the claim in a few words (summary table); text: the claim in one
        sentence; key: the deciding numbers in a few words (summary table)."""
        self.claims.append({"figure": figure, "short": short, "text": text, "verdict": verdict,
                            "rule": rule, "explanation": explanation, "key": key})

    def render(self):
        out = [f"## {self.title}", ""]
        for f in self.figures:
            if os.path.isfile(f.stem + ".png"):
                out.append(f"![{f.name}]({f.name}.png)")
        out.append("")
        if self.quick:
            out += ["> **Smoke-test data** (`--quick`): the verdicts below are smoke-test values of the "
                    "rules on tiny settings, not a reproduction of the paper.", ""]
        for c in self.claims:
            out += [f"**Claim ({c['figure']}).** {c['text']}", "",
                    f"**Verdict: {label(c['verdict'], self.quick)}.** {c['explanation']}.", "",
                    f"*Rule:* {c['rule']}", ""]
        out += self.lines
        produced = describe_runs([f.settings for f in self.figures + self.variant_figures])
        if produced:
            out += ["*Data:* " + "; ".join(produced) + ".", ""]
        return out


def label(verdict, quick):
    return f"{verdict} (smoke test)" if quick and verdict != NOT_RUN else verdict


NOTEBOOKS = {"Fig. 10": "ensemble_CIFAR.ipynb", "Fig. 11": "adversarial_CIFAR.ipynb"}


def run_key(settings):
    """Which run a figure came from: its command line (a script writes several figures per run)."""
    return (settings.get("command") or settings.get("notebook") or NOTEBOOKS.get(settings.get("figure"))
            or settings.get("figure") or "?")


def describe_runs(all_settings):
    """One phrase per distinct run: command, device, dtype, settings, run time, date."""
    runs = {}
    for st in all_settings:
        runs.setdefault(run_key(st), []).append(st)
    phrases = []
    for key, group in runs.items():
        seconds = [run_seconds(st) for st in group if run_seconds(st) is not None]
        last = max(group, key=lambda st: st.get("created", ""))
        phrases.append(f"`{key}` ({last.get('device', '?')}, {last.get('dtype', 'float32')}, "
                       f"{'quick settings' if last.get('quick') else 'full settings'}, "
                       f"{fmt_seconds(max(seconds)) if seconds else 'run time unknown'}, {last.get('created', '?')})")
    return phrases


def run_seconds(settings):
    value = settings.get("run_seconds")
    if isinstance(value, dict):
        value = value.get("total")
    return float(value) if isinstance(value, (int, float)) else None


def fmt_seconds(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def not_run(section, what, command, claims):
    """Mark each claim (figure, short, text, rule) of a section without data as not run, and say
    which command makes the data."""
    for figure, short, text, rule in claims:
        section.claim(figure, short, text, NOT_RUN, rule, "no data")
    section.lines += [f"**{NOT_RUN}**: no saved data for {what} in `{section.out_dir}`. Make it with "
                      f"`{command}`.", ""]


# ----------------------------------------------------------------------------------------------
# Sections, one per paper figure

def fig3(out_dir):
    names = [f"Q-dynamics/elementwise_{a}_loss_Q" for a in ACTIVATIONS]
    s = Section("Fig. 3: Q is nearly conserved under gradient descent", names, out_dir)
    figures = s.load_all()
    short = "Q nearly conserved under GD, every lr (float32)"
    claim = ("Under gradient descent the conserved quantity of gradient flow stays nearly constant: "
             "its relative drift dQ~ = |Q_t|/N_0 - |Q_1|/N_0 stays below 1e-3 at every learning rate "
             "(0.1, 0.01, 0.001) and activation.")
    rule = (f"reproduced if every run's max |dQ~| < {fmt(FIG3_DRIFT)}; partly if all < {fmt(10 * FIG3_DRIFT)}; "
            "otherwise not reproduced (a diverged run counts as infinite drift).")
    if not figures:
        not_run(s, "Fig. 3", f"python Q_dynamics_elementwise.py --out {out_dir}", [("Fig. 3", short, claim, rule)])
        fig3_float64(s, out_dir)
        return s
    drifts, rows, roundoff = {}, [], []
    for f in figures:
        act = f.settings.get("activation", "?")
        lrs, dqt, loss, diverged = f["lr"], f["delta_Q_tilde"], f["loss"], f["diverged_at"]
        final = [last_finite(r) for r in dqt]
        paper_drift = PAPER_FIG3_FINAL_DRIFT.get(act, ())
        paper_loss = PAPER_FIG3_FINAL_LOSS.get(act, ())
        for r, lr in enumerate(lrs):
            drift = math.inf if diverged[r] >= 0 else float(np.nanmax(np.abs(dqt[r])))
            drifts[f"{act}, lr {lr:g}"] = drift
            rows.append([act, f"{lr:g}", fmt(drift), fmt(final[r]), fmt(item(paper_drift, r)),
                         fmt(last_finite(loss[r])), fmt(item(paper_loss, r))])
        by_lr = {round(float(lr), 12): abs(final[r]) for r, lr in enumerate(lrs)}
        if 1e-2 in by_lr and 1e-3 in by_lr and by_lr[1e-3] > by_lr[1e-2]:
            roundoff.append(f"{act} ({fmt(by_lr[1e-3])} vs {fmt(by_lr[1e-2])})")
    verdict, explanation = verdict_q_conserved(drifts)
    s.claim("Fig. 3", short, claim, verdict, rule, explanation,
            key=f"largest max abs dQ~ {fmt(max(drifts.values()))}")
    s.lines += table(["activation", "lr", "max abs dQ~", "final dQ~", "paper's code [R] final dQ~",
                      "final loss", "paper's code [R] final loss"], rows)
    missing = [a for a, n in zip(ACTIVATIONS, names) if not any(f.name == n for f in figures)]
    if missing:
        s.lines += [f"Not run for {', '.join(missing)}: `python Q_dynamics_elementwise.py --activations "
                    f"{','.join(missing)} --out {out_dir}`.", ""]
    s.lines += ["Loss is |Y - U sigma(V^T)|_F after the last step. "
                + (f"Float32 round-off: at lr = 0.001 the final |dQ~| is larger than at lr = 0.01 for "
                   f"{', '.join(roundoff)}, so in float32 the drift is not monotone in the learning rate at the "
                   "smallest rate; the paper's code shows the same (linear 4.4e-4 vs 8.9e-5 [R]). The float64 "
                   "run below isolates the discretisation effect." if roundoff else
                   "Here the final |dQ~| at lr = 0.001 is not larger than at lr = 0.01 for any activation (in the "
                   "paper's code it is, for linear: 4.4e-4 vs 8.9e-5 [R], a float32 round-off effect)."), ""]
    fig3_float64(s, out_dir)
    return s


def item(values, index):
    """values[index], or None when there is no such entry (a reference table shorter than the data)."""
    return values[index] if values is not None and index < len(values) else None


def last_finite(values):
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def fig3_float64(s, out_dir):
    short = "float64: drift of Q proportional to lr"
    claim = ("Without round-off (float64) the drift of Q is a pure discretisation effect: it is proportional to "
             "the learning rate.")
    rule = (f"per activation, max |dQ~| / lr may differ by at most a factor {FIG3_PROPORTIONAL:g} across the "
            "learning rates; reproduced if this holds for every activation, partly for some.")
    folder = os.path.join(out_dir, "float64")
    figures = [f for f in (load(folder, f"Q-dynamics/elementwise_{a}_loss_Q") for a in ACTIVATIONS) if f]
    if not figures:
        s.claim("Fig. 3", short, claim, NOT_RUN, rule, f"no float64 data in `{folder}`")
        s.lines += [f"Float64 variant **{NOT_RUN}**: make it with `python Q_dynamics_elementwise.py --dtype float64 "
                    f"--out {folder}` (part of `make figures`).", ""]
        return
    verdicts, rows, parts, spreads = [], [], [], []
    for f in figures:
        act = f.settings.get("activation", "?")
        if f.settings.get("dtype") not in (None, "float64"):
            parts.append(f"{act}: the file is {f.settings.get('dtype')}, not float64")
            verdicts.append(NOT_REPRODUCED)
            continue
        lrs = f["lr"]
        drift = [math.inf if f["diverged_at"][r] >= 0 else float(np.nanmax(np.abs(f["delta_Q_tilde"][r])))
                 for r in range(len(lrs))]
        v, text = verdict_drift_proportional(lrs, drift)
        verdicts.append(v)
        parts.append(f"{act}: {v} ({text})")
        ratios = np.asarray(drift) / np.asarray(lrs)
        spreads.append(f"{act} {ratios.max() / ratios.min():.3g}")
        paper = PAPER_FIG3_FLOAT64_LINEAR if act == "linear" else ()
        rows += [[act, f"{lr:g}", fmt(d), fmt(d / lr), fmt(item(paper, r))] for r, (lr, d) in enumerate(zip(lrs, drift))]
        s.quick = s.quick or f.quick
    s.claim("Fig. 3", short, claim, combine(verdicts), rule, "; ".join(parts),
            key="max/min of drift/lr: " + ", ".join(spreads))
    s.lines += [f"Float64 runs (`{folder}`):", ""]
    s.lines += table(["activation", "lr", "max abs dQ~", "max abs dQ~ / lr", "paper's code [R] float64 final dQ~"], rows)
    s.variant_figures += figures


def fig45(out_dir):
    fig4 = [f"Q-distribution/{a}_mhn_100_100_100" for a in ACTIVATIONS]
    fig5 = ["Q-distribution/linear_mhn_100_200_100", "Q-distribution/linear_mhn_200_100_100"]
    s = Section("Figs. 4-5: Q is sharply concentrated at initialisation", fig4 + fig5, out_dir)
    figures = s.load_all()
    claims = {
        "Fig. 4": ("Q concentrated at init around its analytic mean",
                   "With the common initialisation (U ~ N(0, 1/h), V ~ N(0, 1/n)), Q is sharply concentrated "
                   "around its analytic mean for every activation, so gradient flow from such an initialisation "
                   "reaches only a small part of the minimum."),
        "Fig. 5": ("centre of Q set by the layer sizes (E[Q] = m - h)",
                   "The centre of the Q distribution is set by the layer sizes: for the linear net E[Q] = m - h, "
                   "-100 for (m, h, n) = (100, 200, 100) and +100 for (200, 100, 100)."),
    }
    rule = (f"per histogram, the sample mean lies within {FIG45_STANDARD_ERRORS} standard errors (std/sqrt(samples)) "
            f"of the analytic E[Q], and the std is below {FIG45_RELATIVE_SPREAD:.0%} of the expected size of Q's two "
            "terms (e.g. Tr U^T U + Tr V^T V = m + h for linear); both for every histogram: reproduced; otherwise "
            "partly or not reproduced.")
    if not figures:
        not_run(s, "Figs. 4-5", f"python Q_distribution.py --out {out_dir}",
                [(fig, short, text, rule) for fig, (short, text) in claims.items()])
        return s
    rows, per_fig = [], {"Fig. 4": [], "Fig. 5": []}
    for f in figures:
        act = f.settings.get("activation", "?")
        m, h, n = (int(x) for x in f["shape_mhn"])
        Q = f["Q"]
        expected = float(f["expected_Q"])
        v, text = verdict_q_distribution(Q, expected, expected_term_scale(act, m, h, n))
        per_fig["Fig. 4" if f.name in fig4 else "Fig. 5"].append(
            (f"{act} {m}x{h}x{n}", v, text, f"{act} {m}x{h}x{n}: {Q.mean():.4g} ± {Q.std():.3g} (E {expected:.4g})"))
        paper = PAPER_FIG45.get((act, m, h, n))
        rows.append([act, f"{m}, {h}, {n}", len(Q), f"{Q.mean():.6g} ± {Q.std():.3g}",
                     f"[{Q.min():.6g}, {Q.max():.6g}]", f"{expected:.6g}",
                     f"{paper[0]:g} ± {paper[1]:g} [{paper[2]:g}, {paper[3]:g}]" if paper else "-"])
    for fig, (short, text) in claims.items():
        results = per_fig[fig]
        if not results:
            s.claim(fig, short, text, NOT_RUN, rule, "no data")
            continue
        s.claim(fig, short, text, combine(v for _, v, _, _ in results), rule,
                "; ".join(f"{name}: {v} ({t})" for name, v, t, _ in results),
                key="; ".join(k for _, _, _, k in results if fig == "Fig. 5" or k.startswith("linear")))
    s.lines += table(["activation", "m, h, n", "samples", "mean ± std", "[min, max]", "analytic E[Q]",
                      "paper's code [R] (1000 samples)"], rows)
    missing = [n for n in fig4 + fig5 if not any(f.name == n for f in figures)]
    if missing:
        s.lines += [f"Not run: {', '.join(missing)} (`python Q_distribution.py --out {out_dir}`).", ""]
    return s


def fig6(out_dir):
    names = [f"Q-convergence/elementwise_{a}_convergence" for a in ACTIVATIONS]
    s = Section("Fig. 6: convergence speed depends on Q (elementwise activations)", names, out_dir)
    figures = s.load_all()
    short = "larger |Q| reaches a fixed loss in fewer steps"
    claim = ("At learning rate 1e-3 the initialisation's Q sets how fast gradient descent converges: for every "
             "activation, the run with larger |Q| (larger init scale) reaches a fixed loss in fewer steps.")
    rule = ("per activation, the steps to reach |Y - U sigma(V^T)|_F < 1e-2 fall strictly as |Q0| grows (a run "
            "that never reaches it counts as infinitely slow); reproduced if so for all activations, partly for some.")
    if not figures:
        not_run(s, "Fig. 6", f"python Q_convergence_elementwise.py --out {out_dir}", [("Fig. 6", short, claim, rule)])
        return s
    verdicts, parts, rows, agreement, keys = [], [], [], [], []
    for f in figures:
        act = f.settings.get("activation", "?")
        Q0, steps, std, loss = f["Q0"], f["steps_to_converge"], f["init_std"], f["loss"]
        v, text = verdict_faster_with_larger_Q(Q0, steps)
        verdicts.append(v)
        parts.append(f"{act}: {text}")
        keys.append(f"{act} " + " / ".join(fmt_steps(x) for x in steps))
        paper = PAPER_FIG6_STEPS.get(act, ())
        for r in range(len(Q0)):
            ref = item(paper, r)
            diff = (steps[r] / ref - 1) if ref and steps[r] >= 0 else None
            if diff is not None:
                agreement.append(abs(diff))
            rows.append([act, f"{std[r]:g}", fmt(Q0[r]), fmt(loss[r][0]), fmt_steps(steps[r]), fmt_steps(ref),
                         f"{diff:+.2%}" if diff is not None else "-", fmt(last_finite(loss[r]))])
    s.claim("Fig. 6", short, claim, combine(verdicts), rule, "; ".join(parts),
            key="steps (small to large init): " + "; ".join(keys))
    s.lines += table(["activation", "init std", "Q0", "initial loss", "steps to 1e-2", "paper's code [R]",
                      "difference", "final loss"], rows)
    if agreement:
        s.lines += [f"Agreement with the paper's code: largest step-count difference {max(agreement):.2%} over "
                    f"{len(agreement)} runs (the loss is recorded every step up to 10,000, then every 0.1 %).", ""]
    s.lines += ["Caveat: Q and the initial loss change together here (a larger init also has a larger initial "
                "loss), so this figure alone does not separate Q from the initial function; Fig. 7 does.", ""]
    return s


def fig7(out_dir):
    name = "Q-convergence/radial_zoomed_1e6"
    s = Section("Fig. 7: convergence time proportional to Q (radial activation)", [name], out_dir)
    figures = s.load_all()
    same = ("radial runs start from the same function",
            "The four radial runs (init scales 0.01, 0.1, 1, 10, aligned with the SVD of Y) compute the same "
            "initial function and differ only in Q.",
            f"relative max difference between the runs' initial outputs < {fmt(FIG7_SAME_FUNCTION)}.")
    prop = ("steps to converge proportional to Q (radial)",
            "For the radial activation the time to converge grows in proportion to Q: 100x more Q needs about "
            "100x more steps to reach a fixed loss.",
            f"for consecutive runs that reach MSE/|Y|_F < 1e-2, (steps ratio)/(Q ratio) lies within a factor "
            f"{FIG7_RATIO_FACTOR:g}; a run that never reaches it is consistent if the last converged run's steps times "
            "the Q ratio exceed the step budget; at least two runs must converge; all consistent: reproduced, "
            "some: partly.")
    if not figures:
        not_run(s, "Fig. 7", f"python Q_convergence_radial.py --out {out_dir}",
                [("Fig. 7", *claim) for claim in (same, prop)])
        return s
    f = figures[0]
    Q0, steps, loss, Q = f["Q0"], f["steps_to_converge"], f["loss"], f["Q"]
    total = int(f["steps"][-1])
    v, text = verdict_same_initial_function(f["initial_output"])
    s.claim("Fig. 7", same[0], same[1], v, same[2],
            text + f"; initial plotted loss {', '.join(fmt(l[0]) for l in loss)} (paper's code [R]: 0.135 for all four)",
            key=f"initial loss {', '.join(fmt(l[0]) for l in loss)}")
    v, text = verdict_steps_proportional_to_Q(Q0, steps, total)
    s.claim("Fig. 7", prop[0], prop[1], v, prop[2], text,
            key="steps " + " / ".join(fmt_steps(x) for x in steps) + f" (of {total:,}) for Q " + " / ".join(fmt(q) for q in Q0))
    rows = []
    for r in range(len(Q0)):
        drift = float(np.nanmax(np.abs(Q[r] - Q0[r])) / abs(Q0[r]))
        ref = "-" if r >= len(PAPER_FIG7_STEPS) else fmt_steps(PAPER_FIG7_STEPS[r])
        rows.append([fmt(Q0[r]), fmt_steps(steps[r]), ref, fmt(last_finite(loss[r])), fmt(drift)])
    s.lines += table(["Q0", f"steps to 1e-2 (of {total:,})", "paper's code [R] (of 1,000,000)",
                      "final loss (MSE/abs Y)", "max relative drift of Q"], rows)
    return s


def fig9(out_dir):
    names = [f"Q-hessian-eigenvalues/Q-sharpness_{a}_mnk_10_5_50" for a in ACTIVATIONS]
    s = Section("Fig. 9: Hessian spectrum at the minimum against Q", names, out_dir)
    figures = s.load_all()
    rank = ("m*n = 50 nonzero Hessian eigenvalues at the minimum",
            "At a global minimum the Hessian of |Y - U sigma(V^T)|^2 has exactly m*n = 50 nonzero eigenvalues "
            "(of 750): the minimum is flat in all other directions.",
            f"every run at a global minimum (squared loss < {fmt(FIG9_AT_MINIMUM)}) has exactly m*n eigenvalues > 1e-3; "
            "reproduced if this holds for every activation with all runs at a minimum; partly if some runs are not "
            "at a minimum (they are not checked) or some activation fails.")
    sharp = ("largest Hessian eigenvalue grows with |Q|",
             "Larger |Q| gives a sharper minimum: the largest Hessian eigenvalue grows with |Q|.",
             "per activation, the largest eigenvalue increases strictly with |Q0|; reproduced if so for all four "
             "activations, partly for some.")
    if not figures:
        not_run(s, "Fig. 9", f"python Q_hessian_eigenvalues.py --out {out_dir}",
                [("Fig. 9", *claim) for claim in (rank, sharp)])
        return s
    rank_v, rank_t, sharp_v, sharp_t, rows, trends = [], [], [], [], [], []
    for f in figures:
        act = f.settings.get("activation", "?")
        m, n = int(f.settings.get("m", 10)), int(f.settings.get("n", 5))
        Q0, largest, counts, final = f["Q0"], f["largest_eigenvalue"], f["nonzero_count"], f["final_loss"]
        v, t = verdict_hessian_rank(counts, final, m * n)
        rank_v.append(v)
        rank_t.append(f"{act}: {t}")
        v, t = verdict_sharpness_grows_with_Q(Q0, largest, f.data.get("init_std"))
        sharp_v.append(v)
        sharp_t.append(f"{act}: {t}")
        trends.append(f"{act} {monotone(np.abs(Q0), largest)}")
        paper_Q, paper_top = PAPER_FIG9.get(act, ((), ()))
        for r in range(len(Q0)):
            rows.append([act, f"{f['init_std'][r]:g}", fmt(Q0[r]), fmt(item(paper_Q, r)), f"{largest[r]:.4g}",
                         fmt(item(paper_top, r)), int(counts[r]), fmt(final[r])])
    all_counts = sorted({int(c) for f in figures for c in f["nonzero_count"]})
    s.claim("Fig. 9", rank[0], rank[1], combine(rank_v), rank[2], "; ".join(rank_t),
            key=f"nonzero counts {', '.join(map(str, all_counts))}")
    s.claim("Fig. 9", sharp[0], sharp[1], combine(sharp_v), sharp[2], "; ".join(sharp_t),
            key="in |Q|: " + ", ".join(trends))
    s.lines += table(["activation", "init std", "Q0", "paper's code [R] Q", "largest eigenvalue",
                      "paper's code [R]", "eigenvalues > 1e-3", "final squared loss"], rows)
    s.lines += ["In the paper's code [R] the sharpness grows with |Q| for linear and ReLU; for tanh Q is not "
                "monotone in the init scale (scale 0.9 has the most negative Q, -418) while the sharpness grows with "
                "the scale; for sigmoid all large eigenvalues lie within a few percent (127-134) and the sharpness "
                "grows slightly as Q rises towards 0, i.e. it falls with |Q|.", ""]
    return s


CIFAR_HELP = ("Provide CIFAR-10 with `make figures CIFAR_DIR=/path` where /path contains `cifar-10-batches-py/` "
              "(the official python release), or let the notebooks download it into `data/` (the default "
              "CIFAR_DIR) when online.")


def cifar_not_run(s, notebook, cifar_dir):
    """Say that a CIFAR figure is missing, why (when cifar_dir tells), and how to make it.
    Returns a few words for the summary table."""
    if cifar_dir is not None and os.path.isfile(os.path.join(cifar_dir, "cifar-10-batches-py", "data_batch_1")):
        s.lines += [f"**{NOT_RUN}**: no saved data for this figure in `{s.out_dir}`, although CIFAR-10 is present in "
                    f"`{cifar_dir}`: the notebook did not finish. Run `python run_notebook.py {notebook} --out "
                    f"{s.out_dir} --cifar-dir {cifar_dir}` to see its error.", ""]
        return "notebook failed (CIFAR-10 present)"
    why = (f"CIFAR-10 was not available: `{cifar_dir}` holds no `cifar-10-batches-py/`." if cifar_dir is not None
           else "CIFAR-10 was probably not available (offline and no data), or the notebook failed.")
    s.lines += [f"**{NOT_RUN}**: no saved data for this figure in `{s.out_dir}`. {why} {CIFAR_HELP} Then run "
                f"`python run_notebook.py {notebook} --out {s.out_dir} --cifar-dir /path` and `python make_report.py "
                f"--out {s.out_dir}` (or `make figures CIFAR_DIR=/path`, which does both).", ""]
    return "skipped: CIFAR-10 not available" if cifar_dir is not None else "skipped: no data (CIFAR-10 missing?)"


def describe_cifar_source(source, folder):
    kind = {"official": "the official CIFAR-10 release (torchvision's MD5 check passed)",
            "unverified": "a copy of CIFAR-10 that fails torchvision's MD5 check (for example the JPEG "
                          "re-encoding in ../shared/data, or a test fixture); accuracies can differ slightly from "
                          "those on the official files"}
    return f"CIFAR-10 data: {kind.get(source, repr(source))}; read from `{folder}`."


def fig10(out_dir, cifar_dir=None):
    name = "ensemble/cnn_cifar_leakyrelu2_main_acc"
    s = Section("Fig. 10: ensembles from the nonlinear group action (CIFAR-10)", [name], out_dir)
    figures = s.load_all()
    margin = (f"group ensemble within {FIG10_MARGIN} of the original at small eps",
              "Ensembles built with the nonlinear, data-dependent group action keep the original model's accuracy "
              "at small eps (the moved copies are near-exact symmetries of the network).",
              f"|group - original| <= {FIG10_MARGIN} (majority vote, every num_g) in every row with eps <= 0.1: "
              "reproduced; only in the rows with eps <= 0.01: partly; otherwise not reproduced.")
    beats = ("group beats g^-1, random, shuffle at eps = 1 and 10",
             "At large eps (1 and 10) the group ensemble loses less accuracy than the baselines g^-1, random and shuffle.",
             f"at eps = 1 and at eps = 10, group's vote accuracy averaged over num_g exceeds each baseline's by more "
             f"than {FIG10_MARGIN} and is higher in most cells; all pairs: reproduced, some: partly, none: not reproduced.")
    if not figures:
        why = cifar_not_run(s, "ensemble_CIFAR.ipynb", cifar_dir)
        for short, text, rule in (margin, beats):
            s.claim("Fig. 10", short, text, NOT_RUN, rule, why, key=why)
        return s
    f = figures[0]
    eps, num_g, original = f["eps"], f["num_g"], float(f["original_acc"])
    modes = [m for m in ("group", "perm_interp", "g_inverse", "random", "shuffle") if f"vote_acc_{m}" in f.data]
    diffs = {m: f[f"vote_acc_{m}"] - original for m in ["group"] + modes}
    v, text = verdict_ensemble_margin(eps, diffs["group"])
    inside = [e for e, d in zip(eps, diffs["group"]) if np.all(np.abs(np.nan_to_num(d, nan=np.inf)) <= FIG10_MARGIN)]
    others = []
    for m in modes[1:] if modes[:1] == ["group"] else modes:
        rows_in = [e for e, d in zip(eps, diffs[m]) if np.all(np.abs(np.nan_to_num(d, nan=np.inf)) <= FIG10_MARGIN)]
        others.append(f"{m} {{{', '.join(f'{e:g}' for e in sorted(rows_in)) or 'none'}}}")
    if others:
        text += ("; for context, the baselines within the same margin: " + ", ".join(others)
                 + " (staying close at small eps is not specific to the group action)")
    s.claim("Fig. 10", margin[0], margin[1], v, margin[2], text,
            key=f"within the margin for eps in {{{', '.join(f'{e:g}' for e in sorted(inside)) or 'none'}}}")
    baselines = {m: f[f"vote_acc_{m}"] for m in ("g_inverse", "random", "shuffle") if m in modes}
    v, text = verdict_group_beats_baselines(eps, f["vote_acc_group"], baselines)
    big = [i for i, e in enumerate(eps) if e >= 1]
    if "perm_interp" in modes and big:
        text += ("; for comparison (no rule; in the paper's code perm_interp is ahead of group), group - perm_interp: "
                 + ", ".join(f"eps {eps[i]:g}: {np.nanmean(f['vote_acc_group'][i] - f['vote_acc_perm_interp'][i]):+.3f}"
                             for i in big))
    checked = [i for i, e in enumerate(eps) if any(abs(e - c) < 1e-9 for c in (1.0, 10.0))]
    s.claim("Fig. 10", beats[0], beats[1], v, beats[2], text,
            key="; ".join(f"eps {eps[i]:g}: group {np.nanmean(diffs['group'][i]):+.3f}, "
                          + ", ".join(f"{m} {np.nanmean(diffs[m][i]):+.3f}" for m in baselines) for i in checked))
    rows = []
    for i, e in enumerate(eps):
        cells = []
        for m in modes:
            overflow = f.data.get(f"overflow_{m}")
            flag = "*" if overflow is not None and np.asarray(overflow)[i].any() else ""
            cells.append(f"{np.nanmean(diffs[m][i]):+.3f} [{np.nanmin(diffs[m][i]):+.3f}, {np.nanmax(diffs[m][i]):+.3f}]{flag}")
        paper = PAPER_FIG10_ROWS["group"].get(float(e))
        cells.append(f"{np.mean(paper):+.3f} [{min(paper):+.3f}, {max(paper):+.3f}]" if paper
                     else ("within ±0.003" if e <= 0.01 else "-"))
        rows.append([f"{e:g}"] + cells)
    s.lines += [f"Original model: accuracy {original:.3f} (one trained model for the whole grid; num_g = "
                f"{', '.join(str(int(g)) for g in num_g)}). Each cell: ensemble vote accuracy - original, mean over "
                "num_g [min, max]; * = a cell with overflowing (non-finite) members.", ""]
    s.lines += table(["eps"] + modes + ["paper's code [C] group"], rows)
    s.lines += [PAPER_FIG10_TEXT[0].upper() + PAPER_FIG10_TEXT[1:], ""]
    data = f.settings.get("data", {})
    s.lines += [describe_cifar_source(data.get("source", "?"), data.get("folder", "?"))
                + f" Evaluation: {data.get('eval_split', '?')} split, {data.get('eval_images', '?')} images.", ""]
    return s


def fig11(out_dir, cifar_dir=None):
    names = [f"ensemble/cnn_cifar_leakyrelu_{m}_h16_g200_eps10" for m in ("FGSM", "PGD")]
    s = Section("Fig. 11: adversarial robustness of the group ensemble (CIFAR-10)", names, out_dir)
    figures = s.load_all()
    rule = (f"per attack, at every attack strength > 0 the group ensemble's vote accuracy is not lower than the "
            "original's by more than the threshold, and at some strength it is higher by more than the threshold "
            f"while itself above chance + {FIG11_MARGIN} = {CHANCE + FIG11_MARGIN:g} (a gain between accuracies at "
            f"or below chance is not counted); threshold = max({FIG11_MARGIN}, 2 sqrt(p(1-p)/n)), p the original's "
            "accuracy and n the number of evaluation images (two binomial standard errors). Reproduced if so; better "
            "somewhere but worse elsewhere: partly; never better: not reproduced. FGSM and PGD are combined (both "
            "reproduced: reproduced; one: partly).")
    claims = {"paper": ("group more robust than original (paper's protocol)",
                        "Under the paper's protocol (adversarial images computed on the single model and transferred; "
                        "data in [-0.5, 0.5] clamped to [0, 1]; each image attacked twice), the group ensemble is more "
                        "robust than the original model to FGSM and PGD."),
              "corrected": ("group more robust than original (corrected protocol)",
                            "Under the corrected protocol (valid pixel range, one attack per image, logits, official "
                            "test split), the group ensemble is more robust than the original model to FGSM and PGD.")}
    if not figures:
        why = cifar_not_run(s, "adversarial_CIFAR.ipynb", cifar_dir)
        for short, text in claims.values():
            s.claim("Fig. 11", short, text, NOT_RUN, rule, why, key=why)
        return s
    protocols = list(figures[0].settings.get("protocols", ["paper", "corrected"]))
    per_protocol = {p: [] for p in protocols}
    for f in figures:
        method = f.settings.get("attack", "FGSM" if "FGSM" in f.name else "PGD")
        strengths = f["strengths"]
        rows = []
        for p in protocols:
            original, group = f[f"acc_{p}_original"], f[f"acc_{p}_group"]
            n_images = f.settings.get("per_protocol", {}).get(p, {}).get("num_eval")
            v, t = verdict_group_more_robust(strengths, original, group, n_images)
            gain = ", ".join(f"{x:+.3f}" for x, st in zip(group - original, strengths) if st > 0)
            per_protocol[p].append((method, v, t, f"{method} {gain}"))
            models = [m for m in ("original", "group", "g_inverse", "perm_interp") if f"acc_{p}_{m}" in f.data]
            paper = PAPER_FIG11.get(method, {})
            for i, strength in enumerate(strengths):
                cells = []
                for m in models:
                    mean = f.data.get(f"mean_acc_{p}_{m}")
                    cells.append(f"{f[f'acc_{p}_{m}'][i]:.3f}" + (f" ({mean[i]:.3f})" if mean is not None else ""))
                ref = "-"
                if p == "paper" and "original" in paper and i < len(paper["original"]):
                    ref = f"{paper['original'][i]:.3f} / {paper['group'][i]:.3f}"
                rows.append([p, f"{strength:g}"] + cells + [ref])
        s.lines += [f"**{method}** (strength = {'iterations' if method == 'PGD' else 'epsilon'}). Accuracy: majority "
                    "vote, mean probability in brackets.", ""]
        s.lines += table(["protocol", "strength"] + [MODEL_NAMES[m] for m in models]
                         + ["paper's code [C] original / group (mean prob.)"], rows)
    for p in protocols:
        short, text = claims.get(p, (f"group more robust than original ({p} protocol)",
                                     f"Under the {p} protocol the group ensemble is more robust than the original model."))
        results = per_protocol[p]
        s.claim("Fig. 11", short, text, combine(v for _, v, _, _ in results), rule,
                "; ".join(f"{m}: {v} ({t})" for m, v, t, _ in results),
                key="group - original at strength > 0: " + "; ".join(k for _, _, _, k in results))
    paper_strengths = {"FGSM": [0, 0.003, 0.006, 0.009, 0.012], "PGD": [0, 1, 2, 3]}
    paper_verdicts = [(m, verdict_group_more_robust(paper_strengths[m], PAPER_FIG11[m]["original"],
                                                    PAPER_FIG11[m]["group"], 1000)) for m in paper_strengths]
    s.lines += ["For comparison, the same rule applied to the paper notebook's printed accuracies [C] (paper's "
                "protocol, 1000 images): " + "; ".join(f"{m}: {v} ({t})" for m, (v, t) in paper_verdicts) + ".", ""]
    notes = []
    for p in protocols:
        clamp = figures[0].data.get(f"clamp_only_acc_{p}")
        clean = figures[0].data.get(f"acc_{p}_original")
        if clamp is not None and clean is not None:
            notes.append(f"{p}: original clean accuracy {float(clean[0]):.3f}, on clean images clamped to [0, 1] "
                         f"(no attack) {float(clamp):.3f}")
    s.lines += [f"Chance is {CHANCE:g}. The attacks are computed on the single original model and transferred to "
                "the ensembles, as in the paper: this is robustness to transfer, not to a white-box attack on the "
                "ensemble." + (" " + "; ".join(notes) + "." if notes else ""), ""]
    st = figures[0].settings
    s.lines += [describe_cifar_source(st.get("data_source", "?"), st.get("data_dir", "?"))
                + f" {st.get('num_train_images', '?')} training and {st.get('num_test_images', '?')} test images.", ""]
    missing = [n for n in names if not any(f.name == n for f in figures)]
    if missing:
        s.lines += [f"Not run: {', '.join(missing)} (`python run_notebook.py adversarial_CIFAR.ipynb --out {out_dir}`).", ""]
    return s


MODEL_NAMES = {"original": "original", "group": "group", "g_inverse": "g^-1", "perm_interp": "perm_interp"}


# ----------------------------------------------------------------------------------------------
# The report

def run_time_summary(out_dir):
    """Total wall time of the runs behind DIR's figures and the machines they ran on.

    Each script writes its whole run time into every figure it saves (e.g. the four activations of
    Fig. 3), so every distinct command is counted once, with its largest run_seconds.
    """
    per_command, machines = {}, set()
    for root, _, files in os.walk(out_dir):
        for file in sorted(files):
            if not file.endswith(".json") or file.startswith("."):
                continue
            try:
                with open(os.path.join(root, file)) as f:
                    settings = json.load(f)
            except (OSError, ValueError):
                continue
            seconds = run_seconds(settings) if isinstance(settings, dict) else None
            if seconds is None:
                continue
            key = run_key(settings)
            per_command[key] = max(per_command.get(key, 0.0), seconds)
            machines.add(f"{settings.get('machine', '?')} ({settings.get('device', '?')})")
    return sum(per_command.values()), per_command, sorted(machines)


def build_report(out_dir, cifar_dir=None):
    """The text of REPORT.md for the figures saved under out_dir."""
    builders = [fig3, fig45, fig6, fig7, fig9, lambda d: fig10(d, cifar_dir), lambda d: fig11(d, cifar_dir)]
    titles = ["Fig. 3", "Figs. 4-5", "Fig. 6", "Fig. 7", "Fig. 9", "Fig. 10", "Fig. 11"]
    sections = []
    for title, build in zip(titles, builders):
        try:
            sections.append(build(out_dir))
        except Exception as error:  # a malformed file must not hide the other figures
            reason = str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
            s = Section(f"{title}: could not be checked", [], out_dir)
            s.claim(title, "all claims of this figure", f"{title} could not be checked.", NOT_REPRODUCED,
                    "the saved data must hold every key the rules need.", reason, key=reason)
            sections.append(s)
    total, per_command, machines = run_time_summary(out_dir)
    any_quick = [s.title.split(":")[0] for s in sections if s.quick]
    lines = ["# Reproduction report", "",
             f"Generated by `make_report.py` on {time.strftime('%Y-%m-%d %H:%M %Z')} from the data saved in "
             f"`{out_dir}` (nothing is retrained). Paper: Zhao, Ganev, Walters, Yu, Dehmamy, *Symmetries, Flat "
             "Minima, and the Conserved Quantities of Gradient Flow*, ICLR 2023.", ""]
    skipped = [s.title.split(":")[0] for s in sections if s.claims and all(c["verdict"] == NOT_RUN for c in s.claims)]
    if skipped:
        lines += [f"> **Not run**: {', '.join(skipped)} (no saved data; each section says why and how to make it).", ""]
    if any_quick:
        lines += [f"> **Smoke-test data**: {', '.join(any_quick)} come from `--quick` runs (tiny settings). Their "
                  "verdicts only show that the pipeline works; they are not a reproduction. Run `make figures` "
                  "for the paper's settings.", ""]
    lines += ["Each verdict comes from a fixed rule, stated with its claim, applied to the saved numbers: "
              "**reproduced** (the rule holds everywhere), **partly** (it holds for some activations, attacks or "
              "rows), **not reproduced** (it holds nowhere, or cannot be tested on this data), **not run** (no data). "
              "Reference numbers: **[R]** re-run of the paper's code with its seeds (CPU, float32: a faithful port "
              "should match them); **[C]** saved outputs of the paper's notebooks (GPU, unseeded, a new model per "
              "cell: qualitative only).", "",
              "## Summary", ""]
    rows = []
    for s in sections:
        for c in s.claims:
            rows.append([c["figure"], c["short"], f"**{label(c['verdict'], s.quick)}**", c["key"] or "-"])
    lines += table(["figure", "claim", "verdict", "deciding numbers"], rows)
    lines += [f"Total run time of the saved figures: **{fmt_seconds(total)}** ({len(per_command)} runs, each "
              f"counted once) on {', '.join(machines) or 'an unknown machine'}.", ""]
    if per_command:
        lines += table(["run", "wall time"], [[f"`{k}`", fmt_seconds(v)] for k, v in sorted(per_command.items())])
    for s in sections:
        lines += s.render()
    return "\n".join(lines).rstrip() + "\n"


def write_atomic(path, text):
    folder = os.path.dirname(path) or "."
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".md")
    try:
        with os.fdopen(handle, "w") as f:
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
    text = build_report(args.out, args.cifar_dir)
    path = os.path.join(args.out, "REPORT.md")
    try:
        write_atomic(path, text)
    except OSError as error:
        print(f"make_report.py: error: cannot write {path!r}: {error.strerror or error}", file=sys.stderr)
        return 2
    verdicts = [line for line in text.splitlines() if line.startswith("| Fig")]
    print(f"wrote {path} ({len(verdicts)} claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
