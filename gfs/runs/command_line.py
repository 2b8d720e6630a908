"""The figure scripts' shared command line (flags, checked; progress bars), their driver (Job, run_figure_script) and
plot helpers. No science here; torch loads only inside the functions that need it, so --help answers at once.
"""

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from gfs.paper_numbers import PAPER_ACTIVATIONS  # the default of --activations (any name in models.ACTIVATIONS works)
from gfs.runs.processes import exit_cleanly_on_signals, parallel_map
from gfs.runs.saved_files import UsageError, hold_output_dir, load_figure_data, run_metadata, save_figure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED_FIGURES = os.path.join(REPO, "figures")  # the full run's committed outputs: a quick run never writes here
QUICK_FIGURES = "figures-quick"  # where quick runs write by default (git-ignored)


def fail(prog, message, status=2):
    """Print 'prog: error: message' on stderr and exit with `status` (2: bad input)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


class PerActivation:
    """A setting that is `default` for every activation except those named, so a new activation
    needs no entry: PerActivation(400_000, sigmoid=800_000)["elu"] == 400_000."""

    def __init__(self, default, **exceptions):
        self.default, self.exceptions = default, exceptions

    def __getitem__(self, activation):
        return self.exceptions.get(activation, self.default)

    def __repr__(self):
        return f"PerActivation({self.default!r}, {', '.join(f'{k}={v!r}' for k, v in self.exceptions.items())})"


MAX_COUNT = 2 ** 53  # larger counts are not exact as float64 (plots, JSON readers); nobody runs that long


def positive_int(text):
    """argparse type of the counts (--steps, --jobs, --samples): 1 .. MAX_COUNT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most 2^53 = {MAX_COUNT}, got {value}")
    return value


def device_name(text):
    """argparse type of --device: auto, cpu, cuda or cuda:N (whether it exists is checked after torch loads)."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends '(default: X)' once, where the help does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


class FigureParser(argparse.ArgumentParser):
    """The command line of a figure script. Parsing the process's own arguments (args=None) makes it a figure run:
    from then on Ctrl-C and SIGTERM end it with one line (exit_cleanly_on_signals), also while torch imports.
    Parsing a given list (a test, a caller of main(argv)) leaves the caller's signal handling alone."""

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            exit_cleanly_on_signals(self.prog)
        return super().parse_known_args(args, namespace)


def figure_parser(description, activations=False, steps_help="number of gradient-descent steps", seeds=False):
    """The flags every figure script shares. description: the script's docstring (its first paragraph is shown);
    activations, seeds: True to add --activations, --seeds; steps_help: what --steps counts, None for a script that
    does not train (it keeps the flag, unlisted, and refuses it with a pointer)."""
    parser = FigureParser(description=description.split("\n\n")[0], formatter_class=_HelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that run in seconds (smoke test); not the paper's numbers")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help=f"{steps_help} for every run (default: the paper's)" if steps_help else argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", type=device_name, metavar="DEVICE",
                        help="where to train: auto, cpu, cuda or cuda:N (GPU number N); "
                             "auto picks cuda when a GPU is available")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="floating-point precision of training; the paper's is float32")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder; figures go to sub-folders named as in the paper's repository "
                             "(default: figures; with --quick figures-quick, so the committed figures stay)")
    parser.add_argument("--plot-only", action="store_true",
                        help="re-plot from the saved .npz/.json data in DIR, without training (training flags "
                             "are then refused)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes for independent runs (CPU only; 1 = no workers)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are shown only when stderr is a terminal)")
    if seeds:
        parser.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                            help="random initialisations per run, trained together: seed 0 is the paper's draw "
                                 "(torch seed 12345), seed s uses seed 12345 + s; the target Y is the paper's for "
                                 "every seed. Plots show seed 0; the saved data hold every seed (default: 1)")
    # Flags that only change training: --plot-only refuses them (a script adds its own, e.g. --samples).
    parser.training_flags = ["--steps", "--device", "--dtype", "--jobs"] + (["--seeds"] if seeds else [])
    if activations:
        parser.add_argument("--activations", default=",".join(PAPER_ACTIVATIONS), metavar="A,B",
                            help="comma-separated names from the activation table in models.py "
                                 "(a wrong name lists them)")
    return parser


def parse_figure_args(parser, argv=None):
    """Parse and validate the shared flags. Returns args with .device (torch.device),
    .dtype (torch.dtype) and .activations (list) resolved; bad input exits with one line."""
    args = parser.parse_args(argv)
    try:
        # Checked before torch loads, so that a refusal comes at once and nothing is written.
        if args.out is None:
            args.out = QUICK_FIGURES if args.quick else "figures"
        if args.quick:
            refuse_quick_into_committed(args.out, "--out")
        if args.plot_only:  # the training flags given a value other than their default
            dests = {flag: flag.lstrip("-").replace("-", "_") for flag in parser.training_flags}
            given = [flag for flag, dest in dests.items() if getattr(args, dest, None) != parser.get_default(dest)]
            if given:
                raise UsageError(f"--plot-only re-plots saved data and does not train: {', '.join(given)} would "
                                 f"be ignored (leave it out)")
        if hasattr(args, "activations"):
            from models import get_activation
            names = [a.strip() for a in args.activations.split(",") if a.strip()]
            if not names:
                raise UsageError("--activations is empty")
            for name in names:
                try:
                    get_activation(name)
                except ValueError as error:
                    raise UsageError(f"{error} (in --activations)")
            args.activations = names
        import torch
        args.device = resolve_device(args.device)
        args.dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        if args.device.type == "cuda":
            args.jobs = 1  # one process drives the GPU
        else:
            torch.set_num_threads(1)  # matrices this small only lose time to thread synchronisation
        check_output_dir(args.out, create=not args.plot_only)
    except UsageError as error:
        fail(parser.prog, error)
    return args


def resolve_device(name="auto"):
    """'auto' (or None/'') | 'cpu' | 'cuda[:i]' | a torch.device -> torch.device; UsageError for a GPU not there."""
    import torch
    name = str(name) if isinstance(name, torch.device) else name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} was requested but no CUDA GPU is available (use cpu or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} was requested but this machine has {torch.cuda.device_count()} "
                         f"CUDA GPU(s), numbered from 0")
    return device


def refuse_quick_into_committed(path, flag):
    """UsageError if a quick run would write into the committed figures/ (its smoke-test numbers would replace the full
    run's), however either is spelled (relative, absolute, a symbolic link); `flag` names the setting that chose it."""
    real, committed = os.path.realpath(path), os.path.realpath(COMMITTED_FIGURES)
    if real == committed or real.startswith(committed.rstrip(os.sep) + os.sep):
        where = os.path.relpath(real, REPO)
        raise UsageError(f"a quick run never writes into the committed figures/ ({flag} {str(path)!r} is this "
                         f"repository's {where}): without {flag}, quick output goes to {QUICK_FIGURES}/; or give "
                         f"another folder")


def with_spread(value, spread, least=3):
    """`value` as text with enough significant digits to show its digits down to `spread`'s scale
    (at least `least`): -10000.3 with spread 0.5 is '-10000.3', not '-1e+04'."""
    value, spread = float(value), abs(float(spread))
    if not (np.isfinite(value) and np.isfinite(spread)) or value == 0 or spread == 0:
        return f"{value:.{least}g}"
    digits = int(np.floor(np.log10(abs(value))) - np.floor(np.log10(spread))) + 2
    return f"{value:.{max(least, min(digits, 15))}g}"


def check_output_dir(path, create=True):
    """Make sure `path` is (or can become) a writable folder; UsageError otherwise."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"output folder {path!r} exists and is not a folder")
    if not create:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write to output folder {path!r}: {error.strerror or error}")


# ----------------------------------------------------------------------------------------------
# Progress bars

def progress_bar(total, description, disable=None, position=0, unit="step"):
    """A tqdm bar on stderr counting `unit`s. disable=None: shown only when stderr is a terminal
    (no cursor escapes in log files); True: never; False: always."""
    from tqdm import tqdm  # plain text bars: also fine inside notebooks, without ipywidgets
    return tqdm(total=total, desc=description, disable=disable, position=position,
                unit=unit, unit_scale=True, leave=True, mininterval=0.5, dynamic_ncols=True)


no_progress = partial(progress_bar, disable=True)  # the progress argument of a script's train() called directly


# ----------------------------------------------------------------------------------------------
# Plot helpers

def step_label(value, _position):
    """A step axis' tick label: 0, 2e5, 4e5 ... computed from the tick value (none hard-coded)."""
    if abs(value) < 1e4:
        return f"{value:g}" if value else "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def plot_loss_curves(ax, data, linewidth, label_size):
    """One curve per run of seed 0 (the paper's draw): data['loss'] [R, T] against data['steps'], log y, legend
    data['labels'], axes labelled in `label_size` points; a run that diverged (data['diverged_at'] [S, R], seed 0's
    row) gets '(diverged)' in its label and an 'x' at its last finite point."""
    from matplotlib.ticker import FuncFormatter
    diverged_at = data["diverged_at"][0]
    for run, label in enumerate(data["labels"]):
        ax.plot(data["steps"], data["loss"][run], color=f"C{run}", linewidth=linewidth,
                label=str(label) + (" (diverged)" if diverged_at[run] >= 0 else ""))
        mark_diverged(ax, data["steps"], data["loss"][run], diverged_at[run], f"C{run}")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(step_label))
    ax.set_xlabel("Training steps", fontsize=label_size)
    ax.set_ylabel("Loss", fontsize=label_size)


def mark_diverged(ax, steps, values, diverged_at, color):
    """Put an 'x' at the last finite point of a run that diverged (NaN/inf loss)."""
    finite = np.flatnonzero(np.isfinite(values))
    if diverged_at >= 0 and finite.size:
        ax.plot(steps[finite[-1]], values[finite[-1]], "x", color=color, markersize=12, markeredgewidth=3)


# ----------------------------------------------------------------------------------------------
# The driver of the figure scripts

@dataclass(frozen=True)
class Job:
    """One figure of a script: its file name under --out (no extension), the keyword arguments of the
    script's train(), and the settings saved beside it (the driver adds the shared ones). also: further
    (name, settings) figures that the same training makes (train() then returns a list of data, this one's first)."""
    name: str
    kwargs: dict
    settings: dict
    also: tuple = ()

    def figures(self):
        return [(self.name, self.settings)] + list(self.also)


def steps_per_activation(args, paper_steps, quick_steps):
    """{activation: steps} for the selected activations, longest first (so parallel workers
    finish together): --steps if given, else the quick or the paper's settings (PerActivation)."""
    steps = {a: args.steps or (quick_steps if args.quick else paper_steps)[a] for a in args.activations}
    return dict(sorted(steps.items(), key=lambda item: -item[1]))


def run_figure_script(parser, make_jobs, train, plot, summary_line, argv=None, trains=True):
    """Parse the shared flags, then train (or, with --plot-only, load) and save every figure, in up to --jobs workers.
    make_jobs(args) -> [Job], longest first; train(**job.kwargs, progress=...) -> the figure's data (dict of numpy
    arrays), progress(total, description, unit="step") making a tqdm-like bar; plot(data) -> a matplotlib figure;
    summary_line(job.name, data) -> the line printed after saving. Each figure's settings also get run_metadata, the
    activation's paper_constant and, where the script trains (trains=True), models.PAPER_SEED and training.TRAINED_ON.
    """
    args = parse_figure_args(parser, argv)
    import matplotlib
    matplotlib.use("Agg")  # the figures go to files; no window, no display needed
    defined_in = getattr(sys.modules.get(plot.__module__), "__file__", None)  # the script's file
    script = os.path.basename(defined_in) if defined_in else None
    started = time.time()
    try:
        if not args.plot_only:  # two runs of one script into one folder would overwrite each other's files
            hold_output_dir(args.out, script or parser.prog)
        jobs = make_jobs(args)
        if args.plot_only:
            for name, _ in (figure for job in jobs for figure in job.figures()):
                data, settings = load_figure_data(args.out, name, script)
                save_figure(plot(data), args.out, name, data, settings, script)
                print(f"re-plotted {os.path.join(args.out, name)}.pdf from saved data")
            return args
        disable = True if args.no_progress else None
        results = parallel_map(train, [dict(job.kwargs, progress=partial(progress_bar, disable=disable, position=i))
                                       for i, job in enumerate(jobs)], args.jobs)
        from gfs.training import TRAINED_ON
        from models import ACTIVATIONS, PAPER_SEED
        shared = {"seed": PAPER_SEED, "trained_on": TRAINED_ON} if trains else {}
        for job, result in zip(jobs, results):
            for (name, job_settings), data in zip(job.figures(), result if job.also else [result]):
                # the paper code's integration constant of Q, so that the report reads it without importing torch
                activation = ACTIVATIONS.get(job_settings.get("activation"))
                constant = {"paper_constant": activation.paper_constant} if activation else {}
                settings = {**job_settings, **shared, **constant, **run_metadata(args, started)}
                paths = save_figure(plot(data), args.out, name, data, settings, script)
                print(f"{summary_line(name, data)} -> {paths[2]}")
        print(f"done in {time.time() - started:.1f} s")
    except UsageError as error:
        fail(parser.prog, error)
    except MemoryError as error:
        fail(parser.prog, f"out of memory ({error or 'no details'}); use smaller --steps, --samples or --jobs",
             status=1)
    except OSError as error:  # a full disk, a folder gone mid-run: save_figure left the previous files whole
        fail(parser.prog, f"cannot save into {args.out!r}: {error.strerror or error}; the previous files are "
                          f"unchanged", status=1)
    return args
