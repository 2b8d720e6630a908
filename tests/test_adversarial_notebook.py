"""adversarial_CIFAR.ipynb (Fig. 11) runs end to end, headless, on the tiny CIFAR fixture, and its
saved data show what the two protocols do to the images."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {method: f"ensemble/cnn_cifar_leakyrelu_{method}_h16_g200_eps10" for method in ("FGSM", "PGD")}
PROTOCOLS = ("paper", "corrected")
MODELS = ("original", "group", "g_inverse", "perm_interp")


@pytest.fixture(scope="module")
def notebook_outputs(tiny_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("adversarial_figures")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_notebook.py"), os.path.join(REPO, "adversarial_CIFAR.ipynb"),
         "--quick", "--out", str(out), "--cifar-dir", tiny_cifar, "--device", "cpu", "--timeout", "300"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = {}
    for method, name in NAMES.items():
        for ext in (".pdf", ".png", ".npz", ".json"):
            path = os.path.join(out, name + ext)
            assert os.path.getsize(path) > 0, path
        with np.load(os.path.join(out, name + ".npz")) as npz:
            data = {key: npz[key] for key in npz.files}
        with open(os.path.join(out, name + ".json")) as f:
            saved[method] = (data, json.load(f))
    return saved


def test_files_hold_every_documented_key(notebook_outputs):
    for method, (data, settings) in notebook_outputs.items():
        strengths = data["strengths"]
        assert list(strengths) == pytest.approx(settings["strengths"][method])
        for protocol in PROTOCOLS:
            for model in MODELS:
                for key in (f"acc_{protocol}_{model}", f"mean_acc_{protocol}_{model}"):
                    assert data[key].shape == strengths.shape
                    assert np.all((data[key] >= 0) & (data[key] <= 1))
        assert settings["attack"] == method and settings["quick"] is True
        assert settings["protocols"] == list(PROTOCOLS) and settings["seed"] == 0
        assert {"versions", "device", "run_seconds", "data_source"} <= set(settings)


def test_corrected_attacks_stay_within_their_radius(notebook_outputs):
    fgsm, _ = notebook_outputs["FGSM"]
    pgd, _ = notebook_outputs["PGD"]
    # One FGSM step of eps in the valid range: the largest change is exactly eps.
    np.testing.assert_allclose(fgsm["linf_corrected"], fgsm["strengths"], atol=1e-6)
    # PGD: random start in the 0.3 ball, never outside it.
    assert pgd["linf_corrected"][0] == 0 and np.all(np.abs(pgd["linf_corrected"][1:] - 0.3) < 1e-6)


def test_paper_protocol_keeps_its_clamp_and_double_attack(notebook_outputs):
    fgsm, _ = notebook_outputs["FGSM"]
    pgd, _ = notebook_outputs["PGD"]
    # Data in [-0.5, 0.5] clipped to [0, 1]: a black pixel (-0.5) is set to 0 by the first attack,
    # then moved by eps by the second; PGD's second attack has its own 0.3 ball around that 0.
    assert fgsm["linf_paper"][0] == 0 and pgd["linf_paper"][0] == 0
    np.testing.assert_allclose(fgsm["linf_paper"][1:], 0.5 + fgsm["strengths"][1:], atol=1e-5)
    np.testing.assert_allclose(pgd["linf_paper"][1:], 0.5 + 0.3, atol=1e-5)
    # The clamp alone costs accuracy (defect B2); under the corrected protocol it is a no-op.
    assert fgsm["clamp_only_acc_paper"] < fgsm["acc_paper_original"][0] - 0.02
    assert fgsm["clamp_only_acc_corrected"] == pytest.approx(fgsm["acc_corrected_original"][0])


def test_ensembles_behave_as_the_symmetry_predicts_on_clean_images(notebook_outputs):
    data, _ = notebook_outputs["FGSM"]
    for protocol in PROTOCOLS:
        original = data[f"acc_{protocol}_original"][0]
        assert original > 0.5  # the tiny classes are learnable
        # pi is fitted so that each member reproduces the network: the group ensemble stays
        # close to the original; g^-1 (exact only for a linear sigma) falls to chance.
        assert data[f"acc_{protocol}_group"][0] > original - 0.15
        assert data[f"acc_{protocol}_g_inverse"][0] < 0.3
    # Both panels of the PGD figure start from the same clean accuracies (same trained models).
    pgd, _ = notebook_outputs["PGD"]
    for protocol in PROTOCOLS:
        assert pgd[f"acc_{protocol}_original"][0] == data[f"acc_{protocol}_original"][0]
