"""Bad CIFAR-10 files: nothing in a data file runs, and wrong content is refused in one line that
names the file and says what is wrong. Offline downloads leave nothing behind."""
import copyreg
import hashlib
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torchvision

from gfs.cifar import dataset
from helpers import REPO, write_tiny_cifar
from helpers import LINUX_PROC, running


def batch_path(root, name):
    return os.path.join(root, "cifar-10-batches-py", name)


def rewrite(root, name, change):
    """Load a tiny batch file (plain pickle: the test wrote it), change it, write it back."""
    with open(batch_path(root, name), "rb") as f:
        batch = pickle.load(f)
    change(batch)
    with open(batch_path(root, name), "wb") as f:
        pickle.dump(batch, f)


def data_error(root, train=True):
    """The one-line CifarDataError that loading gives."""
    with pytest.raises(dataset.CifarDataError) as error:
        dataset.load_cifar10(root, train=train, download=False)
    message = str(error.value)
    assert "\n" not in message
    return error.value, message


@pytest.fixture
def root(tmp_path):
    return write_tiny_cifar(str(tmp_path / "data"), per_batch=20, n_test=20)


class RunsCommand:
    """Unpickling it runs a shell command (what a crafted data file can do to plain pickle.load)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_files(marker):
    """name -> bytes of a data_batch_1 that tries something a CIFAR file never needs."""
    command = RunsCommand(marker)
    files = {f"reduce-protocol-{p}": pickle.dumps({"data": command, "labels": [0]}, protocol=p) for p in (0, 2, 5)}
    copyreg.add_extension("posix", "system", 0xF1)  # the EXT opcodes reach a callable through a registry
    try:
        files["extension-code"] = pickle.dumps({"data": command, "labels": [0]}, protocol=2)
    finally:
        copyreg.remove_extension("posix", "system", 0xF1)
    files["object-array"] = pickle.dumps({"data": np.array([b"x", 1], dtype=object), "labels": [0, 1]})

    class Persistent(pickle.Pickler):
        def persistent_id(self, obj):
            return "outside" if obj == "REF" else None
    buffer = io.BytesIO()
    Persistent(buffer).dump({"data": "REF", "labels": [0]})
    files["persistent-id"] = buffer.getvalue()
    files["set"] = pickle.dumps({"data": {1, 2}, "labels": [0]})
    return files


@pytest.mark.parametrize("kind", ["reduce-protocol-0", "reduce-protocol-2", "reduce-protocol-5", "extension-code",
                                  "object-array", "persistent-id", "set"])
def test_a_crafted_file_runs_nothing_and_is_refused(root, tmp_path, kind):
    marker = tmp_path / "MARKER"
    content = crafted_files(marker)[kind]
    with open(batch_path(root, "data_batch_1"), "wb") as f:
        f.write(content)
    copyreg.add_extension("posix", "system", 0xF1)  # registered while loading too: the worst case
    try:
        error, message = data_error(root)
    finally:
        copyreg.remove_extension("posix", "system", 0xF1)
    assert not marker.exists()
    assert batch_path(root, "data_batch_1") in message and "refused" in message
    if kind.startswith(("reduce", "extension")):
        assert f"{os.system.__module__}.system" in message  # the refused global, by name
    assert not isinstance(error, dataset.CifarMissingError)  # a bad file is a failure, never a skip


def test_published_checksums_never_lead_to_unpickling(root, tmp_path, monkeypatch):
    """The official-source check only compares MD5s; even files whose checksums match torchvision's
    list are loaded by the restricted reader alone (torchvision's own loader is never used)."""
    marker = tmp_path / "MARKER"
    with open(batch_path(root, "data_batch_1"), "wb") as f:
        f.write(crafted_files(marker)["reduce-protocol-2"])

    def md5(name):
        with open(batch_path(root, name), "rb") as f:
            return hashlib.md5(f.read()).hexdigest()
    official = torchvision.datasets.CIFAR10
    monkeypatch.setattr(official, "train_list", [[name, md5(name)] for name, _ in official.train_list])
    monkeypatch.setattr(official, "test_list", [[name, md5(name)] for name, _ in official.test_list])
    monkeypatch.setattr(official, "meta", dict(official.meta, md5=md5("batches.meta")))
    assert dataset.cifar10_provenance(root)["official"] is True  # by checksum
    assert not marker.exists()
    _, message = data_error(root)
    assert "refused" in message and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_every_pickle_protocol_of_a_real_batch_loads(root, protocol):
    """Protocol 2 stores bytes through _codecs.encode and protocol 5 arrays through _frombuffer:
    the reader rebuilds both, to the same images."""
    images, labels = dataset.load_cifar10(root, download=False)
    for name in dataset.LAYOUT_FILES:
        with open(batch_path(root, name), "rb") as f:
            batch = pickle.load(f)
        if name.startswith("data_batch"):
            batch["filenames"] = [n.encode() for n in batch["filenames"]]  # bytes, as Python 2 wrote them
        with open(batch_path(root, name), "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    again, again_labels = dataset.load_cifar10(root, download=False)
    assert np.array_equal(again.numpy(), images.numpy()) and np.array_equal(again_labels.numpy(), labels.numpy())


def test_float_pixels_are_refused_not_cast(root):
    rewrite(root, "data_batch_2", lambda b: b.update(data=b["data"].astype(np.float32) / 255))
    _, message = data_error(root)
    assert batch_path(root, "data_batch_2") in message and "float32" in message and "uint8" in message


def test_a_short_batch_is_refused(root):
    rewrite(root, "data_batch_3", lambda b: b.update(data=b["data"][:15], labels=b["labels"][:15]))
    _, message = data_error(root)
    assert batch_path(root, "data_batch_3") in message and "holds 15 images" in message
    assert "num_cases_per_batch" in message and "20" in message


def test_a_short_test_batch_is_refused(root):
    rewrite(root, "test_batch", lambda b: b.update(data=b["data"][:19], labels=b["labels"][:19]))
    _, message = data_error(root, train=False)
    assert batch_path(root, "test_batch") in message and "holds 19 images" in message


def test_a_label_out_of_range_is_named(root):
    def change(batch):
        batch["labels"][7] = 10
    rewrite(root, "data_batch_4", change)
    _, message = data_error(root)
    assert batch_path(root, "data_batch_4") in message and "label 10 at position 7" in message and "0..9" in message


def test_fewer_labels_than_images(root):
    rewrite(root, "data_batch_5", lambda b: b.update(labels=b["labels"][:-1]))
    _, message = data_error(root)
    assert batch_path(root, "data_batch_5") in message and "20 images but 19 labels" in message


def test_images_of_the_wrong_size(root):
    rewrite(root, "data_batch_1", lambda b: b.update(data=b["data"][:, :1024]))
    _, message = data_error(root)
    assert batch_path(root, "data_batch_1") in message and "[20, 1024]" in message and "3072" in message


def test_an_incomplete_folder_is_a_failure_not_missing_data(root):
    os.remove(batch_path(root, "batches.meta"))
    os.remove(batch_path(root, "data_batch_2"))
    error, message = data_error(root)
    assert not isinstance(error, dataset.CifarMissingError)
    assert "data_batch_2, batches.meta" in message


def test_no_folder_without_download_is_missing_data_and_creates_nothing(tmp_path):
    target = tmp_path / "new" / "data"
    with pytest.raises(dataset.CifarMissingError, match="download is off"):
        dataset.load_cifar10(str(target), download=False)
    assert not (tmp_path / "new").exists()


def unreachable_url():
    """An address on this machine where nothing listens: the download fails as offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def test_an_offline_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", unreachable_url())
    target = tmp_path / "new" / "data"
    with pytest.raises(dataset.CifarMissingError, match="download failed") as error:
        dataset.load_cifar10(str(target), download=True)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "new").exists()  # both folders it created are removed


def test_a_failed_download_removes_only_what_it_created(tmp_path, monkeypatch):
    existing = tmp_path / "data"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")

    def partial_download(url, root, filename=None, md5=None, **kwargs):
        with open(os.path.join(root, filename), "wb") as f:
            f.write(b"half an archive")
        raise OSError("connection reset")
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", partial_download)
    with pytest.raises(dataset.CifarMissingError, match="connection reset"):
        dataset.load_cifar10(str(existing), download=True)
    assert sorted(os.listdir(existing)) == ["notes.txt"]  # the partial archive is gone, the folder stays


@pytest.mark.slow
@LINUX_PROC
def test_the_notebooks_workers_end_with_their_parent(tmp_path):
    """cnn.run_calls (the notebooks' training and grids) uses processes.py's workers: when
    the parent is killed (SIGKILL: no clean-up of its own), its workers end too."""
    (tmp_path / "task.py").write_text("import os, time\n"
                                      "def mark_and_wait(path):\n"
                                      "    open(path, 'w').write(str(os.getpid()))\n"
                                      "    time.sleep(120)\n")
    code = ("import functools, task\nfrom gfs.cifar import cnn\n"
            "cnn.run_calls([functools.partial(task.mark_and_wait, f'started-{i}') for i in range(2)], jobs=2)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO))
    workers = []
    try:
        markers = [tmp_path / f"started-{i}" for i in range(2)]
        deadline = time.time() + 120
        while not all(m.exists() and m.read_text() for m in markers) and time.time() < deadline:
            time.sleep(0.1)
        workers += [int(m.read_text()) for m in markers]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.time() + 5
        while any(map(running, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(running, workers))
    finally:
        parent.kill()
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
