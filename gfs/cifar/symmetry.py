"""The paper's nonlinear, data-dependent group action, (U, V) -> (U pi(g, H), g V) with pi(g, H) = sigma(H) sigma(gH)^+:
the GroupAction layer is the CNN's hidden layer (cnn.py); ensembles.py builds the ensembles of moved copies. The
bottom module of the CIFAR code, so the one seed helper, derive_seed, is here.

Conventions: batches are row-major, as in the paper's notebook. A batch of hidden pre-activations is H [B, h]; "g
acting on H" is H @ g, and the fitted pi is the h x h matrix with sigma(H_n g_n) @ pi_n = sigma(H_n) on the stored
batch H_n (the transpose of the paper's formula). The action and the readout after it run in float32 ('paper') or
float64 ('exact'), the CNN below it in float32 (docs/cifar.md, "The two numerics").
"""
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gfs.cifar.thresholds import SYMMETRY_TOLERANCE  # a cell above it is marked "not a symmetry"

# Ensemble kinds the paper compares (Fig. 10 panel order), and the layer's plain mode.
ENSEMBLE_MODES = ("group", "perm_interp", "g_inverse", "random", "shuffle")
MODES = ("plain",) + ENSEMBLE_MODES
# The label map of the paper's figures (Fig. 10, Fig. 11's paper protocol): the original network and the ensembles.
# The robustness suite names its classifiers in robustness.CLASSIFIER_LABELS.
LABELS = {"original": "original", "group": "group", "perm_interp": "interpolated permute",
          "g_inverse": r"$g^{-1}$", "random": "random", "shuffle": "shuffle"}
NUMERICS = {"paper": torch.float32, "exact": torch.float64}
# The notebooks' fit noise per numerics: the paper's 1e-4 in float32; none in float64, so that the
# evaluated ensemble is the one whose symmetry error is measured (with noise, pi is a symmetry of
# the noisy batches only: at group_scale = 10 it is then off by ~0.5 on the clean fitting images).
FIT_NOISE = {"paper": 1e-4, "exact": 0.0}
# Shifted logits are clamped at -80 before exp(): exp(-80) ~ 2e-35 is zero for every purpose here, and float32
# exp() of values below -87 (results below the smallest normal float) is ~100 times slower on CPUs.
EXP_FLOOR = -80.0


def check_choice(value, choices, what):
    """value if it is one of choices, else ValueError naming them; what: the kind of value ("mode", "numerics")."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")
    return value


def derive_seed(seed, *keys):
    """The seed, an int in [0, 2^63), of the random draws named by `keys` (ints, floats or strings, e.g.
    derive_seed(0, "group", 40, 1.0)) in the run with seed `seed`: independent streams for different keys
    (numpy's SeedSequence), the same stream for the same keys whatever else the run draws."""
    words = [int(seed)]
    for key in keys:
        if not isinstance(key, str) and float(key).is_integer() and key >= 0:
            words.append(int(key))  # 10 and 10.0 name the same draw
        else:  # strings and other numbers by a stable hash of their text
            words.append(zlib.crc32(repr(key if isinstance(key, str) else float(key)).encode()))
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def relu_sqr(x):
    """The paper's hidden activation: LeakyReLU_0.1(x)^2 + 0.01 x (non-monotone on (-1, 0))."""
    y = F.leaky_relu(x, 0.1)
    return torch.addcmul(0.01 * x, y, y)  # one pass fewer than y * y + 0.01 * x


def leaky_relu(x):
    """LeakyReLU with slope 0.1: the hidden activation of the adversarial notebook (Fig. 11)."""
    return F.leaky_relu(x, 0.1)


HIDDEN_ACTIVATIONS = {"relu_sqr": relu_sqr, "leaky_relu": leaky_relu}


def _nan_where_nonfinite(function, A, *B):
    """function(A[n]) or function(A[n], B[n]) on the members n whose A[n] is finite; NaN elsewhere: LAPACK (lstsq,
    pinv) fails or hangs on inf/NaN, and at group_scale = 20 some g overflow float32 (B9): such members must show up
    as NaN, not crash.  A: [num_g, k, h], B: [num_g, k, c] or absent -> [num_g, h, c] (c = k when B is absent)."""
    finite = torch.isfinite(A).flatten(1).all(dim=1)
    if bool(finite.all()):
        return function(A, *B)
    columns = B[0].shape[-1] if B else A.shape[1]
    out = A.new_full((A.shape[0], A.shape[-1], columns), float("nan"))
    if bool(finite.any()):
        out[finite] = function(A[finite], *(b[finite] for b in B))
    return out


def fit_pi(sigma, g, H):
    """pi_n = lstsq(sigma(H_n g_n), sigma(H_n)), the paper's fit, in the dtype of g and H: exact whenever
    sigma(H_n g_n) has full rank; NaN where it is not finite (overflow at large group_scale).
    g: [num_g, h, h], H: [num_g, k <= h, h] -> pi [num_g, h, h]."""
    return _nan_where_nonfinite(lambda A, B: torch.linalg.lstsq(A, B).solution, sigma(H @ g), sigma(H))


class GroupAction(nn.Module):
    """Hidden activation sigma wrapped in the nonlinear group action (the paper's GroupActivation).

    In mode 'plain' it is just sigma: [B, h] -> [B, h] (float32, the trained network). In an ensemble mode it returns
    the hidden activations of num_g moved networks, flattened to [num_g * B, h] (member-major, in the numerics' dtype),
    so that the next linear layer (the paper's U) maps every member. Member n computes sigma(H @ lower_n) @ upper_n,
    with (lower_n, upper_n) by mode (B10):
      'group'        g_n = expm(group_scale T_n), pi_n: the nonlinear action, fitted by fit()
      'g_inverse'    g_n, pinv(g_n): the linear-equivariance formula (exact only for linear sigma)
      'perm_interp'  q = (I + group_scale/2 (I + P))/(1 + group_scale) with a fresh random permutation P, pinv(q)
      'random'       g_n, I + group_scale M with fresh M ~ U[0, 1)^{h x h} (not zero-mean, as in the paper)
      'shuffle'      g_n, pi of another member with its rows permuted (one permutation of the members and one of
                     the rows: the same distribution as the paper's two in a row)
    The random modes draw afresh on every call, like the paper; pass a generator to repeat them.

    hidden: h; activation: 'relu_sqr' (Fig. 10), 'leaky_relu' (Fig. 11) or a callable; num_g, group_scale, seed:
    draw_group()'s; fit_noise: std of the Gaussian noise added to the stored batches before pi is fitted (FIT_NOISE);
    numerics: 'paper' (float32) or 'exact' (float64).
    """

    def __init__(self, hidden, activation="relu_sqr", num_g=1, group_scale=1.0, seed=0, fit_noise=FIT_NOISE["paper"],
                 numerics="paper"):
        super().__init__()
        self.hidden = hidden
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.sigma = HIDDEN_ACTIVATIONS[activation] if isinstance(activation, str) else activation
        self.fit_noise = fit_noise
        self.mode = "plain"
        self.numerics = check_choice(numerics, NUMERICS, "numerics")
        self.draw_group(num_g, group_scale, seed)

    @property
    def dtype(self):
        return NUMERICS[self.numerics]

    def draw_group(self, num_g, group_scale, seed=0, numerics=None):
        """New group elements g = expm(group_scale T), T [num_g, h, h] ~ N(0, 1/h) drawn in float32 from a generator
        seeded by `seed` (the same g in both numerics), g in the numerics' dtype; forgets any fitted pi.
        numerics: switch to 'paper' or 'exact' (None: keep)."""
        if numerics is not None:
            self.numerics = check_choice(numerics, NUMERICS, "numerics")
        self.num_g, self.group_scale, self.seed = int(num_g), float(group_scale), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        device = self.T.device if hasattr(self, "T") else torch.device("cpu")
        T = torch.randn(self.num_g, self.hidden, self.hidden, generator=self.generator) / self.hidden ** 0.5
        self.register_buffer("T", T.to(device))
        self.register_buffer("g", torch.linalg.matrix_exp(self.group_scale * self.T.to(self.dtype)))
        self.register_buffer("pi", None)
        self.register_buffer("fit_batches", None)

    def set_mode(self, mode):
        check_choice(mode, MODES, "mode")
        if mode in ("group", "shuffle") and self.pi is None:
            raise RuntimeError(f"mode {mode!r} needs pi: call fit() first")
        self.mode = mode
        return self

    def fit(self, H_batches):
        """pi [num_g, h, h] = fit_pi(sigma, g, H_batches + noise) from one stored batch per group element,
        H_batches [num_g, k <= h, h]; the noise (std fit_noise) is drawn in float32 from the layer's generator, as the
        paper does. The noisy batches are kept as `fit_batches`."""
        if H_batches.shape[0] != self.num_g or H_batches.shape[-1] != self.hidden:
            raise ValueError(f"expected H_batches of shape [{self.num_g}, k, {self.hidden}], got {tuple(H_batches.shape)}")
        if H_batches.shape[1] > self.hidden:
            raise ValueError(f"at most h = {self.hidden} samples per group element (got {H_batches.shape[1]})")
        H = H_batches.to(self.g.device, self.dtype)
        if self.fit_noise:
            H = H + self.fit_noise * torch.randn(H.shape, generator=self.generator).to(H.device, H.dtype)
        self.register_buffer("fit_batches", H)
        self.register_buffer("pi", fit_pi(self.sigma, self.g, H))
        return self.pi

    def member_matrices(self, mode=None, generator=None):
        """(lower [num_g, h, h], upper [num_g, h, h]) of every member, in the numerics' dtype; mode 'plain' gives one
        member with lower = upper = I (the original network)."""
        mode = check_choice(self.mode if mode is None else mode, MODES, "mode")
        generator = self.generator if generator is None else generator
        num_g, h, device, dtype = self.num_g, self.hidden, self.g.device, self.dtype
        eye = torch.eye(h, device=device, dtype=dtype).expand(num_g, h, h)
        if mode == "plain":
            return eye[:1], eye[:1]
        if mode == "group":
            return self.g, self.pi
        if mode == "g_inverse":
            return self.g, _nan_where_nonfinite(torch.linalg.pinv, self.g)
        if mode == "random":
            M = torch.rand(num_g, h, h, generator=generator).to(device, dtype)
            return self.g, eye + self.group_scale * M
        if mode == "shuffle":
            members = torch.randperm(num_g, generator=generator).to(device)
            rows = torch.randperm(h, generator=generator).to(device)
            return self.g, self.pi[members][:, rows]
        if mode == "perm_interp":
            perms = torch.argsort(torch.rand(num_g, h, generator=generator), dim=1).to(device)
            P = eye[0][perms]  # row-permuted identities, [num_g, h, h]
            q = (eye + 0.5 * self.group_scale * (eye + P)) / (1 + self.group_scale)
            return q, torch.linalg.pinv(q)
        raise NotImplementedError(f"mode {mode!r} is in MODES but member_matrices has no branch for it")

    def members(self, H, mode=None, generator=None, matrices=None):
        """Hidden activations of every member.  H: [B, h] -> [num_g, B, h] in the numerics' dtype.
        matrices: (lower, upper) from member_matrices(), to reuse one draw across chunks of data."""
        lower, upper = self.member_matrices(mode, generator) if matrices is None else matrices
        return self.sigma(H.to(lower.dtype).unsqueeze(0) @ lower) @ upper

    def forward(self, H):
        if self.mode == "plain":
            return self.sigma(H)
        return self.members(H).flatten(0, 1)

    def extra_repr(self):
        return (f"hidden={self.hidden}, activation={self.activation_name}, num_g={self.num_g}, "
                f"group_scale={self.group_scale:g}, numerics={self.numerics!r}, mode={self.mode!r}, "
                f"fitted={self.pi is not None}")
