"""The Fig. 10 figures and tables: the ensemble heat maps with the symmetry error and the held-out agreement beside
them, and the fit-size experiment (ensembles.fit_size_experiment).
"""
import numpy as np

from gfs.cifar.symmetry import ENSEMBLE_MODES, LABELS
from gfs.cifar.thresholds import AGREEMENT_THRESHOLD, SYMMETRY_TOLERANCE

# One criterion marks a cell "not a symmetry" here and in the report: the symmetry error of the pi the ensemble uses
# (with the numerics' fit noise) above SYMMETRY_TOLERANCE in some seed.
ERROR_KEY = "symmetry_error_fitted"


def plot_ensemble_heatmaps(grid, modes=ENSEMBLE_MODES, title=None):
    """Fig. 10: per mode, a heat map of the mean over seeds of (vote_acc - original_acc), "±std" (sample standard
    deviation) with several seeds, on one symmetric colour scale; '*': overflowing members in some seed; hatched: "not
    a symmetry" (ERROR_KEY above SYMMETRY_TOLERANCE in some seed). Then that error, the largest over seeds (log scale),
    and where the grid has it, heldout_agreement, the smallest over seeds. x = num_g, y = the group scale.
    grid: evaluate_grid()'s arrays with a leading seed axis [S, E, G] (stack_seeds), or of one seed. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    num_g, scales = grid["num_g"], grid["group_scale"]
    per_cell = lambda key: np.asarray(grid[key], dtype=float).reshape(-1, len(scales), len(num_g))  # [S, E, G]
    original = np.asarray(grid["original_acc"], dtype=float).reshape(-1, 1, 1)  # S = 1 for one seed's grid
    seeds = len(original)
    diffs = {m: per_cell(f"vote_acc_{m}") - original for m in modes}
    means = {m: np.nanmean(d, axis=0) for m, d in diffs.items()}
    stds = {m: np.nanstd(d, axis=0, ddof=1) if seeds > 1 else None for m, d in diffs.items()}
    error = per_cell(ERROR_KEY).max(axis=0)
    agreement = per_cell("heldout_agreement").min(axis=0) if "heldout_agreement" in grid else None
    overflow = {m: per_cell(f"overflow_{m}").any(axis=0) for m in modes}  # [E, G]: in some seed
    not_symmetry = ~(error <= SYMMETRY_TOLERANCE)  # NaN and inf included
    vmax = max(float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 0.0 for d in means.values()) or 1e-3
    panels = len(modes) + 1 + (agreement is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.0 * panels, 5.8), squeeze=False, layout="constrained")
    axes = axes[0]

    def panel(ax, values, title, text, color, **style):
        """values [E, G] as a heat map, with text(i, j) in colour color(i, j) on every cell."""
        image = ax.imshow(values, **style)
        ax.set_xticks(np.arange(len(num_g)), [str(n) for n in num_g], rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(np.arange(len(scales)), [f"{e:g}" for e in scales])
        ax.set_xlabel("# of transformed models (num_g)", fontsize=11)
        ax.set_ylabel(r"group scale $\epsilon$", fontsize=11)
        ax.set_title(title, fontsize=11)
        for i, j in np.ndindex(values.shape):  # row = group scale index, column = num_g index
            ax.text(j, i, text(i, j), ha="center", va="center", color=color(i, j), fontsize=5.5)
        return image

    for ax, mode in zip(axes, modes):
        mean, std, marked = means[mode], stds[mode], overflow[mode]

        def text(i, j):
            spread = f"\n±{std[i, j]:.3f}" if std is not None and np.isfinite(std[i, j]) else ""
            value = f"{mean[i, j]:+.3f}" if np.isfinite(mean[i, j]) else "nan"
            return value + spread + ("*" if marked[i, j] else "")
        image = panel(ax, mean, f"accuracy ({LABELS[mode]} - original)", text,
                      lambda i, j: "w" if abs(np.nan_to_num(mean[i, j])) > 0.5 * vmax else "k",
                      cmap="coolwarm_r", vmin=-vmax, vmax=vmax)
        for i, j in zip(*np.nonzero(not_symmetry)):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.45",
                                       linewidth=0))
    fig.colorbar(image, ax=list(axes[:len(modes)]), shrink=0.7, pad=0.01)
    shown = np.where(np.isfinite(error), np.clip(error, 1e-17, None), np.nan)
    finite = shown[np.isfinite(shown)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (1e-16, 1.0)
    low, high = min(low, SYMMETRY_TOLERANCE / 10), max(high, SYMMETRY_TOLERANCE * 10)
    error_image = panel(
        axes[len(modes)], shown, "symmetry error on the fitting images",
        lambda i, j: "inf" if np.isinf(error[i, j]) else ("nan" if np.isnan(error[i, j]) else f"{error[i, j]:.0e}"),
        lambda i, j: "k" if np.isfinite(shown[i, j]) and shown[i, j] > np.sqrt(low * high) else "w",
        cmap="viridis", norm=LogNorm(vmin=low, vmax=high))
    colorbar = fig.colorbar(error_image, ax=axes[len(modes)], shrink=0.7, pad=0.01)
    colorbar.ax.axhline(SYMMETRY_TOLERANCE, color="r", linewidth=2)  # the tolerance
    if agreement is not None:
        shown = panel(axes[-1], agreement, "agreement on held-out images", lambda i, j: f"{agreement[i, j]:.2f}",
                      lambda i, j: "k" if agreement[i, j] > 0.5 else "w", cmap="viridis", vmin=0.0, vmax=1.0)
        colorbar = fig.colorbar(shown, ax=axes[-1], shrink=0.7, pad=0.01)
        colorbar.ax.axhline(AGREEMENT_THRESHOLD, color="r", linewidth=2)
    notes = [f"mean over {seeds} seeds" + (" ± standard deviation" if seeds > 1 else ""),
             f"hatched: not a symmetry (largest relative logit gap on the fitting images, for the pi used, "
             f"> {SYMMETRY_TOLERANCE:g} in some seed; red line on the error scale)"]
    if agreement is not None:
        notes.append("agreement: the members' mean fraction of held-out images with the original's prediction, "
                     f"smallest over seeds (red line: {AGREEMENT_THRESHOLD:g})")
    if any(cells.any() for cells in overflow.values()):
        notes.append("* overflowing (non-finite) members, left out of the vote")
    fig.supxlabel("; ".join(notes), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


def plot_fit_size(data, title=None):
    """The fit-size experiment (ensembles.fit_size_experiment with a leading seed axis): (a) held-out agreement and
    (b) the group ensemble's accuracy (mean probability) minus the original's, against the images per group
    element, one line per group scale; (c) the symmetry error on the fitting images. Mean over seeds, band
    min-max. Returns the figure."""
    import matplotlib.pyplot as plt
    from gfs.cifar.paper_protocol import mean_band
    sizes, scales = np.asarray(data["sizes"]), np.asarray(data["scales"])
    original = np.asarray(data["original_acc"], dtype=float).reshape(-1, 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for i, scale in enumerate(scales):
        pick = lambda key: np.asarray(data[key], dtype=float).reshape(-1, len(scales), len(sizes))[:, i]
        mean_band(axes[0], sizes, pick("heldout_agreement"), f"scale {scale:g}")
        mean_band(axes[1], sizes, pick("mean_acc") - original, f"scale {scale:g}")
        mean_band(axes[2], sizes, np.clip(pick("fit_error"), 1e-17, None), f"scale {scale:g}")
    axes[0].axhline(AGREEMENT_THRESHOLD, color="r", linewidth=1, linestyle=":")
    axes[0].set_ylabel("agreement with the original (held-out)")
    axes[1].axhline(0.0, color="k", linewidth=0.8)
    axes[1].set_ylabel("ensemble accuracy - original")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("symmetry error on the fitting images")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(int(k)) for k in sizes])
        ax.set_xlabel("images per group element that pi is fitted on")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"does the action generalise? {int(data['members'])} group elements, exact numerics",
                 fontsize=12)
    fig.tight_layout()
    return fig


def grid_table(values, group_scales, num_g, form="{:+.3f}"):
    """A labelled text table of one value per cell: rows group scales, columns num_g.  values [E, G] -> str."""
    head = "scale \\ num_g " + "".join(f"{int(g):>9}" for g in num_g)
    return "\n".join([head] + [f"{e:>11g} " + "".join(f"{form.format(v):>9}" for v in row)
                               for e, row in zip(group_scales, np.asarray(values, dtype=float))])


def fit_size_table(data):
    """The fit-size experiment as text (data with a leading seed axis): per scale and images per group element,
    held-out agreement, ensemble accuracy - original (mean probability) and the error on the fitting images."""
    original = np.asarray(data["original_acc"], dtype=float).reshape(-1, 1, 1)
    agreement, gain = np.asarray(data["heldout_agreement"]), np.asarray(data["mean_acc"]) - original
    lines = [f"{'scale':>6} {'images':>7} {'agreement':>10} {'ensemble - original':>20} {'error on fit images':>20}"]
    for i, scale in enumerate(data["scales"]):
        for k, size in enumerate(data["sizes"]):
            lines.append(f"{scale:>6g} {int(size):>7} {agreement[:, i, k].mean():>10.3f} {gain[:, i, k].mean():>+20.3f} "
                         f"{np.asarray(data['fit_error'])[:, i, k].max():>20.1e}")
    return "\n".join(lines)
