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
from gfs.cifar.symmetry import ENSEMBLE_MODES, LABELS, check_choice, derive_seed

ADVERSARIAL_PROTOCOLS = ("paper", "corrected")
ATTACK_METHODS = ("FGSM", "PGD")
ATTACK_AXIS_LABELS = {"FGSM": "FGSM epsilon", "PGD": "PGD iterations"}
PLOTTED_MODELS = ("original", "group", "g_inverse", "perm_interp")  # Fig. 11's four curves

# The paper's protocol: its strengths and its PGD (paper_numbers holds the paper's facts).
PAPER_STRENGTHS = paper_numbers.FIG11_STRENGTHS  # {"FGSM": radii, "PGD": iteration counts}
PAPER_PGD = paper_numbers.FIG11_PGD  # {"radius", "step"}: advertorch's PGD defaults, random start


def is_paper_protocol(protocol):
    """True for 'paper', False for 'corrected'; ValueError naming the protocols for anything else."""
    return check_choice(protocol, ADVERSARIAL_PROTOCOLS, "protocol") == "paper"


def protocol_inputs(images, protocol):
    """What the protocol's model is fed: images [N, 3, 32, 32] in [0, 1] -> same shape; 'paper': x - 0.5, the
    paper's range (its model has no shift); 'corrected': x (its model subtracts 0.5 itself)."""
    return images - 0.5 if is_paper_protocol(protocol) else images


def make_adversarial_cnn(protocol, hidden=16, seed=0):
    """The Fig. 11 CNN for a protocol (LeakyReLU(0.1) group-action layer; a seed's initial weights are the same in
    both): 'paper', softmax output (the double softmax, B1) and no input shift; 'corrected', logits, input shift 0.5."""
    paper = is_paper_protocol(protocol)
    return make_cnn(activation="leaky_relu", hidden=hidden, input_shift=0.0 if paper else 0.5,
                    softmax_output=paper, seed=seed)


def adversarial_splits(train_images, train_labels, test_images, test_labels, protocol, hidden=16,
                       num_g=200, num_eval=1000, train_fraction=0.8):
    """The protocol's training, pi-fitting and evaluation images (in [0, 1]): {train, fit, eval: (images, labels)};
    ValueError if they overlap. Training: the first train_fraction of the training set (as the paper's trainer). pi:
    the last hidden * num_g training images. Evaluation: 'paper', the num_eval training images just before those
    (B7); 'corrected', the whole official test split (num_eval is ignored)."""
    n = len(train_images)
    n_train, n_fit = int(train_fraction * n), hidden * num_g
    if is_paper_protocol(protocol):
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


def adversarial_images(model, x, y, method, strength, protocol, generator=None, batch_size=1000):
    """The protocol's adversarial images for one attack strength, computed on `model` (plain mode).  x [N, 3, 32, 32]
    model inputs (protocol_inputs), y [N] -> [N, 3, 32, 32]. strength: FGSM radius, or the number of PGD iterations;
    0 returns x itself, unclamped (the paper's clean accuracy). 'paper' then attacks the attacked images once more
    and clamps to [0, 1] (B3: FGSM's effective step is 2 radius; PGD starts afresh around its first result)."""
    paper = is_paper_protocol(protocol)
    if strength == 0:
        return x
    if check_choice(method, ATTACK_METHODS, "attack") == "FGSM":
        attack = lambda images, labels: fgsm(model, images, labels, float(strength))
    else:
        attack = lambda images, labels: pgd(model, images, labels, **PAPER_PGD, iterations=int(strength),
                                            generator=generator)

    def attack_batch(images, labels):
        adversarial = attack(images, labels)
        return torch.clamp(attack(adversarial, labels), 0.0, 1.0) if paper else adversarial
    model.group_action.set_mode("plain")
    return torch.cat([attack_batch(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def adversarial_sweep(model, x, y, method, strengths, protocol, modes=ENSEMBLE_MODES, seed=0):
    """Accuracy of the original model (trained, group fitted) and of every ensemble for each attack strength,
    transferred from the model.  x [N, 3, 32, 32] model inputs (protocol_inputs), y [N] -> numpy arrays [K]: strengths,
    linf, changed_frac; acc_<m>, mean_acc_<m> (evaluate_ensemble's vote_acc, mean_acc) of 'original' and each mode."""
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    keys = [f"{acc}_{m}" for m in ("original",) + tuple(modes) for acc in ("acc", "mean_acc")]
    out = {"strengths": np.asarray(strengths, dtype=np.float64),
           **{key: np.zeros(len(strengths)) for key in keys + ["linf", "changed_frac"]}}
    for i, strength in enumerate(strengths):
        generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "attack", protocol, method, i))
        x_adv = adversarial_images(model, x, y, method, strength, protocol, generator)
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
                         strengths=PAPER_STRENGTHS, modes=ENSEMBLE_MODES):
    """Fig. 11 under the paper's protocol, one seed: fit the group, sweep every attack strength. model: the trained
    'paper' CNN; fit_images, eval_images [N, 3, 32, 32] in [0, 1], eval_labels [N]: from adversarial_splits (paper).
    Returns {'sweeps': {method: adversarial_sweep's dict}, 'clamp_only_acc': the original on the clean images
    clamped to [0, 1] (B2), 'symmetry_error': fit_and_measure's dict}."""
    fit_features = compute_features(model, protocol_inputs(fit_images, "paper"))
    _, error = fit_and_measure(model, fit_features, num_g, group_scale, seed, "paper")
    x = protocol_inputs(eval_images, "paper")
    clamped = evaluate_ensemble(model, compute_features(model, x.clamp(0.0, 1.0)), eval_labels, "plain")
    sweeps = {method: adversarial_sweep(model, x, eval_labels, method, values, "paper", modes, seed)
              for method, values in strengths.items()}
    return {"sweeps": sweeps, "clamp_only_acc": clamped["vote_acc"], "symmetry_error": error}


def paper_figure_data(results, histories, seeds, method):
    """The npz arrays of the paper-protocol figure of one attack (docs/outputs.md), from the per-seed results of
    paper_protocol_sweep and the training histories (train_model)."""
    return dict(stack_seeds([r["sweeps"][method] for r in results], shared=("strengths",)), seeds=np.asarray(seeds),
                clamp_only_acc=np.array([r["clamp_only_acc"] for r in results]),
                symmetry_error=np.array([r["symmetry_error"]["logits"] for r in results]),
                symmetry_error_hidden=np.array([r["symmetry_error"]["hidden"] for r in results]),
                symmetry_error_fitted=np.array([r["symmetry_error"]["fitted"] for r in results]),
                train_loss=np.array([h["loss"] for h in histories]), train_acc=np.array([h["acc"] for h in histories]))


def mean_band(ax, xs, values, label, style="o-", color=None, linewidth=2):
    """Plot the mean over seeds of values [S, K] (or [K]) against xs [K], with a band from the lowest to the highest."""
    values = np.asarray(values, dtype=float).reshape(-1, len(xs))
    line, = ax.plot(xs, values.mean(axis=0), style, label=label, linewidth=linewidth, color=color)
    if len(values) > 1:
        ax.fill_between(xs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def plot_adversarial(data, method, models=PLOTTED_MODELS, title=None):
    """Fig. 11 (the paper's protocol) for one attack: accuracy (majority vote, acc_<m> [S, K]) against strengths [K],
    one mean_band per model. Returns the figure."""
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
