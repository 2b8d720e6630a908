"""What several test modules share: the repository's root, a tiny learnable CIFAR-10 in the official
layout, process checks, the checks of a committed notebook, and the paper notebook's heat-map rows."""
import json
import os
import pickle
import re

import nbformat
import numpy as np
import pytest

from gfs import paper_numbers as paper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("ensemble_CIFAR.ipynb", "adversarial_CIFAR.ipynb")  # Figs. 10 and 11


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

    batches.meta states num_cases_per_batch = per_batch, and dataset.load_cifar10 requires every
    batch file to hold exactly that many images, the test batch too (as in the official
    release, 10,000 each): n_test must equal per_batch."""
    assert n_test == per_batch, "dataset.load_cifar10 requires as many test images as per training file"
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


LINUX_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds worker processes through /proc")


def running(pid):
    """True while `pid` exists and is not a zombie (a zombie has ended; only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(home|root|tmp|work|Users|mnt|data|opt|var|srv|scratch)/")


def check_committed_outputs(path, images):
    """A committed notebook shows the outputs of one full, paper-settings run: every code cell
    executed in order, `images` inline figures of modest size, no quick run's output and no path
    of the machine it ran on."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "not one full run"
    outputs = [output for cell in code for output in cell.outputs]
    pngs = [output.data["image/png"] for output in outputs if "image/png" in output.get("data", {})]
    # base64 characters: screen resolution (the saved 150-dpi PNG is about 800,000)
    assert len(pngs) == images and max(map(len, pngs)) < 400_000
    text = "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in outputs)
    assert "error" not in {output.output_type for output in outputs}
    assert "QUICK" not in text and "saved figures/" in text  # the committed run saved into figures/
    injected = [cell for cell in code if "injected-parameters" in cell.metadata.get("tags", [])]
    assert all(line.startswith("#") for cell in injected for line in cell.source.splitlines())  # a record only
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text).group(0)
    assert os.path.getsize(path) < 3_000_000


EPS = [20, 10, 1, 0.1, 0.01, 1e-3, 1e-4]


def group_minus_original():
    """The paper notebook's group - original heat map [C] for eps >= 0.1, small made-up cells below: [7, 7]."""
    return np.array([paper.FIG10_ROWS["group"][e] for e in (20, 10, 1, 0.1)]
                    + [(0.002, -0.003, 0, 0, 0.001, 0, 0)] * 3, dtype=float)


def quick_notebook_run(quick_pipeline, notebook):
    """(figures folder, executed copy) of `notebook` (one of NOTEBOOKS) in the session's quick pipeline, after checking
    that the pipeline succeeded and left the committed notebook byte for byte as it was."""
    assert quick_pipeline.result.returncode == 0, quick_pipeline.result.stderr[-3000:]
    with open(os.path.join(REPO, notebook), "rb") as f:
        assert f.read() == quick_pipeline.notebooks_before[notebook]  # the committed notebook is never overwritten
    return quick_pipeline.out, quick_pipeline.executed / notebook


def derived_cell(notebook):
    """The source of `notebook`'s derived-settings cell (the first untagged code cell after the parameters)."""
    with open(os.path.join(REPO, notebook)) as f:
        cells = json.load(f)["cells"]
    return next("".join(c["source"]) for c in cells[1:] if c["cell_type"] == "code" and not c["metadata"].get("tags"))


def quick_values(notebook):
    """{NAME: value}: the smoke-test values that QUICK gives `notebook`'s parameters (the dict its derived cell passes
    to notebook_parameters.quick_settings), so that the tests of a quick run follow them."""
    derived = derived_cell(notebook)
    start = derived.index("globals(), dict(") + len("globals(), ")
    return eval(derived[start:derived.index(")))", start) + 1], {"dict": dict})
