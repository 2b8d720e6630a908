"""The FGSM and PGD attacks of cnn.py (Fig. 11): their defining properties and agreement with
torchattacks, a maintained attack library, on the same model and inputs."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gfs.cifar import attacks
from gfs.cifar.attacks import fgsm, pgd


def small_cnn(seed=0):
    """The Fig. 11 CNN's layer types at a smaller width: conv -> LeakyReLU -> maxpool -> linear."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding="same"), nn.LeakyReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 16 * 16, 16), nn.LeakyReLU(0.1),
                         nn.Linear(16, 10))


def linear_model(seed=0):
    """Logits linear in the image, so the cross-entropy is convex in the image."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


def images(batch=16, seed=1):
    """Images in [0, 1], with some pixels exactly at the bounds so that clipping matters."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, 32, 32, generator=generator)
    x[:, 0, :4] = 0.0
    x[:, 1, :4] = 1.0
    y = torch.randint(0, 10, (batch,), generator=generator)
    return x, y


def per_sample_loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def test_zero_strength_leaves_images_unchanged():
    model, (x, y) = small_cnn(), images()
    assert torch.equal(fgsm(model, x, y, radius=0.0), x)
    assert torch.equal(pgd(model, x, y, radius=0.0, iterations=3), x)
    assert torch.equal(pgd(model, x, y, iterations=0, random_start=False), x)


@pytest.mark.parametrize("eps", [0.003, 0.05, 0.3])
def test_perturbation_stays_in_eps_ball_and_clip_range(eps):
    model, (x, y) = small_cnn(), images()
    for clip in [(0.0, 1.0), (-0.5, 0.5)]:
        x_in = x + clip[0]  # images inside this clip range
        adversarial = [fgsm(model, x_in, y, eps, clip=clip),
                       pgd(model, x_in, y, radius=eps, step=eps / 4, iterations=10, clip=clip),
                       pgd(model, x_in, y, radius=eps, step=0.2, iterations=3, clip=clip,
                           random_start=False)]
        for x_adv in adversarial:
            assert (x_adv - x_in).abs().max() <= eps + 1e-6
            assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
            # The attack does move the images (so the two bounds above are not vacuous).
            assert (x_adv - x_in).abs().max() >= min(eps, 0.2) / 4 - 1e-6


def test_clip_range_is_enforced_even_for_images_outside_it():
    # The paper's data lie in [-0.5, 0.5] while its attacks clip to [0, 1] (B2 in docs/differences.md):
    # every negative pixel ends at 0 or above.
    model, (x, y) = small_cnn(), images()
    x = x - 0.5
    for x_adv in [fgsm(model, x, y, 0.003), pgd(model, x, y, iterations=1)]:
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x < 0).float().mean() > 0.3


def test_fgsm_is_one_pgd_step_without_random_start():
    model, (x, y) = small_cnn(), images()
    for eps in [0.003, 0.012, 0.1]:
        one_step = pgd(model, x, y, radius=eps, step=eps, iterations=1, random_start=False)
        torch.testing.assert_close(fgsm(model, x, y, eps), one_step, rtol=0, atol=1e-6)
    # ... and differs from a PGD step of a different size (the comparison can fail).
    two_sizes = pgd(model, x, y, radius=0.1, step=0.05, iterations=1, random_start=False)
    assert (fgsm(model, x, y, 0.1) - two_sizes).abs().max() > 0.04


def test_fgsm_steps_along_the_gradient_sign_and_stops_at_the_clip():
    model, (x, y) = linear_model(), images(batch=4)
    x_in = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(x_in), y), x_in)
    x_adv = fgsm(model, x, y, radius=0.01)
    step = x_adv - x
    inside = (x > 0.01) & (x < 0.99)
    torch.testing.assert_close(step[inside], 0.01 * grad.sign()[inside], rtol=0, atol=1e-6)
    assert torch.all(step[x == 1.0] <= 0) and torch.all(step[x == 0.0] >= 0)


def test_loss_of_a_convex_model_never_decreases():
    # For logits linear in x the cross-entropy is convex in x, and each FGSM/PGD step moves every
    # pixel along its gradient sign (or not at all), so no sample's loss can go down.
    model, (x, y) = linear_model(), images(batch=32)
    clean = per_sample_loss(model, x, y)
    assert torch.all(per_sample_loss(model, fgsm(model, x, y, 0.01), y) >= clean - 1e-5)
    previous = clean
    for iterations in range(1, 6):  # PGD's iterates: iterate t is the result of t iterations
        x_adv = pgd(model, x, y, radius=0.03, step=0.01, iterations=iterations, random_start=False)
        current = per_sample_loss(model, x_adv, y)
        assert torch.all(current >= previous - 1e-5)
        previous = current
    assert (previous - clean).min() > 0.01  # it did go up, for every sample


def test_attacks_raise_the_loss_and_lower_the_accuracy_of_a_cnn():
    model, (x, y) = small_cnn(), images(batch=64)
    with torch.no_grad():
        y = model(x).argmax(1)  # labels the model gets right: clean accuracy 1
    clean = per_sample_loss(model, x, y).mean()
    for x_adv in [fgsm(model, x, y, 0.03), pgd(model, x, y, radius=0.03, step=0.01, iterations=5)]:
        assert per_sample_loss(model, x_adv, y).mean() > clean + 0.01
    x_adv = pgd(model, x, y, iterations=10)  # the paper's radius 0.3
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).float().mean() < 0.5


def test_random_start_is_uniform_in_the_ball_and_reproducible():
    model, (x, y) = small_cnn(), images()
    x = torch.full_like(x, 0.5)
    start = pgd(model, x, y, radius=0.3, iterations=0, generator=torch.Generator().manual_seed(3))
    again = pgd(model, x, y, radius=0.3, iterations=0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(start, again)
    noise = start - x
    assert noise.abs().max() <= 0.3 + 1e-6
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.3 / 3 ** 0.5) < 0.01


# ---- agreement with a maintained library ------------------------------------------------------

def test_agrees_with_torchattacks():
    torchattacks = pytest.importorskip(
        "torchattacks", reason="reference library missing: pip install --no-deps 'torchattacks>=3.5.1,<4'")
    model, (x, y) = small_cnn(), images(batch=32)
    for eps in [0.003, 0.012, 0.1]:
        torch.testing.assert_close(fgsm(model, x, y, eps), torchattacks.FGSM(model, eps=eps)(x, y),
                                   rtol=0, atol=1e-6)
    for steps in [1, 3]:
        ours = pgd(model, x, y, radius=0.3, step=0.01, iterations=steps, random_start=False)
        theirs = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=steps, random_start=False)(x, y)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        # Random start: both draw U(-eps, eps) from torch's global generator.
        torch.manual_seed(7)
        ours = pgd(model, x, y, radius=0.3, step=0.01, iterations=steps)
        torch.manual_seed(7)
        theirs = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=steps, random_start=True)(x, y)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # The comparison is sensitive: a sign flip of the step is detected.
    flipped = fgsm(model, x, y, 0.1, loss_fn=lambda out, t: -F.cross_entropy(out, t))
    assert (flipped - torchattacks.FGSM(model, eps=0.1)(x, y)).abs().max() > 0.1


# ---- the two protocols' attacks (adversarial_images) -------------------------------------------

def test_protocols_attack_once_or_twice():
    from gfs.cifar.paper_protocol import adversarial_images, make_adversarial_cnn
    model, (x, y) = make_adversarial_cnn("paper"), images(batch=16)
    x_paper = x - 0.5  # the paper's data range
    for protocol, inputs in [("paper", x_paper), ("corrected", x)]:
        # Strength 0 is the clean data, unclamped even under the paper's protocol.
        assert torch.equal(adversarial_images(model, inputs, y, "FGSM", 0.0, protocol), inputs)
        assert torch.equal(adversarial_images(model, inputs, y, "PGD", 0, protocol), inputs)
    eps = 0.01
    corrected = adversarial_images(model, x, y, "FGSM", eps, "corrected")
    assert torch.equal(corrected, fgsm(model, x, y, eps))
    paper = adversarial_images(model, x_paper, y, "FGSM", eps, "paper", batch_size=5)
    twice = fgsm(model, fgsm(model, x_paper, y, eps), y, eps).clamp(0, 1)
    assert torch.equal(paper, twice)
    # Pixels well inside [0, 1] after the first clamp move by 2 eps when both steps agree.
    inside = (x_paper > 0.05) & (x_paper < 0.45)
    assert torch.isclose((paper - x_paper)[inside].abs().max(), torch.tensor(2 * eps), atol=1e-6)
    assert paper.min() >= 0 and (x_paper < 0).any()
    # PGD: the second attack starts from the first result, with its own random start and ball.
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(5)
    paper = adversarial_images(model, x_paper, y, "PGD", 2, "paper", generator=generator)
    generator = torch.Generator().manual_seed(5)
    first = pgd(model, x_paper, y, iterations=2, generator=generator)
    torch.testing.assert_close(paper, pgd(model, first, y, iterations=2, generator=generator).clamp(0, 1),
                               rtol=0, atol=0)
    assert (paper - x_paper).abs().max() > 0.3 + 0.1  # further than one 0.3 ball


def test_mcnemar_agrees_with_a_hand_computed_table():
    # 10 images: both right on 2, only a right on 6, only b right on 1, both wrong on 1.
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    b = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    gained, lost, p = attacks.mcnemar(a, b)
    assert (gained, lost) == (6, 1)
    # two-sided exact binomial test of 6 of 7 at 1/2: 2 * P(X <= 1) = 2 * (1 + 7) / 2^7
    assert p == pytest.approx(2 * 8 / 128)
    assert attacks.mcnemar(b, a) == (1, 6, pytest.approx(p))  # symmetric
    assert attacks.mcnemar(a, a) == (0, 0, 1.0)  # no discordant pair
    assert attacks.mcnemar([1, 0], [0, 1])[2] == pytest.approx(1.0)  # one each way
    # accuracy difference = (gained - lost) / N
    assert a.mean() - b.mean() == pytest.approx((gained - lost) / len(a))
