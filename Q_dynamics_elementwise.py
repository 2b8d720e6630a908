"""Fig. 3: the conserved quantity Q stays (nearly) constant under gradient descent.

Two-layer networks U sigma(V^T) with linear, ReLU, tanh and sigmoid activations are trained
by full-batch gradient descent at learning rates 0.1, 0.01 and 0.001 from one initialisation.
Top panel: the relative drift of Q, |Q_t|/N_0 - |Q_1|/N_0 for t >= 1, with N_0 the 'sum'
analogue of Q at initialisation; bottom panel: the loss |Y - U sigma(V^T)|_F. Gradient flow
conserves Q exactly; gradient descent breaks it by O(lr) per unit of flow time.

Writes DIR/Q-dynamics/elementwise_{activation}_loss_Q.{pdf,png,npz,json}.
"""
from figure_driver import Job, PerActivation, figure_parser, no_progress, run_figure_script, steps_per_activation

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_dynamics_elementwise.py)
M, N, HIDDEN = 5, 10, 50                 # output dim, input dim (X = I_N), hidden width
INIT_STD = 0.1                           # U, V ~ N(0, 0.1^2), each drawn after seed 12345
LEARNING_RATES = [0.1, 0.01, 0.001]
PAPER_STEPS = PerActivation(400_000, sigmoid=800_000)
QUICK_STEPS = PerActivation(2_000, sigmoid=4_000)


def make_parser():
    return figure_parser(__doc__, activations=True)


if __name__ == "__main__":
    make_parser().parse_args()  # answer --help and bad flags now, before torch loads (seconds)

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from figure_driver import plot_loss_curves  # noqa: E402
from models import conserved_Q, gradient_descent, paper_normal, paper_target, q_normaliser  # noqa: E402


def figure_name(activation):
    return f"Q-dynamics/elementwise_{activation}_loss_Q"


def train(*, activation, steps, device, dtype, progress=no_progress):
    """Train the three learning rates of one activation as one batch of runs.

    Returns the figure's data: steps [T], loss and Q [3, T], delta_Q_tilde [3, T-1] at
    delta_Q_tilde_steps [T-1] (the records after the first step), ...
    """
    Y = paper_target(M, N)
    U0, V0 = paper_normal(M, HIDDEN, INIT_STD), paper_normal(N, HIDDEN, INIT_STD)
    runs = len(LEARNING_RATES)
    U = U0.to(device, dtype).expand(runs, M, HIDDEN)
    V = V0.to(device, dtype).expand(runs, N, HIDDEN)
    with progress(steps, f"Fig. 3 {activation}") as bar:
        result = gradient_descent(U, V, Y.to(device, dtype), LEARNING_RATES, steps, model="elementwise",
                                  activation=activation, loss_kind="frobenius", progress=bar)
    Q0 = float(conserved_Q(U0.double(), V0.double(), activation))
    normaliser = float(q_normaliser(U0.double(), V0.double(), activation))
    # The paper's Delta Q-tilde: |Q_t| / N_0 against its value after the first step, t >= 1 (the
    # paper records after each step, so its curve has no point at initialisation).
    after_first = result["steps"] >= 1
    abs_Q = np.abs(result["Q"][:, after_first]) / normaliser
    return {
        "steps": result["steps"], "loss": result["loss"], "Q": result["Q"],
        "delta_Q_tilde_steps": result["steps"][after_first], "delta_Q_tilde": abs_Q - abs_Q[:, :1],
        "lr": np.array(LEARNING_RATES), "labels": np.array([f"lr={lr:g}" for lr in LEARNING_RATES]),
        "Q0": np.full(runs, Q0), "normaliser": np.full(runs, normaliser),
        "diverged_at": result["diverged_at"],
    }


def plot(data):
    fig, (ax_q, ax_loss) = plt.subplots(2, sharex=True, figsize=(6.4, 4.8))
    for run in range(len(data["labels"])):
        ax_q.plot(data["delta_Q_tilde_steps"], data["delta_Q_tilde"][run], color=f"C{run}", linewidth=2.5)
    plot_loss_curves(ax_loss, data, linewidth=2.5)
    ax_q.set_ylabel(r"$\Delta\tilde{Q}$", fontsize=20)
    ax_q.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_loss.set_xlabel("Training steps", fontsize=22)
    ax_loss.set_ylabel("Loss", fontsize=22)
    for ax in (ax_q, ax_loss):
        ax.tick_params(labelsize=16)  # tick_params: set_xticks(..., fontsize=) fails on matplotlib >= 3.8
    ax_loss.legend(fontsize=13)
    fig.subplots_adjust(hspace=0.1)
    return fig


def make_jobs(args):
    """One job per activation, longest first."""
    return [Job(figure_name(a), dict(activation=a, steps=steps, device=args.device, dtype=args.dtype),
                {"figure": "Fig. 3", "activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_std": INIT_STD,
                 "learning_rates": LEARNING_RATES, "steps": steps,
                 "loss": "|Y - U sigma(V^T)|_F after each step",
                 "delta_Q_tilde": "|Q_t|/N_0 - |Q_1|/N_0 at delta_Q_tilde_steps (t >= 1), paper-code Q and N_0"})
            for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items()]


def summarise(name, data):
    drift = np.nanmax(np.abs(data["delta_Q_tilde"]), axis=1)
    return (f"{name}: final loss {', '.join(f'{x:.2g}' for x in data['loss'][:, -1])}; "
            f"max |dQ~| {', '.join(f'{x:.2g}' for x in drift)}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summarise, argv=argv)


if __name__ == "__main__":
    main()
