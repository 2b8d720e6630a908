#!/usr/bin/env python3
"""Write DIR/REPORT.md: which of the paper's claims hold in the saved figure data.

usage: python make_report.py [--out DIR] [--cifar-dir DIR]

Reads only the .npz/.json files that the figure scripts and notebooks saved under DIR (default figures/);
nothing is retrained. The claims are registered once each, in their figure's claims module (CLAIM_MODULES
below: claims_fig3.py ... claims_fig11.py; what a claim is: verdict_rules.py). A claim names the files it
reads, a measurement (loaded file -> the keyword arguments of its rule), a rule (a pure function: numbers ->
Result) whose docstring is the rule printed in the report, and the paper code's numbers (paper_numbers.py) in
the rule's form, so the same rule is run on them too. One loop, check(), loads, measures and judges every claim:
  - no saved data: "not run", with the command that makes it;
  - a file that cannot be read, is incomplete or lacks a key: "data error" naming the file and what is wrong,
    no verdict; the other claims still get theirs and the exit status is 1;
  - a diverged run is named and left out: the claim cannot be tested on it (partly at best), never "slow";
  - several seeds (per-run arrays [seed, run]): the rule is judged per seed, "holds in k of N seeds";
  - --quick data: verdicts labelled as smoke-test values;
  - activations are found on disk, so one beyond the paper's four is reported too;
  - CIFAR-10 (Figs. 10-11): one file per numerics (paper: float32 action with fit noise; exact: float64); a claim
    about symmetry-moved networks counts only cells that are symmetries and is decided by the exact numerics; a
    quick run's file names (other num_g and eps) are found through '*' in the claim's file pattern.
A claim about the size of Q (conventions=True) is judged in both conventions of Q (the paper code's integration
constant and F(0) = 0): where they disagree its verdict is "depends on the convention", with both readings. A
check (check=True) is an identity of the construction, not a result: it goes to the checks table, and a failing
check marks its figure's data as broken (its claims get no verdict).

Adding a claim: one Claim(...) in its figure's SECTIONS, with its rule (its {keyword} defaults are filled into its
docstring) and its measurement (usually one runs(...) call naming the saved keys) beside it. A new figure: its
claims module, and one entry in CLAIM_MODULES.
"""
import argparse
import glob
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass

from gfs.report import claims_fig3
from gfs.report import claims_fig4_5
from gfs.report import claims_fig6
from gfs.report import claims_fig7
from gfs.report import claims_fig9
from gfs.report import claims_fig10
from gfs.report import claims_fig11
from gfs.runs.command_line import UsageError
from gfs.cifar import dataset
from gfs.report.verdict_rules import DATA_ERROR, EVALUATION_FAILED, NOT_RUN, Claim, DataError, Unjudged
from gfs.report.verdict_rules import table
from gfs.runs.saved_files import load_figure_data, write_atomic
from gfs.cifar.symmetry import SYMMETRY_TOLERANCE
from gfs.report.toy_rules import CONVENTIONS, Q_CONVENTION, conventions_result, off_data_table
from gfs.report.verdict_rules import BROKEN, FAILS, PASSES, REPRODUCED, PerSeed, Result, apply

# The report's figures, in order: each module's SECTIONS (and, for the moved networks of Figs. 6 and 9, OFF_DATA).
CLAIM_MODULES = (claims_fig3, claims_fig4_5, claims_fig6, claims_fig7, claims_fig9, claims_fig10, claims_fig11)
SECTIONS = tuple(section for module in CLAIM_MODULES for section in module.SECTIONS)
OFF_DATA = {name: files for module in CLAIM_MODULES for name, files in getattr(module, "OFF_DATA", {}).items()}
# ----------------------------------------------------------------------------------------------
# Loading: an unreadable file becomes a DataError that names the file and what is wrong

def one_line(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


class Figure:
    """One saved figure: .data (the .npz arrays) and .settings (its .json)."""

    def __init__(self, out_dir, name):
        self.name = name
        try:  # the checks of --plot-only: the .json unedited, naming this figure, sealed with this .npz
            data, self.settings = load_figure_data(out_dir, name, again="re-run what made it")
        except UsageError as error:
            raise DataError(str(error).replace(os.path.join(out_dir, ""), "", 1)) from None
        self.data = dict(data)
        self.quick = bool(self.settings.get("quick", False))

    def __getitem__(self, key):
        if key not in self.data:
            raise DataError(f"{self.name}.npz lacks key {key!r}")
        return self.data[key]

    def symmetry_tolerance(self):
        """The CIFAR files' mark above which a moved network is no symmetry (saved with Fig. 10's data)."""
        return float(self.data.get("symmetry_tolerance", SYMMETRY_TOLERANCE))

    def setting(self, key):
        if key not in self.settings:
            raise DataError(f"{self.name}.json lacks setting {key!r}")
        return self.settings[key]


class Loader:
    """Each saved figure loaded once. load(files) -> {unit: Figure, DataError or None (absent)}."""

    def __init__(self, out_dir):
        self.out_dir, self.cache, self.loaded = out_dir, {}, {}

    def units(self, files):
        """The paper's units, then (discover) every other activation that has a saved file, sorted."""
        head, _, tail = files.pattern.partition("{}")
        paths = glob.glob(os.path.join(glob.escape(self.out_dir), files.pattern.format("*") + ".*")) * files.discover
        found = [re.fullmatch(re.escape(head) + r"(.+)" + re.escape(tail) + r"\.(npz|json)",
                              os.path.relpath(p, self.out_dir).replace(os.sep, "/")) for p in paths]
        return list(files.units) + sorted({m.group(1) for m in found if m} - set(files.units))

    def resolve(self, name):
        """The saved figure a name with '*' stands for (the name itself if none matches: not run)."""
        regex = "[^/_]+".join(re.escape(part) for part in name.split("*")) + r"\.(npz|json)"
        paths = glob.glob(os.path.join(glob.escape(self.out_dir), name + ".*"))
        found = sorted({os.path.splitext(p)[0] for p in (os.path.relpath(p, self.out_dir).replace(os.sep, "/")
                                                          for p in paths) if re.fullmatch(regex, p)})
        if len(found) > 1:
            raise DataError(f"{len(found)} saved figures match {name}: {', '.join(found)}; keep one")
        return found[0] if found else name

    def one(self, pattern):
        if pattern not in self.cache:
            try:
                name = self.resolve(pattern) if "*" in pattern else pattern
                npz, js = (os.path.isfile(os.path.join(self.out_dir, name + ext)) for ext in (".npz", ".json"))
                self.cache[pattern] = (Figure(self.out_dir, name) if npz and js else None if not (npz or js) else
                                       DataError(f"{name}{'.json' if npz else '.npz'} is missing beside "
                                                 f"{name}{'.npz' if npz else '.json'} (an incomplete save)"))
            except DataError as error:
                self.cache[pattern] = error
        return self.cache[pattern]

    def load(self, files):
        if files not in self.loaded:  # the folder is globbed once per file set
            self.loaded[files] = {files.label(u): self.one(files.pattern.format(u)) for u in self.units(files)}
        return self.loaded[files]

    def get(self, files):
        return {u: f for u, f in self.load(files).items() if isinstance(f, Figure)}


# ----------------------------------------------------------------------------------------------
# The loop: load, measure, judge; then render

def doc_text(function, **fields):
    """The first paragraph of a docstring on one line, {fields} and the keyword defaults filled in."""
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
    return " ".join(inspect.getdoc(function).split("\n\n")[0].split()).format(**defaults, **fields)


def combine_units(over, results):
    """{unit: Result} -> one Result: the verdicts combined by `over`, texts and deciding numbers joined."""
    if list(results) == [""]:
        return results[""]
    return Result(over({u: r.verdict for u, r in results.items()}),
                  "; ".join(f"{u}: {r.verdict} ({r.text})" for u, r in results.items()),
                  "; ".join(f"{u} {r.deciding}" for u, r in results.items()))


@dataclass
class Checked:
    claim: Claim
    verdict: str              # a verdict, NOT_RUN or DATA_ERROR
    text: str
    deciding: str = ""
    quick: bool = False
    note: str = ""            # for the section: how to make the missing data


def check(claim, loader, cifar_dir):
    """One claim against the saved data: a verdict, or not run, or a data error (never a verdict)."""
    loaded = loader.load(claim.files)
    errors, results = [str(f) for f in loaded.values() if isinstance(f, DataError)], {}
    figures = {u: f for u, f in loaded.items() if isinstance(f, Figure)}
    if not errors and not figures:
        text, deciding, note = not_run_note(claim.files, loader.out_dir, cifar_dir)
        return Checked(claim, NOT_RUN, text, deciding, note=note)
    for unit, f in figures.items() if not errors else ():
        try:
            results[unit] = ({c: apply(claim.rule, claim.measure(f, c)) for c in CONVENTIONS} if claim.conventions
                             else apply(claim.rule, every_run(claim.measure(f)) if claim.check else claim.measure(f)))
        except Unjudged as status:  # no verdict by design: data from before the measurement, or a failed evaluation
            return Checked(claim, status.verdict, f"{unit}: {status}" if unit else str(status), status.verdict)
        except Exception as error:  # a wrong shape or type in the file: reported, never a verdict
            errors.append(str(error) if isinstance(error, DataError) else
                          f"{f.name}.npz cannot be checked ({one_line(error)})")
    if errors:
        return Checked(claim, DATA_ERROR, "; ".join(errors), errors[0])
    missing = ", ".join(u for u, f in loaded.items() if f is None)
    result = (conventions_result(claim.over, results, combine_units) if claim.conventions
              else combine_units(claim.over, results))
    note = f"Not run for {missing}: make it with `{claim.files.make.format(out=loader.out_dir)}`." if missing else ""
    return Checked(claim, result.verdict, result.text + f"; not run for {missing}" * bool(missing), result.deciding,
                   any(f.quick for f in figures.values()), note)


def every_run(measured):
    """A check judges every run, a diverged one too (its rule gets no diverged_at): an identity of the construction
    holds before training, and a check that needs a trained run says itself which it could check."""
    if isinstance(measured, PerSeed):
        return PerSeed(dict(m, diverged_at=None) for m in measured)
    return dict(measured, diverged_at=None) if "diverged_at" in measured else measured


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


def not_run_note(files, out, cifar_dir):
    """(explanation, a few words for the summary table, the section's note on how to make the data)."""
    if not files.notebook:
        return ("no data", "no data",
                f"**{NOT_RUN}**: no saved data in `{out}`. Make it with `{files.make.format(out=out)}`.")
    if cifar_dir is not None and os.path.isfile(os.path.join(cifar_dir, "cifar-10-batches-py", "data_batch_1")):
        why = "notebook failed (CIFAR-10 present)"
        return why, why, (f"**{NOT_RUN}**: no saved data for this figure in `{out}`, although CIFAR-10 is present in "
                          f"`{cifar_dir}`: the notebook did not finish. Run `python run_notebook.py {files.notebook} "
                          f"--out {out} --cifar-dir {cifar_dir}` to see its error.")
    why = "skipped: CIFAR-10 not available" if cifar_dir is not None else "skipped: no data (CIFAR-10 missing?)"
    return why, why, (
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
    return (f"{verdict} (smoke test)" if quick and verdict not in (NOT_RUN, DATA_ERROR, BROKEN, EVALUATION_FAILED)
            else verdict)


def render_claim(c):
    claim, several = c.claim, len(c.claim.files.units) > 1 or c.claim.files.discover
    rule = doc_text(claim.rule) + (" " + doc_text(claim.over, units=claim.files.kind)) * several
    kind = "Check" if claim.check else "Verdict"
    head = (f"**No verdict: {c.verdict}.**" if c.verdict in (DATA_ERROR, EVALUATION_FAILED, NOT_RUN) else
            f"**{kind}: {label(c.verdict, c.quick, claim.check)}.**")
    lines = [f"**{'Check' if claim.check else 'Claim'} ({claim.figure}).** {claim.text}", "", f"{head} {c.text}.", "",
             f"*Rule:* {rule}", ""]
    if claim.paper is not None and c.verdict not in (NOT_RUN, DATA_ERROR, EVALUATION_FAILED):
        ref = combine_units(claim.over, {u: apply(claim.rule, m) for u, m in claim.paper().items()})
        lines += [f"*The same rule on the paper code's numbers {'[C]' if claim.files.notebook else '[R]'}:* "
                  f"{ref.verdict} ({ref.text}).", ""]
    return lines


def render_section(section, checked, loader, errors):
    """The section's lines; a data error met in its tables is added to errors."""
    figures = {f.name: f for c in section.claims for f in loader.get(c.files).values()}
    plots = [name for c in section.claims if c.files.plots for name in (f.name for f in loader.get(c.files).values())]
    images = [f"![{n}]({n}.png)" for n in dict.fromkeys(plots)
              if os.path.isfile(os.path.join(loader.out_dir, n + ".png"))]
    lines = [f"## {section.title}", ""] + (images + [""] if images else [])
    if any(c.quick for c in checked):
        lines += ["> **Smoke-test data** (`--quick`): the verdicts below are smoke-test values of the rules on tiny "
                  "settings, not a reproduction of the paper.", ""]
    lines += [line for c in checked for line in render_claim(c)]
    lines += [line for note in dict.fromkeys(c.note for c in checked if c.note) for line in (note, "")]
    try:
        lines += section.tables(loader.get)
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
    return (settings.get("notebook") or settings.get("command") or dataset.NOTEBOOKS.get(settings.get("figure"))
            or settings.get("figure") or "?")


def run_seconds(settings):
    value = settings.get("run_seconds")
    value = value.get("total") if isinstance(value, dict) else value
    return float(value) if isinstance(value, (int, float)) else None


def fmt_seconds(seconds):
    if seconds is None:
        return "run time unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def run_time_summary(out_dir):
    """Total wall time of the runs behind DIR's figures, each command counted once (a script writes its whole run
    time into every figure it saves), and the machines they ran on."""
    per_command, machines = {}, set()
    for path in sorted(glob.glob(os.path.join(glob.escape(out_dir), "**", "*.json"), recursive=True)):
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue  # an unreadable .json is reported by the claim that reads it
        if isinstance(st, dict) and run_seconds(st) is not None:
            per_command[run_key(st)] = max(per_command.get(run_key(st), 0.0), run_seconds(st))
            machines.add(f"{st.get('machine', '?')} ({st.get('device', '?')})")
    return sum(per_command.values()), per_command, sorted(machines)


BANNERS = (("Not run", "no saved data; each section says why and how to make it",
            lambda cs: all(c.verdict == NOT_RUN for c in cs)),
           ("Data errors", "a saved file could not be read or lacks a key: no verdict, the section names the file; "
            "`make_report.py` exits with status 1", lambda cs: any(c.verdict == DATA_ERROR for c in cs)),
           ("Smoke-test data", "from `--quick` runs on tiny settings: their verdicts only show that the pipeline "
            "works, they are not a reproduction. Run `make figures` for the paper's settings",
            lambda cs: any(c.quick for c in cs)))


def newest_data(out_dir):
    """When the newest figure under out_dir was saved (its .json's `created`), in UTC: the report's date, so that
    the report of unchanged data is byte-identical (a clock date would change it on every run)."""
    import datetime
    dates = []
    for path in glob.glob(os.path.join(glob.escape(out_dir), "**", "*.json"), recursive=True):
        try:
            with open(path) as f:
                dates.append(datetime.datetime.strptime(json.load(f)["created"], "%Y-%m-%dT%H:%M:%S%z"))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no date (an unreadable .json is reported by the claim that reads it)
    newest = max(dates).astimezone(datetime.timezone.utc) if dates else None
    return newest.isoformat(" ", "minutes").replace("+00:00", " UTC") if newest else "an unknown date"


def build_report(out_dir, cifar_dir=None):
    """(the text of REPORT.md for the figures saved under out_dir, the data errors met)."""
    loader, errors, done = Loader(out_dir), [], []
    for section in SECTIONS:
        checked = [check(claim, loader, cifar_dir) for claim in section.claims]
        mark_broken(checked, (NOT_RUN, DATA_ERROR))
        errors += [c.text for c in checked if c.verdict in (DATA_ERROR, BROKEN)]
        done.append((section.title.split(":")[0], checked, render_section(section, checked, loader, errors)))
    total, per_command, machines = run_time_summary(out_dir)
    lines = ["# Reproduction report", "",
             f"Generated by `make_report.py` from the data saved in `{out_dir}` up to {newest_data(out_dir)} "
             f"(nothing is retrained). Paper: Zhao, Ganev, Walters, Yu, Dehmamy, *Symmetries, Flat Minima, "
             "and the Conserved Quantities of Gradient Flow*, ICLR 2023.", ""]
    for title, why, applies in BANNERS:
        figures = [name for name, cs, _ in done if applies(cs)]
        lines += [f"> **{title}**: {', '.join(figures)} ({why}).", ""] if figures else []
    lines += ["Each verdict comes from a fixed rule, stated with its claim, applied to the saved numbers: "
              "**reproduced** (the rule holds everywhere), **partly** (it holds for some activations, attacks or "
              "rows), **not reproduced** (it holds nowhere, or cannot be tested on this data), **depends on the "
              "convention** (the paper code's and the zero convention of Q give different verdicts; both are shown), "
              "**not run** (no data), **data error** (a file could not be read: no verdict), **broken data** (a check "
              "of the figure's construction failed: no verdict). A diverged run is reported as diverged and left "
              "out: the claim cannot be tested on it, so the verdict is partly at best. **Seeds**: where a figure "
              "was run from several random initialisations (seed 0 is the paper's draw and the one plotted), a trend "
              "of |Q| is judged over the series of all seeds (a sign test, and an effect beyond a stated minimum and "
              "the spread over seeds); another rule is applied to each seed, and the verdict says in how many seeds "
              "it holds fully (reproduced: all; not reproduced: it holds, even partly, in none; so partly with 0 of N "
              "seeds means partly in some) and gives the spread of the deciding number. Reference numbers: **[R]** re-run of the paper's code with its seeds "
              "(CPU, float32: a faithful port should match them); **[C]** saved outputs of the paper's notebooks (GPU, "
              "unseeded, a new model per cell: qualitative only).", "", f"**Q.** {Q_CONVENTION}", "", "## Summary", ""]
    lines += table(["figure", "claim", "verdict", "deciding numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs if not c.claim.check])
    lines += ["## Checks", "", "Identities of the construction, not results: moved networks compute the same function "
              "on the training inputs (X = I makes each entry of V one pre-activation, so only a bug could fail it), "
              "and the Hessian at a zero-loss minimum has rank at most m n. A failing check marks its figure's data as "
              "broken. The symmetry is one of the training loss: off the training inputs the moved networks compute "
              "other functions (the second table; exact only for the linear net).", ""]
    lines += table(["figure", "check", "result", "numbers"],
                   [[c.claim.figure, c.claim.short, f"**{label(c.verdict, c.quick, True)}**", c.deciding or "-"]
                    for _, cs, _ in done for c in cs if c.claim.check])
    lines += off_data_table({name: loader.get(files) for name, files in OFF_DATA.items()})
    lines += [f"Total run time of the saved figures: **{fmt_seconds(total)}** ({len(per_command)} runs, each counted "
              f"once) on {', '.join(machines) or 'an unknown machine'}.", ""]
    lines += table(["run", "wall time"], [[f"`{k}`", fmt_seconds(v)] for k, v in sorted(per_command.items())])
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

