"""Shared fixtures: a tiny CIFAR-shaped data set in the official cifar-10-batches-py layout."""
import os
import pickle
import signal
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# A suite started in the background (`nohup ... &`) inherits an ignored SIGINT, which its children would inherit too,
# so the Ctrl-C tests could not interrupt them; a handler (unlike SIG_IGN) is reset to the default in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_images(labels, rng):
    """uint8 [n, 3, 32, 32] images whose class a small CNN learns within an epoch or two.

    Class c has its own colour and stripe pattern (orientation and frequency), plus pixel noise
    and a random brightness, so the classes are easy but not identical copies.
    """
    y, x = np.mgrid[0:32, 0:32] / 32.0
    templates = []
    for c in range(10):
        angle = np.pi * c / 10
        frequency = 2 + (c % 3)
        stripes = np.sin(2 * np.pi * frequency * (np.cos(angle) * x + np.sin(angle) * y))
        colour = 0.25 + 0.5 * np.array([(c * 37 % 10) / 9, (c * 53 % 10) / 9, (c * 71 % 10) / 9])
        templates.append(colour[:, None, None] + 0.25 * stripes[None])
    templates = np.stack(templates)  # [10, 3, 32, 32]
    n = len(labels)
    images = templates[labels] + 0.08 * rng.standard_normal((n, 3, 32, 32))
    images += 0.1 * rng.uniform(-1, 1, (n, 1, 1, 1))
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def write_tiny_cifar(root, per_batch=200, n_test=200, seed=0):
    """Write root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} in the official
    pickle format (dict with 'data' uint8 [n, 3072], 'labels' list of int). Returns root.

    batches.meta states num_cases_per_batch = per_batch, and cifar_data.load_cifar10 requires every
    batch file to hold exactly that many images, the test batch too (as in the official
    release, 10,000 each): n_test must equal per_batch."""
    assert n_test == per_batch, "cifar_data.load_cifar10 requires as many test images as per training file"
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        labels = rng.integers(0, 10, n)
        data = tiny_images(labels, rng).reshape(n, -1)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": TINY_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return str(root)


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """Path of a folder holding a tiny learnable CIFAR-10 (5 x 200 train, 200 test images)."""
    return write_tiny_cifar(tmp_path_factory.mktemp("tiny_cifar"))
