"""Adversarial attacks on the symmetry ensembles (Fig. 11): FGSM, PGD and the two protocols.

Fig. 11: accuracy of the single model and of its symmetry ensembles on adversarial images.
The attacks are computed on the single original model (group-action layer in mode 'plain') and
the same adversarial images are then given to every ensemble: a transfer attack (B5), as in the paper.
Two protocols (ADVERSARIAL_PROTOCOLS):
  'paper'      the paper's procedure, defects included (B1-B4): images x - 0.5 in [-0.5, 0.5]
               but attacks clipped to [0, 1], each image attacked twice, softmax-output model
               trained and attacked with cross-entropy on the probabilities, evaluation on 1000
               held-out training images.
  'corrected'  images in [0, 1] and the model subtracts 0.5 as its first operation (so clipping
               to [0, 1] is clipping to the true pixel range), one attack per image, logits
               for training and attack, evaluation on the official test split.
Both are seeded, train one model and fit one group, then sweep every attack strength (the
paper retrained per strength, B8).
"""
import numpy as np
import torch
import torch.nn.functional as F

from cifar import compute_features, make_cnn, resolve_device, train_model
from models import progress_bar
from symmetry import (ENSEMBLE_MODES, LABELS, MODES, ensemble_accuracy, ensemble_probabilities,
                      fit_group_action)

ADVERSARIAL_PROTOCOLS = ("paper", "corrected")
ATTACK_METHODS = ("FGSM", "PGD")
ATTACK_STRENGTHS = {"FGSM": (0.0, 0.003, 0.006, 0.009, 0.012),  # FGSM eps
                    "PGD": (0, 1, 2, 3)}                          # PGD iterations
ATTACK_AXIS_LABELS = {"FGSM": "FGSM epsilon", "PGD": "PGD iterations"}
PLOTTED_MODELS = ("original", "group", "g_inverse", "perm_interp")  # Fig. 11's four curves


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
            ax.plot(strengths, data[f"acc_{protocol}_{m}"], "o-", label=LABELS[m], linewidth=2.5)
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