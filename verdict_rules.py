"""The verdicts of REPORT.md and how they combine: the machinery under every claim's rule.

A rule (beside its claim, in the figure's claims module claims_fig*.py, or shared: toy_rules.py) takes the keyword
arguments a claim's measurement gives it (numbers and arrays, never files) and returns a Result. The first paragraph
of its docstring is the rule as the report prints it ({keyword} defaults filled in), the second gives the shapes;
tests run every rule both ways on small data. apply() runs a rule on one unit's measurement: diverged runs are named
and left out (without_diverged), several seeds are judged one by one and counted (over_seeds: "holds in k of N
seeds", with the spread of the deciding number).

Contents: the verdicts; Result, PerSeed; combine and worst (over units), over_seeds, without_diverged, apply; fmt,
fmt_steps.
"""
import math
from typing import NamedTuple, Optional

import numpy as np

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_TESTED = "not tested"  # a unit (activation, attack) the rule has no reference for: left out of the verdict
DEPENDS = "depends on the convention"  # the verdict where the paper's and the zero convention of Q disagree
BROKEN = "broken data"                 # a check of the figure's construction failed: its claims get no verdict
PASSES, FAILS = "passes", "fails"      # a check's result (its rule's reproduced / otherwise)


class Result(NamedTuple):
    """A rule's answer. deciding: the deciding numbers in a few words (summary table); value: the one number that
    decides, where there is one, and what it is (its spread is reported over seeds)."""
    verdict: str
    text: str
    deciding: str = ""
    value: Optional[float] = None
    value_name: str = "deciding number"


class PerSeed(list):
    """A measurement over seeds: one dict of the rule's keyword arguments per seed, seed 0 first."""


def _tested(verdicts):
    """The verdicts (a list, or {unit label: verdict}) of the units that had a reference to test against."""
    return [v for v in (verdicts.values() if isinstance(verdicts, dict) else verdicts) if v != NOT_TESTED]


def combine(verdicts):
    """Over the {units}: reproduced if the rule gives reproduced for each, not reproduced if for none, partly
    otherwise (one without a reference to test against is left out)."""
    tested = _tested(verdicts)
    if tested and all(v == REPRODUCED for v in tested):
        return REPRODUCED
    return NOT_REPRODUCED if all(v == NOT_REPRODUCED for v in tested) else PARTLY


def worst(verdicts):
    """Over the {units}: the worst of their verdicts."""
    order = (NOT_REPRODUCED, PARTLY, REPRODUCED)
    return min(_tested(verdicts), key=order.index, default=NOT_REPRODUCED)


def over_seeds(results):
    """Over seeds: reproduced if the rule gives reproduced in every seed, not reproduced if it gives not reproduced in
    every seed, partly otherwise (so a seed where the claim partly holds makes it partly); says in how many seeds it
    holds fully (gives reproduced) and the spread of the deciding number."""
    k, values = sum(r.verdict == REPRODUCED for r in results), np.array([np.nan if r.value is None else r.value
                                                                          for r in results], dtype=float)
    values = np.array([float(f"{v:.6g}") for v in values[np.isfinite(values)]])  # no round-off in the spread
    spread = ""
    if values.size:
        spread = (f"{results[0].value_name} {fmt(values.mean())} ± {fmt(values.std())} [{fmt(values.min())}, "
                  f"{fmt(values.max())}]" + f" in {values.size} seeds" * (values.size < len(results)))
    fails = [f"seed {i}: {r.verdict} ({r.text})" for i, r in enumerate(results) if r.verdict != REPRODUCED]
    seed_0 = [f"seed 0: {results[0].text}"] if results[0].verdict == REPRODUCED else []
    text = "; ".join([f"holds in {k} of {len(results)} seeds"] + [spread] * bool(spread) + seed_0 + fails[:3]
                     + [f"{len(fails) - 3} more seeds fail"] * (len(fails) > 3))
    deciding = f"{k}/{len(results)} seeds" + (f", {results[0].value_name} {fmt(values.mean())} ± {fmt(values.std())}"
                                              if values.size else "")
    return Result(combine([r.verdict for r in results]), text, deciding,
                  float(values.mean()) if values.size else None, results[0].value_name)


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
                  f"{r.deciding} ({diverged.sum()} run(s) diverged)", r.value, r.value_name)


def apply(rule, measurement):
    """One unit's Result: the rule on its measurement, or on each seed's, combined by over_seeds."""
    if isinstance(measurement, PerSeed):
        return over_seeds([without_diverged(rule, **seed) for seed in measurement])
    return without_diverged(rule, **measurement)


def fmt(x):
    """Short number: 3 significant digits."""
    if x is None:
        return "-"
    x = float(x)
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else f"{x:.3g}"


def fmt_steps(s):
    return "never" if s is None or s < 0 else f"{int(s):,}"


