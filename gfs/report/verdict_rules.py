"""What a claim of REPORT.md is (Claim, Files, Section), how its verdicts combine, and the helpers of its tables.

A claim's measurement turns a saved Figure into its rule's keyword arguments (runs(): per seed); the rule takes
those numbers (never files) and returns a Result. A rule docstring's first paragraph is the rule as the report
prints it (docs/report.md, *Rules*), its last gives the shapes. No verdict: Unjudged, DataError.

Adding a claim: one Claim entry in its figure's SECTIONS, its rule beside it (or a shared one: toy_rules.py for
the trends of |Q| and the checks of Figs. 3-9), and the rule's test, both ways. A new figure: its claims module and
one entry in make_report.CLAIM_MODULES.
"""

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np


REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_TESTED = "not tested"  # a unit (activation, attack) the rule has no reference for: left out of the verdict
CANNOT_TEST = "cannot be tested"  # the data cannot decide the claim: no evidence either way, unlike not reproduced
DEPENDS = "depends on the convention"  # the verdict where the paper's and the zero convention of Q disagree
BROKEN = "broken data"                 # a check of the figure's construction failed: its claims get no verdict
PASSES, FAILS = "passes", "fails"      # a check's result (its rule's reproduced / otherwise)
NOT_RUN, DATA_ERROR = "not run", "data error"  # no saved data / unreadable data: never verdicts
EVALUATION_FAILED = "evaluation failed"  # a sanity check of Fig. 11's robustness evaluation failed


class Result(NamedTuple):
    """A rule's answer. deciding: the deciding effect in a few words (summary table); value (named value_name), p:
    the number that decides and its p-value, if any (reported over seeds); columns, rows: the reading as a table,
    printed instead of text after lead (a row: a label suffix, the verdict, one cell per column)."""
    verdict: str
    text: str
    deciding: str = ""
    value: Optional[float] = None
    value_name: str = "deciding number"
    p: Optional[float] = None
    columns: tuple = ()
    rows: tuple = ()
    lead: str = ""


class PerSeed(list):
    """A measurement over seeds: one dict of the rule's keyword arguments per seed, seed 0 first."""


def _tested(verdicts):
    """The verdicts (a list, or {unit label: verdict}) of the units that had a reference to test against."""
    return [v for v in (verdicts.values() if isinstance(verdicts, dict) else verdicts) if v != NOT_TESTED]


def combine(verdicts):
    """Over the {units}: reproduced if reproduced for each, not reproduced if for none, partly otherwise; one that
    cannot be tested makes reproduced partly (none: cannot be tested); one without a reference is left out."""
    tested = _tested(verdicts)
    decided = [v for v in tested if v != CANNOT_TEST]
    if not decided:
        return CANNOT_TEST if tested else NOT_REPRODUCED
    if all(v == REPRODUCED for v in decided):
        return REPRODUCED if len(decided) == len(tested) else PARTLY
    return NOT_REPRODUCED if all(v == NOT_REPRODUCED for v in decided) else PARTLY


def sd(values):
    """The sample standard deviation (ddof = 1) of values; 0 for one value."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 and np.ptp(values) > 0 else 0.0  # equal: 0, no round-off


def mean_sd(values, with_n=True):
    """'mean ± sd (n = N)' of values (sd: ddof = 1); with_n=False: without '(n = N)' (the text gives N)."""
    values = np.asarray(values, dtype=float)
    return fmt(values.mean()) + (f" ± {fmt(sd(values))}" + f" (n = {values.size})" * with_n if values.size > 1 else "")


def p_range(ps):
    """'p = x', or 'p from a to b' over seeds (the largest first: the weakest evidence)."""
    ps = np.asarray([p for p in ps if p is not None], dtype=float)
    if not ps.size:
        return ""
    top, low = (f"{x:.1g}" if x > 0 else "< 1e-300" for x in (ps.max(), ps.min()))
    return f"p = {top}" if top == low else f"p from {top} to {low}"


def over_seeds(results):
    """Over seeds: the seeds' verdicts combined as by combine(); the text says in how many seeds the rule gives
    reproduced and the mean ± sd (ddof = 1) of the deciding number."""
    k, n, p = sum(r.verdict == REPRODUCED for r in results), len(results), p_range([r.p for r in results])
    values = np.array([float(f"{r.value:.6g}") for r in results  # .6g: no round-off in the spread
                       if r.value is not None and np.isfinite(r.value)])
    names = {r.value_name for r in results if r.value is not None}
    if len(names) > 1:  # the deciding point differs between seeds (a radius, a row): say so
        results = [r._replace(value_name=r.value_name.split(" at ")[0] + " at each seed's deciding point")
                   for r in results]
    spread = (f"{results[0].value_name} {mean_sd(values)}" + f" [{fmt(values.min())}, {fmt(values.max())}]"
              * (values.size > 1)) if values.size else ""
    fails = [f"seed {i}: {r.verdict} ({r.text})" for i, r in enumerate(results) if r.verdict != REPRODUCED]
    # every seed holds: the spread says enough; otherwise the first failing seed's reading, and how many more fail
    text = "; ".join([f"holds in {k} of {n} seeds"] + [spread] * bool(spread) + [p] * bool(p)
                     + ([] if fails or spread else [f"seed 0: {results[0].text}"]) + fails[:1]
                     + [f"{len(fails) - 1} more seeds fail"] * (len(fails) > 1))
    return Result(combine([r.verdict for r in results]), text, seeds_deciding(results, values, p),
                  float(values.mean()) if values.size else None, results[0].value_name)


def seeds_deciding(results, values, p):
    """The summary's words for a claim judged per seed: the deciding number's mean ± sd (its n only where not every
    seed has one), else each distinct deciding effect with its number of seeds."""
    n, k = len(results), sum(r.verdict == REPRODUCED for r in results)
    if values.size:
        return (f"{results[0].value_name} {mean_sd(values, with_n=values.size < n)}" + f", {p}" * bool(p)
                + f", holds in {k} of {n} seeds")
    counts = Counter(r.deciding or r.verdict for r in results)  # in order of first appearance
    if len(counts) == n > 1:  # every seed its own reading: the count says more
        return f"holds in {k} of {n} seeds" + f", {p}" * bool(p)
    return ", ".join(f"{d} ({'all ' * (c == n)}{c} of {n} seeds)" for d, c in counts.items()) + f", {p}" * bool(p)


def without_diverged(rule, diverged_at=None, labels=None, **arguments):
    """A diverged run is named and left out: the verdict is partly at best, and with fewer than two runs left the
    claim cannot be tested. Arguments with one entry per run are filtered; labels names the runs."""
    diverged = np.asarray(diverged_at if diverged_at is not None else [], dtype=int) >= 0
    if not diverged.any():
        return rule(**arguments)
    names = [f"{labels[i] if labels is not None else f'run {i}'} diverged at step {int(diverged_at[i]):,}"
             for i in np.flatnonzero(diverged)]
    if (~diverged).sum() < 2:
        return Result(CANNOT_TEST, "too few runs left: " + "; ".join(names), f"{diverged.sum()} run(s) diverged")
    r = rule(**{k: np.asarray(v)[~diverged] if np.ndim(v) > 0 and len(v) == len(diverged) else v
                for k, v in arguments.items()})
    return Result(PARTLY if r.verdict == REPRODUCED else r.verdict, "; ".join([r.text] + names) + " (left out)",
                  f"{r.deciding} ({diverged.sum()} run(s) diverged)", r.value, r.value_name, r.p)


def apply(rule, measurement):
    """One unit's Result: the rule on its measurement, or on each seed's, combined by over_seeds."""
    if isinstance(measurement, PerSeed):
        return over_seeds([without_diverged(rule, **seed) for seed in measurement])
    return without_diverged(rule, **measurement)


def fmt(x):
    """Short number: 3 significant digits ('-' for None; format gives 'nan', 'inf' and '-inf' itself)."""
    return "-" if x is None else f"{float(x):.3g}"


def fmt_steps(s):
    return "never" if s is None or s < 0 else f"{int(s):,}"


def table(headers, rows):
    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in (headers, *rows)]
    return [lines[0], "|" + "---|" * len(headers), *lines[1:], ""] if len(lines) > 1 else []


def item(values, index):
    """values[index], or None where there is no such entry (no reference for this run)."""
    return values[index] if values is not None and index < len(values) else None


def last_finite(values):
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def col(key, form=fmt, seeds=False, mark=False):
    """A table cell: run r's f[key] in seed 0; seeds=True adds the mean ± std over the seeds (those that diverged or
    never reached the loss left out, and then counted), mark=True the step where it diverged."""
    def cell(unit, f, r):
        values = f[key]
        per_seed = values[:, r] if np.ndim(values) >= 2 else values[r:r + 1]
        text = form(per_seed[0])
        if seeds and len(per_seed) > 1:  # the spread over the seeds that converged (steps) and did not diverge
            ok = per_seed[(f["diverged_at"][:, r] < 0) & (per_seed >= 0 if key.startswith("steps") else True)]
            if ok.size:
                text += (f" ({form(np.mean(ok))} ± {fmt(sd(ok))}" + f", {len(ok)} of {len(per_seed)} seeds" * (
                    len(ok) < len(per_seed)) + ")")
        diverged_at = np.atleast_2d(f["diverged_at"])[0, r]
        return text + (f" (diverged at step {int(diverged_at):,})" if mark and diverged_at >= 0 else "")
    return cell


def run_table(figures, columns, rows=lambda f: np.shape(np.atleast_2d(f["diverged_at"]))[1], first="activation"):
    """One row per run (rows(f) of them) of every figure ({unit: Figure}), the unit in a first column (none if
    first=None: a single file); columns: [(header, cell(unit, f, r))]."""
    return table([first] * bool(first) + [h for h, _ in columns],
                 [[unit] * bool(first) + [cell(unit, f, r) for _, cell in columns] for unit, f in figures.items()
                  for r in range(rows(f))])


def both_conventions(zero, paper):
    """One cell for a quantity in both Q conventions (cell(unit, f, r) each): the value once where they agree
    (linear, ReLU), else 'zero [paper code's]'; its header says '<name> from 0 [paper code's]'."""
    def cell(unit, f, r):
        z, p = zero(unit, f, r), paper(unit, f, r)
        return z if z == p else f"{z} [{p}]"
    return cell


def paper_column(reference, form=fmt):
    """The paper code's number for run r of an activation: reference[activation][r] (a dict: by init std)."""
    def cell(unit, f, r):
        values = reference.get(unit)
        return form(values.get(float(f["init_std"][r])) if isinstance(values, dict) else item(values, r))
    return cell


def saved_setting(figures, key, form=str, absent="as saved"):
    """form(a setting) of figures ({unit: Figure}) for a claim's or table's text; different values each with their
    units ('0.01 (linear, relu) / 0.05 (tanh)'); `absent` where none is saved; a figure lacking it: DataError."""
    values = {}
    for unit, f in figures.items():
        values.setdefault(repr(f.setting(key)), (f.setting(key), []))[1].append(unit)
    if len(values) > 1:
        return " / ".join(f"{form(value)} ({', '.join(units)})" for value, units in values.values())
    return form(next(iter(values.values()))[0]) if values else absent


def common_setting(figures, key, absent=None):
    """The setting all figures ({unit: Figure}) saved alike (`absent` if none); DataError if one lacks it or differs."""
    values = {repr(f.setting(key)): f.setting(key) for f in figures.values()}
    if len(values) > 1:
        raise DataError(f"the saved figures {', '.join(f.name for f in figures.values())} differ in setting {key!r}")
    return next(iter(values.values())) if values else absent


def power_of_ten(x):
    """A setting such as 0.01 as the report writes it: '1e-2'."""
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")


def converged_loss(figures):
    """The loss whose first crossing counts the steps (Figs. 6-7), as saved ('1e-2')."""
    return saved_setting(figures, "converged_loss", power_of_ten, "threshold")


def spread(values, form="{:+.3f}"):
    """'mean ± sd' over the seeds of values [S], sd with ddof = 1 (the value alone for one seed)."""
    values = np.asarray(values, dtype=float)
    return form.format(values.mean()) + (f" ± {sd(values):.3f}" if values.size > 1 else "")


TOY_FIGURES = "make toy-figures OUT={out}"  # the command that makes Figs. 3-9 (the Makefile holds seeds and flags)


def notebook_command(notebook):
    """The command that makes a CIFAR notebook's files ({out}: the report's folder)."""
    return f"python run_notebook.py {notebook} --out {{out}}"


class DataError(Exception):
    """A saved file cannot be read, is incomplete or lacks something a claim needs; the message says what."""


class Unjudged(Exception):
    """A claim that gets no verdict by design; `verdict` is what the report shows instead."""
    verdict = NOT_RUN


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


def runs(f, name=None, **keys):
    """The rule's arguments, one dict per seed (PerSeed; a single seed: its dict). A str in keys names a saved array:
    with a leading seed axis ([seed, run, ...]) each seed gets its row, else all share it; other values pass as they
    are. Each dict also gets diverged_at and, from the key `name`, the runs' labels ('init std 0.1')."""
    diverged = np.atleast_2d(f["diverged_at"])  # [seed, run]

    def value(key, seed):
        if not isinstance(key, str):
            return key  # a constant argument
        array = f[key]
        return array[seed] if np.ndim(array) >= 2 and len(array) == len(diverged) else array

    measured = []
    for s in range(len(diverged)):
        names = None if name is None else [f"{name.replace('_', ' ')} {x:.3g}" for x in value(name, s)]
        measured.append(dict({arg: value(key, s) for arg, key in keys.items()}, diverged_at=diverged[s], labels=names))
    return measured[0] if len(measured) == 1 else PerSeed(measured)


@dataclass(frozen=True)
class Files:
    """The saved files a claim reads: DIR/<pattern, {} = unit>.npz and .json per unit; a '*' stands for one part of
    a name (no '_' or '/'), such as a quick run's settings (g5 for g200): the one saved figure that matches is read."""
    pattern: str
    units: tuple              # the paper's: activations, histogram shapes or attacks ("" for a single file)
    make: str                 # the command that makes them ({out}: the report's folder; see notebook_command)
    kind: str = "activations"
    discover: bool = False    # also every other activation with saved files
    notebook: str = ""        # a CIFAR notebook: the not-run note says whether CIFAR-10 was there
    names: tuple = ()         # the units' names in the report, if not the units themselves

    def label(self, unit):
        return dict(zip(self.units, self.names)).get(unit, unit)


@dataclass(frozen=True)
class Claim:
    figure: str               # "Fig. 3"
    short: str                # the claim in a few words (summary table)
    text: object              # the claim in one sentence: a str, or {unit: Figure} -> str naming saved settings
    files: Files
    measure: Callable         # Figure -> dict of the rule's keyword arguments (or PerSeed of such dicts)
    rule: Callable            # (**measurement) -> Result; its docstring is the rule in the report
    paper: Optional[Callable] = None  # () -> {unit: the rule's arguments from the paper code's numbers}
    over: Callable = combine  # the units' verdicts -> one; its docstring follows the rule's
    conventions: bool = False  # measure(f, convention): judged in both conventions of Q (both_conventions)
    check: bool = False       # an identity of the construction: the checks table; failing marks the figure broken
    brief: bool = False       # the section gives each unit's deciding numbers only: its table has every number


@dataclass(frozen=True)
class Section:
    title: str
    claims: tuple
    tables: object  # (get: Files -> {unit: Figure}) -> lines; or a tuple of such, each shown (or its error) apart
