"""CIFAR-10 data, the paper's small CNN, its training, and its frozen features.

Shared by the two CIFAR-10 notebooks (ensemble_CIFAR.ipynb, Fig. 10; adversarial_CIFAR.ipynb,
Fig. 11). The CNN's hidden layer is the group-action layer of symmetry.py; the attacks are in
attacks.py.

Contents, top to bottom:
  data        CifarDataError, load_cifar10, cifar10_source, ensemble_splits
  model       Shift, ChannelsLast, CifarCNN, make_cnn
  training    train_model, train_models (resolve_device comes from figure_driver.py)
  features    compute_features
  processes   worker_count, keep_freed_memory, parallel_map (several trainings or evaluations at once)
"""
import functools
import os
import pickle

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from figure_driver import progress_bar, resolve_device  # noqa: F401 (resolve_device: used by the notebooks too)
from symmetry import GroupAction

CIFAR_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
LAYOUT_HELP = (f"expected {CIFAR_FOLDER}/ holding data_batch_1 ... data_batch_5, test_batch and "
               "batches.meta (the official python pickle release)")

# ----------------------------------------------------------------------------------------------
# Data

class CifarDataError(Exception):
    """CIFAR-10 is missing, unreadable or corrupted; the message is one line that says where."""


_source_cache = {}  # folder -> "official" | "unverified"


def _layout_present(folder):
    return all(os.path.isfile(os.path.join(folder, name)) for name in TRAIN_FILES + TEST_FILES)


def _read_batch(path):
    """One pickle batch file -> (uint8 [n, 3, 32, 32], int64 [n]); CifarDataError if corrupted."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as error:  # truncated pickle, wrong keys, wrong sizes ...
        raise CifarDataError(f"cannot read CIFAR-10 batch {path!r} ({type(error).__name__}: {error}); "
                             f"the file is corrupted: delete {os.path.dirname(path)!r} and download "
                             f"again, or rebuild it; {LAYOUT_HELP}") from None
    if len(data) != len(labels) or len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
        raise CifarDataError(f"CIFAR-10 batch {path!r} is corrupted: {len(data)} images, "
                             f"{len(labels)} labels; {LAYOUT_HELP}")
    return data, labels


def _verified_by_torchvision(root, train):
    """True if torchvision reads the folder and its MD5 check passes (the official release).

    A re-encoded copy of CIFAR-10 (e.g. JPEG) fails the MD5 check; that is not an
    error here: the files are then read by this module's own pickle reader.
    """
    folder = os.path.abspath(os.path.join(root, CIFAR_FOLDER))
    if folder not in _source_cache:
        try:
            import torchvision
            torchvision.datasets.CIFAR10(root, train=train, download=False)
            _source_cache[folder] = "official"
        except Exception:
            _source_cache[folder] = "unverified"
    return _source_cache[folder] == "official"


def cifar10_source(root):
    """'official' (torchvision MD5 check passed) or 'unverified' (e.g. the JPEG copy) for a
    folder that holds the layout; CifarDataError if it does not."""
    folder = os.path.join(root, CIFAR_FOLDER)
    if not _layout_present(folder):
        raise CifarDataError(f"no CIFAR-10 in {os.path.abspath(folder)!r}; {LAYOUT_HELP}")
    return "official" if _verified_by_torchvision(root, True) else "unverified"


def load_cifar10(root="data", train=True, download=True):
    """CIFAR-10 training (50,000) or test (10,000) images from `root`/cifar-10-batches-py.

    A folder that already holds the layout is read without any download attempt. Only when the
    layout is absent and download=True does torchvision download it into `root`. Without
    network (or with download=False) and without data, raises CifarDataError naming the folder.

    Returns (images float32 [N, 3, 32, 32] in [0, 1], labels int64 [N]) as CPU tensors, in the
    order of the batch files (data_batch_1 first), like torchvision.
    """
    folder = os.path.join(root, CIFAR_FOLDER)
    if not _layout_present(folder):
        if not download:
            raise CifarDataError(f"no CIFAR-10 in {os.path.abspath(folder)!r} and download is off; "
                                 f"{LAYOUT_HELP}")
        try:
            import torchvision
            os.makedirs(root, exist_ok=True)
            torchvision.datasets.CIFAR10(root, train=train, download=True)
        except Exception as error:
            raise CifarDataError(f"no CIFAR-10 in {os.path.abspath(folder)!r} and the download failed "
                                 f"({type(error).__name__}: {error}); put the data there: "
                                 f"{LAYOUT_HELP}") from None
        if not _layout_present(folder):
            raise CifarDataError(f"download finished but {os.path.abspath(folder)!r} is incomplete; "
                                 f"{LAYOUT_HELP}")
    _verified_by_torchvision(root, train)  # records the data source; never fatal
    parts = [_read_batch(os.path.join(folder, name)) for name in (TRAIN_FILES if train else TEST_FILES)]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels


def ensemble_splits(train_images, train_labels, test_images, test_labels, n_train, n_fit,
                    eval_split="test", n_eval=None):
    """The disjoint image sets of the ensemble experiment, one trained model for every cell.

    train: training images [0, n_train); fit: [n_train, n_train + n_fit), the images pi is
    fitted on (n_fit = h * max(num_g)); eval: the official test split ('test') or the training
    images after the fit images ('heldout'), the first n_eval of them (None: all). The paper
    instead took pi batches from the last h * num_g training images and evaluated on the 1000
    before them, which moves with num_g.

    Returns a dict name -> (images, labels) for 'train', 'fit', 'eval'; ValueError if too few.
    """
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
    stop = len(eval_images) if n_eval is None else n_eval
    return {"train": (train_images[:n_train], train_labels[:n_train]),
            "fit": (train_images[n_train:n_train + n_fit], train_labels[n_train:n_train + n_fit]),
            "eval": (eval_images[:stop], eval_labels[:stop])}


# ----------------------------------------------------------------------------------------------
# Model: the paper's small CNN with a group-action hidden layer

class Shift(nn.Module):
    """x - shift: images in [0, 1] become the paper's x/255 - 0.5 with shift = 0.5."""

    def __init__(self, shift):
        super().__init__()
        self.shift = float(shift)

    def forward(self, x):
        return x - self.shift if self.shift else x

    def extra_repr(self):
        return f"shift={self.shift:g}"


class ChannelsLast(nn.Module):
    """Same values, channels-last memory layout (much faster max-pooling on CPUs)."""

    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


class CifarCNN(nn.Module):
    """The paper's CNN: [x - shift] -> Conv2d(3, 32, 3, same) -> LeakyReLU(0.01) -> MaxPool2d(2)
    (computed as pool, then LeakyReLU: the same function) -> Flatten -> Linear(8192, h) -> GroupAction(h) -> Linear(h, classes) -> [Softmax].

    Parts: `features` (input to the pre-activations H [B, h]), `group_action`, `readout` (the
    paper's U). Input x: float [B, 3, 32, 32] in [0, 1]. forward(x) returns [B, classes] in mode
    'plain' and [num_g * B, classes] (member-major) in an ensemble mode; probabilities if
    softmax_output (the paper's model, defect B1 when trained with cross-entropy) else logits.
    """

    def __init__(self, activation="relu_sqr", hidden=16, num_classes=10, input_shift=0.5,
                 softmax_output=True, num_g=1, eps=1.0, group_seed=0, fit_noise=1e-4, numerics="paper"):
        super().__init__()
        self.softmax_output = bool(softmax_output)
        # Speed, not semantics: the conv block runs in channels-last memory layout, and the pool
        # comes before the LeakyReLU. An increasing function commutes with a max, so
        # LeakyReLU(MaxPool(x)) = MaxPool(LeakyReLU(x)) exactly (values and gradients), on 4x
        # fewer entries. Together about 3x faster training on a CPU; Flatten keeps C, H, W order.
        self.features = nn.Sequential(
            Shift(input_shift),
            ChannelsLast(),
            nn.Conv2d(3, 32, 3, padding="same"),
            nn.MaxPool2d(2),
            nn.LeakyReLU(0.01),
            nn.Flatten(),
            nn.Linear(32 * 16 * 16, hidden),
        )
        self.group_action = GroupAction(hidden, activation, num_g, eps, group_seed, fit_noise, numerics)
        self.readout = nn.Linear(hidden, num_classes)

    def head(self, activations):
        """Readout (and softmax if the model has it) of hidden activations [..., h] -> [..., classes],
        in the activations' dtype (float64 for the members of the 'exact' numerics)."""
        weight, bias = self.readout.weight, self.readout.bias
        out = F.linear(activations, weight.to(activations.dtype), bias.to(activations.dtype))
        return out.softmax(dim=-1) if self.softmax_output else out

    def forward(self, x):
        return self.head(self.group_action(self.features(x)))

    def members(self, x, mode, generator=None):
        """Outputs of every ensemble member.  x: [B, 3, 32, 32] -> [num_g, B, classes]."""
        return self.head(self.group_action.members(self.features(x), mode, generator))


def make_cnn(activation="relu_sqr", hidden=16, num_classes=10, input_shift=0.5, softmax_output=True,
             num_g=1, eps=1.0, seed=0, fit_noise=1e-4, numerics="paper"):
    """The paper's CNN (CifarCNN) with its weights initialised from `seed` (PyTorch's default init).

    activation: hidden activation of the group-action layer, 'relu_sqr' (Fig. 10) or
        'leaky_relu' (LeakyReLU 0.1, Fig. 11). The conv layer always uses LeakyReLU(0.01).
    input_shift: subtracted from the [0, 1] images; 0.5 gives the paper's x/255 - 0.5.
    softmax_output: True is the paper's model (softmax output, trained with cross-entropy on top:
        a double softmax, defect B1); False outputs logits, the usual fix.
    num_g, eps, seed, fit_noise, numerics: the group-action layer's initial group and numerics
        (draw_group() replaces them).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarCNN(activation, hidden, num_classes, input_shift, softmax_output,
                        num_g, eps, seed, fit_noise, numerics)


# ----------------------------------------------------------------------------------------------
# Training

def train_model(model, images, labels, epochs=10, batch_size=32, lr=1e-3, seed=0, shuffle=False,
                device=None, progress=True, threads=None):
    """Adam on F.cross_entropy(model(x), y), in place; the paper's trainer.

    images: float [N, 3, 32, 32] in [0, 1]; labels: int64 [N]. The paper walks the images in
    fixed order (shuffle=False); shuffle=True reshuffles every epoch from `seed`. The group-action
    layer is put in mode 'plain'. With a softmax-output model the loss sees probabilities (B1).

    threads: CPU threads for torch (None: leave torch's setting). At batch 32 one thread is
    nearly as fast as two and does not collapse when other processes share the cores.
    On the CPU, denormal floats (below 1.2e-38) are flushed to zero while training: early in
    training they make the CPU ~10x slower per step, and flushing them changes nothing visible.

    Returns a history dict of per-epoch lists: loss (mean training loss), acc (training accuracy).
    """
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    model.to(device).train()
    model.group_action.set_mode("plain")
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = {"loss": [], "acc": []}
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        _train_epochs(model, images, labels, epochs, batch_size, optimizer, generator, shuffle, progress, history)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    model.eval()
    return history


def _train_epochs(model, images, labels, epochs, batch_size, optimizer, generator, shuffle, progress, history):
    """The epoch loop of train_model; appends to `history`."""
    device, n = images.device, len(images)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device) if shuffle else None
        bar = progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", disable=not progress)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            x, y = images[index], labels[index]
            out = model(x)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (out.detach().argmax(dim=1) == y).sum()
            bar.update(1)
        history["loss"].append(float(loss_sum) / n)
        history["acc"].append(float(correct) / n)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['acc'][-1]:.3f}")
        bar.close()


def _train_and_return(model, images, labels, seed, train_kwargs):
    """train_model in a worker process; returns (trained state_dict, history)."""
    history = train_model(model, images, labels, seed=seed, progress=False, **train_kwargs)
    return model.state_dict(), history


def train_models(models, datasets, seeds, jobs=1, bar=None, **train_kwargs):
    """Train several models, each on its own data, up to `jobs` at once (parallel_map); in place.

    models: [CifarCNN]; datasets: [(images, labels)]; seeds: [int] (train_model's seed: the
    shuffling order, unused when shuffle is False); train_kwargs: the rest of train_model's
    arguments (epochs, batch_size, lr, shuffle, device). bar: advanced by one per trained model.
    Returns the training histories, in the order of `models`.
    """
    if worker_count(jobs, len(models)) <= 1:  # in this process, with train_model's own progress bars
        histories = []
        for model, (images, labels), seed in zip(models, datasets, seeds):
            histories.append(train_model(model, images, labels, seed=seed, **train_kwargs))
            if bar is not None:
                bar.update(1)
        return histories
    calls = [functools.partial(_train_and_return, model, images, labels, seed, train_kwargs)
             for model, (images, labels), seed in zip(models, datasets, seeds)]
    results = parallel_map(calls, jobs, bar)
    for model, (state, _) in zip(models, results):
        model.load_state_dict(state)
        model.eval()
    return [history for _, history in results]


# ----------------------------------------------------------------------------------------------
# Features

@torch.no_grad()
def compute_features(model, images, batch_size=2000, device=None):
    """The frozen pre-activations H = model.features(x).  images [N, 3, 32, 32] -> [N, h] on `device`."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    return torch.cat([model.features(images[i:i + batch_size].to(device))
                      for i in range(0, len(images), batch_size)])


# ----------------------------------------------------------------------------------------------
# Processes
#
# Training this CNN at batch 32 is a long loop of small tensor operations: one process per core,
# each with one torch thread, is faster than one process with several threads, and does not
# collapse when another program uses a core.

def worker_count(jobs, tasks):
    """How many worker processes parallel_map uses: jobs (0 = one per CPU core), at most one per
    task; 1 means "in this process"."""
    jobs = int(jobs) if jobs else (os.cpu_count() or 1)
    return max(1, min(jobs, tasks))


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for the next allocation (no-op elsewhere).

    Evaluating ensembles and attacks allocates and frees many tensors of a few MB. By default
    glibc returns each one to the system and the next allocation faults its pages in again:
    measured, a third of the ensemble grid's time was spent in the kernel this way. Keeping the
    memory (the largest mmap threshold glibc allows, no trimming) removes that; the process
    then holds on to its peak memory.
    """
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    return all([libc.mallopt(M_MMAP_THRESHOLD, 32 * 2 ** 20), libc.mallopt(M_TRIM_THRESHOLD, 2 ** 30),
                libc.mallopt(M_TOP_PAD, 64 * 2 ** 20)])


def _setup_worker():
    """One torch thread per worker process (several processes share the cores), freed memory kept."""
    torch.set_num_threads(1)
    keep_freed_memory()


def _indexed_call(item):
    index, call = item
    return index, call()


def parallel_map(calls, jobs=1, bar=None):
    """[call() for call in calls], in up to `jobs` worker processes (0: one per CPU core).

    calls: picklable callables without arguments, e.g. functools.partial(train_model, model,
    images, labels), whose functions are importable (defined at the top level of a module).
    Workers are spawned (safe after torch has started threads, as in a notebook) and run one
    torch thread each; tensors travel through shared memory. With one worker or one call
    everything runs in this process. Every process involved keeps its freed memory
    (keep_freed_memory). bar: a progress bar advanced by one per finished call.
    An error or an interrupt terminates the workers at once. Returns the results in order.
    """
    calls = list(calls)
    workers = worker_count(jobs, len(calls))
    results = [None] * len(calls)
    keep_freed_memory()  # in this process too (the in-process path, and the workers' parent)
    if workers <= 1:
        for index, call in enumerate(calls):
            results[index] = call()
            if bar is not None:
                bar.update(1)
        return results
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_setup_worker)
    try:
        for index, result in pool.imap_unordered(_indexed_call, enumerate(calls)):
            results[index] = result
            if bar is not None:
                bar.update(1)
        pool.close()
    except BaseException:  # an error in a worker, or Ctrl-C: stop the others now
        pool.terminate()
        raise
    finally:
        pool.join()
    return results
