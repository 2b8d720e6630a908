"""The standard robustness evaluation (robustness.py) as text (robustness_table) and figure (plot_robustness)."""
import numpy as np

from gfs.cifar.suite_checks import attacks_run, convergence_rows
from gfs.cifar.robustness import (ALL_CLASSIFIERS, ATTACKS, CLASSIFIER_LABELS, COMPARISONS, CONTROLS, SHOWN_COMPARISONS,
                                  TRAINED_CONTROLS, sanity_failures)


def seed_spread_text(values, form="{:+.3f}"):
    """'mean ± std [min, max]' over seeds of values [S]."""
    values = np.asarray(values, dtype=float)
    return (form.format(values.mean()) + f" ± {values.std():.3f}"
            + (f" [{form.format(values.min())}, {form.format(values.max())}]" if len(values) > 1 else ""))


def robustness_table(data, attacks=ATTACKS):
    """The suite as text: robust accuracy per classifier and radius (mean ± std over seeds), the paired differences
    with McNemar's largest p over seeds, the convergence table, and the sanity checks."""
    radii = [f"{r * 255:g}/255" for r in data["radii"]]
    rows = ["robust accuracy (right under every attack), mean ± std over seeds [min, max]"]
    for c in ALL_CLASSIFIERS:
        cells = [f"{radius}: {seed_spread_text(data[f'robust_acc_{c}'][:, r], '{:.3f}')}"
                 for r, radius in enumerate(radii)]
        rows.append(f"  {CLASSIFIER_LABELS[c]:<36}" + "  ".join(cells))
    rows.append("paired differences of the robust outcomes (a - b), McNemar p (largest over seeds)")
    for name in tuple(COMPARISONS) + tuple(f"group_vs_{c}" for c in TRAINED_CONTROLS):
        rows.append(f"  {name:<36}" + "  ".join(f"{radius}: {seed_spread_text(data[f'{name}_diff'][:, r])} "
                                                f"(p {data[f'{name}_p'][:, r].max():.1g})"
                                                for r, radius in enumerate(radii)))
    rows.append("convergence: robust accuracy after each attack (" + ", ".join(a.label for a in attacks)
                + "); audit images before -> after doubling the strongest attack")
    rows += ["  " + " | ".join(row) for row in convergence_rows(data, [a.label for a in attacks], ALL_CLASSIFIERS,
                                                                                CLASSIFIER_LABELS)]
    failures = sanity_failures(data)
    rows.append("sanity checks: " + ("all passed" if not failures else "FAILED (evaluation failed):"))
    return "\n".join(rows + [f"  {line}" for line in failures])


# One line style and marker per curve, so that no curve hides another (the controls may coincide).
STYLES = {"original": "o-", "group": "s-", "perm_interp": "^--", "independent": "v:", "deep": "D-."}


def plot_robustness(data, title=None, attacks=ATTACKS):
    """The figure of robustness_figure_data's arrays (one numerics): robust accuracy against the radius, the group
    ensemble through the cascade, Square against its queries, the differences group - each; mean over seeds, band
    min-max."""
    import matplotlib.pyplot as plt
    from gfs.cifar.paper_protocol import mean_band
    axis = np.asarray(data["radii"]) * 255
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    for c in ALL_CLASSIFIERS:
        mean_band(axes[0], axis, data[f"robust_acc_{c}"], CLASSIFIER_LABELS[c], STYLES[c])
    axes[0].set_title("(a) robust accuracy (worst case over the suite)")
    cumulative = np.asarray(data["cumulative_acc_group"]).reshape(-1, len(attacks), len(axis))
    run = attacks_run(data, "group", len(attacks))
    markers = "ovs^Dx*"
    for a, attack in ((a, attack) for a, attack in enumerate(attacks) if run[a]):
        mean_band(axes[1], axis, cumulative[:, a], f"after {attack.label}", markers[a % len(markers)] + "--")
    if "doubled_acc_group" in data:
        mean_band(axes[1], axis, data["doubled_acc_group"], "audit images, strongest attack doubled", "*:")
    axes[1].set_title("(b) group ensemble through the cascade")
    if "square_curve_group" in data:
        queries = np.asarray(data["square_curve_queries_group"]).reshape(-1, np.shape(data["square_curve_group"])[-1])[0]
        for c, line in (("original", "-"), ("group", "--")):
            curve = np.asarray(data[f"square_curve_{c}"]).reshape(-1, len(axis), len(queries))
            for r, radius in enumerate(axis) if not np.isnan(curve).all() else ():  # NaN: Square did not run
                mean_band(axes[2], queries, curve[:, r], f"{CLASSIFIER_LABELS[c]}, {radius:g}/255",
                          markers[r % len(markers)] + line)
        axes[2].set_xscale("log")
        axes[2].set_xlabel("Square queries")
    axes[2].set_title("(c) Square alone against its queries (audit images)")
    for c, (name, label) in zip(("original",) + CONTROLS, SHOWN_COMPARISONS.items()):
        mean_band(axes[3], axis, data[f"{name}_diff"], label, STYLES[c])
    axes[3].axhline(0.0, color="k", linewidth=0.8)
    axes[3].set_title("(d) differences of robust accuracy")
    for k, ax in enumerate(axes):
        if k != 2:
            ax.set_xlabel("L-inf radius (x 1/255)")
            ax.set_xticks(axis)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # (c) is empty where Square did not run
            ax.legend(fontsize=7)
    axes[0].set_ylabel("accuracy")
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
