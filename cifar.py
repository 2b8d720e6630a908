"""What the two CIFAR-10 notebooks share (ensemble_CIFAR.ipynb, Fig. 10; adversarial_CIFAR.ipynb, Fig. 11).

The paper moves a trained network along a nonlinear, data-dependent symmetry,
(U, V) -> (U pi(g, H), g V) with pi(g, H) = sigma(H) sigma(gH)^+, and uses the moved copies as
an ensemble. Here the hidden layer of a small CNN is wrapped in a GroupAction layer that does this.

Conventions: batches are row-major, as in the paper's notebook. A batch of hidden pre-activations
is H [B, h]; "g acting on H" is H @ g, and the fitted pi is the h x h matrix with
sigma(H_n g_n) @ pi_n = sigma(H_n) on the stored batch H_n (the transpose of the paper's formula).

Contents, top to bottom:
  data            CifarDataError, load_cifar10, cifar10_source, ensemble_splits
  model           relu_sqr, GroupAction, CifarCNN, make_cnn
  training        train_model (resolve_device comes from models.py)
  ensembles       compute_features, fit_group_action, ensemble_probabilities, ensemble_accuracy,
                  evaluate_ensemble, evaluate_grid, plot_ensemble_heatmaps
  spherical       to_spherical, from_spherical, spherical_frame, r_matrix, invertible_action
  attacks         fgsm, pgd, the 'paper' and 'corrected' protocols, adversarial_sweep,
                  run_adversarial_protocol, plot_adversarial (Fig. 11)
"""
import os
import pickle

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import progress_bar, resolve_device  # noqa: F401 (resolve_device: used by the notebooks too)

CIFAR_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
LAYOUT_HELP = (f"expected {CIFAR_FOLDER}/ holding data_batch_1 ... data_batch_5, test_batch and "
               "batches.meta (the official python pickle release)")

# Ensemble kinds the paper compares (Fig. 10 panel order), and the layer's plain mode.
ENSEMBLE_MODES = ("group", "perm_interp", "g_inverse", "random", "shuffle")
MODE_TITLES = {"group": "group", "perm_interp": "interpolated permute", "g_inverse": r"$g^{-1}$",
               "random": "random", "shuffle": "shuffle"}
MODES = ("plain",) + ENSEMBLE_MODES


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

    The JPEG re-encoding of CIFAR-10 (../shared/data) fails the MD5 check; that is not an
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

def relu_sqr(x):
    """The paper's hidden activation: LeakyReLU_0.1(x)^2 + 0.01 x (non-monotone on (-1, 0))."""
    y = F.leaky_relu(x, 0.1)
    return torch.addcmul(0.01 * x, y, y)  # one pass fewer than y * y + 0.01 * x


def leaky_relu(x):
    """LeakyReLU with slope 0.1: the hidden activation of the adversarial notebook (Fig. 11)."""
    return F.leaky_relu(x, 0.1)


ACTIVATIONS = {"relu_sqr": relu_sqr, "leaky_relu": leaky_relu}


def _nan_where_nonfinite(function, A, B=None):
    """function(A[n]) or function(A[n], B[n]) on the members n whose A[n] is finite; NaN elsewhere.

    LAPACK routines (lstsq, pinv) fail or hang on inf/NaN input; at eps = 20 some g = expm(eps T)
    overflow float32 (paper defect B9), and those members must show up as NaN, not crash.
    A: [num_g, k, h], B: [num_g, k, c] or None -> [num_g, h, c] (c = k when B is None).
    """
    args = (A,) if B is None else (A, B)
    finite = torch.isfinite(A).flatten(1).all(dim=1)
    if bool(finite.all()):
        return function(*args)
    columns = A.shape[1] if B is None else B.shape[-1]
    out = A.new_full((A.shape[0], A.shape[-1], columns), float("nan"))
    if bool(finite.any()):
        out[finite] = function(*(a[finite] for a in args))
    return out


class GroupAction(nn.Module):
    """Hidden activation sigma wrapped in the nonlinear group action (the paper's GroupActivation).

    In mode 'plain' it is just sigma: [B, h] -> [B, h]. In an ensemble mode it returns the hidden
    activations of num_g moved networks, flattened to [num_g * B, h] (member-major), so that the
    next nn.Linear (the paper's U) maps every member. Each member n computes

        sigma(H @ lower_n) @ upper_n

    with (lower_n, upper_n) depending on the mode (paper_notes §1.3, B10):
      'group'        g_n = expm(eps T_n), pi_n: the nonlinear action, fitted by fit()
      'g_inverse'    g_n, pinv(g_n): the linear-equivariance formula (exact only for linear sigma)
      'perm_interp'  q = (I + eps/2 (I + P))/(1 + eps) with a fresh random permutation P, pinv(q)
      'random'       g_n, I + eps M with fresh M ~ U[0, 1)^{h x h} (not zero-mean, as in the paper)
      'shuffle'      g_n, pi of another member with its rows permuted (one permutation of the
                     members and one of the rows; the paper applies two in a row, which is the
                     same distribution)
    T_n = randn(h, h) / sqrt(h), drawn by draw_group() from a seeded generator. The random modes
    draw fresh matrices on every call, like the paper; pass a generator for reproducible draws.

    Args:
        hidden: h, the number of hidden units.
        activation: 'relu_sqr' (Fig. 10) or 'leaky_relu' (Fig. 11), or a callable.
        num_g, eps, seed: passed to draw_group().
        fit_noise: std of the Gaussian noise added to the stored batches before pi is fitted
            (the paper: 1e-4; 0 fits on the exact activations).
    """

    def __init__(self, hidden, activation="relu_sqr", num_g=1, eps=1.0, seed=0, fit_noise=1e-4):
        super().__init__()
        self.hidden = hidden
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.sigma = ACTIVATIONS[activation] if isinstance(activation, str) else activation
        self.fit_noise = fit_noise
        self.mode = "plain"
        self.draw_group(num_g, eps, seed)

    def draw_group(self, num_g, eps, seed=0):
        """New group elements g = expm(eps T), T [num_g, h, h] ~ N(0, 1/h); forgets any fitted pi."""
        self.num_g, self.eps, self.seed = int(num_g), float(eps), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        device = self.T.device if hasattr(self, "T") else torch.device("cpu")
        T = torch.randn(self.num_g, self.hidden, self.hidden, generator=self.generator) / self.hidden ** 0.5
        self.register_buffer("T", T.to(device))
        self.register_buffer("g", torch.linalg.matrix_exp(self.eps * self.T))
        self.register_buffer("pi", None)
        self.register_buffer("fit_batches", None)

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if mode in ("group", "shuffle") and self.pi is None:
            raise RuntimeError(f"mode {mode!r} needs pi: call fit() first")
        self.mode = mode
        return self

    def fit(self, H_batches):
        """Fit pi_n from one stored batch per group element.  H_batches: [num_g, k, h], k <= h.

        pi_n = lstsq(sigma(H_n g_n), sigma(H_n)), so that sigma(H_n g_n) @ pi_n = sigma(H_n) whenever
        sigma(H_n g_n) has full rank (k = h: square and exact). Members whose sigma(H_n g_n) is not
        finite (overflow at large eps) get pi_n = NaN. Returns pi [num_g, h, h].
        """
        if H_batches.shape[0] != self.num_g or H_batches.shape[-1] != self.hidden:
            raise ValueError(f"expected H_batches of shape [{self.num_g}, k, {self.hidden}], got {tuple(H_batches.shape)}")
        if H_batches.shape[1] > self.hidden:
            raise ValueError(f"at most h = {self.hidden} samples per group element (got {H_batches.shape[1]})")
        H = H_batches.to(self.g.device, self.g.dtype)
        if self.fit_noise:
            H = H + self.fit_noise * torch.randn(H.shape, generator=self.generator).to(H.device, H.dtype)
        sigma_gH = self.sigma(H @ self.g)
        pi = _nan_where_nonfinite(lambda A, B: torch.linalg.lstsq(A, B).solution, sigma_gH, self.sigma(H))
        self.register_buffer("fit_batches", H)
        self.register_buffer("pi", pi)
        return pi

    def member_matrices(self, mode=None, generator=None):
        """(lower [num_g, h, h], upper [num_g, h, h]) of every member; see the class docstring."""
        mode = self.mode if mode is None else mode
        generator = self.generator if generator is None else generator
        num_g, h, device, dtype = self.num_g, self.hidden, self.g.device, self.g.dtype
        eye = torch.eye(h, device=device, dtype=dtype).expand(num_g, h, h)
        pinv = lambda A: torch.linalg.pinv(A)
        if mode == "group":
            return self.g, self.pi
        if mode == "g_inverse":
            return self.g, _nan_where_nonfinite(pinv, self.g)
        if mode == "random":
            M = torch.rand(num_g, h, h, generator=generator).to(device, dtype)
            return self.g, eye + self.eps * M
        if mode == "shuffle":
            members = torch.randperm(num_g, generator=generator).to(device)
            rows = torch.randperm(h, generator=generator).to(device)
            return self.g, self.pi[members][:, rows]
        if mode == "perm_interp":
            perms = torch.argsort(torch.rand(num_g, h, generator=generator), dim=1).to(device)
            P = eye[0][perms]  # row-permuted identities, [num_g, h, h]
            q = (eye + 0.5 * self.eps * (eye + P)) / (1 + self.eps)
            return q, pinv(q)
        raise ValueError(f"mode {mode!r} has no member matrices; choose from {', '.join(ENSEMBLE_MODES)}")

    def members(self, H, mode=None, generator=None, matrices=None):
        """Hidden activations of every member.  H: [B, h] -> [num_g, B, h].

        matrices: (lower, upper) from member_matrices(), to reuse one draw across chunks of data.
        """
        lower, upper = self.member_matrices(mode, generator) if matrices is None else matrices
        return self.sigma(H.unsqueeze(0) @ lower) @ upper

    def forward(self, H):
        if self.mode == "plain":
            return self.sigma(H)
        return self.members(H).flatten(0, 1)

    def extra_repr(self):
        return (f"hidden={self.hidden}, activation={self.activation_name}, num_g={self.num_g}, "
                f"eps={self.eps:g}, mode={self.mode!r}, fitted={self.pi is not None}")


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
                 softmax_output=True, num_g=1, eps=1.0, group_seed=0, fit_noise=1e-4):
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
        self.group_action = GroupAction(hidden, activation, num_g, eps, group_seed, fit_noise)
        self.readout = nn.Linear(hidden, num_classes)

    def head(self, activations):
        """Readout (and softmax if the model has it) of hidden activations [..., h] -> [..., classes]."""
        out = self.readout(activations)
        return out.softmax(dim=-1) if self.softmax_output else out

    def forward(self, x):
        return self.head(self.group_action(self.features(x)))

    def members(self, x, mode, generator=None):
        """Outputs of every ensemble member.  x: [B, 3, 32, 32] -> [num_g, B, classes]."""
        return self.head(self.group_action.members(self.features(x), mode, generator))


def make_cnn(activation="relu_sqr", hidden=16, num_classes=10, input_shift=0.5, softmax_output=True,
             num_g=1, eps=1.0, seed=0, fit_noise=1e-4):
    """The paper's CNN (CifarCNN) with its weights initialised from `seed` (PyTorch's default init).

    activation: hidden activation of the group-action layer, 'relu_sqr' (Fig. 10) or
        'leaky_relu' (LeakyReLU 0.1, Fig. 11). The conv layer always uses LeakyReLU(0.01).
    input_shift: subtracted from the [0, 1] images; 0.5 gives the paper's x/255 - 0.5.
    softmax_output: True is the paper's model (softmax output, trained with cross-entropy on top:
        a double softmax, defect B1); False outputs logits, the usual fix.
    num_g, eps, seed, fit_noise: the group-action layer's initial group (draw_group() replaces it).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarCNN(activation, hidden, num_classes, input_shift, softmax_output,
                        num_g, eps, seed, fit_noise)


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


# ----------------------------------------------------------------------------------------------
# Ensembles

@torch.no_grad()
def compute_features(model, images, batch_size=2000, device=None):
    """The frozen pre-activations H = model.features(x).  images [N, 3, 32, 32] -> [N, h] on `device`."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    return torch.cat([model.features(images[i:i + batch_size].to(device))
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def fit_group_action(model, fit_features, num_g, eps, seed=0):
    """Draw num_g group elements for `eps` and fit pi from stored batches of h samples each.

    fit_features: pre-activations [>= num_g * h, h] of images never trained on (compute_features).
    Group element n is fitted on rows [n h, (n + 1) h), like the paper's consecutive batches.
    Returns the model's GroupAction layer (mode unchanged).
    """
    layer = model.group_action
    h = layer.hidden
    if len(fit_features) < num_g * h:
        raise ValueError(f"fitting pi for num_g = {num_g} needs {num_g * h} images, got {len(fit_features)}")
    layer.draw_group(num_g, eps, seed)
    layer.fit(fit_features[: num_g * h].reshape(num_g, h, h))
    return layer


def _member_probabilities(model, features, mode, generator=None, chunk=1024):
    """Yield (start, probabilities [num_g, b, classes]) for consecutive chunks of `features` [B, h].

    One draw of the member matrices serves every chunk. The readout is folded into the upper
    matrix (sigma(H lower) @ (upper W^T) + bias): the same logits with one small matmul less.
    Chunks of ~1000 images keep the intermediates in cache: about twice as fast as one big batch.
    """
    layer = model.group_action
    if mode == "plain":
        lower = upper = torch.eye(layer.hidden, device=features.device, dtype=features.dtype).unsqueeze(0)
    else:
        lower, upper = layer.member_matrices(mode, generator)
    combined = upper @ model.readout.weight.T  # [num_g, h, classes]
    bias = model.readout.bias
    for start in range(0, len(features), chunk):
        logits = torch.baddbmm(bias, layer.sigma(features[start:start + chunk] @ lower), combined)
        shifted = logits - logits.amax(dim=-1, keepdim=True)  # NaN rows stay NaN
        probabilities = shifted.exp_()
        yield start, probabilities.div_(probabilities.sum(dim=-1, keepdim=True))


@torch.no_grad()
def ensemble_probabilities(model, features, mode, generator=None, chunk=1024):
    """Class probabilities of every member on precomputed features, one draw of the member matrices.

    features: [B, h] from compute_features. mode: one of ENSEMBLE_MODES, or 'plain' for the
    original network. Returns [num_g, B, classes] (or [1, B, classes] for 'plain'), float32;
    a member that overflowed has non-finite entries. Works for logit and softmax models alike.
    """
    return torch.cat([p for _, p in _member_probabilities(model, features, mode, generator, chunk)], dim=1)


def _summarize(probabilities):
    """[M, b, C] probabilities -> (votes [b, C], probability sums [b, C], finite members [b]),
    counting only finite members; a member is finite on an image if all its C outputs are.
    A member votes for every class that reaches its maximum (ties have probability zero)."""
    M, b, C = probabilities.shape
    if bool(torch.isfinite(probabilities.sum())):  # one cheap pass in the common, finite case
        top = probabilities == probabilities.amax(dim=-1, keepdim=True)
        votes = top.sum(dim=0, dtype=probabilities.dtype)
        return votes, probabilities.sum(dim=0), torch.full((b,), M, device=probabilities.device)
    finite = torch.isfinite(probabilities).all(dim=-1, keepdim=True)  # [M, b, 1]
    safe = torch.where(finite, probabilities, 0.0)
    top = (safe == safe.amax(dim=-1, keepdim=True)) & finite
    return top.sum(dim=0, dtype=probabilities.dtype), safe.sum(dim=0), finite.sum(dim=(0, 2))


def _accuracies(votes, prob_sum, finite_count, labels, members):
    """Majority-vote and mean-probability accuracy from _summarize's counts (ties -> lowest class)."""
    labels = labels.to(votes.device)
    has_member = finite_count > 0  # an image with no finite member counts as wrong
    vote_right = (votes.argmax(dim=-1) == labels) & has_member
    mean_right = (prob_sum.argmax(dim=-1) == labels) & has_member
    return {"vote_acc": vote_right.float().mean().item(), "mean_acc": mean_right.float().mean().item(),
            "finite_frac": (finite_count.float().sum() / (members * len(labels))).item()}


@torch.no_grad()
def ensemble_accuracy(probabilities, labels):
    """Accuracies of an ensemble.  probabilities: [M, B, C], labels: [B].

    Returns a dict of floats:
      vote_acc   majority vote of the members' argmax (the paper's heat maps; ties -> lowest class)
      mean_acc   argmax of the mean probability (the paper's printed 'Accuracy')
      finite_frac  fraction of (member, image) outputs that are finite
    Non-finite members (overflow) are left out per image, instead of voting for class 0 as in
    the paper; an image with no finite member counts as wrong.
    """
    return _accuracies(*_summarize(probabilities), labels, probabilities.shape[0])


@torch.no_grad()
def evaluate_ensemble(model, features, labels, mode, generator=None, chunk=1024):
    """ensemble_accuracy(ensemble_probabilities(...), labels) without holding [num_g, B, C] in memory."""
    labels = labels.to(features.device)
    votes = prob_sum = finite_count = None
    for start, probabilities in _member_probabilities(model, features, mode, generator, chunk):
        parts = _summarize(probabilities)
        if votes is None:
            votes, prob_sum, finite_count = [], [], []
        votes.append(parts[0]); prob_sum.append(parts[1]); finite_count.append(parts[2])
    members = 1 if mode == "plain" else model.group_action.num_g
    return _accuracies(torch.cat(votes), torch.cat(prob_sum), torch.cat(finite_count), labels, members)


def cell_seed(seed, num_g_index, eps_index):
    """Seed of the group elements and random draws of one heat-map cell (independent per cell)."""
    return int(seed) * 1_000_003 + 1000 * num_g_index + eps_index


@torch.no_grad()
def evaluate_grid(model, eval_features, eval_labels, fit_features, num_g_list, eps_list,
                  modes=ENSEMBLE_MODES, seed=0, progress=True):
    """Every (num_g, eps) cell of Fig. 10 on one trained model.

    eval_features [B, h], eval_labels [B]: held-out images (never trained on, never used for pi).
    fit_features [>= max(num_g) * h, h]: the images pi is fitted on.
    Each cell draws its own group elements (seed from cell_seed), fits pi, and evaluates every
    mode with one draw of the member matrices.

    Returns a dict of numpy arrays (the npz keys):
      num_g [G], eps [E], original_acc, original_mean_acc (scalars), and per mode m:
      vote_acc_m, mean_acc_m, finite_frac_m [E, G] and overflow_m [E, G] (bool: the cell had
      non-finite members or a non-finite pi). Rows follow eps_list, columns num_g_list.
    """
    layer = model.group_action
    original = evaluate_ensemble(model, eval_features, eval_labels, "plain")
    shape = (len(eps_list), len(num_g_list))
    out = {"num_g": np.asarray(num_g_list, dtype=np.int64), "eps": np.asarray(eps_list, dtype=np.float64),
           "original_acc": np.float64(original["vote_acc"]), "original_mean_acc": np.float64(original["mean_acc"])}
    for mode in modes:
        for key in ("vote_acc", "mean_acc", "finite_frac"):
            out[f"{key}_{mode}"] = np.full(shape, np.nan)
        out[f"overflow_{mode}"] = np.zeros(shape, dtype=bool)
    bar = progress_bar(shape[0] * shape[1], "ensemble grid", disable=not progress)
    for j, num_g in enumerate(num_g_list):
        for i, eps in enumerate(eps_list):
            fit_group_action(model, fit_features, num_g, eps, seed=cell_seed(seed, j, i))
            pi_finite = bool(torch.isfinite(layer.pi).all())
            for mode in modes:
                generator = torch.Generator().manual_seed(cell_seed(seed, j, i) + 7919 * (1 + MODES.index(mode)))
                result = evaluate_ensemble(model, eval_features, eval_labels, mode, generator)
                out[f"vote_acc_{mode}"][i, j] = result["vote_acc"]
                out[f"mean_acc_{mode}"][i, j] = result["mean_acc"]
                out[f"finite_frac_{mode}"][i, j] = result["finite_frac"]
                uses_pi = mode in ("group", "shuffle")
                out[f"overflow_{mode}"][i, j] = result["finite_frac"] < 1.0 or (uses_pi and not pi_finite)
            bar.update(1)
    bar.close()
    layer.set_mode("plain")
    return out


def plot_ensemble_heatmaps(grid, modes=ENSEMBLE_MODES, key="vote_acc", original_key="original_acc"):
    """Fig. 10: one heat map per mode of (ensemble accuracy - original accuracy).

    x = num_g, y = eps (rows in the order of grid['eps']); shared symmetric colour scale
    (coolwarm_r) and colour bar; each cell annotated to 3 significant digits; a cell with
    overflowing members is marked with a '*' after its value. Returns the figure.
    """
    import matplotlib.pyplot as plt
    num_g, eps = grid["num_g"], grid["eps"]
    diffs = {m: grid[f"{key}_{m}"] - float(grid[original_key]) for m in modes}
    vmax = max(float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 0.0 for d in diffs.values()) or 1e-3
    fig, axes = plt.subplots(1, len(modes), figsize=(3.6 * len(modes), 6), squeeze=False)
    image = None
    for ax, mode in zip(axes[0], modes):
        diff = diffs[mode]
        image = ax.imshow(diff, cmap="coolwarm_r", vmin=-vmax, vmax=vmax)
        ax.set_xticks(np.arange(len(num_g)), [str(n) for n in num_g], rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(np.arange(len(eps)), [f"{e:g}" for e in eps])
        ax.set_xlabel("# of transformed models (num_g)", fontsize=12)
        ax.set_ylabel(r"$\epsilon$", fontsize=14)
        ax.set_title(f"accuracy ({MODE_TITLES[mode]} - original)")
        overflow = grid.get(f"overflow_{mode}", np.zeros_like(diff, dtype=bool))
        for i in range(len(eps)):  # row = eps index, column = num_g index
            for j in range(len(num_g)):
                text = "nan" if not np.isfinite(diff[i, j]) else f"{diff[i, j]:.3g}"
                ax.text(j, i, text + ("*" if overflow[i, j] else ""), ha="center", va="center",
                        color="w" if abs(np.nan_to_num(diff[i, j])) > 0.5 * vmax else "k", fontsize=6)
    fig.tight_layout()
    fig.subplots_adjust(right=0.91)
    colorbar_axes = fig.add_axes([0.93, 0.18, 0.01, 0.6])
    fig.colorbar(image, cax=colorbar_axes)
    if any(grid.get(f"overflow_{m}", np.zeros(1, bool)).any() for m in modes):
        fig.text(0.5, 0.02, "* cell with overflowing (non-finite) members; they are left out of the vote",
                 ha="center", fontsize=9)
    return fig


# ----------------------------------------------------------------------------------------------
# Spherical coordinates and the invertible single-sample action (paper_notes §6)
#
# z = r (cos a1, sin a1 cos a2, ..., sin a1 ... sin a_{n-2} cos a_{n-1}, sin a1 ... sin a_{n-1}),
# a1 ... a_{n-2} in [0, pi], a_{n-1} in (-pi, pi]. The paper's version takes every angle from
# arccos, which loses the sign of the last entry, and divides by products of sines, which is NaN
# on axis vectors; atan2 of tail norms has neither problem. All functions accept leading batch
# dimensions; use float64 for tight round trips.

def to_spherical(z):
    """z [..., n] (n >= 2) -> (r [...], angles [..., n - 1])."""
    if z.shape[-1] < 2:
        raise ValueError("spherical coordinates need n >= 2 entries")
    squares = z.square()
    # tail[..., k] = |z[..., k + 1:]|
    tail = squares.flip(-1).cumsum(-1).flip(-1)[..., 1:].sqrt()
    r = squares.sum(-1).sqrt()
    angles = torch.atan2(tail[..., :-1], z[..., :-2])
    last = torch.atan2(z[..., -1], z[..., -2]).unsqueeze(-1)
    return r, torch.cat([angles, last], dim=-1)


def from_spherical(r, angles):
    """(r [...], angles [..., n - 1]) -> z [..., n]; the inverse of to_spherical."""
    ones = torch.ones_like(angles[..., :1])
    sin_products = torch.cat([ones, torch.cumprod(angles.sin(), dim=-1)], dim=-1)  # prod_{j<k} sin a_j
    cosines = torch.cat([angles.cos(), ones], dim=-1)
    return r.unsqueeze(-1) * sin_products * cosines


def spherical_frame(angles):
    """The orthonormal frame O [..., n, n] (det +1) of spherical coordinates at `angles` [..., n-1].

    Column 1 is the radial unit vector, column k + 1 the unit vector along d z / d a_k. Built as
    the product of plane rotations G_{n-1}(a_{n-1}) ... G_1(a_1) (G_k rotates e_k towards
    e_{k+1}), which is defined and smooth for every angle, axis vectors included.
    """
    n = angles.shape[-1] + 1
    O = torch.eye(n, dtype=angles.dtype, device=angles.device).expand(*angles.shape[:-1], n, n).clone()
    for k in range(n - 1):
        c, s = angles[..., k, None].cos(), angles[..., k, None].sin()
        row_k, row_next = O[..., k, :].clone(), O[..., k + 1, :].clone()
        O[..., k, :] = c * row_k - s * row_next
        O[..., k + 1, :] = s * row_k + c * row_next
    return O


def r_matrix(z):
    """R = r O for z [..., n]: R R^T = r^2 I, first column = z, det R > 0 (z nonzero)."""
    r, angles = to_spherical(z)
    return r[..., None, None] * spherical_frame(angles)


def invertible_action(sigma_h, sigma_gh):
    """pi(g, h) = R(sigma(h)) R(sigma(gh))^{-1}, an invertible (conformal) h x h matrix.

    sigma_h, sigma_gh: [..., n], nonzero. It satisfies pi @ sigma_gh = sigma_h, replacing the
    rank-one sigma(h) sigma(gh)^+ of a single sample by a genuine GL(n) element. R^{-1} = O^T / r.
    """
    r, angles = to_spherical(sigma_gh)
    R_inverse = spherical_frame(angles).transpose(-1, -2) / r[..., None, None]
    return r_matrix(sigma_h) @ R_inverse


# ---- adversarial attacks (owned by the adversarial helper) ----
#
# Fig. 11: accuracy of the single model and of its symmetry ensembles on adversarial images.
# The attacks are computed on the single original model (group-action layer in mode 'plain') and
# the same adversarial images are then given to every ensemble: a transfer attack (paper_notes
# B5), as in the paper. Two protocols (ADVERSARIAL_PROTOCOLS):
#   'paper'      the paper's procedure, defects included (B1-B4): images x - 0.5 in [-0.5, 0.5]
#                but attacks clipped to [0, 1], each image attacked twice, softmax-output model
#                trained and attacked with cross-entropy on the probabilities, evaluation on 1000
#                held-out training images.
#   'corrected'  images in [0, 1] and the model subtracts 0.5 as its first operation (so clipping
#                to [0, 1] is clipping to the true pixel range), one attack per image, logits
#                for training and attack, evaluation on the official test split.
# Both are seeded, train one model and fit one group, then sweep every attack strength (the
# paper retrained per strength, B8).

ADVERSARIAL_PROTOCOLS = ("paper", "corrected")
ATTACK_METHODS = ("FGSM", "PGD")
ATTACK_STRENGTHS = {"FGSM": (0.0, 0.003, 0.006, 0.009, 0.012),  # FGSM eps
                    "PGD": (0, 1, 2, 3)}                          # PGD iterations
ATTACK_AXIS_LABELS = {"FGSM": "FGSM epsilon", "PGD": "PGD iterations"}
PLOTTED_MODELS = ("original", "group", "g_inverse", "perm_interp")  # Fig. 11's four curves
MODEL_LABELS = {"original": "original", "group": "group", "g_inverse": r"$g^{-1}$",
                "perm_interp": "perm_interp", "random": "random", "shuffle": "shuffle"}


def fgsm(model, x, y, eps, clip=(0.0, 1.0), loss_fn=F.cross_entropy):
    """Fast gradient sign method (Goodfellow et al. 2015): one untargeted L-inf step.

        x_adv = clamp(x + eps * sign(d loss(model(x), y) / dx), clip[0], clip[1])

    x: [B, 3, 32, 32] images, y: [B] labels; returns x_adv [B, 3, 32, 32], detached.
    Defaults (those of advertorch's GradientSignAttack, which the paper used): clip range [0, 1]
    and loss = cross-entropy (batch mean) of the model's outputs read as logits. eps has no
    default; the paper sweeps eps in {0, 0.003, 0.006, 0.009, 0.012}. Only the sign of the
    gradient is used, so the loss's reduction (mean or sum) does not matter.
    """
    x = x.detach().clone().requires_grad_(True)
    loss = loss_fn(model(x), y)
    grad, = torch.autograd.grad(loss, x)
    return torch.clamp(x.detach() + eps * grad.sign(), clip[0], clip[1])


def pgd(model, x, y, eps=0.3, step=0.01, iterations=40, random_start=True, clip=(0.0, 1.0),
        loss_fn=F.cross_entropy, generator=None):
    """Projected gradient descent (Madry et al. 2018), untargeted, in the L-inf ball of radius eps.

        x_0 = clamp(x + U(-eps, eps), clip)          (x_0 = x without random start)
        x_{t+1} = clamp(x + clamp(x_t + step * sign(grad_t) - x, -eps, eps), clip)

    x: [B, 3, 32, 32] images, y: [B] labels; returns x_adv [B, 3, 32, 32], detached.
    Defaults are those of advertorch's PGDAttack, which the paper used: eps = 0.3, step
    (eps_iter) = 0.01, iterations (nb_iter) = 40, random_start (rand_init) = True, clip range
    [0, 1], loss = cross-entropy (batch mean) of the model's outputs read as logits. The paper
    sweeps iterations in {0, 1, 2, 3}. generator: torch.Generator (on x's device) for the random
    start; None uses torch's global one, as advertorch and torchattacks do.
    """
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        x_adv = torch.clamp(x + noise, clip[0], clip[1])
    for _ in range(iterations):
        x_adv.requires_grad_(True)
        loss = loss_fn(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        delta = torch.clamp(x_adv - x, -eps, eps)
        x_adv = torch.clamp(x + delta, clip[0], clip[1])
    return x_adv.detach()


def check_protocol(protocol):
    if protocol not in ADVERSARIAL_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(ADVERSARIAL_PROTOCOLS)}")
    return protocol


def protocol_inputs(images, protocol):
    """What the protocol's model is fed: images [N, 3, 32, 32] in [0, 1] -> same shape.

    'paper': x - 0.5, the paper's data range [-0.5, 0.5] (its model has no shift).
    'corrected': x unchanged (its model subtracts 0.5 itself: make_cnn(input_shift=0.5)).
    """
    return images - 0.5 if check_protocol(protocol) == "paper" else images


def make_adversarial_cnn(protocol, hidden=16, num_g=200, eps=10.0, seed=0):
    """The Fig. 11 CNN for a protocol: group-action layer with LeakyReLU(0.1).

    'paper': softmax output (trained and attacked through the double softmax, B1), no input
    shift (it is fed x - 0.5). 'corrected': logit output, input shift 0.5 (it is fed x in [0, 1]).
    The same seed gives the same initial weights for both protocols.
    """
    paper = check_protocol(protocol) == "paper"
    return make_cnn(activation="leaky_relu", hidden=hidden, input_shift=0.0 if paper else 0.5,
                    softmax_output=paper, num_g=num_g, eps=eps, seed=seed)


def adversarial_images(model, x, y, method, strength, protocol, pgd_eps=0.3, pgd_step=0.01,
                       generator=None, batch_size=1000):
    """The protocol's adversarial images for one attack strength, computed on `model` (plain mode).

    x: [N, 3, 32, 32] model inputs (protocol_inputs), y: [N]; returns [N, 3, 32, 32] on x's device.
    strength: FGSM eps, or the number of PGD iterations (radius pgd_eps, step pgd_step, random
    start). Strength 0 returns x itself, unclamped (the paper evaluates strength 0 on clean data).
    Both protocols clip to [0, 1] (advertorch's default) and use cross-entropy of the model's
    outputs, which are probabilities in 'paper' (B1) and logits in 'corrected'.
    'paper' then attacks the attacked images once more and clamps to [0, 1] (B3: the effective
    FGSM step is 2 eps; PGD gets a second random start and ball around the first result).
    """
    check_protocol(protocol)
    if strength == 0:
        return x
    if method == "FGSM":
        attack = lambda images, labels: fgsm(model, images, labels, float(strength))
    elif method == "PGD":
        attack = lambda images, labels: pgd(model, images, labels, eps=pgd_eps, step=pgd_step,
                                            iterations=int(strength), generator=generator)
    else:
        raise ValueError(f"unknown attack {method!r}; choose from {', '.join(ATTACK_METHODS)}")
    model.group_action.set_mode("plain")
    parts = []
    for start in range(0, len(x), batch_size):
        images, labels = x[start:start + batch_size], y[start:start + batch_size]
        adversarial = attack(images, labels)
        if protocol == "paper":
            adversarial = torch.clamp(attack(adversarial, labels), 0.0, 1.0)
        parts.append(adversarial)
    return torch.cat(parts)


def adversarial_sweep(model, x, y, method, strengths, protocol, modes=ENSEMBLE_MODES, seed=0,
                      pgd_eps=0.3, pgd_step=0.01, progress=True):
    """Accuracy of the original model and of every ensemble for each attack strength.

    model: trained, with a fitted group-action layer (fit_group_action). x [N, 3, 32, 32] model
    inputs (protocol_inputs), y [N]. Per strength the CNN trunk runs once on the adversarial
    images (compute_features) and every ensemble member is evaluated on those h features.
    Random draws (PGD start, member matrices of perm_interp/random/shuffle) are seeded from
    `seed`, the method and the strength index.

    Returns a dict of numpy arrays, each [S] (S = len(strengths)):
      strengths; acc_<m> (majority vote; what the paper plots) and mean_acc_<m> (argmax of the
      mean probability; what it prints) for m = 'original' and every mode; linf (largest
      |x_adv - x|) and changed_frac (fraction of pixels changed).
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    out = {"strengths": np.asarray(strengths, dtype=np.float64)}
    for m in ("original",) + tuple(modes):
        out[f"acc_{m}"] = np.zeros(len(strengths))
        out[f"mean_acc_{m}"] = np.zeros(len(strengths))
    out["linf"] = np.zeros(len(strengths))
    out["changed_frac"] = np.zeros(len(strengths))
    method_seed = 1 + ATTACK_METHODS.index(method)
    bar = progress_bar(len(strengths), f"{protocol} {method}", disable=not progress)
    for i, strength in enumerate(strengths):
        run_seed = int(seed) * 1_000_003 + 1000 * method_seed + i
        generator = torch.Generator(device=device).manual_seed(run_seed)
        x_adv = adversarial_images(model, x, y, method, strength, protocol, pgd_eps, pgd_step, generator)
        out["linf"][i] = float((x_adv - x).abs().max()) if len(x) else 0.0
        out["changed_frac"][i] = float((x_adv != x).float().mean()) if len(x) else 0.0
        features = compute_features(model, x_adv)
        for m in ("original",) + tuple(modes):
            mode = "plain" if m == "original" else m
            member_generator = torch.Generator().manual_seed(run_seed + 7919 * (1 + MODES.index(mode)))
            result = ensemble_accuracy(ensemble_probabilities(model, features, mode, member_generator), y)
            out[f"acc_{m}"][i] = result["vote_acc"]
            out[f"mean_acc_{m}"][i] = result["mean_acc"]
        bar.update(1)
    bar.close()
    model.group_action.set_mode("plain")
    return out


def adversarial_splits(train_images, train_labels, test_images, test_labels, protocol, hidden=16,
                       num_g=200, num_eval=1000, train_fraction=0.8):
    """The protocol's training, pi-fitting and evaluation images (all in [0, 1]).

    Training: the first train_fraction of the training set (the paper's trainer holds out 20 %:
    [0, 40000)). pi: the last hidden * num_g training images ([46800, 50000) for h = 16,
    num_g = 200). Evaluation: 'paper', the num_eval training images just before those
    ([45800, 46800), B7); 'corrected', the whole official test split (num_eval is ignored).
    Returns a dict of (images, labels) pairs: train, fit, eval; ValueError if they overlap.
    """
    n = len(train_images)
    n_train, n_fit = int(train_fraction * n), hidden * num_g
    if check_protocol(protocol) == "paper":
        eval_start = n - n_fit - num_eval
        if eval_start < n_train:
            raise ValueError(f"{n} training images are too few: training [0, {n_train}), "
                             f"evaluation {num_eval} and pi {n_fit} images would overlap")
        evaluation = (train_images[eval_start:n - n_fit], train_labels[eval_start:n - n_fit])
    else:
        if n - n_fit < n_train:
            raise ValueError(f"{n} training images are too few for training [0, {n_train}) and pi ({n_fit})")
        evaluation = (test_images, test_labels)
    return {"train": (train_images[:n_train], train_labels[:n_train]),
            "fit": (train_images[n - n_fit:], train_labels[n - n_fit:]),
            "eval": evaluation}


def run_adversarial_protocol(protocol, train_images, train_labels, test_images, test_labels,
                             hidden=16, num_g=200, eps=10.0, epochs=10, batch_size=32, num_eval=1000,
                             strengths=None, pgd_eps=0.3, pgd_step=0.01, seed=0, device=None,
                             progress=True):
    """Fig. 11 for one protocol: train one model, fit one group, sweep every attack strength.

    Images in [0, 1] as load_cifar10 returns them. strengths: {method: list}, default
    ATTACK_STRENGTHS. Returns {'sweeps': {method: adversarial_sweep dict}, 'history': the
    training history, 'clamp_only_acc': accuracy of the original model on the clean evaluation
    images clamped to [0, 1] and nothing else (the part of the paper's drop due to B2),
    'seconds': {'train', 'attack'}, 'num_eval', 'num_train'}.
    """
    import time
    strengths = dict(ATTACK_STRENGTHS if strengths is None else strengths)
    device = resolve_device(device)
    split = adversarial_splits(train_images, train_labels, test_images, test_labels, protocol,
                               hidden, num_g, num_eval)
    model = make_adversarial_cnn(protocol, hidden, num_g, eps, seed)
    started = time.time()
    history = train_model(model, protocol_inputs(split["train"][0], protocol), split["train"][1],
                          epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=progress)
    trained = time.time()
    fit_features = compute_features(model, protocol_inputs(split["fit"][0], protocol))
    fit_group_action(model, fit_features, num_g, eps, seed=seed)
    x_eval = protocol_inputs(split["eval"][0], protocol).to(device)
    y_eval = split["eval"][1].to(device)
    clamped = ensemble_probabilities(model, compute_features(model, x_eval.clamp(0.0, 1.0)), "plain")
    sweeps = {method: adversarial_sweep(model, x_eval, y_eval, method, values, protocol, seed=seed,
                                        pgd_eps=pgd_eps, pgd_step=pgd_step, progress=progress)
              for method, values in strengths.items()}
    return {"sweeps": sweeps, "history": history,
            "clamp_only_acc": ensemble_accuracy(clamped, y_eval)["vote_acc"],
            "seconds": {"train": trained - started, "attack": time.time() - trained},
            "num_train": len(split["train"][1]), "num_eval": len(y_eval)}


def adversarial_figure_data(results, method, modes=ENSEMBLE_MODES):
    """The npz arrays of one Fig. 11 panel pair from {protocol: run_adversarial_protocol result}.

    Keys: strengths [S]; for each protocol p and model m ('original' and every mode):
    acc_<p>_<m> [S] (majority vote), mean_acc_<p>_<m> [S] (mean probability); linf_<p>,
    changed_frac_<p> [S]; train_loss_<p>, train_acc_<p> [epochs]; clamp_only_acc_<p> (scalar).
    """
    data = {}
    for protocol, result in results.items():
        sweep = result["sweeps"][method]
        data["strengths"] = sweep["strengths"]
        for m in ("original",) + tuple(modes):
            data[f"acc_{protocol}_{m}"] = sweep[f"acc_{m}"]
            data[f"mean_acc_{protocol}_{m}"] = sweep[f"mean_acc_{m}"]
        data[f"linf_{protocol}"] = sweep["linf"]
        data[f"changed_frac_{protocol}"] = sweep["changed_frac"]
        data[f"train_loss_{protocol}"] = np.asarray(result["history"]["loss"])
        data[f"train_acc_{protocol}"] = np.asarray(result["history"]["acc"])
        data[f"clamp_only_acc_{protocol}"] = np.float64(result["clamp_only_acc"])
    return data


def plot_adversarial(data, method, protocols=ADVERSARIAL_PROTOCOLS, models=PLOTTED_MODELS):
    """Fig. 11 for one attack: accuracy (majority vote) vs attack strength, one panel per
    protocol side by side, one curve per model. data: adversarial_figure_data(). Returns the figure."""
    import matplotlib.pyplot as plt
    strengths = data["strengths"]
    fig, axes = plt.subplots(1, len(protocols), figsize=(6.4 * len(protocols), 4.8), sharey=True,
                             squeeze=False)
    titles = {"paper": "paper's protocol (defects kept)", "corrected": "corrected protocol"}
    for ax, protocol in zip(axes[0], protocols):
        for m in models:
            ax.plot(strengths, data[f"acc_{protocol}_{m}"], "o-", label=MODEL_LABELS[m], linewidth=2.5)
        ax.set_xlabel(ATTACK_AXIS_LABELS[method], fontsize=16)
        ax.set_xticks(strengths if method == "PGD" else np.linspace(0, strengths.max(), 4))
        ax.tick_params(labelsize=12)
        ax.set_title(titles.get(protocol, protocol), fontsize=14)
        ax.axhline(0.1, color="gray", linestyle=":", linewidth=1)  # chance (10 classes)
        ax.grid(alpha=0.3)
    top = max(float(np.nanmax(data[f"acc_{p}_{m}"])) for p in protocols for m in models)
    axes[0, 0].set_ylim(-0.02, min(1.02, top + 0.05))  # shared by the panels
    axes[0, 0].set_ylabel("Accuracy", fontsize=16)
    axes[0, 0].legend(fontsize=12)
    fig.tight_layout()
    return fig
