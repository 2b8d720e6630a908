"""The claims of Fig. 6 (Q_convergence_elementwise.py): the initialisation's Q sets how fast gradient descent
converges, and the experiments beyond the paper that separate Q from the initial function (same function, per-neuron
orbits).
"""
from gfs import paper_numbers as paper
from gfs.report.per_neuron_rules import over_activations, per_neuron_both, rule_predictors
from gfs.report.toy_rules import (as_steps, finite_or_nan, rule_gap_below, rule_same_initial_function, rule_trend,
                                  same_function, trend_Q)
from gfs.report.verdict_rules import (TOY_FIGURES, Claim, Files, Section, both_conventions, col, converged_loss,
                                      fmt_steps, paper_column, power_of_ten, run_table, saved_setting)

FIG6 = Files("Q-convergence/elementwise_{}_convergence", paper.PAPER_ACTIVATIONS, TOY_FIGURES, discover=True)
SAME_FUNCTION_6 = Files("Q-convergence/same_function_{}_convergence", paper.PAPER_ACTIVATIONS, TOY_FIGURES,
                        discover=True)
PER_NEURON_6 = Files("Q-convergence/per_neuron_{}_convergence", paper.PAPER_ACTIVATIONS, TOY_FIGURES, discover=True)
OFF_DATA = {"Fig. 6 same function": SAME_FUNCTION_6, "Fig. 6 per-neuron": PER_NEURON_6}  # the checks section's table


def fig6_trend(f, convention):
    """Fig. 6: each seed's three init scales are a series; steps [S, R] against |Q0|."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(trend_Q(f, "Q0_zero", convention), values=steps, direction=-1, reference=finite_or_nan(steps),
                budget=int(f.setting("steps")))


def same_function6_trend(f, convention):
    """Fig. 6 same function: each seed's orbit is a series [S, L]; the spread over seeds at its centre (lambda = 1)."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(trend_Q(f, "Q0_zero", convention), values=steps, direction=-1,
                reference=finite_or_nan(steps[:, steps.shape[1] // 2]), budget=int(f["step_budget"]))


def per_neuron6(f):
    """Fig. 6 per-neuron orbits [S, 2, P]: steps to the loss per seed; the seeds' spread of the unmoved networks."""
    steps = as_steps(f["steps_to_converge"], f["diverged_at"])
    return dict(stats=per_neuron_both(f), values=steps, reference=finite_or_nan(steps[:, 0, steps.shape[-1] // 2]),
                budget=int(f["step_budget"]))


def fig6_table(fig6):
    fig6 = run_table(fig6, [
        ("init std", col("init_std", lambda x: f"{x:g}")),
        ("Q0 from 0 [paper code's]", both_conventions(col("Q0_zero"), col("Q0"))),
        ("initial loss", col("initial_loss")),
        (f"steps to {converged_loss(fig6)}", col("steps_to_converge", fmt_steps, seeds=True, mark=True)),
        ("paper's code [R]", paper_column(paper.FIG6_STEPS, fmt_steps)), ("final loss", col("final_loss"))])
    return fig6 + ["Here Q and the initial function (and loss) change together; the same-function claim above "
                   "separates them.", ""] * bool(fig6)


def same_function_6_note(figures):
    """Which initialisation the same-function orbits move (the plot shows seed 0's; the verdict table every seed)."""
    init_std = saved_setting(figures, "init_std", lambda x: f"{x:g}")
    return [f"The same-function orbits move the paper's initialisation at init std {init_std}.", ""] * bool(figures)


SECTIONS = (
    Section("Fig. 6: convergence speed depends on Q (elementwise activations)", (
        Claim("Fig. 6", "larger |Q| reaches a fixed loss in fewer steps", lambda figures:
              f"At learning rate {saved_setting(figures, 'learning_rate', power_of_ten)} the initialisation's Q sets "
              "how fast gradient descent converges: for every activation, the run with larger |Q| (larger init scale) "
              f"reaches a fixed loss (|Y - U sigma(V^T)|_F < {converged_loss(figures)}) in fewer steps.", FIG6,
              fig6_trend, rule_trend, conventions=True),
        Claim("Fig. 6", "same function: the moved initialisations compute the same function",
              "Moving the paper's initialisation along the per-neuron symmetry changes Q but not the network's "
              "function on the training inputs.", SAME_FUNCTION_6, same_function, rule_same_initial_function,
              check=True),
        Claim("Fig. 6", "same function: larger |Q| converges in fewer steps", lambda figures:
              "The test of the claim without the confound: from one initial function, moved along the symmetry to "
              f"other Q, the run with larger |Q| reaches the loss {converged_loss(figures)} in fewer steps.",
              SAME_FUNCTION_6, same_function6_trend, rule_trend, conventions=True),
        Claim("Fig. 6", "per-neuron orbits: the moved initialisations compute the same function",
              "Moving each neuron by its own lambda keeps the network's function on the training inputs.",
              PER_NEURON_6, lambda f: dict(gaps=f["training_gap"], float64=f.settings.get("dtype") == "float64"),
              rule_gap_below, check=True),
        Claim("Fig. 6", "per-neuron: a per-neuron statistic predicts the steps where |Q| does not", lambda figures:
              "Beyond the paper: along per-neuron orbits (each neuron its own lambda; the sum and the spread of the "
              "Q_a grow together on one orbit, oppositely on the other) a per-neuron statistic (the spread of Q_a, "
              "min |Q_a| or the edge distance: the most saturated neuron's distance from the edge of sigma's range) "
              f"predicts the steps to the loss {converged_loss(figures)}, where the sum |Q| does not.", PER_NEURON_6,
              per_neuron6, rule_predictors, over=over_activations)),
            (lambda get: fig6_table(get(FIG6)), lambda get: same_function_6_note(get(SAME_FUNCTION_6)))),
)
