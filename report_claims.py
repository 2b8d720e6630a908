"""What a claim of REPORT.md is: the saved files it reads (Files), its words, measurement and rule (Claim), the
claims and tables of one figure (Section), and the ways a claim gets no verdict (DataError, Unjudged).

Each figure's claims module (claims_fig3.py, claims_fig4_5.py, claims_fig6.py, claims_fig7.py, claims_fig9.py,
claims_fig10.py, claims_fig11.py) holds its claims side by side with their measurements, rules and tables, and
exports SECTIONS; make_report.CLAIM_MODULES lists those modules once, in the report's order.

Adding a claim: one Claim entry in its figure's SECTIONS, its rule beside it (or a shared one: toy_rules.py for
the trends of |Q| and the checks of Figs. 3-9), and the rule's test, both ways. A new figure: its claims module and
one entry in make_report.CLAIM_MODULES.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from verdict_rules import PerSeed, combine

TOY_FIGURES = "make toy-figures OUT={out}"  # the command that makes Figs. 3-9 (the Makefile holds seeds and flags)
NOT_RUN, DATA_ERROR = "not run", "data error"  # no saved data / unreadable data: never verdicts


def notebook_command(notebook):
    """The command that makes a CIFAR notebook's files ({out}: the report's folder)."""
    return f"python run_notebook.py {notebook} --out {{out}}"


class DataError(Exception):
    """A saved file cannot be read, is incomplete or lacks something a claim needs; the message says what."""


EVALUATION_FAILED = "evaluation failed"


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
    """The rule's arguments, one dict per seed (PerSeed; a single seed: its dict). A string value names a saved
    key: an array with a leading seed axis ([seed, run, ...], as the training scripts save per-run numbers) gives
    each seed its row, any other array is shared by all seeds; anything else is passed as it is. Each dict also
    gets the runs' divergence steps and, from the key `name`, their names ('init std 0.1')."""
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
    """The saved files a claim reads: DIR/<pattern with {} = unit>.npz and .json, one pair per unit. A '*' in the
    pattern stands for one part of a file name (no '_' or '/'), such as the settings a quick run writes into its
    names (g5 for g200): the one saved figure that matches is read."""
    pattern: str
    units: tuple              # the paper's: activations, histogram shapes or attacks ("" for a single file)
    make: str                 # the command that makes them ({out}: the report's folder; see notebook_command)
    kind: str = "activations"
    discover: bool = False    # also every other activation with saved files
    plots: bool = True        # show their .png in the section
    notebook: str = ""        # a CIFAR notebook: the not-run note says whether CIFAR-10 was there
    names: tuple = ()         # the units' names in the report, if not the units themselves

    def label(self, unit):
        return dict(zip(self.units, self.names)).get(unit, unit)


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
    conventions: bool = False  # measure(f, convention): judged in both conventions of Q (both_conventions)
    check: bool = False       # an identity of the construction: the checks table; failing marks the figure broken


@dataclass(frozen=True)
class Section:
    title: str
    claims: tuple
    tables: Callable          # (get: Files -> {unit: Figure}) -> lines: the measured and the paper's numbers


