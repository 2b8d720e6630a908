"""The CIFAR notebooks' run parameters, checked and completed in the cell after the parameters cell.

The notebooks' first cell (tagged `parameters`) holds plain values that Jupyter, papermill
(`-p NAME VALUE`) and run_notebook.py set alike. Everything derived from them (the output folder,
the number of seeds, the device) is computed here, after papermill's injected cell, so that every
way of starting a notebook means the same run. A value that cannot run is a ParameterError of one
line, raised before any data is read or any model is trained.
"""
import os

REPO = os.path.dirname(os.path.abspath(__file__))
COMMITTED_FIGURES = os.path.join(REPO, "figures")  # the full run's figures: a quick run never writes here
QUICK_FIGURES = "figures-quick"
DEFAULT_SEEDS = {False: 3, True: 2}  # full, quick


class ParameterError(ValueError):
    """A notebook parameter that cannot be run (one line)."""


def figures_dir(folder, quick):
    """The output root: `folder`, or by default figures/ (quick: figures-quick/). A quick run into
    the committed figures/ is refused: its smoke-test numbers would replace the full run's."""
    folder = folder if folder is not None else (QUICK_FIGURES if quick else "figures")
    if quick and os.path.abspath(folder) == COMMITTED_FIGURES:
        raise ParameterError(f"QUICK run into the committed {folder!r}: give another FIGURES_DIR "
                             f"(default {QUICK_FIGURES})")
    return folder


def _whole_number(name, value, least):
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ParameterError(f"{name} must be a whole number >= {least}, not {value!r}")
    return value


def seed_list(seed, seeds, quick, least=1, why=""):
    """[seed, seed + 1, ...]: `seeds` of them (None: 3, quick 2); at least `least` (`why` says why)."""
    _whole_number("SEED", seed, 0)
    seeds = DEFAULT_SEEDS[bool(quick)] if seeds is None else seeds
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds < least and why:
        raise ParameterError(f"SEEDS must be at least {least} ({why}), not {seeds!r}")
    return list(range(seed, seed + _whole_number("SEEDS", seeds, least)))


def run_device(device, jobs, threads):
    """(torch.device, worker processes) from DEVICE ('auto', 'cpu', 'cuda', 'cuda:N'), JOBS (0: one
    per CPU core, 1 on a GPU) and THREADS (0: torch's default); ParameterError for a device this
    machine does not have."""
    from gfs.runs.command_line import resolve_device, UsageError
    _whole_number("JOBS", jobs, 0)
    _whole_number("THREADS", threads, 0)
    try:
        device = resolve_device(device)
    except UsageError as error:
        raise ParameterError(f"DEVICE: {error}") from None
    if threads:
        import torch
        torch.set_num_threads(threads)
    return device, jobs or (1 if device.type == "cuda" else 0)
