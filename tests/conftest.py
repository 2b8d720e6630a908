"""Shared fixtures: a tiny CIFAR-shaped data set in the official cifar-10-batches-py layout, and one quick run of
the whole pipeline (`make figures QUICK=1`) whose outputs the end-to-end tests share, so it runs once per session,
in the background while the other tests run."""
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from gfs.runs.processes import end_process_group, end_with_parent
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


QUICK_PIPELINE_TIMEOUT = 1500  # seconds from its start (about 100 s on two idle cores)


def uses_quick_pipeline(item):
    return "quick_pipeline" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after pytest's own reordering
def pytest_collection_modifyitems(items):
    # The tests that read the quick pipeline run last, so that the pipeline, started in the background before the
    # first test (start_quick_pipeline), runs beside the others on the second core instead of before them.
    items.sort(key=uses_quick_pipeline)  # stable: every other test keeps its order


@pytest.fixture(scope="session", autouse=True)
def start_quick_pipeline(request, tmp_path_factory):
    """Start `make figures QUICK=1` (the five scripts, the float64 Fig. 3, both notebooks on the tiny CIFAR-10 and
    the report) into a temporary folder in the background, once, if a selected test reads it; yields the running
    pipeline (or None without make; or its setup error, which only its readers then report) and ends it if the
    session stops first."""
    if shutil.which("make") is None or not any(map(uses_quick_pipeline, request.session.items)):
        yield None
        return
    try:
        root = tmp_path_factory.mktemp("quick_pipeline")
        out, executed = root / "figures", root / "executed"
        executed.mkdir()
        notebooks = {}
        for name in NOTEBOOKS:
            with open(os.path.join(REPO, name), "rb") as f:
                notebooks[name] = f.read()  # as they were before the run: it must not overwrite them
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # the notebooks' kernels use their own backend, as in Jupyter
        command = ["make", "-o", ".venv/.installed", "figures", "QUICK=1", f"OUT={out}",
                   f"CIFAR_DIR={request.getfixturevalue('tiny_cifar')}", f"EXECUTED={executed}"]
        with open(root / "stdout", "w") as stdout, open(root / "stderr", "w") as stderr:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, text=True,
                                       start_new_session=True,  # its own process group, ended as one
                                       # and sent SIGTERM if pytest dies (make passes it on to the scripts)
                                       preexec_fn=lambda: end_with_parent(signal.SIGTERM))
    except Exception as error:  # only the tests that read the pipeline fail for it, not every test
        yield SimpleNamespace(error=error)
        return
    pipeline = SimpleNamespace(error=None, process=process, started=time.monotonic(), command=command, root=root,
                               out=out, executed=executed, notebooks_before=notebooks)
    yield pipeline
    if process.poll() is None:  # the session ended before the tests that read it
        end_process_group(process, grace=30)


@pytest.fixture(scope="session")
def quick_pipeline(start_quick_pipeline):
    """The background `make figures QUICK=1` once it has finished: .out (the figures folder), .executed (the
    executed notebooks), .result (make's CompletedProcess), .notebooks_before (each committed notebook's bytes before
    the run). The tests that read it check its return code themselves."""
    pipeline = start_quick_pipeline
    if pipeline is None:
        pytest.skip("needs GNU make")
    if pipeline.error is not None:
        raise pipeline.error
    late, left = "", pipeline.started + QUICK_PIPELINE_TIMEOUT - time.monotonic()
    try:
        returncode = pipeline.process.wait(timeout=max(1, left))
    except subprocess.TimeoutExpired:
        returncode = end_process_group(pipeline.process, grace=30)
        late = f"\nstopped: still running {QUICK_PIPELINE_TIMEOUT} s after its start"
    stdout, stderr = [(pipeline.root / name).read_text() for name in ("stdout", "stderr")]
    result = subprocess.CompletedProcess(pipeline.command, returncode, stdout, stderr + late)
    return SimpleNamespace(out=pipeline.out, executed=pipeline.executed, result=result,
                           notebooks_before=pipeline.notebooks_before)
