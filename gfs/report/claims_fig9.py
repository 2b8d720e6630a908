"""The claims of Fig. 9 (Q_hessian_eigenvalues.py): the Hessian at a minimum against Q, and the experiments beyond
the paper along the valley of minima (same function, per-neuron orbits).
"""
import numpy as np

from gfs import paper_numbers as paper
from gfs.report.per_neuron_rules import over_activations, per_neuron_both, rule_predictors
from gfs.report.toy_rules import (AT_MINIMUM, at_minimum, rule_gap_below, rule_same_initial_function, rule_trend,
                                  trend_Q)
from gfs.report.verdict_rules import (NOT_REPRODUCED, REPRODUCED, TOY_FIGURES, Claim, Files, Result, Section,
                                      both_conventions, col, common_setting, fmt, paper_column, run_table, runs)

# The paper's m, n, hidden = 10, 5, 50 in the names.
FIG9 = Files("Q-hessian-eigenvalues/Q-sharpness_{}_mnk_10_5_50", paper.PAPER_ACTIVATIONS, TOY_FIGURES, discover=True)
SAME_FUNCTION_9 = Files("Q-hessian-eigenvalues/same_function_{}_sharpness_mnk_10_5_50", paper.PAPER_ACTIVATIONS,
                        TOY_FIGURES, discover=True)
PER_NEURON_9 = Files("Q-hessian-eigenvalues/per_neuron_{}_sharpness_mnk_10_5_50", paper.PAPER_ACTIVATIONS,
                     TOY_FIGURES, discover=True)
OFF_DATA = {"Fig. 9 same function": SAME_FUNCTION_9, "Fig. 9 per-neuron": PER_NEURON_9}  # the checks section's table


def sizes(figures):
    """'m*n = 50 nonzero eigenvalues (of 750)': the rank bound m n and the Hessian's size (m + n) hidden, as saved."""
    if not figures:
        return "m*n nonzero eigenvalues"
    m, n, hidden = (int(common_setting(figures, key)) for key in ("m", "n", "hidden"))
    return f"m*n = {m * n} nonzero eigenvalues (of {(m + n) * hidden})"


def rule_hessian_rank(nonzero_counts, final_losses, expected_rank, loss_at_minimum=AT_MINIMUM):
    """Every run at a global minimum (squared loss < {loss_at_minimum}) has exactly m*n nonzero Hessian eigenvalues
    (above the script's threshold; at zero loss the Hessian is 2 J^T J, of rank at most m n): passes (runs not at a
    minimum are not checked, the text says how many were); a wrong count: fails.

    nonzero_counts, final_losses: [R] per run; expected_rank: m*n."""
    counts, at_min = np.asarray(nonzero_counts), np.asarray(final_losses, dtype=float) < loss_at_minimum
    wrong = any(c != expected_rank for c, a in zip(counts, at_min) if a)
    text = (f"{int(at_min.sum())} of {len(counts)} runs at a global minimum (squared loss < {fmt(loss_at_minimum)}); "
            f"nonzero counts {', '.join(str(int(c)) for c in counts)} (expected {expected_rank})")
    return Result(NOT_REPRODUCED if wrong else REPRODUCED, text, ", ".join(sorted({str(int(c)) for c in counts})))


def fig9_trend(f, convention):
    """Fig. 9: each seed's four init scales are a series; the largest eigenvalue [S, R] against |Q0|."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(trend_Q(f, "Q0_zero", convention), values=largest, direction=1, reference=largest)


def same_function9_trend(f, convention):
    """Fig. 9 same function: each minimum's orbit is a series [S, R, L]; the spread over seeds at the minima."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(trend_Q(f, "Q_zero", convention), values=largest, direction=1,
                reference=largest[..., largest.shape[-1] // 2])


def per_neuron9(f):
    """Fig. 9 per-neuron orbits [S, R, 2, P] of the minima: the largest eigenvalue, per seed [S, 2 R, P] (a seed's
    orbits of all its minima vote together); the statistics in both conventions."""
    largest = at_minimum(f["largest_eigenvalue"], f["final_loss"])
    return dict(stats=per_neuron_both(f), values=largest.reshape(len(largest), -1, largest.shape[-1]),
                reference=largest[:, :, 0, largest.shape[-1] // 2])


FIG9_COLUMNS = [
    ("init std", col("init_std", lambda x: f"{x:g}")),
    ("Q0 from 0 [paper code's]", both_conventions(col("Q0_zero"), col("Q0"))),
    ("paper's code [R] Q", paper_column({a: list(map(paper.legend_Q, qs)) for a, qs in paper.FIG9_LEGENDS.items()})),
    ("largest eigenvalue", col("largest_eigenvalue", lambda x: f"{x:.4g}", seeds=True, mark=True)),
    ("paper's code [R]", paper_column(paper.FIG9_LARGEST_EIGENVALUE)),
    ("final squared loss", col("final_loss"))]


def orbit_summary(same):
    """One sentence for seed 0's same-function orbits ({unit: Figure}): how far the squared loss moves along them
    and the largest relative gap between the Gauss-Newton and the full Hessian's largest eigenvalue at their ends."""
    loss = [np.asarray(f["loss"][0], dtype=float) for f in same.values()]  # [R, L] each
    moved = max(float(np.nanmax(np.nanmax(x, axis=-1) / np.nanmin(x, axis=-1) - 1)) for x in loss)
    gap = max(float(np.nanmax(np.abs(f["largest_eigenvalue"][0][:, [0, -1]] / f["largest_eigenvalue_hessian"] - 1)))
              for f in same.values())  # [R, 2]: the ends of each run's orbit
    return (f"Same-function orbits (seed 0): the squared loss (at most {fmt(max(float(np.nanmax(x)) for x in loss))}) "
            f"moves by at most {fmt(moved)} of itself; the eigenvalue judged, the Gauss-Newton part 2 J J^T's, is "
            f"within {fmt(gap)} of the full Hessian's at their ends.")


def fig9_tables(fig9_figures, same_figures):
    fig9 = run_table(fig9_figures, FIG9_COLUMNS)
    return fig9 + [paper.FIG9_NOTE, ""] * bool(fig9) + ([orbit_summary(same_figures), ""] if same_figures else [])


SECTIONS = (
    Section("Fig. 9: Hessian spectrum at the minimum against Q", (
        Claim("Fig. 9", "m*n nonzero Hessian eigenvalues at the minimum", lambda figures:
              f"At a global minimum the Hessian of |Y - U sigma(V^T)|^2 has exactly {sizes(figures)}.", FIG9,
              lambda f: runs(f, "init_std", nonzero_counts="nonzero_count", final_losses="final_loss",
                             expected_rank=int(f.setting("m")) * int(f.setting("n"))), rule_hessian_rank, check=True),
        Claim("Fig. 9", "largest Hessian eigenvalue grows with |Q|",
              "Larger |Q| gives a sharper minimum: the largest Hessian eigenvalue grows with |Q|.", FIG9,
              fig9_trend, rule_trend, conventions=True),
        Claim("Fig. 9", "same function: the moved minima compute the same function",
              "Moving a trained minimum along the per-neuron symmetry keeps the network function on the training "
              "inputs, so the loss stays at its minimum.", SAME_FUNCTION_9,
              lambda f: runs(f, initial_outputs="output", float64=True), rule_same_initial_function, check=True),
        Claim("Fig. 9", "same function: sharpness grows with |Q| along the valley",
              "The test of the claim at a fixed function: moving each trained minimum along the valley of minima "
              "(the symmetry orbit), the largest Hessian eigenvalue grows with |Q|.", SAME_FUNCTION_9,
              same_function9_trend, rule_trend, conventions=True),
        Claim("Fig. 9", "per-neuron orbits: the moved minima compute the same function",
              "Moving each neuron of a minimum by its own lambda keeps the network's function on the training inputs.",
              PER_NEURON_9, lambda f: dict(gaps=f["training_gap"]), rule_gap_below, check=True),
        Claim("Fig. 9", "per-neuron: a per-neuron statistic predicts the sharpness where |Q| does not",
              "Beyond the paper: as in Fig. 6, along per-neuron orbits of the trained minima, a per-neuron statistic "
              "predicts the largest Hessian eigenvalue, where the sum |Q| does not.", PER_NEURON_9, per_neuron9,
              rule_predictors, over=over_activations)),
            lambda get: fig9_tables(get(FIG9), get(SAME_FUNCTION_9))),
)
