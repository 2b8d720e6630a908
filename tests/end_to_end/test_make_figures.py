"""The Makefile's notebook step fails loudly except for missing CIFAR-10, and quick runs never touch
the committed files. make runs in a scratch copy of the repository (its own git repository), so
these tests never write into the real checkout."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from helpers import LINUX_PROC, quick_values, running

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE = ["make", "--no-print-directory", "-o", ".venv/.installed"]  # the venv exists: never (re)install it


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A copy of the repository's files (tracked, and new ones not ignored) as a fresh git
    repository with one commit, using this repository's .venv."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = tmp_path_factory.mktemp("scratch_repo")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(root, name))
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), root / ".venv")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-q", "-m", "scratch", cwd=root)
    assert git("status", "--porcelain", cwd=root) == ""
    return root


def make(scratch, *targets, cifar_dir):
    env = dict(os.environ, CIFAR_DOWNLOAD="0")  # never the network: no CIFAR-10 means missing
    return subprocess.run([*MAKE, *targets, f"CIFAR_DIR={cifar_dir}"], cwd=scratch, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_missing_cifar_is_skipped_and_a_quick_run_leaves_the_tree_clean(scratch, tmp_path):
    result = make(scratch, "cifar-figures", "report", "QUICK=1", cifar_dir=tmp_path / "a folder" / "none")  # quoted
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for figure, notebook in (("Fig. 10", "ensemble_CIFAR.ipynb"), ("Fig. 11", "adversarial_CIFAR.ipynb")):
        assert f"SKIPPED {figure} ({notebook})" in result.stdout
    assert str(tmp_path / "a folder" / "none" / "cifar-10-batches-py") in result.stderr  # one path, not two words
    report = (scratch / "figures-quick" / "REPORT.md").read_text()  # quick output in its own folder
    for figure in ("Fig. 10", "Fig. 11"):  # the report says they were not run
        assert re.search(rf"^\| {figure} \|.*\*\*not run\*\*", report, re.MULTILINE), figure
    assert git("status", "--porcelain", cwd=scratch) == ""  # committed figures/ and notebooks untouched


def test_a_quick_figure_script_writes_to_figures_quick(scratch):
    subprocess.run([sys.executable, "Q_convergence_radial.py", "--quick", "--no-progress"], cwd=scratch, check=True,
                   capture_output=True)
    assert (scratch / "figures-quick" / "Q-convergence").is_dir()
    assert git("status", "--porcelain", cwd=scratch) == ""


def test_a_failing_notebook_stops_make(scratch, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('a bug')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(scratch / "ensemble_CIFAR.ipynb"))
    try:
        result = make(scratch, "cifar-figures", "QUICK=1", cifar_dir=tmp_path / "none")
    finally:
        git("checkout", "--", "ensemble_CIFAR.ipynb", cwd=scratch)
    assert result.returncode != 0
    assert "ensemble_CIFAR.ipynb failed: RuntimeError: a bug" in result.stderr
    assert "SKIPPED" not in result.stdout and "adversarial_CIFAR" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, in_place", [([], True), (["QUICK=1"], False), (["OUT=elsewhere"], False),
                                            (["OUT=./figures"], True), ([f"OUT={REPO}/figures"], True)])
def test_only_a_full_run_into_figures_saves_the_notebooks_outputs(args, in_place):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    commands = subprocess.run([*MAKE, "-n", "cifar-figures", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.splitlines()
    notebooks = [line for line in commands if "run_notebook.py" in line]
    assert len(notebooks) == 2 and all(("--in-place" in line) == in_place for line in notebooks)


@pytest.mark.slow
def test_papermill_quick_writes_only_quick_outputs(scratch, tiny_cifar):
    """`papermill NOTEBOOK OUT -p QUICK True` (the README's other way to run a notebook): the quick
    settings apply, the outputs go to figures-quick/ labelled quick, and the committed figures/
    and notebooks stay byte-identical."""
    papermill = os.path.join(os.path.dirname(sys.executable), "papermill")
    executed = scratch / "figures-quick" / "executed.ipynb"
    os.makedirs(executed.parent, exist_ok=True)
    result = subprocess.run([papermill, "ensemble_CIFAR.ipynb", str(executed), "-p", "QUICK", "True",
                             "-p", "CIFAR_DIR", tiny_cifar, "-p", "JOBS", "2", "--no-progress-bar"],
                            cwd=scratch, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert git("status", "--porcelain", cwd=scratch) == ""  # figures/ and the notebooks untouched
    saved = [json.loads(path.read_text()) for path in (scratch / "figures-quick" / "ensemble").glob("*.json")]
    assert len(saved) == 3 and all(s["quick"] is True for s in saved)  # two numerics and the fit-size experiment
    assert sorted(s.get("num_g_list") == quick_values("ensemble_CIFAR.ipynb")["NUM_G_LIST"] for s in saved) == \
        [False, True, True]


def test_a_quick_run_into_the_committed_figures_is_refused(tmp_path):
    from gfs.cifar import notebook_parameters
    with pytest.raises(notebook_parameters.ParameterError, match="never writes into the committed figures/"):
        notebook_parameters.figures_dir(notebook_parameters.COMMITTED_FIGURES, quick=True)
    assert notebook_parameters.figures_dir(None, quick=True) == "figures-quick"
    assert notebook_parameters.figures_dir(None, quick=False) == "figures"


@pytest.mark.parametrize("out", ["figures", "./figures", f"{REPO}/figures", "figures/sub", "link"])
def test_make_refuses_a_quick_run_into_the_committed_figures_before_anything_runs(out, tmp_path):
    """`make figures QUICK=1 OUT=figures`, however OUT is spelled: one line, nothing run (make -n shows
    no command either)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    link = tmp_path / "link"
    os.symlink(os.path.join(REPO, "figures"), link)
    out = str(link) if out == "link" else out
    result = subprocess.run([*MAKE, "-n", "figures", "QUICK=1", f"OUT={out}"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "never writes into the committed figures/" in result.stderr


def processes_in(folder):
    """{pid: command line} of the processes whose working folder is `folder` (make, its shells, the scripts,
    their workers)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(folder) and running(int(pid)):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found[int(pid)] = f.read().replace(b"\0", b" ").decode()
        except OSError:
            pass
    return found


@LINUX_PROC
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_make_stops_every_script_it_started(scratch, signum):
    """Ctrl-C (SIGINT to make's process group, as a terminal sends it) or SIGTERM (to make alone, as a job
    scheduler sends it) during `make paper-scripts QUICK=1`, while the Fig. 7 script (started in the background)
    and the first of the others run: within 10 s no process of it is left, and the Fig. 7 script did not go on
    to save its figure after the stop (it would, were it left running), nor did any script leave a partial file."""
    out = scratch / f"interrupted-{signum}"
    make_run = subprocess.Popen([*MAKE, "paper-scripts", "QUICK=1", f"OUT={out}"], cwd=scratch,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 60
        while make_run.poll() is None and time.time() < deadline and not all(
                any(script in command for command in processes_in(scratch).values())
                for script in ("Q_convergence_radial.py", "Q_dynamics_elementwise.py")):
            time.sleep(0.05)
        assert make_run.poll() is None, "make ended before it could be interrupted"
        if signum == signal.SIGINT:
            os.killpg(make_run.pid, signum)
        else:
            make_run.send_signal(signum)
        make_run.wait(timeout=10)
        deadline = time.time() + 10
        while processes_in(scratch) and time.time() < deadline:
            time.sleep(0.2)
        left = processes_in(scratch)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(make_run.pid, signal.SIGKILL)
        for pid in processes_in(scratch):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        make_run.communicate()
    assert make_run.returncode != 0
    assert left == {}
    assert not (out / "Q-convergence").exists()  # Fig. 7 was stopped, not left to finish
    assert [path.name for path in out.rglob(".tmp-*")] == []


def test_plain_papermill_stops_a_bad_parameter_before_any_data_is_read(tmp_path):
    """`papermill ensemble_CIFAR.ipynb OUT -p LR nan`: the derived cell refuses it (a ParameterError, not the
    CifarMissingError that reading the absent data would give), and papermill parses every line of the
    parameters cell (no "Unable to parse" warning)."""
    papermill = os.path.join(os.path.dirname(sys.executable), "papermill")
    result = subprocess.run([papermill, "ensemble_CIFAR.ipynb", str(tmp_path / "x.ipynb"), "-p", "LR", "nan",
                             "-p", "CIFAR_DIR", str(tmp_path / "none"), "-p", "DOWNLOAD", "False",
                             "--no-progress-bar"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "ParameterError: LR must be a finite number > 0, not nan" in result.stderr
    assert "CifarMissingError" not in result.stderr and "Unable to parse" not in result.stderr


def test_the_report_of_unchanged_data_is_byte_identical_and_dated_by_its_data(tmp_path, monkeypatch):
    """`make report` twice leaves the tree clean: the report is dated by its newest saved figure, not the clock."""
    import make_report
    for name in ("Q-distribution/linear_mhn_100_100_100", "Q-distribution/tanh_mhn_100_100_100"):
        os.makedirs(tmp_path / "Q-distribution", exist_ok=True)
        for extension in (".npz", ".json"):
            shutil.copy(os.path.join(REPO, "figures", name + extension), tmp_path / (name + extension))
    created = max(json.loads((tmp_path / (name + ".json")).read_text())["created"]
                  for name in ("Q-distribution/linear_mhn_100_100_100", "Q-distribution/tanh_mhn_100_100_100"))
    clock = iter(range(100))  # a clock date would differ between the two reports
    monkeypatch.setattr(time, "strftime", lambda *args: f"clock {next(clock)}")
    make_report.main(["--out", str(tmp_path)])
    first = (tmp_path / "REPORT.md").read_bytes()
    make_report.main(["--out", str(tmp_path)])
    assert (tmp_path / "REPORT.md").read_bytes() == first
    import datetime
    date = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").astimezone(datetime.timezone.utc)
    assert f"up to {date.isoformat(' ', 'minutes')[:16]} UTC" in first.decode()
