"""The toy figures name their activation, and Fig. 4 marks the analytic mean of Q (none where it has no closed form):
a reader understands them without the code. Made-up data shaped like the scripts' saved files."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import Q_convergence_elementwise as fig6  # noqa: E402
import Q_distribution as fig45  # noqa: E402
import Q_dynamics_elementwise as fig3  # noqa: E402
import Q_hessian_eigenvalues as fig9  # noqa: E402


def titles(fig):
    return " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])


def histogram(expected, activation="softplus"):
    Q = np.random.default_rng(0).normal(-5, 1, 100)
    counts, edges = np.histogram(Q)
    return fig45.plot({"counts": counts, "bin_edges": edges, "expected_Q": np.array(expected),
                       "activation": np.array(activation), "shape_mhn": np.array([100, 100, 100])})


def test_fig4_marks_the_analytic_mean_and_names_the_activation():
    fig = histogram(-5.0)
    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if "analytic mean" in line.get_label()]
    assert len(lines) == 1 and np.allclose(lines[0].get_xdata(), -5.0)
    assert "softplus" in titles(fig)
    plt.close(fig)
    fig = histogram(np.nan)  # no closed form: no line, no error
    assert not [line for line in fig.axes[0].get_lines() if "analytic mean" in line.get_label()]
    plt.close(fig)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_every_toy_figure_names_its_activation(activation):
    steps, runs = np.arange(0, 50, 10), 3
    curves = {"steps": steps, "loss": np.ones((runs, 5)), "labels": np.array(["a", "b", "c"]),
              "final_loss": np.ones((1, runs)), "diverged_at": np.full((1, runs), -1),
              "activation": np.array(activation)}
    figures = [fig3.plot(dict(curves, delta_Q_tilde_steps=steps[1:], delta_Q_tilde=np.zeros((runs, 4)))),
               fig6.plot(curves)]
    S, L = 2, 7
    figures.append(fig6.plot({"lambdas": np.ones((S, L)), "Q0_zero": np.tile(np.linspace(-5, 5, L), (S, 1)),
                              "steps_to_converge": np.full((S, L), 100), "diverged_at": np.full((S, L), -1),
                              "step_budget": np.array(1000), "activation": np.array(activation)}))
    orbit = np.tile(np.linspace(1, 2, 3), (S, 2, 1))
    figures.append(fig6.plot({"orbit_steps": np.array([-1.0, 0.0, 1.0]), "steps_to_converge": 100 * orbit,
                              "step_budget": np.array(1000), "sum_zero": orbit, "spread": orbit,
                              "min_abs_zero": orbit, "edge_distance": orbit, "activation": np.array(activation)}))
    eigen = np.abs(np.random.default_rng(1).normal(size=(4, 50))) + 1e-2
    figures.append(fig9.plot({"eigenvalues": eigen, "labels": np.array(["a", "b", "c", "d"]),
                              "diverged_at": np.full((1, 4), -1), "activation": np.array(activation)}))
    orbit9 = np.tile(np.linspace(1, 2, 5), (S, 4, 2, 1))
    figures.append(fig9.plot({"orbit_steps": np.linspace(-1, 1, 5), "largest_eigenvalue": orbit9, "sum_zero": orbit9,
                              "spread": orbit9, "min_abs_zero": orbit9, "edge_distance": orbit9,
                              "activation": np.array(activation)}))
    for fig in figures:
        assert activation in titles(fig)
        plt.close(fig)
