"""CIFAR-10 on disk (docs/cifar.md, "Data"): the cifar-10-batches-py layout read with a restricted reader, checked,
and split for the notebooks; and the file names of the CIFAR-10 figures and trained models (at the bottom). torch is
imported only in load_cifar10, so the report can read the names without it.
"""

import contextlib
import hashlib
import os
import pickle
import platform
import shutil

import numpy as np


CIFAR_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"
LAYOUT_FILES = TRAIN_FILES + TEST_FILES + [META_FILE]
IMAGE_VALUES = 3 * 32 * 32  # values per image: 3 colour planes of 32 x 32, row-major
LAYOUT_HELP = (f"expected {CIFAR_FOLDER}/ holding data_batch_1 ... data_batch_5, test_batch and "
               "batches.meta (the official python pickle release)")
REBUILD_HELP = "delete the folder to download CIFAR-10 again, or rebuild the file in the official layout"


class CifarDataError(Exception):
    """CIFAR-10 is unreadable, corrupted or refused; the message is one line naming the file and what is wrong."""


class CifarMissingError(CifarDataError):
    """CIFAR-10 is absent and was not downloaded: the only data error that is not a failure of the run (`make
    figures` skips the notebook for it)."""


# The restricted reader (docs/cifar.md, "Data"): a pickle can name any callable to run while it loads, so only the
# callables that rebuild what a CIFAR batch holds are allowed: numeric numpy arrays (numpy 1.x and 2.x names, pickle
# protocols 2 to 5) and, in protocol 2 files written by Python 3, bytes. Everything else is refused before it is called.

def _numeric_dtype(*args):
    """numpy.dtype for numbers only (what the pickle asks for; an object dtype could hold anything)."""
    dtype = np.dtype(*args)
    if dtype.kind not in "biufc":
        raise _Refused(f"a numpy array of dtype {dtype} (only numeric arrays are allowed)")
    return dtype


def _latin1_bytes(text, encoding):
    """_codecs.encode as protocol 2 uses it for bytes objects: str -> bytes in latin-1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r} (only latin1 bytes are allowed)")
    return text.encode("latin1")


def _allowed_globals():
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _numeric_dtype,
               ("_codecs", "encode"): _latin1_bytes}
    for package in ("numpy.core", "numpy._core"):  # the name depends on the numpy that wrote the file
        allowed[package + ".multiarray", "_reconstruct"] = multiarray._reconstruct
        allowed[package + ".numeric", "_frombuffer"] = numeric._frombuffer
    return allowed


class _Refused(Exception):
    """Something the restricted reader does not build; the message says what."""


class _CifarUnpickler(pickle.Unpickler):
    """pickle.Unpickler that builds only the allowed globals: every opcode that names a callable
    (GLOBAL, STACK_GLOBAL, INST, EXT*) goes through find_class; persistent ids are refused."""
    allowed = _allowed_globals()

    def find_class(self, module, name):
        if (module, name) not in self.allowed:
            raise _Refused(f"the Python object {module}.{name}, which a CIFAR-10 file never holds")
        return self.allowed[module, name]

    def persistent_load(self, pid):
        raise _Refused("a persistent id (a reference to an object outside the file)")


def _check_types(obj, path):
    """Refuse anything but dict, list, str, bytes, int and numeric numpy arrays in a loaded file."""
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(list(item.keys()) + list(item.values()) if isinstance(item, dict) else item)
        elif isinstance(item, np.ndarray):
            if item.dtype.kind not in "biufc":
                raise CifarDataError(f"{path}: refused: it holds a numpy array of dtype {item.dtype}, a CIFAR-10 "
                                     f"file holds only numeric arrays; {REBUILD_HELP}")
        elif type(item) not in (str, bytes, int, bool):
            raise CifarDataError(f"{path}: refused: it holds a {type(item).__name__}, a CIFAR-10 file holds only "
                                 f"dicts, lists, strings, bytes, integers and numeric numpy arrays; {REBUILD_HELP}")


def read_pickle(path):
    """Load one CIFAR-10 pickle file with the restricted reader; CifarDataError if it is unreadable or refused."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()  # latin1: the official files are Python 2 pickles
    except _Refused as error:
        raise CifarDataError(f"{path}: refused to load: it asks for {error}; the file may be malicious, "
                             f"do not use it; {REBUILD_HELP}") from None
    except Exception as error:  # truncated file, bad opcodes, bad array state ...
        raise CifarDataError(f"{path}: the file is corrupted (not a complete pickle: {type(error).__name__}: "
                             f"{error}); {REBUILD_HELP}") from None
    _check_types(obj, path)
    return obj


def _images_per_file(folder):
    """num_cases_per_batch from batches.meta: how many images each batch file holds (10,000 in the official release)."""
    path = os.path.join(folder, META_FILE)
    meta = read_pickle(path)
    count = meta.get("num_cases_per_batch") if isinstance(meta, dict) else None
    if type(count) is not int or count <= 0:
        raise CifarDataError(f"{path}: no positive integer 'num_cases_per_batch' (the number of images in each "
                             f"batch file); {LAYOUT_HELP}")
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise CifarDataError(f"{path}: 'label_names' should list the 10 CIFAR-10 classes, found "
                             f"{len(names) if isinstance(names, list) else type(names).__name__}; {LAYOUT_HELP}")
    return count


def _read_batch(path, images_per_file):
    """One batch file -> (uint8 [n, 3, 32, 32], int64 [n]), n = images_per_file; else CifarDataError."""
    batch = read_pickle(path)
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        found = f"keys {sorted(map(str, batch))}" if isinstance(batch, dict) else f"a {type(batch).__name__}"
        raise CifarDataError(f"{path}: expected a dict with 'data' and 'labels', found {found}; {REBUILD_HELP}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray):
        raise CifarDataError(f"{path}: 'data' is a {type(data).__name__}, expected a uint8 array [images, 3072]")
    if data.dtype != np.uint8:
        hint = (": float pixels must not be cast (values in [0, 1] would become almost all 0, black images); "
                "store (x * 255).round() as uint8" if data.dtype.kind == "f" else "")
        raise CifarDataError(f"{path}: pixels are {data.dtype}, expected uint8 values 0..255{hint}")
    if data.ndim != 2 or data.shape[1] != IMAGE_VALUES:
        raise CifarDataError(f"{path}: 'data' has shape {list(data.shape)}, expected [images, {IMAGE_VALUES}] "
                             f"({IMAGE_VALUES} = 3 x 32 x 32 values per image)")
    if isinstance(labels, list):
        wrong = next((i for i, label in enumerate(labels) if type(label) is not int), None)
        if wrong is not None:
            raise CifarDataError(f"{path}: label {labels[wrong]!r} at position {wrong} is not an integer")
        labels = np.array(labels, dtype=np.int64)
    elif not (isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu"):
        raise CifarDataError(f"{path}: 'labels' is a {type(labels).__name__}, expected a list of integers")
    if len(labels) != len(data):
        raise CifarDataError(f"{path}: {len(data)} images but {len(labels)} labels")
    outside = np.flatnonzero((labels < 0) | (labels > 9))
    if outside.size:
        raise CifarDataError(f"{path}: label {labels[outside[0]]} at position {outside[0]} is outside 0..9 (the 10 "
                             f"classes); {outside.size} of the {len(labels)} labels are out of range")
    if len(data) != images_per_file:
        raise CifarDataError(f"{path}: holds {len(data)} images, but {META_FILE} says every batch file holds "
                             f"{images_per_file} (num_cases_per_batch); a file of another length would shift the "
                             f"image ranges of the files after it (cut short, or from another data set?)")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def data_root(root):
    """The folder that holds cifar-10-batches-py: `root`, or its parent when `root` is that folder."""
    if os.path.basename(os.path.normpath(root)) == CIFAR_FOLDER and not os.path.isdir(os.path.join(root, CIFAR_FOLDER)):
        return os.path.dirname(os.path.normpath(root)) or "."
    return root


def _checked_folder(root):
    """root/cifar-10-batches-py if it holds every file of the layout; CifarMissingError if the folder does not exist,
    CifarDataError if it is incomplete."""
    folder = os.path.join(root, CIFAR_FOLDER)
    if not os.path.isdir(folder):
        raise CifarMissingError(f"no CIFAR-10 in {os.path.abspath(folder)!r}; {LAYOUT_HELP}")
    missing = [name for name in LAYOUT_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise CifarDataError(f"{os.path.abspath(folder)!r} lacks {', '.join(missing)}: complete it, or delete the "
                             f"folder to download CIFAR-10 again; {LAYOUT_HELP}")
    return folder


def cifar10_provenance(root):
    """Which CIFAR-10 files a run read, by checksum, without loading them: the saved .json's `data` (files, digest,
    official, source; docs/outputs.md). CifarDataError if the layout is absent or incomplete."""
    folder = _checked_folder(data_root(root))
    files = {}
    for name in LAYOUT_FILES:
        sha256, md5 = hashlib.sha256(), hashlib.md5()
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha256.update(block)
                md5.update(block)
        files[name] = {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}
    from torchvision.datasets import CIFAR10  # the official MD5s, as torchvision publishes them
    published = dict(CIFAR10.train_list + CIFAR10.test_list + [(CIFAR10.meta["filename"], CIFAR10.meta["md5"])])
    differ = [name for name in LAYOUT_FILES if files[name]["md5"] != published.get(name)]
    digest = hashlib.sha256("".join(f"{name} {files[name]['sha256']}\n" for name in LAYOUT_FILES).encode()).hexdigest()
    source = ("the official release (every MD5 matches torchvision's published checksums)" if not differ else
              f"not the official release: MD5 differs from torchvision's published checksum for {', '.join(differ)}")
    return {"files": files, "digest": digest, "official": not differ, "source": source}


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux), for the saved provenance."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _download(root):
    """Download and unpack the official archive into `root` (torchvision's address and MD5). If that fails, remove
    what this call created (the archive, the unpacked folder, new parent folders) and raise CifarMissingError."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive
    new_folders, path = [], os.path.abspath(root)
    while not os.path.exists(path):
        new_folders.append(path)  # innermost first
        path = os.path.dirname(path)
    ours = [path for path in (os.path.join(root, CIFAR10.filename), os.path.join(root, CIFAR_FOLDER))
            if not os.path.exists(path)]
    try:
        download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except BaseException as error:
        for path in ours:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.remove(path)  # the archive, whole or in part
        for path in new_folders:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only if empty
        if not isinstance(error, Exception):  # Ctrl-C: stop as asked
            raise
        folder = os.path.abspath(os.path.join(root, CIFAR_FOLDER))
        raise CifarMissingError(f"no CIFAR-10 in {folder!r} and the download failed ({type(error).__name__}: "
                                f"{error}); put the data there: {LAYOUT_HELP}") from None


def load_cifar10(root="data", train=True, download=True):
    """CIFAR-10 training or test images from `root`/cifar-10-batches-py (or `root` itself), downloaded only where
    that folder does not exist and download=True: (images float32 [N, 3, 32, 32] in [0, 1], labels int64 [N]), CPU
    tensors in the order of the batch files (data_batch_1 first), like torchvision."""
    import torch
    root = data_root(root)
    if not os.path.isdir(os.path.join(root, CIFAR_FOLDER)):
        if not download:
            raise CifarMissingError(f"no CIFAR-10 in {os.path.abspath(os.path.join(root, CIFAR_FOLDER))!r} and "
                                    f"download is off; {LAYOUT_HELP}")
        _download(root)
    folder = _checked_folder(root)
    images_per_file = _images_per_file(folder)
    images, labels = zip(*[_read_batch(os.path.join(folder, name), images_per_file)
                           for name in (TRAIN_FILES if train else TEST_FILES)])
    return torch.from_numpy(np.concatenate(images)).float().div_(255.0), torch.from_numpy(np.concatenate(labels))


def ensemble_splits(train_images, train_labels, test_images, test_labels, n_train, n_fit,
                    eval_split="test", n_eval=None):
    """The disjoint image sets of the ensemble experiment, {name: (images, labels)}; ValueError if too few. train:
    training images [0, n_train); fit: [n_train, n_train + n_fit), the images pi is fitted on (n_fit = h * max(num_g));
    eval: the first n_eval (None: all) of the official test split ('test') or of the training images after the fit
    images ('heldout'). Unlike the paper's ranges (B7), none of them moves with num_g."""
    if n_train + n_fit > len(train_images):
        raise ValueError(f"{n_train} training + {n_fit} pi-fitting images need {n_train + n_fit} "
                         f"training-split images, the data have {len(train_images)}")
    if eval_split == "test":
        eval_images, eval_labels = test_images, test_labels
    elif eval_split == "heldout":
        eval_images, eval_labels = train_images[n_train + n_fit:], train_labels[n_train + n_fit:]
    else:
        raise ValueError(f"eval_split must be 'test' or 'heldout', got {eval_split!r}")
    if len(eval_images) == 0 or (n_eval is not None and n_eval > len(eval_images)):
        raise ValueError(f"asked for {n_eval} evaluation images, the {eval_split!r} split has {len(eval_images)}")
    return {"train": (train_images[:n_train], train_labels[:n_train]),
            "fit": (train_images[n_train:n_train + n_fit], train_labels[n_train:n_train + n_fit]),
            "eval": (eval_images[:n_eval], eval_labels[:n_eval])}  # n_eval None: all


# The notebooks and file names of the CIFAR-10 figures and trained models, written once. A name is relative to the
# output folder, without extension (save_figure and weights.save_cnn add them). The paper's names are kept.
NOTEBOOKS = {"Fig. 10": "ensemble_CIFAR.ipynb", "Fig. 11": "adversarial_CIFAR.ipynb"}  # the notebook of each figure
NUMERICS_SUFFIX = {"paper": "", "exact": "_exact"}  # the group action's numerics (symmetry.NUMERICS)
FIT_SIZE = "ensemble/fit_size_generalisation"       # Fig. 10's fit-size experiment (beyond the paper)
WEIGHTS = "ensemble/weights"                        # the trained CNNs of both notebooks (weights.py)


def fig10(numerics):
    """Fig. 10's heat maps in one numerics."""
    return "ensemble/cnn_cifar_leakyrelu2_main_acc" + NUMERICS_SUFFIX[numerics]


def fig11(kind, hidden, num_g, group_scale, numerics="paper"):
    """Fig. 11: kind "FGSM" or "PGD" (the paper's protocol) or "robustness" (the standard evaluation). A quick run's
    settings show in its names (g5 for g200); a str passes through, so "*" makes the pattern the report globs."""
    scale = group_scale if isinstance(group_scale, str) else f"{group_scale:g}"
    return f"ensemble/cnn_cifar_leakyrelu_{kind}_h{hidden}_g{num_g}_eps{scale}" + NUMERICS_SUFFIX[numerics]


def weights_name(figure, seed, protocol=None):
    """The trained CNN of a seed, in its figure's folder: figure "Fig. 10", or "Fig. 11" with its protocol ('paper',
    'corrected')."""
    folder = {"Fig. 10": "fig10", "Fig. 11": "fig11"}[figure]
    return f"{WEIGHTS}/{folder}/" + (f"{protocol}_" if protocol else "") + f"seed{int(seed)}"
