#!/usr/bin/env python3
"""Execute a notebook headless (nbclient), with the CIFAR notebooks' parameters set.

usage: python run_notebook.py NOTEBOOK.ipynb [--out DIR] [--cifar-dir DIR] [--quick]
                              [--device auto|cpu|cuda|cuda:N] [--seed N] [--seeds N] [--jobs N]
                              [--threads N] [--timeout S] [--executed PATH] [--in-place]

The parameters reach the notebook's first cell (tagged `parameters`) as environment variables
(FIGURES_DIR, CIFAR_DIR, QUICK, DEVICE, SEED, SEEDS, JOBS, THREADS); a flag overrides the
variable. Relative folders (--out, --cifar-dir, or FIGURES_DIR and CIFAR_DIR set in the
environment) are taken relative to the directory this command runs in, not the notebook's.
The output folder is checked (and created) before the notebook starts. --executed saves the
executed copy, with its figures and printed tables, elsewhere; --in-place saves it over NOTEBOOK,
only after a successful run and never with --quick (what a full `make figures` does, so that the
committed notebooks show the paper-settings run). Figures are shown with the kernel's own
matplotlib backend (no backend is forced).

Exit status: 0 the notebook ran; 1 it failed (its error is printed in one line); 2 bad arguments
(nothing ran); 3 CIFAR-10 is absent and could not be downloaded (the notebook raised
cifar.CifarMissingError; `make figures` skips the notebook for this status only); 130 or 143
stopped by Ctrl-C or SIGTERM (one line; the notebook's kernel and its worker processes end).
"""
import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

from figure_driver import (UsageError, check_output_dir, device_name, exit_cleanly_on_signals, signals_held,
                           write_atomic)

MISSING_DATA = 3  # exit status: the notebook stopped because CIFAR-10 is absent (cifar.CifarMissingError)


def main(argv=None):
    # Without a flag (or its environment variable) the notebook's own default applies, named here once.
    parser = argparse.ArgumentParser(description="execute a notebook headless")
    parser.add_argument("notebook")
    parser.add_argument("--out", help="FIGURES_DIR: output root (default: figures, with --quick figures-quick)")
    parser.add_argument("--cifar-dir",
                        help="CIFAR_DIR: folder that holds or receives cifar-10-batches-py (default: data)")
    parser.add_argument("--quick", action="store_true", help="QUICK=1: tiny smoke-test settings")
    parser.add_argument("--device", type=device_name, help="DEVICE: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, help="SEED: the first seed (default: 0)")
    parser.add_argument("--seeds", type=int, help="SEEDS: how many seeds, SEED, SEED + 1, ... (default: 3, quick 2)")
    parser.add_argument("--jobs", type=int, help="JOBS: worker processes (default 0: one per CPU core, 1 on a GPU)")
    parser.add_argument("--threads", type=int, help="THREADS: torch threads of the kernel (default 0: torch's own)")
    parser.add_argument("--timeout", type=float, help="seconds per cell (default: no limit)")
    parser.add_argument("--executed", metavar="PATH", help="also save the executed notebook here")
    parser.add_argument("--in-place", action="store_true",
                        help="after a successful run, save the executed notebook over NOTEBOOK (not with --quick)")
    args = parser.parse_args(argv)
    prog = os.path.basename(sys.argv[0])
    client = None  # the notebook's client once it exists: a signal then ends its kernel too
    exit_cleanly_on_signals(prog, cleanup=lambda: _end_kernel(client))

    notebook_path = os.path.abspath(args.notebook)
    if not os.path.isfile(notebook_path):
        print(f"{prog}: error: no notebook at {args.notebook!r}", file=sys.stderr)
        return 2
    if args.executed and os.path.abspath(args.executed) == notebook_path:
        print(f"{prog}: error: --executed must not overwrite the notebook itself (that is --in-place)", file=sys.stderr)
        return 2
    if args.in_place and (args.quick or os.environ.get("QUICK") == "1"):
        print(f"{prog}: error: --in-place with a quick run: the notebook keeps the outputs of a full run",
              file=sys.stderr)
        return 2
    # Folders relative to where this command runs (the kernel runs in the notebook's folder).
    out = args.out if args.out is not None else os.environ.get("FIGURES_DIR")
    cifar_dir = args.cifar_dir if args.cifar_dir is not None else os.environ.get("CIFAR_DIR")
    try:
        if out:
            check_output_dir(out)  # now, not in the last cell after all the training
    except UsageError as error:
        print(f"{prog}: error: {error} (--out / FIGURES_DIR)", file=sys.stderr)
        return 2

    settings = {"FIGURES_DIR": out and os.path.abspath(out), "CIFAR_DIR": cifar_dir and os.path.abspath(cifar_dir),
                "QUICK": "1" if args.quick else None, "DEVICE": args.device,
                "SEED": None if args.seed is None else str(args.seed),
                "SEEDS": None if args.seeds is None else str(args.seeds),
                "JOBS": None if args.jobs is None else str(args.jobs),
                "THREADS": None if args.threads is None else str(args.threads)}
    for key, value in settings.items():
        if value is not None:
            os.environ[key] = value  # the kernel inherits this process's environment

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = nbformat.read(notebook_path, as_version=4)
    # The kernel's own log only at level ERROR: its start-up warnings are not the notebook's.
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": os.path.dirname(notebook_path)}})
    started = time.time()
    failure = []
    # The notebook runs in a second thread, so that Ctrl-C and SIGTERM reach this thread's handlers
    # (in the main thread nbclient would install its own, which end the kernel mid-cell and print
    # tracebacks).
    runner = threading.Thread(target=_execute, args=(client, failure), daemon=True)
    runner.start()
    while runner.is_alive():
        runner.join(0.2)
    if args.executed:
        nbformat.write(notebook, args.executed)
    name = os.path.basename(notebook_path)
    if failure:
        error = failure[0]
        if isinstance(error, CellExecutionError):
            ename = getattr(error, "ename", "Error")
            print(f"{prog}: error: {name} failed: {ename}: {getattr(error, 'evalue', str(error))}", file=sys.stderr)
            return MISSING_DATA if ename == "CifarMissingError" else 1
        if isinstance(error, (CellTimeoutError, DeadKernelError, TimeoutError)):
            _end_kernel(client)  # a timed-out cell's kernel may still run: it must not outlive this command
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"{prog}: error: {name} failed: {first_line}", file=sys.stderr)
            return 1
        raise error
    if args.in_place:
        with signals_held():  # Ctrl-C or SIGTERM take effect after the notebook is replaced whole
            write_atomic(notebook_path, nbformat.writes(notebook) + "\n")  # the newline nbformat.write adds
    print(f"{prog}: {name} ran in {time.time() - started:.1f} s" + (", outputs saved in it" if args.in_place else ""))
    return 0


def _execute(client, failure):
    try:
        # The kernel process's own stderr is not shown: the notebook's output, errors included, comes
        # through its cells, and a kernel ended mid-message by Ctrl-C or a time-out can print libzmq
        # assertions there after this command's one line (the stderr argument reaches its Popen).
        client.execute(stderr=subprocess.DEVNULL)
    except BaseException as error:  # reported by the main thread
        failure.append(error)


def _end_kernel(client, grace=0.5):
    """End the notebook's kernel and its worker processes (signal clean-up; returns what it did).

    The kernel is interrupted first, as Jupyter's stop button does, so that the running cell's
    clean-up runs (a figure being saved is completed or removed); then its process group (the
    kernel started it as a session of its own, with the worker processes in it) is terminated,
    and killed if it does not end within 5 s. Its connection file is removed.
    """
    manager = getattr(client, "km", None)
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return ""
    with contextlib.suppress(OSError):
        os.kill(process.pid, signal.SIGINT)
    for signum, wait in ((None, grace), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if signum is not None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signum)
        with contextlib.suppress(Exception):
            process.wait(timeout=wait)
            break
    with contextlib.suppress(Exception):
        os.remove(manager.connection_file)
    return "the notebook's kernel ended"


if __name__ == "__main__":
    sys.exit(main())
