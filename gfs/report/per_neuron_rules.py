"""The per-neuron claims of Figs. 6 and 9 (beyond the paper): along the per-neuron orbits (per_neuron.py), does a
per-neuron statistic predict the value (Fig. 6: steps to the loss; Fig. 9: the largest Hessian eigenvalue) where the
sum |Q| does not? The rule: rule_predictors; why each of its choices: docs/conserved_quantities.md. Shapes:
[S, N, L] = seeds, orbits of a seed, points of an orbit.
"""
import math
from itertools import accumulate

import numpy as np
from scipy.stats import binomtest

from gfs.report.toy_rules import (ALPHA, CONSTANT, CONVENTIONS, MIN_EFFECT, SEED_SPREADS, kendall, minimum_effect,
                                  q_key, series_effect)
from gfs.report.trend_stats import by_seed
from gfs.report.verdict_rules import DEPENDS, NOT_REPRODUCED, REPRODUCED, Result, _tested, combine


SUM_STATISTIC = "|sum Q_a|"  # the paper's scalar; PER_NEURON_STATISTICS: the per-neuron ones, named in advance
PER_NEURON_STATISTICS = ("spread of Q_a", "min |Q_a|", "edge distance")  # (docs/report.md, per-neuron predictors)


def holm(p_values):
    """Holm's step-down adjusted p-values {name: p} -> {name: adjusted p} (family: the names given)."""
    order = sorted(p_values, key=p_values.get)
    steps = [min(1.0, (len(order) - i) * p_values[name]) for i, name in enumerate(order)]
    return dict(zip(order, accumulate(steps, max)))  # each at least the one before


def seeds_needed(seeds, alpha):
    """The fewest of `seeds` one-way votes for which a two-sided sign test has p < alpha (None: none suffices)."""
    return next((k for k in range(seeds + 1) if seeds and binomtest(k, seeds, 0.5).pvalue < alpha), None)


# A seed's mean tau is a ratio of small whole numbers, so a mean that is 0 comes out of float sums as about 1e-17
# of either sign: rounded to this many decimals before its sign votes, so that no vote rests on round-off.
TAU_DECIMALS = 12


def seed_votes(stat, values, budget):
    """One statistic against the value, voted per seed. stat, values: [S, N, L] (a series with a NaN is left out). A
    seed votes with the sign of its series' mean Kendall's tau (0 on a series where the statistic is constant); the
    direction is the majority's; a seed's effect: the median over its series of the value's relative change from the
    statistic's smallest to its largest point, in that direction. -> (up, down, two-sided sign test p, direction,
    median of the seeds' effects, series where the statistic is constant, series tested)."""
    scores, effects, constant, series = [], [], 0, 0
    for stat_s, values_s in zip(stat, values):
        keep = ~(np.isnan(stat_s).any(axis=-1) | np.isnan(values_s).any(axis=-1))
        if not keep.any():
            continue
        taus = [kendall(a, b)[0] for a, b in zip(stat_s[keep], values_s[keep])]
        constant += sum(np.ptp(a) <= CONSTANT * max(np.abs(a).max(), 1e-300) for a in stat_s[keep])
        series += int(keep.sum())
        scores.append(round(float(np.mean(np.nan_to_num(taus))), TAU_DECIMALS))
        effects.append([series_effect(a, b, budget) for a, b in zip(stat_s[keep], values_s[keep])])
    scores = np.array(scores)
    up, down = int((scores > 0).sum()), int((scores < 0).sum())
    p = float(binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0
    direction = 1 if up >= down else -1
    effect = math.expm1(float(np.median([np.median(direction * np.array(e)) for e in effects]))) if effects else 0.0
    return up, down, p, direction, effect, constant, series


def judge_statistics(stats, values, needed, budget, alpha):
    """Every statistic of one convention: {name: (predicts, text)}, the text: the seeds with the majority, the sign
    test's p and Holm's adjusted p, the one-way votes a significant majority needs, the effect. The sum is tested at
    alpha; Holm's family: the per-neuron statistics that are not constant on every series."""
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
        flip = seeds_needed(seeds, alpha / (1 if name == SUM_STATISTIC else len(tested)))
        holm_text = f"adjusted {adjusted[name]:.2g} (Holm over {len(tested)}), " * (name != SUM_STATISTIC)
        found[name] = (predicts, f"{'up' if direction > 0 else 'down'} {max(up, down)}/{seeds} seeds, p = {p:.2g}, "
                                 f"{holm_text}{flip if flip is not None else 'no'} needed, {effect:+.0%}"
                                 + f", constant on {constant} series" * bool(constant))
    return found


def per_convention(said):
    """One statistic's finding, {convention: words} -> the words once where the conventions agree (always for the
    spread and the edge distance, and for linear and ReLU), else "paper: ..., zero: ..."."""
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    return ", ".join(f"{c}: {words}" for c, words in said.items())


def rule_predictors(stats, values, reference, budget=None, alpha=ALPHA, min_effect=MIN_EFFECT, spreads=SEED_SPREADS):
    """A per-neuron statistic (the spread of Q_a, min |Q_a|, the edge distance) predicts the value and the sum |Q|
    does not, in both conventions: reproduced; in one only, or the sum in the other: depends on the convention;
    otherwise not reproduced. Predicts: a sign test over seeds with Holm-adjusted p < {alpha:g}, an effect of at least
    {min_effect:.0%} and {spreads} x the seeds' spread. A cell: yes or no (seeds with the majority, p -> Holm's p
    (family size), one-way votes needed, effect).

    In full: docs/report.md, *Rules*.

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
    findings = {n: {c: found[c][n] for c in CONVENTIONS if n in found[c]} for n in found["zero"]}  # {c: (ok, why)}
    text = "; ".join(f"{n}: " + per_convention({c: f"{'predicts' if ok else 'does not predict'} ({why})"
                                                for c, (ok, why) in by_c.items()}) for n, by_c in findings.items())
    # a cell: yes or no with the seeds, p, Holm's adjusted p, the seeds needed and the effect, said shorter
    cells = [per_convention({c: ("**yes** (" if ok else "no (") + why.replace(" seeds, p = ", ", p ")
                             .replace(", adjusted ", " -> ").replace(" (Holm over ", " (") + ")"
                             for c, (ok, why) in by_c.items()}) for by_c in findings.values()]
    seeds = int((~np.isnan(values).all(axis=(-1, -2))).sum())
    return Result(verdict, f"{text} (minimum effect {needed:.0%}, {seeds} seeds)",
                  f"predict in both conventions: {', '.join(common) or 'none'}"
                  + " (the sum predicts)" * sum_predicts, columns=(*found["zero"], "minimum effect, seeds"),
                  rows=(("", verdict, *cells, f"{needed:.0%}, {seeds}"),))


def over_activations(verdicts):
    """Over the {units}: reproduced if reproduced for each; depends on the convention if reproduced or depends for
    each (depends for one at least); not reproduced if not reproduced for each; partly otherwise."""
    tested = _tested(verdicts)
    if tested and all(v in (REPRODUCED, DEPENDS) for v in tested) and DEPENDS in tested:
        return DEPENDS
    return combine(verdicts)


def per_neuron_both(f):
    """rule_predictors' stats from a saved per-neuron figure, {convention: {statistic: [S, N, L]}}, the scalar
    |sum of Q_a| first: S seeds, N orbits of each (Fig. 9: its minima's), L points."""
    return {c: {SUM_STATISTIC: np.abs(by_seed(f[q_key("sum_zero", c)])), "spread of Q_a": by_seed(f["spread"]),
                "min |Q_a|": by_seed(f[q_key("min_abs_zero", c)]), "edge distance": by_seed(f["edge_distance"])}
            for c in CONVENTIONS}
