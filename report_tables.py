"""The tables of REPORT.md: per figure, the numbers the claims were judged on beside the paper code's.

A table is a list of columns, each a header and a cell function (unit, Figure, run) -> text; run_table() makes one
row per run of seed 0 (the paper's draw) of every saved figure, with the spread over the other seeds where there
are several. The Figure objects are make_report.py's (f[key]: a saved array, f.settings: the saved .json); a
missing key raises make_report.DataError, which the report shows as a data error instead of the table.

Contents: table, col, run_table, paper_column, orbit_column; the columns and tables of Figs. 3-9; the layout of the
CIFAR-10 files (FIG11_ATTACKS), spread, largest_p and the tables of Figs. 10-11
(per numerics and seed mean ± std).
"""
import math
import os

import numpy as np

import paper_numbers as paper
from verdict_rules import ALPHA, CHANCE, FIG10_MARGIN, SYMMETRY_TOLERANCE, eps_set, fmt, fmt_steps, rows_within
from symmetry import ENSEMBLE_MODES  # the saved ensembles (Fig. 10 panel order)
from threat_models import COMPARISONS


def legend_Qs(labels, activation=None, entries_of_V=0):
    """The Q of the paper's legend labels ('Q=-1364'); with an activation and the number of entries of V, moved to
    the zero convention (the rules'): plus the paper code's constant per entry, from models.ACTIVATIONS."""
    shift = 0.0
    if activation is not None:
        from models import get_activation  # torch: only where the paper's numbers are judged
        shift = get_activation(activation).paper_constant * entries_of_V
    return [paper.legend_Q(label) + shift for label in labels]


def table(headers, rows):
    rows = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + rows + [""] if rows else []


def item(values, index):
    """values[index], or None where there is no such entry (no reference for this run)."""
    return values[index] if values is not None and index < len(values) else None


def last_finite(values):
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def col(key, form=fmt, seeds=False, mark=False):
    """A table cell: run r's f[key] in seed 0; seeds=True adds the mean ± std over the seeds where there are
    several (runs that diverged or never reached the loss left out), mark=True the step where it diverged."""
    def cell(unit, f, r):
        values = f[key]
        per_seed = values[:, r] if np.ndim(values) >= 2 else values[r:r + 1]
        text = form(per_seed[0])
        if seeds and len(per_seed) > 1:  # the spread over the seeds that converged (steps) and did not diverge
            ok = per_seed[(f["diverged_at"][:, r] < 0) & (per_seed >= 0 if key.startswith("steps") else True)]
            if ok.size:
                text += f" ({form(np.mean(ok))} ± {fmt(np.std(ok))}, {len(ok)} of {len(per_seed)} seeds)"
        diverged_at = np.atleast_2d(f["diverged_at"])[0, r]
        return text + (f" (diverged at step {int(diverged_at):,})" if mark and diverged_at >= 0 else "")
    return cell


def run_table(figures, columns, rows=lambda f: np.shape(np.atleast_2d(f["diverged_at"]))[1], first="activation"):
    """One row per run (rows(f) of them) of every figure ({unit: Figure}), the unit in a first column (none if
    first=None: a single file); columns: [(header, cell(unit, f, r))]."""
    return table([first] * bool(first) + [h for h, _ in columns],
                 [[unit] * bool(first) + [cell(unit, f, r) for _, cell in columns] for unit, f in figures.items()
                  for r in range(rows(f))])


def paper_column(reference, form=fmt):
    """The paper code's number for run r of an activation: reference[activation][r] (a dict: by init std)."""
    def cell(unit, f, r):
        values = reference.get(unit)
        return form(values.get(float(f["init_std"][r])) if isinstance(values, dict) else item(values, r))
    return cell


def orbit_column(key, form=fmt):
    """A same-function table cell: seed 0's values of f[key] along the orbit of run r (ends and middle)."""
    def cell(unit, f, r):
        values = np.atleast_2d(f[key][0])[r]
        return " / ".join(form(values[i]) for i in (0, len(values) // 2, -1))
    return cell


FIG3_COLUMNS = [
    ("lr", col("lr", lambda x: f"{x:g}")),
    ("max abs Q_t - Q_0 / N_0", col("max_Q_change_zero", seeds=True, mark=True)),
    ("first-order bound / N_0", col("drift_bound_zero", seeds=True)),
    ("max abs dQ~ (Q from 0)", col("max_delta_Q_tilde_zero", seeds=True, mark=True)),
    ("max abs dQ~ (paper code's Q)", col("max_delta_Q_tilde")),
    ("final dQ~ (paper code's Q)", lambda u, f, r: fmt(last_finite(f["delta_Q_tilde"][r]))),
    ("paper's code [R]", paper_column(paper.FIG3_FINAL_DRIFT)), ("final loss", col("final_loss")),
    ("paper's code [R] final loss", paper_column(paper.FIG3_FINAL_LOSS))]
FIG3_FLOAT64_COLUMNS = [
    ("lr", col("lr", lambda x: f"{x:g}")), ("max abs Q_t - Q_0 / N_0 (Q from 0)", col("max_Q_change_zero", mark=True)),
    ("divided by lr", lambda u, f, r: fmt(f["max_Q_change_zero"][0][r] / f["lr"][r])),
    ("max abs dQ~ (paper code's Q)", col("max_delta_Q_tilde")),
    ("paper's code [R] final dQ~", paper_column(paper.FIG3_FLOAT64_FINAL_DRIFT))]
FIG45_COLUMNS = [
    ("m, h, n", lambda u, f, r: ", ".join(str(int(x)) for x in f["shape_mhn"])),
    ("samples", lambda u, f, r: len(f["Q"])),
    ("Q from 0: mean ± std", lambda u, f, r: f"{f['Q_zero'].mean():.4g} ± {f['Q_zero'].std():.3g}"),
    ("E[Q]", lambda u, f, r: f"{float(f['expected_Q_zero']):.4g}"),
    ("std / terms' size, zero convention", lambda u, f, r: f"{f['Q_zero'].std() / float(f['Q_terms_zero']):.2%}"),
    ("std / terms' size, paper's", lambda u, f, r: f"{f['Q'].std() / float(f['Q_terms_paper']):.2%}"),
    ("paper code's Q: mean ± std [min, max]", lambda u, f, r: f"{f['Q'].mean():.6g} ± {f['Q'].std():.3g} "
                                                          f"[{f['Q'].min():.6g}, {f['Q'].max():.6g}]"),
    ("paper's code [R]", lambda u, f, r: (lambda s: f"{s.mean:g} ± {s.std:g} [{s.min:g}, {s.max:g}]" if s else "-")(
        paper.FIG45_Q_STATS.get((f.setting("activation"), tuple(int(x) for x in f["shape_mhn"])))))]
FIG6_COLUMNS = [
    ("init std", col("init_std", lambda x: f"{x:g}")), ("Q0 from 0", col("Q0_zero")), ("Q0, paper code's", col("Q0")),
    ("initial loss", col("initial_loss")),
    ("steps to 1e-2", col("steps_to_converge", fmt_steps, seeds=True, mark=True)),
    ("paper's code [R]", paper_column(paper.FIG6_STEPS, fmt_steps)), ("final loss", col("final_loss"))]
SAME_FUNCTION_6_COLUMNS = [
    ("lambda (ends, 1)", orbit_column("lambdas")), ("Q0 from 0", orbit_column("Q0_zero")),
    ("Q0, paper code's", orbit_column("Q0")), ("steps to 1e-2 (seed 0)", orbit_column("steps_to_converge", fmt_steps)),
    ("initial outputs: largest relative difference", lambda u, f, r: fmt(
        np.abs(f["initial_output"] - f["initial_output"][:, :1]).max() / np.abs(f["initial_output"]).max()))]
FIG7_COLUMNS = [
    ("Q0", col("Q0")), ("steps to 1e-2", col("steps_to_converge", fmt_steps, seeds=True, mark=True)),
    ("paper's code [R]", lambda u, f, r: fmt_steps(item(paper.FIG7_STEPS, r))),
    ("initial loss", col("initial_loss")), ("final loss (MSE/abs Y)", col("final_loss")),
    ("max relative drift of Q", lambda u, f, r: fmt(np.nanmax(np.abs(f["Q"][r] - f["Q"][r][0])) / abs(f["Q"][r][0])))]
FIG9_COLUMNS = [
    ("init std", col("init_std", lambda x: f"{x:g}")), ("Q0 from 0", col("Q0_zero")), ("Q0, paper code's", col("Q0")),
    ("paper's code [R] Q", paper_column({a: legend_Qs(q) for a, q in paper.FIG9_LEGENDS.items()})),
    ("largest eigenvalue", col("largest_eigenvalue", lambda x: f"{x:.4g}", seeds=True, mark=True)),
    ("paper's code [R]", paper_column(paper.FIG9_LARGEST_EIGENVALUE)),
    ("nonzero eigenvalues", col("nonzero_count", lambda x: str(int(x)))),
    ("final squared loss", col("final_loss"))]
SAME_FUNCTION_9_COLUMNS = [
    ("init std", col("init_std", lambda x: f"{x:g}")), ("lambda (ends, 1)", orbit_column("lambdas")),
    ("Q from 0", orbit_column("Q_zero")), ("Q, paper code's", orbit_column("Q")),
    ("largest eigenvalue", orbit_column("largest_eigenvalue", lambda x: f"{x:.4g}")),
    ("squared loss along the orbit",
     lambda u, f, r: f"{fmt(np.nanmin(f['loss'][0, r]))} to {fmt(np.nanmax(f['loss'][0, r]))}"),
    ("Gauss-Newton vs Hessian at the ends", lambda u, f, r: fmt(np.nanmax(np.abs(
        f["largest_eigenvalue"][0, r][[0, -1]] / f["largest_eigenvalue_hessian"][r] - 1))))]


def fig3_tables(float32, float64):
    ref = paper.FIG3_FINAL_DRIFT["linear"]
    ratios = ", ".join(f"{u} {f['normaliser'][0][0] / f['normaliser_zero'][0][0]:.3g}" for u, f in float32.items()
                       if not np.allclose(f["normaliser"], f["normaliser_zero"]))
    float32, float64 = run_table(float32, FIG3_COLUMNS), run_table(float64, FIG3_FLOAT64_COLUMNS)
    return float32 + ["N_0 with Q from 0 is the size of Q's terms at the start, 1/2 |U|^2 + sum |F(V)| (times the "
                      "paper code's scale; sum |F| and not |sum F|, whose entries cancel for sigmoid and softplus); "
                      "the paper code's N_0 is its 'sum' analogue of Q, which differs for tanh and sigmoid by the "
                      f"ratio of the two N_0 ({ratios or 'none here'}): dQ~ = |Q_t|/N_0 - |Q_1|/N_0 depends on the "
                      "convention, Q_t - Q_0 does not. The bound is paper_scale x lr/2 x max(1, max |F''|) x (L_0 - "
                      "L_T) / N_0. Loss: "
                      "|Y - U sigma(V^T)|_F after the last step. In float32, round-off makes the final |dQ~| at "
                      "lr = 0.001 larger than at "
                      f"lr = 0.01, as in the paper's code (linear: {fmt(ref[2])} vs {fmt(ref[1])} [R]); the float64 "
                      "runs isolate the discretisation effect.", ""] * bool(float32) + (
        ["Float64 runs (folder `float64/`):", ""] + float64 if float64 else [])


def per_neuron_table(figures, value, form, pick=lambda a: a[0]):
    """Seed 0's per-neuron orbits ({unit: Figure}), one row per orbit: the statistics and the value at the ends and the
    middle (the network itself). pick: [S, ...] -> the [2, 5] of the networks shown."""
    rows = []
    for unit, f in figures.items():
        for o, family in enumerate(("spread", "shift")):
            ends = [0, f[value].shape[-1] // 2, -1]  # the ends and the middle (the network itself)
            cells = [" / ".join(form(x) if k == value else fmt(x) for x in pick(f[k])[o][ends])
                     for k in ("sum_zero", "sum_paper", "spread", "min_abs_zero", "edge_distance", value)]
            rows.append([unit, family] + cells)
    return table(["activation", "orbit", "sum Q_a (zero)", "sum Q_a (paper's)", "spread of Q_a", "min abs Q_a (zero)",
                  "edge distance", value.replace("_", " ")], rows)


PER_NEURON_NOTE = ("Per-neuron orbits (each neuron its own lambda; seed 0; values at the two ends and the middle, the "
                   "network itself): 'spread' scales each Q_a's distance from their mean (the sum fixed), 'shift' "
                   "adds a multiple of their std to each (the spread fixed). Q_a from 0 (zero) or with the paper "
                   "code's constant (paper's, lower by n per neuron for tanh and sigmoid); the spread and the edge "
                   "distance do not depend on the convention.")


def fig6_tables(fig6, same, per_neuron=None):
    fig6, same = run_table(fig6, FIG6_COLUMNS), run_table(same, SAME_FUNCTION_6_COLUMNS, lambda f: 1)
    neurons = per_neuron_table(per_neuron or {}, "steps_to_converge", fmt_steps)
    return fig6 + ["Here Q and the initial function change together (a larger init also starts from a larger loss); "
                   "the same-function experiment below separates them.", ""] * bool(fig6) + (
        ["Same function, different Q (seed 0; lambda moves every neuron of the paper's initialisation at init std "
         "0.1; the runs stop once all are below the loss):", ""] + same if same else []) + (
        [PER_NEURON_NOTE + " Steps to the loss 1e-2 from the paper's initialisation at init std 0.1.", ""] + neurons
        if neurons else [])


def fig9_tables(fig9, same, per_neuron=None):
    differ = "; ".join(f"{u} {', '.join(fmt(q) for q in f['Q0_zero'][0])}" for u, f in fig9.items()
                       if not np.allclose(f["Q0"], f["Q0_zero"]))
    fig9, same = run_table(fig9, FIG9_COLUMNS), run_table(same, SAME_FUNCTION_9_COLUMNS)
    neurons = per_neuron_table(per_neuron or {}, "largest_eigenvalue", lambda x: f"{x:.4g}", lambda a: a[0][1])
    return fig9 + [paper.FIG9_NOTE + f" With Q from 0 (seed 0, init std 0.001 to 0.9): {differ or '-'}.", ""] * bool(
        fig9) + (["Same function, different Q (seed 0; the largest eigenvalue is that of the Hessian's Gauss-Newton "
                  "part 2 J J^T, equal to the Hessian's at a zero-loss minimum; the last column is its relative gap to "
                  "the full Hessian's):", ""] + same if same else []) + (
        [PER_NEURON_NOTE + " Largest Hessian eigenvalue (2 J J^T) at the minimum of init std 0.3, moved.", ""]
        + neurons if neurons else [])


def describe_cifar_source(source, folder):
    kind = {"official": "the official CIFAR-10 release (torchvision's MD5 check passed)",
            "unverified": "a copy of CIFAR-10 that fails torchvision's MD5 check (for example a re-encoded copy, or a "
                          "test fixture); accuracies can differ slightly from those on the official files"}
    return (f"CIFAR-10 data: {kind.get(source, repr(source))}; read from a folder named "
            f"`{os.path.basename(os.path.normpath(str(folder)))}`.")


# Fig. 11, corrected protocol: (name, key prefix, strength key, scale shown) per attack; the paired comparisons are
# threat_models.COMPARISONS.
FIG11_ATTACKS = (("FGSM (eps x 255)", "fgsm", "fgsm_eps", 255), ("PGD (iterations)", "pgd", "pgd_iterations", 1))


def spread(values, form="{:+.3f}"):
    """'mean ± std' over the seeds of values [S] (the value alone for one seed)."""
    values = np.asarray(values, dtype=float)
    return form.format(values.mean()) + (f" ± {values.std():.3f}" if values.size > 1 else "")


def largest_p(p):
    """McNemar's p, the largest over the seeds of p [S]."""
    top = float(np.max(p))
    return "p < 1e-300" if top == 0 else f"p ≤ {top:.1g}" if np.size(p) > 1 else f"p = {top:.1g}"


def fig10_tables(figures):
    """Per numerics ({name: Figure}): per eps, the symmetry error, the seeds in which the row is a symmetry, and each
    ensemble's vote accuracy minus the original's (mean over num_g; mean ± std over seeds)."""
    lines, group = [], {}
    for numerics, f in figures.items():
        eps, original = f["eps"], f["original_acc"]
        tolerance = f.symmetry_tolerance()
        error, noise_free = f["symmetry_error_fitted"], f["symmetry_error"]  # [S, E, G]
        symmetric = np.all(error <= tolerance, axis=2)  # [S, E]
        moved = {m: f[f"vote_acc_{m}"] - original[:, None, None] for m in ENSEMBLE_MODES}  # [S, E, G]
        diff = {m: moved[m].mean(axis=2) for m in ENSEMBLE_MODES}  # [S, E]
        flag = {m: np.asarray(f.data.get(f"overflow_{m}", np.zeros((1, len(eps), 1), bool))).any(axis=(0, 2))
                for m in ENSEMBLE_MODES}  # [E]
        group[numerics] = f["vote_acc_group"].mean(axis=2)
        ref = {e: paper.FIG10_ROWS["group"].get(float(e)) for e in eps}
        rows = [[f"{e:g}", fmt(error[:, i].max()) + (f" ({fmt(noise_free[:, i].max())})"
                                                      if not np.allclose(error[:, i], noise_free[:, i]) else ""),
                 f"{int(symmetric[:, i].sum())} of {len(original)}"]
                + [spread(diff[m][:, i]) + "*" * bool(flag[m][i]) for m in ENSEMBLE_MODES]
                + [f"{np.mean(ref[e]):+.3f} [{min(ref[e]):+.3f}, {max(ref[e]):+.3f}]" if ref[e] else
                   "within ±0.003" if e <= 0.01 else "-"] for i, e in enumerate(eps)]
        settings = f.settings
        lines += [f"**{numerics}** ({settings.get('action_dtype', '?')} group action, fit noise "
                  f"{settings.get('fit_noise', '?')}; {len(original)} seeds, one trained model each, original accuracy "
                  f"{spread(original, '{:.3f}')}; num_g = {', '.join(str(int(g)) for g in f['num_g'])}). Symmetry "
                  "error: largest over seeds and num_g, for the pi the ensembles use (in brackets the noise-free "
                  f"fit's, where different); symmetric: seeds in which every cell of the row is at most {tolerance:g}. Ensembles: "
                  "vote accuracy - original, mean over num_g, mean ± std over seeds; * = a cell with overflowing "
                  "(non-finite) members.", ""]
        lines += table(["eps", "symmetry error", "symmetric", *ENSEMBLE_MODES, "paper's code [C] group"], rows)
        kept = np.all(symmetric, axis=0) & np.any(np.abs(diff["group"]) > FIG10_MARGIN, axis=0)
        if kept.any():
            losses = -diff["group"][:, kept]
            lines += [f"Every cell at {eps_set(eps, kept)} is a symmetry on its fitting images in every seed, yet the "
                      f"group ensemble loses {fmt(losses.min())} to {fmt(losses.max())} "
                      "there on the evaluation images: pi(g, H) is fitted to 16 images per member, and a symmetry on "
                      "them is not one on other images.", ""]
        lines += [f"Rows within {FIG10_MARGIN} of the original in every cell (seed mean), for context: "
                  + ", ".join(f"{m} {rows_within(eps, moved[m].mean(axis=0))}" for m in ENSEMBLE_MODES) + " (staying close at small eps is not specific to the group "
                  "action).", ""]
    if len(group) == 2:
        (_, paper_numerics), (_, exact) = group.items()
        change = exact - paper_numerics  # the same models and group elements: paired
        lines += ["Group ensemble, exact minus paper numerics (the same models and group elements; mean over num_g, "
                  "mean ± std over seeds): " + ", ".join(f"eps {e:g}: {spread(change[:, i])}"
                                                        for i, e in enumerate(next(iter(figures.values()))["eps"]))
                  + ".", ""]
    for f in list(figures.values())[:1]:
        data = f.settings.get("data", {})
        lines += ["The saved figures hatch the cells whose noise-free fit is no symmetry; the report judges the pi the "
                  "ensembles use, which in the paper numerics carries the paper's fit noise.", "", paper.FIG10_NOTE, "",
                  describe_cifar_source(data.get("source", "?"), data.get("folder", "?"))
                  + f" Evaluation: {data.get('eval_split', '?')} split, {data.get('eval_images', '?')} images.", ""]
    return lines


def fig11_tables(paper_protocol, corrected):
    """The paper's protocol per attack ({attack: Figure}): accuracy per strength, mean ± std over seeds; the corrected
    protocol per numerics ({name: Figure}) and attack: accuracy under transfer and the paired differences with
    McNemar's p."""
    lines = []
    for method, f in paper_protocol.items():
        models = [m for m in ("original",) + ENSEMBLE_MODES if f"acc_{m}" in f.data]
        ref = paper.FIG11_ACCURACY.get(method, {})
        rows = [[f"{s:g}"] + [spread(f[f"acc_{m}"][:, i], "{:.3f}") for m in models]
                + [spread(f["acc_group"][:, i] - f["acc_original"][:, i])]
                + [f"{ref['original'][i]:.3f} / {ref['group'][i]:.3f}" if i < len(ref.get("original", ())) else "-"]
                for i, s in enumerate(f["strengths"])]
        lines += [f"**{method}, paper's protocol** (strength = {'iterations' if method == 'PGD' else 'epsilon'}; "
                  f"majority-vote accuracy on {f.settings.get('num_eval', '?')} images, mean ± std over "
                  f"{len(f['seeds'])} seeds).", ""]
        lines += table(["strength", *models, "group - original", "paper's code [C] original / group (mean prob.)"],
                       rows)
    for f in list(paper_protocol.values())[:1]:
        lines += [f"Chance is {CHANCE:g}. The attacks are computed on the single original model and transferred to the "
                  f"ensembles. The original on clean images clamped to [0, 1] (no attack): "
                  f"{spread(f['clamp_only_acc'], '{:.3f}')}. The group's symmetry error (float32 with fit noise) per "
                  f"seed: {', '.join(fmt(x) for x in f['symmetry_error_fitted'])}: above {SYMMETRY_TOLERANCE:g}, so "
                  "these members are not symmetry-moved networks.", "",
                  describe_cifar_source(f.settings.get("data_source", "?"), f.settings.get("data_dir", "?"))
                  + f" {f.settings.get('num_train_images', '?')} training and "
                  f"{f.settings.get('num_test_images', '?')} test images.", ""]
    for numerics, f in corrected.items():
        lines += [f"**Corrected protocol, {numerics}** ({len(f['seeds'])} seeds; the independent CNN of seed "
                  + ", ".join(f"{s}: seed {i}" for s, i in zip(f["seeds"], f["independent_seed"]))
                  + "; symmetry error of the pi used per seed: "
                  + ", ".join(fmt(x) for x in f["symmetry_error_fitted"])
                  + f"; FGSM on {int(f['fgsm_images'])} test images, PGD of radius {float(f['pgd_eps']) * 255:g}/255, "
                  f"step {float(f['pgd_step']) * 255:g}/255, random start, on the first {int(f['pgd_images'])}). "
                  "Accuracy under transfer (ensembles: mean probability), then the paired differences on the same "
                  "images: mean ± std over seeds, McNemar's p (largest over seeds).", ""]
        for name, p, axis, scale in FIG11_ATTACKS:
            rows = [[f"{s:g}"] + [spread(f[f"{p}_transfer_acc_{c}"][:, k], "{:.3f}")
                                  for c in ("original", "group", "independent")]
                    + [f"{spread(f[f'{p}_{key}_diff'][:, k])} ({largest_p(f[f'{p}_{key}_p'][:, k])})"
                       for key in COMPARISONS] for k, s in enumerate(f[axis] * scale)]
            lines += [f"*{name}*", ""] + table(["strength", "original", "group", "independent"]
                                                + [c.header for c in COMPARISONS.values()], rows)
    if corrected:
        lines += [f"A difference counts as significant where p < {ALPHA:g} / (number of attacked strengths) "
                  "(Bonferroni over the strengths > 0). Adaptive: the group ensemble attacked through its members, the "
                  "original under its own attack (the transfer images). Worst case: an image counts as right for the "
                  "group only if it is right under both transfer and the adaptive attack. Noise: random-sign noise of "
                  "the same L-inf size; where it stays at the clean gap (strength 0) the ensemble is no more robust to "
                  "perturbations in general. PGD iteration 0 is its random start alone.", ""]
    return lines
