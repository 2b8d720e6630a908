"""The two protocols of Fig. 11 (ADVERSARIAL_PROTOCOLS; docs/cifar.md tabulates how they differ) and the paper's
sweep. 'paper' is the paper's procedure, defects included (B1-B5, B7; paper_protocol_sweep); 'corrected' feeds
images in [0, 1] to a model that subtracts 0.5 itself and outputs logits, and is judged by robustness.py.
"""

import numpy as np
import torch

from gfs import paper_numbers
from gfs.cifar.attacks import fgsm, pgd
from gfs.cifar.cnn import compute_features, make_cnn
from gfs.cifar.ensembles import evaluate_ensemble, evaluate_modes, fit_and_measure, stack_seeds
from gfs.cifar.symmetry import ENSEMBLE_MODES, LABELS, derive_seed

ADVERSARIAL_PROTOCOLS = ("paper", "corrected")
ATTACK_METHODS = ("FGSM", "PGD")
ATTACK_AXIS_LABELS = {"FGSM": "FGSM epsilon", "PGD": "PGD iterations"}
PLOTTED_MODELS = ("original", "group", "g_inverse", "perm_interp")  # Fig. 11's four curves

# The paper's protocol: its strengths and its PGD (paper_numbers holds the paper's facts).
PAPER_STRENGTHS = paper_numbers.FIG11_STRENGTHS  # {"FGSM": radii, "PGD": iteration counts}
PAPER_PGD = paper_numbers.FIG11_PGD  # {"radius", "step"}: advertorch's PGD defaults, random start


# ----------------------------------------------------------------------------------------------
# Protocols

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


def make_adversarial_cnn(protocol, hidden=16, seed=0):
    """The Fig. 11 CNN for a protocol: group-action layer with LeakyReLU(0.1).

    'paper': softmax output (trained and attacked through the double softmax, B1), no input shift (it is fed
    x - 0.5). 'corrected': logit output, input shift 0.5 (it is fed x in [0, 1]). The same seed gives the same
    initial weights for both protocols; each sweep draws the group (ensembles.fit_and_measure).
    """
    paper = check_protocol(protocol) == "paper"
    return make_cnn(activation="leaky_relu", hidden=hidden, input_shift=0.0 if paper else 0.5,
                    softmax_output=paper, seed=seed)


def adversarial_splits(train_images, train_labels, test_images, test_labels, protocol, hidden=16,
                       num_g=200, num_eval=1000, train_fraction=0.8):
    """The protocol's training, pi-fitting and evaluation images (all in [0, 1]).

    Training: the first train_fraction of the training set (the paper's trainer holds out 20 %: [0, 40000)). pi: the
    last hidden * num_g training images ([46800, 50000) for h = 16, num_g = 200). Evaluation: 'paper', the num_eval
    training images just before those ([45800, 46800), B7); 'corrected', the whole official test split (num_eval is
    ignored). Returns a dict of (images, labels) pairs: train, fit, eval; ValueError if they overlap.
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


# ----------------------------------------------------------------------------------------------
# The paper's protocol

def adversarial_images(model, x, y, method, strength, protocol, pgd_radius=PAPER_PGD["radius"],
                       pgd_step=PAPER_PGD["step"], generator=None, batch_size=1000):
    """The protocol's adversarial images for one attack strength, computed on `model` (plain mode).

    x: [N, 3, 32, 32] model inputs (protocol_inputs), y: [N]; returns [N, 3, 32, 32] on x's device. strength: FGSM
    radius, or the number of PGD iterations (radius pgd_radius, step pgd_step, random start); 0 returns x itself,
    unclamped (the paper evaluates strength 0 on clean data). Both protocols clip to [0, 1] (advertorch's default)
    and use cross-entropy of the model's outputs (probabilities in 'paper', B1). 'paper' then attacks the attacked
    images once more and clamps to [0, 1] (B3: the effective FGSM step is 2 radius; PGD gets a second random start
    and ball around the first result).
    """
    check_protocol(protocol)
    if strength == 0:
        return x
    if method == "FGSM":
        attack = lambda images, labels: fgsm(model, images, labels, float(strength))
    elif method == "PGD":
        attack = lambda images, labels: pgd(model, images, labels, radius=pgd_radius, step=pgd_step,
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
                      pgd_radius=PAPER_PGD["radius"], pgd_step=PAPER_PGD["step"]):
    """Accuracy of the original model and of every ensemble for each attack strength (transfer).

    model: trained, with a fitted group-action layer. x [N, 3, 32, 32] model inputs (protocol_inputs), y [N]. Per
    strength the CNN trunk runs once on the adversarial images and every member is evaluated on those features.
    Random draws (PGD start, member matrices) come from derive_seed(seed, ..., method, strength index).
    Returns a dict of numpy arrays [K]: strengths; acc_<m> (majority vote: what the paper plots) and mean_acc_<m>
    (argmax of the mean probability: what it prints) for m = 'original' and every mode; linf, changed_frac.
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    keys = [f"{acc}_{m}" for m in ("original",) + tuple(modes) for acc in ("acc", "mean_acc")]
    out = {"strengths": np.asarray(strengths, dtype=np.float64),
           **{key: np.zeros(len(strengths)) for key in keys + ["linf", "changed_frac"]}}
    for i, strength in enumerate(strengths):
        generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "attack", protocol, method, i))
        x_adv = adversarial_images(model, x, y, method, strength, protocol, pgd_radius, pgd_step, generator)
        out["linf"][i] = float((x_adv - x).abs().max()) if len(x) else 0.0
        out["changed_frac"][i] = float((x_adv != x).float().mean()) if len(x) else 0.0
        features = compute_features(model, x_adv)
        results = {"original": evaluate_ensemble(model, features, y, "plain"),
                   **evaluate_modes(model, features, y, modes, seed, protocol, method, i)}
        for m, result in results.items():
            out[f"acc_{m}"][i] = result["vote_acc"]
            out[f"mean_acc_{m}"][i] = result["mean_acc"]
    model.group_action.set_mode("plain")
    return out


def paper_protocol_sweep(model, fit_images, eval_images, eval_labels, *, num_g, group_scale, seed=0,
                         strengths=PAPER_STRENGTHS, pgd_radius=PAPER_PGD["radius"], pgd_step=PAPER_PGD["step"],
                         modes=ENSEMBLE_MODES):
    """Fig. 11 under the paper's protocol, one seed: fit the group, sweep every attack strength.

    model: the trained 'paper' CNN (make_adversarial_cnn('paper')); fit_images, eval_images [N, 3, 32, 32] in [0, 1]
    and eval_labels [N]: adversarial_splits(..., 'paper')'s 'fit' and 'eval'. Float32 numerics with the model's fit
    noise, transfer attacks from the single model, as the paper. Returns {'sweeps': {method: adversarial_sweep's
    dict}, 'clamp_only_acc': the original's accuracy on the clean evaluation images clamped to [0, 1] (the part of
    the paper's drop due to B2), 'symmetry_error': ensembles.fit_and_measure's dict}.
    """
    fit_features = compute_features(model, protocol_inputs(fit_images, "paper"))
    _, error = fit_and_measure(model, fit_features, num_g, group_scale, seed, "paper")
    device = next(model.parameters()).device
    x, y = protocol_inputs(eval_images, "paper").to(device), eval_labels.to(device)
    clamped = evaluate_ensemble(model, compute_features(model, x.clamp(0.0, 1.0)), y, "plain")
    sweeps = {method: adversarial_sweep(model, x, y, method, values, "paper", modes, seed, pgd_radius, pgd_step)
              for method, values in strengths.items()}
    return {"sweeps": sweeps, "clamp_only_acc": clamped["vote_acc"], "symmetry_error": error}


def paper_figure_data(results, histories, seeds, method):
    """The npz arrays of the paper-protocol figure of one attack (docs/outputs.md says what each is), from the
    per-seed results of paper_protocol_sweep and the training histories (train_model), S seeds, K strengths:
    seeds [S]; strengths [K]; acc_<m>, mean_acc_<m>, linf, changed_frac [S, K]; clamp_only_acc, symmetry_error,
    symmetry_error_hidden, symmetry_error_fitted [S]; train_loss, train_acc [S, epochs].
    """
    data = stack_seeds([r["sweeps"][method] for r in results], shared=("strengths",))
    data.update(seeds=np.asarray(seeds), clamp_only_acc=np.array([r["clamp_only_acc"] for r in results]),
                symmetry_error=np.array([r["symmetry_error"]["logits"] for r in results]),
                symmetry_error_hidden=np.array([r["symmetry_error"]["hidden"] for r in results]),
                symmetry_error_fitted=np.array([r["symmetry_error"]["fitted"] for r in results]),
                train_loss=np.array([h["loss"] for h in histories]), train_acc=np.array([h["acc"] for h in histories]))
    return data


def mean_band(ax, xs, values, label, style="o-", color=None, linewidth=2):
    """Plot the mean over seeds of values [S, K] (or [K]) against xs [K], with a band from the lowest to the highest
    seed."""
    values = np.asarray(values, dtype=float).reshape(-1, len(xs))
    line, = ax.plot(xs, values.mean(axis=0), style, label=label, linewidth=linewidth, color=color)
    if len(values) > 1:
        ax.fill_between(xs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def plot_adversarial(data, method, models=PLOTTED_MODELS, title=None):
    """Fig. 11 (the paper's protocol) for one attack: accuracy (majority vote) vs attack strength,
    one curve per model: the mean over seeds with a band from the lowest to the highest seed.

    data: arrays with a leading seed axis, acc_<m> [S, K] and strengths [K]. Returns the figure.
    """
    import matplotlib.pyplot as plt
    strengths = data["strengths"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for m in models:
        mean_band(ax, strengths, data[f"acc_{m}"], LABELS[m], linewidth=2.5)
    ax.set_xlabel(ATTACK_AXIS_LABELS[method], fontsize=16)
    ax.set_xticks(strengths if method == "PGD" else np.linspace(0, strengths.max(), 4))
    ax.tick_params(labelsize=12)
    ax.set_ylabel("Accuracy", fontsize=16)
    ax.axhline(0.1, color="gray", linestyle=":", linewidth=1)  # chance (10 classes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=12)
    ax.set_title(title or "paper's protocol (defects kept)", fontsize=12)
    fig.tight_layout()
    return fig
