"""The driver of the figure scripts (Job, steps_per_activation, run_figure_script) and the plot
helpers they share (step_formatter, plot_loss_curves, mark_diverged): no science here.

The command line is in command_line.py, signals and worker processes in processes.py, saved
files in saved_files.py.
"""
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from command_line import UsageError, fail, parse_figure_args, progress_bar
from processes import parallel_map
from saved_files import load_figure_data, run_metadata, save_figure



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
    """One curve per run of seed 0 (the paper's draw): data['loss'] [R, T] against data['steps'], log y, legend
    data['labels']; a run that diverged (data['diverged_at'] [S, R], seed 0's row) gets '(diverged)' in its label
    and an 'x' at its last finite point."""
    diverged_at = data["diverged_at"][0]
    for run, label in enumerate(data["labels"]):
        ax.plot(data["steps"], data["loss"][run], color=f"C{run}", linewidth=linewidth,
                label=str(label) + (" (diverged)" if diverged_at[run] >= 0 else ""))
        mark_diverged(ax, data["steps"], data["loss"][run], diverged_at[run], f"C{run}")
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
    the script's train(), and the settings saved beside it (the driver adds the shared ones). also: further
    (name, settings) figures that the same training makes (its train() then returns a list of data, this one's first)."""
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


def run_figure_script(parser, make_jobs, train, plot, summarise, argv=None, trains=True):
    """Parse the shared flags, then train (or, with --plot-only, load) and save every figure.

    make_jobs(args) -> [Job], longest first; train(**job.kwargs, progress=...) -> the figure's
    data (dict of numpy arrays), where progress(total, description, unit="step") makes a
    tqdm-like bar; plot(data) -> a matplotlib figure; summarise(job.name, data) -> the line
    printed after saving. Jobs run in up to --jobs worker processes.

    Added to every figure's settings: run_metadata (versions, device, dtype, command, run time)
    and, for scripts that train (trains=True), the seed of the initial draws (models.PAPER_SEED)
    and the loss gradient descent minimises (training.TRAINED_ON); save_figure adds the script
    (the file that defines `plot`) and the figure's name, which --plot-only checks.
    """
    args = parse_figure_args(parser, argv)
    import matplotlib
    matplotlib.use("Agg")  # the figures go to files; no window, no display needed
    defined_in = getattr(sys.modules.get(plot.__module__), "__file__", None)  # the script's file
    script = os.path.basename(defined_in) if defined_in else None
    started = time.time()
    try:
        jobs = make_jobs(args)
        if args.plot_only:
            for name, _ in (figure for job in jobs for figure in job.figures()):
                data, settings = load_figure_data(args.out, name, script)
                save_figure(plot(data), args.out, name, data, settings, script)
                print(f"re-plotted {os.path.join(args.out, name)}.pdf from saved data")
            return args
        from functools import partial
        disable = True if args.no_progress else None
        results = parallel_map(train, [dict(job.kwargs, progress=partial(progress_bar, disable=disable, position=i))
                                       for i, job in enumerate(jobs)], args.jobs)
        shared = {}
        if trains:
            from models import PAPER_SEED
            from training import TRAINED_ON
            shared = {"seed": PAPER_SEED, "trained_on": TRAINED_ON}
        for job, result in zip(jobs, results):
            for (name, job_settings), data in zip(job.figures(), result if job.also else [result]):
                settings = {**job_settings, **shared, **run_metadata(args, started)}
                paths = save_figure(plot(data), args.out, name, data, settings, script)
                print(f"{summarise(name, data)} -> {paths[2]}")
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
