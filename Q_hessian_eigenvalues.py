"""Fig. 9: the Hessian spectrum at the minimum reached by gradient descent depends on Q.

Two-layer networks (m, n, hidden) = (10, 5, 50) are initialised at scales 0.001, 0.3, 0.6 and
0.9 (legend: Q at initialisation), trained to a global minimum at learning rate 0.1, and the
Hessian of |Y - U sigma(V^T)|_F^2 over all 750 weights is diagonalised. At a zero-loss minimum
the Hessian is 2 J^T J, of rank at most m*n = 50; its nonzero eigenvalues grow with |Q| for
linear and ReLU networks.

Writes DIR/Q-hessian-eigenvalues/Q-sharpness_{activation}_mnk_10_5_50.{pdf,png,npz,json}.
"""
from figure_driver import Job, PerActivation, figure_parser, no_progress, run_figure_script, steps_per_activation

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_hessian_eigenvalues.py)
M, N, HIDDEN = 10, 5, 50                 # note: m and n are swapped relative to Figs. 3 and 6
INIT_STDS = [0.001, 0.3, 0.6, 0.9]
LEARNING_RATE = 0.1
PAPER_STEPS = PerActivation(4_000, sigmoid=8_000)
QUICK_STEPS = PerActivation(500, sigmoid=1_000)
NONZERO = 1e-3                           # eigenvalues above this count as nonzero (the paper's bins start here)


def make_parser():
    return figure_parser(__doc__, activations=True)


if __name__ == "__main__":
    make_parser().parse_args()  # answer --help and bad flags now, before torch loads (seconds)

import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from models import conserved_Q, gradient_descent, paper_normal, paper_target, squared_loss_hessian  # noqa: E402


def figure_name(activation):
    return f"Q-hessian-eigenvalues/Q-sharpness_{activation}_mnk_{M}_{N}_{HIDDEN}"


def q_label(Q):
    return f"Q={Q:.3g}" if abs(Q) > 1e-3 else f"Q={Q:.2e}"


def train(*, activation, steps, device, dtype, progress=no_progress):
    """Train the four init scales of one activation, then diagonalise each run's Hessian
    (float64, symmetric solver). Returns the figure's data: eigenvalues [4, 750], Q0 [4], ..."""
    Y = paper_target(M, N)
    U0 = torch.stack([paper_normal(M, HIDDEN, std) for std in INIT_STDS])
    V0 = torch.stack([paper_normal(N, HIDDEN, std) for std in INIT_STDS])
    with progress(steps, f"Fig. 9 {activation}") as bar:
        result = gradient_descent(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype),
                                  LEARNING_RATE, steps, model="elementwise", activation=activation,
                                  loss_kind="squared", progress=bar)
    eigenvalues = np.stack([
        torch.linalg.eigvalsh(squared_loss_hessian(torch.from_numpy(U), torch.from_numpy(V), Y, activation)).numpy()
        for U, V in zip(result["U"], result["V"])])
    Q0 = conserved_Q(U0.double(), V0.double(), activation).numpy()
    return {
        "steps": result["steps"], "loss": result["loss"], "Q": result["Q"], "Q0": Q0,
        "init_std": np.array(INIT_STDS), "labels": np.array([q_label(q) for q in Q0]),
        "eigenvalues": eigenvalues, "largest_eigenvalue": eigenvalues.max(axis=1),
        "nonzero_count": (eigenvalues > NONZERO).sum(axis=1),
        "final_loss": result["loss"][:, -1], "diverged_at": result["diverged_at"],
    }


def plot(data):
    fig, ax = plt.subplots()
    top = np.nanmax(data["eigenvalues"]) if np.isfinite(data["eigenvalues"]).any() else 1.0
    bins = np.linspace(NONZERO, top * 1.02, 60)
    for run, label in enumerate(data["labels"]):
        ax.hist(data["eigenvalues"][run], bins=bins, alpha=0.8, label=str(label))
    ax.set_xlim(0, top * 1.05)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
    ax.set_xlabel("Eigenvalues of Hessian", fontsize=20)
    ax.set_ylabel("Frequency", fontsize=20)
    ax.tick_params(labelsize=18)
    ax.legend(fontsize=16)
    return fig


def make_jobs(args):
    return [Job(figure_name(a), dict(activation=a, steps=steps, device=args.device, dtype=args.dtype),
                {"figure": "Fig. 9", "activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_stds": INIT_STDS,
                 "learning_rate": LEARNING_RATE, "steps": steps, "nonzero_threshold": NONZERO,
                 "hessian_of": "|Y - U sigma(V^T)|_F^2 over concat(U.flatten(), V.flatten()), float64, eigvalsh",
                 "loss": "|Y - U sigma(V^T)|_F^2"})
            for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items()]


def summarise(name, data):
    return (f"{name}: {', '.join(map(str, data['labels']))}; largest eigenvalue "
            f"{', '.join(f'{x:.4g}' for x in data['largest_eigenvalue'])}; nonzero "
            f"{', '.join(map(str, data['nonzero_count']))}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summarise, argv=argv)


if __name__ == "__main__":
    main()
