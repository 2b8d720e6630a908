"""The checks of the standard robustness evaluation (robustness.py): the sanity checks, built from every attack
alone on the audit images, and the convergence check; docs/cifar.md ("Sanity checks", "Convergence") gives their
reasons. Torch-free: the report reads the saved checks with failed_checks and convergence_rows.
"""
import numpy as np

SANITY_CONFIDENCE = 0.99   # one-sided: a check fires by chance on at most 1 % of equally strong attack pairs
CONVERGENCE_TOLERANCE = 0.005  # doubling the strongest attack may break at most 0.5 % of the audit images


def sanity_slack(a, b, n):
    """How much worse (in accuracy) attack a may look than attack b on the same n images by chance alone: the
    one-sided SANITY_CONFIDENCE bound z sqrt(2 p (1 - p) / n) + 1 / n, p = (a + b) / 2.  a, b: [R] or scalars."""
    p = (np.asarray(a, dtype=float) + np.asarray(b, dtype=float)) / 2
    from scipy.stats import norm  # here: the report imports this module's constants without scipy.stats
    return norm.ppf(SANITY_CONFIDENCE) * np.sqrt(2 * p * (1 - p) / n) + 1 / n


def alone_accuracy(clean, correct, audit):
    """[A, R]: the accuracy on the first `audit` images under each attack alone. clean [N], correct [A, R, N] (True
    where an attack did not run, so only attacks that ran on every audit image are standalone: Attack.runs_on)."""
    return (clean[:audit] & correct[:, :, :audit]).mean(axis=-1)


def sanity_check_names(attacks):
    """{check name: what it checks} for a suite (robustness.Attack tuple), in saved order."""
    names = {"complete": "every attack of the suite ran alone on the audit images"}
    for attack in attacks:
        if attack.kind in ("white-box", "gradient-free"):
            names[f"{attack.name}_vs_fgsm"] = f"{attack.label} alone <= FGSM alone + binomial slack"
        if attack.kind == "white-box":
            names[f"{attack.name}_vs_transfer"] = f"{attack.label} alone <= transfer alone + binomial slack"
    names["monotone_in_radius"] = "robust accuracy does not increase with the radius"
    return names


def sanity_checks(alone, robust, names, audit, skipped=()):
    """{check name: ok [R] bool} for one classifier. alone: {attack name: standalone accuracy [R] on the audit
    images}; robust: robust accuracy [R]; names: SANITY_CHECKS; audit: the number of audit images; skipped: the
    attacks left out on purpose, whose checks pass. Any other attack of the names that is absent fails 'complete'
    and its own checks."""
    radii = len(robust)
    expected = {n.rsplit("_vs_", 1)[0] for n in names if "_vs_" in n} - set(skipped) | {"fgsm", "transfer"}
    out = {}
    for name in names:
        if name == "complete":
            out[name] = np.full(radii, expected <= set(alone))
        elif name == "monotone_in_radius":
            out[name] = np.concatenate([[True], np.diff(robust) <= 0])
        else:
            attack, reference = name.rsplit("_vs_", 1)
            if attack not in expected or attack not in alone or reference not in alone:
                out[name] = np.full(radii, attack not in expected)  # left out on purpose: nothing to check
                continue
            a, b = np.asarray(alone[attack]), np.asarray(alone[reference])
            out[name] = a <= b + sanity_slack(a, b, audit)
    return out


def converged(doubled_broken, audit, tolerance=CONVERGENCE_TOLERANCE):
    """[R] bool: doubling the strongest attack broke at most `tolerance` of the `audit` images (doubled_broken [R])."""
    return np.asarray(doubled_broken) / audit <= tolerance


def failed_checks(data, classifiers, check_texts):
    """The violated sanity checks of a figure's arrays (sanity_<c> [S, K, R], radii, seeds), one line each ('seed 0,
    group, radius 2/255: ... fails'); [] if none. check_texts: each check's text, in the saved order."""
    texts, lines = list(check_texts), []
    for c in (c for c in classifiers if f"sanity_{c}" in data):
        sanity = np.asarray(data[f"sanity_{c}"]).reshape(-1, len(texts), len(data["radii"]))  # [S, K, R]
        for s, k, r in zip(*np.nonzero(~sanity)):
            lines.append(f"seed {int(data['seeds'][s]) if 'seeds' in data else s}, {c}, radius "
                         f"{data['radii'][r] * 255:g}/255: {texts[k]} fails")
    return lines


def attacks_run(data, c, attacks):
    """[A] bool: the attacks that ran on classifier c in every seed (saved attacks_run_<c>; all, for older files)."""
    return np.reshape(data.get(f"attacks_run_{c}", np.ones(attacks, dtype=bool)), (-1, attacks)).all(axis=0)


def convergence_rows(data, attack_labels, classifiers, labels, alone=False):
    """The convergence table of a figure's arrays, per classifier and radius: [classifier, radius, robust accuracy
    after each attack (mean over seeds; 'not run' where left out) ..., audit-image robust accuracy before -> after
    doubling the strongest attack, 'not converged' if that failed in some seed]. labels: {classifier: label}; alone:
    each cell also gives the attack's standalone accuracy in brackets."""
    rows = []
    for c in (c for c in classifiers if f"converged_{c}" in data):
        cumulative = np.asarray(data[f"cumulative_acc_{c}"]).reshape(-1, len(attack_labels), len(data["radii"]))
        run = attacks_run(data, c, len(attack_labels))
        standalone = np.mean(np.reshape(data[f"alone_acc_{c}"], cumulative.shape), axis=0) if alone else None
        for r, radius in enumerate(data["radii"]):
            strongest = sorted({attack_labels[int(a)] for a in np.ravel(data[f"strongest_{c}"])[r::len(data["radii"])]
                                if a >= 0})
            ok = bool(np.all(np.asarray(data[f"converged_{c}"])[..., r]))
            rows.append([labels[c], f"{radius * 255:g}/255"]
                        + [(f"{cumulative[:, a, r].mean():.3f}" + (f" ({standalone[a, r]:.3f})" if alone and
                                                                       np.isfinite(standalone[a, r]) else ""))
                           if run[a] else "not run" for a in range(len(attack_labels))]
                        + [f"{np.mean(data[f'audit_robust_acc_{c}'][..., r]):.3f} -> "
                           f"{np.mean(data[f'doubled_acc_{c}'][..., r]):.3f} ({', '.join(strongest)} x 2)"
                           + ("" if ok else " not converged")])
    return rows
