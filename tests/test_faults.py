"""Faults: signals end a run and its workers at once with one line, and out-of-range flags give one line."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from figure_driver import figure_parser, parse_figure_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds worker processes through /proc")


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


def running(pid):
    """True while `pid` exists and is not a zombie (a zombie has ended; only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
    assert process.returncode == -signum  # a shell shows 128 + signum: 143, 130, 137
    if signum != signal.SIGKILL:
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
        assert one_line((tmp_path / "stderr").read_text(), f"stopped by {name}"), (tmp_path / "stderr").read_text()


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
    result = subprocess.run([sys.executable, "-c", INTERRUPT_TORCH_IMPORT, os.path.join(ROOT, "Q_convergence_radial.py"),
                             "--quick", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGINT and one_line(result.stderr, "stopped by Ctrl-C (SIGINT)"), result.stderr


# ----------------------------------------------------------------------------------------------
# Flags: every device the code supports, counts beyond any machine

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_a_numbered_cuda_device_without_gpu_gives_the_no_gpu_line(tmp_path, capsys, device):
    with pytest.raises(SystemExit) as exit:
        parse_figure_args(figure_parser("A figure script."), ["--device", device, "--out", str(tmp_path)])
    assert exit.value.code == 2 and one_line(capsys.readouterr().err, f"device '{device}' was requested but no CUDA GPU")


@pytest.mark.parametrize("flag", ["--steps", "--jobs", "--samples"])
def test_an_absurd_count_gives_one_line(capsys, flag):
    import Q_distribution  # the script with all three counts
    with pytest.raises(SystemExit) as exit:
        Q_distribution.make_parser().parse_args([flag, "99999999999999999999"])
    assert exit.value.code == 2
    assert f"argument {flag}: must be at most 2^53" in capsys.readouterr().err.strip().splitlines()[-1]
