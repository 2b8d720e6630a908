#!/usr/bin/env python3
"""Execute a notebook headless (nbclient), with the CIFAR notebooks' parameters set.

usage: python run_notebook.py NOTEBOOK.ipynb [--out DIR] [--cifar-dir DIR] [--quick]
                              [--device auto|cpu|cuda] [--seed N] [--seeds N] [--jobs N]
                              [--threads N] [--timeout S] [--executed PATH]

The parameters reach the notebook's first cell (tagged `parameters`) as environment variables
(FIGURES_DIR, CIFAR_DIR, QUICK, DEVICE, SEED, SEEDS, JOBS, THREADS). The committed notebook is
never overwritten; --executed saves the executed copy, with its figures and printed tables,
elsewhere. Figures are shown with the kernel's own matplotlib backend (no backend is forced).
On failure it prints one line (the notebook's error) and exits with status 1.
"""
import argparse
import os
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description="execute a notebook headless",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("notebook")
    parser.add_argument("--out", default=None, help="FIGURES_DIR: output root (notebook default: figures, with --quick figures-quick)")
    parser.add_argument("--cifar-dir", default=None, help="CIFAR_DIR: folder that holds or receives cifar-10-batches-py")
    parser.add_argument("--quick", action="store_true", help="QUICK=1: tiny smoke-test settings")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="DEVICE")
    parser.add_argument("--seed", default=None, type=int, help="SEED: the first seed")
    parser.add_argument("--seeds", default=None, type=int, help="SEEDS: how many seeds (SEED, SEED + 1, ...)")
    parser.add_argument("--jobs", default=None, type=int, help="JOBS: worker processes (0: one per CPU core)")
    parser.add_argument("--threads", default=None, type=int, help="THREADS: torch threads of the kernel (0: torch's default)")
    parser.add_argument("--timeout", default=None, type=float, help="seconds per cell (default: none)")
    parser.add_argument("--executed", default=None, metavar="PATH", help="also save the executed notebook here")
    args = parser.parse_args(argv)
    prog = os.path.basename(sys.argv[0])

    notebook_path = os.path.abspath(args.notebook)
    if not os.path.isfile(notebook_path):
        print(f"{prog}: error: no notebook at {args.notebook!r}", file=sys.stderr)
        return 2
    if args.executed and os.path.abspath(args.executed) == notebook_path:
        print(f"{prog}: error: --executed must not overwrite the notebook itself", file=sys.stderr)
        return 2

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    settings = {"FIGURES_DIR": args.out and os.path.abspath(args.out),
                "CIFAR_DIR": args.cifar_dir and os.path.abspath(args.cifar_dir),
                "QUICK": "1" if args.quick else None, "DEVICE": args.device,
                "SEED": None if args.seed is None else str(args.seed),
                "SEEDS": None if args.seeds is None else str(args.seeds),
                "JOBS": None if args.jobs is None else str(args.jobs),
                "THREADS": None if args.threads is None else str(args.threads)}
    for key, value in settings.items():
        if value is not None:
            os.environ[key] = value  # the kernel inherits this process's environment

    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(notebook_path)}})
    started = time.time()
    try:
        client.execute()
    except CellExecutionError as error:
        message = f"{getattr(error, 'ename', 'Error')}: {getattr(error, 'evalue', str(error))}"
        print(f"{prog}: error: {os.path.basename(notebook_path)} failed: {message}", file=sys.stderr)
        return 1
    except (CellTimeoutError, DeadKernelError, TimeoutError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"{prog}: error: {os.path.basename(notebook_path)} failed: {first_line}", file=sys.stderr)
        return 1
    finally:
        if args.executed:
            nbformat.write(notebook, args.executed)
    print(f"{prog}: {os.path.basename(notebook_path)} ran in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
