"""Hard to misuse: a quick run never writes into the committed figures/ (however the folder is spelled),
--plot-only refuses training flags, --help lists only flags that apply, a second run of one script into a
folder a live run holds is refused, and printed numbers keep the digits that matter."""
import os
import subprocess
import sys

import pytest

import Q_convergence_radial
import Q_distribution
from gfs.runs import saved_files
from gfs.runs.command_line import COMMITTED_FIGURES, UsageError, refuse_quick_into_committed, with_spread

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_status():
    return subprocess.run(["git", "status", "--porcelain", "--", "figures"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def refusal(capsys, module, *argv):
    """module.main(argv) in this process: (exit status, stderr lines)."""
    with pytest.raises(SystemExit) as exit:
        module.main(list(argv))
    return exit.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def link_to_figures(tmp_path):
    link = tmp_path / "link"
    os.symlink(COMMITTED_FIGURES, link)
    return str(link)


@pytest.mark.parametrize("out", ["figures", "./figures", COMMITTED_FIGURES, "figures/float64", "link"])
def test_a_quick_run_into_the_committed_figures_is_refused_in_one_line(capsys, monkeypatch, link_to_figures, out):
    monkeypatch.chdir(ROOT)
    before = git_status()
    status, lines = refusal(capsys, Q_distribution, "--quick", "--out", link_to_figures if out == "link" else out)
    assert status == 2 and len(lines) == 1
    assert "never writes into the committed figures/" in lines[0] and "figures-quick/" in lines[0]  # where to look
    assert git_status() == before


def test_the_refusal_comes_before_any_work_from_the_real_script():
    before = git_status()
    result = subprocess.run([sys.executable, "Q_distribution.py", "--quick", "--out", "./figures"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert "never writes into the committed figures/" in result.stderr and "Traceback" not in result.stderr
    assert git_status() == before


def test_other_folders_are_not_refused(tmp_path):
    refuse_quick_into_committed(str(tmp_path / "figures"), "--out")  # another folder named figures
    refuse_quick_into_committed(os.path.join(ROOT, "figures-quick"), "--out")
    refuse_quick_into_committed(os.path.join(ROOT, "figures2"), "--out")  # a prefix is not the folder
    with pytest.raises(UsageError):
        refuse_quick_into_committed(os.path.join(ROOT, "figures", "new", "folder"), "--out")


@pytest.mark.parametrize("flags", [["--samples", "5"], ["--steps", "5"], ["--jobs", "3"], ["--device", "cpu"],
                                   ["--dtype", "float64"]])
def test_plot_only_refuses_training_flags(capsys, tmp_path, flags):
    status, lines = refusal(capsys, Q_distribution, "--plot-only", *flags, "--out", str(tmp_path))
    assert status == 2 and len(lines) == 1
    assert f"--plot-only re-plots saved data and does not train: {flags[0]} would be ignored" in lines[0]


def test_plot_only_refuses_seeds_and_keeps_the_flags_that_choose_figures(capsys, tmp_path):
    status, lines = refusal(capsys, Q_convergence_radial, "--plot-only", "--seeds", "3", "--out", str(tmp_path))
    assert status == 2 and "--seeds would be ignored" in lines[0]
    status, lines = refusal(capsys, Q_distribution, "--plot-only", "--activations", "linear", "--quick",
                            "--out", str(tmp_path))
    assert "no saved data" in lines[0]  # got past the flags to the (absent) saved files


def test_help_lists_only_the_flags_that_apply(capsys):
    with pytest.raises(SystemExit):
        Q_distribution.make_parser().parse_args(["--help"])
    sampling = capsys.readouterr().out
    with pytest.raises(SystemExit):
        Q_convergence_radial.make_parser().parse_args(["--help"])
    training = capsys.readouterr().out
    assert "--steps" not in sampling and "--samples" in sampling
    assert "--steps" in training


def test_a_second_run_into_a_folder_a_live_run_holds_is_refused(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold = saved_files.hold_output_dir(str(tmp_path), "Q_distribution.py")
        with open(hold, "w") as f:  # as if the live process held it
            f.write(f"{sleeper.pid}\n")
        status, lines = refusal(capsys, Q_distribution, "--quick", "--samples", "2", "--activations", "linear",
                                "--out", str(tmp_path))
        assert status == 2 and len(lines) == 1
        assert f"another run of Q_distribution.py (process {sleeper.pid}) is writing into" in lines[0]
        with pytest.raises(UsageError):  # also spelled otherwise
            saved_files.hold_output_dir(str(tmp_path) + "/./", "Q_distribution.py")
        saved_files.hold_output_dir(str(tmp_path), "Q_hessian_eigenvalues.py")  # another script may share it
    finally:
        sleeper.kill()
        sleeper.wait()
    assert saved_files.hold_output_dir(str(tmp_path), "Q_distribution.py") == hold  # its holder gone: taken over


@pytest.mark.parametrize("value, spread, text", [(-10000.3, 0.5, "-10000.3"), (-10000.3, 2000, "-1e+04"),
                                                 (99.8123, 2.2, "99.8"), (99.8123, 0.02, "99.812"), (0.0115, 1.9, "0.0115"), (0.0, 1.0, "0")])
def test_numbers_are_printed_down_to_their_spread(value, spread, text):
    assert with_spread(value, spread) == text


def test_the_citation_names_the_packages_version_and_release_date():
    """CITATION.cff's entry for this package (`cffconvert --validate` passes; not a dependency, so not run here)."""
    import datetime
    import re

    import yaml
    with open(os.path.join(ROOT, "CITATION.cff")) as f:
        citation = yaml.safe_load(f)
    assert citation["type"] == "software" and re.fullmatch(r"\d+\.\d+\.\d+", str(citation["version"]))
    datetime.date.fromisoformat(str(citation["date-released"]))
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
