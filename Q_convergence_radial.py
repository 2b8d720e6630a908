"""Fig. 7: for a radial activation, the conserved quantity Q alone sets the convergence rate.

The network U (V^T / rowwise |V^T|^2) has the per-neuron scaling symmetry (u, v) -> (c u, c v),
with conserved Q = |U|^2 + |V|^2. Four initialisations aligned with the SVD of Y, at scales
0.01, 0.1, 1 and 10, compute the same function but differ in Q by factors of 100; gradient
descent at learning rate 1e-5 then needs about 100 times more steps per 100 times more Q.

Writes DIR/Q-convergence/radial_zoomed_1e6.{pdf,png,npz,json}.
"""
import numpy as np

from gfs.runs.command_line import figure_parser, no_progress
from gfs.runs.command_line import Job, plot_loss_curves, run_figure_script
# torch, the models and pyplot load inside the functions that use them, so that --help answers at once

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_convergence_radial.py)
M, N, HIDDEN = 5, 10, 5
INIT_SCALES = [0.01, 0.1, 1.0, 10.0]     # U_bar, V_bar ~ N(mean=scale, std=scale), seed 12345 each
LEARNING_RATE = 1e-5
PAPER_STEPS = 1_000_000
QUICK_STEPS = 5_000
CONVERGED_LOSS = 1e-2
FIGURE = "Q-convergence/radial_zoomed_1e6"


def make_parser():
    return figure_parser(__doc__, seeds=True)


def svd_aligned_init(scale, seed=0):
    """(U [M, HIDDEN], V [N, HIDDEN], Q0: float): U = phi U_bar, V = psi V_bar with Y = phi S psi^T and U_bar, V_bar
    'diagonal', drawn after seed_of(seed). With mean = std = scale the draws at different scales are multiples of
    one draw, so all four networks compute the same function (scale symmetry) and differ only in Q."""
    import torch

    from models import paper_normal, paper_target, radial_Q, seed_of
    Y = paper_target(M, N)
    phi, _, psi_h = torch.linalg.svd(Y)
    U_bar = paper_normal(M, HIDDEN, std=scale, mean=scale, seed=seed_of(seed)) * torch.eye(M, HIDDEN)  # (i, i) only
    V_bar = paper_normal(N, HIDDEN, std=scale, mean=scale, seed=seed_of(seed)) * torch.eye(N, HIDDEN)
    Q0 = float(radial_Q(U_bar.double(), V_bar.double()))
    return phi @ U_bar, psi_h.T @ V_bar, Q0


def train(*, steps, device, dtype, seeds=1, progress=no_progress):
    """Train the four initialisations of every seed. Returns the figure's data (docs/outputs.md lists the keys)."""
    import torch

    from models import paper_target, radial_output
    from gfs.training import first_step_below, gradient_descent_seeds
    inits = [[svd_aligned_init(scale, s) for scale in INIT_SCALES] for s in range(seeds)]
    U0 = torch.stack([torch.stack([U for U, _, _ in seed]) for seed in inits])  # [S, 4, m, k]
    V0 = torch.stack([torch.stack([V for _, V, _ in seed]) for seed in inits])
    Y = paper_target(M, N)
    result = gradient_descent_seeds(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype), LEARNING_RATE,
                                    steps, progress, "Fig. 7 radial", model="radial", loss_kind="mse_over_normY")
    Q0 = np.array([[q for _, _, q in seed] for seed in inits])
    return {
        "steps": result["steps"], "loss": result["loss"][0], "Q": result["Q"][0], "Q0": Q0,
        "init_scale": np.array(INIT_SCALES), "labels": np.array([f"Q={q:.3g}" for q in Q0[0]]),
        "initial_output": radial_output(U0.double(), V0.double()).numpy(),
        "steps_to_converge": first_step_below(result["steps"], result["loss"], CONVERGED_LOSS),
        "initial_loss": result["loss"][..., 0], "final_loss": result["loss"][..., -1],
        "diverged_at": result["diverged_at"], "activation": np.array("radial"),
    }


def plot(data):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plot_loss_curves(ax, data, linewidth=2, label_size=16)  # seed 0's runs
    ax.tick_params(labelsize=14)
    ax.legend(fontsize=13, loc="upper right", bbox_to_anchor=(1.0, 0.75))
    ax.set_title(f"{data['activation']} activation: " + r"$U\,(V^T / |V^T|^2_{\mathrm{row}})$", fontsize=14)
    return fig


def make_jobs(args):
    from models import SEED_RULE
    steps = args.steps or (QUICK_STEPS if args.quick else PAPER_STEPS)
    return [Job(FIGURE, dict(steps=steps, device=args.device, dtype=args.dtype, seeds=args.seeds),
                {"figure": "Fig. 7", "m": M, "n": N, "hidden": HIDDEN, "init_scales": INIT_SCALES,
                 "learning_rate": LEARNING_RATE, "steps": steps, "converged_loss": CONVERGED_LOSS,
                 "seeds": args.seeds, "seed_rule": SEED_RULE,
                 "loss": "MSE / |Y|_F before each step (the paper's plotted quantity)",
                 "plotted": "seed 0 (curves); per-run numbers [seed, run] for every seed"})]


def summary_line(name, data):
    return (f"{name}: {', '.join(map(str, data['labels']))}; steps to loss < {CONVERGED_LOSS:g}: "
            f"{', '.join(str(s) if s >= 0 else 'never' for s in data['steps_to_converge'][0])}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summary_line, argv=argv)


if __name__ == "__main__":
    main()
