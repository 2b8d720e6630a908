"""run_notebook.py: the output folder checked before anything runs, folders relative to the caller,
exit status 3 only for missing CIFAR-10, and Ctrl-C / SIGTERM ending the kernel with one line."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from test_faults import LINUX_PROC, running

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_NOTEBOOK = os.path.join(REPO, "run_notebook.py")


def write_notebook(path, *cells):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(path))
    return str(path)


def run(args, cwd, env=None, timeout=120):
    env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, RUN_NOTEBOOK, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_an_unwritable_out_fails_before_the_notebook_runs(tmp_path):
    ran = tmp_path / "ran"
    notebook = write_notebook(tmp_path / "n.ipynb", f"open({str(ran)!r}, 'w').close()")
    (tmp_path / "a_file").write_text("")
    result = run([notebook, "--out", str(tmp_path / "a_file" / "figures")], cwd=tmp_path)
    assert result.returncode == 2 and not ran.exists()  # no kernel ran a cell
    assert result.stderr.count("\n") == 1 and "a_file" in result.stderr and "--out" in result.stderr


def test_relative_folders_in_the_environment_are_the_callers(tmp_path):
    """CIFAR_DIR and FIGURES_DIR set as relative paths mean the caller's folders, although the
    kernel runs in the notebook's folder."""
    seen = tmp_path / "seen.json"
    (tmp_path / "notebooks").mkdir()
    notebook = write_notebook(tmp_path / "notebooks" / "n.ipynb", "import json, os\n"
                              f"folders = {{k: os.environ[k] for k in ('CIFAR_DIR', 'FIGURES_DIR')}}\n"
                              f"json.dump(folders, open({str(seen)!r}, 'w'))")
    (tmp_path / "caller").mkdir()
    result = run([notebook], cwd=tmp_path / "caller", env={"CIFAR_DIR": "data", "FIGURES_DIR": "out"})
    assert result.returncode == 0, result.stderr
    assert json.loads(seen.read_text()) == {"CIFAR_DIR": str(tmp_path / "caller" / "data"),
                                            "FIGURES_DIR": str(tmp_path / "caller" / "out")}


@pytest.mark.parametrize("name", ["ensemble_CIFAR.ipynb", "adversarial_CIFAR.ipynb"])
def test_missing_cifar_is_status_3_and_creates_nothing(tmp_path, name):
    """Both notebooks honour CIFAR_DOWNLOAD=0 (no download, no folder created) and take a
    relative CIFAR_DIR from the caller's folder; only this case is exit status 3."""
    result = run([os.path.join(REPO, name), "--quick", "--out", "out"], cwd=tmp_path,
                 env={"CIFAR_DIR": "none/data", "CIFAR_DOWNLOAD": "0"})
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1
    assert "CifarMissingError" in result.stderr
    assert str(tmp_path / "none" / "data" / "cifar-10-batches-py") in result.stderr  # the caller's folder
    assert not (tmp_path / "none").exists() and not os.path.exists(os.path.join(REPO, "none"))


def test_a_failing_notebook_is_status_1(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "raise RuntimeError('a bug, not missing data')")
    result = run([notebook], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "run_notebook.py: error: n.ipynb failed: RuntimeError: a bug, not missing data"]


@LINUX_PROC
@pytest.mark.parametrize("signum, status, name",
                         [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_ends_the_run_and_its_kernel_with_one_line(tmp_path, signum, status, name):
    kernel_file = tmp_path / "kernel.json"
    notebook = write_notebook(tmp_path / "n.ipynb", "import json, os, time\nfrom ipykernel import get_connection_file\n"
                              f"kernel = {{'pid': os.getpid(), 'connection_file': get_connection_file()}}\n"
                              f"open({str(kernel_file)!r}, 'w').write(json.dumps(kernel))\ntime.sleep(120)")
    process = subprocess.Popen([sys.executable, RUN_NOTEBOOK, notebook], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (kernel_file.exists() and kernel_file.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        kernel = json.loads(kernel_file.read_text())
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == status
    assert err.splitlines() == [
        f"run_notebook.py: stopped by {name}; the notebook's kernel ended; no partial file left"]
    assert out == ""
    # Ended by run_notebook.py before it exits (an orphaned kernel notices its parent's end only
    # later, and leaves its connection file behind).
    assert not running(kernel["pid"])
    assert not os.path.exists(kernel["connection_file"])


def test_in_place_saves_the_outputs_only_after_a_full_successful_run(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "print('a table')")
    result = run([notebook, "--in-place"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = nbformat.read(notebook, as_version=4)
    assert saved.cells[0].outputs[0].text == "a table\n" and saved.cells[0].execution_count == 1
    assert [p.name for p in tmp_path.iterdir()] == ["n.ipynb"]  # no temporary file left

    failing = write_notebook(tmp_path / "f.ipynb", "print('half')", "raise RuntimeError('a bug')")
    before = open(failing, "rb").read()
    assert run([failing, "--in-place"], cwd=tmp_path).returncode == 1
    assert open(failing, "rb").read() == before  # a failed run keeps the committed outputs

    for args, env in ((["--quick"], {}), ([], {"QUICK": "1"})):  # quick outputs never go into the notebook
        result = run([failing, "--in-place", *args], cwd=tmp_path, env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--in-place" in result.stderr
    assert open(failing, "rb").read() == before


ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(home|root|tmp|work|Users|mnt|data|opt|var|srv|scratch)/")


def check_committed_outputs(path, images):
    """A committed notebook shows the outputs of one full, paper-settings run: every code cell
    executed in order, `images` inline figures of modest size, no quick run's output and no path
    of the machine it ran on."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "not one full run"
    outputs = [output for cell in code for output in cell.outputs]
    pngs = [output.data["image/png"] for output in outputs if "image/png" in output.get("data", {})]
    # base64 characters: screen resolution (the saved 150-dpi PNG is about 800,000)
    assert len(pngs) == images and max(map(len, pngs)) < 400_000
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)
    assert "error" not in {output.output_type for output in outputs}
    assert "QUICK" not in text and "saved FIGURES_DIR/" in text
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text).group(0)
    assert os.path.getsize(path) < 3_000_000


@LINUX_PROC
def test_a_cell_time_out_is_one_line_and_ends_the_kernel(tmp_path):
    pid_file = tmp_path / "kernel.pid"
    notebook = write_notebook(tmp_path / "n.ipynb", "import os, time\n"
                              f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)")
    result = run([notebook, "--timeout", "3"], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "run_notebook.py: error: n.ipynb failed: A cell timed out while it was being executed, after 3 seconds."]
    assert not running(int(pid_file.read_text()))  # ended before run_notebook.py exits, its log silent


def test_a_dead_kernel_is_one_line(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb",
                              "import os\nos.write(2, b'noise on the kernel stderr\\n')\nos._exit(9)")
    result = run([notebook], cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["run_notebook.py: error: n.ipynb failed: Kernel died"]
