"""Fig. 9: the Hessian spectrum at the minimum reached by gradient descent depends on Q.

Two-layer networks (m, n, hidden) = (10, 5, 50) are initialised at scales 0.001, 0.3, 0.6 and
0.9 (legend: Q at initialisation), trained to a global minimum at learning rate 0.1, and the
Hessian of |Y - U sigma(V^T)|_F^2 over all 750 weights is diagonalised. At a zero-loss minimum
the Hessian is 2 J^T J, of rank at most m*n = 50; its nonzero eigenvalues grow with |Q| for
linear and ReLU networks.

--same-function tests the claim at a fixed function: each trained minimum is moved along the symmetry, where the
loss stays at its minimum and Q changes, by one lambda for every neuron (the largest Hessian eigenvalue is plotted
against Q, integral from 0) and by each neuron's own (per_neuron.py, to test whether a per-neuron statistic predicts
the sharpness where the sum does not). --seeds N repeats everything for N draws. A run that diverges gets NaN
eigenvalues and is marked.

Writes DIR/Q-hessian-eigenvalues/Q-sharpness_{activation}_mnk_10_5_50.{pdf,png,npz,json} and, with
--same-function, same_function_{activation}_sharpness_mnk_10_5_50 and per_neuron_{...} there.
"""
import numpy as np

from gfs.runs.command_line import PerActivation, figure_parser, no_progress
from gfs.runs.command_line import Job, run_figure_script, steps_per_activation
# torch, the models and pyplot load inside the functions that use them, so that --help answers at once

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_hessian_eigenvalues.py)
M, N, HIDDEN = 10, 5, 50                 # note: m and n are swapped relative to Figs. 3 and 6
INIT_STDS = [0.001, 0.3, 0.6, 0.9]
LEARNING_RATE = 0.1
PAPER_STEPS = PerActivation(4_000, sigmoid=8_000)
QUICK_STEPS = PerActivation(500, sigmoid=1_000)
NONZERO = 1e-3                           # eigenvalues above this count as nonzero (the paper's bins start here)

# The same-function experiment (not in the paper): lambdas from 1/4 to 1 and from 1 to 4 (or to where sigma's
# range ends), 3 geometric steps each side (models.orbit_scales).
ORBIT_SPAN = (1 / 4, 4.0)
PER_NEURON_PLOTTED = 1                   # the per-neuron figure shows the minima of INIT_STDS[1]


def make_parser():
    parser = figure_parser(__doc__, activations=True, seeds=True)
    parser.add_argument("--same-function", action="store_true",
                        help="also the same-function experiment: each minimum moved along the symmetry, the "
                             "largest Hessian eigenvalue against Q (an extra figure per activation)")
    return parser


def figure_name(activation, experiment="paper"):
    stem = f"Q-sharpness_{activation}" if experiment == "paper" else f"{experiment}_{activation}_sharpness"
    return f"Q-hessian-eigenvalues/{stem}_mnk_{M}_{N}_{HIDDEN}"


def q_label(Q):
    return f"Q={Q:.3g}" if abs(Q) > 1e-3 else f"Q={Q:.2e}"


def train(*, experiment="paper", **kwargs):
    """The figure's data: train_paper (Fig. 9) or train_same_function."""
    return (train_same_function if experiment == "same_function" else train_paper)(**kwargs)


def train_minima(activation, steps, device, dtype, seeds, progress, what):
    """(gradient_descent_seeds's result, U0, V0) from each seed's initialisations; the result's 'finite' [S, R] marks
    the runs whose final weights are finite (the others diverged)."""
    from models import paper_init, paper_target
    from gfs.training import gradient_descent_seeds
    Y = paper_target(M, N)
    U0, V0 = paper_init(M, N, HIDDEN, INIT_STDS, seeds)  # [S, R, m, k], [S, R, n, k]
    result = gradient_descent_seeds(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype), LEARNING_RATE,
                                    steps, progress, f"{what} {activation}", model="elementwise", activation=activation,
                                    loss_kind="squared")
    result["finite"] = (result["diverged_at"] < 0) & np.isfinite(result["U"]).all(axis=(2, 3)) \
        & np.isfinite(result["V"]).all(axis=(2, 3))
    return result, U0, V0


def train_paper(*, activation, steps, device, dtype, seeds=1, progress=no_progress):
    """Train the four init scales of every seed, then diagonalise each run's Hessian (float64; NaN for a run that
    diverged). Returns the figure's data (docs/outputs.md lists the keys)."""
    import torch

    from gfs import per_neuron
    from models import conserved_Q, paper_target
    from gfs.training import squared_loss_hessian
    result, U0, V0 = train_minima(activation, steps, device, dtype, seeds, progress, "Fig. 9")
    Y = paper_target(M, N)
    eigenvalues = np.full(result["finite"].shape + ((M + N) * HIDDEN,), np.nan)
    for s, r in zip(*np.nonzero(result["finite"])):
        H = squared_loss_hessian(result["U"][s, r], result["V"][s, r], Y, activation)  # float64 numpy weights
        eigenvalues[s, r] = torch.linalg.eigvalsh(H).numpy()
    Q0 = conserved_Q(U0.double(), V0.double(), activation).numpy()
    return {
        "steps": result["steps"], "loss": result["loss"][0], "Q": result["Q"][0], "init_std": np.array(INIT_STDS),
        "labels": np.array([q_label(q) for q in Q0[0]]), "eigenvalues": eigenvalues[0],
        "Q0": Q0, "Q0_zero": conserved_Q(U0.double(), V0.double(), activation, "zero").numpy(),
        "largest_eigenvalue": eigenvalues.max(axis=-1),
        "nonzero_count": np.where(result["finite"], (eigenvalues > NONZERO).sum(axis=-1), -1),
        "final_loss": result["loss"][..., -1], "diverged_at": result["diverged_at"],
        "Q_neurons0": per_neuron.neuron_Q(U0.double(), V0.double(), activation).numpy(),
        "Q_neurons_final": per_neuron.neuron_Q(*map(torch.from_numpy, (result["U"], result["V"])), activation).numpy(),
        "activation": np.array(activation),
    }


def train_same_function(*, activation, steps, device, dtype, seeds=1, progress=no_progress):
    """Train the minima of Fig. 9 (the same runs), move each along its symmetry orbits, and compute the largest
    eigenvalue of 2 J J^T at every point (training.gauss_newton_eigenvalues); at both ends of seed 0's orbits also the
    full Hessian's, as a check. Returns the data of two figures; NaN for a minimum whose run diverged."""
    import torch

    from gfs import per_neuron
    from models import conserved_Q, elementwise_output, move_along_symmetry, orbit_scales, paper_target
    from gfs.training import gauss_newton_eigenvalues, squared_loss_hessian
    result, _, _ = train_minima(activation, steps, device, dtype, seeds, progress, "same function")
    finite = torch.from_numpy(result["finite"])
    U = torch.from_numpy(result["U"]).where(finite[..., None, None], 0.0)  # a diverged minimum: computed at 0,
    V = torch.from_numpy(result["V"]).where(finite[..., None, None], 0.0)  # then NaN
    lambdas = orbit_scales(V, activation, *ORBIT_SPAN)  # [S, R, L]
    U, V = move_along_symmetry(U.unsqueeze(-3), V.unsqueeze(-3), activation,
                               lambdas.unsqueeze(-1).expand(*lambdas.shape, HIDDEN))  # [S, R, L, m|n, k]
    Y = paper_target(M, N).double()
    output = elementwise_output(U, V, activation)
    ends = [0, lambdas.shape[-1] - 1]  # seed 0's orbit ends, where the Gauss-Newton part is checked
    hessian_top = np.array([[torch.linalg.eigvalsh(squared_loss_hessian(U_run[i], V_run[i], Y, activation))[-1].item()
                             for i in ends] for U_run, V_run in zip(U[0], V[0])])
    def masked(x, runs=result["finite"]):  # NaN for every point of the orbit of a minimum whose run diverged
        x = np.asarray(x)
        return np.where(runs.reshape(runs.shape + (1,) * (x.ndim - runs.ndim)), x, np.nan)

    middle = lambdas.shape[-1] // 2  # lambda = 1: the minimum itself
    U_min, V_min = U[..., middle, :, :], V[..., middle, :, :]  # [S, R, m|n, k]
    inputs = per_neuron.off_data_inputs(N)
    same = {
        "lambdas": masked(lambdas), "init_std": np.array(INIT_STDS),
        "Q": masked(conserved_Q(U, V, activation)), "Q_zero": masked(conserved_Q(U, V, activation, "zero")),
        "output": masked(output), "loss": masked((Y - output).square().sum(dim=(-1, -2))),
        "largest_eigenvalue": masked(gauss_newton_eigenvalues(U, V, activation)[..., -1]),
        "largest_eigenvalue_hessian": masked(hessian_top, result["finite"][0]),  # seed 0, orbit ends: [R, 2]
        "off_data_gap": masked(per_neuron.off_data_gap(U, V, activation, U_min.unsqueeze(-3), V_min.unsqueeze(-3),
                                                       inputs)),
        "final_loss": result["loss"][..., -1], "diverged_at": result["diverged_at"], "activation": np.array(activation),
    }
    # The per-neuron figure: the minima moved along their per-neuron orbits, [S, R, 2, 5] (seed, minimum, orbit, point)
    U_pn, V_pn, lambdas_pn = per_neuron.per_neuron_orbits(U_min, V_min, activation)  # [S, R, P, ...]
    orbit = lambda moved, itself: masked(per_neuron.with_original(moved, itself, 2))  # noqa: E731
    data = {
        "orbit_steps": np.array(per_neuron.ORBIT_STEPS), "activation": np.array(activation),
        "init_std": np.array(INIT_STDS), "lambdas": orbit(lambdas_pn, np.ones(U_min.shape[:-2] + (HIDDEN,))),
        "Q_neurons": orbit(per_neuron.neuron_Q(U_pn, V_pn, activation), per_neuron.neuron_Q(U_min, V_min, activation)),
        **per_neuron.orbit_statistics(U_pn, V_pn, U_min, V_min, activation, orbit),
        "largest_eigenvalue": orbit(gauss_newton_eigenvalues(U_pn, V_pn, activation)[..., -1],
                                    gauss_newton_eigenvalues(U_min, V_min, activation)[..., -1]),
        **per_neuron.orbit_gaps(U_pn, V_pn, U_min, V_min, activation, inputs, orbit),
        "final_loss": result["loss"][..., -1], "diverged_at": result["diverged_at"],
    }
    return [same, data]


def plot(data):
    from gfs import per_neuron
    if "orbit_steps" in data:  # the per-neuron orbits of the minima of init std 0.3 (the others are in the data)
        shown = {k: v[:, PER_NEURON_PLOTTED] for k, v in data.items() if np.ndim(v) >= 4}
        return per_neuron.plot_orbits(shown, "largest_eigenvalue", "Largest Hessian eigenvalue "
                                      f"(minima of init std {INIT_STDS[PER_NEURON_PLOTTED]:g})",
                                      f"Fig. 9 per-neuron orbits, {data['activation']} activation")
    return plot_same_function(data) if "lambdas" in data else plot_paper(data)


def plot_paper(data):
    """Histograms of seed 0's spectra; a run that diverged has none and '(diverged)' in its label."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots()
    eigenvalues = data["eigenvalues"]
    top = np.nanmax(eigenvalues) if np.isfinite(eigenvalues).any() else 1.0
    bins = np.linspace(NONZERO, top * 1.02, 60)
    for run, label in enumerate(data["labels"]):
        diverged = data["diverged_at"][0][run] >= 0 or not np.isfinite(eigenvalues[run]).all()
        ax.hist(eigenvalues[run][np.isfinite(eigenvalues[run])], bins=bins, alpha=0.8, color=f"C{run}",
                label=str(label) + (" (diverged)" if diverged else ""))
    ax.set_xlim(0, top * 1.05)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
    ax.set_xlabel("Eigenvalues of Hessian", fontsize=20)
    ax.set_ylabel("Frequency", fontsize=20)
    ax.tick_params(labelsize=18)
    ax.legend(fontsize=16)
    ax.set_title(f"{data['activation']} activation", fontsize=18)
    return fig


def plot_same_function(data):
    """Largest eigenvalue against Q (integral from 0) along each minimum's orbit: one colour per init scale,
    seed 0 bold, other seeds thin."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    Q, top = data["Q_zero"], data["largest_eigenvalue"]
    for s in range(len(Q)):
        for r, std in enumerate(data["init_std"]):
            diverged = data["diverged_at"][s, r] >= 0
            label = f"init std {std:g}" + (" (diverged)" if diverged else "") if s == 0 else None
            ax.plot(Q[s, r], top[s, r], "o-" if s == 0 else "-", color=f"C{r}", linewidth=2.5 if s == 0 else 0.8,
                    alpha=1 if s == 0 else 0.4, markersize=5, label=label, zorder=3 if s == 0 else 2)
    if len(Q) > 1:
        ax.plot([], [], "-", color="0.5", linewidth=0.8, label=f"seeds 1-{len(Q) - 1}")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlabel(r"$Q$ (integral from 0) along the orbit of each minimum", fontsize=12)
    ax.set_ylabel("Largest Hessian eigenvalue", fontsize=12)
    ax.legend(fontsize=9)
    ax.set_title(f"Fig. 9 same function, {data['activation']} activation", fontsize=12)
    return fig


def make_jobs(args):
    from gfs import per_neuron
    from models import SEED_RULE
    jobs = []
    for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items():
        common = {"activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_stds": INIT_STDS,
                  "learning_rate": LEARNING_RATE, "steps": steps, "seeds": args.seeds, "seed_rule": SEED_RULE,
                  "loss": "|Y - U sigma(V^T)|_F^2"}
        kwargs = dict(activation=a, steps=steps, device=args.device, dtype=args.dtype, seeds=args.seeds)
        jobs.append(Job(figure_name(a), kwargs, {
            "figure": "Fig. 9", **common, "nonzero_threshold": NONZERO,
            "hessian_of": "|Y - U sigma(V^T)|_F^2 over concat(U.flatten(), V.flatten()), float64, eigvalsh",
            "plotted": "seed 0 (eigenvalues, loss, Q, labels); per-run numbers [seed, run] for every seed"}))
        if args.same_function:
            jobs.append(Job(figure_name(a, "same_function"), dict(kwargs, experiment="same_function"), {
                "figure": "Fig. 9, same function (not in the paper)", **common, "lambda_span": list(ORBIT_SPAN),
                "off_data_gap": per_neuron.OFF_DATA_NOTE,
                "move": "U[:, a] / lambda, V[:, a] -> sigma^-1(lambda sigma(V[:, a])), one lambda for all neurons",
                "largest_eigenvalue": "of 2 J J^T (the Hessian's Gauss-Newton part, equal to the Hessian at a "
                                      "zero-loss minimum), float64; largest_eigenvalue_hessian: the full Hessian's, "
                                      "at both ends of seed 0's orbits",
                "Q_zero": "Q with the integral from 0 (models.conserved_Q convention='zero'); Q: the paper code's"},
                also=((figure_name(a, "per_neuron"), {
                    "figure": "Fig. 9, per-neuron orbits (not in the paper)", **common, **per_neuron.SETTINGS,
                    "orbit_steps": list(per_neuron.ORBIT_STEPS),
                    "off_data_gap": per_neuron.OFF_DATA_NOTE, "largest_eigenvalue": "of 2 J J^T, float64",
                    "plotted": f"the minima of init std {INIT_STDS[PER_NEURON_PLOTTED]:g} ([:, {PER_NEURON_PLOTTED}])",
                    "plotted_run": PER_NEURON_PLOTTED}),)))  # which orbit the figure plots: an index into init_stds
    return jobs


def summary_line(name, data):
    if "orbit_steps" in data:
        shown = data["largest_eigenvalue"][0, PER_NEURON_PLOTTED]
        return (f"{name}: seed 0, init std {data['init_std'][PER_NEURON_PLOTTED]:g}: largest eigenvalue along the "
                f"orbits {', '.join(f'{x:.4g}' for x in shown[0])}; {', '.join(f'{x:.4g}' for x in shown[1])}")
    if "lambdas" in data:
        return (f"{name}: seed 0, init std {data['init_std'][1]:g}: Q (from 0) "
                f"{', '.join(f'{q:.3g}' for q in data['Q_zero'][0, 1])} -> largest eigenvalue "
                f"{', '.join(f'{x:.4g}' for x in data['largest_eigenvalue'][0, 1])}")
    return (f"{name}: {', '.join(map(str, data['labels']))}; largest eigenvalue "
            f"{', '.join(f'{x:.4g}' for x in data['largest_eigenvalue'][0])}; nonzero "
            f"{', '.join(map(str, data['nonzero_count'][0]))}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summary_line, argv=argv)


if __name__ == "__main__":
    main()
