"""Faults: signals end a run and its workers at once with one line, a figure's files are published
as a set, --plot-only trusts no file, and out-of-range flags give one line."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import Q_convergence_elementwise as fig6
import Q_convergence_radial as fig7
from gfs.runs import saved_files
from gfs.runs.command_line import figure_parser, parse_figure_args
from gfs.runs.saved_files import save_figure
from helpers import LINUX_PROC, running

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script(name, *flags):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, name), *flags], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def one_line(stderr, text):
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and text in lines[0] and "Traceback" not in stderr


# ----------------------------------------------------------------------------------------------
# Signals and worker processes

def children_of(pid):
    """pids whose parent is `pid` (from /proc/*/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


@LINUX_PROC
@pytest.mark.parametrize("signum,to_group", [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGKILL, False)],
                         ids=["SIGTERM", "Ctrl-C", "SIGKILL"])
def test_a_signal_to_the_parent_ends_its_workers(tmp_path, signum, to_group):
    # Two runs in two workers, far too long to finish; Ctrl-C in a terminal goes to the whole group.
    # Output goes to files: workers left behind would hold pipes open.
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "Q_dynamics_elementwise.py"), "--steps",
                                    "100000000", "--jobs", "2", "--no-progress", "--activations", "tanh,sigmoid",
                                    "--out", str(tmp_path / "out")],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    workers = []
    try:
        deadline = time.time() + 120
        while len(workers) < 2 and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            workers = children_of(process.pid)
        assert len(workers) == 2, (tmp_path / "stderr").read_text()
        time.sleep(0.5)  # let the workers start training
        (os.killpg if to_group else os.kill)(process.pid, signum)
        process.wait(timeout=10)
        deadline = time.time() + 5
        while any(map(running, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(running, workers)), "worker processes outlived their parent"
    finally:
        for pid in [process.pid] + workers:  # what the code under test failed to end
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == (-signum if signum == signal.SIGKILL else 128 + signum)  # 143, 130; SIGKILL kills
    if signum != signal.SIGKILL:
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
        stderr = (tmp_path / "stderr").read_text()
        assert one_line(stderr, f"stopped by {name}; 2 worker processes ended; no partial file left"), stderr


INTERRUPT_TORCH_IMPORT = """
import os, runpy, signal, sys

class InterruptImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch.nn":  # imported while `import torch` runs
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptImport())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_while_torch_loads_prints_one_line(tmp_path):
    radial = os.path.join(ROOT, "Q_convergence_radial.py")
    result = subprocess.run([sys.executable, "-c", INTERRUPT_TORCH_IMPORT, radial, "--quick", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 130 and one_line(result.stderr, "stopped by Ctrl-C (SIGINT)"), result.stderr


# ----------------------------------------------------------------------------------------------
# A figure's four files are published as a set

INTERRUPTED_SAVE = """
import os, sys, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from gfs.runs import command_line, saved_files

out, at, signum = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = ["a_figure_script.py"]
command_line.figure_parser("A figure script.").parse_args()  # what every figure script does first

def signal_when(original, now):
    def wrapped(*args, **kwargs):
        if now(*args, **kwargs):
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the signal acts here at the latest
        return original(*args, **kwargs)
    return wrapped

if at == "rename":  # the signal comes while the first of the four files is moved into place
    os.replace = signal_when(os.replace, lambda source, destination: destination.endswith(".npz"))
else:  # while the .pdf or .png is written
    Figure.savefig = signal_when(Figure.savefig, lambda self, path, format, **kwargs: format == at)
exec(os.environ["MAKE_FIGURE"])  # defines fig, data, settings
saved_files.save_figure(fig, out, "sub/figure", data, settings)
"""


def make_figure(run):
    """Code that defines fig, data and settings of the 'old' or 'new' run (different in every file)."""
    return (f"import matplotlib.pyplot as plt, numpy as np\nfig, ax = plt.subplots()\n"
            f"ax.plot({[1, 3, 2] if run == 'new' else [2, 1, 3]})\n"
            f"data = {{'x': np.arange(4) + {int(run == 'new')}}}\nsettings = {{'run': {run!r}}}\n")


def save(out, run):
    namespace = {}
    exec(make_figure(run), namespace)
    save_figure(namespace["fig"], str(out), "sub/figure", namespace["data"], namespace["settings"])


def which_set(folder, references):
    """'old' or 'new' if folder/sub/figure.* are exactly that run's four files, else 'mixed'."""
    def content(base):
        with np.load(base / "sub/figure.npz") as npz:
            x = npz["x"].tolist()
        run = json.loads((base / "sub/figure.json").read_text())["run"]
        return x, run, (base / "sub/figure.pdf").read_bytes(), (base / "sub/figure.png").read_bytes()
    found = content(folder)
    return next((run for run, base in references.items() if content(base) == found), "mixed")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    refs = {run: tmp_path_factory.mktemp(run) for run in ("old", "new")}
    for run, folder in refs.items():
        save(folder, run)
    return refs


@pytest.mark.parametrize("signum,at,expected", [
    (signal.SIGTERM, "pdf", "old"), (signal.SIGINT, "png", "old"), (signal.SIGTERM, "rename", "new")])
def test_signal_during_saving_leaves_one_whole_set(tmp_path, references, signum, at, expected):
    save(tmp_path, "old")
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_SAVE, str(tmp_path), at, str(int(signum))], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, MAKE_FIGURE=make_figure("new")))
    assert which_set(tmp_path, references) == expected
    assert not list(tmp_path.rglob(".tmp-*"))
    assert result.returncode == 128 + signum and one_line(result.stderr, "stopped by"), result.stderr


def test_a_save_after_sigkill_while_saving_leaves_no_temporary_file(tmp_path, references):
    save(tmp_path, "old")
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_SAVE, str(tmp_path), "png", str(int(signal.SIGKILL))],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, MAKE_FIGURE=make_figure("new")))
    assert result.returncode == -signal.SIGKILL
    assert which_set(tmp_path, references) == "old"
    assert list(tmp_path.rglob(".tmp-*")), "SIGKILL leaves the temporary files (the case this test is about)"
    save(tmp_path, "new")
    assert which_set(tmp_path, references) == "new"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_save_keeps_the_temporary_files_of_a_live_process(tmp_path):
    # Another run saving into the same folder right now: its files are not stale.
    live = tmp_path / "sub" / f".tmp-{os.getppid()}@{saved_files._HOST}-abc.npz"
    live.parent.mkdir()
    live.write_bytes(b"being written")
    save(tmp_path, "new")
    assert live.exists()


# ----------------------------------------------------------------------------------------------
# --plot-only trusts no file

FIG6 = fig6.figure_name("linear")
FIG7 = fig7.FIGURE


@pytest.fixture(scope="module")
def fig6_files(tmp_path_factory):
    """Fig. 6 (linear only, 20 steps) saved by the script's own main(), in this process."""
    import Q_convergence_elementwise
    out = tmp_path_factory.mktemp("fig6")
    threads = torch.get_num_threads()
    try:
        Q_convergence_elementwise.main(["--steps", "20", "--activations", "linear", "--jobs", "1", "--no-progress",
                                        "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out / FIG6


def copy_set(stem, folder, name):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    for extension in (".npz", ".json"):
        shutil.copy(str(stem) + extension, str(folder / name) + extension)
    return folder / name


def plot_only(module, out, capsys):
    """module.main() with --plot-only in this process: (exit status, stderr)."""
    threads = torch.get_num_threads()
    try:
        module.main(["--plot-only", "--activations", "linear", "--out", str(out)])
        status = 0
    except SystemExit as exit:
        status = exit.code
    finally:
        torch.set_num_threads(threads)
    return status, capsys.readouterr().err


def test_plot_only_refuses_another_figures_data(fig6_files, tmp_path):
    # Fig. 6's files where Fig. 7's belong: the radial plot can draw them, as the wrong figure.
    copy_set(fig6_files, tmp_path, FIG7)
    process = script("Q_convergence_radial.py", "--plot-only", "--out", str(tmp_path))
    _, stderr = process.communicate(timeout=120)
    message = (f"holds Q_convergence_elementwise.py's figure '{FIG6}', not Q_convergence_radial.py's '{FIG7}'; "
               "re-run without --plot-only")
    assert process.returncode == 2 and one_line(stderr, message), stderr
    assert not list(tmp_path.rglob("*.pdf"))


@pytest.mark.parametrize("damage,message", [
    ("cut .npz", ".npz is not the file its .json describes (damaged, cut short"),
    ("corrupt .json", ".json cannot be read (damaged or cut short"),
    ("old .json", ".json does not say which script and figure saved it"),
    ("array missing", ".npz has no array 'diverged_at', which the plot needs"),
    ("quick relabelled", ".json was edited after it was saved, or saved by an older version"),
    ("seeds relabelled", ".json was edited after it was saved, or saved by an older version"),
    ("unsealed .json", ".json was edited after it was saved, or saved by an older version"),
])
def test_plot_only_refuses_damaged_or_unlabelled_files_in_one_line(fig6_files, tmp_path, capsys, damage, message):
    import Q_convergence_elementwise
    stem = copy_set(fig6_files, tmp_path, FIG6)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    settings = json.loads(js.read_text())
    if damage == "cut .npz":
        npz.write_bytes(npz.read_bytes()[:len(npz.read_bytes()) // 2])
    elif damage == "corrupt .json":
        js.write_bytes(js.read_bytes()[:len(js.read_bytes()) // 2])
    elif damage == "old .json":  # as saved before the script and figure were recorded
        settings.pop("script", None), settings.pop("figure_name", None)
        js.write_text(json.dumps(settings))
    elif damage in ("quick relabelled", "seeds relabelled", "unsealed .json"):  # the .json edited by hand
        settings.update({"quick relabelled": {"quick": not settings["quick"]}, "seeds relabelled": {"seeds": [7]},
                         "unsealed .json": {"settings_sha256": None}}[damage])
        js.write_text(json.dumps(settings))
    else:  # as an older version of the script might have saved it, with a matching .json
        with np.load(npz) as saved:
            arrays = {key: saved[key] for key in saved.files if key != "diverged_at"}
        np.savez_compressed(npz, **arrays)
        settings = dict(settings, npz_sha256=hashlib.sha256(npz.read_bytes()).hexdigest())
        js.write_text(json.dumps(dict(settings, settings_sha256=saved_files.settings_digest(settings))))
    status, stderr = plot_only(Q_convergence_elementwise, tmp_path, capsys)
    assert status == 2 and one_line(stderr, message), stderr
    assert not list(tmp_path.rglob("*.pdf"))


# ----------------------------------------------------------------------------------------------
# Flags: every device the code supports, counts beyond any machine

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_a_numbered_cuda_device_without_gpu_gives_the_no_gpu_line(tmp_path, capsys, device):
    with pytest.raises(SystemExit) as exit:
        parse_figure_args(figure_parser("A figure script."), ["--device", device, "--out", str(tmp_path)])
    assert exit.value.code == 2
    assert one_line(capsys.readouterr().err, f"device '{device}' was requested but no CUDA GPU")


@pytest.mark.parametrize("flag", ["--steps", "--jobs", "--samples"])
def test_an_absurd_count_gives_one_line(capsys, flag):
    import Q_distribution  # the script with all three counts
    with pytest.raises(SystemExit) as exit:
        Q_distribution.make_parser().parse_args([flag, "99999999999999999999"])
    assert exit.value.code == 2
    assert f"argument {flag}: must be at most 2^53" in capsys.readouterr().err.strip().splitlines()[-1]
