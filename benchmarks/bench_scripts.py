"""Wall time of the five gradient-flow scripts, as `make figures` runs them, against a baseline checkout.

usage: python benchmarks/bench_scripts.py [--baseline DIR] [--rounds N] [--make-rounds M] [--out DIR]

Runs, alternating so that a change in the machine's load hits both alike: the five scripts at the paper's
settings with one seed in DIR (a checkout of the baseline, e.g. `git worktree add DIR main`) and here, N times
each; then the five scripts as `make figures` runs them (`make paper-scripts`: Figs. 6 and 9 over the Makefile's
seeds with their same-function and per-neuron experiments, Fig. 7 beside the others), in the baseline and here,
M times each. Prints each run's wall time (interpreter start included), the 1-minute load average after it, and
the ratios of this checkout's times to the baseline's (best of the rounds). A benchmark, not a test: the numbers
depend on the machine and on what else runs on it.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["Q_dynamics_elementwise.py", "Q_distribution.py", "Q_convergence_elementwise.py",
           "Q_convergence_radial.py", "Q_hessian_eigenvalues.py"]


def as_make_figures_runs_them(checkout, out):
    """Wall seconds of `make paper-scripts` in `checkout`: the five scripts as `make figures` runs them (the
    Makefile's seeds and same-function experiments, Fig. 7 beside the others)."""
    started = time.perf_counter()
    subprocess.run(["make", "-o", ".venv/.installed", "paper-scripts", f"OUT={out}"], cwd=checkout, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_all(checkout, out):
    """Wall seconds of each script (run from `checkout` with its own .venv) and of all five."""
    python, times = os.path.join(checkout, ".venv", "bin", "python"), {}
    for script in SCRIPTS:
        started = time.perf_counter()
        subprocess.run([python, script, "--no-progress", "--out", out], cwd=checkout, check=True,
                       stdout=subprocess.DEVNULL)
        times[script] = time.perf_counter() - started
    return times


def report(label, times):
    load = os.getloadavg()[0]
    print(f"{label:38s} {sum(times.values()):7.1f} s  ("
          + ", ".join(f"{s.removesuffix('.py')} {t:.1f}" for s, t in times.items()) + f"); load after {load:.2f}")
    return sum(times.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="DIR", help="a checkout of the baseline (with .venv) to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each paper-settings set (default 2)")
    parser.add_argument("--make-rounds", type=int, default=1, help="runs of each `make paper-scripts` (default 1)")
    parser.add_argument("--out", default=None, help="scratch folder for the figures (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="bench_scripts_")
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}; figures in {out}")
    ours, theirs = [], []
    for round_ in range(args.rounds):
        if args.baseline:
            theirs.append(report(f"baseline, paper settings, run {round_ + 1}",
                                 run_all(args.baseline, os.path.join(out, "baseline"))))
        ours.append(report(f"this checkout, paper settings, run {round_ + 1}",
                           run_all(HERE, os.path.join(out, "ours"))))
    seeded, seeded_theirs = [], []
    for round_ in range(args.make_rounds):
        for label, checkout, times in (("baseline", args.baseline, seeded_theirs), ("this checkout", HERE, seeded)):
            if checkout:
                times.append(as_make_figures_runs_them(checkout, os.path.join(out, f"seeds-{label.split()[0]}")))
                print(f"{label + ', as make figures runs them':38s} {times[-1]:7.1f} s; load after "
                      f"{os.getloadavg()[0]:.2f}")
    if theirs:
        print(f"paper settings, this checkout / baseline: {min(ours) / min(theirs):.2f} (best of {args.rounds} each)")
    if seeded_theirs:
        print(f"as make figures runs them, this checkout / baseline: {min(seeded) / min(seeded_theirs):.2f} "
              f"(best of {args.make_rounds} each)")
    print(f"as make figures runs them: {min(seeded):.0f} s ({min(seeded) / 60:.1f} min)")


if __name__ == "__main__":
    sys.exit(main())
