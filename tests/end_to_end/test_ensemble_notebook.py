"""ensemble_CIFAR.ipynb end to end, headless, on the tiny CIFAR-shaped data (QUICK=1)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gfs.cifar import dataset
from gfs.cifar import notebook_parameters
from gfs.cifar import symmetry
from helpers import check_committed_outputs, quick_notebook_run, quick_values

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "ensemble_CIFAR.ipynb")
STEMS = {numerics: dataset.fig10(numerics) for numerics in ("paper", "exact")}
QUICK = quick_values(os.path.basename(NOTEBOOK))  # the smoke-test settings of a quick run
HIDDEN = notebook_parameters.notebook_defaults(NOTEBOOK)["HIDDEN"]
GRID = (2, len(QUICK["GROUP_SCALES"]), len(QUICK["NUM_G_LIST"]))  # [seed, group scale, ensemble size]


def image_outputs(path):
    notebook = json.loads(open(path).read())
    return [o for c in notebook["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


@pytest.fixture(scope="module")
def quick_run(quick_pipeline):
    """The Fig. 10 notebook of the session's quick pipeline (make figures QUICK=1: 2 seeds, one worker per core)."""
    out, executed = quick_notebook_run(quick_pipeline, os.path.basename(NOTEBOOK))
    saved = {}
    for numerics, stem in STEMS.items():
        for ext in (".pdf", ".png", ".npz", ".json"):
            assert (out / (stem + ext)).stat().st_size > 0, (numerics, ext)
        with np.load(out / (stem + ".npz")) as npz:
            saved[numerics] = ({key: npz[key] for key in npz.files}, json.loads((out / (stem + ".json")).read_text()))
    saved["out"] = out
    return saved, executed


@pytest.mark.slow
def test_notebook_writes_both_numerics_with_seeds(quick_run):
    saved, _ = quick_run
    for numerics, (data, settings) in ((k, v) for k, v in saved.items() if k in STEMS):
        assert data["num_g"].tolist() == QUICK["NUM_G_LIST"] and data["group_scale"].tolist() == QUICK["GROUP_SCALES"]
        assert data["seeds"].tolist() == [0, 1] and data["original_acc"].shape == (2,)
        assert np.all((0.3 < data["original_acc"]) & (data["original_acc"] <= 1.0))  # chance is 0.1
        for mode in symmetry.ENSEMBLE_MODES:
            for key in ("vote_acc", "mean_acc", "overflow", "finite_frac"):
                assert data[f"{key}_{mode}"].shape == GRID, (key, mode)
            assert data[f"overflow_{mode}"].dtype == bool
        for key in ("symmetry_error", "symmetry_error_hidden", "symmetry_error_fitted"):
            assert data[key].shape == GRID and np.all(data[key] >= 0)
        for key in ("agreement", "agreement_min", "gap_p10", "gap_p50", "gap_p90", "saturated", "nonfinite"):
            assert data[f"heldout_{key}"].shape == GRID, key
        assert np.all(data["heldout_agreement_min"] <= data["heldout_agreement"])
        # the deep ensemble (three CNNs from their own seeds): the gain a real ensemble buys
        assert data["deep_ensemble_seeds"].tolist() == [1000, 1001, 1002] and data["deep_member_acc"].shape == (3,)
        assert 0.3 < float(data["deep_ensemble_acc"]) <= 1.0
        # eps = 1e-3: the moved networks are the original on held-out images too
        assert data["heldout_agreement"][:, 2].min() > 0.97
        # eps = 1e-3 (last row): the group ensemble is the original network, shuffle is not
        assert np.abs(data["vote_acc_group"][:, 2] - data["original_acc"][:, None]).max() <= 0.02
        assert (data["vote_acc_shuffle"][:, 2] < data["original_acc"][:, None] - 0.1).all()
        assert settings["numerics"] == numerics and settings["quick"] is True and settings["seeds"] == [0, 1]
        assert settings["fit_noise"] == {"paper": 1e-4, "exact": 0.0}[numerics]
        assert settings["data"]["eval_images"] == QUICK["N_EVAL"] and settings["data"]["official"] is False
        assert settings["data"]["source"].startswith("not the official release: MD5 differs")
        assert set(settings["data"]["files"]) == set(dataset.LAYOUT_FILES) and len(settings["data"]["digest"]) == 64
        assert settings["cpu"] and settings["torch_threads"] >= 1 and settings["weights_from"] is None
        assert data["clean_predictions"].shape == (2, QUICK["N_EVAL"]) and data["clean_predictions"].dtype == np.int8
        n_train, fit = QUICK["N_TRAIN"], HIDDEN * max(QUICK["NUM_G_LIST"])  # a fitting image per unit
        assert settings["data"]["train_images"] == [0, n_train] and settings["data"]["fit_images"] == [n_train, n_train + fit]
        assert settings["device"] == "cpu" and settings["run_seconds"] > 0 and "torch" in settings["versions"]
        assert len(settings["train_history"]) == 2
    paper, exact = saved["paper"][0], saved["exact"][0]
    # the same models in both numerics; the exact action is a symmetry up to eps = 10
    np.testing.assert_array_equal(paper["original_acc"], exact["original_acc"])
    assert exact["symmetry_error"].max() < 1e-3
    assert paper["symmetry_error"][:, 0].max() > exact["symmetry_error"][:, 0].max()


@pytest.mark.slow
def test_saved_weights_reproduce_the_runs_clean_predictions(quick_run, tiny_cifar):
    """Every trained CNN is saved (safetensors) with its settings; loaded, it makes the run's clean predictions."""
    from gfs.cifar import weights
    saved, _ = quick_run
    data, settings = saved["paper"]
    test_images, _ = dataset.load_cifar10(tiny_cifar, train=False, download=False)
    for s, seed in enumerate(settings["seeds"]):
        assert settings["weights"][s] == dataset.weights_name("Fig. 10", seed) + ".safetensors"
        model, trained_with, history, predictions = weights.load_cnn(str(saved["out"]),
                                                                     dataset.weights_name("Fig. 10", seed))
        assert trained_with["seed"] == seed and trained_with["epochs"] == QUICK["EPOCHS"] and trained_with["hidden"] == HIDDEN
        assert trained_with["data_digest"] == settings["data"]["digest"] and history == settings["train_history"][s]
        np.testing.assert_array_equal(weights.clean_predictions(model, test_images[:200]), data["clean_predictions"][s])
        np.testing.assert_array_equal(predictions, data["clean_predictions"][s])


@pytest.mark.slow
def test_weights_from_evaluates_the_saved_cnns_without_training(quick_run, tiny_cifar, tmp_path):
    """WEIGHTS_FROM: the same grids from the saved CNNs, without training (the group is refitted from the weights,
    deterministically); a CNN trained with other settings is refused in one line."""
    saved, _ = quick_run
    out = tmp_path / "again"

    def from_weights(*flags):  # the quick run again, its CNNs loaded from the first run's saved weights
        return subprocess.run([sys.executable, "run_notebook.py", NOTEBOOK, "-p", "WEIGHTS_FROM", str(saved["out"]),
                               "--no-download", "--quick", "--cifar-dir", tiny_cifar, *flags],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    result = from_weights("--out", str(out), "--jobs", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    for numerics, stem in STEMS.items():
        with np.load(out / (stem + ".npz")) as npz:
            again = {key: npz[key] for key in npz.files}
        first = saved[numerics][0]
        assert set(again) == set(first)
        for key in first:
            np.testing.assert_array_equal(again[key], first[key], err_msg=key)
        settings = json.loads((out / (stem + ".json")).read_text())
        assert settings["weights_from"] == str(saved["out"]) and settings["seconds"]["training"] < 30
    result = from_weights("--out", str(tmp_path / "other"), "--seeds", "3")
    assert result.returncode == 1 and "WeightsError: " in result.stderr and "no saved CNN" in result.stderr


@pytest.mark.slow
def test_fit_size_experiment_is_saved(quick_run, tmp_path_factory):
    saved, _ = quick_run
    out = saved["out"]
    with np.load(out / "ensemble" / "fit_size_generalisation.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    assert data["sizes"].tolist() == QUICK["FIT_SIZES"] and data["scales"].tolist() == [0.1, 1, 10]
    assert int(data["members"]) == QUICK["FIT_SIZE_MEMBERS"]
    for key in ("heldout_agreement", "mean_acc", "vote_acc", "fit_error"):
        assert data[key].shape == (2, 3, len(QUICK["FIT_SIZES"])), key
    assert np.all(data["fit_error"][:, :, 0] < 1e-6)  # 16 images: pi interpolates them (exact numerics)
    assert data["heldout_agreement"][:, 0].min() > 0.9  # scale 0.1: close to the original


@pytest.mark.slow
def test_executed_copy_shows_the_figures(quick_run):
    _, executed = quick_run
    assert len(image_outputs(executed)) == 3  # one figure per numerics and the fit-size figure, inline


def test_committed_notebook_shows_the_full_run_and_has_a_parameters_cell():
    check_committed_outputs(NOTEBOOK, images=3)
    notebook = json.loads(open(NOTEBOOK).read())
    first = notebook["cells"][0]
    assert first["cell_type"] == "code" and first["metadata"].get("tags") == ["parameters"]
    source = "".join(first["source"])
    assert "CIFAR_DIR" in source and "DEVICE" in source and "Jupyter" in source
    assert "THREADS = 0" in source and "SEEDS = None" in source  # plain values: papermill sets them
    derived = next("".join(c["source"]) for c in notebook["cells"][1:] if c["cell_type"] == "code" and not
                   c["metadata"].get("tags"))  # derived after papermill's injected cell (kept by a full run)
    assert "notebook_parameters.figures_dir(FIGURES_DIR, QUICK)" in derived and "if QUICK:" in derived
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(set(ids)) == len(ids) and all(i.startswith("ensemble-") for i in ids)
    # the notebook is a thin driver: no function or class definitions of its own
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "os.environ" not in code  # parameters come from the parameters cell only
    assert "\ndef " not in code and "\nclass " not in code and not code.startswith("def ")
