"""The five figure scripts end to end (--quick), --plot-only, determinism, and bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {
    "Q_dynamics_elementwise.py": [f"Q-dynamics/elementwise_{a}_loss_Q" for a in ("linear", "relu", "tanh", "sigmoid")],
    "Q_distribution.py": [f"Q-distribution/{a}_mhn_100_100_100" for a in ("linear", "relu", "tanh", "sigmoid")]
                         + ["Q-distribution/linear_mhn_100_200_100", "Q-distribution/linear_mhn_200_100_100"],
    "Q_convergence_elementwise.py": [f"Q-convergence/elementwise_{a}_convergence" for a in ("linear", "relu", "tanh", "sigmoid")],
    "Q_convergence_radial.py": ["Q-convergence/radial_zoomed_1e6"],
    "Q_hessian_eigenvalues.py": [f"Q-hessian-eigenvalues/Q-sharpness_{a}_mnk_10_5_50" for a in ("linear", "relu", "tanh", "sigmoid")],
}


def run(script, *flags):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def load_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def quick_outputs(tmp_path_factory):
    """Every script once with --quick into one folder, and once more into a second folder
    (Fig. 3 with two worker processes, to cover the parallel path)."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    for script in SCRIPTS:
        result = run(script, "--quick", "--no-progress", "--jobs", "1", "--out", str(first))
        assert result.returncode == 0, result.stderr
        jobs = "2" if script == "Q_dynamics_elementwise.py" else "1"
        result = run(script, "--quick", "--no-progress", "--jobs", jobs, "--out", str(second))
        assert result.returncode == 0, result.stderr
    return first, second


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
        assert all(np.isfinite(v).all() for v in data.values() if v.dtype.kind == "f")
    leftovers = [p for p in out.rglob(".tmp-*")]
    assert not leftovers


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_same_command_twice_gives_identical_arrays(quick_outputs, script):
    first, second = quick_outputs
    for name in SCRIPTS[script]:
        a, b = load_arrays(first / (name + ".npz")), load_arrays(second / (name + ".npz"))
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]), (name, key)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_plot_only_recreates_figures_from_saved_data(quick_outputs, script, tmp_path):
    first = quick_outputs[0]
    for name in SCRIPTS[script]:  # copy only the data files
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        for ext in (".npz", ".json"):
            (tmp_path / (name + ext)).write_bytes((first / (name + ext)).read_bytes())
    result = run(script, "--plot-only", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in SCRIPTS[script]:
        assert (tmp_path / (name + ".pdf")).stat().st_size > 0
        assert (tmp_path / (name + ".png")).read_bytes() == (first / (name + ".png")).read_bytes()


def test_training_data_have_the_documented_keys(quick_outputs):
    out = quick_outputs[0]
    data = load_arrays(out / "Q-convergence/elementwise_tanh_convergence.npz")
    runs, records = data["loss"].shape
    assert data["Q"].shape == (runs, records) and data["steps"].shape == (records,)
    assert data["labels"].shape == data["Q0"].shape == (runs,)
    fig3 = load_arrays(out / "Q-dynamics/elementwise_linear_loss_Q.npz")
    # The paper's curve starts after the first step (no point at initialisation), baseline Q_1.
    assert fig3["delta_Q_tilde_steps"][0] == 1 and np.array_equal(fig3["delta_Q_tilde_steps"], fig3["steps"][1:])
    assert fig3["delta_Q_tilde"].shape == (runs, len(fig3["steps"]) - 1)
    assert abs(fig3["delta_Q_tilde"][:, 0]).max() == 0 and abs(fig3["delta_Q_tilde"][:, 1:]).max() > 0
    hess = load_arrays(out / "Q-hessian-eigenvalues/Q-sharpness_linear_mnk_10_5_50.npz")
    assert hess["eigenvalues"].shape == (4, 750) and hess["Q0"].shape == (4,)
    dist = load_arrays(out / "Q-distribution/linear_mhn_100_100_100.npz")
    assert dist["Q"].shape == (50,)


def one_line_error(result, text):
    lines = result.stderr.strip().splitlines()
    return (result.returncode == 2 and "Traceback" not in result.stderr and text in lines[-1])


@pytest.mark.parametrize("flags,message", [
    (["--steps", "0"], "must be a positive integer"),
    (["--steps", "-5"], "must be a positive integer"),
    (["--plot-only"], "run without --plot-only first"),
])
def test_bad_input_gives_one_line_error(tmp_path, flags, message):
    result = run("Q_convergence_elementwise.py", "--out", str(tmp_path / "empty"), *flags)
    assert one_line_error(result, message), result.stderr


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s != "Q_convergence_radial.py"])
def test_unknown_activation_gives_one_line_naming_the_choices(tmp_path, script):
    result = run(script, "--activations", "tanh,swish", "--out", str(tmp_path / "out"))
    assert one_line_error(result, "unknown activation 'swish'; choose from linear, relu"), result.stderr
    assert not (tmp_path / "out").exists()


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


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run("Q_dynamics_elementwise.py", "--quick", "--out", str(blocker / "sub"))
    assert one_line_error(result, "cannot write to output folder"), result.stderr
    result = run("Q_hessian_eigenvalues.py", "--quick", "--out", str(blocker))
    assert one_line_error(result, "is not a folder"), result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path):
    result = run("Q_convergence_radial.py", "--quick", "--device", "cuda", "--out", str(tmp_path))
    assert one_line_error(result, "no CUDA GPU is available"), result.stderr


def test_steps_flag_does_not_apply_to_sampling_script(tmp_path):
    result = run("Q_distribution.py", "--steps", "10", "--out", str(tmp_path))
    assert one_line_error(result, "--steps does not apply"), result.stderr


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_help_explains_every_flag(script):
    result = run(script, "--help")
    assert result.returncode == 0
    for flag in ("--quick", "--steps", "--device", "--dtype", "--out", "--plot-only", "--jobs"):
        assert flag in result.stdout


def test_interrupted_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import figure_driver

    def broken_savez(file, **arrays):
        file.write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(figure_driver.np, "savez_compressed", broken_savez)
    fig, _ = plt.subplots()
    with pytest.raises(OSError):
        figure_driver.save_figure(fig, str(tmp_path), "sub/figure", {"x": np.arange(3)}, {})
    assert list((tmp_path / "sub").iterdir()) == []
