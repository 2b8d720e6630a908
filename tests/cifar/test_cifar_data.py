"""Loading CIFAR-10: the standard layout, no download when present, clear errors otherwise."""
import hashlib
import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from gfs.cifar import dataset
from helpers import write_tiny_cifar


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails like an offline machine (and is recorded)."""
    attempts = []

    def offline(*args, **kwargs):
        attempts.append(args)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    return attempts


def test_reads_the_standard_layout_without_download(tiny_cifar, no_network):
    images, labels = dataset.load_cifar10(tiny_cifar, train=True, download=True)
    assert no_network == []
    assert images.shape == (1000, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (1000,) and labels.dtype == torch.int64
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # the order and pixel values of the files: data_batch_1 first, row-major 3 x 32 x 32 planes
    with open(os.path.join(tiny_cifar, "cifar-10-batches-py", "data_batch_1"), "rb") as f:
        first = pickle.load(f)
    assert labels[:200].tolist() == list(first["labels"])
    expected = torch.from_numpy(np.asarray(first["data"][:3]).reshape(3, 3, 32, 32)).float() / 255
    assert torch.equal(images[:3], expected)
    test_images, test_labels = dataset.load_cifar10(tiny_cifar, train=False, download=True)
    assert test_images.shape == (200, 3, 32, 32) and len(test_labels) == 200
    provenance = dataset.cifar10_provenance(tiny_cifar)  # not the official files: every MD5 differs
    assert provenance["official"] is False and provenance["source"] == (
        "not the official release: MD5 differs from torchvision's published checksum for " + ", ".join(dataset.LAYOUT_FILES))
    with open(f"{tiny_cifar}/cifar-10-batches-py/test_batch", "rb") as f:
        assert provenance["files"]["test_batch"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert len(provenance["digest"]) == 64


def test_missing_data_without_download(tmp_path):
    with pytest.raises(dataset.CifarDataError) as error:
        dataset.load_cifar10(str(tmp_path / "nowhere"), download=False)
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "test_batch" in message and "\n" not in message


def test_missing_data_offline(tmp_path, no_network):
    with pytest.raises(dataset.CifarDataError) as error:
        dataset.load_cifar10(str(tmp_path / "empty"), download=True)
    assert len(no_network) == 1  # it tried, once, and failed cleanly
    message = str(error.value)
    assert "cifar-10-batches-py" in message and "download failed" in message and "\n" not in message


def test_partial_layout_is_an_error_not_missing_data(tmp_path, no_network):
    root = write_tiny_cifar(str(tmp_path), per_batch=20, n_test=20)
    os.remove(os.path.join(root, "cifar-10-batches-py", "test_batch"))
    with pytest.raises(dataset.CifarDataError, match="lacks test_batch") as error:
        dataset.load_cifar10(root, download=True)
    assert not isinstance(error.value, dataset.CifarMissingError) and no_network == []  # never downloaded over


def test_truncated_batch_file(tmp_path):
    root = write_tiny_cifar(str(tmp_path), per_batch=20, n_test=20)
    path = os.path.join(root, "cifar-10-batches-py", "data_batch_3")
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:
        f.write(content[: len(content) // 2])
    with pytest.raises(dataset.CifarDataError) as error:
        dataset.load_cifar10(root, download=False)
    assert "data_batch_3" in str(error.value) and "corrupted" in str(error.value)


def test_batch_with_wrong_contents(tmp_path):
    root = write_tiny_cifar(str(tmp_path), per_batch=20, n_test=20)
    path = os.path.join(root, "cifar-10-batches-py", "test_batch")
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((20, 3072), np.uint8), "labels": [11] * 20}, f)
    with pytest.raises(dataset.CifarDataError, match="test_batch"):
        dataset.load_cifar10(root, train=False, download=False)
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((20, 100), np.uint8), "labels": [1] * 20}, f)
    with pytest.raises(dataset.CifarDataError, match="test_batch"):
        dataset.load_cifar10(root, train=False, download=False)


def test_ensemble_splits_are_disjoint():
    train_x, train_y = torch.arange(100).float(), torch.arange(100)
    test_x, test_y = 1000 + torch.arange(30).float(), torch.arange(30)
    splits = dataset.ensemble_splits(train_x, train_y, test_x, test_y, 60, 32, "heldout")
    ids = {name: set(x.long().tolist()) for name, (x, _) in splits.items()}
    assert ids["train"] == set(range(60)) and ids["fit"] == set(range(60, 92)) and ids["eval"] == set(range(92, 100))
    splits = dataset.ensemble_splits(train_x, train_y, test_x, test_y, 60, 32, "test", n_eval=10)
    assert set(splits["eval"][0].long().tolist()) == set(range(1000, 1010))
    with pytest.raises(ValueError):
        dataset.ensemble_splits(train_x, train_y, test_x, test_y, 80, 32)
    with pytest.raises(ValueError):
        dataset.ensemble_splits(train_x, train_y, test_x, test_y, 60, 32, "test", n_eval=31)
