"""Shared fixtures: a tiny CIFAR-shaped data set in the official cifar-10-batches-py layout, and one quick run of
the whole pipeline (`make figures QUICK=1`) whose outputs the end-to-end tests share, so it runs once per session."""
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from helpers import NOTEBOOKS, REPO, write_tiny_cifar

if REPO not in sys.path:
    sys.path.insert(0, REPO)
# A suite started in the background (`nohup ... &`) inherits an ignored SIGINT, which its children would inherit too,
# so the Ctrl-C tests could not interrupt them; a handler (unlike SIG_IGN) is reset to the default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """Path of a folder holding a tiny learnable CIFAR-10 (5 x 200 train, 200 test images)."""
    return write_tiny_cifar(tmp_path_factory.mktemp("tiny_cifar"))


@pytest.fixture(scope="session")
def quick_pipeline(tiny_cifar, tmp_path_factory):
    """`make figures QUICK=1` once (the five scripts, the float64 Fig. 3, both notebooks on the tiny CIFAR-10 and the
    report) into a temporary folder: .out (the figures folder), .executed (the executed notebooks), .result (make's
    CompletedProcess), .notebooks_before (each committed notebook's bytes before the run). The tests that read it
    check its return code themselves."""
    if shutil.which("make") is None:
        pytest.skip("needs GNU make")
    root = tmp_path_factory.mktemp("quick_pipeline")
    out, executed = root / "figures", root / "executed"
    executed.mkdir()
    notebooks = {}
    for name in NOTEBOOKS:
        with open(os.path.join(REPO, name), "rb") as f:
            notebooks[name] = f.read()  # as they were before the run: it must not overwrite them
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the notebooks' kernels use their own backend, as in Jupyter
    result = subprocess.run(["make", "-o", ".venv/.installed", "figures", "QUICK=1", f"OUT={out}",
                             f"CIFAR_DIR={tiny_cifar}", f"EXECUTED={executed}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=1500)
    return SimpleNamespace(out=out, executed=executed, result=result, notebooks_before=notebooks)
