"""Adversarial attacks on the symmetry ensembles (Fig. 11): attacks, protocols, threat models.

Fig. 11: accuracy of the single model and of its symmetry ensembles on adversarial images.
Two protocols (ADVERSARIAL_PROTOCOLS):
  'paper'      the paper's procedure, defects included (B1-B4): images x - 0.5 in [-0.5, 0.5]
               but attacks clipped to [0, 1], each image attacked twice, softmax-output model
               trained and attacked with cross-entropy on the probabilities, evaluation on 1000
               held-out training images; the paper's strengths (FGSM eps up to 0.012, PGD of
               radius 0.3 with 0 to 3 steps of 0.01); float32 numerics; a transfer attack from
               the single model (B5). paper_protocol_sweep.
  'corrected'  images in [0, 1] and the model subtracts 0.5 as its first operation (so clipping
               to [0, 1] is clipping to the true pixel range), one attack per image, logits
               for training and attack, evaluation on the official test split, the field's
               usual budgets (FGSM eps in {0, 1, 2, 4, 8}/255; PGD of radius 8/255, step 2/255,
               random start, 0 to 20 steps), both numerics, and every threat model below.
               threat_model_sweep.
Threat models of the corrected protocol (THREATS):
  'transfer'   adversarial images computed on the single original model, given to every
               ensemble and to an independently trained CNN of another seed (the paper's threat
               model; the independent CNN is the control: a gain that any other network also has
               is not a gain from the symmetry)
  'adaptive'   adversarial images computed on the group ensemble itself: FGSM and PGD on the
               cross-entropy of its mean probability, with gradients through every member
               (EnsembleMeanProbability)
  'noise'      random-sign noise of the same L-inf size (the control for "any perturbation")
Paired statistics: two classifiers on the same images, McNemar's exact test (mcnemar).

Contents, top to bottom:
  attacks        fgsm, gradient_sign, pgd_iterates, pgd, random_sign_noise, EnsembleMeanProbability
  statistics     mcnemar
  protocols      check_protocol, protocol_inputs, make_adversarial_cnn, adversarial_splits
  paper          adversarial_images, adversarial_sweep, paper_protocol_sweep, paper_figure_data,
                 plot_adversarial
  corrected      threat_model_sweep, threat_figure_data, threat_table, plot_threat_models
"""
import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import paper_numbers
from cifar import compute_features, make_cnn
from symmetry import (ENSEMBLE_MODES, FIT_NOISE, LABELS, NUMERICS, derive_seed, evaluate_ensemble, evaluate_modes,
                      fit_and_measure, member_logits, stack_seeds)

ADVERSARIAL_PROTOCOLS = ("paper", "corrected")
ATTACK_METHODS = ("FGSM", "PGD")
ATTACK_AXIS_LABELS = {"FGSM": "FGSM epsilon", "PGD": "PGD iterations"}
PLOTTED_MODELS = ("original", "group", "g_inverse", "perm_interp")  # Fig. 11's four curves

# The paper's protocol: its strengths, and advertorch's PGD defaults (radius 0.3, step 0.01).
PAPER_STRENGTHS = paper_numbers.FIG11_STRENGTHS  # {"FGSM": eps values, "PGD": iteration counts}
PAPER_PGD = {"eps": 0.3, "step": 0.01}
# The corrected protocol: the usual budgets on CIFAR-10 (pixel values in [0, 1]).
FGSM_EPS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
PGD_ITERATIONS = (0, 1, 3, 10, 20)  # iteration 0 is the random start alone
CORRECTED_PGD = {"eps": 8 / 255, "step": 2 / 255}
THREATS = ("transfer", "adaptive", "noise")
# The paired comparisons of the corrected protocol: name -> ((threat, classifier), (threat, classifier)).
# 'adaptive_group_vs_original' compares each network under its own white-box attack: the
# ensemble attacked through its members, the original attacked directly (= the transfer images).
# 'worst' is not an attack of its own: an image counts as right for the group ensemble only if it
# is right under both the transfer and the adaptive attack (the per-image worst case of the two).
COMPARISONS = {
    "transfer_group_vs_original": (("transfer", "group"), ("transfer", "original")),
    "transfer_independent_vs_original": (("transfer", "independent"), ("transfer", "original")),
    "transfer_group_vs_independent": (("transfer", "group"), ("transfer", "independent")),
    "adaptive_group_vs_original": (("adaptive", "group"), ("transfer", "original")),
    "worst_group_vs_original": (("worst", "group"), ("transfer", "original")),
    "noise_group_vs_original": (("noise", "group"), ("noise", "original")),
}


# ----------------------------------------------------------------------------------------------
# Attacks

def fgsm(model, x, y, eps, clip=(0.0, 1.0), loss_fn=F.cross_entropy):
    """Fast gradient sign method (Goodfellow et al. 2015): one untargeted L-inf step.

        x_adv = clamp(x + eps * sign(d loss(model(x), y) / dx), clip[0], clip[1])

    x: [B, 3, 32, 32] images, y: [B] labels; returns x_adv [B, 3, 32, 32], detached.
    Defaults (those of advertorch's GradientSignAttack, which the paper used): clip range [0, 1]
    and loss = cross-entropy (batch mean) of the model's outputs read as logits. eps has no
    default; the paper sweeps eps in {0, 0.003, 0.006, 0.009, 0.012}. Only the sign of the
    gradient is used, so the loss's reduction (mean or sum) does not matter.
    """
    return torch.clamp(x.detach() + eps * gradient_sign(model, x, y, loss_fn), clip[0], clip[1])


def gradient_sign(model, x, y, loss_fn=F.cross_entropy):
    """sign(d loss(model(x), y) / dx): FGSM's direction, the same for every eps.  [B, ...] -> [B, ...]."""
    x = x.detach().clone().requires_grad_(True)
    grad, = torch.autograd.grad(loss_fn(model(x), y), x)
    return grad.sign()


def pgd_iterates(model, x, y, eps=0.3, step=0.01, iterations=40, random_start=True, clip=(0.0, 1.0),
                 loss_fn=F.cross_entropy, generator=None):
    """Projected gradient descent (Madry et al. 2018), untargeted, in the L-inf ball of radius eps:
    yields (t, x_t) for t = 0 ... iterations, so that one run gives every shorter attack too.

        x_0 = clamp(x + U(-eps, eps), clip)          (x_0 = x without random start)
        x_{t+1} = clamp(x + clamp(x_t + step * sign(grad_t) - x, -eps, eps), clip)

    x: [B, 3, 32, 32] images, y: [B] labels; each x_t [B, 3, 32, 32] is detached.
    Defaults are those of advertorch's PGDAttack, which the paper used: eps = 0.3, step
    (eps_iter) = 0.01, iterations (nb_iter) = 40, random_start (rand_init) = True, clip range
    [0, 1], loss = cross-entropy (batch mean) of the model's outputs read as logits.
    generator: torch.Generator (on x's device) for the random start; None uses torch's global
    one, as advertorch and torchattacks do.
    """
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        x_adv = torch.clamp(x + noise, clip[0], clip[1])
    yield 0, x_adv
    for t in range(1, iterations + 1):
        x_adv.requires_grad_(True)
        loss = loss_fn(model(x_adv), y)
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        delta = torch.clamp(x_adv - x, -eps, eps)
        x_adv = torch.clamp(x + delta, clip[0], clip[1])
        yield t, x_adv


def pgd(model, x, y, eps=0.3, step=0.01, iterations=40, random_start=True, clip=(0.0, 1.0),
        loss_fn=F.cross_entropy, generator=None):
    """The last iterate of pgd_iterates (same arguments): x_adv [B, 3, 32, 32], detached. The
    paper sweeps iterations in {0, 1, 2, 3} at advertorch's defaults."""
    for _, x_adv in pgd_iterates(model, x, y, eps, step, iterations, random_start, clip, loss_fn, generator):
        pass
    return x_adv


def random_sign_noise(x, eps, generator=None, clip=(0.0, 1.0)):
    """The noise control: x + eps * s with independent random signs s = +-1 per pixel, clipped.

    x: [B, 3, 32, 32]; returns the same shape. |x_noise - x| <= eps everywhere (= eps where the
    clip does not bite): the L-inf size of an FGSM step of the same eps, without its direction.
    """
    signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype).mul_(2).sub_(1)
    return torch.clamp(x + eps * signs, clip[0], clip[1])


class EnsembleMeanProbability(nn.Module):
    """The target of the adaptive attacks: x [B, 3, 32, 32] -> log of the ensemble's mean
    probability [B, C], so that cross_entropy(output, y) = -log(mean_n p_n(y | x)).

    model: a CifarCNN with a fitted group action; mode: which ensemble (default 'group');
    generator: the draw of the member matrices (random modes). The CNN trunk runs once per image
    and every member is evaluated on its hidden features at once (member_logits, in the
    numerics' dtype), so gradients flow through every member into the image. Members with
    non-finite outputs are left out, as in the evaluation.
    """

    def __init__(self, model, mode="group", generator=None):
        super().__init__()
        self.model = model
        self.lower, self.upper = model.group_action.member_matrices(mode, generator)

    def forward(self, x):
        log_p = member_logits(self.model, self.model.features(x), self.lower, self.upper).log_softmax(dim=-1)
        finite = torch.isfinite(log_p).all(dim=-1, keepdim=True)  # [M, B, 1]
        log_p = torch.where(finite, log_p, -torch.inf)
        return torch.logsumexp(log_p, dim=0) - finite.sum(dim=0).clamp(min=1).log()


# ----------------------------------------------------------------------------------------------
# Statistics

def mcnemar(correct_a, correct_b):
    """McNemar's exact test of two classifiers on the same images.

    correct_a, correct_b: bool arrays [N], image i right or wrong for classifier a and b.
    Returns (gained, lost, p): gained = images only a gets right, lost = images only b gets
    right (so accuracy a - accuracy b = (gained - lost) / N), and p the two-sided exact binomial
    test of gained against gained + lost trials at 1/2 (scipy.stats.binomtest); p = 1 when no
    image is discordant.
    """
    from scipy.stats import binomtest
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    gained, lost = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    return gained, lost, float(p)


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

    'paper': softmax output (trained and attacked through the double softmax, B1), no input
    shift (it is fed x - 0.5). 'corrected': logit output, input shift 0.5 (it is fed x in [0, 1]).
    The same seed gives the same initial weights for both protocols. The group elements are drawn
    by each sweep (symmetry.fit_and_measure), so the layer starts with a placeholder of one.
    """
    paper = check_protocol(protocol) == "paper"
    return make_cnn(activation="leaky_relu", hidden=hidden, input_shift=0.0 if paper else 0.5,
                    softmax_output=paper, seed=seed)


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


# ----------------------------------------------------------------------------------------------
# The paper's protocol

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


def _evaluate_models(model, features, y, modes, seed, *keys):
    """evaluate_ensemble of 'original' (plain) and every mode on shared features [N, h] (symmetry.evaluate_modes).
    Returns {classifier: result dict}."""
    return {"original": evaluate_ensemble(model, features, y, "plain"),
            **evaluate_modes(model, features, y, modes, seed, *keys)}


def adversarial_sweep(model, x, y, method, strengths, protocol, modes=ENSEMBLE_MODES, seed=0,
                      pgd_eps=0.3, pgd_step=0.01):
    """Accuracy of the original model and of every ensemble for each attack strength (transfer).

    model: trained, with a fitted group-action layer (fit_group_action). x [N, 3, 32, 32] model
    inputs (protocol_inputs), y [N]. Per strength the CNN trunk runs once on the adversarial
    images (compute_features) and every ensemble member is evaluated on those h features.
    Random draws (PGD start, member matrices of perm_interp/random/shuffle) come from
    derive_seed(seed, ..., method, strength index).

    Returns a dict of numpy arrays, each [K] (K = len(strengths)):
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
    for i, strength in enumerate(strengths):
        generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "attack", protocol, method, i))
        x_adv = adversarial_images(model, x, y, method, strength, protocol, pgd_eps, pgd_step, generator)
        out["linf"][i] = float((x_adv - x).abs().max()) if len(x) else 0.0
        out["changed_frac"][i] = float((x_adv != x).float().mean()) if len(x) else 0.0
        results = _evaluate_models(model, compute_features(model, x_adv), y, modes, seed, protocol, method, i)
        for m, result in results.items():
            out[f"acc_{m}"][i] = result["vote_acc"]
            out[f"mean_acc_{m}"][i] = result["mean_acc"]
    model.group_action.set_mode("plain")
    return out


def paper_protocol_sweep(model, fit_images, eval_images, eval_labels, seed=0, num_g=200, group_scale=10.0,
                         strengths=PAPER_STRENGTHS, pgd_eps=PAPER_PGD["eps"], pgd_step=PAPER_PGD["step"],
                         modes=ENSEMBLE_MODES):
    """Fig. 11 under the paper's protocol, one seed: fit the group, sweep every attack strength.

    model: the trained 'paper' CNN (make_adversarial_cnn('paper'), trained on
    protocol_inputs(train images)); fit_images, eval_images [N, 3, 32, 32] in [0, 1] and
    eval_labels [N]: adversarial_splits(..., 'paper')'s 'fit' and 'eval'. Float32 numerics with
    the model's fit noise, transfer attacks from the single model, as the paper.
    Returns {'sweeps': {method: adversarial_sweep dict}, 'clamp_only_acc': accuracy of the
    original model on the clean evaluation images clamped to [0, 1] and nothing else (the part
    of the paper's drop due to B2), 'symmetry_error': symmetry.fit_and_measure's dict}.
    """
    _, error = fit_and_measure(model, compute_features(model, protocol_inputs(fit_images, "paper")), num_g, group_scale, seed,
                               "paper")
    device = next(model.parameters()).device
    x, y = protocol_inputs(eval_images, "paper").to(device), eval_labels.to(device)
    clamped = evaluate_ensemble(model, compute_features(model, x.clamp(0.0, 1.0)), y, "plain")
    sweeps = {method: adversarial_sweep(model, x, y, method, values, "paper", modes, seed, pgd_eps, pgd_step)
              for method, values in strengths.items()}
    return {"sweeps": sweeps, "clamp_only_acc": clamped["vote_acc"], "symmetry_error": error}


def paper_figure_data(results, histories, seeds, method):
    """The npz arrays of the paper-protocol figure of one attack, from the per-seed results of
    paper_protocol_sweep and the training histories (train_model), S seeds, K strengths:

      seeds [S]; strengths [K] (FGSM eps, or PGD iterations)
      acc_<m>, mean_acc_<m> [S, K]: majority-vote and mean-probability accuracy, m = original
          and every mode (for 'original' both are its plain accuracy)
      linf, changed_frac [S, K]: largest |x_adv - x| and the fraction of pixel values changed
          (model inputs x in [-0.5, 0.5], so the clamp to [0, 1] shows in linf)
      clamp_only_acc [S]: the original on the clean images clamped to [0, 1], no attack
      symmetry_error, symmetry_error_hidden, symmetry_error_fitted [S]: the group's symmetry
          error (num_g, eps of Fig. 11; float32): noise-free fit (logits, hidden activations),
          and the fitted (noisy) pi on the clean fitting images
      train_loss, train_acc [S, epochs]
    """
    data = stack_seeds([r["sweeps"][method] for r in results], shared=("strengths",))
    data.update(seeds=np.asarray(seeds), clamp_only_acc=np.array([r["clamp_only_acc"] for r in results]),
                symmetry_error=np.array([r["symmetry_error"]["logits"] for r in results]),
                symmetry_error_hidden=np.array([r["symmetry_error"]["hidden"] for r in results]),
                symmetry_error_fitted=np.array([r["symmetry_error"]["fitted"] for r in results]),
                train_loss=np.array([h["loss"] for h in histories]), train_acc=np.array([h["acc"] for h in histories]))
    return data


def _mean_band(ax, xs, values, label, style="o-", color=None, linewidth=2):
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
        _mean_band(ax, strengths, data[f"acc_{m}"], LABELS[m], linewidth=2.5)
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


def threat_model_sweep(model, independent, fit_images, x, y, seed=0, numerics=tuple(NUMERICS), fit_noise=FIT_NOISE,
                       num_g=200, group_scale=10.0, fgsm_eps=FGSM_EPS, pgd_iterations=PGD_ITERATIONS,
                       pgd_eps=CORRECTED_PGD["eps"], pgd_step=CORRECTED_PGD["step"], pgd_images=2000,
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
      symmetry_error, symmetry_error_hidden, symmetry_error_fitted: scalars (symmetry.fit_and_measure)
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
                results = _evaluate_models(model, features[k][0], y, modes, seed, method, threat, k)
                results["independent"] = evaluate_ensemble(independent, features[k][1], y, "plain")
            else:  # the noise control, for the group ensemble and the original
                results = _evaluate_models(model, features[k][0], y, ["group"], seed, method, threat, k)
            for c, result in results.items():
                data.setdefault(f"{method}_{threat}_acc_{c}", np.zeros(columns))[k] = result["mean_acc"]
                if c in modes:
                    data.setdefault(f"{method}_{threat}_vote_acc_{c}", np.zeros(columns))[k] = result["vote_acc"]
                correct.setdefault((threat, c), []).append(result["mean_correct"])
    correct[("worst", "group")] = [a & b for a, b in zip(correct[("transfer", "group")], correct[("adaptive", "group")])]
    data[f"{method}_worst_acc_group"] = np.array([c.mean() for c in correct[("worst", "group")]])
    for comparison, (a, b) in COMPARISONS.items():
        pairs = list(zip(correct[a], correct[b]))
        stats = [mcnemar(ca, cb) for ca, cb in pairs]
        data[f"{method}_{comparison}_diff"] = np.array([ca.mean() - cb.mean() for ca, cb in pairs])
        data[f"{method}_{comparison}_gained"] = np.array([g for g, _, _ in stats], dtype=np.int64)
        data[f"{method}_{comparison}_lost"] = np.array([lost for _, lost, _ in stats], dtype=np.int64)
        data[f"{method}_{comparison}_p"] = np.array([p for _, _, p in stats])


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
                                                  ("pgd", np.asarray(data["pgd_iterations"]), "PGD iterations (radius 8/255)")]):
        ax = axes[row, 0]
        for m in models:
            _mean_band(ax, axis, data[f"{method}_transfer_acc_{m}"], LABELS[m])
        ax.set_title(f"(a) transfer from the single model, {method.upper()}")
        ax = axes[row, 1]
        _mean_band(ax, axis, data[f"{method}_transfer_acc_original"], "original (attacked directly)")
        _mean_band(ax, axis, data[f"{method}_adaptive_acc_group"], "group (attacked through its members)")
        _mean_band(ax, axis, data[f"{method}_worst_acc_group"], "group, right under both (a) and (b)", "v--")
        ax.set_title(f"(b) adaptive: each attacked directly, {method.upper()}")
        for ax in axes[row, :2]:
            ax.set_ylabel("accuracy")
            ax.axhline(0.1, color="gray", linestyle=":", linewidth=1)
        ax = axes[row, 2]
        _mean_band(ax, axis, data[f"{method}_transfer_group_vs_original_diff"], "group - original, transfer (a)")
        _mean_band(ax, axis, data[f"{method}_adaptive_group_vs_original_diff"], "group - original, adaptive (b)")
        _mean_band(ax, axis, data[f"{method}_worst_group_vs_original_diff"], "group - original, worst of (a) and (b)",
                   "v--")
        _mean_band(ax, axis, data[f"{method}_noise_group_vs_original_diff"], "group - original, random-sign noise",
                   "s--")
        _mean_band(ax, axis, data[f"{method}_transfer_independent_vs_original_diff"],
                   "independent CNN - original, transfer", "^--")
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_ylabel("accuracy difference")
        ax.set_title("(c) gains and controls")
        for ax in axes[row]:
            ax.set_xlabel(xlabel)
            ax.set_xticks(axis)  # the strengths attacked: FGSM 0, 1, 2, 4, 8; PGD iterations 0, 1, 3, 10, 20
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
