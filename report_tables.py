"""The tables of REPORT.md: per figure, the numbers the claims were judged on beside the paper code's.

A table is a list of columns, each a header and a cell function (unit, Figure, run) -> text; run_table() makes one
row per run of seed 0 (the paper's draw) of every saved figure, with the spread over the other seeds where there
are several. The Figure objects are make_report.py's (f[key]: a saved array, f.settings: the saved .json); a
missing key raises make_report.DataError, which the report shows as a data error instead of the table.

Contents: table, col, run_table, paper_column, orbit_column; the columns and tables of Figs. 3-9; the tables of
Figs. 10-11 (CIFAR-10).
"""
import math
import os

import numpy as np

import paper_numbers as paper
from verdict_rules import CHANCE, FIG10_MARGIN, fmt, fmt_steps, rows_within


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
    ("std / terms' size", lambda u, f, r: f"{f['Q_zero'].std() / float(f['Q_terms_zero']):.2%}"),
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
    return float32 + ["dQ~ with Q from 0 divides by the size of Q's two terms at the start, 1/2 |U|^2 + |sum F(V)| "
                      "(times the paper code's scale); the paper code's N_0 adds n k for tanh and sigmoid, which "
                      f"makes its dQ~ smaller by the ratio of the two N_0 ({ratios or 'none here'}). Loss: "
                      "|Y - U sigma(V^T)|_F after the last step. In float32, round-off makes the final |dQ~| at "
                      "lr = 0.001 larger than at "
                      f"lr = 0.01, as in the paper's code (linear: {fmt(ref[2])} vs {fmt(ref[1])} [R]); the float64 "
                      "runs isolate the discretisation effect.", ""] * bool(float32) + (
        ["Float64 runs (folder `float64/`):", ""] + float64 if float64 else [])


def fig6_tables(fig6, same):
    fig6, same = run_table(fig6, FIG6_COLUMNS), run_table(same, SAME_FUNCTION_6_COLUMNS, lambda f: 1)
    return fig6 + ["Here Q and the initial function change together (a larger init also starts from a larger loss); "
                   "the same-function experiment below separates them.", ""] * bool(fig6) + (
        ["Same function, different Q (seed 0; lambda moves every neuron of the paper's initialisation at init std "
         "0.1; the runs stop once all are below the loss):", ""] + same if same else [])


def fig9_tables(fig9, same):
    differ = "; ".join(f"{u} {', '.join(fmt(q) for q in f['Q0_zero'][0])}" for u, f in fig9.items()
                       if not np.allclose(f["Q0"], f["Q0_zero"]))
    fig9, same = run_table(fig9, FIG9_COLUMNS), run_table(same, SAME_FUNCTION_9_COLUMNS)
    return fig9 + [paper.FIG9_NOTE + f" With Q from 0 (seed 0, init std 0.001 to 0.9): {differ or '-'}.", ""] * bool(
        fig9) + (["Same function, different Q (seed 0; the largest eigenvalue is that of the Hessian's Gauss-Newton "
                  "part 2 J J^T, equal to the Hessian's at a zero-loss minimum; the last column is its relative gap to "
                  "the full Hessian's):", ""] + same if same else [])


def describe_cifar_source(source, folder):
    kind = {"official": "the official CIFAR-10 release (torchvision's MD5 check passed)",
            "unverified": "a copy of CIFAR-10 that fails torchvision's MD5 check (for example a re-encoded copy, or a "
                          "test fixture); accuracies can differ slightly from those on the official files"}
    return (f"CIFAR-10 data: {kind.get(source, repr(source))}; read from a folder named "
            f"`{os.path.basename(os.path.normpath(str(folder)))}`.")


def fig10_table(figures):
    lines = []
    for f in figures.values():
        eps, original, data = f["eps"], float(f["original_acc"]), f.settings.get("data", {})
        modes = [m for m in ("group", "perm_interp", "g_inverse", "random", "shuffle") if f"vote_acc_{m}" in f.data]
        diff = {m: f[f"vote_acc_{m}"] - original for m in modes}
        flag = {m: np.asarray(f.data.get(f"overflow_{m}", np.zeros_like(diff[m]))).any(axis=1) for m in modes}
        ref = {e: paper.FIG10_ROWS["group"].get(float(e)) for e in eps}
        rows = [[f"{e:g}"] + [f"{np.nanmean(diff[m][i]):+.3f} [{np.nanmin(diff[m][i]):+.3f}, "
                              f"{np.nanmax(diff[m][i]):+.3f}]" + "*" * bool(flag[m][i]) for m in modes]
                + [f"{np.mean(ref[e]):+.3f} [{min(ref[e]):+.3f}, {max(ref[e]):+.3f}]" if ref[e] else
                   "within ±0.003" if e <= 0.01 else "-"] for i, e in enumerate(eps)]
        lines += [f"Original model: accuracy {original:.3f} (one trained model for the whole grid; num_g = "
                  f"{', '.join(str(int(g)) for g in f['num_g'])}). Each cell: ensemble vote accuracy - original, mean "
                  "over num_g [min, max]; * = a cell with overflowing (non-finite) members.", ""]
        lines += table(["eps"] + modes + ["paper's code [C] group"], rows) + [
            f"Rows within {FIG10_MARGIN} of the original, for context: "
            + ", ".join(f"{m} {rows_within(eps, diff[m])}" for m in modes if m != "group")
            + " (staying close at small eps is not specific to the group action).", "", paper.FIG10_NOTE, "",
            describe_cifar_source(data.get("source", "?"), data.get("folder", "?"))
            + f" Evaluation: {data.get('eval_split', '?')} split, {data.get('eval_images', '?')} images.", ""]
    return lines


def accuracy(f, protocol, model, i):
    """'vote (mean probability)' accuracy of a model at the i-th attack strength."""
    mean = f.data.get(f"mean_acc_{protocol}_{model}")
    return f"{f[f'acc_{protocol}_{model}'][i]:.3f}" + (f" ({mean[i]:.3f})" if mean is not None else "")


def fig11_tables(figures):
    lines, names = [], {"original": "original", "group": "group", "g_inverse": "g^-1", "perm_interp": "perm_interp"}
    for method, f in figures.items():
        protocols = [p for p in f.settings.get("protocols", ["paper", "corrected"]) if f"acc_{p}_original" in f.data]
        models, ref = [m for m in names if f"acc_{protocols[0]}_{m}" in f.data], paper.FIG11_ACCURACY.get(method, {})
        rows = [[p, f"{s:g}"] + [accuracy(f, p, m, i) for m in models]
                + [f"{ref['original'][i]:.3f} / {ref['group'][i]:.3f}"
                   if p == "paper" and i < len(ref.get("original", ())) else "-"]
                for p in protocols for i, s in enumerate(f["strengths"])]
        lines += [f"**{method}** (strength = {'iterations' if method == 'PGD' else 'epsilon'}). Accuracy: majority "
                  "vote, mean probability in brackets.", ""] + table(
            ["protocol", "strength"] + [names[m] for m in models] + ["paper's code [C] original / group (mean prob.)"],
            rows)
    for f in list(figures.values())[:1]:
        st = f.settings
        lines += [f"Chance is {CHANCE:g}. The attacks are computed on the single original model and transferred to the "
                  "ensembles, as in the paper: this is robustness to transfer, not to a white-box attack on the "
                  "ensemble. " + "".join(f"{p}: original clean accuracy {float(f[f'acc_{p}_original'][0]):.3f}, on "
                                         f"clean images clamped to [0, 1] (no attack) "
                                         f"{float(f.data[f'clamp_only_acc_{p}']):.3f}. " for p in ("paper", "corrected")
                                         if f"clamp_only_acc_{p}" in f.data and f"acc_{p}_original" in f.data), "",
                  describe_cifar_source(st.get("data_source", "?"), st.get("data_dir", "?")) + f" "
                  f"{st.get('num_train_images', '?')} training and {st.get('num_test_images', '?')} test images.", ""]
    return lines
