"""Figs. 4-5: the conserved quantity Q is sharply concentrated under common initialisations.

Q is sampled over 1000 random initialisations (U ~ N(0, 1/h), V ~ N(0, 1/n): fan-in normal, the
paper code's choice) of two-layer networks. Fig. 4: four activations at (m, h, n) = (100, 100,
100). Fig. 5: linear networks at (100, 200, 100) and (200, 100, 100), where the centre moves to
E[Q] = m - h. Gradient flow keeps Q fixed, so it only reaches the part of the minimum with
this Q.

The histograms show the paper code's Q. The data also hold Q integrated from 0 (Q_zero), its
analytic mean and the size of its terms in both conventions (Q_terms_zero, Q_terms_paper).

Writes DIR/Q-distribution/{activation}_mhn_{m}_{h}_{n}.{pdf,png,npz,json}.
"""
import numpy as np

from gfs.runs.command_line import UsageError, figure_parser, no_progress, positive_int, with_spread
from gfs.runs.command_line import Job, run_figure_script
# torch, the models and pyplot load inside the functions that use them, so that --help answers at once

# The paper's settings (Rose-STL-Lab/Gradient-Flow-Symmetry, Q_distribution.py)
from gfs.paper_numbers import FIG4_SHAPE, FIG5_SHAPES  # (m, h, n): Fig. 4 for every activation; Fig. 5 linear only
PAPER_SAMPLES = 1000                               # sample i is drawn after torch.manual_seed(i**2)
QUICK_SAMPLES = 50


def make_parser():
    parser = figure_parser(__doc__, activations=True, steps_help=None)
    parser.add_argument("--samples", type=positive_int, default=None, metavar="N",
                        help=f"number of initialisations per histogram (default: {PAPER_SAMPLES})")
    parser.set_defaults(jobs=1)  # seconds of work: worker start-up would cost more than it saves
    parser.training_flags.append("--samples")
    return parser


def figure_name(activation, shape):
    return "Q-distribution/{}_mhn_{}_{}_{}".format(activation, *shape)


def expected_Q_at_init(activation, m, h, n, convention="paper"):
    """E[Q] under this figure's initialisation, U ~ N(0, 1/h), V ~ N(0, 1/n), paper-code Q or (convention="zero")
    Q integrated from 0; NaN for an activation without a closed-form E[F]."""
    from models import expected_Q as gaussian_expected_Q
    return gaussian_expected_Q(activation, m, h, n, u_var=1 / h, v_var=1 / n, convention=convention)


def sample_Q(*, activation, shape, samples, device, dtype, progress=no_progress):
    """Q of `samples` initialisations drawn exactly as the paper draws them. Returns the figure's data."""
    import torch

    from models import conserved_Q, paper_normal, q_normaliser
    m, h, n = shape
    Q, Q_zero, terms, terms_zero = (np.empty(samples) for _ in range(4))
    with progress(samples, f"Q {activation} {m}x{h}x{n}", unit="sample") as bar:
        for i in range(samples):
            U = paper_normal(m, h, std=np.sqrt(1 / h), seed=i ** 2).to(device, dtype)
            # V goes on in U's random stream and is drawn the same way (torch.rand first), as in the paper
            V = torch.rand(n, h, dtype=torch.float32).normal_(mean=0, std=np.sqrt(1 / n)).to(device, dtype)
            Q[i], Q_zero[i] = float(conserved_Q(U, V, activation)), float(conserved_Q(U, V, activation, "zero"))
            terms[i], terms_zero[i] = (float(q_normaliser(U, V, activation, c)) for c in ("paper", "zero"))
            bar.update(1)
    counts, edges = np.histogram(Q)  # numpy's default 10 bins, as in the paper
    return {"Q": Q, "counts": counts, "bin_edges": edges, "shape_mhn": np.array(shape),
            "expected_Q": np.array(expected_Q_at_init(activation, m, h, n)),
            "mean": np.array(Q.mean()), "std": np.array(Q.std()),
            "Q_zero": Q_zero, "expected_Q_zero": np.array(expected_Q_at_init(activation, m, h, n, "zero")),
            "Q_terms_zero": np.array(terms_zero.mean()), "Q_terms_paper": np.array(terms.mean()),
            "activation": np.array(activation)}


def plot(data):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots()
    edges = data["bin_edges"]
    ax.bar((edges[1:] + edges[:-1]) / 2, data["counts"], width=edges[1] - edges[0])
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # the paper hard-coded sigmoid's ticks
    expected = float(data["expected_Q"])
    if np.isfinite(expected):  # NaN: no closed form for this activation, no line
        ax.axvline(expected, color="C3", linewidth=2, linestyle="--", label=f"analytic mean E[Q] = {expected:.5g}")
        ax.legend(fontsize=11, loc="upper right")
    ax.set_xlabel(r"$Q$", fontsize=20)
    ax.set_ylabel("frequency", fontsize=20)
    ax.tick_params(labelsize=18)
    ax.set_title("{} activation, (m, h, n) = ({}, {}, {})".format(data["activation"], *data["shape_mhn"]), fontsize=14)
    return fig


def make_jobs(args):
    if args.steps is not None:
        raise UsageError("--steps does not apply here: this script samples initialisations and does not "
                         "train (use --samples)")
    samples = args.samples or (QUICK_SAMPLES if args.quick else PAPER_SAMPLES)
    figures = [(a, FIG4_SHAPE) for a in args.activations]
    if "linear" in args.activations:
        figures += [("linear", shape) for shape in FIG5_SHAPES]
    return [Job(figure_name(a, shape), dict(activation=a, shape=shape, samples=samples, device=args.device,
                                            dtype=args.dtype),
                {"figure": "Fig. 4" if shape == FIG4_SHAPE else "Fig. 5", "activation": a, "shape_mhn": list(shape),
                 "fig4_shape_mhn": list(FIG4_SHAPE), "fig5_shapes_mhn": [list(s) for s in FIG5_SHAPES],
                 "samples": samples, "seeds": "torch.manual_seed(i**2), i < samples",
                 "init": "U ~ N(0, 1/h) (m x h), V ~ N(0, 1/n) (n x h): fan-in normal",
                 "histogram": "numpy.histogram, 10 bins",
                 "expected_Q": "closed form, paper-code Q (NaN where the activation has no closed-form E[F])",
                 "Q_zero": "Q integrated from 0 (models.conserved_Q convention='zero'), with expected_Q_zero",
                 "Q_terms_zero": "the size of Q's terms, paper_scale * (1/2 |U|^2 + sum |F(V)|) (models.q_normaliser, "
                                 "zero convention), mean over the samples; Q_terms_paper: the paper code's 'sum' "
                                 "analogue of Q, its mean"})
            for a, shape in figures]


def summary_line(name, data):
    spread = float(data["std"])  # digits down to the spread's scale: tanh's Q is about -1e4 +- 0.3
    return (f"{name}: Q = {with_spread(data['mean'], spread)} +- {spread:.3g} "
            f"[{with_spread(data['Q'].min(), spread)}, {with_spread(data['Q'].max(), spread)}], "
            f"E[Q] = {with_spread(data['expected_Q'], spread)}")


def main(argv=None):
    run_figure_script(make_parser(), make_jobs, sample_Q, plot, summary_line, argv=argv, trains=False)


if __name__ == "__main__":
    main()
