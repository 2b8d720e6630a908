"""Command line, worker processes, saved files and plots of the figure scripts: no science here.

torch and matplotlib.pyplot are imported only inside the functions that need them, so a script
that parses its flags with this module before its own heavy imports answers --help and flag
errors at once.

Contents, top to bottom:
  command line       UsageError, fail, PerActivation, MAX_COUNT, positive_int, device_name,
                     FigureParser, figure_parser, parse_figure_args, resolve_device, check_output_dir
  progress bars      progress_bar, no_progress
  signals            exit_cleanly_on_signals, signals_held
  worker processes   keep_freed_memory, parallel_map
  files              run_metadata, save_figure, SavedArrays, load_figure_data, write_atomic, png_preview
  plots              step_formatter, plot_loss_curves, mark_diverged
  the driver         Job, steps_per_activation, run_figure_script
"""
import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from paper_numbers import PAPER_ACTIVATIONS  # the default of --activations (any name in models.ACTIVATIONS works)


# ----------------------------------------------------------------------------------------------
# Command line

class UsageError(Exception):
    """Bad input from the user: reported as one line, without a traceback."""


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
    """The command line of a figure script. Parsing the process's own arguments (args=None, as the
    scripts do first thing) makes it a figure run: from then on Ctrl-C and SIGTERM end it with one
    line (exit_cleanly_on_signals), also while it is still importing torch. Parsing a given list
    (a test, a caller of main(argv)) leaves the caller's signal handling alone."""

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            exit_cleanly_on_signals(self.prog)
        return super().parse_known_args(args, namespace)


def figure_parser(description, activations=False, steps_help="number of gradient-descent steps", seeds=False):
    """The flags every figure script shares (same names and meanings everywhere).

    description: the script's docstring (its first paragraph is shown).
    activations: True to add --activations (default: the paper's four).
    seeds: True to add --seeds (default 1: the paper's single draw).
    steps_help: what --steps counts; None for a script that does not train (the flag stays, so that
    every script has the same flags, and says so).
    """
    parser = FigureParser(description=description.split("\n\n")[0], formatter_class=_HelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that run in seconds (smoke test); not the paper's numbers")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help=f"{steps_help} for every run (default: the paper's)" if steps_help else
                        "not used: this script does not train (given, it is an error)")
    parser.add_argument("--device", default="auto", type=device_name, metavar="DEVICE",
                        help="where to train: auto, cpu, cuda or cuda:N (GPU number N); "
                             "auto picks cuda when a GPU is available")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="floating-point precision of training; the paper's is float32")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder; figures go to sub-folders named as in the paper's repository "
                             "(default: figures; with --quick figures-quick, so the committed figures stay)")
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
        if args.out is None:
            args.out = "figures-quick" if args.quick else "figures"
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
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; choose auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} was requested but no CUDA GPU is available (use cpu or auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} was requested but this machine has {torch.cuda.device_count()} "
                         f"CUDA GPU(s), numbered from 0")
    return device


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
# Signals: Ctrl-C and SIGTERM end a figure run at once, with one line, leaving nothing behind

_TEMPORARIES = set()          # files this process is writing (save_figure); removed when a signal ends it
_SIGNAL_OWNER = {}            # pid, prog and cleanup of the process that installed the handlers
_EXIT_SIGNALS = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


def exit_cleanly_on_signals(prog, cleanup=None):
    """From now on, Ctrl-C (SIGINT) and SIGTERM end this process the same way: its worker
    processes are ended, the temporary files of a save in progress removed, one line
    'prog: stopped by ...' goes to stderr, and the process exits with status 128 + signal
    number (130 for Ctrl-C, 143 for SIGTERM: what a shell reports for a process the signal
    ended), so callers such as make stop too. No traceback, and no waiting for runs in progress.
    cleanup: also called then (e.g. to end other child processes); the text it returns, if
    any, is added to the line.

    Called by FigureParser when it parses; only the main thread can install handlers. A signal
    that this process was started with ignored (nohup, background jobs) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    _SIGNAL_OWNER.update(pid=os.getpid(), prog=prog, cleanup=cleanup)
    for signum in _EXIT_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum, _frame):
    if os.getpid() != _SIGNAL_OWNER["pid"]:  # a worker forked before its initializer reset the handlers
        _end_by_signal(signum)
    for other in _EXIT_SIGNALS:  # a second Ctrl-C must not interrupt the clean-up
        signal.signal(other, signal.SIG_IGN)
    workers = []
    if "multiprocessing" in sys.modules:
        import multiprocessing
        workers = multiprocessing.active_children()
        _end_processes(workers)
    for path in list(_TEMPORARIES):
        with contextlib.suppress(OSError):
            os.remove(path)
    done = ""
    if _SIGNAL_OWNER.get("cleanup"):
        with contextlib.suppress(Exception):
            done = _SIGNAL_OWNER["cleanup"]() or ""
    with contextlib.suppress(Exception):  # lines already printed; it may fail if the signal came mid-print
        sys.stdout.flush()
    newline = "\n" if sys.stderr.isatty() else ""  # after a progress bar
    ended = (f"; {len(workers)} worker processes ended" if workers else "") + (f"; {done}" if done else "")
    message = f"{newline}{_SIGNAL_OWNER['prog']}: stopped by {_EXIT_SIGNALS[signum]}{ended}; no partial file left\n"
    with contextlib.suppress(OSError):
        os.write(2, message.encode())  # unbuffered: the signal may have come in the middle of a print
    _end_by_signal(signum)


def _end_by_signal(signum):
    """Exit at once with status 128 + signum (the clean-up is done; no atexit or finally runs)."""
    os._exit(128 + signum)


def _end_processes(processes):
    """Terminate multiprocessing children and wait (briefly) until they are gone."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


@contextlib.contextmanager
def signals_held():
    """Run the block with Ctrl-C and SIGTERM held back, then act on one that came: a figure's
    files are renamed all or none. Only in the main thread (the only one that gets them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: arrived.append(signum))
                for signum in _EXIT_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if arrived:
            signal.raise_signal(arrived[0])


# ----------------------------------------------------------------------------------------------
# Worker processes

def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for the next allocation (no-op elsewhere).

    Evaluating ensembles and attacks allocates and frees many tensors of a few MB. By default
    glibc returns each one to the system and the next allocation faults its pages in again:
    measured, a third of the CIFAR ensemble grid's time was spent in the kernel this way. Keeping
    the memory (the largest mmap threshold glibc allows, no trimming) removes that; the process
    then holds on to its peak memory.
    """
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    return all([libc.mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20), libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30),
                libc.mallopt(M_TOP_PAD, 64 * 2 ** 20)])


def _start_worker(parent_pid):
    """Initializer of each worker process: Ctrl-C is left to the parent (which ends its workers),
    SIGTERM ends it at once, and it ends when the parent ends, however that ends (SIGKILL too).
    One torch thread (several workers share the cores) and freed memory kept (keep_freed_memory)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the kernel kills it when the parent dies
    else:  # elsewhere, a thread waits for the parent's end (its pipe closes, or its handle is signalled)
        import multiprocessing
        from multiprocessing.connection import wait
        sentinel = multiprocessing.parent_process().sentinel
        threading.Thread(target=lambda: (wait([sentinel]), os._exit(1)), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent ended before the line above took effect
        os._exit(1)
    import torch
    torch.set_num_threads(1)
    keep_freed_memory()


def parallel_map(function, job_kwargs, jobs, bar=None, start_method=None):
    """[function(**kwargs) for kwargs in job_kwargs], run in up to `jobs` worker processes.

    Each training is a long loop of tiny tensor ops that leaves a core mostly idle in
    dispatch, and threads contend for the GIL, so independent runs go to separate processes.
    `function` must be importable (defined at module top level). jobs <= 1 runs in-process.
    The workers end with this process, and when a run fails the others are stopped at once
    (no waiting for them to finish). bar: a progress bar advanced by one per finished run.
    start_method: how workers start; None: fork on Linux (instant, as torch's DataLoader does;
    safe while this process has run no parallel torch op, so no thread pool is copied), spawn
    elsewhere. 'spawn' for a process whose torch threads may be running (a notebook kernel).
    """
    job_kwargs = list(job_kwargs)
    if jobs <= 1 or len(job_kwargs) <= 1:
        results = []
        for kwargs in job_kwargs:
            results.append(function(**kwargs))
            if bar is not None:
                bar.update(1)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    context = multiprocessing.get_context(start_method or ("fork" if sys.platform.startswith("linux") else "spawn"))
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(job_kwargs)), mp_context=context,
                               initializer=_start_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(function, **kwargs) for kwargs in job_kwargs]
        for future in as_completed(futures):
            future.result()  # the first failure stops everything at once
            if bar is not None:
                bar.update(1)
        results = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _end_processes(set(multiprocessing.active_children()) - others)
        raise
    pool.shutdown()
    return results


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


_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # in temporary names (shared folders: whose pid)


def _temporary_file(folder, extension):
    """A new empty file .tmp-<pid>@<host>-<random><extension> in `folder`, registered so that a
    signal removes it; the pid lets a later save remove it if this process dies by SIGKILL."""
    handle, path = tempfile.mkstemp(dir=folder, prefix=f".tmp-{os.getpid()}@{_HOST}-", suffix=extension)
    _TEMPORARIES.add(path)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    return path


def _remove_stale_temporaries(folder):
    """Remove the temporary files that processes of this host, now gone, left in `folder` (SIGKILL
    while saving). Where a pid cannot be tested without harm (Windows), nothing is removed."""
    if os.name != "posix":
        return
    pattern = re.compile(rf"\.tmp-([0-9]+)@{re.escape(_HOST)}-")
    for name in os.listdir(folder):
        match = pattern.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:  # gone (PermissionError: alive, another user's)
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
        except OSError:
            pass


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


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


SET_KEYS = ("script", "figure_name", "npz_sha256", "settings_sha256")  # what save_figure adds to the .json


def settings_digest(settings):
    """SHA-256 of the .json's settings (all but this digest; they include the .npz's SHA-256): the
    seal that binds the quick flag, the figure, the seeds and every other setting to the arrays."""
    canonical = json.loads(json.dumps(_to_json(settings), default=str))
    canonical.pop("settings_sha256", None)
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def save_figure(fig, out_dir, name, data, settings, script=None):
    """Save `fig` as DIR/name.pdf and .png, `data` (dict of arrays) as .npz, `settings` as .json:
    the four files are published as a set.

    All four are written in full under temporary names beside their destination, then renamed,
    the .json last and with Ctrl-C/SIGTERM held back, so an interrupted run leaves the previous
    set or the new one, never a mix and no temporary file. The .json also records the figure
    (`name`), the `script` that made it (if given), the SHA-256 of the .npz and a SHA-256 of all its
    own settings, so a reader can check that it describes the .npz beside it and was not edited
    since (load_figure_data does: a quick run relabelled as full is a data error). `name` may contain a
    sub-folder (e.g. 'Q-dynamics/x'). Returns the written paths [.npz, .json, .pdf, .png].
    """
    import matplotlib.pyplot as plt
    stem = os.path.join(out_dir, name)
    folder = os.path.dirname(stem) or "."
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temporaries(folder)
    arrays = {key: np.asarray(value) for key, value in data.items()}
    temporary = {}
    try:
        for extension in (".npz", ".pdf", ".png", ".json"):
            temporary[extension] = _temporary_file(folder, extension)
        with open(temporary[".npz"], "wb") as f:
            np.savez_compressed(f, **arrays)
        # Fixed metadata keep the PDF and PNG byte-identical across runs.
        fig.savefig(temporary[".pdf"], format="pdf", bbox_inches="tight",
                    metadata={"CreationDate": None, "Creator": None})
        fig.savefig(temporary[".png"], format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
        saved_by = {"script": script} if script else {}
        settings = {**saved_by, "figure_name": name, **{k: v for k, v in settings.items() if k not in SET_KEYS},
                    "npz_sha256": _sha256(temporary[".npz"])}
        settings["settings_sha256"] = settings_digest(settings)
        with open(temporary[".json"], "w") as f:
            # default=str: torch dtypes and devices (and anything else without a JSON form) as text
            f.write(json.dumps(_to_json(settings), indent=2, default=str) + "\n")
        with signals_held():
            for extension in (".npz", ".pdf", ".png", ".json"):
                os.replace(temporary[extension], stem + extension)
    finally:
        for path in temporary.values():
            with contextlib.suppress(OSError):
                os.remove(path)  # only where the save did not finish
            _TEMPORARIES.discard(path)
    plt.close(fig)
    return [stem + extension for extension in (".npz", ".json", ".pdf", ".png")]


def write_atomic(path, text):
    """Write text to path complete or not at all, with the usual permissions (0666 less the umask)."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def png_preview(fig, max_width_px=1200, max_dpi=100):
    """The figure as PNG bytes at screen resolution (at most `max_width_px` wide): what a notebook
    shows inline, so that a committed notebook stays small; the saved .png (150 dpi) is for print."""
    import io
    width_inches = fig.get_size_inches()[0]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=min(max_dpi, max_width_px / width_inches), bbox_inches="tight",
                metadata={"Software": None})
    return buffer.getvalue()


class SavedArrays(dict):
    """The arrays of a saved .npz (name -> array). Asking for one it lacks raises UsageError naming
    the file and the array (not KeyError): how --plot-only learns which arrays the plot needs."""

    def __init__(self, arrays, path):
        super().__init__(arrays)
        self.path = path

    def __missing__(self, key):
        raise UsageError(f"{self.path} has no array {key!r}, which the plot needs (saved by another "
                         f"version of the script?); re-run without --plot-only")


def load_figure_data(out_dir, name, script=None, again="re-run without --plot-only"):
    """Load the (data, settings) that save_figure saved as DIR/name.npz/.json, trusting neither:
    the .json must be readable, unedited since it was saved (its settings' SHA-256), and name this
    figure (and `script`, if given); the .npz must be the one it describes (same SHA-256), readable,
    and hold the seeds the .json names. UsageError (one line, ending with `again`) otherwise.

    Returns data (SavedArrays: a missing array raises UsageError when asked for) and settings.
    """
    stem = os.path.join(out_dir, name)
    if not (os.path.isfile(stem + ".npz") and os.path.isfile(stem + ".json")):
        raise UsageError(f"no saved data at {stem}.npz/.json; run without --plot-only first")
    try:
        with open(stem + ".json", encoding="utf-8") as f:
            settings = json.load(f)
    except (OSError, ValueError) as error:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{stem}.json cannot be read (damaged or cut short: {error}); {again}") from None
    required = SET_KEYS if script else SET_KEYS[1:]
    if not isinstance(settings, dict) or any(key not in settings for key in required):
        raise UsageError(f"{stem}.json does not say which script and figure saved it (an older version of "
                         f"this package wrote it, or another program); {again}")
    if settings.get("settings_sha256") != settings_digest(settings):
        raise UsageError(f"{stem}.json was edited after it was saved, or saved by an older version (its settings, "
                         f"such as quick, figure or seeds, are not the ones sealed with the .npz); {again}")
    # a run's output folder may sit inside another (make's float64/): the name ends with the saved one
    if not (name == settings["figure_name"] or name.endswith("/" + settings["figure_name"])) or (
            script and settings["script"] != script):
        raise UsageError(f"{stem}.json holds {settings.get('script', 'another script')}'s figure "
                         f"{settings['figure_name']!r}, not {script or 'this script'}'s {name!r}; {again}")
    if settings["npz_sha256"] != _sha256(stem + ".npz"):
        raise UsageError(f"{stem}.npz is not the file its .json describes (damaged, cut short, or from another "
                         f"run); {again}")
    try:
        with np.load(stem + ".npz", allow_pickle=False) as saved:
            data = SavedArrays({key: saved[key] for key in saved.files}, stem + ".npz")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UsageError(f"{stem}.npz cannot be read (damaged: {error}); {again}") from None
    if isinstance(settings.get("seeds"), list) and "seeds" in data and np.ravel(data["seeds"]).tolist() != np.ravel(settings["seeds"]).tolist():
        raise UsageError(f"{stem}.npz holds seeds {np.ravel(data['seeds']).tolist()}, its .json names "
                         f"{settings['seeds']}; {again}")
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
    and the loss gradient descent minimises (models.TRAINED_ON); save_figure adds the script
    (the file that defines `plot`) and the figure's name, which --plot-only checks.
    """
    args = parse_figure_args(parser, argv)
    defined_in = getattr(sys.modules.get(plot.__module__), "__file__", None)  # the script's file
    script = os.path.basename(defined_in) if defined_in else None
    started = time.time()
    try:
        jobs = make_jobs(args)
        if args.plot_only:
            for job in jobs:
                data, settings = load_figure_data(args.out, job.name, script)
                save_figure(plot(data), args.out, job.name, data, settings, script)
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
            paths = save_figure(plot(data), args.out, job.name, data, settings, script)
            print(f"{summarise(job.name, data)} -> {paths[2]}")
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
