"""The nonlinear, data-dependent group action of the paper and the ensembles built from it.

The paper moves a trained network along a nonlinear, data-dependent symmetry,
(U, V) -> (U pi(g, H), g V) with pi(g, H) = sigma(H) sigma(gH)^+, and uses the moved copies as
an ensemble. The hidden layer of the CNN (cifar.py) is a GroupAction layer that does this.

Conventions: batches are row-major, as in the paper's notebook. A batch of hidden pre-activations
is H [B, h]; "g acting on H" is H @ g, and the fitted pi is the h x h matrix with
sigma(H_n g_n) @ pi_n = sigma(H_n) on the stored batch H_n (the transpose of the paper's formula).

Numerics. The action (g, pi, the member matrices, the hidden layer of the moved networks and the
readout after it) is computed in float32 ('paper', as the paper's notebook) or in float64
('exact'); the CNN below the hidden layer always runs in float32. Both numerics draw the same
group elements and the same fit noise, so they differ only in rounding. At eps = 10 the float32
fit is no longer a symmetry even on the images it was fitted on; symmetry_error() measures this.

This is the bottom module of the CIFAR code (cifar.py builds its CNN from GroupAction), so the
one seed helper, derive_seed, lives here too.

Contents, top to bottom:
  seeds           derive_seed
  group action    relu_sqr, leaky_relu, fit_pi, GroupAction
  ensembles       fit_group_action, fit_batches, symmetry_error, member_logits, ensemble_logits,
                  evaluate_ensemble (the one evaluation path of Figs. 10 and 11), ensemble_accuracy,
                  evaluate_grid, stack_seeds (the Fig. 10 heat maps: ensemble_plots.py)
  spherical       to_spherical, from_spherical, spherical_frame, r_matrix, invertible_action
"""
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Ensemble kinds the paper compares (Fig. 10 panel order), and the layer's plain mode.
ENSEMBLE_MODES = ("group", "perm_interp", "g_inverse", "random", "shuffle")
MODES = ("plain",) + ENSEMBLE_MODES
# The one label map of every plot: the original network, the ensembles, the attack controls.
LABELS = {"original": "original", "group": "group", "perm_interp": "interpolated permute",
          "g_inverse": r"$g^{-1}$", "random": "random", "shuffle": "shuffle",
          "independent": "independent CNN"}
NUMERICS = {"paper": torch.float32, "exact": torch.float64}
# The notebooks' fit noise per numerics: the paper's 1e-4 in float32; none in float64, so that the
# evaluated ensemble is the one whose symmetry error is measured (with noise, pi is a symmetry of
# the noisy batches only: at eps = 10 it is then off by ~0.5 on the clean fitting images).
FIT_NOISE = {"paper": 1e-4, "exact": 0.0}
# A (num_g, eps) cell whose symmetry error exceeds this is marked "not a symmetry".
SYMMETRY_TOLERANCE = 1e-3
# Shifted logits are clamped at -80 before exp(): exp(-80) ~ 2e-35 is zero for every purpose
# here, and float32 exp() of values below -87 (results below the smallest normal float) is ~100
# times slower on CPUs.
EXP_FLOOR = -80.0


def check_numerics(numerics):
    if numerics not in NUMERICS:
        raise ValueError(f"unknown numerics {numerics!r}; choose from {', '.join(NUMERICS)}")
    return numerics


# ----------------------------------------------------------------------------------------------
# Seeds

def derive_seed(seed, *keys):
    """The seed of the random draws named by `keys` in the run with seed `seed`.

    keys: ints, floats or strings, e.g. derive_seed(0, "group", 40, 1.0). Different keys give
    independent streams (numpy's SeedSequence hashing), the same keys the same stream whatever
    else the run draws. Returns an int in [0, 2^63), for torch.Generator().manual_seed().
    """
    words = [int(seed)]
    for key in keys:
        if not isinstance(key, str) and float(key).is_integer() and key >= 0:
            words.append(int(key))  # 10 and 10.0 name the same draw
        else:  # strings and other numbers by a stable hash of their text
            words.append(zlib.crc32(repr(key if isinstance(key, str) else float(key)).encode()))
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------------------------
# The group action

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


def fit_pi(sigma, g, H):
    """pi_n = lstsq(sigma(H_n g_n), sigma(H_n)), the paper's fit, in the dtype of g and H.

    g: [num_g, h, h], H: [num_g, k, h] with k <= h -> pi [num_g, h, h], with
    sigma(H_n g_n) @ pi_n = sigma(H_n) whenever sigma(H_n g_n) has full rank (k = h: square).
    Members whose sigma(H_n g_n) is not finite (overflow at large eps) get pi_n = NaN.
    """
    return _nan_where_nonfinite(lambda A, B: torch.linalg.lstsq(A, B).solution, sigma(H @ g), sigma(H))


class GroupAction(nn.Module):
    """Hidden activation sigma wrapped in the nonlinear group action (the paper's GroupActivation).

    In mode 'plain' it is just sigma: [B, h] -> [B, h] (float32, the trained network). In an
    ensemble mode it returns the hidden activations of num_g moved networks, flattened to
    [num_g * B, h] (member-major, in the numerics' dtype), so that the next linear layer (the
    paper's U) maps every member. Each member n computes

        sigma(H @ lower_n) @ upper_n

    with (lower_n, upper_n) depending on the mode (B10):
      'group'        g_n = expm(eps T_n), pi_n: the nonlinear action, fitted by fit()
      'g_inverse'    g_n, pinv(g_n): the linear-equivariance formula (exact only for linear sigma)
      'perm_interp'  q = (I + eps/2 (I + P))/(1 + eps) with a fresh random permutation P, pinv(q)
      'random'       g_n, I + eps M with fresh M ~ U[0, 1)^{h x h} (not zero-mean, as in the paper)
      'shuffle'      g_n, pi of another member with its rows permuted (one permutation of the
                     members and one of the rows; the paper applies two in a row, which is the
                     same distribution)
    T_n = randn(h, h) / sqrt(h), drawn in float32 by draw_group() from a seeded generator (so
    both numerics get the same group elements). The random modes draw fresh matrices on every
    call, like the paper; pass a generator for reproducible draws.

    Args:
        hidden: h, the number of hidden units.
        activation: 'relu_sqr' (Fig. 10) or 'leaky_relu' (Fig. 11), or a callable.
        num_g, eps, seed: passed to draw_group().
        fit_noise: std of the Gaussian noise added to the stored batches before pi is fitted
            (the paper: 1e-4; 0 fits on the exact activations).
        numerics: 'paper' (float32) or 'exact' (float64) for the action; see the module docstring.
    """

    def __init__(self, hidden, activation="relu_sqr", num_g=1, eps=1.0, seed=0, fit_noise=FIT_NOISE["paper"],
                 numerics="paper"):
        super().__init__()
        self.hidden = hidden
        self.activation_name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        self.sigma = ACTIVATIONS[activation] if isinstance(activation, str) else activation
        self.fit_noise = fit_noise
        self.mode = "plain"
        self.numerics = check_numerics(numerics)
        self.draw_group(num_g, eps, seed)

    @property
    def dtype(self):
        """The dtype of the action: float32 ('paper') or float64 ('exact')."""
        return NUMERICS[self.numerics]

    def draw_group(self, num_g, eps, seed=0, numerics=None):
        """New group elements g = expm(eps T), T [num_g, h, h] ~ N(0, 1/h); forgets any fitted pi.

        numerics: switch to 'paper' or 'exact' (None: keep). T is drawn in float32 either way
        and g computed from it in the numerics' dtype.
        """
        if numerics is not None:
            self.numerics = check_numerics(numerics)
        self.num_g, self.eps, self.seed = int(num_g), float(eps), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        device = self.T.device if hasattr(self, "T") else torch.device("cpu")
        T = torch.randn(self.num_g, self.hidden, self.hidden, generator=self.generator) / self.hidden ** 0.5
        self.register_buffer("T", T.to(device))
        self.register_buffer("g", torch.linalg.matrix_exp(self.eps * self.T.to(self.dtype)))
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
        """Fit pi from one stored batch per group element.  H_batches: [num_g, k, h], k <= h.

        The batches get Gaussian noise of std fit_noise (drawn in float32 from the layer's
        generator, as the paper does) and pi = fit_pi(sigma, g, noisy batches) in the numerics'
        dtype. Returns pi [num_g, h, h]; the noisy batches are kept as `fit_batches`.
        """
        if H_batches.shape[0] != self.num_g or H_batches.shape[-1] != self.hidden:
            raise ValueError(f"expected H_batches of shape [{self.num_g}, k, {self.hidden}], got {tuple(H_batches.shape)}")
        if H_batches.shape[1] > self.hidden:
            raise ValueError(f"at most h = {self.hidden} samples per group element (got {H_batches.shape[1]})")
        H = H_batches.to(self.g.device, self.dtype)
        if self.fit_noise:
            H = H + self.fit_noise * torch.randn(H.shape, generator=self.generator).to(H.device, H.dtype)
        pi = fit_pi(self.sigma, self.g, H)
        self.register_buffer("fit_batches", H)
        self.register_buffer("pi", pi)
        return pi

    def member_matrices(self, mode=None, generator=None):
        """(lower [num_g, h, h], upper [num_g, h, h]) of every member, in the numerics' dtype.

        mode 'plain' gives one member with lower = upper = I (the original network).
        """
        mode = self.mode if mode is None else mode
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
            return self.g, eye + self.eps * M
        if mode == "shuffle":
            members = torch.randperm(num_g, generator=generator).to(device)
            rows = torch.randperm(h, generator=generator).to(device)
            return self.g, self.pi[members][:, rows]
        if mode == "perm_interp":
            perms = torch.argsort(torch.rand(num_g, h, generator=generator), dim=1).to(device)
            P = eye[0][perms]  # row-permuted identities, [num_g, h, h]
            q = (eye + 0.5 * self.eps * (eye + P)) / (1 + self.eps)
            return q, torch.linalg.pinv(q)
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")

    def members(self, H, mode=None, generator=None, matrices=None):
        """Hidden activations of every member.  H: [B, h] -> [num_g, B, h] in the numerics' dtype.

        matrices: (lower, upper) from member_matrices(), to reuse one draw across chunks of data.
        """
        lower, upper = self.member_matrices(mode, generator) if matrices is None else matrices
        return self.sigma(H.to(lower.dtype).unsqueeze(0) @ lower) @ upper

    def forward(self, H):
        if self.mode == "plain":
            return self.sigma(H)
        return self.members(H).flatten(0, 1)

    def extra_repr(self):
        return (f"hidden={self.hidden}, activation={self.activation_name}, num_g={self.num_g}, "
                f"eps={self.eps:g}, numerics={self.numerics!r}, mode={self.mode!r}, "
                f"fitted={self.pi is not None}")


# ----------------------------------------------------------------------------------------------
# Ensembles
#
# A model here is a CifarCNN (cifar.py) or anything with its three parts: `features` (input ->
# pre-activations H [B, h], float32), `group_action` (a GroupAction) and `readout` (nn.Linear(h, C)).

@torch.no_grad()
def fit_group_action(model, fit_features, num_g, eps, seed=0, numerics=None):
    """Draw num_g group elements for `eps` and fit pi from stored batches of h samples each.

    fit_features: pre-activations [>= num_g * h, h] of images never trained on (compute_features).
    Group element n is fitted on rows [n h, (n + 1) h), like the paper's consecutive batches.
    numerics: 'paper' or 'exact' (None: keep the layer's). Returns the model's GroupAction
    layer (mode unchanged).
    """
    layer = model.group_action
    h = layer.hidden
    if len(fit_features) < num_g * h:
        raise ValueError(f"fitting pi for num_g = {num_g} needs {num_g * h} images, got {len(fit_features)}")
    layer.draw_group(num_g, eps, seed, numerics)
    layer.fit(fit_batches(fit_features, num_g, h))
    return layer


def fit_batches(fit_features, num_g, h):
    """The stored batches of fit_group_action: rows [n h, (n + 1) h) for member n.  -> [num_g, h, h]."""
    return fit_features[: num_g * h].reshape(num_g, h, h)


def member_logits(model, features, lower, upper):
    """Logits (readout outputs, before any softmax) of every member.  features [B, h] -> [M, B, C].

    lower, upper: [M, h, h] (GroupAction.member_matrices). Computed in the matrices' dtype, with
    the readout folded into the upper matrix: sigma(H lower) @ (upper W^T) + b, the same logits
    with one small matmul less. Differentiable (the adaptive attacks use it).
    """
    weight = model.readout.weight.to(upper.dtype)
    bias = model.readout.bias.to(upper.dtype)
    hidden = model.group_action.sigma(features.to(lower.dtype) @ lower)
    return hidden @ (upper @ weight.T) + bias


def _relative_gap(moved, original):
    """max over members n of max |moved_n - original_n| / max |original_n|.  [M, k, c] each -> float.

    inf when a member is not finite (an overflowed member is no symmetry)."""
    gap = (moved - original).abs().amax(dim=(1, 2)) / original.abs().amax(dim=(1, 2))
    gap = torch.where(torch.isfinite(moved).flatten(1).all(dim=1), gap, torch.inf)
    return float(gap.max())


@torch.no_grad()
def symmetry_error(model, H_batches, pi=None):
    """How far the moved networks are from the original on the images their pi was fitted on.

    H_batches: [num_g, k, h] clean pre-activations; member n is compared on H_batches[n], the
    images its pi was fitted on. pi: [num_g, h, h] to measure; None (default) fits pi afresh
    without noise (fit_pi) in the layer's numerics, with the layer's group elements g.
    Outputs are computed as the ensemble evaluation computes them (member_logits), in the layer's
    numerics, the original's as well. Returns a dict of floats:
      logits   max over members n of max |moved_n - original_n| / max |original_n|, on the
               readout's logits [k, C] (before any softmax)
      hidden   the same on the hidden activations sigma(H g_n) pi_n vs sigma(H) [k, h]
    Both are inf if a member has non-finite outputs. An exact symmetry gives rounding only
    (~1e-7 in float32, ~1e-15 in float64, times the conditioning of sigma(H g)).
    """
    layer = model.group_action
    H = H_batches.to(layer.g.device, layer.dtype)
    if pi is None:
        pi = fit_pi(layer.sigma, layer.g, H)
    identity = torch.eye(layer.hidden, dtype=layer.dtype, device=H.device).expand_as(pi)
    hidden_moved = layer.sigma(H @ layer.g) @ pi
    logits = lambda lower, upper: torch.stack([member_logits(model, H[n], lower[n:n + 1], upper[n:n + 1])[0]
                                               for n in range(len(H))])
    return {"logits": _relative_gap(logits(layer.g, pi), logits(identity, identity)),
            "hidden": _relative_gap(hidden_moved, layer.sigma(H))}


@torch.no_grad()
def ensemble_logits(model, features, mode, generator=None):
    """Logits of every member on precomputed features, one draw of the member matrices.

    features: [B, h] (cifar.compute_features). mode: one of ENSEMBLE_MODES, or 'plain' for the
    original network. Returns [num_g, B, C] ([1, B, C] for 'plain') in the numerics' dtype; a
    member that overflowed has non-finite entries. softmax(dim=-1) gives the probabilities.
    """
    return member_logits(model, features, *model.group_action.member_matrices(mode, generator))


def _tally(logits):
    """[M, b, C] logits -> (votes [b, C], sum of probabilities [b, C], finite members [b]).

    Only finite members count; a member is finite on an image if all its C logits are. A member
    votes for every class that reaches its maximum (ties have probability zero)."""
    M, b, C = logits.shape
    finite = None
    if not bool(torch.isfinite(logits.sum())):  # one cheap pass in the common, finite case
        finite = torch.isfinite(logits).all(dim=-1, keepdim=True)  # [M, b, 1]
        logits = torch.where(finite, logits, 0.0)
    top = logits.amax(dim=-1, keepdim=True)
    is_top = (logits == top).to(logits.dtype)
    probabilities = (logits - top).clamp_(min=EXP_FLOOR).exp_()
    probabilities /= probabilities.sum(dim=-1, keepdim=True)
    if finite is None:
        return is_top.sum(dim=0), probabilities.sum(dim=0), torch.full((b,), M, device=logits.device)
    return ((is_top * finite).sum(dim=0), (probabilities * finite).sum(dim=0),
            finite.sum(dim=(0, 2)))


def _accuracies(votes, prob_sum, finite_count, labels, members):
    """_tally's counts [B, C], [B, C], [B] -> evaluate_ensemble's dict (ties -> lowest class)."""
    labels = labels.to(votes.device)
    has_member = finite_count > 0  # an image with no finite member counts as wrong
    vote_correct = (votes.argmax(dim=-1) == labels) & has_member
    mean_correct = (prob_sum.argmax(dim=-1) == labels) & has_member
    return {"vote_acc": vote_correct.double().mean().item(), "mean_acc": mean_correct.double().mean().item(),
            "finite_frac": (finite_count.float().sum() / (members * len(labels))).item(),
            "vote_correct": vote_correct.cpu().numpy(), "mean_correct": mean_correct.cpu().numpy()}


@torch.no_grad()
def evaluate_ensemble(model, features, labels, mode, generator=None, chunk=1024):
    """The one evaluation path of Figs. 10 and 11: an ensemble's (or the original's) predictions.

    features: [B, h] (cifar.compute_features), labels: [B]. mode: one of ENSEMBLE_MODES or
    'plain' (the original network). One draw of the member matrices serves every chunk of `chunk`
    images (chunks keep the intermediates in cache).
    Returns a dict:
      vote_acc, mean_acc     accuracy of the majority vote of the members' argmax (the paper's
                             heat maps and Fig. 11 curves; ties -> lowest class) and of the argmax
                             of the mean probability (what the paper printed)
      finite_frac            fraction of (member, image) outputs that are finite
      vote_correct, mean_correct   bool numpy [B]: per image, for paired tests
    Non-finite members (overflow) are left out per image, instead of voting for class 0 as in
    the paper; an image with no finite member counts as wrong.
    """
    lower, upper = model.group_action.member_matrices(mode, generator)
    parts = [_tally(member_logits(model, features[start:start + chunk], lower, upper))
             for start in range(0, len(features), chunk)]
    return _accuracies(*(torch.cat(p) for p in zip(*parts)), labels, len(lower))


@torch.no_grad()
def ensemble_accuracy(logits, labels):
    """evaluate_ensemble's dict for given member logits [M, B, C] and labels [B] (one chunk)."""
    return _accuracies(*_tally(logits), labels, logits.shape[0])


@torch.no_grad()
def fit_and_measure(model, fit_features, num_g, eps, seed, numerics="paper"):
    """Fit the group action of the cell (num_g, eps) on fit_features [>= num_g * h, h] (group elements
    derive_seed(seed, 'group', num_g, eps): the same in both numerics; pi with the layer's fit noise) and
    measure it: symmetry_error()'s dict of a noise-free fit ('logits', 'hidden') plus 'fitted', the logits'
    error of the pi actually used (the same number without fit noise). Returns (layer, error)."""
    layer = fit_group_action(model, fit_features, num_g, eps, derive_seed(seed, "group", num_g, eps), numerics)
    batches = fit_batches(fit_features, num_g, layer.hidden)
    error = symmetry_error(model, batches)
    error["fitted"] = symmetry_error(model, batches, layer.pi)["logits"] if layer.fit_noise else error["logits"]
    return layer, error


def evaluate_modes(model, features, labels, modes, seed, *keys):
    """{mode: evaluate_ensemble(...)} for every mode on shared features [N, h], labels [N]; the member matrices of
    a mode are drawn from derive_seed(seed, 'members', mode, *keys)."""
    return {mode: evaluate_ensemble(model, features, labels, mode,
                                    torch.Generator().manual_seed(derive_seed(seed, "members", mode, *keys)))
            for mode in modes}


@torch.no_grad()
def evaluate_grid(model, eval_features, eval_labels, fit_features, num_g_list, eps_list,
                  modes=ENSEMBLE_MODES, seed=0, numerics="paper", fit_noise=None, bar=None, measure=None):
    """Every (num_g, eps) cell of Fig. 10 on one trained model, in one numerics.

    eval_features [B, h], eval_labels [B]: held-out images (never trained on, never used for pi).
    fit_features [>= max(num_g) * h, h]: the images pi is fitted on.
    Each cell draws its own group elements (derive_seed(seed, 'group', num_g, eps): the same in
    both numerics), fits pi with noise of std fit_noise (None: the layer's), measures the
    symmetry error, and evaluates every mode with one draw of the member matrices. bar: a
    progress bar (tqdm) that is advanced by one per cell, or None. measure: None, or a function
    (model with the cell's fitted group, eval_features) -> {key: float}, saved per cell as
    heldout_<key> [E, G] (agreement.group_agreement).

    Returns a dict of numpy arrays (rows follow eps_list, columns num_g_list):
      num_g [G], eps [E]; original_acc, original_mean_acc (scalars)
      symmetry_error, symmetry_error_hidden [E, G]: symmetry_error() of a noise-free fit (logits,
        hidden activations), the largest over the cell's members
      symmetry_error_fitted [E, G]: symmetry_error() (logits) of the pi actually used, fitted
        with the fit noise, on the clean fitting images (equal to symmetry_error without noise)
      per mode m: vote_acc_m, mean_acc_m, finite_frac_m [E, G] and overflow_m [E, G] (bool: the
        cell had non-finite members or a non-finite pi)
    """
    layer = model.group_action
    if fit_noise is not None:
        layer.fit_noise = fit_noise
    original = evaluate_ensemble(model, eval_features, eval_labels, "plain")
    shape = (len(eps_list), len(num_g_list))
    out = {"num_g": np.asarray(num_g_list, dtype=np.int64), "eps": np.asarray(eps_list, dtype=np.float64),
           "original_acc": np.float64(original["vote_acc"]), "original_mean_acc": np.float64(original["mean_acc"])}
    for key in ("symmetry_error", "symmetry_error_hidden", "symmetry_error_fitted"):
        out[key] = np.full(shape, np.nan)
    for mode in modes:
        for key in ("vote_acc", "mean_acc", "finite_frac"):
            out[f"{key}_{mode}"] = np.full(shape, np.nan)
        out[f"overflow_{mode}"] = np.zeros(shape, dtype=bool)
    for j, num_g in enumerate(num_g_list):
        for i, eps in enumerate(eps_list):
            _, error = fit_and_measure(model, fit_features, num_g, eps, seed, numerics)
            out["symmetry_error"][i, j], out["symmetry_error_hidden"][i, j] = error["logits"], error["hidden"]
            out["symmetry_error_fitted"][i, j] = error["fitted"]
            for key, value in (measure(model, eval_features) if measure else {}).items():
                out.setdefault(f"heldout_{key}", np.full(shape, np.nan))[i, j] = value
            pi_finite = bool(torch.isfinite(layer.pi).all())
            for mode, result in evaluate_modes(model, eval_features, eval_labels, modes, seed, num_g, eps).items():
                out[f"vote_acc_{mode}"][i, j] = result["vote_acc"]
                out[f"mean_acc_{mode}"][i, j] = result["mean_acc"]
                out[f"finite_frac_{mode}"][i, j] = result["finite_frac"]
                uses_pi = mode in ("group", "shuffle")
                out[f"overflow_{mode}"][i, j] = result["finite_frac"] < 1.0 or (uses_pi and not pi_finite)
            if bar is not None:
                bar.update(1)
    layer.set_mode("plain")
    return out


def stack_seeds(runs, shared=("num_g", "eps")):
    """[{key: array}] of several seeds -> {key: array with a leading seed axis}; `shared` keys
    (the same in every run, e.g. the grid's axes) are kept once."""
    return {key: np.asarray(runs[0][key]) if key in shared else np.stack([np.asarray(r[key]) for r in runs])
            for key in runs[0]}


# ----------------------------------------------------------------------------------------------
# Spherical coordinates and the invertible single-sample action
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
