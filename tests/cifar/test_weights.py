"""The published CNNs (weights.py): a saved CNN loads as the same function, refuses another run's settings in one
line, and the committed weights reproduce the committed clean predictions."""
import json
import os

import numpy as np
import pytest
import torch

from gfs.cifar import cnn, dataset, weights
from helpers import REPO

FIGURES = os.path.join(REPO, "figures")
SETTINGS = dict(figure="Fig. 10", activation="relu_sqr", hidden=16, input_shift=0.5, softmax_output=True, seed=4,
                epochs=1, lr=1e-3, data_digest="ab" * 32)


def trained(seed=4):
    model = cnn.make_cnn("relu_sqr", 16, seed=seed)
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(64) % 10
    history = cnn.train_model(model, images, labels, epochs=1, batch_size=16, progress=False)
    return model, images, history


def test_a_saved_cnn_loads_as_the_same_function(tmp_path):
    model, images, history = trained()
    predictions = weights.clean_predictions(model, images)
    path = weights.save_cnn(model, str(tmp_path), "ensemble/weights/fig10_seed4", SETTINGS, history, predictions)
    assert path.endswith(".safetensors") and 4e5 < os.path.getsize(path) < 7e5  # ~0.5 MB, float32
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp-")]  # nothing half-written
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # readable like every other published file
    loaded, settings, loaded_history, saved_predictions = weights.load_cnn(str(tmp_path), "ensemble/weights/fig10_seed4",
                                                                          expect={"epochs": 1})
    assert settings == SETTINGS and loaded_history == history
    for (key, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(a, b), key
    np.testing.assert_array_equal(weights.clean_predictions(loaded, images), predictions)
    np.testing.assert_array_equal(saved_predictions, predictions)
    assert saved_predictions.dtype == np.int8
    with torch.no_grad():  # the whole function, not only the argmax
        assert torch.equal(loaded(images), model(images))


def test_a_cnn_of_another_run_missing_or_damaged_is_refused_in_one_line(tmp_path):
    model, images, history = trained()
    weights.save_cnn(model, str(tmp_path), "w/fig10_seed4", SETTINGS, history, weights.clean_predictions(model, images))
    with pytest.raises(weights.WeightsError, match=r"trained with epochs = 1, this run has 10$") as error:
        weights.load_cnn(str(tmp_path), "w/fig10_seed4", expect={"epochs": 10, "hidden": 16})
    assert "\n" not in str(error.value)
    with pytest.raises(weights.WeightsError, match="no saved CNN"):
        weights.load_cnn(str(tmp_path), "w/fig10_seed5")
    path = tmp_path / "w" / "fig10_seed4.safetensors"
    path.write_bytes(path.read_bytes()[:1000])  # cut short
    with pytest.raises(weights.WeightsError, match="not a readable safetensors file"):
        weights.load_cnn(str(tmp_path), "w/fig10_seed4")


# (figure, the .json list of its saved CNNs, the .npz predictions of the same CNNs in that order)
SAVED_CNNS = ((dataset.fig10("paper"), "weights", "clean_predictions"),
              (dataset.fig10("paper"), "deep_ensemble_weights", "deep_clean_predictions"),
              (dataset.fig11("FGSM", 16, 200, 10.0), "weights", "clean_predictions"),
              (dataset.fig11("robustness", 16, 200, 10.0, "exact"), "weights", "clean_predictions"),
              (dataset.fig11("robustness", 16, 200, 10.0, "exact"), "control_weights", "control_clean_predictions"))


def committed_weights():
    """(figure name, predictions key, row, weights name) of every committed CNN whose figure records it."""
    found = []
    for name, listed, key in SAVED_CNNS:
        json_path = os.path.join(FIGURES, name + ".json")
        if os.path.isfile(json_path):
            with open(json_path) as f:
                names = [w[:-len(".safetensors")] for w in json.load(f).get(listed, [])]
            found += [(name, key, s, w) for s, w in enumerate(w for w in names if "corrected" not in w or
                                                               "robustness" in name)]
    return found


@pytest.mark.skipif(not committed_weights() or not all(
    os.path.isfile(os.path.join(FIGURES, w + ".safetensors")) for *_, w in committed_weights()),
    reason="no committed weights (figures/ensemble/weights/) yet")
def test_committed_weights_reproduce_the_committed_clean_predictions():
    """Each committed CNN of Figs. 10 and 11, controls included: its settings name the data the committed figure was
    computed on, and its predictions are the figure's. With CIFAR-10 at $CIFAR_DIR (never needed), the loaded CNN
    recomputes them exactly."""
    cifar = os.environ.get("CIFAR_DIR")
    assert {key for _, key, _, _ in committed_weights()} >= {"clean_predictions", "deep_clean_predictions"}
    for name, key, s, w in committed_weights():
        with np.load(os.path.join(FIGURES, name + ".npz")) as npz:
            expected = npz[key][s]
        with open(os.path.join(FIGURES, name + ".json")) as f:
            settings = json.load(f)
        model, saved, _, predictions = weights.load_cnn(FIGURES, w)
        assert saved["data_digest"] == settings["data"]["digest"], w
        np.testing.assert_array_equal(predictions, expected)
        if cifar and os.path.isdir(os.path.join(dataset.data_root(cifar), dataset.CIFAR_FOLDER)):
            np.testing.assert_array_equal(weights.clean_predictions(model, evaluation_images(cifar, settings, saved)),
                                          expected)


def evaluation_images(cifar, settings, saved):
    """The images a committed figure's clean predictions are of, from its .json and the CNN's saved settings (the
    notebooks' splits)."""
    from gfs.cifar import paper_protocol
    train = dataset.load_cifar10(cifar, train=True, download=False)
    test = dataset.load_cifar10(cifar, train=False, download=False)
    data = settings["data"]
    if settings["figure"] == "Fig. 10":
        n_train, (start, stop) = data["train_images"][1], data["fit_images"]
        return dataset.ensemble_splits(*train, *test, n_train, stop - start, data["eval_split"],
                                       data["eval_images"])["eval"][0]
    protocol = saved["protocol"]
    splits = paper_protocol.adversarial_splits(*train, *test, protocol, settings["hidden"], settings["num_g"],
                                               settings.get("num_eval", 1000))
    return paper_protocol.protocol_inputs(splits["eval"][0], protocol)
