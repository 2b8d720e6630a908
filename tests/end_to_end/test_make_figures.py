"""The Makefile's notebook step fails loudly except for missing CIFAR-10, and quick runs never touch
the committed files. make runs in a scratch copy of the repository (its own git repository), so
these tests never write into the real checkout."""
import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAKE = ["make", "-o", ".venv/.installed"]  # the venv exists: never (re)install it


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
                                            (["QUICK=1", "OUT=figures"], False)])
def test_only_a_full_run_into_figures_saves_the_notebooks_outputs(args, in_place):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    commands = subprocess.run([*MAKE, "-n", "cifar-figures", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.splitlines()
    notebooks = [line for line in commands if "run_notebook.py" in line]
    assert len(notebooks) == 2 and all(("--in-place" in line) == in_place for line in notebooks)


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
    assert sorted(s.get("num_g_list") == [2, 4] for s in saved) == [False, True, True]


def test_a_quick_run_into_the_committed_figures_is_refused(tmp_path):
    from gfs.cifar import notebook_parameters
    with pytest.raises(notebook_parameters.ParameterError, match="QUICK run into the committed"):
        notebook_parameters.figures_dir(notebook_parameters.COMMITTED_FIGURES, quick=True)
    assert notebook_parameters.figures_dir(None, quick=True) == "figures-quick"
    assert notebook_parameters.figures_dir(None, quick=False) == "figures"
