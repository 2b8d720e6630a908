"""What the claims of the toy figures (Figs. 3-9) share: the two conventions of Q, the statistics of a trend of a
value with |Q| over seeds (rule_trend) and of per-neuron predictors (rule_predictors), the same-function checks, the
helpers their measurements use, and the table of the per-neuron orbits. Each claim itself, with its measurement,
figure-specific rule and table, is in its figure's claims module (claims_fig3.py ... claims_fig9.py).

A rule takes numbers (never files) and returns a verdict_rules.Result; the first paragraph of its docstring is the
rule as the report prints it ({keyword} defaults filled in). A measurement takes a saved figure (make_report.Figure:
f[key], f.setting(key)) and, for a claim judged in both conventions of Q, the convention ("paper" or "zero").

Contents: Q_CONVENTION (the report's note); the thresholds (ALPHA, MIN_EFFECT, SEED_SPREADS, AT_MINIMUM, CONSTANT;
their reasons in docs/report.md); both_conventions and conventions_result (a verdict per convention, or DEPENDS);
trend statistics (kendall, seed_spread, minimum_effect, series_effect, finite_series); rule_trend, predictor,
rule_predictors; the checks rule_same_initial_function and rule_gap_below; measurement helpers (q_key, as_steps,
finite_or_nan, at_minimum, same_function, per_neuron_stats); the per-neuron table and the off-data table.
"""
import math

import numpy as np
from scipy.stats import binomtest, kendalltau

from models import Q_CONVENTIONS
from gfs.report.verdict_rules import _tested, combine, runs
from gfs.report.verdict_rules import table
from gfs.report.verdict_rules import DEPENDS, NOT_REPRODUCED, PARTLY, REPRODUCED, Result, fmt


Q_CONVENTION = ("Gradient flow conserves 1/2 |U|^2 - sum F(V) with F' = sigma/sigma', up to a constant: the integration "
                "constant of F is a choice. Two are used: the paper code's (its legends; Q lower by n k for tanh and "
                "sigmoid, about -500 at a small initialisation) and the zero convention, F(0) = 0 (Q = 0 at U = 0, "
                "V = 0). Differences of Q (its drift, its change along an orbit) and the spread of the per-neuron Q_a "
                "are the same in both; the size |Q| is not, for tanh and sigmoid (linear and ReLU are homogeneous: "
                "both conventions agree). Every claim about |Q| is judged in both, and where the verdicts differ it is "
                "**depends on the convention**, with both readings. Sizes of Q (N_0) add the sizes of its terms, "
                "1/2 |U|^2 + sum |F(V)|, whose entries do not cancel.")

CONVENTIONS = Q_CONVENTIONS  # ("paper", "zero"): the report shows them in this order
ALPHA = 0.05        # significance level of a sign test over series (one-sided for a claimed direction)
MIN_EFFECT = 0.10   # smallest relative change of a value along a series that counts as an effect
SEED_SPREADS = 2    # ... and it must exceed this many times the spread (std / mean) of the value over seeds
AT_MINIMUM = 1e-6   # squared loss below which a trained run is at a global minimum (Fig. 9's rules)
CONSTANT = 1e-4     # a statistic varies along a series if its range there exceeds this fraction of its size there (a
                    # sum held fixed still moves by the round-off of float32 weights, about 1e-7 of it)


def both_conventions(results):
    """{convention: Result} -> one Result: the common verdict if the two conventions agree (the zero convention's
    text, saying so), DEPENDS with both readings if they differ."""
    paper, zero = results["paper"], results["zero"]
    if paper.verdict == zero.verdict:
        return Result(zero.verdict, f"{zero.text} (same verdict in both conventions of Q)", zero.deciding, zero.value,
                      zero.value_name)
    return Result(DEPENDS, f"paper's convention: {paper.verdict} ({paper.text}); zero convention: {zero.verdict} "
                  f"({zero.text})", f"{DEPENDS} (paper's: {paper.verdict}; zero: {zero.verdict})", zero.value, zero.value_name)


def conventions_result(over, results, combine_units):
    """{unit: {convention: Result}} -> one Result (over: the claim's combination of units; combine_units:
    make_report's, which joins the units' texts): per unit the common verdict, or 'depends on the convention' with
    both readings (both_conventions); over the units, the verdict of each convention combined, or
    'depends on the convention' where the two combined verdicts differ."""
    joined = combine_units(over, {u: both_conventions(r) for u, r in results.items()})
    verdicts = {c: over({u: r[c].verdict for u, r in results.items()}) for c in CONVENTIONS}
    if verdicts["paper"] == verdicts["zero"]:
        return joined._replace(verdict=verdicts["zero"])
    return joined._replace(verdict=DEPENDS, text=f"paper's convention: {verdicts['paper']}, zero convention: "
                           f"{verdicts['zero']}; {joined.text}")


# ----------------------------------------------------------------------------------------------
# Trend statistics

def kendall(x, y):
    """(Kendall's tau, its exact two-sided p) of y against x; (NaN, 1) where either does not vary."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return math.nan, 1.0
    exact = len(x) <= 30 and len(np.unique(x)) == len(x) and len(np.unique(y)) == len(y)  # no ties
    result = kendalltau(x, y, method="exact" if exact else "auto")
    return float(result.statistic), float(result.pvalue)


def seed_spread(reference):
    """The spread of a value over seeds: std / mean of reference [S, G] over the seeds (axis 0), per group G (run
    or orbit centre), the median over groups; 0 for one seed. Non-finite entries are left out."""
    reference = np.asarray(reference, dtype=float).reshape(len(reference), -1)
    if len(reference) < 2:
        return 0.0
    spreads = []
    for column in reference.T:
        finite = column[np.isfinite(column)]
        if len(finite) > 1 and finite.mean() != 0:
            spreads.append(finite.std() / abs(finite.mean()))
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


def finite_series(x, y):
    """The rows of x, y [N, L] with no NaN (a diverged run, a minimum not reached): (x, y, rows left out)."""
    x, y = np.asarray(x, dtype=float).reshape(-1, np.shape(x)[-1]), np.asarray(y, dtype=float).reshape(-1, np.shape(y)[-1])
    keep = ~(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1))
    return x[keep], y[keep], int((~keep).sum())


# ----------------------------------------------------------------------------------------------
# Rules shared by several figures

def rule_trend(x, values, direction, reference, budget=None, what="value", alpha=ALPHA, min_effect=MIN_EFFECT,
               spreads=SEED_SPREADS):
    """Per series (an orbit, or one seed's runs), Kendall's tau of the value with |Q| (exact p); over the series, a
    one-sided sign test that more series go in the claimed direction than not (p < {alpha:g}); and the effect, the
    relative change of the value between the smallest and the largest |Q| of a series in the claimed direction
    (median over series), must reach the larger of {min_effect:.0%} and {spreads} x the spread of the value over
    seeds (std / mean). Significant and large enough: reproduced (partly if a series was left out: a diverged run
    or a minimum not reached cannot be tested); otherwise not reproduced.

    x: |Q| [N, L] (N series of L points); values [N, L] (inf: never reached, the budget in the effect; NaN: series
    left out); direction: +1 (the value grows with |Q|) or -1 (it falls); reference: the value over seeds [S, G]."""
    x, values, left_out = finite_series(x, values)
    if not len(x):
        return Result(NOT_REPRODUCED, "no series to test", "no series")
    taus = np.array([kendall(a, b)[0] for a, b in zip(x, values)])
    ps = np.array([kendall(a, b)[1] for a, b in zip(x, values)])
    signs = np.sign(direction * np.nan_to_num(taus))
    going, against = int((signs > 0).sum()), int((signs < 0).sum())
    p = float(binomtest(going, going + against, 0.5, alternative="greater").pvalue) if going + against else 1.0
    effect = float(np.median([direction * series_effect(a, b, budget) for a, b in zip(x, values)]))
    needed = minimum_effect(reference, min_effect, spreads)
    change, needed_change = math.expm1(abs(effect)) * np.sign(effect), needed
    ok = p < alpha and change >= needed_change
    verdict = (PARTLY if left_out else REPRODUCED) if ok else NOT_REPRODUCED  # a diverged run: partly at best
    claimed = "grows" if direction > 0 else "falls"
    text = (f"the {what} {claimed} with |Q| in {going} of {len(x)} series (sign test p = {p:.2g}"
            f"{', significant' if p < alpha else ', not significant'}; Kendall's tau median {fmt(np.median(taus[np.isfinite(taus)]) if np.isfinite(taus).any() else None)}, "
            f"{int((ps < alpha).sum())} series with exact p < {alpha:g}); effect (median over series) "
            f"{change:+.1%} in the claimed direction, minimum {needed_change:.1%} (max of {min_effect:.0%} and "
            f"{spreads} x the spread over seeds, {seed_spread(reference):.1%})"
            + f"; {left_out} series left out (a diverged run or a minimum not reached)" * bool(left_out))
    return Result(verdict, text, f"{going}/{len(x)} series, p {p:.2g}, effect {change:+.0%} (min {needed_change:.0%})", change,
                  "effect")


# ----------------------------------------------------------------------------------------------
# Per-neuron predictors: one vote per seed, Holm over the named statistics, both conventions

SUM_STATISTIC = "|sum Q_a|"  # the paper's scalar; PER_NEURON_STATISTICS: the per-neuron ones, named in advance
PER_NEURON_STATISTICS = ("spread of Q_a", "min |Q_a|", "edge distance")  # (docs/report.md, per-neuron predictors)


def holm(p_values):
    """Holm's step-down adjusted p-values {name: p} -> {name: adjusted p} (family: the names given)."""
    order, adjusted, running = sorted(p_values, key=p_values.get), {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[name]))
        adjusted[name] = running
    return adjusted


def seeds_needed(seeds, alpha):
    """The fewest of `seeds` one-way votes for which a two-sided sign test has p < alpha (None: none suffices)."""
    return next((k for k in range(seeds + 1) if seeds and binomtest(k, seeds, 0.5).pvalue < alpha), None)


def seed_votes(stat, values, budget):
    """One statistic against the value, voted per seed. stat, values: [S, N, L] (N series of a seed; a series with a
    NaN is left out). Per seed: the mean over its series of Kendall's tau (0 on a series where the statistic is
    constant: it tells nothing there) -> its vote; the direction is the majority's; per seed the median over its
    series of the relative change of the value from the statistic's smallest to its largest point in that direction.
    Returns (up, down, two-sided sign test p, direction, median over seeds of the seed effects, series where the
    statistic is constant, series tested)."""
    scores, effects, constant, series = [], [], 0, 0
    for stat_s, values_s in zip(stat, values):
        keep = ~(np.isnan(stat_s).any(axis=-1) | np.isnan(values_s).any(axis=-1))
        if not keep.any():
            continue
        taus = [kendall(a, b)[0] for a, b in zip(stat_s[keep], values_s[keep])]
        constant += sum(np.ptp(a) <= CONSTANT * max(np.abs(a).max(), 1e-300) for a in stat_s[keep])
        series += int(keep.sum())
        scores.append(float(np.mean(np.nan_to_num(taus))))
        effects.append([series_effect(a, b, budget) for a, b in zip(stat_s[keep], values_s[keep])])
    scores = np.array(scores)
    up, down = int((scores > 0).sum()), int((scores < 0).sum())
    p = float(binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0
    direction = 1 if up >= down else -1
    effect = math.expm1(float(np.median([np.median(direction * np.array(e)) for e in effects]))) if effects else 0.0
    return up, down, p, direction, effect, constant, series


def judge_statistics(stats, values, needed, budget, alpha):
    """Every statistic of one convention: {name: (predicts, text)}. The sum is tested at alpha; the per-neuron
    statistics that vary somewhere form the family of Holm's correction (a statistic constant on every series, such
    as the edge distance of an activation whose range has no edge, is not tested)."""
    votes = {name: seed_votes(np.asarray(stats[name], dtype=float), values, budget) for name in stats}
    tested = [name for name in PER_NEURON_STATISTICS if name in votes and votes[name][5] < votes[name][6]]
    adjusted = {SUM_STATISTIC: votes[SUM_STATISTIC][2], **holm({name: votes[name][2] for name in tested})}
    found = {}
    for name, (up, down, p, direction, effect, constant, _) in votes.items():
        if name not in adjusted:
            found[name] = (False, "constant on every series: not tested")
            continue
        seeds = up + down
        predicts = adjusted[name] < alpha and effect >= needed
        family = " (uncorrected)" if name == SUM_STATISTIC else f" (Holm over {len(tested)})"
        flip = seeds_needed(seeds, alpha / (1 if name == SUM_STATISTIC else len(tested)))
        found[name] = (predicts, f"{'up' if direction > 0 else 'down'} in {max(up, down)} of {seeds} seeds "
                                 f"(sign test p = {p:.2g}, adjusted {adjusted[name]:.2g}{family}; "
                                 f"{flip if flip is not None else 'no'} of {seeds} seeds needed), effect {effect:+.0%}"
                                 + f", constant on {constant} series" * bool(constant))
    return found


def rule_predictors(stats, values, reference, budget=None, alpha=ALPHA, min_effect=MIN_EFFECT, spreads=SEED_SPREADS):
    """Along the per-neuron orbits (on each, the sum of the Q_a and their spread both change: together on one,
    opposed on the other) each named statistic is tested against the value with the seed as the unit: per seed the
    mean Kendall's tau over its orbits gives one vote, a two-sided sign test over the seeds gives p, corrected by Holm
    over the per-neuron statistics (the spread of Q_a, min |Q_a|, the edge distance; the sum |Q| is tested
    uncorrected, which makes it easier for it to predict); a statistic predicts if its adjusted p < {alpha:g} and the
    median over seeds of each seed's median effect reaches the larger of {min_effect:.0%} and {spreads} x the spread
    over seeds. Each statistic is judged in both conventions of Q, and counts only if it predicts in both (the spread
    and the edge distance do not depend on the convention; min |Q_a| does). A per-neuron statistic predicts in both
    conventions and the sum |Q| in neither: reproduced; in one convention only, or the sum in the other:
    depends on the convention; otherwise not reproduced.

    stats: {convention: {name: [S, N, L]}} (N series of each seed, '|sum Q_a|' and the per-neuron ones); values
    [S, N, L] (inf: never reached, the budget in the effect; NaN: left out); reference [S, G]."""
    values = np.asarray(values, dtype=float)
    needed = minimum_effect(reference, min_effect, spreads)
    found = {c: judge_statistics(stats[c], values, needed, budget, alpha) for c in CONVENTIONS}
    holds = {c: not found[c][SUM_STATISTIC][0] and any(found[c][n][0] for n in found[c] if n != SUM_STATISTIC)
             for c in CONVENTIONS}
    common = [n for n in PER_NEURON_STATISTICS if all(n in found[c] and found[c][n][0] for c in CONVENTIONS)]
    sum_predicts = any(found[c][SUM_STATISTIC][0] for c in CONVENTIONS)
    verdict = (REPRODUCED if common and not sum_predicts else DEPENDS if any(holds.values()) else NOT_REPRODUCED)
    text = "; ".join(f"{c} convention: " + ", ".join(f"{n}: {'predicts' if ok else 'does not predict'} ({why})"
                                                      for n, (ok, why) in found[c].items()) for c in CONVENTIONS)
    seeds = int((~np.isnan(values).all(axis=(-1, -2))).sum())
    return Result(verdict, f"{text} (minimum effect {needed:.0%}, {seeds} seeds)",
                  f"predict in both conventions: {', '.join(common) or 'none'}"
                  + f"; sum predicts" * sum_predicts)


def over_activations(verdicts):
    """Over the {units}: reproduced if the rule gives reproduced for each; depends on the convention if it gives
    reproduced or depends for each, depends for one at least; not reproduced if it gives not reproduced for each;
    partly otherwise."""
    tested = _tested(verdicts)
    if tested and all(v in (REPRODUCED, DEPENDS) for v in tested) and DEPENDS in tested:
        return DEPENDS
    return combine(verdicts)


def rule_same_initial_function(initial_outputs, float64=False, tolerance=1e-5, tolerance64=1e-10):
    """The largest difference between the runs' initial outputs, relative to the largest output, is below
    {tolerance} for float32 weights (whose round-off is about 1e-7) and {tolerance64} for float64: reproduced.

    initial_outputs: [R, m, n], or [R, L, m, n] (compared along L, with the first of each run)."""
    out = np.asarray(initial_outputs, dtype=float)  # NaN: a diverged run's (not checked)
    difference = float(np.nanmax(np.abs(out - out[..., :1, :, :])) / max(np.nanmax(np.abs(out)), 1e-300))
    limit = tolerance64 if float64 else tolerance
    return Result(REPRODUCED if difference < limit else NOT_REPRODUCED,
                  f"largest relative difference of the initial outputs {fmt(difference)} "
                  f"({'float64' if float64 else 'float32'}: below {fmt(limit)} required)", fmt(difference), difference,
                  "relative difference")


def rule_gap_below(gaps, float64=True, tolerance=1e-5, tolerance64=1e-10):
    """A check: every moved network computes the original's function on the training inputs (by construction: X = I
    makes each entry of V one pre-activation), the largest relative gap of their outputs there below {tolerance} for
    float32 weights (round-off about 1e-7) and {tolerance64} for float64: passes; otherwise fails.

    gaps: any shape; float64: whether the moved weights are float64."""
    gaps, limit = np.asarray(gaps, dtype=float), tolerance64 if float64 else tolerance
    top = float(np.nanmax(gaps)) if np.isfinite(gaps).any() else math.nan
    return Result(REPRODUCED if top < limit else NOT_REPRODUCED, f"largest relative gap on the training inputs "
                  f"{fmt(top)} ({'float64' if float64 else 'float32'}: below {fmt(limit)} required)", fmt(top), top,
                  "relative gap")


# ----------------------------------------------------------------------------------------------
# Measurement helpers: a saved figure (and a convention) -> the rule's keyword arguments

def q_key(zero_key, convention):
    """The saved key of a quantity in a convention: 'Q0_zero' -> 'Q0' for the paper's ('sum_zero' -> 'sum_paper')."""
    if convention == "zero":
        return zero_key
    base = zero_key.removesuffix("_zero")
    return f"{base}_paper" if base in ("sum", "min_abs") else base  # the per-neuron files save both with a suffix


def as_steps(steps, diverged_at=None):
    """Steps to a loss as floats: never (-1) -> inf, a diverged run -> NaN."""
    steps = np.asarray(steps, dtype=float)
    steps = np.where(steps < 0, np.inf, steps)
    return steps if diverged_at is None else np.where(np.asarray(diverged_at) >= 0, np.nan, steps)


def finite_or_nan(values):
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def at_minimum(values, final_loss):
    """values [S, R, ...] with NaN where the run of [S, R] did not reach a global minimum."""
    values, ok = np.asarray(values, dtype=float), np.asarray(final_loss, dtype=float) < AT_MINIMUM
    return np.where(ok.reshape(ok.shape + (1,) * (values.ndim - ok.ndim)), values, np.nan)


def same_function(f):
    return runs(f, initial_outputs="initial_output", float64=f.settings.get("dtype") == "float64")


def per_neuron_stats(f, convention):
    """{statistic: [S, N, L]}, the scalar |sum of Q_a| first, over every per-neuron orbit of the file: S seeds, N
    orbits of each (Fig. 9: its minima's), L points; a statistic that depends on the convention read in `convention`."""
    by_seed = lambda a: np.asarray(a, dtype=float).reshape(np.shape(a)[0], -1, np.shape(a)[-1])  # noqa: E731
    return {SUM_STATISTIC: np.abs(by_seed(f[q_key("sum_zero", convention)])), "spread of Q_a": by_seed(f["spread"]),
            "min |Q_a|": by_seed(f[q_key("min_abs_zero", convention)]), "edge distance": by_seed(f["edge_distance"])}


def per_neuron_both(f):
    """per_neuron_stats in both conventions: {convention: {statistic: [S, N, L]}} (rule_predictors' stats)."""
    return {c: per_neuron_stats(f, c) for c in CONVENTIONS}


# ----------------------------------------------------------------------------------------------
# Tables shared by Figs. 6 and 9, and the checks section's table off the training inputs

PER_NEURON_NOTE = ("Per-neuron orbits (each neuron its own lambda; seed 0; values at the two ends and the middle, the "
                   "network itself): on 'together' the sum of the Q_a and their spread grow together, on 'opposed' the "
                   "spread grows as the sum falls (per_neuron.orbit_targets). Q_a from 0 (zero) or with the paper code's "
                   "constant (paper's, lower by n per neuron for tanh and sigmoid); the spread and the edge distance do "
                   "not depend on the convention.")


def per_neuron_table(figures, value, form, pick=lambda a: a[0]):
    """Seed 0's per-neuron orbits ({unit: Figure}), one row per orbit: the statistics and the value at the ends and the
    middle (the network itself). pick: [S, ...] -> the [2, P] of the networks shown."""
    rows = []
    for unit, f in figures.items():
        for o, family in enumerate(("together", "opposed")):
            ends = [0, f[value].shape[-1] // 2, -1]  # the ends and the middle (the network itself)
            cells = [" / ".join(form(x) if k == value else fmt(x) for x in pick(f[k])[o][ends])
                     for k in ("sum_zero", "sum_paper", "spread", "min_abs_zero", "min_abs_paper", "edge_distance",
                               value)]
            rows.append([unit, family] + cells)
    return table(["activation", "orbit", "sum Q_a (zero)", "sum Q_a (paper's)", "spread of Q_a", "min abs Q_a (zero)",
                  "min abs Q_a (paper's)", "edge distance", value.replace("_", " ")], rows)


def off_data_rows(figures):
    """The checks section's rows on the outputs off the training inputs: [experiment, activation, median and largest
    relative gap over every moved network]. figures: {(experiment, activation): Figure with 'off_data_gap'}."""
    rows = []
    for (experiment, unit), f in figures.items():
        gaps = np.asarray(f["off_data_gap"], dtype=float)
        gaps = gaps[np.isfinite(gaps) & (gaps > 0)]  # the unmoved networks themselves have gap 0
        rows.append([experiment, unit, fmt(np.median(gaps)) if gaps.size else "-", fmt(gaps.max()) if gaps.size else "-"])
    return rows


def off_data_table(experiments):
    """The checks section's table of how much the moved networks' outputs change off the training inputs.
    experiments: {experiment: {activation: Figure}}."""
    figures = {(name, u): f for name, loaded in experiments.items() for u, f in loaded.items()
               if "off_data_gap" in f.data}
    if not figures:
        return []
    return ["Largest relative output change of the moved networks on random inputs x ~ N(0, I_n / n) off the "
            "training inputs (median and largest over every moved network of the experiment):", ""] + table(
        ["experiment", "activation", "median", "largest"], off_data_rows(figures))


