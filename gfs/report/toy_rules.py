"""What the claims of the toy figures (Figs. 3-9) share: the two conventions of Q, the trend of a value with |Q| over
seeds (rule_trend; its statistics: trend_stats.py), the same-function checks, the measurements' helpers and the
off-data table; each claim is in its figure's claims module. A measurement takes a saved figure and, for a claim
judged in both conventions, the convention ("paper" or "zero"). The thresholds' reasons: docs/report.md.
"""
import math

import numpy as np
from scipy.stats import kendalltau

from gfs.report.trend_stats import ALPHA, c_range, fold, log_spread, seed_columns, trend
from gfs.report.verdict_rules import DEPENDS, NOT_REPRODUCED, PARTLY, REPRODUCED, Result, fmt, runs, table


Q_CONVENTION = ("Gradient flow conserves 1/2 |U|^2 - sum F(V), F' = sigma/sigma', up to the integration constant of F. "
                "Two are used: the paper code's (its legends; Q lower by n k for tanh and sigmoid) and the zero "
                "convention, F(0) = 0. Differences of Q and the spread of the per-neuron Q_a are the same in both; the "
                "size |Q| is not, for tanh and sigmoid, so every claim about |Q| is judged in both. Sizes of Q (N_0) "
                "add the sizes of its terms, 1/2 |U|^2 + sum |F(V)|.")

# The two readings of Q every toy figure saves (no key suffix: the paper code's constant; _zero: F(0) = 0), in the
# report's order: models.Q_CONVENTIONS, not imported here (torch); a test keeps the two equal.
CONVENTIONS = ("paper", "zero")
MIN_EFFECT = 0.10   # the per-neuron predictors' (rule_predictors) smallest relative change of a value along a series
SEED_SPREADS = 2    # ... and it must exceed this many times the spread (std / mean) of the value over seeds
AT_MINIMUM = 1e-6   # squared loss below which a trained run is at a global minimum (Fig. 9's rules)
CONSTANT = 1e-4     # a statistic varies along a series if its range there exceeds this fraction of its size there (a
                    # sum held fixed still moves by the round-off of float32 weights, about 1e-7 of it)


def both_conventions(results):
    """{convention: Result} -> one Result: the common verdict if the two conventions agree (the zero convention's
    text, saying so), DEPENDS with both readings if they differ."""
    paper, zero = results["paper"], results["zero"]
    if paper.verdict == zero.verdict:
        return zero._replace(text=f"{zero.text} (both conventions)", p=None, lead="")  # one convention's p: not both
    named = (("paper's", paper), ("zero", zero))
    text = f"paper's convention: {paper.verdict} ({paper.text}); zero convention: {zero.verdict} ({zero.text})"
    deciding = ", ".join(f"{name} {r.verdict}" + f" {r.deciding}" * bool(r.deciding) for name, r in named)
    rows = tuple((f", {name}" + row[0], *row[1:]) for name, r in named for row in r.rows)
    return zero._replace(verdict=DEPENDS, text=text, deciding=deciding, rows=rows, p=None, lead="")


def conventions_result(over, results, combine_units):
    """{unit: {convention: Result}} -> one Result (over: the claim's combination of units; combine_units: make_report's,
    which joins the units' texts): per unit both_conventions; over the units, each convention's verdicts combined by
    `over`, DEPENDS where the two differ."""
    joined = combine_units(over, {u: both_conventions(r) for u, r in results.items()})
    verdicts = {c: over({u: r[c].verdict for u, r in results.items()}) for c in CONVENTIONS}
    if verdicts["paper"] == verdicts["zero"]:
        return joined._replace(verdict=verdicts["zero"])
    lead = f"paper's convention: {verdicts['paper']}, zero convention: {verdicts['zero']}"
    return joined._replace(verdict=DEPENDS, text=f"{lead}; {joined.text}", lead=lead)


# ----------------------------------------------------------------------------------------------
# Kendall's tau and the per-neuron predictors' effect and minimum (the trends' statistics: trend_stats.py)

def kendall(x, y):
    """(Kendall's tau, its exact two-sided p) of y against x; (NaN, 1) where either does not vary."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return math.nan, 1.0
    exact = len(x) <= 30 and len(np.unique(x)) == len(x) and len(np.unique(y)) == len(y)  # no ties
    result = kendalltau(x, y, method="exact" if exact else "auto")
    return float(result.statistic), float(result.pvalue)


def seed_spread(reference):
    """The spread of a value over seeds: std / mean per group (seed_columns), the median over groups; 0 for one seed."""
    spreads = [x.std() / abs(x.mean()) for x in seed_columns(reference) if len(x) > 1 and x.mean() != 0]
    return float(np.median(spreads)) if spreads else 0.0


def minimum_effect(reference, min_effect=MIN_EFFECT, spreads=SEED_SPREADS):
    """The smallest relative change that counts: max(min_effect, spreads x the spread of the value over seeds)."""
    return max(min_effect, spreads * seed_spread(reference))


def series_effect(x, y, budget=None):
    """log(y at the largest x / y at the smallest x) along one series; a value never reached (inf) counts as the
    budget (the least it can be), NaN without one."""
    y = np.asarray(y, dtype=float)
    if budget is not None:
        y = np.where(np.isinf(y), float(budget), y)
    order = np.argsort(np.asarray(x, dtype=float))
    return float(np.log(y[order[-1]] / y[order[0]]))


def rule_trend(Q, values, direction, reference, c=0.0, entries=0, named=None, budget=None, alpha=ALPHA):
    """Over seeds (the unit): a one-sided sign test p < {alpha:g}, a 95 % bootstrap interval of the median fold change
    that excludes no change, and that effect at least the minimum the seeds' spread resolves: reproduced (partly if a
    series was left out); otherwise not reproduced. *holds for c*: the integration constants (paper code's 1, zero
    convention's 0; scanned from -1 to 2, step 0.01) for which it holds.

    In full: docs/report.md, *Rules*.

    Q, values: [S, ..., L] (S seeds, L points a series), Q in the zero convention; the trend's |Q| is |Q - c x entries|
    (c per entry of V, entries: n k); named: {convention: c} to scan c (None: no scan); values: inf never reached (the
    budget), NaN a series left out; direction: +1 grows with |Q|, -1 falls; reference: the value over seeds [S, G]."""
    t = trend(np.abs(np.asarray(Q, dtype=float) - c * entries), values, direction, reference, budget, alpha)
    if t is None:
        return Result(NOT_REPRODUCED, "no series to test", "no series")
    claimed = "grows" if direction > 0 else "falls"
    going, seeds = int((t.votes > 0).sum()), len(t.votes)
    significant, excludes = t.p < alpha, t.low > 0
    if significant and excludes:  # the minimum effect decides: the verdict flips at the effect
        minima = f"{'up to' if t.holds else 'above'} {fold(t.effect)}"
        stands = f"stands for any minimum {minima}" + " (it would hold below)" * (not t.holds)
    else:
        why = "not significant" if not significant else "the interval includes no change"
        minima, stands = f"every ({why.replace('the interval', 'CI')})", f"stands at every minimum ({why})"
    verdict = (PARTLY if t.left_out else REPRODUCED) if t.holds else NOT_REPRODUCED  # a diverged run: partly at best
    deciding = f"{fold(t.effect)} ({fold(t.low)} to {fold(t.high)})"  # the seeds and c: in the claim's table
    row = [deciding,
           f"{going} of {seeds}" + (f" ({t.series} series" + f", {t.left_out} left out" * bool(t.left_out) + ")") * (
               t.series != seeds or bool(t.left_out)),  # one series a seed: the seeds say it
           f"{t.p:.2g}", f"{fold(t.needed)} ({log_spread(reference):.1%})", minima]
    text = (f"{fold(t.effect)} (95 % CI {fold(t.low)} to {fold(t.high)}); {claimed} with |Q| in {going} of {seeds} "
            f"seeds ({t.series} series), sign test p = {t.p:.2g} ({'not ' * (not significant)}significant); minimum "
            f"{fold(t.needed)} (seed spread {log_spread(reference):.1%} in log value); {stands}"
            + f"; {t.left_out} series left out (a diverged run or a minimum not reached)" * bool(t.left_out))
    short = "-"
    if named:
        scan, short = c_range(Q, values, direction, reference, entries, named, budget, alpha)
        text = f"{text}; integration constant: {scan}"
    return Result(verdict, text, deciding, math.exp(t.effect), "fold change", columns=TREND_COLUMNS,
                  rows=(("", verdict, *row, short),))


TREND_COLUMNS = ("fold change (95 % CI)", "with the claim, seeds", "sign test p", "minimum (log spread)",
                 "stands at minima", "holds for c")


def rule_same_initial_function(initial_outputs, float64=False, tolerance=1e-5, tolerance64=1e-10):
    """The runs' initial outputs differ by less than {tolerance} of the largest output for float32 weights (round-off
    about 1e-7), {tolerance64} for float64: passes.

    initial_outputs: [R, m, n], or [R, L, m, n] (compared along L, with the first of each run)."""
    out = np.asarray(initial_outputs, dtype=float)  # NaN: a diverged run's (not checked)
    largest = float(np.nanmax(np.abs(out - out[..., :1, :, :])) / max(np.nanmax(np.abs(out)), 1e-300))
    limit, dtype = (tolerance64, "float64") if float64 else (tolerance, "float32")
    text = f"largest relative difference of the initial outputs {fmt(largest)} ({dtype}: below {fmt(limit)} required)"
    return Result(REPRODUCED if largest < limit else NOT_REPRODUCED, text, fmt(largest), largest, "relative difference")


def rule_gap_below(gaps, float64=True, tolerance=1e-5, tolerance64=1e-10):
    """Every moved network's largest relative output gap to the original's on the training inputs is below
    {tolerance} for float32 weights (round-off about 1e-7) and {tolerance64} for float64: passes; otherwise fails.

    gaps: any shape; float64: whether the moved weights are float64."""
    gaps = np.asarray(gaps, dtype=float)
    top = float(np.nanmax(gaps)) if np.isfinite(gaps).any() else math.nan
    limit, dtype = (tolerance64, "float64") if float64 else (tolerance, "float32")
    text = f"largest relative gap on the training inputs {fmt(top)} ({dtype}: below {fmt(limit)} required)"
    return Result(REPRODUCED if top < limit else NOT_REPRODUCED, text, fmt(top), top, "relative gap")


# ----------------------------------------------------------------------------------------------
# Measurement helpers: a saved figure (and a convention) -> the rule's keyword arguments

def q_key(zero_key, convention):
    """The saved key of a quantity in a convention: 'Q0_zero' -> 'Q0' for the paper's ('sum_zero' -> 'sum_paper')."""
    if convention == "zero":
        return zero_key
    base = zero_key.removesuffix("_zero")
    return f"{base}_paper" if base in ("sum", "min_abs") else base  # the per-neuron files save both with a suffix


def as_steps(steps, diverged_at):
    """Steps to a loss as floats: never (-1) -> inf, a diverged run -> NaN."""
    steps = np.asarray(steps, dtype=float)
    return np.where(np.asarray(diverged_at) >= 0, np.nan, np.where(steps < 0, np.inf, steps))


def finite_or_nan(values):
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def at_minimum(values, final_loss):
    """values [S, R, ...] with NaN where the run of [S, R] did not reach a global minimum."""
    values, ok = np.asarray(values, dtype=float), np.asarray(final_loss, dtype=float) < AT_MINIMUM
    return np.where(ok.reshape(ok.shape + (1,) * (values.ndim - ok.ndim)), values, np.nan)


def trend_Q(f, zero_key, convention):
    """rule_trend's Q arguments from a saved figure: Q in the zero convention (f[zero_key]) and, for an activation with
    an integration constant (tanh, sigmoid), the convention's c, the entries of V (Q_paper = Q_zero - paper_constant x
    entries, models.conserved_Q) and, in the zero convention only (one scan a claim), the named constants to scan."""
    constant = f.setting("paper_constant")  # models.ACTIVATIONS[activation].paper_constant, saved with the figure
    if not constant:
        return dict(Q=f[zero_key])  # linear, ReLU: homogeneous, no integration constant
    entries = round(float(np.nanmedian((f[zero_key] - f[q_key(zero_key, "paper")]) / constant)))
    named = {"the paper code's": constant, "the zero convention's": 0.0} if convention == "zero" else None
    return dict(Q=f[zero_key], c=constant if convention == "paper" else 0.0, entries=entries, named=named)


def same_function(f):
    return runs(f, initial_outputs="initial_output", float64=f.settings.get("dtype") == "float64")


# ----------------------------------------------------------------------------------------------
# The checks section's table off the training inputs

def off_data_table(experiments):
    """The checks section's table of how much the moved networks' outputs change off the training inputs: a row per
    experiment ({experiment: {activation: Figure}}), per activation the 'median / largest' relative gap."""
    cells = {}
    for experiment, loaded in experiments.items():
        for unit, f in loaded.items():
            if "off_data_gap" in f.data:
                gaps = np.asarray(f["off_data_gap"], dtype=float)
                gaps = gaps[np.isfinite(gaps) & (gaps > 0)]  # the unmoved networks themselves have gap 0
                cells.setdefault(experiment, {})[unit] = (f"{fmt(np.median(gaps))} / {fmt(gaps.max())}" if gaps.size
                                                          else "-")
    if not cells:
        return []
    units = list(dict.fromkeys(u for by_unit in cells.values() for u in by_unit))
    rows = [[experiment] + [by_unit.get(u, "-") for u in units] for experiment, by_unit in cells.items()]
    return ["Moved networks' largest relative output change on random inputs x ~ N(0, I_n / n), median / largest "
            "over each experiment's:", ""] + table(["experiment", *units], rows)


