"""Ensembles of the moved networks (Figs. 10 and 11): fit the group action on a model's features, measure how
exact it is on the fitting images (symmetry_error), evaluate every kind of ensemble on precomputed features, and
measure the members against the original on held-out images (held_out_agreement; docs/cifar.md, "Agreement off the
fitting images"). Beyond the paper (fit_size_experiment): does pi fitted on more images generalise?
"""

import numpy as np
import torch

from gfs.cifar.symmetry import ENSEMBLE_MODES, EXP_FLOOR, derive_seed, fit_pi
from gfs.cifar.thresholds import AGREEMENT_THRESHOLD  # "same predictions on unseen images"


# A model here is a CifarCNN (cnn.py) or anything with its three parts: `features` (input ->
# pre-activations H [B, h], float32), `group_action` (a GroupAction) and `readout` (nn.Linear(h, C)).

@torch.no_grad()
def fit_group_action(model, fit_features, num_g, group_scale, seed=0, numerics=None):
    """Draw num_g group elements for `group_scale` and fit pi on fit_features [>= num_g * h, h] (pre-activations of
    images never trained on; element n on rows [n h, (n + 1) h), like the paper's consecutive batches). numerics:
    'paper' or 'exact' (None: keep the layer's). Returns the model's GroupAction layer (mode unchanged)."""
    layer = model.group_action
    h = layer.hidden
    if len(fit_features) < num_g * h:
        raise ValueError(f"fitting pi for num_g = {num_g} needs {num_g * h} images, got {len(fit_features)}")
    layer.draw_group(num_g, group_scale, seed, numerics)
    layer.fit(fit_batches(fit_features, num_g, h))
    return layer


def fit_batches(fit_features, num_g, h):
    """The stored batches of fit_group_action: rows [n h, (n + 1) h) for member n.  -> [num_g, h, h]."""
    return fit_features[: num_g * h].reshape(num_g, h, h)


def member_logits(model, features, lower, upper):
    """Logits of every member, differentiable, in the dtype of lower, upper [M, h, h] (GroupAction.member_matrices):
    sigma(H lower) @ (upper W^T) + b (the readout folded in: one small matmul less).  features [B, h] -> [M, B, C]."""
    weight = model.readout.weight.to(upper.dtype)
    bias = model.readout.bias.to(upper.dtype)
    hidden = model.group_action.sigma(features.to(lower.dtype) @ lower)
    return hidden @ (upper @ weight.T) + bias


def _relative_gap(moved, original):
    """max over members n of max |moved_n - original_n| / max |original_n|; inf where a member overflowed (no
    symmetry).  [M, k, c] each -> float."""
    gap = (moved - original).abs().amax(dim=(1, 2)) / original.abs().amax(dim=(1, 2))
    gap = torch.where(torch.isfinite(moved).flatten(1).all(dim=1), gap, torch.inf)
    return float(gap.max())


@torch.no_grad()
def symmetry_error(model, H_batches, pi=None):
    """How far the moved networks are from the original on the images their pi was fitted on, in the layer's
    numerics: {logits, hidden: _relative_gap of the logits [k, C] and of sigma(H g_n) pi_n vs sigma(H) [k, h]}.
    H_batches: [num_g, k, h] clean pre-activations, member n compared on H_batches[n]. pi: [num_g, h, h] to measure;
    None fits pi afresh without noise with the layer's g. An exact symmetry gives rounding only (~1e-7 in float32,
    ~1e-15 in float64, times the conditioning of sigma(H g))."""
    layer = model.group_action
    H = H_batches.to(layer.g.device, layer.dtype)
    if pi is None:
        pi = fit_pi(layer.sigma, layer.g, H)
    identity = torch.eye(layer.hidden, dtype=layer.dtype, device=H.device).expand_as(pi)
    logits = lambda lower, upper: torch.stack([member_logits(model, H[n], lower[n:n + 1], upper[n:n + 1])[0]
                                               for n in range(len(H))])
    return {"logits": _relative_gap(logits(layer.g, pi), logits(identity, identity)),
            "hidden": _relative_gap(layer.sigma(H @ layer.g) @ pi, layer.sigma(H))}


def _tally(logits):
    """[M, b, C] logits -> (votes [b, C], sum of probabilities [b, C], finite members [b]). Only members with all C
    logits finite count; a member votes for every class at its maximum (ties have probability zero)."""
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
    return (is_top * finite).sum(dim=0), (probabilities * finite).sum(dim=0), finite.sum(dim=(0, 2))


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
    """The one evaluation path of Figs. 10 and 11: an ensemble's (or, mode 'plain', the original's) predictions on
    features [B, h], labels [B], one draw of the member matrices for every chunk (chunks keep the intermediates in
    cache). Returns {vote_acc (majority vote, ties -> lowest class: what the paper plots), mean_acc (argmax of the
    mean probability: what it printed), finite_frac, vote_correct, mean_correct (bool numpy [B])}. Non-finite members
    are left out per image, instead of voting for class 0 as in the paper."""
    lower, upper = model.group_action.member_matrices(mode, generator)
    parts = [_tally(member_logits(model, features[start:start + chunk], lower, upper))
             for start in range(0, len(features), chunk)]
    return _accuracies(*(torch.cat(p) for p in zip(*parts)), labels, len(lower))


@torch.no_grad()
def fit_and_measure(model, fit_features, num_g, group_scale, seed, numerics="paper"):
    """Fit the group action of the cell (num_g, group_scale) on fit_features [>= num_g * h, h] (the same group
    elements in both numerics) and measure it: (layer, symmetry_error()'s dict of a noise-free fit plus 'fitted',
    the logits' error of the pi actually used, with the layer's fit noise)."""
    layer = fit_group_action(model, fit_features, num_g, group_scale, derive_seed(seed, "group", num_g, group_scale),
                             numerics)
    batches = fit_batches(fit_features, num_g, layer.hidden)
    error = symmetry_error(model, batches)
    error["fitted"] = symmetry_error(model, batches, layer.pi)["logits"] if layer.fit_noise else error["logits"]
    return layer, error


def evaluate_modes(model, features, labels, modes, seed, *keys):
    """{mode: evaluate_ensemble(...)} for every mode on the same features [N, h], labels [N]; the member matrices of
    a mode are drawn from derive_seed(seed, 'members', mode, *keys)."""
    return {mode: evaluate_ensemble(model, features, labels, mode,
                                    torch.Generator().manual_seed(derive_seed(seed, "members", mode, *keys)))
            for mode in modes}


@torch.no_grad()
def evaluate_grid(model, eval_features, eval_labels, fit_features, num_g_list, group_scales,
                  modes=ENSEMBLE_MODES, seed=0, numerics="paper", fit_noise=None, measure=None):
    """Every (num_g, group_scale) cell of Fig. 10 on one trained model, in one numerics: the arrays of
    docs/outputs.md without the seed axis, [E, G] over the cells (rows follow group_scales, columns num_g_list).

    eval_features [B, h], eval_labels [B]: held-out images (never trained on, never used for pi). fit_features
    [>= max(num_g) * h, h]: the images pi is fitted on. fit_noise: the std of pi's fit noise (None: the layer's).
    measure: None, or a function (model with the cell's fitted group, eval_features) -> {key: float}, saved per cell
    as heldout_<key> (group_agreement).
    """
    layer = model.group_action
    if fit_noise is not None:
        layer.fit_noise = fit_noise
    original = evaluate_ensemble(model, eval_features, eval_labels, "plain")
    shape = (len(group_scales), len(num_g_list))
    out = {"num_g": np.asarray(num_g_list, dtype=np.int64), "group_scale": np.asarray(group_scales, dtype=np.float64),
           "original_acc": np.float64(original["vote_acc"]), "original_mean_acc": np.float64(original["mean_acc"])}
    for key in ("symmetry_error", "symmetry_error_hidden", "symmetry_error_fitted"):
        out[key] = np.full(shape, np.nan)
    for mode in modes:
        for key in ("vote_acc", "mean_acc", "finite_frac"):
            out[f"{key}_{mode}"] = np.full(shape, np.nan)
        out[f"overflow_{mode}"] = np.zeros(shape, dtype=bool)
    for j, num_g in enumerate(num_g_list):
        for i, group_scale in enumerate(group_scales):
            _, error = fit_and_measure(model, fit_features, num_g, group_scale, seed, numerics)
            out["symmetry_error"][i, j], out["symmetry_error_hidden"][i, j] = error["logits"], error["hidden"]
            out["symmetry_error_fitted"][i, j] = error["fitted"]
            for key, value in (measure(model, eval_features) if measure else {}).items():
                out.setdefault(f"heldout_{key}", np.full(shape, np.nan))[i, j] = value
            pi_finite = bool(torch.isfinite(layer.pi).all())
            results = evaluate_modes(model, eval_features, eval_labels, modes, seed, num_g, group_scale)
            for mode, result in results.items():
                for key in ("vote_acc", "mean_acc", "finite_frac"):
                    out[f"{key}_{mode}"][i, j] = result[key]
                uses_pi = mode in ("group", "shuffle")
                out[f"overflow_{mode}"][i, j] = result["finite_frac"] < 1.0 or (uses_pi and not pi_finite)
    layer.set_mode("plain")
    return out


def stack_seeds(runs, shared=("num_g", "group_scale")):
    """[{key: array}] per seed -> {key: array [S, ...]}; `shared` keys (the same in every run) are kept once."""
    return {key: np.asarray(runs[0][key]) if key in shared else np.stack([np.asarray(r[key]) for r in runs])
            for key in runs[0]}


AGREEMENT_KEYS = ("agreement", "agreement_min", "gap_p10", "gap_p50", "gap_p90", "saturated", "nonfinite")


@torch.no_grad()
def held_out_agreement(model, features, lower, upper, chunk=1000):
    """Members against the original on held-out images: {AGREEMENT_KEYS: float} (docs/outputs.md, heldout_<key>).
    features [N, h]; lower, upper [M, h, h]: the members' matrices, whose dtype the comparison runs in."""
    eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)[None]
    agree, gaps, saturated, nonfinite, pairs = 0, [], 0, 0, 0
    for start in range(0, len(features), chunk):
        part = features[start:start + chunk]
        original = member_logits(model, part, eye, eye)  # [1, b, C]
        members = member_logits(model, part, lower, upper)  # [M, b, C]
        finite = torch.isfinite(members).all(dim=-1)  # [M, b]
        agree = agree + ((members.argmax(dim=-1) == original.argmax(dim=-1)) & finite).sum(dim=1)  # [M]
        gap = (members - original).abs().amax(dim=-1) / original.abs().amax(dim=-1)
        gaps.append(torch.where(finite, gap, torch.inf).flatten().cpu())
        saturated += int(((members.softmax(dim=-1).amax(dim=-1) == 1) & finite).sum())
        nonfinite += int((~finite).sum())
        pairs += finite.numel()
    agreement = (agree.double() / len(features)).cpu().numpy()
    gap_quantiles = np.quantile(torch.cat(gaps).numpy(), (0.1, 0.5, 0.9), method="nearest")
    gap_p10, gap_p50, gap_p90 = map(float, gap_quantiles)
    return {"agreement": float(agreement.mean()), "agreement_min": float(agreement.min()), "gap_p10": gap_p10,
            "gap_p50": gap_p50, "gap_p90": gap_p90, "saturated": saturated / pairs, "nonfinite": nonfinite / pairs}


def group_agreement(model, eval_features):
    """held_out_agreement of the model's fitted group on eval_features [N, h] (evaluate_grid's `measure`)."""
    return held_out_agreement(model, eval_features, *model.group_action.member_matrices("group"))


@torch.no_grad()
def fit_size_experiment(model, fit_features, eval_features, eval_labels, *, scales, sizes, num_g, seed=0,
                        numerics="exact"):
    """Does the data-dependent action generalise when pi is fitted on more images? docs/outputs.md's arrays without
    the seed axis, [E, K] over (scale, size k): member n's pi is the least-squares fit (exact for k <= h) of
    sigma(H_n g_n) pi = sigma(H_n) on rows [n k, (n + 1) k) of fit_features [>= num_g * max(sizes), h], without fit
    noise, measured on eval_features [N, h], eval_labels [N]. The group layer is left with the last fit, mode 'plain'.
    """
    layer = model.group_action
    if len(fit_features) < num_g * max(sizes):
        raise ValueError(f"the fit-size experiment needs {num_g * max(sizes)} fitting images, got {len(fit_features)}")
    shape = (len(scales), len(sizes))
    out = {"scales": np.asarray(scales, dtype=np.float64), "sizes": np.asarray(sizes, dtype=np.int64),
           "members": np.int64(num_g),
           "original_acc": np.float64(evaluate_ensemble(model, eval_features, eval_labels, "plain")["mean_acc"])}
    for key in [f"heldout_{k}" for k in AGREEMENT_KEYS] + ["mean_acc", "vote_acc", "fit_error"]:
        out[key] = np.full(shape, np.nan)
    for i, scale in enumerate(scales):
        layer.draw_group(num_g, scale, derive_seed(seed, "fit size", scale), numerics)
        for k, size in enumerate(sizes):
            H = fit_features[:num_g * size].reshape(num_g, size, layer.hidden).to(layer.g.device, layer.dtype)
            layer.register_buffer("pi", fit_pi(layer.sigma, layer.g, H))
            out["fit_error"][i, k] = symmetry_error(model, H, layer.pi)["logits"]
            for key, value in group_agreement(model, eval_features).items():
                out[f"heldout_{key}"][i, k] = value
            result = evaluate_ensemble(model, eval_features, eval_labels, "group")
            out["mean_acc"][i, k], out["vote_acc"][i, k] = result["mean_acc"], result["vote_acc"]
    layer.set_mode("plain")
    return out
