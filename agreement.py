"""Agreement off the fitting images: do the moved networks make the original's predictions on images pi never saw?

pi(g, H) is fitted on h images per group element (h, the hidden width: as many images as unknowns per row), so it
interpolates, exact where it was fitted and unconstrained elsewhere. The symmetry error
(ensembles.symmetry_error) measures the fitting images only; this module measures held-out images (the evaluation
images), per member n and image i, against the original network (member matrices I, I):

  agreement       the fraction of images on which member n predicts the original's class (a member with a
                  non-finite output disagrees); summarised as the mean and the minimum over members
  relative gap    max_c |z_n,i - z_0,i| / max_c |z_0,i| of the logits z; its 10th, 50th and 90th percentiles over
                  member-image pairs (inf for a non-finite member)
  saturated       the fraction of member-image pairs whose largest softmax probability rounds to 1 in the
                  numerics' dtype (the loss's gradient there is zero or below rounding)
  nonfinite       the fraction of member-image pairs with a non-finite output

Beyond the paper (fit_size_experiment): fit pi on more images than h per group element (least squares) and see
whether the action then generalises: held-out agreement and the ensemble's accuracy per fit size and group scale.

Contents: AGREEMENT_KEYS, AGREEMENT_THRESHOLD, held_out_agreement, group_agreement, fit_size_experiment (its sizes,
scales and group elements are the Fig. 10 notebook's parameters).
"""
import numpy as np
import torch

from ensembles import evaluate_ensemble, member_logits, symmetry_error
from symmetry import derive_seed, fit_pi

AGREEMENT_KEYS = ("agreement", "agreement_min", "gap_p10", "gap_p50", "gap_p90", "saturated", "nonfinite")
# "Same predictions on unseen images": every member predicts the original's class on at least this fraction.
AGREEMENT_THRESHOLD = 0.99


@torch.no_grad()
def held_out_agreement(model, features, lower, upper, chunk=1000):
    """Members against the original on held-out images: a dict of floats (AGREEMENT_KEYS, module docstring).

    model: a CifarCNN (or anything with group_action and readout); features [N, h] (cifar.compute_features of the
    held-out images); lower, upper [M, h, h]: the members' matrices (GroupAction.member_matrices), whose dtype the
    comparison runs in."""
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
    gap_p10, gap_p50, gap_p90 = np.quantile(torch.cat(gaps).numpy(), (0.1, 0.5, 0.9), method="nearest")
    return {"agreement": float(agreement.mean()), "agreement_min": float(agreement.min()), "gap_p10": float(gap_p10),
            "gap_p50": float(gap_p50), "gap_p90": float(gap_p90), "saturated": saturated / pairs,
            "nonfinite": nonfinite / pairs}


def group_agreement(model, eval_features):
    """held_out_agreement of the model's fitted group (mode 'group') on eval_features [N, h]: the per-cell measure
    of ensembles.evaluate_grid (its `measure` argument)."""
    return held_out_agreement(model, eval_features, *model.group_action.member_matrices("group"))


@torch.no_grad()
def fit_size_experiment(model, fit_features, eval_features, eval_labels, *, scales, sizes, num_g, seed=0,
                        numerics="exact"):
    """Does the data-dependent action generalise when pi is fitted on more images?

    For each group scale, num_g group elements are drawn once (derive_seed(seed, 'fit size', scale)); for each size
    k, member n's pi is the least-squares fit (exact for k <= h) of sigma(H_n g_n) pi = sigma(H_n) on rows
    [n k, (n + 1) k) of fit_features [>= num_g * max(sizes), h], without fit noise, in the numerics' dtype.
    Measured per (scale, size) on eval_features [N, h], eval_labels [N]: held-out agreement, the group ensemble's
    accuracy (mean probability and majority vote), and the symmetry error on the fitting images.

    Returns a dict of numpy arrays: scales [E], sizes [K], members (num_g), original_acc; [E, K]: heldout_<key> for
    AGREEMENT_KEYS, mean_acc, vote_acc, fit_error. The model's group layer is left with the last fit, mode 'plain'.
    """
    layer = model.group_action
    h = layer.hidden
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
            H = fit_features[:num_g * size].reshape(num_g, size, h).to(layer.g.device, layer.dtype)
            layer.register_buffer("pi", fit_pi(layer.sigma, layer.g, H))
            out["fit_error"][i, k] = symmetry_error(model, H, layer.pi)["logits"]
            for key, value in group_agreement(model, eval_features).items():
                out[f"heldout_{key}"][i, k] = value
            result = evaluate_ensemble(model, eval_features, eval_labels, "group")
            out["mean_acc"][i, k], out["vote_acc"][i, k] = result["mean_acc"], result["vote_acc"]
    layer.set_mode("plain")
    return out
