"""The rules and measurements of the toy figures' claims (Figs. 3-9) that judge effects over seeds, the two
conventions of Q, the construction checks and the per-neuron claims; make_report.py registers each claim once.

A rule takes numbers (never files) and returns a verdict_rules.Result; the first paragraph of its docstring is the
rule as the report prints it ({keyword} defaults filled in). A measurement takes a saved figure (make_report.Figure:
f[key], f.setting(key)) and, for a claim judged in both conventions of Q, the convention ("paper" or "zero"), and
returns the rule's keyword arguments.

Contents: the thresholds (ALPHA, MIN_EFFECT, SEED_SPREADS, AT_MINIMUM) and their reasons in docs/report.md;
both_conventions (a verdict per convention, or DEPENDS); trend statistics (kendall, minimum_effect, series_effect);
rule_trend (a claimed trend of a value with |Q|: Kendall's tau per series, a sign test over series, an effect beyond
the spread over seeds); rule_predictors (which per-neuron statistic predicts a value along the per-neuron orbits);
rule_within_gd_bound (Fig. 3: Q's change within the first-order bound of gradient descent); rule_gap_below (the
checks of per-neuron moves); the measurements; the report's handling of conventions and checks (every_run,
conventions_result, mark_broken, off_data_table).
"""
import math

import numpy as np
from scipy.stats import binomtest, kendalltau

from report_tables import table
from verdict_rules import NOT_REPRODUCED, PARTLY, REPRODUCED, PerSeed, Result, fmt

DEPENDS = "depends on the convention"  # the verdict where the paper's and the zero convention of Q disagree
BROKEN = "broken data"                 # a check of the figure's construction failed: its claims get no verdict
PASSES, FAILS = "passes", "fails"      # a check's result
CONVENTIONS = ("paper", "zero")        # models.Q_CONVENTIONS, in the order the report shows them
ALPHA = 0.05        # significance level of a sign test over series (one-sided for a claimed direction)
MIN_EFFECT = 0.10   # smallest relative change of a value along a series that counts as an effect
SEED_SPREADS = 2    # ... and it must exceed this many times the spread (std / mean) of the value over seeds
AT_MINIMUM = 1e-6   # squared loss below which a trained run is at a global minimum (as rule_hessian_rank)
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
# Rules

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


def predictor(stat, values, needed, budget, alpha):
    """One statistic along the series: (predicts, text). stat, values: [N, L]."""
    varies = np.ptp(stat, axis=-1) > CONSTANT * np.maximum(np.abs(stat).max(axis=-1), 1e-300)
    effects = np.array([abs(series_effect(np.arange(len(v)), np.sort(np.where(np.isinf(v), budget or np.inf, v))))
                        for v in values])  # how much the value changes along each series, whatever the order
    blind = int((~varies & (np.expm1(effects) >= needed)).sum())  # constant, while the value changes
    if not varies.any():
        return False, f"constant along every series, blind to {blind} real changes"
    taus = np.array([kendall(s, v)[0] for s, v in zip(stat[varies], values[varies])])
    up, down = int((taus > 0).sum()), int((taus < 0).sum())
    p = float(binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0
    direction = 1 if up >= down else -1
    effect = math.expm1(float(np.median([direction * series_effect(s, v, budget)
                                         for s, v in zip(stat[varies], values[varies])])))
    predicts = p < alpha and effect >= needed and blind == 0
    return predicts, (f"{'up' if direction > 0 else 'down'} in {max(up, down)} of {int(varies.sum())} series where it "
                      f"varies (sign test p = {p:.2g}), effect {effect:+.0%}"
                      + f", constant where the value changes in {blind} series" * bool(blind))


def rule_predictors(stats, values, reference, budget=None, alpha=ALPHA, min_effect=MIN_EFFECT, spreads=SEED_SPREADS):
    """Along the per-neuron orbits (each a series: the spread of the Q_a at a fixed sum, or the sum at a fixed
    spread), a statistic predicts the value if, over the series where it varies, the value moves with it in one
    direction (two-sided sign test on Kendall's tau, p < {alpha:g}) by a median effect of at least the larger of
    {min_effect:.0%} and {spreads} x the spread over seeds, and it is constant in no series where the value changes
    by that much. A per-neuron statistic predicts and the sum |Q| does not: reproduced; otherwise (none predicts, or
    the sum predicts as well) not reproduced.

    stats: {name: [N, L]} ('|sum|' first, the scalar); values [N, L] (inf: never reached); reference [S, G]."""
    needed = minimum_effect(reference, min_effect, spreads)
    keep = ~np.isnan(np.asarray(values, dtype=float)).any(axis=-1)
    for s in stats.values():
        keep &= ~np.isnan(np.asarray(s, dtype=float)).any(axis=-1)
    found = {name: predictor(np.asarray(s, dtype=float)[keep], np.asarray(values, dtype=float)[keep], needed, budget,
                             alpha) for name, s in stats.items()}
    scalar, *per_neuron = found
    winners = [name for name in per_neuron if found[name][0]]
    verdict = REPRODUCED if winners and not found[scalar][0] else NOT_REPRODUCED
    text = "; ".join(f"{name}: {'predicts' if ok else 'does not predict'} ({why})" for name, (ok, why) in found.items())
    return Result(verdict, f"{text} (minimum effect {needed:.0%}, {int(keep.sum())} series)",
                  f"predict: {', '.join(n for n, (ok, _) in found.items() if ok) or 'none'}")


def rule_within_gd_bound(lrs, drift, bound):
    """Every run's largest change of Q from its initial value stays within the first-order bound of gradient descent,
    paper_scale x lr/2 x max(1, max |F''|) x (L_0 - L_T) (derived in docs/conserved_quantities.md; F'' at the initial
    and final weights, L the trained loss): reproduced; only at the largest learning rate (where discretisation,
    not float32 round-off, dominates): partly; otherwise not reproduced.

    lrs, drift, bound: [R] per run (drift and bound in the same units)."""
    lrs, drift, bound = (np.asarray(a, dtype=float) for a in (lrs, drift, bound))
    within = np.nan_to_num(drift, nan=np.inf) <= bound
    text = ", ".join(f"lr {lr:g}: {fmt(d)} of bound {fmt(b)}" for lr, d, b in zip(lrs, drift, bound))
    top = lrs == lrs.max()
    verdict = REPRODUCED if within.all() else PARTLY if within[top].all() else NOT_REPRODUCED
    ratio = float(np.max(drift / bound))
    return Result(verdict, text, f"drift/bound up to {fmt(ratio)}", ratio, "largest drift / bound")


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
# Measurements: a saved figure (and a convention) -> the rule's keyword arguments

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


def fig6_trend(f, convention):
    """Fig. 6: each seed's three init scales are a series; steps [S, R] against |Q0|."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(x=np.abs(f[q_key("Q0_zero", convention)]), values=steps, direction=-1,
                reference=finite_or_nan(steps), budget=int(f.setting("steps")), what="steps to the loss")


def fig9_trend(f, convention):
    """Fig. 9: each seed's four init scales are a series; the largest eigenvalue [S, R] against |Q0|."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(x=np.abs(f[q_key("Q0_zero", convention)]), values=largest, direction=1, reference=largest,
                what="largest eigenvalue")


def same_function6_trend(f, convention):
    """Fig. 6 same function: each seed's orbit is a series [S, L]; the spread over seeds at its centre (lambda = 1)."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(x=np.abs(f[q_key("Q0_zero", convention)]), values=steps, direction=-1,
                reference=finite_or_nan(steps[:, steps.shape[1] // 2]), budget=int(f["step_budget"]),
                what="steps to the loss")


def same_function9_trend(f, convention):
    """Fig. 9 same function: each minimum's orbit is a series [S, R, L]; the spread over seeds at the minima."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(x=np.abs(f[q_key("Q_zero", convention)]), values=largest, direction=1,
                reference=largest[..., largest.shape[-1] // 2], what="largest eigenvalue")


def per_neuron_stats(f, convention):
    """{statistic: [N, 5]}, the scalar |sum of Q_a| first, over every per-neuron orbit of the file."""
    five = lambda a: np.asarray(a, dtype=float).reshape(-1, np.shape(a)[-1])  # noqa: E731
    return {"|sum Q_a|": np.abs(five(f[q_key("sum_zero", convention)])), "spread of Q_a": five(f["spread"]),
            "min |Q_a|": five(f[q_key("min_abs_zero", convention)]), "edge distance": five(f["edge_distance"])}


def per_neuron6(f, convention):
    """Fig. 6 per-neuron orbits [S, 2, 5]: steps to the loss; the spread over seeds of the unmoved networks."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(stats=per_neuron_stats(f, convention), values=steps.reshape(-1, steps.shape[-1]),
                reference=finite_or_nan(steps[:, 0, steps.shape[-1] // 2]), budget=int(f["step_budget"]))


def per_neuron9(f, convention):
    """Fig. 9 per-neuron orbits [S, R, 2, 5] of the minima: the largest eigenvalue."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(stats=per_neuron_stats(f, convention), values=largest.reshape(-1, largest.shape[-1]),
                reference=largest[:, :, 0, largest.shape[-1] // 2])


def off_data_rows(figures):
    """The checks section's rows on the outputs off the training inputs: [experiment, activation, median and largest
    relative gap over every moved network]. figures: {(experiment, activation): Figure with 'off_data_gap'}."""
    rows = []
    for (experiment, unit), f in figures.items():
        gaps = np.asarray(f["off_data_gap"], dtype=float)
        gaps = gaps[np.isfinite(gaps) & (gaps > 0)]  # the unmoved networks themselves have gap 0
        rows.append([experiment, unit, fmt(np.median(gaps)) if gaps.size else "-", fmt(gaps.max()) if gaps.size else "-"])
    return rows


# ----------------------------------------------------------------------------------------------
# The report's handling of conventions and checks (make_report.check and build_report call these)

def every_run(measured):
    """A check judges every run, a diverged one too (its rule gets no diverged_at): an identity of the construction
    holds before training, and a check that needs a trained run says itself which it could check."""
    if isinstance(measured, PerSeed):
        return PerSeed(dict(m, diverged_at=None) for m in measured)
    return dict(measured, diverged_at=None) if "diverged_at" in measured else measured


def conventions_result(over, results, combine_units):
    """{unit: {convention: Result}} -> one Result (over: the claim's combination of units; combine_units:
    make_report's, which joins the units' texts): per unit the common verdict, or 'depends on the convention' with
    both readings (claims_toy.both_conventions); over the units, the verdict of each convention combined, or
    'depends on the convention' where the two combined verdicts differ."""
    joined = combine_units(over, {u: both_conventions(r) for u, r in results.items()})
    verdicts = {c: over({u: r[c].verdict for u, r in results.items()}) for c in CONVENTIONS}
    if verdicts["paper"] == verdicts["zero"]:
        return joined._replace(verdict=verdicts["zero"])
    return joined._replace(verdict=DEPENDS, text=f"paper's convention: {verdicts['paper']}, zero convention: "
                           f"{verdicts['zero']}; {joined.text}")


def mark_broken(checked, no_verdict):
    """Each figure with a failing check: its claims' verdicts become BROKEN, naming the check. checked: make_report's
    Checked records (claim, verdict, text, deciding), changed in place; no_verdict: the states that are no verdict."""
    failing = {}
    for c in checked:
        if c.claim.check and c.verdict not in (REPRODUCED,) + no_verdict:
            failing.setdefault(c.claim.figure, []).append(c.claim.short)
    for c in checked:
        if not c.claim.check and c.claim.figure in failing and c.verdict not in no_verdict:
            c.text = (f"the figure's data are broken: the check(s) {'; '.join(failing[c.claim.figure])} failed, so no "
                      f"verdict (as measured: {c.verdict}: {c.text})")
            c.verdict, c.deciding = BROKEN, f"check failed: {'; '.join(failing[c.claim.figure])}"


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
