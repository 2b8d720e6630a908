"""The CIFAR notebooks' run parameters (docs/cifar.md, "Parameters"): checked, and completed (the output folder, the
seeds, the device, the QUICK settings) in the cell after papermill's injected cell, so that Jupyter, papermill and
run_notebook.py (which applies RULES before a kernel starts) run the same experiment. A value that cannot run is a
ParameterError of one line, raised before any data is read.
"""
import math
import os

from gfs.runs.command_line import COMMITTED_FIGURES, QUICK_FIGURES, REPO, UsageError, refuse_quick_into_committed

DEFAULT_SEEDS = {False: 3, True: 2}  # full, quick


class ParameterError(ValueError):
    """A notebook parameter that cannot be run (one line)."""


# ----------------------------------------------------------------------------------------------
# What each parameter must be: (the words of the error, the test). One table for both notebooks and
# run_notebook.py: a parameter renamed in a notebook is renamed here, once.

def _is_count(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def count(least=1):
    return f"a whole number >= {least}", lambda v: _is_count(v, least)


def optional_count(least=1, none="all"):
    return f"None ({none}) or a whole number >= {least}", lambda v: v is None or _is_count(v, least)


POSITIVE = "a finite number > 0", lambda v: _is_real(v) and v > 0
RADIUS = "a number in [0, 1] (pixel units)", lambda v: _is_real(v) and 0 <= v <= 1  # an L-inf attack radius
BOOLEAN = "True or False", lambda v: isinstance(v, bool)


def text(optional=False):
    return ("None or " if optional else "") + "a non-empty text", \
        lambda v: (optional and v is None) or (isinstance(v, str) and v.strip() != "")


def one_of(*choices):
    return f"one of {', '.join(map(repr, choices))}", lambda v: v in choices


def list_of(rule, empty=False):
    what, test = rule
    return (f"a {'' if empty else 'non-empty '}list, each {what}",
            lambda v: isinstance(v, (list, tuple)) and (empty or len(v) > 0) and all(map(test, v)))


# the classifiers of the standard robustness evaluation, as APGDT_ON and SQUARE_ON name them (robustness.skipped_attacks)
CLASSIFIER_NAMES = ("original", "group_paper", "group_exact", "perm_interp", "independent", "deep")

RULES = {
    # both notebooks
    "CIFAR_DIR": text(), "QUICK": BOOLEAN, "FIGURES_DIR": text(optional=True),
    "DEVICE": ("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and (
        v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))),
    "SEED": count(0), "SEEDS": optional_count(1, none="the default"), "THREADS": count(0), "JOBS": count(0),
    "DOWNLOAD": BOOLEAN, "HIDDEN": count(1), "EPOCHS": count(1), "BATCH_SIZE": count(1),
    "NUMERICS": list_of(one_of("paper", "exact")), "WEIGHTS_FROM": text(optional=True),
    # ensemble_CIFAR.ipynb (Fig. 10)
    "ACTIVATION": text(), "SOFTMAX_OUTPUT": BOOLEAN, "LR": POSITIVE, "SHUFFLE": BOOLEAN,
    "N_TRAIN": count(1), "NUM_G_LIST": list_of(count(1)), "GROUP_SCALES": list_of(POSITIVE),
    "EVAL_SPLIT": one_of("test", "heldout"), "N_EVAL": optional_count(1), "FIT_SIZES": list_of(count(1)),
    "FIT_SIZE_SCALES": list_of(POSITIVE), "FIT_SIZE_MEMBERS": count(1),
    # adversarial_CIFAR.ipynb (Fig. 11)
    "PROTOCOLS": list_of(one_of("paper", "corrected")), "NUM_G": count(1), "GROUP_SCALE": POSITIVE,
    "NUM_EVAL": count(1), "MAX_TRAIN_IMAGES": optional_count(1), "MAX_TEST_IMAGES": optional_count(1),
    "ROBUSTNESS_RADII": list_of(RADIUS), "SUITE_IMAGES": count(1), "APGD_STEPS": count(1), "APGD_RESTARTS": count(1),
    "SQUARE_QUERIES": count(1), "TRANSFER_STEPS": count(1), "AUDIT_IMAGES": count(1), "APGDT_RESTARTS": count(1),
    "APGDT_ON": list_of(one_of(*CLASSIFIER_NAMES), empty=True), "SQUARE_ON": list_of(one_of(*CLASSIFIER_NAMES), empty=True),
    # both notebooks' controls (beyond the paper)
    "DEEP_ENSEMBLE": count(1), "CONTROL_SEED": count(0),
}


def check(values):
    """ParameterError (one line, the first bad one) unless every parameter in `values` (a dict, or a
    notebook's globals()) that RULES names is what its rule says."""
    for name, (what, test) in RULES.items():
        if name in values and not test(values[name]):
            raise ParameterError(f"{name} must be {what}, not {values[name]!r}")


def notebook_defaults(path):
    """{NAME: value} of the parameters cell of the notebook at `path`."""
    import nbformat
    values = cell_defaults(nbformat.read(path, as_version=4), os.path.basename(path))
    if values is None:
        raise ParameterError(f"{os.path.basename(path)} has no cell tagged 'parameters'")
    return values


def cell_defaults(notebook, name="the notebook"):
    """{NAME: value} of the first cell tagged `parameters` of `notebook` (an nbformat notebook),
    evaluated without builtins (plain values only: ParameterError otherwise); None if it has none."""
    cell = next((c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return None
    namespace = {}
    try:
        exec(cell.source, {"__builtins__": {}}, namespace)
    except Exception as error:
        raise ParameterError(f"{name}'s parameters cell is not plain values: {error}") from None
    return {key: value for key, value in namespace.items() if key.isupper()}


def quick_settings(notebook, values, quick):
    """The smoke-test values `quick` {NAME: value} to apply: those whose parameter still holds the default of the
    committed `notebook` (a file name in the repository); one set otherwise (-p, an edit) is kept. Prints one line
    saying which were replaced and which kept. values: the notebook's globals()."""
    defaults = notebook_defaults(os.path.join(REPO, notebook))
    applied = {name: value for name, value in quick.items() if values.get(name) == defaults.get(name)}
    kept = [name for name in quick if name not in applied]
    print("QUICK: smoke-test settings " + ", ".join(f"{name}={value!r}" for name, value in applied.items())
          + (f"; kept as set: {', '.join(f'{name}={values[name]!r}' for name in kept)}" if kept else ""))
    return applied


# ----------------------------------------------------------------------------------------------
# Derived settings

def figures_dir(folder, quick):
    """The output root: `folder`, or by default figures/ (quick: figures-quick/). A quick run into
    the committed figures/ (however spelled) is refused: its smoke-test numbers would replace the full run's."""
    folder = folder if folder is not None else (QUICK_FIGURES if quick else "figures")
    if quick:
        try:
            refuse_quick_into_committed(folder, "FIGURES_DIR")
        except UsageError as error:
            raise ParameterError(str(error)) from None
    return folder


def _whole_number(name, value, least):
    if not _is_count(value, least):
        raise ParameterError(f"{name} must be a whole number >= {least}, not {value!r}")
    return value


def seed_list(seed, seeds, quick, least=1, why=""):
    """[seed, seed + 1, ...]: `seeds` of them (None: DEFAULT_SEEDS); at least `least` (`why` says why)."""
    _whole_number("SEED", seed, 0)
    seeds = DEFAULT_SEEDS[bool(quick)] if seeds is None else seeds
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds < least and why:
        raise ParameterError(f"SEEDS must be at least {least} ({why}), not {seeds!r}")
    return list(range(seed, seed + _whole_number("SEEDS", seeds, least)))


def run_device(device, jobs, threads):
    """(torch.device, worker processes) from DEVICE ('auto', 'cpu', 'cuda', 'cuda:N'), JOBS (0: one per CPU core, 1 on a
    GPU) and THREADS (0: torch's default); ParameterError for a device this machine does not have."""
    from gfs.runs.command_line import resolve_device
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
