"""The standard robustness evaluation of Fig. 11 (corrected protocol): an AutoAttack-grade suite (ATTACKS) run as a
cascade on every classifier at L-inf radii in pixel scale [0, 1]; its checks are in suite_checks.py, its table and
plot in robustness_report.py. docs/cifar.md ("The standard robustness evaluation") describes the attacks, the images
each runs on, what makes an image robust, the controls and the CPU budget; docs/outputs.md the saved arrays.
"""
import copy
import time
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import torch

from gfs.cifar.attacks import EnsembleMeanProbability, fgsm, paired_comparison, pgd
from gfs.cifar.cnn import compute_features
from gfs.cifar.ensembles import AGREEMENT_KEYS, fit_and_measure, held_out_agreement, stack_seeds
from gfs.cifar.suite_checks import alone_accuracy, converged, failed_checks, sanity_check_names, sanity_checks
from gfs.cifar.symmetry import FIT_NOISE, NUMERICS, derive_seed

# The suite's settings, by name: their values (and the radii and images) are Fig. 11's, set in its notebook.
SUITE_SETTINGS = ("apgd_steps", "apgd_restarts", "apgdt_restarts", "square_queries", "transfer_steps", "audit_images")
ENSEMBLES = ("group", "perm_interp")  # the group ensemble and the shared-trunk control (interpolated permutation)
CLASSIFIERS = ("original",) + ENSEMBLES  # per seed (robustness_sweep)
TRAINED_CONTROLS = ("independent", "deep")  # from the control CNNs, their own seeds (control_sweep)
ALL_CLASSIFIERS = CLASSIFIERS + TRAINED_CONTROLS
# Paired comparisons within a seed: name -> (a, b); robustness_figure_data adds those with the trained controls.
COMPARISONS = {"group_vs_original": ("group", "original"), "group_vs_perm_interp": ("group", "perm_interp"),
               "perm_interp_vs_original": ("perm_interp", "original")}
CLASSIFIER_LABELS = {"original": "original", "group": "group", "perm_interp": "shared trunk",
                     "independent": "independent CNN", "deep": "deep ensemble"}
CONTROLS = ("independent", "perm_interp", "deep")  # what the group's gain must exceed to come from the symmetry
# The group ensemble's comparisons that the plot and the report show, with their labels.
SHOWN_COMPARISONS = {f"group_vs_{c}": f"group - {CLASSIFIER_LABELS[c]}" for c in ("original",) + CONTROLS}
# Square's accuracy is read after these fractions of its queries (the robust-accuracy-against-queries curve).
SQUARE_CURVE_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
BATCH_SIZE = 500  # images per attack call


class Context(NamedTuple):
    """What an attack may use besides its target; the transfer images are computed once, on the source model."""
    settings: dict
    seed: int
    transfer: dict  # {radius index: x_adv [N, 3, 32, 32]}


class Attack(NamedTuple):
    name: str         # the key in saved arrays
    label: str        # tables and plots
    kind: str         # 'single-step', 'transfer', 'white-box' or 'gradient-free'
    runs_on: str      # 'every' image right on clean data; 'audit': every one of the audit images, elsewhere the
                      # survivors of every attack before it; 'audit only': the audit images, nowhere else;
                      # 'survivors': the survivors only (no standalone accuracy: its sanity checks fail)
    run: Callable     # (target, x [n, 3, 32, 32], y [n], index [n] into the suite's images, radius, r, Context)
                      # -> x_adv, or (x_adv, queries [n]) for a query-counting attack
    doubles: tuple = ()  # the settings doubled by the convergence check (its iterations and restarts)


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise ImportError("the standard robustness evaluation needs torchattacks: pip install --no-deps "
                          "'torchattacks>=3.5.1,<4' (see requirements.txt)") from None
    return torchattacks


def _torch_seed(context, *keys):
    return derive_seed(context.seed, *keys) % 2 ** 31


def _apgd(target, x, y, index, radius, r, context, loss):
    attack = _torchattacks().APGD(target, norm="Linf", eps=radius, steps=context.settings["apgd_steps"],
                                  n_restarts=context.settings["apgd_restarts"], loss=loss,
                                  seed=_torch_seed(context, "apgd", loss, r))
    return attack(x, y)


def _apgd_t(target, x, y, index, radius, r, context):
    attack = _torchattacks().APGDT(target, norm="Linf", eps=radius, steps=context.settings["apgd_steps"],
                                   n_restarts=context.settings["apgdt_restarts"], n_classes=10,
                                   seed=_torch_seed(context, "apgd-t", r))
    return attack(x, y)


def _square(target, x, y, index, radius, r, context):
    """One Square run: (x_adv, queries [n], the query at which each image broke; over the budget where it did not)."""
    attack = _torchattacks().Square(target, norm="Linf", eps=radius, n_queries=context.settings["square_queries"],
                                    n_restarts=1, loss="margin", seed=_torch_seed(context, "square", r))
    attack.init_hyperparam(x)
    torch.random.manual_seed(attack.seed)
    queries, x_adv = attack.attack_single_run(x, y)
    return x_adv, queries


ATTACKS = (
    Attack("fgsm", "FGSM", "single-step", "every",
           lambda target, x, y, index, radius, r, context: fgsm(target, x, y, radius)),
    Attack("transfer", "transfer (PGD on the single model)", "transfer", "every",
           lambda target, x, y, index, radius, r, context: context.transfer[r][index]),
    Attack("apgd_ce", "APGD-CE", "white-box", "audit", partial(_apgd, loss="ce"), ("apgd_steps", "apgd_restarts")),
    Attack("apgd_dlr", "APGD-DLR", "white-box", "audit", partial(_apgd, loss="dlr"), ("apgd_steps", "apgd_restarts")),
    Attack("apgd_t", "APGD-T", "white-box", "audit only", _apgd_t, ("apgd_steps", "apgdt_restarts")),
    Attack("square", "Square", "gradient-free", "audit only", _square, ("square_queries",)),
)
SANITY_CHECKS = sanity_check_names(ATTACKS)  # {name: what it checks}, saved in this order


class DeepEnsemble(torch.nn.Module):
    """The deep-ensemble control, scored and attacked as the group ensemble: x [B, 3, 32, 32] -> the log of the
    members' mean probability [B, 10]; members output logits or, with softmax_output, probabilities."""

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        log_p = torch.stack([m(x).clamp_min(1e-45).log() if getattr(m, "softmax_output", False)
                             else m(x).log_softmax(dim=-1) for m in self.members])  # [K, B, 10]
        return torch.logsumexp(log_p, dim=0) - np.log(len(self.members))


def deep_ensemble_accuracy(members, x, y):
    """Clean accuracy on x [N, 3, 32, 32], y [N]: {deep_member_acc [K], deep_ensemble_acc (mean probability)}."""
    device = next(members[0].parameters()).device
    x, y = x.to(device), y.to(device)
    return {"deep_member_acc": np.array([float((predict(m.eval(), x) == y).float().mean()) for m in members]),
            "deep_ensemble_acc": np.float64((predict(DeepEnsemble(members), x) == y).float().mean())}


def transfer_images(source, x, y, radius, settings, generator):
    """PGD on the source model: step radius / 4, settings['transfer_steps'] steps, random start.  x [N, 3, 32, 32],
    y [N] -> [N, 3, 32, 32]."""
    return torch.cat([pgd(source, x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE], radius=radius, step=radius / 4,
                          iterations=settings["transfer_steps"], generator=generator)
                      for i in range(0, len(x), BATCH_SIZE)])


def worst_case(correct):
    """The per-image worst case over attacks: right only if right under every one.  correct [A, ..., N] -> [..., N]."""
    return np.all(np.asarray(correct, dtype=bool), axis=0)


@torch.no_grad()
def predict(target, x, batch_size=1000):
    """The target's class per image.  x [N, 3, 32, 32] -> [N] (argmax of logits or of the log mean probability)."""
    return torch.cat([target(x[i:i + batch_size]).argmax(dim=-1) for i in range(0, len(x), batch_size)])


def _attack_images(attack, target, x, y, todo, radius, r, context, out, a):
    """Run attack number a on the images `todo` [N] bool, in batches, writing into run_suite's arrays `out`."""
    index = torch.from_numpy(np.flatnonzero(todo)).to(x.device)
    for part in torch.split(index, BATCH_SIZE) if len(index) else ():
        x_adv = attack.run(target, x[part], y[part], part, radius, r, context)
        if isinstance(x_adv, tuple):
            x_adv, queries = x_adv
            out["queries"][r, part.cpu().numpy()] = queries.cpu().numpy()
        x_adv = x_adv.detach()
        out["correct"][a, r, part.cpu().numpy()] = (predict(target, x_adv) == y[part]).cpu().numpy()
        out["linf"][a, r] = max(out["linf"][a, r], float((x_adv - x[part]).abs().max()))
        out["low"][a, r] = min(out["low"][a, r], float(x_adv.min()))
        out["high"][a, r] = max(out["high"][a, r], float(x_adv.max()))


def run_suite(target, x, y, radii, context, attacks=ATTACKS, audit=None, skip=()):
    """The cascade on one classifier, then the convergence check.  x [N, 3, 32, 32] in [0, 1], y [N]; radii [R]; audit:
    the number of audit images (None: context.settings['audit_images'], or all without a context); skip: the attacks
    not run on this classifier. Returns a dict of numpy arrays: audit; attacks_run [A] bool; clean [N] bool; correct
    [A, R, N] bool (True where attack a did not run); linf, low, high, seconds [A, R]; queries [R, N] (inf where no
    query-counting attack ran); strongest [R] (the white-box attack with the lowest standalone accuracy on the audit
    images, -1 if none); doubled_correct [R, N] (not broken by that attack with its `doubles` settings doubled, on
    the audit images still robust; True elsewhere); doubled_seconds [R]."""
    if audit is None:
        audit = len(x) if context is None else min(int(context.settings["audit_images"]), len(x))
    clean = (predict(target, x) == y).cpu().numpy()
    in_audit = np.arange(len(x)) < audit
    shape = (len(attacks), len(radii))
    run = np.array([attack.name not in skip for attack in attacks])
    out = {"audit": audit, "attacks_run": run, "clean": clean, "correct": np.ones(shape + (len(x),), dtype=bool),
           "linf": np.zeros(shape), "low": np.zeros(shape), "high": np.ones(shape), "seconds": np.zeros(shape),
           "queries": np.full((len(radii), len(x)), np.inf), "strongest": np.full(len(radii), -1, dtype=np.int64),
           "doubled_correct": np.ones((len(radii), len(x)), dtype=bool), "doubled_seconds": np.zeros(len(radii)),
           "query_budget": int(context.settings.get("square_queries", 0)) if context is not None else 0}
    for r, radius in enumerate(radii):
        for a, attack in enumerate(attacks):
            started = time.time()
            survivors = worst_case(out["correct"][:a, r])
            todo = clean & run[a] & {"every": True, "audit": in_audit | survivors, "audit only": in_audit,
                                     "survivors": survivors}[attack.runs_on]
            _attack_images(attack, target, x, y, todo, radius, r, context, out, a)
            out["seconds"][a, r] = time.time() - started
        alone = alone_accuracy(clean, out["correct"][:, r:r + 1], audit)[:, 0]
        white_box = [a for a, attack in enumerate(attacks)
                     if attack.kind == "white-box" and attack.runs_on != "every" and run[a]]
        if white_box and context is not None:
            started = time.time()
            strongest = min(white_box, key=lambda a: alone[a])
            attack = attacks[strongest]
            doubled = context._replace(settings={k: 2 * v if k in attack.doubles else v
                                                 for k, v in context.settings.items()})
            todo = clean & in_audit & worst_case(out["correct"][:, r])
            part = {"correct": out["doubled_correct"][None], "linf": np.zeros((1, len(radii))),
                    "low": np.zeros((1, len(radii))), "high": np.ones((1, len(radii))), "queries": out["queries"].copy()}
            _attack_images(attack, target, x, y, todo, radius, r, doubled, part, 0)
            out["strongest"][r] = strongest
            out["doubled_seconds"][r] = time.time() - started
    return out


def summarise(suite, attacks=ATTACKS):
    """run_suite's dict -> the saved arrays of one classifier, without the _<c> suffix and the seed axis (their
    shapes and meanings: docs/outputs.md)."""
    clean, correct, audit = suite["clean"], suite["correct"], suite.get("audit", len(suite["clean"]))
    robust = clean & worst_case(correct)
    alone = alone_accuracy(clean, correct, audit)
    run = np.asarray(suite.get("attacks_run", np.ones(len(attacks), dtype=bool)))
    alone[[attack.runs_on == "survivors" or not run[a] for a, attack in enumerate(attacks)]] = np.nan  # not alone
    cumulative = np.array([(clean & worst_case(correct[:a + 1])).mean(axis=-1) for a in range(len(attacks))])
    before = np.concatenate([clean[None, None].repeat(correct.shape[1], 1),
                             clean & np.logical_and.accumulate(correct, axis=0)], axis=0)  # [A + 1, R, N]
    decided = (before[:-1] & ~before[1:]).sum(axis=-1)
    standalone = {attack.name: alone[a] for a, attack in enumerate(attacks) if not np.isnan(alone[a]).all()}
    checks = sanity_checks(standalone, robust.mean(axis=-1), SANITY_CHECKS, audit,
                           skipped=[attack.name for a, attack in enumerate(attacks) if not run[a]])
    out = {"clean": clean, "robust": robust, "clean_acc": np.float64(clean.mean()), "robust_acc": robust.mean(axis=-1),
           "attacks_run": run, "alone_acc": alone, "cumulative_acc": cumulative, "decided": decided.astype(np.int64),
           "sanity": np.array([checks[k] for k in SANITY_CHECKS]),
           **{k: suite[k] for k in ("linf", "low", "high", "seconds") if k in suite}}
    if "doubled_correct" in suite:
        audit_robust = robust[:, :audit]
        broken = (audit_robust & ~suite["doubled_correct"][:, :audit]).sum(axis=-1)
        out.update(audit_robust_acc=audit_robust.mean(axis=-1), doubled_broken=broken.astype(np.int64),
                   doubled_acc=(audit_robust & suite["doubled_correct"][:, :audit]).mean(axis=-1),
                   converged=converged(broken, audit), strongest=suite["strongest"],
                   doubled_seconds=suite["doubled_seconds"])
    square = [a for a, attack in enumerate(attacks) if attack.name == "square"]
    if square and "queries" in suite:
        total = max(int(suite.get("query_budget", 0)), 1)
        points = np.unique(np.maximum(1, np.round(np.asarray(SQUARE_CURVE_FRACTIONS) * total)).astype(np.int64))
        queries = suite["queries"][:, :audit]
        broken_by = ~correct[square[0], :, :audit][:, None] & (queries[:, None] <= points[None, :, None])  # [R, Q, n]
        curve = (clean[:audit] & ~broken_by).mean(axis=-1)
        out.update(square_curve_queries=points, square_curve=curve if run[square[0]] else np.full(curve.shape, np.nan))
    return out


def _check_settings(settings):
    if set(settings) != set(SUITE_SETTINGS):
        raise ValueError(f"the suite's settings are {', '.join(SUITE_SETTINGS)}, not {', '.join(settings)}")


def _context(source, x, y, radii, settings, seed):  # the transfer images of every radius, on `source`
    generator = torch.Generator(device=x.device).manual_seed(derive_seed(seed, "transfer"))
    return Context(settings, seed, {r: transfer_images(source, x, y, radius, settings, generator)
                                    for r, radius in enumerate(radii)})


def skipped_attacks(costly_on, classifier):
    """The attacks left out on a classifier ('group_<numerics>' for a group ensemble): those of costly_on ({attack:
    the classifiers it runs on}; the CPU budget) that do not name it; () for None."""
    return tuple(name for name, on in (costly_on or {}).items() if classifier not in on)


def robustness_sweep(model, fit_images, x, y, *, num_g, group_scale, radii, images, settings, seed=0,
                     numerics=tuple(NUMERICS), attacks=ATTACKS, classifiers=None, costly_on=None):
    """The standard robustness evaluation of one seed's corrected-protocol model, per numerics of the group action:
    {numerics: {key: array}}: docs/outputs.md's keys without the seed axis, except the trained controls'.

    model: the trained CNN (logits, input shift 0.5); fit_images [n, 3, 32, 32]: the pi images; x [N, 3, 32, 32] in
    [0, 1], y [N]: the evaluation images (the suite runs on the first `images`; agreement uses all N). classifiers:
    the part of the seed's work to do ('original', 'perm_interp', 'group_<numerics>'; None: all), so that worker
    processes can share a seed (join_sweeps joins the parts). costly_on: skipped_attacks.
    """
    _check_settings(settings)
    wanted = set(classifiers or ["original", "perm_interp"] + [f"group_{name}" for name in numerics])
    device = next(model.parameters()).device
    model.eval().group_action.set_mode("plain")
    x_all, y_all = x.to(device), y.to(device)
    x, y = x_all[:images], y_all[:images]
    context = _context(model, x, y, radii, settings, seed)
    original = {}
    if "original" in wanted:
        suite = run_suite(model, x, y, radii, context, attacks, skip=skipped_attacks(costly_on, "original"))
        original = {f"{k}_original": v for k, v in summarise(suite, attacks).items()}
    fit_features = compute_features(model, fit_images)
    eval_features = compute_features(model, x_all)
    moved, out = {}, {}
    for name in numerics:
        moved[name] = copy.deepcopy(model)
        moved[name].group_action.fit_noise = FIT_NOISE[name]
        _, error = fit_and_measure(moved[name], fit_features, num_g, group_scale, seed, name)
        out[name] = {"radii": np.asarray(radii, dtype=np.float64), "suite_images": np.int64(len(x)),
                     "group_scale": np.float64(group_scale), "num_g": np.int64(num_g),
                     "symmetry_error": np.float64(error["logits"]), "symmetry_error_fitted": np.float64(error["fitted"]),
                     **{k: np.int64(v) for k, v in settings.items()}, **original}
    if "perm_interp" in wanted:  # once, in the exact numerics where there is one (it uses neither g nor pi)
        control = _evaluate_ensemble(moved["exact" if "exact" in numerics else numerics[0]], "perm_interp", x, y, radii,
                                     context, attacks, eval_features, costly_on)
        for name in numerics:
            out[name].update(control)
    for name in numerics:
        if f"group_{name}" in wanted:
            out[name].update(_evaluate_ensemble(moved[name], "group", x, y, radii, context, attacks, eval_features,
                                                costly_on, f"group_{name}"))
    return join_sweeps([out]) if classifiers is None else out


def join_sweeps(parts):
    """One seed's robustness_sweep parts joined into one, with the paired COMPARISONS."""
    out = {name: {k: v for part in parts for k, v in part[name].items()} for name in parts[0]}
    for data in out.values():
        for comparison, (a, b) in COMPARISONS.items():
            paired_comparison(data, comparison, data[f"robust_{a}"], data[f"robust_{b}"])
    return out


def _evaluate_ensemble(model, mode, x, y, radii, context, attacks, eval_features, costly_on, classifier=None):
    """The suite and held-out agreement of an ensemble: {key_<mode>: array}. classifier: its name in costly_on."""
    members = torch.Generator().manual_seed(derive_seed(context.seed, "members", mode, "suite"))
    target = EnsembleMeanProbability(model, mode, members)
    suite = run_suite(target, x, y, radii, context, attacks, skip=skipped_attacks(costly_on, classifier or mode))
    measured = held_out_agreement(model, eval_features, target.lower, target.upper)
    return {**{f"{k}_{mode}": v for k, v in summarise(suite, attacks).items()},
            **{f"heldout_{k}_{mode}": np.float64(measured[k]) for k in AGREEMENT_KEYS}}


def control_sweep(controls, x, y, *, radii, images, settings, seed, attacks=ATTACKS, which=TRAINED_CONTROLS,
                  costly_on=None):
    """The trained controls under the same suite, once for all seeds: the independent CNN (controls[0]) and the deep
    ensemble of all K >= 2 controls, on the first `images` of x [N, 3, 32, 32], y [N]. which: the subset to evaluate
    (two calls can share the work). Returns the controls' arrays of docs/outputs.md without the seed axis."""
    _check_settings(settings)
    if len(controls) < 2:
        raise ValueError(f"the deep ensemble needs at least 2 trained controls, not {len(controls)}")
    device = next(controls[0].parameters()).device
    for model in controls:
        model.eval().group_action.set_mode("plain")
    x, y = x[:images].to(device), y[:images].to(device)
    context = _context(controls[0], x, y, radii, settings, seed)
    out = {"radii": np.asarray(radii, dtype=np.float64), "deep_members": np.int64(len(controls)),
           "member_clean_acc_deep": np.array([float((predict(m, x) == y).float().mean()) for m in controls])}
    for name, target in (("independent", controls[0]), ("deep", DeepEnsemble(controls))):
        if name not in which:
            continue
        suite = run_suite(target, x, y, radii, context, attacks, skip=skipped_attacks(costly_on, name))
        out.update({f"{k}_{name}": v for k, v in summarise(suite, attacks).items()})
    return out


def robustness_figure_data(results, seeds, controls, control_seeds, numerics):
    """The npz arrays of one numerics (docs/outputs.md) from the per-seed robustness_sweep results and the one
    control_sweep result, whose arrays are repeated per seed so that every classifier reads alike."""
    shared = ("radii", "suite_images", "group_scale", "num_g") + SUITE_SETTINGS
    data = stack_seeds([dict(r[numerics], **controls) for r in results], shared=shared)
    data.update(seeds=np.asarray(seeds), control_seeds=np.asarray(control_seeds))
    per_seed = [{} for _ in seeds]
    for k, c in ((k, c) for k in range(len(seeds)) for c in TRAINED_CONTROLS):
        paired_comparison(per_seed[k], f"group_vs_{c}", data["robust_group"][k], data[f"robust_{c}"][k])
    data.update(stack_seeds(per_seed, shared=()))
    return data


def suite_description(attacks=ATTACKS):
    """The saved .json's `suite` description (docs/outputs.md), so that the report reads the suite without torch."""
    return {"attacks": [{"name": a.name, "label": a.label, "kind": a.kind} for a in attacks],
            "classifiers": list(CLASSIFIERS), "trained_controls": list(TRAINED_CONTROLS),
            "labels": dict(CLASSIFIER_LABELS), "controls": list(CONTROLS),
            "shown_comparisons": dict(SHOWN_COMPARISONS), "sanity_checks": dict(sanity_check_names(attacks))}


def sanity_failures(data):
    """The violated sanity checks of a figure's arrays, as lines ('seed 0, group, radius 2/255: ...'); [] if none."""
    return failed_checks(data, ALL_CLASSIFIERS, SANITY_CHECKS.values())
