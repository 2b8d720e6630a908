"""The five figure scripts end to end (--quick), --plot-only, determinism, and bad input."""
import importlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER = ("linear", "relu", "tanh", "sigmoid")
SCRIPTS = {
    "Q_dynamics_elementwise.py": [f"Q-dynamics/elementwise_{a}_loss_Q" for a in PAPER],
    "Q_distribution.py": [f"Q-distribution/{a}_mhn_100_100_100" for a in PAPER]
                         + ["Q-distribution/linear_mhn_100_200_100", "Q-distribution/linear_mhn_200_100_100"],
    "Q_convergence_elementwise.py": [f"Q-convergence/elementwise_{a}_convergence" for a in PAPER]
                                    + [f"Q-convergence/{e}_{a}_convergence" for a in PAPER
                                       for e in ("same_function", "per_neuron")],
    "Q_convergence_radial.py": ["Q-convergence/radial_zoomed_1e6"],
    "Q_hessian_eigenvalues.py": [f"Q-hessian-eigenvalues/Q-sharpness_{a}_mnk_10_5_50" for a in PAPER]
                                + [f"Q-hessian-eigenvalues/{e}_{a}_sharpness_mnk_10_5_50" for a in PAPER
                                   for e in ("same_function", "per_neuron")],
}
# What `make figures QUICK=1` adds (Makefile: SEEDS_CONVERGENCE, SEEDS_HESSIAN): several seeds and the same-function
# experiments
EXTRA_FLAGS = {"Q_convergence_elementwise.py": ["--seeds", "2", "--same-function"],
               "Q_hessian_eigenvalues.py": ["--seeds", "2", "--same-function"]}
SEEDS_CONVERGENCE = int(EXTRA_FLAGS["Q_convergence_elementwise.py"][1])
# The second run (determinism) and --plot-only cover the two cheapest activations, one with the paper code's
# integration constant (sigmoid) and one without: seeding, worker processes and plotting do not depend on the
# activation, and the other two would more than double these tests' time.
RERUN_ACTIVATIONS = ("linear", "sigmoid")


def rerun_flags(script):
    """--activations for a second run or --plot-only of script (the radial script has no activations)."""
    return [] if script == "Q_convergence_radial.py" else ["--activations", ",".join(RERUN_ACTIVATIONS)]


def rerun_names(script):
    """The figures of SCRIPTS[script] that rerun_flags(script) writes again."""
    return [name for name in SCRIPTS[script] if not rerun_flags(script)
            or any(f"{a}_" in name.rsplit("/", 1)[1] for a in RERUN_ACTIVATIONS)]


def command(script, *flags):
    return [sys.executable, os.path.join(ROOT, script), *flags]


def run(script, *flags):
    return subprocess.run(command(script, *flags), cwd=ROOT, capture_output=True, text=True, timeout=600)


def load_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def quick_outputs(quick_pipeline, tmp_path_factory):
    """The scripts' outputs of the session's `make figures QUICK=1`, and every script once more with the same
    settings (for RERUN_ACTIVATIONS) into a second folder (Fig. 3 with two worker processes, to cover the parallel
    path)."""
    assert quick_pipeline.result.returncode == 0, quick_pipeline.result.stderr[-3000:]
    second = tmp_path_factory.mktemp("second")
    logs = tmp_path_factory.mktemp("second_logs")
    runs = {}  # all at once: they run after the pipeline, when the second core is free
    try:
        for script in SCRIPTS:
            jobs = "2" if script == "Q_dynamics_elementwise.py" else "1"
            with open(logs / script, "w") as stderr:  # a file, not a pipe, that nothing waits on
                flags = ("--quick", "--no-progress", "--jobs", jobs, *EXTRA_FLAGS.get(script, []), *rerun_flags(script))
                runs[script] = subprocess.Popen(command(script, *flags, "--out", str(second)), cwd=ROOT,
                                                stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 600
        for script, process in runs.items():
            assert process.wait(timeout=max(1, deadline - time.monotonic())) == 0, (logs / script).read_text()
    finally:
        for process in runs.values():  # none left running when one failed
            if process.poll() is None:
                process.kill()
                process.wait()
    return quick_pipeline.out, second


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_quick_run_writes_every_file(quick_outputs, script):
    out = quick_outputs[0]
    for name in SCRIPTS[script]:
        for ext in (".pdf", ".png", ".npz", ".json"):
            path = out / (name + ext)
            assert path.is_file() and path.stat().st_size > 0, path
        settings = json.loads((out / (name + ".json")).read_text())
        assert settings["quick"] is True and "versions" in settings and "run_seconds" in settings
        data = load_arrays(out / (name + ".npz"))
        # NaN only where documented: the records after a batch stopped early
        assert all(np.isfinite(v).all() for k, v in data.items() if v.dtype.kind == "f" and k != "loss"), name
    leftovers = [p for p in out.rglob(".tmp-*")]
    assert not leftovers


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_same_command_twice_gives_identical_arrays(quick_outputs, script):
    first, second = quick_outputs
    for name in rerun_names(script):
        a, b = load_arrays(first / (name + ".npz")), load_arrays(second / (name + ".npz"))
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), (name, key)


@pytest.mark.slow
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_plot_only_recreates_figures_from_saved_data(quick_outputs, script, tmp_path):
    first = quick_outputs[0]
    for name in rerun_names(script):  # copy only the data files
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        for ext in (".npz", ".json"):
            (tmp_path / (name + ext)).write_bytes((first / (name + ext)).read_bytes())
    figures = [flag for flag in EXTRA_FLAGS.get(script, []) if flag == "--same-function"]  # --seeds: training only
    result = run(script, "--plot-only", *figures, *rerun_flags(script), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in rerun_names(script):
        assert (tmp_path / (name + ".pdf")).stat().st_size > 0
        assert (tmp_path / (name + ".png")).read_bytes() == (first / (name + ".png")).read_bytes()


@pytest.mark.slow
def test_training_data_have_the_documented_keys(quick_outputs):
    """Curves and spectra are seed 0's (the plotted paper figure); per-run numbers have a leading seed axis."""
    out = quick_outputs[0]
    data = load_arrays(out / "Q-convergence/elementwise_tanh_convergence.npz")
    runs, records = data["loss"].shape
    assert data["Q"].shape == (runs, records) and data["steps"].shape == (records,) and data["labels"].shape == (runs,)
    for key in ("Q0", "Q0_zero", "steps_to_converge", "initial_loss", "diverged_at"):
        assert data[key].shape == (SEEDS_CONVERGENCE, runs), key
    # the zero convention differs from the paper code's Q by n k for tanh
    assert np.allclose(data["Q0_zero"] - data["Q0"], 10 * 50)
    fig3 = load_arrays(out / "Q-dynamics/elementwise_linear_loss_Q.npz")
    # The paper's curve starts after the first step (no point at initialisation), baseline Q_1.
    assert fig3["delta_Q_tilde_steps"][0] == 1 and np.array_equal(fig3["delta_Q_tilde_steps"], fig3["steps"][1:])
    assert fig3["delta_Q_tilde"].shape == fig3["delta_Q_tilde_zero"].shape == (runs, len(fig3["steps"]) - 1)
    assert abs(fig3["delta_Q_tilde"][:, 0]).max() == 0 and abs(fig3["delta_Q_tilde"][:, 1:]).max() > 0
    assert fig3["max_delta_Q_tilde_zero"].shape == fig3["normaliser_zero"].shape == (1, runs)
    hess = load_arrays(out / "Q-hessian-eigenvalues/Q-sharpness_linear_mnk_10_5_50.npz")
    assert hess["eigenvalues"].shape == (4, 750) and hess["Q0"].shape == hess["largest_eigenvalue"].shape == (2, 4)
    dist = load_arrays(out / "Q-distribution/tanh_mhn_100_100_100.npz")
    assert dist["Q"].shape == dist["Q_zero"].shape == (50,)
    # the sample mean of the terms' size: tanh's F = sinh^2/2 >= 0, so about 2 (m h E[u^2] / 2 + n h E[F(v)])
    assert float(dist["Q_terms_zero"]) == pytest.approx(2 * (100 * 100 / 100 / 2 + 100 * 100 * np.expm1(0.02) / 4),
                                                        rel=0.01)
    assert float(dist["Q_terms_paper"]) > float(dist["Q_terms_zero"])  # the paper code's adds n k for tanh
    same = load_arrays(out / "Q-convergence/same_function_sigmoid_convergence.npz")
    points = same["lambdas"].shape[1]
    assert same["lambdas"].shape == same["Q0_zero"].shape == same["steps_to_converge"].shape == (SEEDS_CONVERGENCE, points)
    assert same["initial_output"].shape == (SEEDS_CONVERGENCE, points, 5, 10) and np.all(same["lambdas"][:, points // 2] == 1)
    sharp = load_arrays(out / "Q-hessian-eigenvalues/same_function_tanh_sharpness_mnk_10_5_50.npz")
    assert sharp["Q_zero"].shape == sharp["largest_eigenvalue"].shape == sharp["loss"].shape == (2, 4, points)
    assert sharp["output"].shape == (2, 4, points, 10, 5) and sharp["largest_eigenvalue_hessian"].shape == (4, 2)
    assert sharp["off_data_gap"].shape == (2, 4, points) and (sharp["off_data_gap"][:, :, points // 2] == 0).all()
    # per-neuron orbits [seed, (run,) orbit, point] and Q_a per neuron; Q_a for every run of the paper's figures
    neurons6 = load_arrays(out / "Q-convergence/per_neuron_relu_convergence.npz")
    assert neurons6["steps_to_converge"].shape == neurons6["spread"].shape == (SEEDS_CONVERGENCE, 2, 3)  # its ends and middle
    assert neurons6["Q_neurons"].shape == (SEEDS_CONVERGENCE, 2, 3, 50) and np.allclose(neurons6["Q_neurons"].sum(-1),
                                                                         neurons6["sum_zero"])
    assert (neurons6["training_gap"] < 1e-5).all() and np.all(neurons6["lambdas"][:, :, 1] == 1)
    neurons9 = load_arrays(out / "Q-hessian-eigenvalues/per_neuron_tanh_sharpness_mnk_10_5_50.npz")
    assert neurons9["largest_eigenvalue"].shape == neurons9["edge_distance"].shape == (2, 4, 2, 5)
    # both orbits: the spread grows SPREAD_BASE times from the middle to the end; the sum grows on 'together' and
    # falls on 'opposed'
    assert np.isclose(neurons9["spread"][:, :, :, 4], 4 * neurons9["spread"][:, :, :, 2]).all()
    assert (np.diff(neurons9["sum_zero"][:, :, 0]) > 0).all() and (np.diff(neurons9["sum_zero"][:, :, 1]) < 0).all()
    for key in ("Q_neurons0", "Q_neurons_final"):
        assert data[key].shape == (SEEDS_CONVERGENCE, runs, 50) and fig3[key].shape == (1, runs, 50)
    assert np.allclose(data["Q_neurons0"].sum(-1), data["Q0_zero"], rtol=1e-6)
    assert fig3["drift_bound_zero"].shape == fig3["max_Q_change_zero"].shape == (1, runs)


@pytest.mark.slow
def test_seed_0_is_the_single_seed_run(quick_outputs, tmp_path):
    """Seed 0 is the paper's draw, trained in a batch of its own: its numbers do not depend on --seeds (sigmoid's
    vectorised kernels round a batch's tail elements differently, so this is not automatic)."""
    result = run("Q_convergence_elementwise.py", "--quick", "--no-progress", "--activations", "sigmoid",
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    one = load_arrays(tmp_path / "Q-convergence/elementwise_sigmoid_convergence.npz")
    three = load_arrays(quick_outputs[0] / "Q-convergence/elementwise_sigmoid_convergence.npz")
    for key in ("loss", "Q", "labels"):
        assert np.array_equal(one[key], three[key]), key
    for key in ("Q0", "Q0_zero", "steps_to_converge", "diverged_at"):
        assert np.array_equal(one[key][0], three[key][0]), key
    assert not np.array_equal(three["Q0"][0], three["Q0"][1])  # and the other seeds are other draws


@pytest.mark.slow
def test_a_diverging_fig9_run_is_marked_and_every_output_is_written(tmp_path, monkeypatch):
    """A run that diverges gets NaN eigenvalues and '(diverged)' in the legend; the other runs and activations are
    computed and saved as usual (before, the eigenvalue solver raised and nothing was written)."""
    import matplotlib
    matplotlib.use("Agg")
    import Q_hessian_eigenvalues as fig9
    monkeypatch.setattr(fig9, "INIT_STDS", [0.3, 0.6, 30.0])  # init std 30 at learning rate 0.1: linear diverges
    fig9.main(["--steps", "200", "--activations", "linear,tanh", "--jobs", "1", "--no-progress", "--out",
               str(tmp_path)])
    for activation in ("linear", "tanh"):  # tanh's bounded hidden units keep the same run finite
        name = f"Q-hessian-eigenvalues/Q-sharpness_{activation}_mnk_10_5_50"
        assert all((tmp_path / (name + ext)).stat().st_size > 0 for ext in (".npz", ".json", ".pdf", ".png"))
    data = load_arrays(tmp_path / "Q-hessian-eigenvalues/Q-sharpness_linear_mnk_10_5_50.npz")
    assert data["diverged_at"][0, 2] >= 0 and (data["diverged_at"][0, :2] < 0).all()
    assert np.isnan(data["eigenvalues"][2]).all() and np.isfinite(data["eigenvalues"][:2]).all()
    assert np.isnan(data["largest_eigenvalue"][0, 2]) and data["nonzero_count"][0, 2] == -1
    legend = [t.get_text() for t in fig9.plot(data).axes[0].get_legend().get_texts()]
    assert legend[2].endswith("(diverged)") and not legend[0].endswith("(diverged)")


def one_line_error(result, text):
    lines = result.stderr.strip().splitlines()
    return (result.returncode == 2 and "Traceback" not in result.stderr and text in lines[-1])


def main_in_process(script, capsys, *flags):
    """script's main(flags) in this process, for a refusal before any work (a process of its own would only add
    torch's import; test_bad_input_gives_one_line_error shows that a refusal exits without a traceback): a
    CompletedProcess with its exit status and stderr. Torch's thread count, which parsing sets, is restored."""
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as refused:
            importlib.import_module(script.removesuffix(".py")).main(list(flags))
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess([script, *flags], refused.value.code, *capsys.readouterr())


@pytest.mark.parametrize("flags,message", [
    (["--steps", "0"], "must be a positive integer"),  # the boundary (a negative count takes the same branch)
    (["--plot-only"], "run without --plot-only first"),
])
def test_bad_input_gives_one_line_error(tmp_path, flags, message):
    result = run("Q_convergence_elementwise.py", "--out", str(tmp_path / "empty"), *flags)
    assert one_line_error(result, message), result.stderr


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "Q_convergence_radial.py"])
def test_unknown_activation_gives_one_line_naming_the_choices(tmp_path, script, capsys):
    result = main_in_process(script, capsys, "--activations", "tanh,swish", "--out", str(tmp_path / "out"))
    assert one_line_error(result, "unknown activation 'swish'; choose from linear, relu"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_new_activations_run_through_the_scripts(tmp_path):
    # Entries of the activation table beyond the paper's need no script change.
    for script in ("Q_dynamics_elementwise.py", "Q_distribution.py"):
        result = run(script, "--quick", "--no-progress", "--activations", "elu,softplus", "--out", str(tmp_path))
        assert result.returncode == 0, result.stderr
    fig3 = load_arrays(tmp_path / "Q-dynamics/elementwise_softplus_loss_Q.npz")
    assert np.isfinite(fig3["delta_Q_tilde"]).all() and fig3["delta_Q_tilde"].shape[0] == 3
    assert np.isfinite(load_arrays(tmp_path / "Q-distribution/elu_mhn_100_100_100.npz")["expected_Q"])


HEAVY_MODULES_AFTER = """
import runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    print("heavy modules:", [m for m in ("torch", "matplotlib.pyplot") if m in sys.modules])
    raise
"""


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.parametrize("flags,status", [(["--help"], 0), (["--steps", "0"], 2), (["--no-such-flag"], 2)])
def test_help_and_flag_errors_answer_before_torch_is_imported(script, flags, status):
    result = subprocess.run([sys.executable, "-c", HEAVY_MODULES_AFTER, os.path.join(ROOT, script), *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    assert "heavy modules: []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["Q_distribution.py", "Q_convergence_radial.py"])
def test_help_prints_each_default_once(script):
    result = run(script, "--help")
    entries = re.split(r"\n  (?=-)", result.stdout.split("options:")[1])
    assert len(entries) >= 10
    for entry in entries:
        assert " ".join(entry.split()).count("default") <= 1, entry
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout
    assert "(default: float32)" in " ".join(result.stdout.split())


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = main_in_process("Q_dynamics_elementwise.py", capsys, "--quick", "--out", str(blocker / "sub"))
    assert one_line_error(result, "cannot write to output folder"), result.stderr
    result = main_in_process("Q_hessian_eigenvalues.py", capsys, "--quick", "--out", str(blocker))
    assert one_line_error(result, "is not a folder"), result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path, capsys):
    result = main_in_process("Q_convergence_radial.py", capsys, "--quick", "--device", "cuda", "--out", str(tmp_path))
    assert one_line_error(result, "no CUDA GPU is available"), result.stderr


def test_steps_flag_does_not_apply_to_sampling_script(tmp_path, capsys):
    result = main_in_process("Q_distribution.py", capsys, "--steps", "10", "--out", str(tmp_path))
    assert one_line_error(result, "--steps does not apply"), result.stderr


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_help_explains_every_flag(script):
    result = run(script, "--help")
    assert result.returncode == 0
    for flag in ("--quick", "--device", "--dtype", "--out", "--plot-only", "--jobs"):
        assert flag in result.stdout
    assert ("--steps" in result.stdout) == (script != "Q_distribution.py")  # it does not train: --steps is refused


def test_interrupted_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from gfs.runs import saved_files

    def broken_savez(file, **arrays):
        file.write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(saved_files.np, "savez_compressed", broken_savez)
    fig, _ = plt.subplots()
    with pytest.raises(OSError):
        saved_files.save_figure(fig, str(tmp_path), "sub/figure", {"x": np.arange(3)}, {})
    assert list((tmp_path / "sub").iterdir()) == []


def test_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import errno
    import matplotlib
    matplotlib.use("Agg")
    from gfs.runs import saved_files
    import Q_convergence_radial

    def full_disk(file, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(saved_files.np, "savez_compressed", full_disk)
    with pytest.raises(SystemExit) as ended:
        Q_convergence_radial.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    assert ended.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "previous files are unchanged" in err[0], err
