"""The claims of Figs. 4-5 (Q_distribution.py): Q is sharply concentrated at initialisation, around a centre set by
the layer sizes.
"""
import math

import numpy as np

from gfs import paper_numbers as paper
from gfs.report.toy_rules import q_key
from gfs.report.verdict_rules import (NOT_REPRODUCED, NOT_TESTED, PARTLY, REPRODUCED, TOY_FIGURES, Claim, Files, Result,
                                      Section, fmt, run_table)

# At the paper's sizes m, h, n: FIG4_SHAPE for every activation; FIG5_SHAPES (linear only) are Fig. 5's units m_h_n.
FIG4 = Files("Q-distribution/{}_mhn_" + "_".join(map(str, paper.FIG4_SHAPE)), paper.PAPER_ACTIVATIONS, TOY_FIGURES,
             discover=True)
FIG5 = Files("Q-distribution/linear_mhn_{}", tuple("_".join(map(str, shape)) for shape in paper.FIG5_SHAPES),
             TOY_FIGURES, "histograms (m_h_n)")


def fig5_centres(figures):
    """'+0 for (m, h, n) = (100, 200, 100) and ...': m - h for the saved sizes."""
    shapes = [[int(x) for x in f.setting("shape_mhn")] for f in figures.values()] or paper.FIG5_SHAPES
    return " and ".join(f"{m - h:+d} for {'(m, h, n) = ' * (i == 0)}({m}, {h}, {n})"
                        for i, (m, h, n) in enumerate(shapes))


def fig45_samples(f, convention):
    """Q per initialisation [S] in the convention, its analytic mean and the size of its terms."""
    return dict(samples=f[q_key("Q_zero", convention)], expected=float(f[q_key("expected_Q_zero", convention)]),
                term_scale=float(f["Q_terms_zero" if convention == "zero" else "Q_terms_paper"]))


def rule_q_distribution(samples, expected, term_scale, standard_errors=4, relative_spread=0.05):
    """The sample mean lies within {standard_errors} standard errors (std/sqrt(samples)) of the analytic E[Q], and
    the std is below {relative_spread:.0%} of the size of Q's terms (its mean over the samples: 1/2 |U|^2 + sum |F(V)|
    entry by entry, so that no entries cancel, times the paper code's scale; in the paper code's convention its
    'sum' analogue of Q): both: reproduced; one: partly; neither: not reproduced. Without an analytic E[Q] (an
    activation added later): not tested.

    samples: [S] Q per initialisation; expected: E[Q] (NaN: unknown); term_scale: size of Q's terms (NaN)."""
    samples = np.asarray(samples, dtype=float)
    mean, std = float(samples.mean()), float(samples.std())
    if not (np.isfinite(term_scale) and np.isfinite(expected)):
        return Result(NOT_TESTED, f"mean {mean:.6g} ± {fmt(std)}; no analytic E[Q] and term size",
                      f"mean {mean:.4g} ± {std:.3g}, no E[Q]")
    offset, spread = abs(mean - expected) / max(std / math.sqrt(len(samples)), 1e-300), std / abs(term_scale)
    mean_ok, narrow = offset <= standard_errors, spread <= relative_spread
    text = (f"mean {mean:.6g} vs E[Q] {expected:.6g}: {offset:.2g} standard errors "
            f"({'within' if mean_ok else 'more than'} {standard_errors}); std {fmt(std)} = {spread:.2%} of the "
            f"terms' size {fmt(term_scale)} ({'below' if narrow else 'above'} {relative_spread:.0%})")
    return Result(REPRODUCED if mean_ok and narrow else PARTLY if mean_ok or narrow else NOT_REPRODUCED, text,
                  f"mean {offset:.2g} SE off E[Q], std {spread:.2%} of terms", offset, "standard errors")


FIG45_COLUMNS = [
    ("m, h, n", lambda u, f, r: ", ".join(str(int(x)) for x in f["shape_mhn"])),
    ("samples", lambda u, f, r: len(f["Q"])),
    ("Q from 0: mean ± std", lambda u, f, r: f"{f['Q_zero'].mean():.4g} ± {f['Q_zero'].std():.3g}"),
    ("E[Q]", lambda u, f, r: f"{float(f['expected_Q_zero']):.4g}"),
    ("std / terms, zero", lambda u, f, r: f"{f['Q_zero'].std() / float(f['Q_terms_zero']):.2%}"),
    ("std / terms, paper's", lambda u, f, r: f"{f['Q'].std() / float(f['Q_terms_paper']):.2%}"),
    ("paper code's Q: mean ± std [min, max]", lambda u, f, r: f"{f['Q'].mean():.6g} ± {f['Q'].std():.3g} "
                                                          f"[{f['Q'].min():.6g}, {f['Q'].max():.6g}]"),
    ("paper's code [R]", lambda u, f, r: (lambda s: f"{s.mean:g} ± {s.std:g} [{s.min:g}, {s.max:g}]" if s else "-")(
        paper.FIG45_Q_STATS.get((f.setting("activation"), tuple(int(x) for x in f["shape_mhn"])))))]


SECTIONS = (
    Section("Figs. 4-5: Q is sharply concentrated at initialisation", (
        Claim("Fig. 4", "Q concentrated at init around its analytic mean",
              "With the common initialisation (U ~ N(0, 1/h), V ~ N(0, 1/n)), Q is sharply concentrated around its "
              "analytic mean for every activation, so gradient flow from such an initialisation reaches only a small "
              "part of the minimum.", FIG4, fig45_samples, rule_q_distribution, conventions=True, brief=True),
        Claim("Fig. 5", "centre of Q set by the layer sizes (E[Q] = m - h)", lambda figures:
              "The centre of the Q distribution is set by the layer sizes: for the linear net E[Q] = m - h, "
              f"{fig5_centres(figures)}.", FIG5, fig45_samples, rule_q_distribution, conventions=True, brief=True)),
            lambda get: run_table({**get(FIG4), **get(FIG5)}, FIG45_COLUMNS, lambda f: 1, "histogram")),
)
