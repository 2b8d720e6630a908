"""Adversarial attacks (Fig. 11), an ensemble as one classifier for them (EnsembleMeanProbability), and McNemar's
exact test on two classifiers' per-image outcomes.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gfs.cifar.ensembles import member_logits


def fgsm(model, x, y, radius, clip=(0.0, 1.0), loss_fn=F.cross_entropy):
    """Fast gradient sign method (Goodfellow et al. 2015), one untargeted L-inf step: x_adv = clamp(x + radius *
    sign(d loss(model(x), y) / dx), clip).  x [B, 3, 32, 32], y [B] -> x_adv [B, 3, 32, 32], detached. Defaults:
    advertorch's GradientSignAttack, which the paper used (only the gradient's sign counts, so the loss's reduction
    does not matter)."""
    x_adv = x.detach().clone().requires_grad_(True)
    grad, = torch.autograd.grad(loss_fn(model(x_adv), y), x_adv)
    return torch.clamp(x.detach() + radius * grad.sign(), clip[0], clip[1])


def pgd_iterates(model, x, y, radius=0.3, step=0.01, iterations=40, random_start=True, clip=(0.0, 1.0),
                 loss_fn=F.cross_entropy, generator=None):
    """Projected gradient descent (Madry et al. 2018), untargeted, in the L-inf ball of that radius: yields (t, x_t)
    for t = 0 ... iterations, so that one run gives every shorter attack too:
        x_0 = clamp(x + U(-radius, radius), clip)          (x_0 = x without random start)
        x_{t+1} = clamp(x + clamp(x_t + step * sign(grad_t) - x, -radius, radius), clip)
    x [B, 3, 32, 32], y [B]; each x_t [B, 3, 32, 32] is detached. Defaults: advertorch's PGDAttack, which the paper
    used (eps_iter = step, nb_iter = iterations, rand_init = random_start). generator: for the random start (on x's
    device); None uses torch's global one, as advertorch does."""
    x = x.detach()
    x_adv = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-radius, radius, generator=generator)
        x_adv = torch.clamp(x + noise, clip[0], clip[1])
    yield 0, x_adv
    for t in range(1, iterations + 1):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(loss_fn(model(x_adv), y), x_adv)
        delta = torch.clamp(x_adv.detach() + step * grad.sign() - x, -radius, radius)
        x_adv = torch.clamp(x + delta, clip[0], clip[1])
        yield t, x_adv


def pgd(model, x, y, **settings):
    """The last iterate of pgd_iterates (its keyword arguments and defaults): x_adv [B, 3, 32, 32], detached."""
    for _, x_adv in pgd_iterates(model, x, y, **settings):
        pass
    return x_adv


class EnsembleMeanProbability(nn.Module):
    """The target of the adaptive attacks: x [B, 3, 32, 32] -> log of the ensemble's mean probability [B, C], so that
    cross_entropy(output, y) = -log(mean_n p_n(y | x)); gradients flow through every member into the image. model: a
    CifarCNN with a fitted group action; generator: the draw of the member matrices (random modes). Members with
    non-finite outputs are left out, as in the evaluation."""

    def __init__(self, model, mode="group", generator=None):
        super().__init__()
        self.model = model
        self.lower, self.upper = model.group_action.member_matrices(mode, generator)

    def forward(self, x):
        log_p = member_logits(self.model, self.model.features(x), self.lower, self.upper).log_softmax(dim=-1)
        finite = torch.isfinite(log_p).all(dim=-1, keepdim=True)  # [M, B, 1]
        log_p = torch.where(finite, log_p, -torch.inf)
        return torch.logsumexp(log_p, dim=0) - finite.sum(dim=0).clamp(min=1).log()


def mcnemar(correct_a, correct_b):
    """McNemar's exact test of two classifiers on the same images, correct_a, correct_b: bool [N]. Returns (gained,
    lost, p): the images only a gets right, those only b gets right, and the two-sided exact binomial test of gained
    in gained + lost trials at 1/2 (p = 1 when no image is discordant)."""
    from scipy.stats import binomtest
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    gained, lost = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
    return gained, lost, float(p)


def paired_comparison(data, name, a, b):
    """McNemar of a vs b per column (strength or radius) into data: <name>_diff (accuracy of a - accuracy of b),
    _gained, _lost, _p [K]. a, b: [K] bool arrays [N] of the same images, right or wrong."""
    stats = [mcnemar(ca, cb) for ca, cb in zip(a, b)]
    data[f"{name}_diff"] = np.array([ca.mean() - cb.mean() for ca, cb in zip(a, b)])
    data[f"{name}_gained"] = np.array([s[0] for s in stats], dtype=np.int64)
    data[f"{name}_lost"] = np.array([s[1] for s in stats], dtype=np.int64)
    data[f"{name}_p"] = np.array([s[2] for s in stats])
