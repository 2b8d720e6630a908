"""ensemble_CIFAR.ipynb end to end, headless, on the tiny CIFAR-shaped data (QUICK=1)."""
import json
import os
import subprocess
import sys

import numpy as np

import symmetry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "ensemble_CIFAR.ipynb")
STEM = os.path.join("ensemble", "cnn_cifar_leakyrelu2_main_acc")


def run_notebook(*args, env_extra=None, timeout=300):
    env = dict(os.environ, THREADS="1", CIFAR_DOWNLOAD="0", MPLBACKEND="Agg", **(env_extra or {}))
    return subprocess.run([sys.executable, os.path.join(REPO, "run_notebook.py"), NOTEBOOK, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_notebook_regenerates_fig10_on_tiny_data(tiny_cifar, tmp_path):
    with open(NOTEBOOK, "rb") as f:
        committed = f.read()
    out = tmp_path / "figures"
    result = run_notebook("--quick", "--cifar-dir", tiny_cifar, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(NOTEBOOK, "rb") as f:
        assert f.read() == committed  # the committed notebook is never overwritten

    for ext in (".pdf", ".png", ".npz", ".json"):
        assert (out / (STEM + ext)).stat().st_size > 0, ext
    data = np.load(out / (STEM + ".npz"))
    settings = json.loads((out / (STEM + ".json")).read_text())
    assert data["num_g"].tolist() == [2, 4] and data["eps"].tolist() == [1, 1e-3]
    assert 0.3 < float(data["original_acc"]) <= 1.0  # chance is 0.1
    for mode in symmetry.ENSEMBLE_MODES:
        for key in ("vote_acc", "mean_acc", "overflow", "finite_frac"):
            assert data[f"{key}_{mode}"].shape == (2, 2), (key, mode)
        assert data[f"overflow_{mode}"].dtype == bool
    # eps = 1e-3 (second row): the group ensemble is the original network, shuffle is not
    assert np.abs(data["vote_acc_group"][1] - data["original_acc"]).max() <= 0.02
    assert (data["vote_acc_shuffle"][1] < data["original_acc"] - 0.1).all()

    assert settings["quick"] is True and settings["seed"] == 0 and settings["device"] == "cpu"
    assert settings["data"]["source"] == "unverified"
    assert settings["data"]["train_images"] == [0, 600] and settings["data"]["fit_images"] == [600, 664]
    assert settings["data"]["eval_split"] == "test" and settings["data"]["eval_images"] == 200
    assert settings["run_seconds"]["total"] > 0 and "torch" in settings["versions"]


def test_notebook_stops_with_a_clear_message_without_data(tmp_path):
    result = run_notebook("--quick", "--cifar-dir", str(tmp_path / "no_data"), "--out", str(tmp_path / "out"),
                          timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "CifarDataError" in last and "cifar-10-batches-py" in last and str(tmp_path / "no_data") in last
    assert not (tmp_path / "out" / (STEM + ".npz")).exists()


def test_committed_notebook_has_no_outputs():
    notebook = json.loads(open(NOTEBOOK).read())
    assert notebook["cells"][0]["cell_type"] == "code" and "CIFAR_DIR" in "".join(notebook["cells"][0]["source"])
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    # the notebook is a thin driver: no function or class definitions of its own
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "\ndef " not in code and "\nclass " not in code and not code.startswith("def ")
