#!/usr/bin/env python3
"""Execute a CIFAR notebook headless, each flag setting a parameter of its first cell as `papermill -p` does, with
one-line errors (the flags: --help; the exit statuses: docs/cifar.md, "Running them"). Beyond papermill: every path
and parameter value (notebook_parameters.RULES) is checked before a kernel starts; relative folders are the caller's;
Ctrl-C and SIGTERM end the kernel and workers; --in-place replaces the notebook whole, only after a successful full run.
"""
import argparse
import ast
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

from gfs.cifar import notebook_parameters as rules
from gfs.runs.command_line import (check_output_dir, device_name, positive_int, refuse_quick_into_committed,
                                   resolve_device, UsageError)
from gfs.runs.processes import end_process_group, exit_cleanly_on_signals, signals_held
from gfs.runs.saved_files import hold_output_dir, write_atomic

MISSING_DATA = 3  # exit status: the notebook stopped because CIFAR-10 is absent (dataset.CifarMissingError)
BAD_PARAMETERS = 2  # exit status: a flag or a notebook parameter that cannot run (notebook_parameters.ParameterError)


def whole_number(text):
    """argparse type of --seed, --jobs, --threads: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value}")
    return value


def seconds(text):
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, not {text!r}")
    return value


def parameter_value(text):
    """VALUE of -p NAME VALUE: a Python literal (7, 1e-3, True, None, [1, 2], 'text'), else a float
    (nan, inf: refused later where a parameter must be finite), else the text itself (as papermill -p)."""
    for parse in (ast.literal_eval, float):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            pass
    return text


# The parameters that have a flag of their own (-p refuses them: the flag converts folders, checks devices)
FLAG_OF = {"CIFAR_DIR": "--cifar-dir", "FIGURES_DIR": "--out", "QUICK": "--quick", "DOWNLOAD": "--no-download",
           "DEVICE": "--device", "SEED": "--seed", "SEEDS": "--seeds", "JOBS": "--jobs", "THREADS": "--threads"}


def check_paths_and_parameters(args, notebook, notebook_dir):
    """Everything that can be checked before a kernel starts: returns (the parameters for papermill, the output
    folder); UsageError or ParameterError (one line) for the first problem."""
    defaults = rules.cell_defaults(notebook, os.path.basename(args.notebook))
    for name, _ in args.parameter or []:
        if name in FLAG_OF:
            raise UsageError(f"-p {name}: set it with {FLAG_OF[name]}")
        if defaults is not None and name not in defaults:
            raise UsageError(f"-p {name}: not a parameter of {os.path.basename(args.notebook)} (its parameters: "
                             f"{', '.join(defaults)})")
    # The papermill parameters the flags and -p give, folders relative to the notebook's folder (where the kernel runs)
    relative = lambda folder: os.path.relpath(os.path.abspath(folder), notebook_dir)  # noqa: E731
    given = {"CIFAR_DIR": args.cifar_dir and relative(args.cifar_dir), "FIGURES_DIR": args.out and relative(args.out),
             "QUICK": args.quick or None, "DOWNLOAD": False if args.no_download else None, "DEVICE": args.device,
             "SEED": args.seed, "SEEDS": args.seeds, "JOBS": args.jobs, "THREADS": args.threads}
    parameters = {name: value for name, value in given.items() if value is not None}  # None: the flag not given
    parameters.update((name, parameter_value(value)) for name, value in args.parameter or [])
    values = {**(defaults or {}), **parameters}
    rules.check(values)
    quick = values.get("QUICK") is True
    out = args.out or os.path.join(notebook_dir, rules.figures_dir(values.get("FIGURES_DIR"), quick))
    if args.out:
        try:
            check_output_dir(args.out)  # now, not in the last cell after all the training
        except UsageError as error:
            raise UsageError(f"{error} (--out)") from None
    if quick:
        refuse_quick_into_committed(out, "--out")
    if args.executed:
        folder = os.path.dirname(os.path.abspath(args.executed))
        if os.path.isdir(args.executed) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"--executed {args.executed!r}: " + ("is a folder" if os.path.isdir(args.executed) else
                             f"no writable folder {folder!r} to save it in"))
    if args.device:
        try:
            resolve_device(args.device)  # a GPU that is not there: refused before a kernel starts
        except UsageError as error:
            raise UsageError(f"{error} (--device)") from None
    return parameters, out


def main(argv=None):
    parser = argparse.ArgumentParser(description="execute a CIFAR notebook headless (its parameters set as papermill does)")
    parser.add_argument("notebook")
    parser.add_argument("--out", help="FIGURES_DIR: output root (default: figures, with --quick figures-quick)")
    parser.add_argument("--cifar-dir", help="CIFAR_DIR: folder that holds or receives cifar-10-batches-py (default: data)")
    parser.add_argument("--quick", action="store_true", help="QUICK: tiny smoke-test settings")
    parser.add_argument("--no-download", action="store_true", help="DOWNLOAD=False: never download CIFAR-10")
    parser.add_argument("--device", type=device_name, help="DEVICE: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--seed", type=whole_number, help="SEED: the first seed (default: 0)")
    parser.add_argument("--seeds", type=positive_int, help="SEEDS: how many seeds, SEED, SEED + 1, ... (default: 3, quick 2)")
    parser.add_argument("--jobs", type=whole_number, help="JOBS: worker processes (default 0: one per CPU core, 1 on a GPU)")
    parser.add_argument("--threads", type=whole_number, help="THREADS: torch threads of the kernel (default 0: torch's own)")
    parser.add_argument("--timeout", type=seconds, help="seconds per cell (default: no limit)")
    parser.add_argument("--executed", metavar="PATH", help="also save the executed notebook here")
    parser.add_argument("--in-place", action="store_true",
                        help="after a successful run, save the executed notebook over NOTEBOOK (not with --quick)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="set another parameter of the notebook's parameters cell (VALUE: a Python literal, "
                             "e.g. -p LR 1e-4 -p NUM_G_LIST '[2, 4]'); checked before the kernel starts")
    args = parser.parse_args(argv)
    prog = os.path.basename(sys.argv[0])
    client = None  # the notebook's client once it exists: a signal then ends its kernel too
    exit_cleanly_on_signals(prog, cleanup=lambda: _end_kernel(client))

    def stop(message, status=BAD_PARAMETERS):  # the one-line error; returns the exit status
        print(f"{prog}: error: {message}", file=sys.stderr)
        return status

    import nbformat
    notebook_path = os.path.abspath(args.notebook)
    if not os.path.isfile(notebook_path):
        return stop(f"no notebook at {args.notebook!r}")
    try:
        notebook = nbformat.read(notebook_path, as_version=4)
    except Exception as error:  # not JSON, not a notebook, unreadable: nbformat's errors vary
        return stop(f"{args.notebook!r} is not a Jupyter notebook ({_first_line(error)[:200]})")
    if args.executed and os.path.abspath(args.executed) == notebook_path:
        return stop("--executed must not overwrite the notebook itself (that is --in-place)")
    if args.in_place and args.quick:
        return stop("--in-place with a quick run: the notebook keeps the outputs of a full run")
    notebook_dir = os.path.dirname(notebook_path)
    try:
        parameters, out = check_paths_and_parameters(args, notebook, notebook_dir)
        if os.path.isdir(out):  # two runs of one notebook into one folder would overwrite each other's files
            hold_output_dir(out, f"run_notebook.py {os.path.basename(os.path.abspath(args.notebook))}")
    except (UsageError, rules.ParameterError) as error:
        return stop(str(error))

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from papermill.parameterize import parameterize_notebook

    if parameters:
        notebook = _parameterize(notebook, parameters, parameterize_notebook)
    # The kernel's own log only at level ERROR: its start-up warnings are not the notebook's.
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": notebook_dir}})
    started = time.time()
    failure = []
    # The notebook runs in a second thread, so that Ctrl-C and SIGTERM reach this thread's handlers (in the main
    # thread nbclient would install its own, which end the kernel mid-cell and print tracebacks).
    runner = threading.Thread(target=_execute, args=(client, failure), daemon=True)
    runner.start()
    while runner.is_alive():
        runner.join(0.2)
    keep_final_progress_lines(notebook)
    record_injected_parameters(notebook)
    name = os.path.basename(notebook_path)
    if args.executed:
        try:
            nbformat.write(notebook, args.executed)
        except OSError as error:  # checked before the run; the folder went away since
            return stop(f"cannot save the executed notebook as {args.executed!r}: {error.strerror or error}", 1)
    if failure:
        error = failure[0]
        if isinstance(error, CellExecutionError):
            ename = getattr(error, "ename", "Error")
            return stop(f"{name} failed: {ename}: {getattr(error, 'evalue', str(error))}",
                          {"CifarMissingError": MISSING_DATA, "ParameterError": BAD_PARAMETERS}.get(ename, 1))
        if isinstance(error, (CellTimeoutError, DeadKernelError, TimeoutError)):
            _end_kernel(client)  # a timed-out cell's kernel may still run: it must not outlive this command
            return stop(f"{name} failed: {_first_line(error)}", 1)
        raise error
    if args.in_place:
        with signals_held():  # Ctrl-C or SIGTERM take effect after the notebook is replaced whole
            write_atomic(notebook_path, nbformat.writes(notebook) + "\n")  # the newline nbformat.write adds
    print(f"{prog}: {name} ran in {time.time() - started:.1f} s" + (", outputs saved in it" if args.in_place else ""))
    return 0


def _parameterize(notebook, parameters, parameterize_notebook):
    """papermill's injection of `parameters` after the cell tagged `parameters`; the injected cell gets a stable id
    from the notebook's own prefix, and no cell keeps the empty tag list that papermill's search needs."""
    for cell in notebook.cells:
        cell.metadata.setdefault("tags", [])
    notebook.metadata.setdefault("papermill", {})  # where papermill records the parameters
    notebook = parameterize_notebook(notebook, parameters, kernel_name="python3", language="python")
    prefix = notebook.cells[0].get("id", "cell").rsplit("-", 1)[0]
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.tags:
            cell["id"] = f"{prefix}-injected-parameters"
        if not cell.metadata.tags:
            del cell.metadata["tags"]
    return notebook


def record_injected_parameters(notebook):
    """The saved copy keeps papermill's injected cell as a record, commented out: running the saved
    notebook yourself (Jupyter's Run All) then uses the first cell's values, not this run's folders."""
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []) and not cell.source.startswith("# The parameters"):
            lines = [line for line in cell.source.splitlines() if line.strip() and line.strip() != "# Parameters"]
            cell.source = ("# The parameters this run was given (papermill's injected cell), kept as a record and\n"
                           "# commented out, so that running this notebook yourself uses the first cell's values:\n"
                           + "".join(f"# {line}\n" for line in lines))


_PROGRESS_REDRAW = re.compile(r"[^\n]*\r(?!\n)")  # a line's text up to its last carriage return: redrawn


def keep_final_progress_lines(notebook):
    """Each cell's stderr (progress bars) as one output, in the first one's place, holding each bar's last state: a
    text progress bar redraws its line with a carriage return, and every redraw would be stored."""
    is_stderr = lambda output: output.get("output_type") == "stream" and output.get("name") == "stderr"  # noqa: E731
    for cell in notebook.cells:
        streams = [output for output in cell.get("outputs", []) if is_stderr(output)]
        if streams:
            text = _PROGRESS_REDRAW.sub("", "".join(output["text"] for output in streams))
            streams[0]["text"] = "".join(dict.fromkeys(text.splitlines(keepends=True)))  # one line per bar
            cell["outputs"] = [output for output in cell["outputs"] if not is_stderr(output) or output is streams[0]]


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _execute(client, failure):
    try:
        # The kernel process's own stderr is not shown: the notebook's output, errors included, comes
        # through its cells, and a kernel ended mid-message by Ctrl-C or a time-out can print libzmq
        # assertions there after this command's one line (the stderr argument reaches its Popen).
        client.execute(stderr=subprocess.DEVNULL)
    except BaseException as error:  # reported by the main thread
        failure.append(error)


def _end_kernel(client):
    """End the notebook's kernel and its worker processes; returns what it did (for the signal's line).
    Interrupted first, as Jupyter's stop button does, so that the running cell's clean-up runs (a figure being saved
    is completed or removed); then its process group (the kernel's session, workers included) is ended."""
    manager = getattr(client, "km", None)
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return ""
    with contextlib.suppress(OSError):
        os.kill(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=0.5)
    except Exception:
        end_process_group(process, grace=5)
    with contextlib.suppress(Exception):
        os.remove(manager.connection_file)
    return "the notebook's kernel ended"


if __name__ == "__main__":
    sys.exit(main())
