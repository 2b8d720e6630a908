"""The nonlinear, data-dependent group action of the paper and the ensembles built from it (Fig. 10).

The paper moves a trained network along a nonlinear, data-dependent symmetry,
(U, V) -> (U pi(g, H), g V) with pi(g, H) = sigma(H) sigma(gH)^+, and uses the moved copies as
an ensemble. The hidden layer of the CNN (cifar.py) is a GroupAction layer that does this.

Conventions: batches are row-major, as in the paper's notebook. A batch of hidden pre-activations
is H [B, h]; "g acting on H" is H @ g, and the fitted pi is the h x h matrix with
sigma(H_n g_n) @ pi_n = sigma(H_n) on the stored batch H_n (the transpose of the paper's formula).

Contents, top to bottom:
  group action    relu_sqr, leaky_relu, GroupAction
  ensembles       fit_group_action, ensemble_probabilities, ensemble_accuracy, evaluate_ensemble,
                  evaluate_grid, plot_ensemble_heatmaps
  spherical       to_spherical, from_spherical, spherical_frame, r_matrix, invertible_action
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import progress_bar

# Ensemble kinds the paper compares (Fig. 10 panel order), and the layer's plain mode.
ENSEMBLE_MODES = ("group", "perm_interp", "g_inverse", "random", "shuffle")
# The one label map of every plot: ensembles and the original network.
LABELS = {"original": "original", "group": "group", "perm_interp": "interpolated permute",
          "g_inverse": r"$g^{-1}$", "random": "random", "shuffle": "shuffle"}
MODES = ("plain",) + ENSEMBLE_MODES


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


class GroupAction(nn.Module):
    """Hidden activation sigma wrapped in the nonlinear group action (the paper's GroupActivation).

    In mode 'plain' it is just sigma: [B, h] -> [B, h]. In an ensemble mode it returns the hidden
    activations of num_g moved networks, flattened to [num_g * B, h] (member-major), so that the
    next nn.Linear (the paper's U) maps every member. Each member n computes

        sigma(H @ lower_n) @ upper_n

    with (lower_n, upper_n) depending on the mode (B10):
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


# ----------------------------------------------------------------------------------------------
# Ensembles

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
        ax.set_title(f"accuracy ({LABELS[mode]} - original)")
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
