"""The corrected protocol's threat models (THREATS), kept as diagnostics beside the standard
robustness evaluation (robustness.py), which decides the report's verdict:

  'transfer'   adversarial images computed on the single original model, given to every
               ensemble and to an independently trained CNN of another seed (the paper's threat
               model; the independent CNN is the control)
  'adaptive'   adversarial images computed on the group ensemble itself: FGSM and PGD on the
               cross-entropy of its mean probability, with gradients through every member
  'noise'      random-sign noise of the same L-inf size (the control for "any perturbation")

Budgets (the Fig. 11 notebook's parameters): FGSM radii, and one PGD run read at a list of iteration
counts (iteration 0 is the random start alone). Paired comparisons (COMPARISONS) with McNemar's exact test. Contents: threat_model_sweep, threat_figure_data,
threat_table, plot_threat_models.
"""
import copy
from typing import NamedTuple

import numpy as np
import torch

from gfs.cifar.paper_protocol import evaluate_models, mean_band, protocol_inputs
from gfs.cifar.attacks import (
    EnsembleMeanProbability,
    gradient_sign,
    paired_comparison,
    pgd_iterates,
    random_sign_noise,
)
from gfs.cifar.cnn import compute_features
from gfs.cifar.ensembles import evaluate_ensemble, fit_and_measure, stack_seeds
from gfs.cifar.symmetry import ENSEMBLE_MODES, FIT_NOISE, LABELS, NUMERICS, derive_seed

THREATS = ("transfer", "adaptive", "noise")


class Comparison(NamedTuple):
    """A paired comparison of the corrected protocol: accuracy of a minus accuracy of b, on the same images."""
    header: str   # its column in the report's table
    a: tuple      # (threat, classifier)
    b: tuple


# The paired comparisons, saved, tabulated and reported in this order (name: the key prefix in the npz).
# 'adaptive_group_vs_original' compares each network under its own white-box attack: the
# ensemble attacked through its members, the original attacked directly (= the transfer images).
# 'worst' is not an attack of its own: an image counts as right for the group ensemble only if it
# is right under both the transfer and the adaptive attack (the per-image worst case of the two).
COMPARISONS = {
    "transfer_group_vs_original": Comparison("group - original, transfer", ("transfer", "group"),
                                             ("transfer", "original")),
    "transfer_independent_vs_original": Comparison("independent - original, transfer", ("transfer", "independent"),
                                                   ("transfer", "original")),
    "transfer_group_vs_independent": Comparison("group - independent, transfer", ("transfer", "group"),
                                                ("transfer", "independent")),
    "adaptive_group_vs_original": Comparison("group - original, adaptive", ("adaptive", "group"),
                                             ("transfer", "original")),
    "worst_group_vs_original": Comparison("group - original, worst case", ("worst", "group"), ("transfer", "original")),
    "noise_group_vs_original": Comparison("group - original, noise", ("noise", "group"), ("noise", "original")),
}


# ----------------------------------------------------------------------------------------------
# The corrected protocol: threat models and controls

def _attack_features(attack, models, x, y, batch_size, clean):
    """Features of adversarial images, batch by batch.

    attack(x_batch, y_batch) yields (column, x_adv) pairs (one per attack strength; x_adv is
    x_batch itself for the clean images); x [N, ...], y [N]; clean: the features [N, h] of x
    for each model in `models`. Returns ({column: [features [N, h] of each model]}, {column:
    largest |x_adv - x|}): the ensembles are then evaluated on features only.
    """
    features, linf = {}, {}
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        for column, x_adv in attack(xb, yb):
            with torch.no_grad():
                parts = features.setdefault(column, [[] for _ in models])
                for part, model, known in zip(parts, models, clean):
                    part.append(known[start:start + len(xb)] if x_adv is xb else model.features(x_adv))
                linf[column] = max(linf.get(column, 0.0), float((x_adv - xb).abs().max()))
    return {c: [torch.cat(p) for p in parts] for c, parts in features.items()}, linf


def _fgsm_columns(target, fgsm_eps):
    """attack(xb, yb) for _attack_features: FGSM on `target` at every eps (eps 0: the clean images).

    FGSM's direction sign(grad) is taken at the clean image whatever eps is, so one gradient
    serves every eps: clamp(xb + eps * direction) is fgsm(target, xb, yb, eps) exactly."""
    def attack(xb, yb):
        direction = gradient_sign(target, xb, yb)
        return ((k, torch.clamp(xb + e * direction, 0.0, 1.0) if e else xb) for k, e in enumerate(fgsm_eps))
    return attack


def _pgd_columns(target, iterations, eps, step, generator):
    """attack(xb, yb) for _attack_features: one PGD run on `target`, read at every listed iteration."""
    return lambda xb, yb: ((iterations.index(t), x_t) for t, x_t in pgd_iterates(
        target, xb, yb, eps, step, max(iterations), generator=generator) if t in iterations)


def _noise_columns(sizes, generator):
    """attack(xb, yb) for _attack_features: random-sign noise of every L-inf size (0: the clean images)."""
    return lambda xb, yb: ((k, random_sign_noise(xb, e, generator) if e else xb) for k, e in enumerate(sizes))


def threat_model_sweep(model, independent, fit_images, x, y, *, num_g, group_scale, fgsm_eps, pgd_iterations, pgd_eps,
                       pgd_step, pgd_images, seed=0, numerics=tuple(NUMERICS), fit_noise=FIT_NOISE,
                       modes=ENSEMBLE_MODES, batch_size=1000):
    """Fig. 11 under the corrected protocol, one seed: every threat model and control, per numerics.

    model: the trained 'corrected' CNN (logits, input shift 0.5); independent: another seed's CNN
    trained the same way (the control). fit_images [n, 3, 32, 32]: the pi images; x [N, 3, 32, 32]
    in [0, 1], y [N]: evaluation images. FGSM runs on all N images, PGD on the first pgd_images
    (one run of max(pgd_iterations) steps, read at every listed iteration; iteration 0 is the
    random start). The group is fitted in each numerics on a copy of `model` (the same group
    elements; fit noise fit_noise[numerics]) and its symmetry error measured. Ensembles are scored
    by their mean probability (the function the adaptive attack attacks); the majority vote is
    kept too. Random draws: derive_seed(seed, ...).

    Returns {numerics: {key: array}}, K = number of strengths of the method p in ('fgsm', 'pgd'):
      fgsm_eps [K], pgd_iterations [K], pgd_eps, pgd_step, fgsm_images, pgd_images: the settings
      p_<threat>_acc_<c> [K]          accuracy; threat 'transfer': c = original, independent and
                                      every mode; 'noise': original, group;
                                      'adaptive' and 'worst' (right under both transfer and
                                      adaptive): group
      p_<threat>_vote_acc_<mode> [K]  majority-vote accuracy of the ensembles (not for 'worst')
      p_<threat>_linf [K]             largest |x_adv - x| (for 'noise': of the noisy images)
      p_<comparison>_<diff|gained|lost|p> [K] for every COMPARISONS entry (a, b): accuracy of a
                                      minus accuracy of b, and mcnemar(a, b)'s counts and p-value
      symmetry_error, symmetry_error_hidden, symmetry_error_fitted: scalars (ensembles.fit_and_measure)
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    model.eval(), independent.eval()
    nets = [model, independent]  # the transferred and noisy images go to both
    moved, out = {}, {}
    fit_features = compute_features(model, protocol_inputs(fit_images, "corrected"))  # the trunk is the same in each
    for name in numerics:
        moved[name] = copy.deepcopy(model)
        moved[name].group_action.fit_noise = fit_noise[name]
        _, error = fit_and_measure(moved[name], fit_features, num_g, group_scale, seed, name)
        out[name] = {"fgsm_eps": np.asarray(fgsm_eps, dtype=np.float64), "pgd_iterations": np.asarray(pgd_iterations),
                     "pgd_eps": np.float64(pgd_eps), "pgd_step": np.float64(pgd_step),
                     "fgsm_images": np.int64(len(x)), "pgd_images": np.int64(min(pgd_images, len(x))),
                     "symmetry_error": np.float64(error["logits"]), "symmetry_error_hidden": np.float64(error["hidden"]),
                     "symmetry_error_fitted": np.float64(error["fitted"])}
    generator = lambda *keys: torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
    iterations = list(pgd_iterations)
    for method in ("fgsm", "pgd"):
        xs, ys = (x, y) if method == "fgsm" else (x[:pgd_images], y[:pgd_images])
        sizes = list(fgsm_eps) if method == "fgsm" else [pgd_eps] * len(iterations)
        attack = (lambda target, key: _fgsm_columns(target, fgsm_eps)) if method == "fgsm" else \
                 (lambda target, key: _pgd_columns(target, iterations, pgd_eps, pgd_step, generator("pgd start", key)))
        clean = [compute_features(net, xs, batch_size) for net in nets]
        shared = {"transfer": _attack_features(attack(model, "transfer"), nets, xs, ys, batch_size, clean),
                  "noise": _attack_features(_noise_columns(sizes, generator("noise", method)), nets[:1], xs, ys,
                                            batch_size, clean)}
        for name in numerics:
            target = EnsembleMeanProbability(moved[name], "group")
            adaptive = _attack_features(attack(target, f"adaptive {name}"), nets[:1], xs, ys, batch_size, clean)
            threats = dict(shared, adaptive=adaptive)
            _score_threats(out[name], method, threats, moved[name], independent, ys, modes, seed)
    return out


def _score_threats(data, method, threats, model, independent, y, modes, seed):
    """Evaluate every classifier under every threat and run the paired tests; fills `data`.

    threats: {threat: _attack_features result}; model: the CNN with its fitted group."""
    correct = {}
    for threat, (features, linf) in threats.items():
        columns = len(features)
        data[f"{method}_{threat}_linf"] = np.array([linf[k] for k in range(columns)])
        for k in range(columns):
            if threat == "adaptive":
                results = {"group": evaluate_ensemble(model, features[k][0], y, "group")}
            elif threat == "transfer":  # the same images for every ensemble and the independent CNN
                results = evaluate_models(model, features[k][0], y, modes, seed, method, threat, k)
                results["independent"] = evaluate_ensemble(independent, features[k][1], y, "plain")
            else:  # the noise control, for the group ensemble and the original
                results = evaluate_models(model, features[k][0], y, ["group"], seed, method, threat, k)
            for c, result in results.items():
                data.setdefault(f"{method}_{threat}_acc_{c}", np.zeros(columns))[k] = result["mean_acc"]
                if c in modes:
                    data.setdefault(f"{method}_{threat}_vote_acc_{c}", np.zeros(columns))[k] = result["vote_acc"]
                correct.setdefault((threat, c), []).append(result["mean_correct"])
    correct[("worst", "group")] = [a & b for a, b in zip(correct[("transfer", "group")], correct[("adaptive", "group")])]
    data[f"{method}_worst_acc_group"] = np.array([c.mean() for c in correct[("worst", "group")]])
    for comparison, (_, a, b) in COMPARISONS.items():
        paired_comparison(data, f"{method}_{comparison}", correct[a], correct[b])


SHARED_SETTINGS = ("fgsm_eps", "pgd_iterations", "pgd_eps", "pgd_step", "fgsm_images", "pgd_images")


def threat_figure_data(results, histories, seeds, independent_seeds, numerics):
    """The npz arrays of the corrected-protocol figure of one numerics, from the per-seed results
    of threat_model_sweep and the training histories. Every array of threat_model_sweep gets a
    leading seed axis [S, ...], except the settings (SHARED_SETTINGS), kept once; plus
    seeds [S], independent_seed [S] (the seed of each seed's independent CNN) and
    train_loss, train_acc [S, epochs]."""
    data = stack_seeds([r[numerics] for r in results], shared=SHARED_SETTINGS)
    data.update(seeds=np.asarray(seeds), independent_seed=np.asarray(independent_seeds),
                train_loss=np.array([h["loss"] for h in histories]), train_acc=np.array([h["acc"] for h in histories]))
    return data


def threat_table(data):
    """The corrected protocol's paired comparisons as text: per method, comparison and strength,
    the accuracy difference (mean over seeds [min, max]) and McNemar's p-value of every seed."""
    lines = []
    for method, axis, unit in (("fgsm", data["fgsm_eps"] * 255, "eps x 255"), ("pgd", data["pgd_iterations"], "iterations")):
        lines.append(f"{method.upper()} ({unit}): accuracy of a - accuracy of b, mean over seeds [min, max]; "
                     "McNemar p per seed")
        for comparison in COMPARISONS:
            diff, p = np.atleast_2d(data[f"{method}_{comparison}_diff"]), np.atleast_2d(data[f"{method}_{comparison}_p"])
            lines.append(f"  {comparison}")
            for k, value in enumerate(axis):
                lines.append(f"    {value:>5g}  {diff[:, k].mean():+.4f} [{diff[:, k].min():+.4f}, {diff[:, k].max():+.4f}]  p = "
                             + ", ".join(f"{q:.1e}" for q in p[:, k]))
    return "\n".join(lines)


def plot_threat_models(data, title=None, models=("original", "group", "independent")):
    """Fig. 11 under the corrected protocol, one numerics: rows FGSM and PGD; columns (a) transfer
    from the single model, (b) adaptive (each network under its own white-box attack; and the
    group ensemble's per-image worst case of (a) and (b)), (c) the gains group - original under
    (a), (b), their worst case and random-sign noise, and independent CNN - original under (a).
    Mean over seeds with a band from the lowest to the highest seed.

    data: threat_model_sweep arrays with a leading seed axis, plus fgsm_eps [K] and
    pgd_iterations [K]. Returns the figure.
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), squeeze=False)

    for row, (method, axis, xlabel) in enumerate([("fgsm", np.asarray(data["fgsm_eps"]) * 255, "FGSM epsilon (x 1/255)"),
                                                  ("pgd", np.asarray(data["pgd_iterations"]),
                                                   f"PGD iterations (radius {float(data['pgd_eps']) * 255:g}/255)")]):
        ax = axes[row, 0]
        for m in models:
            mean_band(ax, axis, data[f"{method}_transfer_acc_{m}"], LABELS[m])
        ax.set_title(f"(a) transfer from the single model, {method.upper()}")
        ax = axes[row, 1]
        mean_band(ax, axis, data[f"{method}_transfer_acc_original"], "original (attacked directly)")
        mean_band(ax, axis, data[f"{method}_adaptive_acc_group"], "group (attacked through its members)")
        mean_band(ax, axis, data[f"{method}_worst_acc_group"], "group, right under both (a) and (b)", "v--")
        ax.set_title(f"(b) adaptive: each attacked directly, {method.upper()}")
        for ax in axes[row, :2]:
            ax.set_ylabel("accuracy")
            ax.axhline(0.1, color="gray", linestyle=":", linewidth=1)
        ax = axes[row, 2]
        mean_band(ax, axis, data[f"{method}_transfer_group_vs_original_diff"], "group - original, transfer (a)")
        mean_band(ax, axis, data[f"{method}_adaptive_group_vs_original_diff"], "group - original, adaptive (b)")
        mean_band(ax, axis, data[f"{method}_worst_group_vs_original_diff"], "group - original, worst of (a) and (b)",
                   "v--")
        mean_band(ax, axis, data[f"{method}_noise_group_vs_original_diff"], "group - original, random-sign noise",
                   "s--")
        mean_band(ax, axis, data[f"{method}_transfer_independent_vs_original_diff"],
                   "independent CNN - original, transfer", "^--")
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_ylabel("accuracy difference")
        ax.set_title("(c) gains and controls")
        for ax in axes[row]:
            ax.set_xlabel(xlabel)
            ax.set_xticks(axis)  # the strengths attacked
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
