"""The claims of Fig. 7 (Q_convergence_radial.py): for the radial activation the steps to converge grow in
proportion to Q.
"""
import numpy as np

from gfs import paper_numbers as paper
from gfs.report.toy_rules import rule_same_initial_function, same_function
from gfs.report.verdict_rules import (NOT_REPRODUCED, REPRODUCED, TOY_FIGURES, Claim, Files, Result, Section, col,
                                      combine, converged_loss, fmt, fmt_steps, item, run_table, runs, saved_setting)

FIG7 = Files("Q-convergence/radial_zoomed_1e6", ("",), TOY_FIGURES)  # the name its .json gives (figure_name)


def rule_steps_proportional_to_Q(Q0, steps, total_steps, factor=2.0):
    """For consecutive runs (by Q) that reach the loss threshold, (steps ratio) / (Q ratio) lies within a factor
    {factor:g}; a run that never reaches it is consistent if the last converged run's steps times the Q ratio exceed
    the step budget; at least two runs must converge. All consistent: reproduced; some: partly.

    Q0, steps: [R] per run (steps = -1: never reached); total_steps: the step budget."""
    Q0, steps = np.asarray(Q0, dtype=float), np.asarray(steps)
    order = np.argsort(Q0)
    done, parts, checks = [i for i in order if steps[i] >= 0], [], []
    for a, b in zip(done, done[1:]):
        checks.append(1 / factor <= (steps[b] / max(steps[a], 1)) / (Q0[b] / Q0[a]) <= factor)
        parts.append(f"Q x{Q0[b] / Q0[a]:.3g} -> steps x{steps[b] / max(steps[a], 1):.3g}")
    for i in (i for i in order if steps[i] < 0):
        projected = steps[done[-1]] * Q0[i] / Q0[done[-1]] if done and Q0[i] > Q0[done[-1]] else None
        checks.append(projected is not None and projected > total_steps)
        parts.append(f"Q {fmt(Q0[i])} never reaches the loss although a larger Q does" if projected is None else
                     f"Q {fmt(Q0[i])} never reaches it in {total_steps:,} steps (projected {projected:,.0f}: "
                     f"{'consistent' if checks[-1] else 'inconsistent'})")
    deciding = (" / ".join(fmt_steps(s) for s in steps) + f" steps (of {total_steps:,}) for Q "
                + " / ".join(fmt(q) for q in Q0))
    if len(done) < 2:
        return Result(NOT_REPRODUCED, "; ".join([f"only {len(done)} run(s) reach the loss, so the ratio cannot be "
                                                 "measured"] + parts), deciding)
    return Result(combine([REPRODUCED if c else NOT_REPRODUCED for c in checks]), "; ".join(parts), deciding)


def fig7_columns(loss):
    return [("Q0", col("Q0")), (f"steps to {loss}", col("steps_to_converge", fmt_steps, seeds=True, mark=True)),
            ("paper's code [R]", lambda u, f, r: fmt_steps(item(paper.FIG7_STEPS, r))),
            ("initial loss", col("initial_loss")), ("final loss (MSE/abs Y)", col("final_loss")),
            ("max relative drift of Q",
             lambda u, f, r: fmt(np.nanmax(np.abs(f["Q"][r] - f["Q"][r][0])) / abs(f["Q"][r][0])))]


SECTIONS = (
    Section("Fig. 7: convergence time proportional to Q (radial activation)", (
        Claim("Fig. 7", "radial runs start from the same function", lambda figures:
              "The radial runs (init scales "
              f"{saved_setting(figures, 'init_scales', lambda scales: ', '.join(f'{s:g}' for s in scales))}, "
              "aligned with the SVD of Y) compute the same initial function and differ only in Q.", FIG7, same_function,
              rule_same_initial_function, check=True),
        Claim("Fig. 7", "steps to converge proportional to Q (radial)", lambda figures:
              "For the radial activation the time to converge grows in proportion to Q = |U|^2 + |V|^2 (a sum of "
              "squares: no integration constant): 100x more Q needs about 100x more steps to reach a fixed loss "
              f"(MSE/|Y|_F < {converged_loss(figures)}).", FIG7,
              lambda f: runs(f, Q0="Q0", steps="steps_to_converge", total_steps=int(f["steps"][-1])),
              rule_steps_proportional_to_Q,
              paper=lambda: {"": dict(Q0=[paper.legend_Q(q) for q in paper.FIG7_LEGENDS],
                                      total_steps=paper.FIG7_STEP_BUDGET,
                                      steps=[-1 if s is None else s for s in paper.FIG7_STEPS])})),
            lambda get: run_table(get(FIG7), fig7_columns(converged_loss(get(FIG7))), first=None)),
)
