"""Fig. 6: convergence of gradient descent for initialisations with different conserved quantity Q.

The two-layer networks of Fig. 3 are initialised at scales 0.01, 0.1 and 1 (which set Q at
initialisation, given in the legend) and trained at learning rate 1e-3. The curves show the
loss |Y - U sigma(V^T)|_F against training steps.

Here a larger init scale gives both a larger |Q| and another initial function. --same-function separates the two
(as Fig. 7 does for the radial net): each seed's initialisation at scale 0.1 is moved along the symmetry to several Q
with the same initial output, by one lambda for every neuron (models.move_along_symmetry) and by each neuron's own
(per_neuron.py, to test whether a per-neuron statistic predicts the steps where the sum does not); each is trained
at learning rate 1e-3, and the steps to a loss of 1e-2 are plotted against Q (integral from 0). --seeds N repeats
everything for N draws.

Writes DIR/Q-convergence/elementwise_{activation}_convergence.{pdf,png,npz,json} and, with
--same-function, same_function_{activation}_convergence and per_neuron_{activation}_convergence there.
"""
import numpy as np

from gfs.runs.command_line import PerActivation, figure_parser, no_progress
from gfs.runs.command_line import Job, plot_loss_curves, run_figure_script, steps_per_activation
# torch, the models and pyplot load inside the functions that use them, so that --help answers at once

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_convergence_elementwise.py)
M, N, HIDDEN = 5, 10, 50
INIT_STDS = [0.01, 0.1, 1.0]             # U, V ~ N(0, std^2), each drawn after seed 12345
LEARNING_RATE = 1e-3
PAPER_STEPS = PerActivation(400_000, sigmoid=800_000)
QUICK_STEPS = PerActivation(2_000, sigmoid=4_000)
CONVERGED_LOSS = 1e-2                    # 'steps to converge' = first step with loss below this

# The same-function experiment (not in the paper): lambdas from SPAN[0] to 1 and from 1 to SPAN[1] (or to where sigma's
# range ends), 3 geometric steps each side (models.orbit_scales). Sigmoid's span is narrower: further out its hidden
# units sit in the flat tails and some runs do not converge in 800,000 steps (lambda = 1/2: 489,200 steps in seed 0,
# never in two of five seeds; 1.65: 768,600), which would count them as the slowest but keep the batch running.
ORBIT_INIT_STD = 0.1
ORBIT_SPAN = PerActivation((1 / 4, 4.0), sigmoid=(0.6, 1.4))
# The per-neuron orbits (per_neuron.py): the ends and the middle of its default orbit steps, as every point is
# trained (each moved point is one more run of the batch, and a run costs about as much as another at this size).
PER_NEURON_STEPS = (-1.0, 0.0, 1.0)


def make_parser():
    parser = figure_parser(__doc__, activations=True, seeds=True)
    parser.add_argument("--same-function", action="store_true",
                        help="also the same-function experiment: Q moved along the symmetry at a fixed initial "
                             "output, steps to converge against Q (an extra figure per activation)")
    return parser


def figure_name(activation, experiment="paper"):  # experiment: "paper", "same_function" or "per_neuron"
    return f"Q-convergence/{'elementwise' if experiment == 'paper' else experiment}_{activation}_convergence"


def q_label(activation, Q):
    # The paper's legend formats: tanh as an integer, the others to 3 significant digits.
    return f"Q={Q:.0f}" if activation == "tanh" else f"Q={Q:.3g}"


def per_seed(array, seeds):
    """[S * R, ...] (runs of a batch, seed-major) -> [S, R, ...]."""
    return np.asarray(array).reshape(seeds, -1, *np.shape(array)[1:])


def train(*, experiment="paper", **kwargs):
    """The figure's data: train_paper (Fig. 6) or train_same_function."""
    return (train_same_function if experiment == "same_function" else train_paper)(**kwargs)


def train_paper(*, activation, steps, device, dtype, seeds=1, progress=no_progress):
    """Train the three init scales: seed 0 (the paper's figure) for every step, the other seeds until all their runs
    reach the loss threshold. Returns the figure's data (docs/outputs.md lists the keys)."""
    import torch

    from gfs import per_neuron
    from models import conserved_Q, paper_init, paper_target
    from gfs.training import first_step_below, gradient_descent_seeds
    Y = paper_target(M, N)
    U0, V0 = paper_init(M, N, HIDDEN, INIT_STDS, seeds)  # [S, R, m, k], [S, R, n, k]
    result = gradient_descent_seeds(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype), LEARNING_RATE,
                                    steps, progress, f"Fig. 6 {activation}", rest_stop_below=CONVERGED_LOSS,
                                    model="elementwise", activation=activation, loss_kind="frobenius")
    loss, Q0 = result["loss"], conserved_Q(U0.double(), V0.double(), activation).numpy()
    return {
        "steps": result["steps"], "loss": loss[0], "Q": result["Q"][0],
        "labels": np.array([q_label(activation, q) for q in Q0[0]]), "init_std": np.array(INIT_STDS),
        "Q0": Q0, "Q0_zero": conserved_Q(U0.double(), V0.double(), activation, "zero").numpy(),
        "steps_to_converge": first_step_below(result["steps"], loss, CONVERGED_LOSS),
        "initial_loss": loss[..., 0], "final_loss": loss[0, :, -1], "diverged_at": result["diverged_at"],
        "Q_neurons0": per_neuron.neuron_Q(U0.double(), V0.double(), activation).numpy(),
        "Q_neurons_final": per_neuron.neuron_Q(*map(torch.from_numpy, (result["U"], result["V"])), activation).numpy(),
        "activation": np.array(activation),
    }


def train_same_function(*, activation, steps, device, dtype, seeds=1, progress=no_progress):
    """Move each seed's initialisation along its symmetry orbit (one lambda for all neurons) and its two per-neuron
    orbits, and train every point as one batch until all reach the loss threshold (or `steps`). Returns the data of
    two figures: same-function [S, L] per seed and lambda, per-neuron [S, 2, 3] per seed, orbit and point."""
    import torch

    from gfs import per_neuron
    from models import conserved_Q, elementwise_output, move_along_symmetry, orbit_scales, paper_init, paper_target
    from gfs.training import first_step_below, gradient_descent
    Y = paper_target(M, N)
    U0, V0 = paper_init(M, N, HIDDEN, [ORBIT_INIT_STD], seeds)  # [S, 1, m, k]
    lambdas = orbit_scales(V0[:, 0], activation, *ORBIT_SPAN[activation])  # [S, L]
    one_lambda = lambdas.unsqueeze(-1).expand(*lambdas.shape, HIDDEN)  # [S, L, k]
    U, V = move_along_symmetry(U0.double(), V0.double(), activation, one_lambda)  # [S, L, m, k], [S, L, n, k]
    # U_pn [S, P, m, k], V_pn [S, P, n, k], lambdas_pn [S, P, k]
    U_pn, V_pn, lambdas_pn = per_neuron.per_neuron_orbits(U0[:, 0], V0[:, 0], activation, PER_NEURON_STEPS)
    L = U.shape[1]
    # the weights trained; Q and the outputs below are theirs
    U_all, V_all = torch.cat([U, U_pn], 1).to(dtype), torch.cat([V, V_pn], 1).to(dtype)  # [S, L + P, ...]
    with progress(steps, f"same function {activation}") as bar:
        result = gradient_descent(U_all.flatten(0, 1).to(device), V_all.flatten(0, 1).to(device),
                                  Y.to(device, dtype), LEARNING_RATE, steps, model="elementwise",
                                  activation=activation, loss_kind="frobenius", progress=bar, stop_below=CONVERGED_LOSS)
    U_all, V_all = U_all.double(), V_all.double()
    steps_to = per_seed(first_step_below(result["steps"], result["loss"], CONVERGED_LOSS), seeds)  # [S, L + P]
    diverged = per_seed(result["diverged_at"], seeds)
    U, V = U_all[:, :L], V_all[:, :L]
    inputs = per_neuron.off_data_inputs(N)
    same = {
        "lambdas": lambdas.numpy(), "Q0": conserved_Q(U, V, activation).numpy(),
        "Q0_zero": conserved_Q(U, V, activation, "zero").numpy(),
        "initial_output": elementwise_output(U, V, activation).numpy(),
        "off_data_gap": per_neuron.off_data_gap(U, V, activation, U0.double(), V0.double(), inputs).numpy(),
        "steps_to_converge": steps_to[:, :L], "diverged_at": diverged[:, :L],
        "trained_steps": np.array(result["trained_steps"]), "step_budget": np.array(steps),
        "activation": np.array(activation),
    }
    middle = L // 2  # lambda = 1: the network itself
    U_pn, V_pn, U_own, V_own = U_all[:, L:], V_all[:, L:], U[:, middle], V[:, middle]
    final_U, final_V = (torch.from_numpy(per_seed(result[key], seeds)) for key in ("U", "V"))  # [S, L + P, m|n, k]
    orbit = lambda moved, itself: per_neuron.with_original(moved, itself, 1)  # noqa: E731 [S, P, ...] -> [S, 2, 3, ...]
    neuron = per_neuron.neuron_Q
    data = {
        "orbit_steps": np.array(PER_NEURON_STEPS), "activation": np.array(activation),
        "lambdas": orbit(lambdas_pn.numpy(), np.ones((seeds, HIDDEN))),
        "Q_neurons": orbit(neuron(U_pn, V_pn, activation).numpy(), neuron(U_own, V_own, activation).numpy()),
        "Q_neurons_final": orbit(neuron(final_U[:, L:], final_V[:, L:], activation).numpy(),
                                 neuron(final_U[:, middle], final_V[:, middle], activation).numpy()),
        **per_neuron.orbit_statistics(U_pn, V_pn, U_own, V_own, activation, orbit),
        **per_neuron.orbit_gaps(U_pn, V_pn, U_own, V_own, activation, inputs, orbit),
        "steps_to_converge": orbit(steps_to[:, L:], steps_to[:, middle]),
        "diverged_at": orbit(diverged[:, L:], diverged[:, middle]), "step_budget": np.array(steps),
    }
    return [same, data]


def plot(data):
    from gfs import per_neuron
    if "orbit_steps" in data:
        never = data["steps_to_converge"] < 0
        steps = np.where(never, data["step_budget"], data["steps_to_converge"])
        return per_neuron.plot_orbits(dict(data, steps_plotted=steps), "steps_plotted",
                                      f"Steps to loss < {CONVERGED_LOSS:g} (x: never, at the budget)",
                                      f"Fig. 6 per-neuron orbits, {data['activation']} activation", mark=never)
    return plot_same_function(data) if "lambdas" in data else plot_paper(data)


def plot_paper(data):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plot_loss_curves(ax, data, linewidth=2.5, label_size=24)  # seed 0's runs
    ax.tick_params(labelsize=18)
    ax.legend(fontsize=16)
    ax.set_title(f"{data['activation']} activation", fontsize=20)
    return fig


def plot_same_function(data):
    """Steps to the loss threshold against Q (integral from 0), one line per seed (seed 0 bold); a run that
    never reaches it is drawn at the step budget with a triangle, a diverged one with an x."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    budget, Q, steps = int(data["step_budget"]), data["Q0_zero"], data["steps_to_converge"]
    diverged, never = data["diverged_at"] >= 0, (steps < 0) & (data["diverged_at"] < 0)
    for s in range(len(Q)):
        style = dict(color="C0" if s == 0 else "0.6", linewidth=2.5 if s == 0 else 1, zorder=3 if s == 0 else 2)
        done = ~never[s] & ~diverged[s]
        ax.plot(Q[s][done], steps[s][done], "o-", markersize=5, **style,
                label="seed 0 (the paper's draw)" if s == 0 else f"seeds 1-{len(Q) - 1}" if s == 1 else None)
        ax.plot(Q[s][never[s]], np.full(never[s].sum(), budget), "^", color=style["color"])
        ax.plot(Q[s][diverged[s]], np.full(diverged[s].sum(), budget), "x", color="C3", markersize=10)
    if never.any():
        ax.plot([], [], "^", color="0.4", label=f"not below {CONVERGED_LOSS:g} in {budget:,} steps")
    if diverged.any():
        ax.plot([], [], "x", color="C3", markersize=10, label="diverged")
    ax.axvline(0, color="0.85", linewidth=1, zorder=1)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(r"$Q$ at initialisation (integral from 0), same initial function", fontsize=12)
    ax.set_ylabel(f"Steps to loss < {CONVERGED_LOSS:g}", fontsize=12)
    ax.legend(fontsize=9)
    ax.set_title(f"Fig. 6 same function, {data['activation']} activation", fontsize=12)
    return fig


def make_jobs(args):
    """Per activation, longest first: the same-function experiment (with --same-function), then Fig. 6."""
    from gfs import per_neuron
    from models import SEED_RULE
    jobs = []
    for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items():
        common = {"activation": a, "m": M, "n": N, "hidden": HIDDEN, "learning_rate": LEARNING_RATE,
                  "converged_loss": CONVERGED_LOSS, "seeds": args.seeds, "seed_rule": SEED_RULE,
                  "loss": "|Y - U sigma(V^T)|_F after each step"}
        kwargs = dict(activation=a, steps=steps, device=args.device, dtype=args.dtype, seeds=args.seeds)
        if args.same_function:
            orbit = {**common, "init_std": ORBIT_INIT_STD, "step_budget": steps,
                     "training": f"stopped once every run is below {CONVERGED_LOSS:g} (no curves are plotted)",
                     "off_data_gap": per_neuron.OFF_DATA_NOTE}
            jobs.append(Job(figure_name(a, "same_function"), dict(kwargs, experiment="same_function"), {
                "figure": "Fig. 6, same function (not in the paper)", **orbit, "lambda_span": list(ORBIT_SPAN[a]),
                "move": "U[:, a] / lambda, V[:, a] -> sigma^-1(lambda sigma(V[:, a])), one lambda for all neurons",
                "Q0_zero": "Q with the integral from 0 (models.conserved_Q convention='zero'); Q0: the paper code's"},
                also=((figure_name(a, "per_neuron"), {"figure": "Fig. 6, per-neuron orbits (not in the paper)", **orbit,
                                                      **per_neuron.SETTINGS, "orbit_steps": list(PER_NEURON_STEPS)}),)))
        jobs.append(Job(figure_name(a), kwargs, {
            "figure": "Fig. 6", **common, "init_stds": INIT_STDS, "steps": steps,
            "plotted": "seed 0 (loss, Q, labels, final_loss [R]); per-run numbers [seed, run] for every seed "
                       "(seeds > 0 trained until every run is below the loss threshold)"}))
    return jobs


def summary_line(name, data):
    from gfs import per_neuron
    never = lambda steps: ", ".join(str(s) if s >= 0 else "never" for s in steps)  # noqa: E731
    if "orbit_steps" in data:
        return (f"{name}: seed 0 steps to loss < {CONVERGED_LOSS:g}, orbit '{per_neuron.FAMILIES[0]}': "
                f"{never(data['steps_to_converge'][0, 0])}; '{per_neuron.FAMILIES[1]}': "
                f"{never(data['steps_to_converge'][0, 1])}")
    reached = f"seed 0 steps to loss < {CONVERGED_LOSS:g}: {never(data['steps_to_converge'][0])}"
    if "lambdas" in data:
        return f"{name}: Q (from 0) {', '.join(f'{q:.3g}' for q in data['Q0_zero'][0])}; {reached}"
    return f"{name}: {', '.join(map(str, data['labels']))}; {reached}"


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summary_line, argv=argv)


if __name__ == "__main__":
    main()
