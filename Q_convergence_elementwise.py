"""Fig. 6: convergence of gradient descent for initialisations with different conserved quantity Q.

The two-layer networks of Fig. 3 are initialised at scales 0.01, 0.1 and 1 (which set Q at
initialisation, given in the legend) and trained at learning rate 1e-3. The curves show the
loss |Y - U sigma(V^T)|_F against training steps.

Writes DIR/Q-convergence/elementwise_{activation}_convergence.{pdf,png,npz,json}.
"""
from figure_driver import Job, PerActivation, figure_parser, no_progress, run_figure_script, steps_per_activation

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_convergence_elementwise.py)
M, N, HIDDEN = 5, 10, 50
INIT_STDS = [0.01, 0.1, 1.0]             # U, V ~ N(0, std^2), each drawn after seed 12345
LEARNING_RATE = 1e-3
PAPER_STEPS = PerActivation(400_000, sigmoid=800_000)
QUICK_STEPS = PerActivation(2_000, sigmoid=4_000)
CONVERGED_LOSS = 1e-2                    # 'steps to converge' = first step with loss below this


def make_parser():
    return figure_parser(__doc__, activations=True)


if __name__ == "__main__":
    make_parser().parse_args()  # answer --help and bad flags now, before torch loads (seconds)

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from figure_driver import plot_loss_curves  # noqa: E402
from models import conserved_Q, first_step_below, gradient_descent, paper_normal, paper_target  # noqa: E402


def figure_name(activation):
    return f"Q-convergence/elementwise_{activation}_convergence"


def q_label(activation, Q):
    # The paper's legend formats: tanh as an integer, the others to 3 significant digits.
    return f"Q={Q:.0f}" if activation == "tanh" else f"Q={Q:.3g}"


def train(*, activation, steps, device, dtype, progress=no_progress):
    """Train the three init scales of one activation as one batch. Returns the figure's data."""
    Y = paper_target(M, N)
    U0 = torch.stack([paper_normal(M, HIDDEN, std) for std in INIT_STDS])
    V0 = torch.stack([paper_normal(N, HIDDEN, std) for std in INIT_STDS])
    with progress(steps, f"Fig. 6 {activation}") as bar:
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
    return [Job(figure_name(a), dict(activation=a, steps=steps, device=args.device, dtype=args.dtype),
                {"figure": "Fig. 6", "activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_stds": INIT_STDS,
                 "learning_rate": LEARNING_RATE, "steps": steps, "converged_loss": CONVERGED_LOSS,
                 "loss": "|Y - U sigma(V^T)|_F after each step"})
            for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items()]


def summarise(name, data):
    return (f"{name}: {', '.join(map(str, data['labels']))}; steps to loss < {CONVERGED_LOSS:g}: "
            f"{', '.join(str(s) if s >= 0 else 'never' for s in data['steps_to_converge'])}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summarise, argv=argv)


if __name__ == "__main__":
    main()
