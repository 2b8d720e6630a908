"""Command line, worker processes, saved files and plots of the figure scripts: no science here.

torch and matplotlib.pyplot are imported only inside the functions that need them, so a script
that parses its flags with this module before its own heavy imports answers --help and flag
errors at once.

Contents, top to bottom:
  command line       UsageError, fail, PerActivation, figure_parser,
                     parse_figure_args, resolve_device, check_output_dir
  progress bars      progress_bar, no_progress
  worker processes   parallel_map
  files              run_metadata, save_figure, load_figure_data
  plots              step_formatter, plot_loss_curves, mark_diverged
  the driver         Job, steps_per_activation, run_figure_script
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from paper_numbers import PAPER_ACTIVATIONS  # the default of --activations (any name in models.ACTIVATIONS works)


# ----------------------------------------------------------------------------------------------
# Command line

class UsageError(Exception):
    """Bad input from the user: reported as one line, without a traceback."""


def fail(prog, message):
    """Print 'prog: error: message' on stderr and exit with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class PerActivation:
    """A setting that is `default` for every activation except those named, so a new activation
    needs no entry: PerActivation(400_000, sigmoid=800_000)["elu"] == 400_000."""

    def __init__(self, default, **exceptions):
        self.default, self.exceptions = default, exceptions

    def __getitem__(self, activation):
        return self.exceptions.get(activation, self.default)

    def __repr__(self):
        return f"PerActivation({self.default!r}, {', '.join(f'{k}={v!r}' for k, v in self.exceptions.items())})"


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends '(default: X)' once, where the help does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def figure_parser(description, activations=False, steps_help="number of gradient-descent steps", seeds=False):
    """The flags every figure script shares (same names and meanings everywhere).

    description: the script's docstring (its first paragraph is shown).
    activations: True to add --activations (default: the paper's four).
    seeds: True to add --seeds (default 1: the paper's single draw).
    """
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0], formatter_class=_HelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that run in seconds (smoke test); not the paper's numbers")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help=f"{steps_help} for every run (default: the paper's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train: auto picks cuda when a GPU is available")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="floating-point precision of training; the paper's is float32")
    parser.add_argument("--out", default="figures", metavar="DIR",
                        help="output folder; figures go to sub-folders named as in the paper's repository")
    parser.add_argument("--plot-only", action="store_true",
                        help="re-plot from the saved .npz/.json data in DIR, without training")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes for independent runs (CPU only; 1 = no workers)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are shown only when stderr is a terminal)")
    if seeds:
        parser.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                            help="random initialisations per run, trained together: seed 0 is the paper's draw "
                                 "(torch seed 12345), seed s uses seed 12345 + s; the target Y is the paper's for "
                                 "every seed. Plots show seed 0; the saved data hold every seed (default: 1)")
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
    """'auto' (or None/'') | 'cpu' | 'cuda[:i]' | a torch.device -> torch.device;
    UsageError for cuda without a GPU."""
    import torch
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was requested but no CUDA GPU is available (use cpu or auto)")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


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


def no_progress(total, description, unit="step"):
    """A silent bar: the progress argument of a script's train() when it is called directly."""
    return progress_bar(total, description, disable=True, unit=unit)


# ----------------------------------------------------------------------------------------------
# Worker processes

def _one_thread():
    import torch
    torch.set_num_threads(1)


def parallel_map(function, job_kwargs, jobs):
    """[function(**kwargs) for kwargs in job_kwargs], run in up to `jobs` worker processes.

    Each training is a long loop of tiny tensor ops that leaves a core mostly idle in
    dispatch, and threads contend for the GIL, so independent runs go to separate processes.
    `function` must be importable (defined at module top level). jobs <= 1 runs in-process.
    """
    job_kwargs = list(job_kwargs)
    if jobs <= 1 or len(job_kwargs) <= 1:
        return [function(**kwargs) for kwargs in job_kwargs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # fork starts workers instantly (as torch's DataLoader does on Linux); the parent has run no
    # parallel op yet, so no thread pool is copied. Elsewhere, spawn.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(job_kwargs)), mp_context=context,
                             initializer=_one_thread) as pool:
        futures = [pool.submit(function, **kwargs) for kwargs in job_kwargs]
        return [future.result() for future in futures]


# ----------------------------------------------------------------------------------------------
# Files

def run_metadata(args, started):
    """Settings common to every saved figure: versions, device, run time, flags.
    args: anything with .quick, .device, .dtype, .jobs (the parsed flags)."""
    import matplotlib
    import torch
    return {
        "quick": bool(args.quick),
        "device": str(args.device),
        "dtype": str(args.dtype).replace("torch.", ""),
        "jobs": args.jobs,
        "run_seconds": round(time.time() - started, 2),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "matplotlib": matplotlib.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores"
                   + (f", {torch.cuda.get_device_name()}" if torch.device(args.device).type == "cuda" else ""),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _atomic_write(path, write):
    """Call write(temporary_path), then move it to `path`: a file appears complete or not at all."""
    folder = os.path.dirname(path) or "."
    suffix = os.path.splitext(path)[1]
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _to_json(value):
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def save_figure(fig, out_dir, name, data, settings):
    """Save `fig` as DIR/name.pdf and .png, `data` (dict of arrays) as .npz, `settings` as .json.

    Each file is written to a temporary name first and then renamed, so an interrupted run
    leaves no half-written file. `name` may contain a sub-folder (e.g. 'Q-dynamics/x').
    Returns the list of written paths.
    """
    import matplotlib.pyplot as plt
    stem = os.path.join(out_dir, name)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    arrays = {key: np.asarray(value) for key, value in data.items()}
    paths = [stem + ext for ext in (".npz", ".json", ".pdf", ".png")]
    _atomic_write(paths[0], lambda p: np.savez_compressed(open(p, "wb"), **arrays))
    # default=str: torch dtypes and devices (and anything else without a JSON form) as text
    _atomic_write(paths[1], lambda p: open(p, "w").write(json.dumps(_to_json(settings), indent=2, default=str) + "\n"))
    # Fixed metadata keep the PDF and PNG byte-identical across runs.
    _atomic_write(paths[2], lambda p: fig.savefig(p, format="pdf", bbox_inches="tight",
                                                   metadata={"CreationDate": None, "Creator": None}))
    _atomic_write(paths[3], lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight",
                                                   metadata={"Software": None}))
    plt.close(fig)
    return paths


def load_figure_data(out_dir, name):
    """Load the (data, settings) saved by save_figure; UsageError if they are missing."""
    stem = os.path.join(out_dir, name)
    if not (os.path.isfile(stem + ".npz") and os.path.isfile(stem + ".json")):
        raise UsageError(f"no saved data at {stem}.npz/.json; run without --plot-only first")
    with np.load(stem + ".npz", allow_pickle=False) as saved:
        data = {key: saved[key] for key in saved.files}
    with open(stem + ".json") as f:
        settings = json.load(f)
    return data, settings


# ----------------------------------------------------------------------------------------------
# Plot helpers

def step_formatter():
    """Tick labels for step axes: 0, 2e5, 4e5 ... computed from the tick values (none hard-coded)."""
    from matplotlib.ticker import FuncFormatter

    def label(value, _position):
        if value == 0:
            return "0"
        mantissa, exponent = f"{value:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}" if abs(value) >= 1e4 else f"{value:g}"
    return FuncFormatter(label)


def plot_loss_curves(ax, data, linewidth):
    """One curve per run: data['loss'] [R, T] against data['steps'], log y, legend data['labels'];
    a run that diverged gets '(diverged)' in its label and an 'x' at its last finite point."""
    for run, label in enumerate(data["labels"]):
        diverged = data["diverged_at"][run] >= 0
        ax.plot(data["steps"], data["loss"][run], color=f"C{run}", linewidth=linewidth,
                label=str(label) + (" (diverged)" if diverged else ""))
        mark_diverged(ax, data["steps"], data["loss"][run], data["diverged_at"][run], f"C{run}")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(step_formatter())


def mark_diverged(ax, steps, values, diverged_at, color):
    """Put an 'x' at the last finite point of a run that diverged (NaN/inf loss)."""
    if diverged_at < 0:
        return
    finite = np.isfinite(values)
    if finite.any():
        last = np.flatnonzero(finite)[-1]
        ax.plot(steps[last], values[last], "x", color=color, markersize=12, markeredgewidth=3)


# ----------------------------------------------------------------------------------------------
# The driver of the figure scripts

@dataclass(frozen=True)
class Job:
    """One figure of a script: its file name under --out (no extension), the keyword arguments of
    the script's train(), and the settings saved beside it (the driver adds the shared ones)."""
    name: str
    kwargs: dict
    settings: dict


def steps_per_activation(args, paper_steps, quick_steps):
    """{activation: steps} for the selected activations, longest first (so parallel workers
    finish together): --steps if given, else the quick or the paper's settings (PerActivation)."""
    steps = {a: args.steps or (quick_steps if args.quick else paper_steps)[a] for a in args.activations}
    return dict(sorted(steps.items(), key=lambda item: -item[1]))


def run_figure_script(parser, make_jobs, train, plot, summarise, argv=None, trains=True):
    """Parse the shared flags, then train (or, with --plot-only, load) and save every figure.

    make_jobs(args) -> [Job], longest first; train(**job.kwargs, progress=...) -> the figure's
    data (dict of numpy arrays), where progress(total, description, unit="step") makes a
    tqdm-like bar; plot(data) -> a matplotlib figure; summarise(job.name, data) -> the line
    printed after saving. Jobs run in up to --jobs worker processes.

    Added to every figure's settings: run_metadata (versions, device, dtype, command, run time)
    and, for scripts that train (trains=True), the seed of the initial draws (models.PAPER_SEED)
    and the loss gradient descent minimises (models.TRAINED_ON).
    """
    args = parse_figure_args(parser, argv)
    started = time.time()
    try:
        jobs = make_jobs(args)
        if args.plot_only:
            for job in jobs:
                data, settings = load_figure_data(args.out, job.name)
                save_figure(plot(data), args.out, job.name, data, settings)
                print(f"re-plotted {os.path.join(args.out, job.name)}.pdf from saved data")
            return args
        from functools import partial
        disable = True if args.no_progress else None
        results = parallel_map(train, [dict(job.kwargs, progress=partial(progress_bar, disable=disable, position=i))
                                       for i, job in enumerate(jobs)], args.jobs)
        shared = {}
        if trains:
            from models import PAPER_SEED, TRAINED_ON
            shared = {"seed": PAPER_SEED, "trained_on": TRAINED_ON}
        for job, data in zip(jobs, results):
            settings = {**job.settings, **shared, **run_metadata(args, started)}
            paths = save_figure(plot(data), args.out, job.name, data, settings)
            print(f"{summarise(job.name, data)} -> {paths[2]}")
        print(f"done in {time.time() - started:.1f} s")
    except UsageError as error:
        fail(parser.prog, error)
    return args
