"""The verdict rules of make_report.py: pure functions from saved numbers to a verdict, and how verdicts combine.

A rule takes the keyword arguments a claim's measurement gives it (numbers and arrays, never files) and returns a
Result. The first paragraph of its docstring is the rule as the report prints it ({keyword} defaults filled in),
the second gives the shapes; tests run every rule both ways on small data. apply() runs a rule on one unit's
measurement: diverged runs are named and left out (without_diverged), several seeds are judged one by one and
counted (over_seeds: "holds in k of N seeds", with the spread of the deciding number).

Contents: Result, PerSeed, combine, worst, over_seeds, without_diverged, apply; fmt, fmt_steps; the rules of
Figs. 3-9 that need no statistics over seeds (drift proportional to lr, Q distribution, the same function, steps
proportional to Q, Hessian rank: the trends of |Q| with effect sizes are in claims_toy.py) and of Figs. 10-11: the moved networks are symmetries, ensembles
against the original and the baselines (a cell that is not a symmetry supports no claim; exact_decides: the
float64 numerics decide), robustness per seed with McNemar's paired test, Bonferroni over the attacked strengths
(significant, rule_significant_gain, rule_gain_beyond_control).
"""
import math
from typing import NamedTuple, Optional

import numpy as np
from symmetry import SYMMETRY_TOLERANCE  # the notebooks' mark (the Fig. 10 files save it too)

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_TESTED = "not tested"  # a unit (activation, attack) the rule has no reference for: left out of the verdict
FIG10_MARGIN, FIG11_MARGIN, CHANCE = 0.02, 0.01, 0.1
ALPHA = 0.05  # family-wise error of a Fig. 11 claim per attack: Bonferroni over its attacked strengths
EXACT = "exact numerics"  # the unit label of the float64 action files (exact_decides)


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



# ----------------------------------------------------------------------------------------------
# Rules: numbers in, Result out; diverged runs never reach them. The first docstring paragraph
# is the rule printed in the report ({keyword} defaults filled in); the second gives the shapes.

def rule_drift_proportional(lrs, max_drift, factor=2.0):
    """In float64, the largest change of Q from its initial value (relative to N_0, first step included) divided
    by lr differs by at most a factor {factor:g} across the learning rates: reproduced; otherwise not reproduced.

    lrs, max_drift: [R] per run."""
    ratios = np.asarray(max_drift, dtype=float) / np.asarray(lrs, dtype=float)
    if not np.all(np.isfinite(ratios)) or np.any(ratios <= 0):
        return Result(NOT_REPRODUCED, "a drift is zero or not finite", "not testable")
    spread = float(ratios.max() / ratios.min())
    text = "drift/lr = " + ", ".join(f"{fmt(r)} (lr {lr:g})" for r, lr in zip(ratios, lrs)) + f"; max/min {spread:.3g}"
    return Result(REPRODUCED if spread <= factor else NOT_REPRODUCED, text, f"{spread:.3g}", spread,
                  "max/min of drift/lr")


def rule_q_distribution(samples, expected, term_scale, standard_errors=4, relative_spread=0.05):
    """The sample mean lies within {standard_errors} standard errors (std/sqrt(samples)) of the analytic E[Q], and
    the std is below {relative_spread:.0%} of the size of Q's terms (its mean over the samples: 1/2 |U|^2 + sum |F(V)|
    entry by entry, so that no entries cancel, times the paper code's scale; in the paper code's convention its
    'sum' analogue of Q): both: reproduced; one: partly; neither: not reproduced. Without an analytic E[Q] (an
    activation added later): not tested.

    samples: [S] Q per initialisation; expected: E[Q] (NaN: unknown); term_scale: size of Q's terms (NaN)."""
    samples = np.asarray(samples, dtype=float)
    mean, std = float(samples.mean()), float(samples.std())
    if not (np.isfinite(term_scale) and np.isfinite(expected)):
        return Result(NOT_TESTED, f"mean {mean:.6g} ± {fmt(std)}; no analytic E[Q] and term size",
                      f"{mean:.4g} ± {std:.3g} (not tested)")
    offset, spread = abs(mean - expected) / max(std / math.sqrt(len(samples)), 1e-300), std / abs(term_scale)
    mean_ok, narrow = offset <= standard_errors, spread <= relative_spread
    text = (f"mean {mean:.6g} vs E[Q] {expected:.6g}: {offset:.2g} standard errors "
            f"({'within' if mean_ok else 'more than'} {standard_errors}); std {fmt(std)} = {spread:.2%} of the "
            f"terms' size {fmt(term_scale)} ({'below' if narrow else 'above'} {relative_spread:.0%})")
    return Result(REPRODUCED if mean_ok and narrow else PARTLY if mean_ok or narrow else NOT_REPRODUCED, text,
                  f"{mean:.4g} ± {std:.3g} (E {expected:.4g}), spread {spread:.2%}", offset, "standard errors")


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
    (above the script's threshold; at zero loss the Hessian is 2 J^T J, of rank at most m n). No wrong count: passes
    (reproduced; a run not at a minimum is not checked, the text says how many were); a wrong count: fails.

    nonzero_counts, final_losses: [R] per run; expected_rank: m*n."""
    counts, at_min = np.asarray(nonzero_counts), np.asarray(final_losses, dtype=float) < at_minimum
    wrong = any(c != expected_rank for c, a in zip(counts, at_min) if a)
    text = (f"{int(at_min.sum())} of {len(counts)} runs at a global minimum (squared loss < {fmt(at_minimum)}); "
            f"nonzero counts {', '.join(str(int(c)) for c in counts)} (expected {expected_rank})")
    return Result(NOT_REPRODUCED if wrong else REPRODUCED, text,
                  ", ".join(sorted({str(int(c)) for c in counts})))


# ----------------------------------------------------------------------------------------------
# Figs. 10-11 (CIFAR-10). A Fig. 10 cell (num_g, eps), or a Fig. 11 seed, "is a symmetry" if its symmetry error,
# the largest relative gap between a moved network's logits and the original's on the images its pi was fitted
# on (for the pi the ensemble uses), is at most the tolerance. A claim about symmetry-moved networks is tested only
# where they are symmetries; the exact numerics decide it (exact_decides).

def exact_decides(verdicts):
    """Over the numerics: the exact numerics (float64 action, no fit noise) decide, because the claim needs moved
    networks that are symmetries and the paper's float32 action with fit noise is not one at large eps; the paper
    numerics' verdict is shown beside it.

    verdicts: {unit label: verdict}."""
    return verdicts.get(EXACT, NOT_REPRODUCED)


def eps_set(eps, rows):
    """'eps in {0.1, 1}': the eps of the rows where rows [E] is True."""
    return "eps in {" + (", ".join(f"{e:g}" for e in sorted(float(x) for x, r in zip(eps, rows) if r)) or "none") + "}"


def rows_all_within(values, bound):
    """[E] bool: the rows of values [E, G] whose every cell has |cell| <= bound (a NaN cell has not)."""
    return np.all(np.abs(np.nan_to_num(np.asarray(values, dtype=float), nan=np.inf)) <= bound, axis=1)


def rows_within(eps, diff, margin=FIG10_MARGIN):
    """'eps in {...}': the rows of diff [E, G] whose every cell is within margin (a NaN cell is not)."""
    return eps_set(eps, rows_all_within(diff, margin))


def symmetric_rows(symmetric, rows):
    """[E] bool: the rows whose every cell is a symmetry. symmetric: [E, G] bool, or None (not measured, as in the
    paper's notebook: every row counts)."""
    return np.ones(rows, bool) if symmetric is None else np.all(np.asarray(symmetric, dtype=bool), axis=1)


def rule_symmetries(eps, symmetry_error, tolerance=SYMMETRY_TOLERANCE):
    """Every (num_g, eps) cell is a symmetry on the images pi was fitted on: its symmetry error (the largest relative
    gap between a moved network's logits and the original's there, for the pi the ensemble uses) is at most
    {tolerance:g}. Every row: reproduced; some rows: partly; none: not reproduced.

    eps: [E]; symmetry_error: [E, G] (inf or NaN: a member overflowed)."""
    error = np.nan_to_num(np.asarray(symmetry_error, dtype=float), nan=np.inf)
    rows = rows_all_within(error, tolerance)
    largest = ", ".join(f"eps {e:g}: {fmt(x)}" for e, x in zip(eps, error.max(axis=1)))
    return Result(REPRODUCED if rows.all() else PARTLY if rows.any() else NOT_REPRODUCED,
                  f"symmetries at {eps_set(eps, rows)}, not at {eps_set(eps, ~rows)}; largest error per row: {largest}",
                  f"symmetries at {eps_set(eps, rows)}", max((float(e) for e, r in zip(eps, rows) if r),
                                                               default=math.nan), "largest eps that is a symmetry")


def rule_ensemble_margin(eps, group_minus_original, symmetric=None, margin=FIG10_MARGIN):
    """In every row with eps <= 0.1, every cell is a symmetry and |group - original| <= {margin} (majority vote, every
    num_g): reproduced; only in the rows with eps <= 0.01: partly; otherwise not reproduced. A cell that is not a
    symmetry fails: it cannot support a claim about symmetry-moved networks.

    eps: [E]; group_minus_original: [E, G] vote accuracy minus the original's; symmetric: [E, G] bool (None: not
    measured)."""
    eps, diff = np.asarray(eps, dtype=float), np.abs(np.asarray(group_minus_original, dtype=float))
    within = rows_all_within(diff, margin)
    symmetries = symmetric_rows(symmetric, len(eps))
    ok, small = within & symmetries, eps <= 0.1 + 1e-12
    verdict = (REPRODUCED if small.any() and ok[small].all() else PARTLY
               if (eps <= 0.01 + 1e-12).any() and ok[eps <= 0.01 + 1e-12].all() else NOT_REPRODUCED)
    finite = np.isfinite(diff)  # an overflowing cell is NaN
    largest = np.where(finite.any(axis=1), np.where(finite, diff, -np.inf).max(axis=1), np.nan)
    rows = ", ".join(f"eps {e:g}: max |diff| {fmt(d)}" for e, d in sorted(zip(eps, largest), key=lambda t: -t[0]))
    text = (f"rows within {margin}: {eps_set(eps, within)}"
            + f"; not symmetries: {eps_set(eps, ~symmetries)}" * bool((~symmetries).any()) + f"; {rows}")
    deciding = largest[small & np.isfinite(largest)]
    return Result(verdict, text, f"within the margin and symmetries for {eps_set(eps, ok)}",
                  float(deciding.max()) if deciding.size else None, "largest |group - original| at eps <= 0.1")


def checked_rows(eps, eps_checked, symmetric):
    """(indices of the rows at the checked eps whose every cell is a symmetry, the checked eps whose rows are not)."""
    rows = symmetric_rows(symmetric, len(eps))
    present = [i for i, e in enumerate(eps) if any(abs(e - c) < 1e-9 for c in eps_checked)]
    return [i for i in present if rows[i]], [float(eps[i]) for i in present if not rows[i]]


def rule_group_beats_baselines(eps, group, baselines, symmetric=None, margin=FIG10_MARGIN, eps_checked=(1.0, 10.0)):
    """At eps = 1 and at eps = 10, group's vote accuracy averaged over num_g exceeds each baseline's by more than
    {margin} and is higher in most cells; all pairs: reproduced, some: partly, none: not reproduced. A row with a
    cell that is not a symmetry cannot be tested: its pairs count as not beating.

    eps: [E]; group and each of baselines ({name: array}): [E, G] vote accuracies; symmetric: [E, G] bool (None: not
    measured)."""
    rows, broken = checked_rows(eps, eps_checked, symmetric)
    group = np.asarray(group, dtype=float)
    pairs = {(float(eps[i]), name): group[i] - np.asarray(values, dtype=float)[i]
             for name, values in baselines.items() for i in rows}
    beats = [bool(np.nanmean(d) > margin and np.mean(d > 0) > 0.5) for d in pairs.values()]
    parts = [f"eps {e:g} vs {name}: {np.nanmean(d):+.3f}" for (e, name), d in pairs.items()]
    text = [f"{p} ({'beats' if b else 'does not beat'})" for p, b in zip(parts, beats)]
    text += [f"eps {e:g}: not a symmetry, cannot be tested" for e in broken]
    return Result(combine([REPRODUCED if b else NOT_REPRODUCED for b in beats] + [NOT_REPRODUCED] * len(broken)),
                  "; ".join(text) or "the grid has none of the checked eps", "; ".join(parts) or "not testable",
                  min((float(np.nanmean(d)) for d in pairs.values()), default=None), "smallest lead over a baseline")


def rule_group_vs_perm_interp(eps, group, perm_interp, symmetric=None, margin=FIG10_MARGIN, eps_checked=(1.0, 10.0)):
    """At eps = 1 and at eps = 10, the group ensemble is ahead of the interpolated permutation: its vote accuracy
    averaged over num_g is higher by more than {margin} (within {margin}: a tie). Ahead at both: reproduced; at one:
    partly; at neither: not reproduced. A row with a cell that is not a symmetry cannot be tested (not ahead).

    eps: [E]; group, perm_interp: [E, G] vote accuracies; symmetric: [E, G] bool (None: not measured)."""
    rows, broken = checked_rows(eps, eps_checked, symmetric)
    diffs = {float(eps[i]): np.asarray(group, float)[i] - np.asarray(perm_interp, float)[i] for i in rows}
    means = [float(np.nanmean(d)) for d in diffs.values()]
    parts = [f"eps {e:g}: {m:+.3f}" for e, m in zip(diffs, means)]
    text = [f"{p} ({'group ahead' if m > margin else 'perm_interp ahead' if m < -margin else 'tie'}; group higher in "
            f"{int(np.sum(d > 0))} of {d.size} cells)" for p, m, d in zip(parts, means, diffs.values())]
    text += [f"eps {e:g}: not a symmetry, cannot be tested" for e in broken]
    verdicts = [REPRODUCED if m > margin else NOT_REPRODUCED for m in means] + [NOT_REPRODUCED] * len(broken)
    return Result(combine(verdicts),
                  f"group - perm_interp: {'; '.join(text) or 'the grid has none of the checked eps'}",
                  ", ".join(parts) or "not testable", min(means, default=None), "group - perm_interp (smaller row)")


def rule_group_more_robust(strengths, acc_original, acc_group, n_images=None, margin=FIG11_MARGIN, chance=CHANCE):
    """At every attack strength > 0 the group ensemble's vote accuracy is not lower than the original's by more than
    the threshold, and at some strength it is higher by more than the threshold while itself above chance + {margin}
    (a gain where the ensemble is at most {margin} above chance is not counted); threshold = max({margin}, 2 sqrt(p(1-p)/n)), p the
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
                 f"ensemble is at most {margin} above chance ({chance:g}) there "
                 f"({', '.join(f'{a:.3f}' for a in group[gain & ~better])})")
    verdict = REPRODUCED if better.any() and not worse.any() else PARTLY if better.any() else NOT_REPRODUCED
    return Result(verdict, text, ", ".join(f"{x:+.3f}" for x in d[attacked]))


def significant(strengths, diff, p, alpha=ALPHA):
    """McNemar at the attacked strengths (> 0), Bonferroni-corrected: (attacked, significant gain, significant loss:
    [K] bool each, the level alpha / number of attacked strengths that p must be below)."""
    attacked = np.asarray(strengths, dtype=float) > 0
    level = alpha / max(int(attacked.sum()), 1)
    below = attacked & (np.asarray(p, dtype=float) < level)
    return attacked, below & (np.asarray(diff, dtype=float) > 0), below & (np.asarray(diff, dtype=float) < 0), level


def tested_on_a_symmetry(result, symmetry_error, tolerance):
    """result where the moved networks are symmetries (error <= tolerance); otherwise 'cannot be tested' (not
    reproduced), naming the verdict as measured (the report's table gives its numbers)."""
    if symmetry_error <= tolerance:  # NaN (overflow) is no symmetry
        return result
    return Result(NOT_REPRODUCED, f"cannot be tested: the moved networks are not symmetries (symmetry error "
                  f"{fmt(symmetry_error)} > {fmt(tolerance)}; as measured: {result.verdict})",
                  "not a symmetry", result.value, result.value_name)


def per_strength(strengths, diff, p, attacked):
    return ", ".join(f"{s:g}: {d:+.3f} (p {q:.1g})" for s, d, q, a in zip(strengths, diff, p, attacked) if a)


def rule_significant_gain(attacks, strengths, diff, p, accuracy, symmetry_error=0.0, tolerance=SYMMETRY_TOLERANCE,
                          alpha=ALPHA, chance=CHANCE, margin=FIG11_MARGIN):
    """For each attack, the group ensemble is significantly more accurate than the original at some attacked strength
    and significantly less accurate at none. Significant: McNemar's exact test on the same images gives p < {alpha:g}
    / (number of attacked strengths) (Bonferroni: a gain at any strength would count, so each attack keeps a
    family-wise error of {alpha:g}). A gain counts only where the ensemble is more than {margin} above chance (a gain
    between accuracies near chance is no robustness). Every attack: reproduced; none: not reproduced; otherwise (a gain with a
    loss elsewhere, or for one attack) partly. If the moved networks are not symmetries (symmetry error above
    {tolerance:g}) the seed cannot be tested (not reproduced).

    attacks: [A] names; strengths, diff (group - original), p (McNemar), accuracy (the group ensemble's): [A] lists
    of [K]; symmetry_error: the seed's, for the pi used."""
    verdicts, parts, candidates = [], [], []
    for name, s, d, q, acc in zip(attacks, strengths, diff, p, accuracy):
        attacked, up, down, level = significant(s, d, q, alpha)
        above = np.asarray(acc, dtype=float) > chance + margin
        gain = up & above
        verdicts.append(REPRODUCED if gain.any() and not down.any() else PARTLY if gain.any() else NOT_REPRODUCED)
        parts.append(f"{name} {per_strength(s, d, q, attacked)}: significant (p < {level:.3g}) gain at "
                     f"{int(gain.sum())}, loss at {int(down.sum())} of {int(attacked.sum())} attacked strengths"
                     + f", {int((up & ~above).sum())} gain(s) at most {margin} above chance not counted"
                     * bool((up & ~above).any()))
        candidates += list(np.asarray(d, dtype=float)[attacked & above])
    result = Result(combine(verdicts), "; ".join(parts), ", ".join(verdicts),
                    max(candidates, default=None), "largest difference above chance")
    return tested_on_a_symmetry(result, symmetry_error, tolerance)


def rule_gain_beyond_control(attacks, strengths, diff, p, accuracy, control_diff, control_p, symmetry_error=0.0,
                             tolerance=SYMMETRY_TOLERANCE, alpha=ALPHA, chance=CHANCE, margin=FIG11_MARGIN):
    """For each attack, at some attacked strength the group ensemble both gains significantly over the original (as
    in the transfer rule) and is significantly more accurate than an independently trained CNN on the same
    transferred images, so that its gain exceeds the independent network's (McNemar, p < {alpha:g} / number of
    attacked strengths, each). A gain that another network of the same kind also has is not robustness from the
    symmetry. Every attack: reproduced; some: partly; none: not reproduced. If the moved networks are not symmetries
    (symmetry error above {tolerance:g}) the seed cannot be tested (not reproduced).

    attacks: [A] names; strengths, diff and p (group vs original), accuracy (the group's), control_diff and
    control_p (group vs the independent CNN): [A] lists of [K]; symmetry_error: the seed's, for the pi used."""
    verdicts, parts, leads = [], [], []
    for name, s, d, q, acc, cd, cq in zip(attacks, strengths, diff, p, accuracy, control_diff, control_p):
        attacked, up, _, level = significant(s, d, q, alpha)
        _, ahead, behind, _ = significant(s, cd, cq, alpha)
        both = up & (np.asarray(acc, dtype=float) > chance + margin) & ahead
        verdicts.append(REPRODUCED if both.any() else NOT_REPRODUCED)
        parts.append(f"{name} group - independent {per_strength(s, cd, cq, attacked)}: a gain beyond the "
                     f"independent CNN at {int(both.sum())} of {int(attacked.sum())} attacked strengths "
                     f"(significantly behind it at {int(behind.sum())})")
        leads += list(np.asarray(cd, dtype=float)[attacked])
    result = Result(combine(verdicts), "; ".join(parts), ", ".join(verdicts), max(leads, default=None),
                    "largest group - independent")
    return tested_on_a_symmetry(result, symmetry_error, tolerance)
