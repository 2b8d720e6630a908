#!/usr/bin/env python3
"""Write DIR/REPORT.md: which of the paper's claims hold in the figure data saved there (read by saved_figures.py).

usage: python make_report.py [--out DIR] [--cifar-dir DIR]

Each claim is registered once, in its figure's claims module (CLAIM_MODULES; what a claim is: verdict_rules.py), and
check() judges each: a verdict, or why there is none (a data error or a failing check also makes the exit status 1).
What the verdicts mean, how they are judged and the report's layout: docs/report.md.
"""
import argparse
import datetime
import inspect
import os
import re
import sys
from dataclasses import dataclass
from functools import partial

import numpy as np

from gfs.report import claims_fig3, claims_fig4_5, claims_fig6, claims_fig7, claims_fig9, claims_fig10, claims_fig11
from gfs.report.claims_fig10 import EXACT, exact_decides
from gfs.report.saved_figures import Figure, Loader, one_line
from gfs.report.toy_rules import CONVENTIONS, Q_CONVENTION, conventions_result, off_data_table
from gfs.report.verdict_rules import (BROKEN, CANNOT_TEST, DATA_ERROR, DEPENDS, EVALUATION_FAILED, FAILS,
                                      NOT_REPRODUCED, NOT_RUN, NOT_TESTED, PARTLY, PASSES, REPRODUCED, Claim, DataError,
                                      PerSeed, Result, Unjudged, apply, combine, table)
from gfs.runs.saved_files import write_atomic

# The report's figures, in order: each module's SECTIONS (and, for the moved networks of Figs. 6 and 9, OFF_DATA).
CLAIM_MODULES = (claims_fig3, claims_fig4_5, claims_fig6, claims_fig7, claims_fig9, claims_fig10, claims_fig11)
SECTIONS = tuple(section for module in CLAIM_MODULES for section in module.SECTIONS)
OFF_DATA = {name: files for module in CLAIM_MODULES for name, files in getattr(module, "OFF_DATA", {}).items()}
# ----------------------------------------------------------------------------------------------
# The loop: load, measure, judge; then render

def doc_text(function, **fields):
    """The first paragraph of a docstring on one line, {fields} and the keyword defaults filled in."""
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    return " ".join(inspect.getdoc(function).split("\n\n")[0].split()).format(**defaults, **fields)


IN_FULL = "In full: docs/report.md, *Rules*."  # a long rule's second paragraph: the first is the gist the report prints


def rule_text(rule):
    """The rule as the report prints it: doc_text(rule), and IN_FULL where that is its docstring's second paragraph."""
    return doc_text(rule) + f" {IN_FULL}" * (inspect.getdoc(rule).split("\n\n")[1:2] == [IN_FULL])


def combine_units(over, results, brief=False):
    """{unit: Result} -> one Result: the verdicts combined by `over`, texts and deciding numbers joined. Where the
    exact numerics decide, the other numerics show their deciding numbers only; brief (Claim.brief): every unit does,
    without its verdict where each unit's is the claim's."""
    if list(results) == [""]:
        return results[""]._replace(text=results[""].deciding) if brief and results[""].deciding else results[""]
    shown_only, tabled = over is exact_decides or brief, all(r.rows for r in results.values())
    verdict = over({u: r.verdict for u, r in results.items()})
    uniform = brief and all(r.verdict == verdict for r in results.values())  # the verdict says each unit's
    summary = units_text({u: r.deciding for u, r in results.items()})
    unit_text = {u: r.deciding if shown_only and (brief or u != EXACT) else r.text for u, r in results.items()}
    text = summary if uniform else "; ".join(f"{u}: {r.verdict} ({unit_text[u]})" for u, r in results.items())
    decided = over is exact_decides and EXACT in results  # the summary's "decided by" says so: exact's numbers only
    return Result(verdict, text, results[EXACT].deciding if decided else summary,
                  columns=next(iter(results.values())).columns * tabled,
                  rows=tuple((u + row[0], *row[1:]) for u, r in results.items() for row in r.rows) * tabled)


def units_text(readings):
    """{unit: deciding effect} -> the summary's words: units with the same reading named together ('linear, relu: 50
    (all 10 of 10 seeds)'), and an ending every reading shares (', holds in 8 of 8 seeds') said once, after them."""
    by_text = {}
    for unit, text in readings.items():
        by_text.setdefault(text, []).append(unit)
    texts = list(by_text)
    ending = os.path.commonprefix([t[::-1] for t in texts])[::-1] if len(texts) > 1 else ""
    cut = min((i for i in (ending.find(", "), ending.find(" (")) if i >= 0), default=-1)  # from a clause's start
    ending = ending[cut:] if cut >= 0 and len(ending) - cut >= 10 and ending.count("(") == ending.count(")") else ""
    middles = [t[:len(t) - len(ending)] for t in texts]
    name = os.path.commonprefix(middles) if len(texts) > 1 else ""  # a value's name, 'relative difference '
    name = name if re.fullmatch(r"[a-z][a-z ]*[a-z] ", name) and all(
        re.fullmatch(r"[-+0-9.e± ]+", m[len(name):]) for m in middles) else ""
    body = "; ".join(f"{', '.join(units)}: {middle[len(name):]}" for middle, units in zip(middles, by_text.values()))
    return f"{name.strip()}, " * bool(name) + body + f"; each: {ending.strip(', ')}" * bool(ending)


@dataclass
class Checked:
    claim: Claim
    verdict: str              # a verdict, NOT_RUN or DATA_ERROR
    text: str
    deciding: str = ""
    quick: bool = False
    note: str = ""            # for the section: how to make the missing data
    claim_text: str = ""      # the claim in one sentence, its settings filled in from the saved .json
    decided_by: str = ""      # which data decide it (summary table)
    reading: object = None    # the Result whose columns and rows the section shows as a table (instead of text)


def claim_text(claim, figures):
    """claim.text, or claim.text(figures) ({unit: Figure}) where it reads their settings (one missing: DataError)."""
    return claim.text if isinstance(claim.text, str) else claim.text(figures)


def decided_by(claim, figures):
    """Which saved data decide the claim, in a few words: the exact numerics, or how many units and seeds were read."""
    def seeds(f):
        if "diverged_at" in f.data:
            return len(np.atleast_2d(f.data["diverged_at"]))
        return int(np.size(f.data["seeds"])) if "seeds" in f.data else 1
    counts, units = sorted({seeds(f) for f in figures.values()}), [u for u in figures if u]
    parts = [EXACT if claim.over is exact_decides else f"{len(units)} {claim.files.kind}"] * bool(units)
    if counts and counts[-1] > 1:
        parts.append(f"{counts[0]}" + f"-{counts[-1]}" * (len(counts) > 1) + " seeds")
    return ", ".join(parts) or "one run"


def check(claim, loader, cifar_dir):
    """One claim against the saved data: a verdict, or not run, or a data error (never a verdict)."""
    loaded = loader.load(claim.files)
    errors, results = [str(f) for f in loaded.values() if isinstance(f, DataError)], {}
    figures = {u: f for u, f in loaded.items() if isinstance(f, Figure)}
    try:
        sentence = claim_text(claim, figures)
    except DataError as error:
        sentence, errors = claim_text(claim, {}), errors + [f"{error} (the claim's text needs it)"]
    if not errors and not figures:
        why, note = not_run_note(claim.files, loader.out_dir, cifar_dir)
        return Checked(claim, NOT_RUN, why, why, note=note, claim_text=sentence)
    for unit, f in figures.items() if not errors else ():
        try:
            results[unit] = ({c: apply(claim.rule, claim.measure(f, c)) for c in CONVENTIONS} if claim.conventions
                             else apply(claim.rule, every_run(claim.measure(f)) if claim.check else claim.measure(f)))
        except Unjudged as status:  # no verdict by design: data from before the measurement, or a failed evaluation
            return Checked(claim, status.verdict, f"{unit}: {status}" if unit else str(status), status.verdict,
                           claim_text=sentence)
        except Exception as error:  # a wrong shape or type in the file: reported, never a verdict
            errors.append(str(error) if isinstance(error, DataError) else
                          f"{f.name}.npz cannot be checked ({one_line(error)})")
    if errors:
        return Checked(claim, DATA_ERROR, "; ".join(errors), errors[0], claim_text=sentence)
    missing = ", ".join(u for u, f in loaded.items() if f is None)
    result = (conventions_result(claim.over, results, partial(combine_units, brief=claim.brief)) if claim.conventions
              else combine_units(claim.over, results, claim.brief))
    note = f"Not run for {missing}: make it with `{claim.files.make.format(out=loader.out_dir)}`." if missing else ""
    return Checked(claim, result.verdict, result.text + f"; not run for {missing}" * bool(missing), result.deciding,
                   any(f.quick for f in figures.values()), note, sentence, decided_by(claim, figures),
                   result._replace(lead=result.lead + f"; not run for {missing}" * bool(missing)))


def every_run(measured):
    """A check judges every run, a diverged one too (its rule gets no diverged_at): an identity of the construction
    holds before training, and a check that needs a trained run says itself which it could check."""
    if isinstance(measured, PerSeed):
        return PerSeed(dict(m, diverged_at=None) for m in measured)
    return dict(measured, diverged_at=None)


def mark_broken(checked, no_verdict):
    """Each figure with a failing check: its claims' verdicts not in no_verdict become BROKEN, naming the check."""
    failing = {}
    for c in checked:
        if c.claim.check and c.verdict not in (REPRODUCED,) + no_verdict:
            failing.setdefault(c.claim.figure, []).append(c.claim.short)
    for c in checked:
        if not c.claim.check and c.claim.figure in failing and c.verdict not in no_verdict:
            c.text = (f"the figure's data are broken: the check(s) {'; '.join(failing[c.claim.figure])} failed, so no "
                      f"verdict (as measured: {c.verdict}: {c.text})")
            c.verdict, c.deciding = BROKEN, f"check failed: {'; '.join(failing[c.claim.figure])}"
            c.reading = None  # the text says why there is no verdict


def not_run_note(files, out, cifar_dir):
    """(why there are no data, in a few words: the claim's text and summary cell; the section's note on making them)."""
    if not files.notebook:
        return "no data", f"**{NOT_RUN}**: no saved data in `{out}`. Make it with `{files.make.format(out=out)}`."
    if cifar_dir is not None and os.path.isfile(os.path.join(cifar_dir, "cifar-10-batches-py", "data_batch_1")):
        return "notebook failed (CIFAR-10 present)", (
            f"**{NOT_RUN}**: no saved data for this figure in `{out}`, although CIFAR-10 is present in `{cifar_dir}`: "
            f"the notebook did not finish. Run `python run_notebook.py {files.notebook} --out {out} --cifar-dir "
            f"{cifar_dir}` to see its error.")
    why = "skipped: CIFAR-10 not available" if cifar_dir is not None else "skipped: no data (CIFAR-10 missing?)"
    return why, (
        f"**{NOT_RUN}**: no saved data for this figure in `{out}`. " + (
            f"CIFAR-10 was not available: `{cifar_dir}` holds no `cifar-10-batches-py/`." if cifar_dir is not None
            else "CIFAR-10 was probably not available (offline and no data), or the notebook failed.")
        + " Provide CIFAR-10 with `make figures CIFAR_DIR=/path` where /path contains `cifar-10-batches-py/` (the "
        "official python release), or let the notebooks download it into `data/` (the default CIFAR_DIR) when online. "
        f"Then run `python run_notebook.py {files.notebook} --out {out} --cifar-dir /path` and `python make_report.py "
        f"--out {out}` (or `make figures CIFAR_DIR=/path`, which does both).")


def label(verdict, quick, check=False):
    if check and verdict not in (NOT_RUN, DATA_ERROR):
        verdict = PASSES if verdict == REPRODUCED else FAILS
    return verdict + " (smoke test)" * (quick and verdict not in (NOT_RUN, DATA_ERROR, BROKEN, EVALUATION_FAILED))


def render_claim(c, shown):
    """The claim's lines in its section. shown: {rule text: the claim that printed it first} (a shared rule: once)."""
    claim, several = c.claim, len(c.claim.files.units) > 1 or c.claim.files.discover
    # over the units: the usual combination is in the legend; another (the exact numerics decide) is stated here
    over = doc_text(claim.over, units=claim.files.kind) if several and claim.over != combine else ""
    rule = rule_text(claim.rule) + f" {over}" * bool(over)  # the key of `shown`; printed with `over` once
    printed = rule.replace(over, f"{over.split(':')[0]}: as above.") if over and over in shown else rule
    shown.setdefault(over, claim.short) if over else None
    head = (f"**No verdict: {c.verdict}.**" if c.verdict in (DATA_ERROR, EVALUATION_FAILED, NOT_RUN) else
            f"**{'Check' if claim.check else 'Verdict'}: {label(c.verdict, c.quick, claim.check)}.**")
    lines = [f"**{'Check' if claim.check else 'Claim'} ({claim.figure}).** {c.claim_text}", ""]
    if claim.check and c.verdict == REPRODUCED:  # an identity that held: one line, its numbers in the checks table
        lines = [f"**Check ({claim.figure}): {label(c.verdict, c.quick, True)}.** {c.claim_text}", ""]
    elif c.reading is not None and c.reading.rows:  # the rule's reading as a table: one row per unit (and convention)
        lines += [f"{head}" + f" {c.reading.lead}." * bool(c.reading.lead), ""]
        lines += table([claim.files.kind.rstrip("s"), "verdict", *c.reading.columns], c.reading.rows)
    else:
        lines += [f"{head} {c.text}.", ""]
    lines += [f"*Rule:* as for \"{shown[rule]}\" above.", ""] if rule in shown else [f"*Rule:* {printed}", ""]
    shown.setdefault(rule, claim.short)
    if claim.paper is not None and c.verdict not in (NOT_RUN, DATA_ERROR, EVALUATION_FAILED):
        ref = combine_units(claim.over, {u: apply(claim.rule, m) for u, m in claim.paper().items()})
        lines += [f"*The same rule on the paper code's numbers {'[C]' if claim.files.notebook else '[R]'}:* "
                  f"{ref.verdict} ({ref.text}).", ""]
    return lines


def render_section(section, checked, loader, errors, shown):
    """The section's lines; a data error met in its tables is added to errors; shown: the rules printed so far."""
    figures = {f.name: f for c in section.claims for f in loader.get(c.files).values()}
    images = [f"![]({n}.png)" for n in figures  # the path names it: no alt text, a shorter page
              if os.path.isfile(os.path.join(loader.out_dir, n + ".png"))]
    lines = [f"## {section.title}", ""] + ([" ".join(images), ""] if images else [])
    if any(c.quick for c in checked):
        lines += ["> **Smoke-test data** (`--quick`): the verdicts below are smoke-test values of the rules on tiny "
                  "settings, not a reproduction of the paper.", ""]
    lines += [line for c in checked for line in render_claim(c, shown)]
    lines += [line for note in dict.fromkeys(c.note for c in checked if c.note) for line in (note, "")]
    for tables in section.tables if isinstance(section.tables, tuple) else (section.tables,):  # each on its own
        try:
            lines += tables(loader.get)
        except Exception as error:
            message = str(error) if isinstance(error, DataError) else one_line(error)
            errors += [f"{section.title.split(':')[0]} table: {message}"] * (not any(message in e for e in errors))
            lines += [f"*Table not shown ({DATA_ERROR}):* {message}.", ""]
    by_run = {}
    for st in (f.settings for f in figures.values()):
        by_run[run_key(st)] = max(by_run.get(run_key(st), st), st, key=lambda s: s.get("created", ""))
    produced = [f"`{key}` ({st.get('device', '?')}, {st.get('dtype', 'float32')}, "
                f"{'quick' if st.get('quick') else 'full'} settings, {fmt_seconds(run_seconds(st))}, "
                f"{st.get('created', '?')})" for key, st in by_run.items()]
    return lines + (["*Data:* " + "; ".join(produced) + ".", ""] if produced else [])


def run_key(settings):
    """Which run a figure came from: its command line (a script writes several figures per run)."""
    return settings.get("notebook") or settings.get("command") or settings.get("figure") or "?"


def run_seconds(settings):
    value = settings.get("run_seconds")  # a number (saved_files.run_metadata); None where it is missing or odd
    return float(value) if isinstance(value, (int, float)) else None


def fmt_seconds(seconds):
    if seconds is None:
        return "run time unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def run_time_text(saved):
    """The run-time sentence: the total wall time, each command once (it saves its time in every figure), machines."""
    per_command, machines = {}, set()
    for st in saved:
        if run_seconds(st) is not None:
            per_command[run_key(st)] = max(per_command.get(run_key(st), 0.0), run_seconds(st))
            machines.add(f"{st.get('machine', '?')} ({st.get('device', '?')})")
    return (f"Total run time of the saved figures: **{fmt_seconds(sum(per_command.values()))}** ({len(per_command)} "
            f"runs, each counted once) on {', '.join(sorted(machines)) or 'an unknown machine'}.")


BANNERS = (("Not run", "no saved data; each section says why and how to make it",
            lambda cs: all(c.verdict == NOT_RUN for c in cs)),
           ("Data errors", "a saved file could not be read or lacks a key: no verdict, the section names the file; "
            "`make_report.py` exits with status 1", lambda cs: any(c.verdict == DATA_ERROR for c in cs)),
           ("Smoke-test data", "from `--quick` runs on tiny settings: their verdicts only show that the pipeline "
            "works, they are not a reproduction. Run `make figures` for the paper's settings",
            lambda cs: any(c.quick for c in cs)))


VERDICTS = (  # every word a row of the report can show, with its meaning: the legend
    (REPRODUCED, "the rule holds everywhere"),
    (PARTLY, "for some activations, attacks, rows or seeds, or everywhere it could be tested"),
    (NOT_REPRODUCED, "nowhere it could be tested"),
    (CANNOT_TEST, "the data cannot decide (moved networks that are no symmetries, all runs diverged): no evidence"),
    (DEPENDS, "the two conventions of Q (below) give different verdicts, both shown"),
    (NOT_TESTED, "a unit with no reference to test against: left out"),
    (NOT_RUN, "no saved data (the section says how to make them)"),
    (DATA_ERROR, "a saved file unreadable or lacking a key or setting: no verdict"),
    (BROKEN, "a check of the figure's construction failed: no verdict"),
    (EVALUATION_FAILED, "a sanity check of the robustness evaluation failed: no robustness verdict"),
    (PASSES + " / " + FAILS, "a check's result"),
)

LEGEND = ("**Legend.** A verdict applies the fixed rule stated with its claim to the saved numbers: "
          + "; ".join(f"**{word}**: {meaning}" for word, meaning in VERDICTS) + ". (smoke test): `--quick` data. A "
          "diverged run is named and left out (partly at best). **Seeds**: seed 0 is the paper's draw (plotted); a "
          "trend of |Q| is judged over seeds (sign test, an effect beyond the seeds' spread), another rule per seed "
          "(\"holds in k of N seeds\"). " + doc_text(combine, units="units (activations, attacks, numerics or "
          "histograms)") + " **±**: sample standard deviation (ddof = 1) over the n seeds; a cell 'x (m ± s)': seed "
          "0's x, the mean ± s over every seed (those left out named); '×x (a to b)': a fold change and its 95 % "
          "interval (×1/x: against the claim). **[R]** the paper's code re-run with its seeds (CPU, float32: a "
          "faithful port matches them); **[C]** the paper notebooks' saved outputs (GPU, unseeded, a new model per "
          "cell: qualitative).")


def newest_data(saved):
    """The newest figure's `created` time in UTC: the report's date, so that unchanged data give the same report."""
    dates = []
    for st in saved:
        try:
            dates.append(datetime.datetime.strptime(st["created"], "%Y-%m-%dT%H:%M:%S%z"))
        except (KeyError, TypeError, ValueError):
            continue  # no date
    newest = max(dates).astimezone(datetime.timezone.utc) if dates else None
    return newest.isoformat(" ", "minutes").replace("+00:00", " UTC") if newest else "an unknown date"


def build_report(out_dir, cifar_dir=None):
    """(the text of REPORT.md for the figures saved under out_dir, the data errors met)."""
    loader, errors, done, shown = Loader(out_dir), [], [], {}
    for section in SECTIONS:
        checked = [check(claim, loader, cifar_dir) for claim in section.claims]
        mark_broken(checked, (NOT_RUN, DATA_ERROR))
        errors += [c.text for c in checked if c.verdict in (DATA_ERROR, BROKEN)]
        done.append((section.title.split(":")[0], checked, render_section(section, checked, loader, errors, shown)))
    saved = list(loader.settings.values())  # every .json under out_dir that reads as a dict
    lines = ["# Reproduction report", "",
             f"Generated by `make_report.py` from the data saved in `{out_dir}` up to {newest_data(saved)} "
             f"(nothing is retrained). Paper: Zhao, Ganev, Walters, Yu, Dehmamy, *Symmetries, Flat Minima, "
             "and the Conserved Quantities of Gradient Flow*, ICLR 2023.", ""]
    for title, why, applies in BANNERS:
        figures = [name for name, cs, _ in done if applies(cs)]
        lines += [f"> **{title}**: {', '.join(figures)} ({why}).", ""] if figures else []
    lines += ["## What holds", ""]
    lines += table(["figure", "claim", "verdict", "deciding effect", "decided by"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick)}**", c.deciding or "-",
                     c.decided_by or "-"] for _, cs, _ in done for c in cs if not c.claim.check])
    lines += [LEGEND, "", f"**Q.** {Q_CONVENTION}", ""]
    lines += ["## Checks", "", "Identities of the construction (only a bug fails one; a failing check marks its "
              "figure's data broken; its section states it and its rule). The symmetry is one of the training loss: "
              "off the training inputs the moved networks compute other functions (second table; exact only for the "
              "linear net).", ""]
    lines += table(["figure", "check", "result", "numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick, True)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs if c.claim.check])
    lines += off_data_table({name: loader.get(files) for name, files in OFF_DATA.items()})
    lines += [run_time_text(saved), ""]
    lines += [line for _, _, section_lines in done for line in section_lines]
    return "\n".join(lines).rstrip() + "\n", list(dict.fromkeys(errors))


def main(argv=None):
    parser = argparse.ArgumentParser(description="write DIR/REPORT.md from the saved figure data")
    parser.add_argument("--out", default="figures", help="folder holding the saved figures (default: figures)")
    parser.add_argument("--cifar-dir", default=None,
                        help="CIFAR_DIR used by the notebooks: lets the report say whether CIFAR-10 was available")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.out):
        print(f"make_report.py: error: no folder {args.out!r}; make the figures first (make figures)", file=sys.stderr)
        return 2
    text, errors = build_report(args.out, args.cifar_dir)
    path = os.path.join(args.out, "REPORT.md")
    try:
        write_atomic(path, text)
    except OSError as error:
        print(f"make_report.py: error: cannot write {path!r}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({sum(len(s.claims) for s in SECTIONS)} claims)")
    for error in errors:
        print(f"make_report.py: data error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

