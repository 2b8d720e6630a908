"""Fig. 3: the conserved quantity Q stays (nearly) constant under gradient descent.

Two-layer networks U sigma(V^T) with linear, ReLU, tanh and sigmoid activations are trained
by full-batch gradient descent at learning rates 0.1, 0.01 and 0.001 from one initialisation.
Top panel: the relative drift of Q, |Q_t|/N_0 - |Q_1|/N_0 for t >= 1, with N_0 the 'sum'
analogue of Q at initialisation; bottom panel: the loss |Y - U sigma(V^T)|_F. Gradient flow
conserves Q exactly; gradient descent breaks it by O(lr) per unit of flow time.

The plot uses the paper code's Q and N_0, which for tanh and sigmoid carry a constant (n k); the data also hold the
drift free of it (delta_Q_tilde_zero: Q integrated from 0, N_0 the size of Q's two terms).

Writes DIR/Q-dynamics/elementwise_{activation}_loss_Q.{pdf,png,npz,json}.
"""
import numpy as np

from gfs.paper_numbers import FIG3_LEARNING_RATES
from gfs.runs.command_line import PerActivation, figure_parser, no_progress
from gfs.runs.command_line import Job, plot_loss_curves, run_figure_script, steps_per_activation
# torch, the models and pyplot load inside the functions that use them, so that --help answers at once

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_dynamics_elementwise.py)
M, N, HIDDEN = 5, 10, 50                 # output dim, input dim (X = I_N), hidden width
INIT_STD = 0.1                           # U, V ~ N(0, 0.1^2), each drawn after seed 12345
LEARNING_RATES = list(FIG3_LEARNING_RATES)
PAPER_STEPS = PerActivation(400_000, sigmoid=800_000)
QUICK_STEPS = PerActivation(2_000, sigmoid=4_000)


def make_parser():
    return figure_parser(__doc__, activations=True, seeds=True)


def figure_name(activation):
    return f"Q-dynamics/elementwise_{activation}_loss_Q"


def delta_Q_tilde(Q, normaliser):
    """The paper's Delta Q-tilde: |Q_t| / N_0 against its value after the first step, for the records t >= 1 (the
    paper records after each step, so its curve has no point at initialisation). Q: [..., T], normaliser: [...]
    -> [..., T-1]."""
    abs_Q = np.abs(Q[..., 1:]) / np.asarray(normaliser)[..., None]
    return abs_Q - abs_Q[..., :1]


def max_abs(values):
    """[..., T] -> [...]: largest |value| over the finite records (a diverged run's later records are NaN)."""
    return np.abs(np.where(np.isfinite(values), values, 0.0)).max(axis=-1)


def train(*, activation, steps, device, dtype, seeds=1, progress=no_progress):
    """Train the three learning rates of every seed. Returns the figure's data: seed 0's curves and every seed's
    per-run numbers [S, 3] (docs/outputs.md lists the keys)."""
    import torch

    from gfs import per_neuron
    from models import conserved_Q, paper_init, paper_target, q_normaliser
    from gfs.training import gradient_descent_seeds
    Y = paper_target(M, N)
    U0, V0 = paper_init(M, N, HIDDEN, [INIT_STD] * len(LEARNING_RATES), seeds)  # [S, R, m, k]: one draw per seed
    result = gradient_descent_seeds(U0.to(device, dtype), V0.to(device, dtype), Y.to(device, dtype), LEARNING_RATES,
                                    steps, progress, f"Fig. 3 {activation}", model="elementwise", activation=activation,
                                    loss_kind="frobenius")
    U0, V0 = U0.double(), V0.double()
    Q0, Q0_zero = conserved_Q(U0, V0, activation).numpy(), conserved_Q(U0, V0, activation, "zero").numpy()
    normaliser, normaliser_zero = (q_normaliser(U0, V0, activation, c).numpy() for c in ("paper", "zero"))
    # Q in the zero convention: the recorded (paper code's) Q plus its constant offset
    delta = delta_Q_tilde(result["Q"], normaliser)
    delta_zero = delta_Q_tilde(result["Q"] + (Q0_zero - Q0)[..., None], normaliser_zero)
    change = (result["Q"] - result["Q"][..., :1]) / normaliser_zero[..., None]  # from initialisation: first step too
    U_T, V_T = torch.from_numpy(result["U"]), torch.from_numpy(result["V"])  # [S, R, ...] final weights
    curvature = torch.maximum(per_neuron.curvature_of_Q(V0, activation), per_neuron.curvature_of_Q(V_T, activation))
    mse = result["loss"] ** 2 / (M * N)  # the trained loss from the recorded |Y - U sigma(V^T)|_F
    decrease = mse[..., 0] - np.nanmin(mse, axis=-1)
    bound = per_neuron.gd_drift_bound(activation, np.array(LEARNING_RATES), decrease, curvature.numpy())
    return {
        "steps": result["steps"], "loss": result["loss"][0], "Q": result["Q"][0],
        "delta_Q_tilde_steps": result["steps"][1:], "delta_Q_tilde": delta[0], "delta_Q_tilde_zero": delta_zero[0],
        "lr": np.array(LEARNING_RATES), "labels": np.array([f"lr={lr:g}" for lr in LEARNING_RATES]),
        "Q0": Q0, "Q0_zero": Q0_zero, "normaliser": normaliser, "normaliser_zero": normaliser_zero,
        "max_delta_Q_tilde": max_abs(delta), "max_delta_Q_tilde_zero": max_abs(delta_zero),
        "max_Q_change_zero": max_abs(change), "drift_bound_zero": bound / normaliser_zero,
        "curvature": curvature.numpy(), "Q_neurons0": per_neuron.neuron_Q(U0, V0, activation).numpy(),
        "Q_neurons_final": per_neuron.neuron_Q(U_T, V_T, activation).numpy(),
        "final_loss": result["loss"][..., -1], "diverged_at": result["diverged_at"], "activation": np.array(activation),
    }


def plot(data):
    import matplotlib.pyplot as plt
    fig, (ax_q, ax_loss) = plt.subplots(2, sharex=True, figsize=(6.4, 4.8))
    for run in range(len(data["labels"])):
        ax_q.plot(data["delta_Q_tilde_steps"], data["delta_Q_tilde"][run], color=f"C{run}", linewidth=2.5)
    plot_loss_curves(ax_loss, data, linewidth=2.5, label_size=22)  # seed 0's runs
    ax_q.set_ylabel(r"$\Delta\tilde{Q}$", fontsize=20)
    ax_q.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (ax_q, ax_loss):
        ax.tick_params(labelsize=16)  # tick_params: set_xticks(..., fontsize=) fails on matplotlib >= 3.8
    ax_loss.legend(fontsize=13)
    ax_q.set_title(f"{data['activation']} activation", fontsize=16)
    fig.subplots_adjust(hspace=0.1)
    return fig


def make_jobs(args):
    from gfs import per_neuron
    from models import SEED_RULE
    return [Job(figure_name(a), dict(activation=a, steps=steps, device=args.device, dtype=args.dtype, seeds=args.seeds),
                {"figure": "Fig. 3", "activation": a, "m": M, "n": N, "hidden": HIDDEN, "init_std": INIT_STD,
                 "learning_rates": LEARNING_RATES, "steps": steps, "seeds": args.seeds, "seed_rule": SEED_RULE,
                 "loss": "|Y - U sigma(V^T)|_F after each step",
                 "delta_Q_tilde": "|Q_t|/N_0 - |Q_1|/N_0 at delta_Q_tilde_steps (t >= 1), paper-code Q and N_0",
                 "delta_Q_tilde_zero": "the same with Q integrated from 0 and N_0 the size of its two terms "
                                       "(models.conserved_Q and q_normaliser, convention='zero')",
                 "max_Q_change_zero": "max over t of |Q_t - Q_0| / N_0 (zero convention), first step included",
                 "drift_bound_zero": f"per_neuron.gd_drift_bound / N_0: {per_neuron.DRIFT_BOUND}, L the MSE "
                                     "trained on (L_T its lowest record), F'' at the initial and final weights "
                                     "(curvature)", "bound_higher_order": per_neuron.HIGHER_ORDER,
                 "Q_neurons0": "per-neuron Q_a (zero convention, per_neuron.neuron_Q) at the start and the end "
                               "(Q_neurons_final) [S, R, k]",
                 "plotted": "seed 0 (curves); per-run numbers [seed, run] for every seed"})
            for a, steps in steps_per_activation(args, PAPER_STEPS, QUICK_STEPS).items()]


def summary_line(name, data):
    from gfs.per_neuron import DRIFT_BOUND
    listed = lambda key: ", ".join(f"{x:.2g}" for x in data[key][0])  # noqa: E731 seed 0's runs
    return (f"{name}: final loss {listed('final_loss')}; max |dQ~| {listed('max_delta_Q_tilde')} (Q from 0: "
            f"{listed('max_delta_Q_tilde_zero')}); max |Q_t - Q_0|/N_0 {listed('max_Q_change_zero')}, bound "
            f"({DRIFT_BOUND}) / N_0: {listed('drift_bound_zero')}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, train, plot, summary_line, argv=argv)


if __name__ == "__main__":
    main()
