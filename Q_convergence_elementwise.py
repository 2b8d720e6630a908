"""Fig. 6: convergence of gradient descent for initialisations with different conserved quantity Q.

The two-layer networks of Fig. 3 are initialised at scales 0.01, 0.1 and 1 (which set Q at
initialisation, given in the legend) and trained at learning rate 1e-3. The curves show the
loss |Y - U sigma(V^T)|_F against training steps.

Writes DIR/Q-convergence/elementwise_{activation}_convergence.{pdf,png,npz,json}.
"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from models import (ACTIVATIONS, conserved_Q, figure_parser, first_step_below, gradient_descent,
                    paper_normal, paper_target, plot_loss_curves, progress_bar, run_figure_script,
                    steps_per_activation)

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_convergence_elementwise.py)
M, N, HIDDEN = 5, 10, 50
INIT_STDS = [0.01, 0.1, 1.0]             # U, V ~ N(0, std^2), each drawn after seed 12345
LEARNING_RATE = 1e-3
PAPER_STEPS = {"linear": 400_000, "relu": 400_000, "tanh": 400_000, "sigmoid": 800_000}
QUICK_STEPS = {"linear": 2_000, "relu": 2_000, "tanh": 2_000, "sigmoid": 4_000}
CONVERGED_LOSS = 1e-2                    # 'steps to converge' = first step with loss below this


def figure_name(activation):
    return f"Q-convergence/elementwise_{activation}_convergence"


def q_label(activation, Q):
    # The paper's legend formats: tanh as an integer, the others to 3 significant digits.
    return f"Q={Q:.0f}" if activation == "tanh" else f"Q={Q:.3g}"


def train(activation, steps, device, dtype, show_progress, position):
    """Train the three init scales of one activation as one batch. Returns the figure's data."""
    Y = paper_target(M, N)
    U0 = torch.stack([paper_normal(M, HIDDEN, std) for std in INIT_STDS])
    V0 = torch.stack([paper_normal(N, HIDDEN, std) for std in INIT_STDS])
    with progress_bar(steps, f"Fig. 6 {activation}", disable=not show_progress, position=position) as bar:
        result = gradient_descent(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype),
                                  LEARNING_RATE, steps, model="elementwise", activation=activation,
                                  loss_kind="frobenius", progress=bar)
    Q0 = conserved_Q(U0.double(), V0.double(), activation).numpy()
    return {
        "steps": result["steps"], "loss": result["loss"], "Q": result["Q"], "Q0": Q0,
        "init_std": np.array(INIT_STDS), "labels": np.array([q_label(activation, q) for q in Q0]),
        "steps_to_converge": first_step_below(result["steps"], result["loss"], CONVERGED_LOSS),
        "diverged_at": result["diverged_at"],
    }


def plot(data):
    fig, ax = plt.subplots()
    plot_loss_curves(ax, data, linewidth=2.5)
    ax.tick_params(labelsize=18)
    ax.set_xlabel("Training steps", fontsize=24)
    ax.set_ylabel("Loss", fontsize=24)
    ax.legend(fontsize=16)
    return fig


def make_jobs(args):
    return [(figure_name(a), (a, steps, args.device, args.dtype),
             {"figure": "Fig. 6", "activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_stds": INIT_STDS,
              "seed": 12345, "learning_rate": LEARNING_RATE, "steps": steps,
              "converged_loss": CONVERGED_LOSS, "loss": "|Y - U sigma(V^T)|_F after each step",
              "trained_on": "torch.nn.MSELoss (mean over m*n entries), full-batch GD"})
            for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items()]


def summarise(name, data):
    return (f"{name}: {', '.join(map(str, data['labels']))}; steps to loss < {CONVERGED_LOSS:g}: "
            f"{', '.join(str(s) if s >= 0 else 'never' for s in data['steps_to_converge'])}")


def main(argv=None):
    parser = figure_parser(__doc__.split("\n\n")[0], activations=ACTIVATIONS)
    run_figure_script(parser, argv, make_jobs, train, plot, summarise)


if __name__ == "__main__":
    main()
