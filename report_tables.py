"""The building blocks of REPORT.md's tables; each figure's tables are in its claims module (claims_fig*.py).

A table is a list of columns, each a header and a cell function (unit, Figure, run) -> text; run_table() makes one
row per run of seed 0 (the paper's draw) of every saved figure, with the spread over the other seeds where there
are several. The Figure objects are make_report.py's (f[key]: a saved array, f.settings: the saved .json); a
missing key raises report_claims.DataError, which the report shows as a data error instead of the table.

Contents: legend_Qs, table, item, last_finite, col, run_table, paper_column, orbit_column, power_of_ten; for the
CIFAR-10 figures spread, largest_p and describe_cifar_source.
"""
import math
import os

import numpy as np

import paper_numbers as paper
from verdict_rules import fmt


def legend_Qs(labels, activation=None, entries_of_V=0):
    """The Q of the paper's legend labels ('Q=-1364'); with an activation and the number of entries of V, moved to
    the zero convention (the rules'): plus the paper code's constant per entry, from models.ACTIVATIONS."""
    shift = 0.0
    if activation is not None:
        from models import get_activation
        shift = get_activation(activation).paper_constant * entries_of_V
    return [paper.legend_Q(label) + shift for label in labels]


def table(headers, rows):
    rows = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + rows + [""] if rows else []


def item(values, index):
    """values[index], or None where there is no such entry (no reference for this run)."""
    return values[index] if values is not None and index < len(values) else None


def last_finite(values):
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def col(key, form=fmt, seeds=False, mark=False):
    """A table cell: run r's f[key] in seed 0; seeds=True adds the mean ± std over the seeds where there are
    several (runs that diverged or never reached the loss left out), mark=True the step where it diverged."""
    def cell(unit, f, r):
        values = f[key]
        per_seed = values[:, r] if np.ndim(values) >= 2 else values[r:r + 1]
        text = form(per_seed[0])
        if seeds and len(per_seed) > 1:  # the spread over the seeds that converged (steps) and did not diverge
            ok = per_seed[(f["diverged_at"][:, r] < 0) & (per_seed >= 0 if key.startswith("steps") else True)]
            if ok.size:
                text += f" ({form(np.mean(ok))} ± {fmt(np.std(ok))}, {len(ok)} of {len(per_seed)} seeds)"
        diverged_at = np.atleast_2d(f["diverged_at"])[0, r]
        return text + (f" (diverged at step {int(diverged_at):,})" if mark and diverged_at >= 0 else "")
    return cell


def run_table(figures, columns, rows=lambda f: np.shape(np.atleast_2d(f["diverged_at"]))[1], first="activation"):
    """One row per run (rows(f) of them) of every figure ({unit: Figure}), the unit in a first column (none if
    first=None: a single file); columns: [(header, cell(unit, f, r))]."""
    return table([first] * bool(first) + [h for h, _ in columns],
                 [[unit] * bool(first) + [cell(unit, f, r) for _, cell in columns] for unit, f in figures.items()
                  for r in range(rows(f))])


def paper_column(reference, form=fmt):
    """The paper code's number for run r of an activation: reference[activation][r] (a dict: by init std)."""
    def cell(unit, f, r):
        values = reference.get(unit)
        return form(values.get(float(f["init_std"][r])) if isinstance(values, dict) else item(values, r))
    return cell


def orbit_column(key, form=fmt):
    """A same-function table cell: seed 0's values of f[key] along the orbit of run r (ends and middle)."""
    def cell(unit, f, r):
        values = np.atleast_2d(f[key][0])[r]
        return " / ".join(form(values[i]) for i in (0, len(values) // 2, -1))
    return cell


def power_of_ten(x):
    """A setting such as 0.01 as the report writes it: '1e-2'."""
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")


def spread(values, form="{:+.3f}"):
    """'mean ± std' over the seeds of values [S] (the value alone for one seed)."""
    values = np.asarray(values, dtype=float)
    return form.format(values.mean()) + (f" ± {values.std():.3f}" if values.size > 1 else "")


def largest_p(p):
    """McNemar's p, the largest over the seeds of p [S]."""
    top = float(np.max(p))
    return "p < 1e-300" if top == 0 else f"p ≤ {top:.1g}" if np.size(p) > 1 else f"p = {top:.1g}"


def describe_cifar_source(source, folder):
    kind = {"official": "the official CIFAR-10 release (torchvision's MD5 check passed)",
            "unverified": "a copy of CIFAR-10 that fails torchvision's MD5 check (for example a re-encoded copy, or a "
                          "test fixture); accuracies can differ slightly from those on the official files"}
    return (f"CIFAR-10 data: {kind.get(source, repr(source))}; read from a folder named "
            f"`{os.path.basename(os.path.normpath(str(folder)))}`.")


