"""The statistics of a trend of a value with |Q| over seeds, the seed the unit of replication (toy_rules.rule_trend;
Trend lists them), and the scan of the integration constant c. Their derivation: docs/report.md.
"""
import functools
import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy.stats import binomtest, norm

ALPHA = 0.05        # significance level of a sign test over seeds (one-sided for a claimed direction); 95 % intervals
BOOTSTRAP, BOOTSTRAP_SEED = 10_000, 0  # resamples of the seeds for an effect's interval, and their fixed generator
C_SCAN = np.linspace(-1.0, 2.0, 301)  # the integration constants c scanned, in units of the paper code's: both named
                                      # ones (0 and 1) and as far again on either side, in steps of 1 %


def seed_columns(reference):
    """The finite values over the seeds of each group (run or orbit centre) of reference [S, G]; none for one seed."""
    reference = np.asarray(reference, dtype=float).reshape(len(reference), -1)
    return [column[np.isfinite(column)] for column in reference.T] if len(reference) > 1 else []


def log_spread(reference):
    """The spread of a value over seeds on a log scale: the std (ddof 1) of log value over the seeds, per group
    (seed_columns; non-positive entries left out), the median over groups; 0 for one seed."""
    spreads = [np.std(np.log(x[x > 0]), ddof=1) for x in seed_columns(reference) if (x > 0).sum() > 1]
    return float(np.median(spreads)) if spreads else 0.0


def resolvable_effect(reference, alpha=ALPHA):
    """The smallest log fold change the spread over seeds can resolve: z sqrt(2) log_spread, z the two-sided normal
    quantile of alpha (derived in docs/report.md)."""
    return float(norm.ppf(1 - alpha / 2)) * math.sqrt(2) * log_spread(reference)


def fitted_log_fold(x, y):
    """The log fold change of y along each series, fitted over all its points: the least-squares slope of log y against
    log x times the span of log x. x, y: [..., L] -> [...]; NaN where x does not vary or y is not finite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_x, log_y = np.log(np.maximum(x, 1e-300)), np.log(y)
        centred = log_x - log_x.mean(axis=-1, keepdims=True)
        slope = (centred * log_y).sum(axis=-1) / (centred ** 2).sum(axis=-1)
        result = slope * (log_x.max(axis=-1) - log_x.min(axis=-1))
    return np.where(np.isfinite(result), result, np.nan)[()]


def tau_b(x, y):
    """Kendall's tau-b of y against x along each series: x, y [..., L] -> [...] (NaN where either is constant);
    kendall()'s statistic, without its p (the trend votes with the sign)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = (np.sign(a[..., :, None] - a[..., None, :]) for a in (x, y))  # [..., L, L]: the order of every pair
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (dx * dy).sum(axis=(-1, -2)) / np.sqrt((dx ** 2).sum(axis=(-1, -2)) * (dy ** 2).sum(axis=(-1, -2)))
    return np.where(np.isfinite(tau), tau, np.nan)[()]


def by_seed(array):
    """[S, ..., L] -> [S, K, L]: the seed axis first, every other series of that seed in K."""
    array = np.asarray(array, dtype=float)
    return array.reshape(len(array), -1, array.shape[-1])


@functools.lru_cache(maxsize=8)
def resample(seeds):
    """[BOOTSTRAP, seeds] indices of the seeds drawn with replacement by a fixed generator (cached: the scan of c
    resamples the same seeds hundreds of times)."""
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, seeds, (BOOTSTRAP, seeds))


def bootstrap_median(values):
    """The 95 % percentile-bootstrap interval of the median of values [S] (one per seed), resampling the seeds
    with a fixed generator (deterministic): (low, high); the value itself for one seed."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values[0]), float(values[0])
    medians = np.median(values[resample(len(values))], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def fold(log_change):
    """A log fold change as the report writes it: x27.8, or x1/7.3 below one."""
    change = math.exp(log_change)
    return f"×{change:.3g}" if change >= 1 else f"×1/{1 / change:.3g}"


class Trend(NamedTuple):
    """rule_trend's statistics: per seed the vote (+1 with the claim, -1 against, 0 none), the sign test over seeds,
    the effect (the median over seeds of each seed's median log fold change over its series, in the claimed
    direction) with its bootstrap interval, and the minimum it must reach."""
    votes: np.ndarray
    p: float
    effect: float
    low: float
    high: float
    needed: float
    left_out: int
    series: int
    alpha: float = ALPHA

    @property
    def holds(self):
        return self.p < self.alpha and self.low > 0 and self.effect >= self.needed


def trend(x, values, direction, reference, budget=None, alpha=ALPHA, interval=True, needed=None):
    """The statistics of rule_trend (a Trend; None without a seed left). x, values: [S, ..., L]. interval=False
    (the scan of c): the bootstrap only where it can decide the verdict, else low is a bound that decides it the
    same way (the smallest seed's effect, or NaN); needed: the minimum effect, if known."""
    x, values = by_seed(x), by_seed(values)
    if budget is not None:  # never reached: the budget, the least it can be
        values = np.where(np.isinf(values), float(budget), values)
    keep = ~(np.isnan(x).any(axis=-1) | np.isnan(values).any(axis=-1))  # [S, K]: a diverged run, a minimum not reached
    taus = np.where(keep, tau_b(x, values), np.nan)
    logs = np.where(keep, fitted_log_fold(x, values), np.nan)
    tested = np.isfinite(logs).any(axis=1)  # the seeds with a series left
    if not tested.any():
        return None
    with warnings.catch_warnings():  # a seed whose value is constant along every series has no tau: no vote
        warnings.simplefilter("ignore", RuntimeWarning)
        median_tau, median_log = (np.nanmedian(a, axis=1) if np.isnan(a).any() else np.median(a, axis=1)
                                  for a in (taus[tested], logs[tested]))
    votes = np.where(np.isfinite(median_tau), np.sign(direction * np.nan_to_num(median_tau)), 0).astype(int)
    effects, left_out, series = direction * median_log, int((~keep).sum()), int(keep[tested].sum())
    going, against = int((votes > 0).sum()), int((votes < 0).sum())
    p = float(binomtest(going, going + against, 0.5, alternative="greater").pvalue) if going + against else 1.0
    effect = float(np.median(effects))
    needed = resolvable_effect(reference, alpha) if needed is None else needed
    if interval or (p < alpha and effect >= needed and effects.min() <= 0):
        low, high = bootstrap_median(effects)
    else:  # the scan of c: with every seed's effect above 0 so is every resampled median (low > 0 either way)
        low, high = float(effects.min()), math.nan
    return Trend(votes, p, effect, low, high, needed, left_out, series, alpha)


def c_range(Q, values, direction, reference, entries, named, budget=None, alpha=ALPHA):
    """Where the trend holds as the integration constant c runs over C_SCAN (in units of the largest named constant):
    |Q - c x entries|, Q in the zero convention (c = 0) -> (the intervals of c where it holds, with each named
    constant inside or not; the intervals in a few words)."""
    step = C_SCAN[1] - C_SCAN[0]
    scale = max(abs(c) for c in named.values()) or 1.0
    grid = np.round(C_SCAN * scale, 10)
    Q, needed = np.asarray(Q, dtype=float), resolvable_effect(reference, alpha)
    trends = [trend(np.abs(Q - c * entries), values, direction, reference, budget, alpha, interval=False, needed=needed)
              for c in grid]
    holds = np.array([t is not None and t.holds for t in trends])
    named_text = ", ".join(f"{name} c = {c:g} {'inside' if holds[np.argmin(np.abs(grid - c))] else 'outside'}"
                           for name, c in named.items())
    scanned = f"[{grid[0]:g}, {grid[-1]:g}]"
    if holds.all():
        return f"holds for every c in the scanned {scanned} ({named_text})", "for every c"
    if not holds.any():
        return f"holds for no c in the scanned {scanned} ({named_text})", "for no c"
    edges = np.flatnonzero(np.diff(np.r_[0, holds.astype(int), 0]))
    intervals = " and ".join(f"[{grid[a]:g}, {grid[b]:g})" if b < len(grid) else f"[{grid[a]:g}, {grid[-1]:g}]"
                             for a, b in zip(edges[::2], edges[1::2]))
    return (f"holds only for c in {intervals} of the scanned {scanned}, step {step * scale:g} ({named_text})",
            f"only for c in {intervals}")
