"""run_notebook.py: the output folder checked before anything runs, folders relative to the caller,
exit status 3 only for missing CIFAR-10, and Ctrl-C / SIGTERM ending the kernel with one line."""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from helpers import LINUX_PROC, running

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def write_parameterised_notebook(path, parameters, body):
    """A notebook whose first cell is tagged `parameters`, as the CIFAR notebooks'."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(parameters), nbformat.v4.new_code_cell(body)])
    notebook.cells[0].metadata["tags"] = ["parameters"]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(path))
    return str(path)


def test_flags_set_the_parameters_as_papermill_does_with_the_callers_folders(tmp_path):
    """Flags reach the parameters through papermill's injected cell (after the tagged one);
    relative folders are the caller's although the kernel runs in the notebook's folder; a flag
    not given keeps the notebook's default; environment variables play no part."""
    seen = tmp_path / "seen.json"
    (tmp_path / "notebooks").mkdir()
    notebook = write_parameterised_notebook(
        tmp_path / "notebooks" / "n.ipynb", 'CIFAR_DIR = "data"\nFIGURES_DIR = None\nQUICK = False\nSEED = 0\nJOBS = 0',
        "import json, os\n"
        f"json.dump([os.path.abspath(CIFAR_DIR), os.path.abspath(FIGURES_DIR), QUICK, SEED, JOBS], open({str(seen)!r}, 'w'))")
    (tmp_path / "caller").mkdir()
    result = run([notebook, "--cifar-dir", "data", "--out", "out", "--seed", "7", "--executed", "x.ipynb"],
                 cwd=tmp_path / "caller", env={"CIFAR_DIR": "ignored", "SEED": "9"})
    assert result.returncode == 0, result.stderr
    assert json.loads(seen.read_text()) == [str(tmp_path / "caller" / "data"), str(tmp_path / "caller" / "out"),
                                            False, 7, 0]
    executed = nbformat.read(str(tmp_path / "caller" / "x.ipynb"), as_version=4)
    assert executed.cells[1].metadata["tags"] == ["injected-parameters"]
    assert executed.cells[1].id.endswith("injected-parameters")
    # kept as a record, commented out: running the saved notebook yourself uses the first cell's values
    assert all(line.startswith("#") for line in executed.cells[1].source.splitlines())
    assert '# CIFAR_DIR = "../caller/data"' in executed.cells[1].source  # relative to the notebook's folder


@pytest.mark.parametrize("flag, value", [("--seed", "-5"), ("--seeds", "0"), ("--timeout", "0.5x"), ("--timeout", "nan"),
                                         ("--timeout", "-1"), ("--jobs", "-1"), ("--device", "tpu")])
def test_a_bad_flag_is_refused_before_a_kernel_starts(tmp_path, flag, value):
    ran = tmp_path / "ran"
    notebook = write_notebook(tmp_path / "n.ipynb", f"open({str(ran)!r}, 'w').close()")
    result = run([notebook, flag, value], cwd=tmp_path)
    assert result.returncode == 2 and not ran.exists()
    assert result.stderr.strip().splitlines()[-1].startswith(f"run_notebook.py: error: argument {flag}")


def test_a_gpu_that_is_not_there_is_refused_like_the_scripts(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    notebook = write_notebook(tmp_path / "n.ipynb", "print('ran')")
    result = run([notebook, "--device", "cuda"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no CUDA GPU" in result.stderr


def test_a_parameter_error_of_the_notebook_is_status_2(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "from gfs.cifar.notebook_parameters import seed_list\n"
                              "seed_list(0, 1, False, least=2, why='a control')")
    result = run([notebook], cwd=tmp_path, env={"PYTHONPATH": REPO})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "run_notebook.py: error: n.ipynb failed: ParameterError: SEEDS must be at least 2 (a control), not 1"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ensemble_CIFAR.ipynb", "adversarial_CIFAR.ipynb"])
def test_missing_cifar_is_status_3_and_creates_nothing(tmp_path, name):
    """Both notebooks honour --no-download (no download, no folder created) and take a relative
    --cifar-dir from the caller's folder; only this case is exit status 3."""
    result = run([os.path.join(REPO, name), "--quick", "--out", "out", "--cifar-dir", "none/data", "--no-download"],
                 cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1
    assert "CifarMissingError" in result.stderr
    assert str(tmp_path / "none" / "data" / "cifar-10-batches-py") in result.stderr  # the caller's folder
    assert not (tmp_path / "none").exists() and not os.path.exists(os.path.join(REPO, "none"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npz"))  # no figure written


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


@pytest.mark.slow
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

    result = run([failing, "--in-place", "--quick"], cwd=tmp_path)  # quick outputs never go into the notebook
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--in-place" in result.stderr
    assert open(failing, "rb").read() == before


@pytest.mark.slow
def test_saved_copies_keep_one_final_line_per_progress_bar(tmp_path):
    notebook = write_notebook(tmp_path / "n.ipynb", "import sys\nfor i in range(50):\n"
                              "    sys.stderr.write(f'\\rtraining {i}%'); sys.stderr.flush()\n"
                              "    print(i) if i % 10 == 0 else None\nsys.stderr.write('\\n')")
    result = run([notebook, "--in-place"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = nbformat.read(notebook, as_version=4).cells[0].outputs
    stderr = [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert len(stderr) == 1 and stderr[0].text == "training 49%\n"
    assert "".join(o.text for o in outputs if o.get("name") == "stdout") == "0\n10\n20\n30\n40\n"




@pytest.mark.slow
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


# ----------------------------------------------------------------------------------------------
# Every path and parameter checked before a kernel starts, each refusal one line

def refused_before_a_kernel(result, ran, words):
    lines = result.stderr.strip().splitlines()
    return (result.returncode == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr
            and not ran.exists())


@pytest.mark.parametrize("args, words", [
    (["--executed", "/nonexistent/x.ipynb"], "--executed '/nonexistent/x.ipynb': no writable folder '/nonexistent'"),
    (["--executed", "."], "--executed '.': is a folder"),
    (["-p", "LR", "nan"], "LR must be a finite number > 0, not nan"),
    (["-p", "HIDDEN", "0"], "HIDDEN must be a whole number >= 1, not 0"),
    (["-p", "HIDDEN", "sixteen"], "HIDDEN must be a whole number >= 1, not 'sixteen'"),
    (["-p", "LR", "1e-3", "-p", "GROUP_SCALES", "[1, -1]"], "GROUP_SCALES must be a non-empty list"),
    (["-p", "HIDEN", "8"], "-p HIDEN: not a parameter of n.ipynb (its parameters: QUICK, FIGURES_DIR, HIDDEN, LR, "
                           "GROUP_SCALES)"),
    (["-p", "QUICK", "True"], "-p QUICK: set it with --quick"),
    (["--quick", "--out", "figures"], "a quick run never writes into the committed figures/"),
    (["--quick", "--out", "./figures/sub"], "a quick run never writes into the committed figures/"),
])
def test_a_bad_path_or_parameter_is_refused_in_one_line_before_a_kernel_starts(tmp_path, args, words, capsys,
                                                                                monkeypatch):
    """run_notebook.main in this process (its signal handlers left out: they are pytest's here)."""
    import run_notebook
    monkeypatch.setattr(run_notebook, "exit_cleanly_on_signals", lambda *args, **kwargs: None)
    monkeypatch.chdir(REPO if "figures" in " ".join(args) else tmp_path)
    ran = tmp_path / "ran"
    notebook = write_parameterised_notebook(
        tmp_path / "n.ipynb", "QUICK = False\nFIGURES_DIR = None\nHIDDEN = 16\nLR = 1e-3\nGROUP_SCALES = [1, 0.1]",
        f"open({str(ran)!r}, 'w').close()")
    status = run_notebook.main([notebook, *args])
    result = subprocess.CompletedProcess(args, status, *capsys.readouterr())
    assert refused_before_a_kernel(result, ran, words), result.stderr


@pytest.mark.parametrize("name", ["README.md", "Makefile"])
def test_a_file_that_is_not_a_notebook_is_refused_in_one_line(name):
    result = run([name], cwd=REPO)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"run_notebook.py: error: '{name}' is not a Jupyter notebook (")


@pytest.mark.parametrize("name", ["ensemble_CIFAR.ipynb", "adversarial_CIFAR.ipynb"])
def test_the_cifar_notebooks_bad_parameters_are_refused_before_a_kernel_starts(tmp_path, name):
    result = run([os.path.join(REPO, name), "-p", "HIDDEN", "0", "--executed", str(tmp_path / "x.ipynb")],
                 cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == "run_notebook.py: error: HIDDEN must be a whole number >= 1, not 0\n"
    assert not (tmp_path / "x.ipynb").exists()


def test_parameters_reach_the_notebook_and_a_lost_executed_folder_is_one_line(tmp_path):
    """-p sets a parameter as papermill's -p does; the --executed folder, checked at the start, removed during
    the run: one line, status 1 (not a traceback)."""
    seen, folder = tmp_path / "seen.json", tmp_path / "executed"
    folder.mkdir()
    notebook = write_parameterised_notebook(
        tmp_path / "n.ipynb", "LR = 1e-3\nNUM_G_LIST = [10, 20]",
        f"import json, shutil\njson.dump([LR, NUM_G_LIST], open({str(seen)!r}, 'w'))\nshutil.rmtree({str(folder)!r})")
    result = run([notebook, "-p", "LR", "0.5", "-p", "NUM_G_LIST", "[2, 4]", "--executed", str(folder / "x.ipynb")],
                 cwd=tmp_path)
    assert json.loads(seen.read_text()) == [0.5, [2, 4]]
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"run_notebook.py: error: cannot save the executed notebook as "
                                          f"'{folder / 'x.ipynb'}': No such file or directory"]


def test_a_second_run_of_a_notebook_into_a_held_folder_is_refused(tmp_path):
    from gfs.runs import saved_files
    out, ran = tmp_path / "out", tmp_path / "ran"
    out.mkdir()
    notebook = write_notebook(tmp_path / "n.ipynb", f"open({str(ran)!r}, 'w').close()")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold = saved_files.hold_output_dir(str(out), "run_notebook.py n.ipynb")
        with open(hold, "w") as f:  # as if the live process held it
            f.write(f"{sleeper.pid}\n")
        result = run([notebook, "--out", str(out)], cwd=tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
        os.remove(hold)
    assert refused_before_a_kernel(result, ran, f"another run of run_notebook.py n.ipynb (process {sleeper.pid}) "
                                                "is writing into")
