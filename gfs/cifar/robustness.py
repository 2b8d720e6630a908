"""The standard robustness evaluation of Fig. 11 (corrected protocol): an AutoAttack-style suite, run as a cascade.

Every classifier is attacked at the L-inf radii it is given (pixel scale [0, 1]) by the attacks of ATTACKS, in order:

  fgsm       FGSM on the classifier itself (one step; attacks.fgsm)
  transfer   PGD (attacks.pgd, step radius / 4, random start) on the single original model, the same
             images given to every classifier (the paper's threat model)
  apgd-ce    APGD on the cross-entropy (torchattacks.APGD), white-box
  apgd-dlr   APGD on the DLR margin loss (torchattacks.APGD), white-box
  square     Square (torchattacks.Square, margin loss), gradient-free: it needs no gradient, so a masked or
             saturated gradient cannot hide an adversarial image from it
An ensemble is attacked through the log of its mean probability (attacks.EnsembleMeanProbability): one trunk pass
per image, gradients through every member. Which images an attack runs on (Attack.runs_on): FGSM and transfer,
which are cheap, on every image the classifier gets right on clean data; APGD-CE on those of the audit images (the
first settings['audit_images']) and, elsewhere, on the images still right after FGSM and transfer; APGD-DLR and Square
only on the images still right after every attack before them (the cascade). So on the audit images the
accuracies of FGSM, transfer and APGD-CE alone are known, and the sanity checks compare them. An image is robust
only if it is right on clean data and under every attack (the per-image worst case, `robust`): the cascade changes
the cost, not that outcome. Every classifier is evaluated on the same first `images` test images.

Settings (SUITE_SETTINGS; their values are the Fig. 11 notebook's parameters, and docs/cifar.md sets them beside
AutoAttack's standard evaluation): APGD's iterations and restarts, Square's queries, the transfer PGD's steps and
the number of audit images. APGD-DLR (untargeted) stands in for APGD-T and FAB-T (AutoAttack's 'rand' version
uses the same pair).

Sanity checks (SANITY_CHECKS), saved with every evaluation, per classifier and radius: the iterative white-box
attack is at least as strong as the single step, and at least as strong as transfer (within SANITY_SLACK); the
robust accuracy does not increase with the radius. A violated check means the evaluation failed (a weak or masked
attack), never a robustness result.

Contents: SUITE_SETTINGS, Attack, ATTACKS, SANITY_CHECKS; worst_case, run_suite, sanity_checks; robustness_sweep,
robustness_figure_data, robustness_table, plot_robustness.
"""
import copy
import time
from typing import Callable, NamedTuple

import numpy as np
import torch

from gfs.cifar.ensembles import AGREEMENT_KEYS, held_out_agreement
from gfs.cifar.attacks import EnsembleMeanProbability, fgsm, paired_comparison, pgd
from gfs.cifar.cnn import compute_features
from gfs.cifar.ensembles import fit_and_measure, stack_seeds
from gfs.cifar.symmetry import FIT_NOISE, NUMERICS, derive_seed

# The suite's settings, by name: their values (and the radii and images) are Fig. 11's, set in its notebook.
SUITE_SETTINGS = ("apgd_steps", "apgd_restarts", "square_queries", "transfer_steps", "audit_images")
SANITY_SLACK = 0.01
ENSEMBLES = ("group", "perm_interp")  # the group ensemble and the shared-trunk control (interpolated permutation)
CLASSIFIERS = ("original",) + ENSEMBLES
# Paired comparisons within a seed: name -> (a, b); the independent CNN (another seed's original) is added across
# seeds by robustness_figure_data.
COMPARISONS = {"group_vs_original": ("group", "original"), "group_vs_perm_interp": ("group", "perm_interp"),
               "perm_interp_vs_original": ("perm_interp", "original")}
# The suite's names of the classifiers in tables and comparisons (the independent CNN is another seed's original).
CLASSIFIER_LABELS = {"original": "original", "group": "group", "perm_interp": "shared trunk",
                     "independent": "independent CNN"}
CONTROLS = ("independent", "perm_interp")  # what the group's gain must exceed to be robustness from the symmetry
# The group ensemble's comparisons that the plot and the report show, with their labels (group_vs_independent is
# added across seeds by robustness_figure_data).
SHOWN_COMPARISONS = {f"group_vs_{c}": f"group - {CLASSIFIER_LABELS[c]}" for c in ("original", "perm_interp", "independent")}


class Context(NamedTuple):
    """What an attack may use besides its target: the original model (the transfer source), the suite's settings,
    the seed of its random draws, and the transfer images of every radius (computed once, on all images)."""
    source: torch.nn.Module
    settings: dict
    seed: int
    transfer: dict  # {radius index: x_adv [N, 3, 32, 32]}


class Attack(NamedTuple):
    name: str         # the key in saved arrays
    label: str        # tables and plots
    kind: str         # 'single-step', 'transfer', 'white-box' or 'gradient-free'
    runs_on: str      # 'every' image right on clean data; 'audit': every one of the audit images, elsewhere the
                      # survivors; 'survivors': the images still right after every attack before it
    run: Callable     # (target, x [n, 3, 32, 32], y [n], index [n] into the suite's images, radius, r, Context) -> x_adv


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise ImportError("the standard robustness evaluation needs torchattacks: pip install --no-deps "
                          "'torchattacks>=3.5.1,<4' (see requirements.txt)") from None
    return torchattacks


def _torch_seed(context, *keys):
    return derive_seed(context.seed, *keys) % 2 ** 31


def _apgd(loss):
    def run(target, x, y, index, radius, r, context):
        attack = _torchattacks().APGD(target, norm="Linf", eps=radius, steps=context.settings["apgd_steps"],
                                   n_restarts=context.settings["apgd_restarts"], loss=loss,
                                   seed=_torch_seed(context, "apgd", loss, r))
        return attack(x, y)
    return run


def _square(target, x, y, index, radius, r, context):
    attack = _torchattacks().Square(target, norm="Linf", eps=radius, n_queries=context.settings["square_queries"],
                                 n_restarts=1, loss="margin", seed=_torch_seed(context, "square", r))
    return attack(x, y)


ATTACKS = (
    Attack("fgsm", "FGSM", "single-step", "every",
           lambda target, x, y, index, radius, r, context: fgsm(target, x, y, radius)),
    Attack("transfer", "transfer (PGD on the original)", "transfer", "every",
           lambda target, x, y, index, radius, r, context: context.transfer[r][index]),
    Attack("apgd_ce", "APGD-CE", "white-box", "audit", _apgd("ce")),
    Attack("apgd_dlr", "APGD-DLR", "white-box", "survivors", _apgd("dlr")),
    Attack("square", "Square", "gradient-free", "survivors", _square),
)


def transfer_images(source, x, y, radius, settings, generator, batch_size=500):
    """PGD on the source (the original model): radius, step radius / 4, settings['transfer_steps'] steps, random
    start.  x [N, 3, 32, 32], y [N] -> [N, 3, 32, 32]."""
    return torch.cat([pgd(source, x[i:i + batch_size], y[i:i + batch_size], radius=radius, step=radius / 4,
                          iterations=settings["transfer_steps"], generator=generator)
                      for i in range(0, len(x), batch_size)])


def worst_case(correct):
    """The per-image worst case over attacks: right only if right under every one.  correct [A, ..., N] -> [..., N]."""
    return np.all(np.asarray(correct, dtype=bool), axis=0)


@torch.no_grad()
def predict(target, x, batch_size=1000):
    """The target's class per image.  x [N, 3, 32, 32] -> [N] (argmax of logits or of the log mean probability)."""
    return torch.cat([target(x[i:i + batch_size]).argmax(dim=-1) for i in range(0, len(x), batch_size)])


def run_suite(target, x, y, radii, context, attacks=ATTACKS, batch_size=500, audit=None):
    """The cascade on one classifier.  x [N, 3, 32, 32] in [0, 1], y [N]; radii [R]; audit: the number of audit
    images (None: context.settings['audit_images'], or all without a context).

    Returns a dict of numpy arrays: audit; clean [N] bool (right on clean data); correct [A, R, N] bool (not broken by
    attack a: True where a did not run, because the image was already wrong); linf [A, R] (largest |x_adv - x|),
    low, high [A, R] (smallest and largest adversarial pixel value) and seconds [A, R] (wall time of each attack).
    """
    if audit is None:
        audit = len(x) if context is None else min(int(context.settings["audit_images"]), len(x))
    clean = (predict(target, x) == y).cpu().numpy()
    in_audit = np.arange(len(x)) < audit
    correct = np.ones((len(attacks), len(radii), len(x)), dtype=bool)
    linf, low, high = np.zeros(correct.shape[:2]), np.zeros(correct.shape[:2]), np.ones(correct.shape[:2])
    seconds = np.zeros(correct.shape[:2])
    for r, radius in enumerate(radii):
        for a, attack in enumerate(attacks):
            started = time.time()
            survivors = worst_case(correct[:a, r])
            todo = clean & {"every": True, "audit": in_audit | survivors, "survivors": survivors}[attack.runs_on]
            index = torch.from_numpy(np.flatnonzero(todo)).to(x.device)
            for part in torch.split(index, batch_size) if len(index) else ():
                x_adv = attack.run(target, x[part], y[part], part, radius, r, context).detach()
                correct[a, r, part.cpu().numpy()] = (predict(target, x_adv) == y[part]).cpu().numpy()
                linf[a, r] = max(linf[a, r], float((x_adv - x[part]).abs().max()))
                low[a, r], high[a, r] = min(low[a, r], float(x_adv.min())), max(high[a, r], float(x_adv.max()))
            seconds[a, r] = time.time() - started
    return {"audit": audit, "clean": clean, "correct": correct, "linf": linf, "low": low, "high": high,
            "seconds": seconds}


def alone_accuracy(clean, correct, attacks, audit):
    """[A, R]: the accuracy on the audit images (the first `audit`) under each attack alone; NaN for the attacks
    that run only on survivors there. clean [N], correct [A, R, N]."""
    return np.array([(clean[:audit] & correct[a, :, :audit]).mean(axis=-1) if attack.runs_on != "survivors"
                     else np.full(correct.shape[1], np.nan) for a, attack in enumerate(attacks)])


def _alone(alone, attacks, kind):
    """The lowest accuracy [R] under any one attack of the kind alone (alone_accuracy's [A, R])."""
    return np.nanmin([alone[a] for a, attack in enumerate(attacks) if attack.kind == kind], axis=0)


# name -> (what it checks, check(alone [A, R] on the audit images, robust accuracy [R], attacks) -> ok [R] bool)
SANITY_CHECKS = {
    "iterative_vs_single_step": (
        f"iterative white-box accuracy <= single-step accuracy + {SANITY_SLACK}",
        lambda alone, robust, attacks: _alone(alone, attacks, "white-box")
        <= _alone(alone, attacks, "single-step") + SANITY_SLACK),
    "white_box_vs_transfer": (
        f"white-box accuracy <= transfer accuracy + {SANITY_SLACK}",
        lambda alone, robust, attacks: _alone(alone, attacks, "white-box")
        <= _alone(alone, attacks, "transfer") + SANITY_SLACK),
    "monotone_in_radius": (
        "robust accuracy does not increase with the radius",
        lambda alone, robust, attacks: np.concatenate([[True], np.diff(robust) <= 0])),
}


def sanity_checks(clean, correct, attacks=ATTACKS, audit=None):
    """{check name: ok [R] bool} for one classifier (run_suite's clean [N], correct [A, R, N], audit: its number of
    audit images, None: all)."""
    alone = alone_accuracy(clean, correct, attacks, len(clean) if audit is None else audit)
    robust = (clean & worst_case(correct)).mean(axis=-1)
    return {name: np.asarray(check(alone, robust, attacks), dtype=bool) for name, (_, check) in SANITY_CHECKS.items()}


def summarise(suite, attacks=ATTACKS):
    """run_suite's dict -> the saved arrays of one classifier (no prefix): clean [N], robust [R, N] bool;
    clean_acc; robust_acc [R]; alone_acc [A, R] (alone_accuracy: on the audit images, under each attack alone; NaN
    for those that run only on survivors);
    cumulative_acc [A, R] (right under attacks 0..a); decided [A, R] int (images right on clean data that attack a
    is the first in the list to break); sanity [K, R] bool (SANITY_CHECKS order); linf, low, high, seconds [A, R]."""
    clean, correct, audit = suite["clean"], suite["correct"], suite.get("audit", len(suite["clean"]))
    robust = clean & worst_case(correct)
    alone = alone_accuracy(clean, correct, attacks, audit)
    cumulative = np.array([(clean & worst_case(correct[:a + 1])).mean(axis=-1) for a in range(len(attacks))])
    before = np.concatenate([clean[None, None].repeat(correct.shape[1], 1),
                             clean & np.logical_and.accumulate(correct, axis=0)], axis=0)  # [A + 1, R, N]
    decided = (before[:-1] & ~before[1:]).sum(axis=-1)
    checks = sanity_checks(clean, correct, attacks, audit)
    return {"clean": clean, "robust": robust, "clean_acc": np.float64(clean.mean()), "robust_acc": robust.mean(axis=-1),
            "alone_acc": alone, "cumulative_acc": cumulative, "decided": decided.astype(np.int64),
            "sanity": np.array([checks[k] for k in SANITY_CHECKS]),
            **{k: suite[k] for k in ("linf", "low", "high", "seconds") if k in suite}}


def robustness_sweep(model, fit_images, x, y, *, num_g, group_scale, radii, images, settings, seed=0,
                     numerics=tuple(NUMERICS), fit_noise=FIT_NOISE, attacks=ATTACKS, batch_size=500):
    """The standard robustness evaluation of one seed's corrected-protocol model, per numerics of the group action.

    model: the trained CNN (logits, input shift 0.5); fit_images [n, 3, 32, 32]: the pi images; x [N, 3, 32, 32] in
    [0, 1], y [N]: the evaluation images (the suite runs on the first `images`; agreement uses all N). The group
    (num_g elements at scale group_scale, derive_seed(seed, 'group', num_g, group_scale)) is fitted per numerics
    on a copy of the model; the shared-trunk control is the interpolated permutation of the same scale (members
    drawn from derive_seed(seed, 'members', 'perm_interp', 'suite')), which uses neither g nor pi: it is evaluated
    once, in the exact numerics if they are run, and saved with both.

    Returns {numerics: {key: array}}: radii [R], suite_images, the suite's settings (SUITE_SETTINGS); per classifier c in CLASSIFIERS
    summarise()'s arrays as <key>_<c> (the original's are the same in both numerics); COMPARISONS as
    <name>_diff/_gained/_lost/_p [R]; symmetry_error, symmetry_error_fitted; per ensemble m held-out agreement
    (ensembles.AGREEMENT_KEYS) as heldout_<key>_<m>, on all N evaluation images.
    """
    if set(settings) != set(SUITE_SETTINGS):
        raise ValueError(f"the suite's settings are {', '.join(SUITE_SETTINGS)}, not {', '.join(settings)}")
    device = next(model.parameters()).device
    model.eval().group_action.set_mode("plain")
    x_all, y_all = x.to(device), y.to(device)
    x, y = x_all[:images], y_all[:images]
    generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "transfer"))
    transfer = {r: transfer_images(model, x, y, radius, settings, generator, batch_size) for r, radius in enumerate(radii)}
    context = Context(model, settings, seed, transfer)
    original = summarise(run_suite(model, x, y, radii, context, attacks, batch_size), attacks)
    fit_features = compute_features(model, fit_images)
    eval_features = compute_features(model, x_all)
    moved, out = {}, {}
    for name in numerics:
        moved[name] = copy.deepcopy(model)
        moved[name].group_action.fit_noise = fit_noise[name]
        _, error = fit_and_measure(moved[name], fit_features, num_g, group_scale, seed, name)
        out[name] = {"radii": np.asarray(radii, dtype=np.float64), "suite_images": np.int64(len(x)),
                     "group_scale": np.float64(group_scale), "num_g": np.int64(num_g),
                     "symmetry_error": np.float64(error["logits"]), "symmetry_error_fitted": np.float64(error["fitted"]),
                     **{k: np.int64(v) for k, v in settings.items()}, **{f"{k}_original": v for k, v in original.items()}}
    # The shared-trunk control uses neither g nor pi: it is evaluated once, in the exact numerics where there is one.
    control = _evaluate_ensemble(moved["exact" if "exact" in numerics else numerics[0]], "perm_interp", x, y, radii,
                                 context, attacks, batch_size, eval_features)
    for name in numerics:
        data = out[name]
        data.update(control)
        data.update(_evaluate_ensemble(moved[name], "group", x, y, radii, context, attacks, batch_size, eval_features))
        for comparison, (a, b) in COMPARISONS.items():
            paired_comparison(data, comparison, data[f"robust_{a}"], data[f"robust_{b}"])
    return out


def _evaluate_ensemble(model, mode, x, y, radii, context, attacks, batch_size, eval_features):
    """The suite and the held-out agreement of one ensemble of `model` (members drawn from derive_seed(seed,
    'members', mode, 'suite')): {key_<mode>: array}."""
    members = torch.Generator().manual_seed(derive_seed(context.seed, "members", mode, "suite"))
    target = EnsembleMeanProbability(model, mode, members)
    summary = summarise(run_suite(target, x, y, radii, context, attacks, batch_size), attacks)
    measured = held_out_agreement(model, eval_features, target.lower, target.upper)
    return {**{f"{k}_{mode}": v for k, v in summary.items()},
            **{f"heldout_{k}_{mode}": np.float64(measured[k]) for k in AGREEMENT_KEYS}}


SHARED = ("radii", "suite_images", "group_scale", "num_g") + SUITE_SETTINGS


def robustness_figure_data(results, seeds, independent_seeds, numerics):
    """The npz arrays of one numerics from the per-seed robustness_sweep results: every array gets a leading seed
    axis [S, ...] except SHARED; plus seeds, independent_seed [S], robust_acc_independent [S, R] (the independent
    CNN of seed s is the original of seed independent_seed[s], on the same images) and the comparison
    group_vs_independent_<diff|gained|lost|p> [S, R]."""
    data = stack_seeds([r[numerics] for r in results], shared=SHARED)
    other = [seeds.index(s) for s in independent_seeds]
    data.update(seeds=np.asarray(seeds), independent_seed=np.asarray(independent_seeds),
                robust_acc_independent=data["robust_acc_original"][other])
    per_seed = []
    for k, j in enumerate(other):
        part = {}
        paired_comparison(part, "group_vs_independent", data["robust_group"][k], data["robust_original"][j])
        per_seed.append(part)
    data.update(stack_seeds(per_seed, shared=()))
    return data


def suite_description(attacks=ATTACKS):
    """What the saved .json records about the suite, so that the report reads it without torch: the attacks in
    order (name, label, kind), the attacked classifiers, every classifier's label, the controls, the shown
    comparisons with their labels and the sanity checks (name -> text, in the order of the saved sanity arrays)."""
    return {"attacks": [{"name": a.name, "label": a.label, "kind": a.kind} for a in attacks],
            "classifiers": list(CLASSIFIERS), "labels": dict(CLASSIFIER_LABELS), "controls": list(CONTROLS),
            "shown_comparisons": dict(SHOWN_COMPARISONS),
            "sanity_checks": {name: text for name, (text, _) in SANITY_CHECKS.items()}}


def sanity_failures(data, attacks=ATTACKS):
    """The violated sanity checks of a figure's arrays, as lines ('seed 0, group, 2/255: ...'); [] if none."""
    lines = []
    for c in CLASSIFIERS:
        sanity = np.asarray(data[f"sanity_{c}"]).reshape(-1, len(SANITY_CHECKS), len(data["radii"]))  # [S, K, R]
        for s, k, r in zip(*np.nonzero(~sanity)):
            lines.append(f"seed {int(data['seeds'][s]) if 'seeds' in data else s}, {c}, radius "
                         f"{data['radii'][r] * 255:g}/255: {SANITY_CHECKS[list(SANITY_CHECKS)[k]][0]} fails")
    return lines


def seed_spread_text(values, form="{:+.3f}"):
    """'mean ± std [min, max]' over seeds of values [S]."""
    values = np.asarray(values, dtype=float)
    return (form.format(values.mean()) + f" ± {values.std():.3f}"
            + (f" [{form.format(values.min())}, {form.format(values.max())}]" if len(values) > 1 else ""))


def robustness_table(data, attacks=ATTACKS):
    """The suite as text: robust accuracy per classifier and radius (mean ± std over seeds), the paired differences
    with McNemar's largest p over seeds, which attack decided the images, and the sanity checks."""
    radii = [f"{r * 255:g}/255" for r in data["radii"]]
    rows = ["robust accuracy (right under every attack), mean ± std over seeds [min, max]"]
    for c in CLASSIFIERS + ("independent",):
        rows.append(f"  {CLASSIFIER_LABELS[c]:<36}" + "  ".join(f"{radius}: {seed_spread_text(data[f'robust_acc_{c}'][:, r], '{:.3f}')}"
                                                     for r, radius in enumerate(radii)))
    rows.append("paired differences of the robust outcomes (a - b), McNemar p (largest over seeds)")
    for name in tuple(COMPARISONS) + ("group_vs_independent",):
        rows.append(f"  {name:<36}" + "  ".join(f"{radius}: {seed_spread_text(data[f'{name}_diff'][:, r])} "
                                                f"(p {data[f'{name}_p'][:, r].max():.1g})"
                                                for r, radius in enumerate(radii)))
    rows.append("images first broken by each attack (sum over seeds and classifiers), per radius")
    decided = sum(np.asarray(data[f"decided_{c}"]).reshape(-1, len(attacks), len(radii)).sum(axis=0)
                  for c in CLASSIFIERS)
    for a, attack in enumerate(attacks):
        rows.append(f"  {attack.label:<36}" + "  ".join(f"{radius}: {int(decided[a, r]):>5}" for r, radius in
                                                        enumerate(radii)))
    failures = sanity_failures(data, attacks)
    rows.append("sanity checks: " + ("all passed" if not failures else "FAILED (evaluation failed):"))
    return "\n".join(rows + [f"  {line}" for line in failures])


def plot_robustness(data, title=None, attacks=ATTACKS):
    """One numerics: (a) robust accuracy against the radius for the original, the group ensemble, the shared-trunk
    control and the independent CNN; (b) the group ensemble's accuracy through the cascade (after each attack);
    (c) the differences group - original, group - shared trunk, group - independent. Mean over seeds, band min-max.
    data: robustness_figure_data's arrays. Returns the figure."""
    import matplotlib.pyplot as plt
    from gfs.cifar.paper_protocol import mean_band
    axis = np.asarray(data["radii"]) * 255
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for c in CLASSIFIERS + ("independent",):
        mean_band(axes[0], axis, data[f"robust_acc_{c}"], CLASSIFIER_LABELS[c])
    axes[0].set_title("(a) robust accuracy (worst case over the suite)")
    cumulative = np.asarray(data["cumulative_acc_group"]).reshape(-1, len(attacks), len(axis))
    for a, attack in enumerate(attacks):
        mean_band(axes[1], axis, cumulative[:, a], f"after {attack.label}", "s-" if attack.runs_on == "survivors" else "o--")
    axes[1].set_title("(b) group ensemble through the cascade")
    for name, label in SHOWN_COMPARISONS.items():
        mean_band(axes[2], axis, data[f"{name}_diff"], label)
    axes[2].axhline(0.0, color="k", linewidth=0.8)
    axes[2].set_title("(c) differences of robust accuracy")
    for ax in axes:
        ax.set_xlabel("L-inf radius (x 1/255)")
        ax.set_xticks(axis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("accuracy")
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
