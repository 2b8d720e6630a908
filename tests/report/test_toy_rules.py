"""The toy figures' shared rules with effect sizes and statistics over seeds (toy_rules.py) and Fig. 3's bound
(claims_fig3.py), each both ways, and the two conventions of Q."""
import numpy as np
import pytest

from gfs.report.verdict_rules import NOT_REPRODUCED, PARTLY, REPRODUCED, Result
from gfs.report import verdict_rules
from gfs.report import toy_rules
from gfs.report import trend_stats
from gfs.report import per_neuron_rules
from gfs.report import claims_fig3


def orbits(slope, seeds=10, series=1, points=7, noise=0.0, seed=0):
    """|Q| [S, K, L] and a value [S, K, L] = 100 |Q|^slope along |Q| from 1 to 100 (a fold change of 100^slope),
    times (1 + noise N(0, 1)): S seeds of K series of L points."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.geomspace(1, 100, points), (seeds, series, 1))
    return x, 100 * x ** slope * (1 + noise * rng.standard_normal(x.shape))


def spread_reference(log_std, seeds=10):
    """A value over seeds [S, 1] whose log has exactly the given std (ddof 1)."""
    z = np.linspace(-1, 1, seeds)
    return np.exp(100 + log_std * z / z.std(ddof=1))[:, None]


def test_trend_holds_when_significant_and_large():
    x, values = orbits(0.5)
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :, 0])
    assert result.verdict == REPRODUCED and "in 10 of 10 seeds (10 series)" in result.text
    assert result.value == pytest.approx(10.0) and "×10 (95 % CI ×10 to ×10)" in result.text  # 100^0.5
    assert "stands for any minimum up to ×10" in result.text


def test_trend_votes_per_seed_not_per_series():
    """Pseudo-replication: 4 seeds of 10 orbits each, every orbit going the claimed way. Counted per series that is
    40 of 40 (p 1e-12); the seed is the unit, so it is 4 of 4, one-sided p = 1/16: not significant."""
    x, values = orbits(0.5, seeds=4, series=10)
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :, 0])
    assert result.verdict == NOT_REPRODUCED and "in 4 of 4 seeds (40 series), sign test p = 0.062 (not " \
        "significant" in result.text
    x, values = orbits(0.5, seeds=5, series=10)  # 5 of 5 seeds: p = 1/32
    assert toy_rules.rule_trend(x, values, direction=1, reference=values[:, :, 0]).verdict == REPRODUCED


def test_a_seed_votes_with_the_median_of_its_series():
    """6 seeds of 3 orbits: in each seed one orbit goes the claimed way and two go against it; the seed votes
    against (counting series would give 6 of 18 for the claim, counting seeds 0 of 6)."""
    x, values = orbits(0.5, seeds=6, series=3)
    values[:, 1:] = values[:, 1:, ::-1]  # two orbits of each seed reversed
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, 0, :1])
    assert result.verdict == NOT_REPRODUCED and "in 0 of 6 seeds" in result.text


def test_trend_effect_is_the_median_not_the_largest():
    """Mutation guard: the effect is the median over a seed's series and over the seeds, not the largest. Within each
    seed one orbit changes x100 and two x1.02; over seeds one seed changes x100 and five x1.02. With a minimum of
    about x1.2 (a seed spread of 7 % in log value) neither holds; the largest would."""
    x, values = orbits(0.004, seeds=6, series=3)  # 100^0.004 = x1.02
    values[:, 0] = 100 * x[:, 0]  # one orbit a seed: x100
    reference = spread_reference(0.07, seeds=6)
    result = toy_rules.rule_trend(x, values, direction=1, reference=reference)
    assert result.value == pytest.approx(1.0186, rel=1e-3) and result.verdict == NOT_REPRODUCED
    x, values = orbits(0.004, seeds=6)
    values[0] = 100 * x[0]  # one seed: x100
    result = toy_rules.rule_trend(x, values, direction=1, reference=reference)
    assert result.value == pytest.approx(1.0186, rel=1e-3) and result.verdict == NOT_REPRODUCED
    assert "stands for any minimum above ×1.02" in result.text


def test_trend_effect_is_fitted_over_all_points():
    """The fold change is the slope of log value against log |Q| over the whole series, times its span: a series that
    rises x10 and falls back at the last point is not x1."""
    x = np.geomspace(1, 100, 5)
    y = np.array([1.0, 10.0, 10.0, 10.0, 1.0])
    assert trend_stats.fitted_log_fold(x, y) == pytest.approx(0.0, abs=1e-12)  # symmetric: no trend
    y = 3 * x ** 0.25
    assert trend_stats.fitted_log_fold(x, y) == pytest.approx(0.25 * np.log(100))
    y[1] *= 10  # one point off the line moves the fit (the end points alone would not see it)
    assert trend_stats.fitted_log_fold(x, y) != pytest.approx(0.25 * np.log(100))


def test_minimum_effect_is_what_the_seed_spread_resolves():
    """The minimum is 1.96 sqrt(2) x the std of log value over seeds: with a std of 7 %, x1.21. A x1.15 trend is
    below it (not reproduced, and the text says it would hold below), x1.3 above it."""
    reference = spread_reference(0.07)
    assert trend_stats.resolvable_effect(reference) == pytest.approx(1.959964 * np.sqrt(2) * 0.07, rel=1e-5)
    x, values = orbits(np.log(1.15) / np.log(100))
    result = toy_rules.rule_trend(x, values, direction=1, reference=reference)
    assert result.verdict == NOT_REPRODUCED and "minimum ×1.21" in result.text
    assert "stands for any minimum above ×1.15 (it would hold below)" in result.text
    x, values = orbits(np.log(1.3) / np.log(100))
    assert toy_rules.rule_trend(x, values, direction=1, reference=reference).verdict == REPRODUCED


def test_seed_spread_is_the_median_over_groups():
    """Mutation guard: the spread over seeds is the median over the groups (runs, orbit centres), not the smallest:
    groups with log stds 1 %, 10 %, 10 % give 10 % (a minimum of x1.32), so a x1.2 trend does not hold. The
    per-neuron predictors' spread (std / mean) is the median too."""
    reference = np.hstack([spread_reference(0.01), spread_reference(0.10), spread_reference(0.10)])
    assert trend_stats.log_spread(reference) == pytest.approx(0.10)
    x, values = orbits(np.log(1.2) / np.log(100))
    assert toy_rules.rule_trend(x, values, direction=1, reference=reference).verdict == NOT_REPRODUCED
    relative = np.array([[1.0, 1.0, 1.0], [1.01, 1.5, 1.5], [0.99, 0.5, 0.5]])
    assert toy_rules.seed_spread(relative) == pytest.approx(np.std([1.0, 1.5, 0.5]))
    assert toy_rules.minimum_effect(relative) == pytest.approx(2 * np.std([1.0, 1.5, 0.5]))


def test_trend_interval_must_exclude_no_change():
    """7 seeds all vote for the claim (Kendall's tau > 0: most pairs rise), but in 3 of them the last point falls so
    far that the fitted fold change is against it: the median is with the claim, its bootstrap interval over seeds
    is not, so the claim does not hold."""
    x = np.tile(np.geomspace(1, 100, 5), (7, 1))
    up, down = 3 * x[0], np.array([10.0, 11, 12, 13, 0.1])
    values = np.array([up] * 4 + [down] * 3)
    assert toy_rules.kendall(x[0], down)[0] > 0 and trend_stats.fitted_log_fold(x[0], down) < 0
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1] * 0 + 1)
    assert "in 7 of 7 seeds" in result.text and result.value > 1
    assert result.verdict == NOT_REPRODUCED and "stands at every minimum (the interval includes no change)" \
        in result.text


def test_bootstrap_is_deterministic_and_covers_the_median():
    effects = np.log([1.5, 2.0, 2.5, 3.0, 8.0])
    low, high = trend_stats.bootstrap_median(effects)
    assert (low, high) == trend_stats.bootstrap_median(effects) and low <= np.median(effects) <= high
    assert low >= effects.min() and high <= effects.max()
    assert trend_stats.bootstrap_median([0.3]) == (0.3, 0.3)


def test_trend_in_the_other_direction_fails():
    x, values = orbits(-0.5)
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :, 0])
    assert result.verdict == NOT_REPRODUCED and "×1/10" in result.text and result.deciding.startswith("×1/10 (×1/")
    assert toy_rules.rule_trend(x, values, direction=-1, reference=values[:, :, 0]).verdict == REPRODUCED


def test_trend_counts_never_reached_as_the_budget():
    x = np.tile([1.0, 10.0, 100.0], (6, 1))
    steps = np.tile([np.inf, 50_000.0, 10_000.0], (6, 1))  # falls with |Q|; the first never reaches the loss
    result = toy_rules.rule_trend(x, steps, direction=-1, reference=steps[:, 1:2], budget=400_000)
    fitted = -np.polyfit(np.log(x[0]), np.log([400_000, 50_000, 10_000]), 1)[0] * np.log(100)
    assert result.verdict == REPRODUCED and result.value == pytest.approx(np.exp(fitted))


def test_trend_leaves_out_series_with_nan():
    x, values = orbits(0.5)
    values[0, 0, 3] = np.nan
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[1:, :, 0])
    assert result.verdict == PARTLY and "1 series left out" in result.text  # it cannot be tested on that series
    assert " of 9 seeds (" in result.text  # seed 0 has no series left


def test_within_gd_bound_both_ways():
    lrs = [0.1, 0.01, 0.001]
    assert claims_fig3.rule_within_gd_bound(lrs, [1e-3, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == REPRODUCED
    result = claims_fig3.rule_within_gd_bound(lrs, [1e-3, 1e-4, 4e-4], [2e-3, 2e-4, 2e-5])  # float32 round-off at 0.001
    assert result.verdict == PARTLY and "lr 0.001: 0.0004 of bound 2e-05 (beyond the bound, no round-off" in result.text
    assert claims_fig3.rule_within_gd_bound(lrs, [3e-3, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == NOT_REPRODUCED
    assert claims_fig3.rule_within_gd_bound(lrs, [np.nan, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == NOT_REPRODUCED


def test_float32_drift_beyond_the_bound_is_judged_against_the_papers_round_off():
    """Linear at lr 0.001: the float32 drift 4.5e-4 exceeds the bound 3e-4 (round-off does not shrink with lr); the
    paper's own loop drifts 4.4e-4 there [R], so it is round-off (reproduced); 3 x the paper's loop's is not."""
    lrs, bound = [0.1, 0.01, 0.001], [3e-2, 3e-3, 3e-4]
    reference = claims_fig3.paper_roundoff("linear", lrs)
    assert list(reference) == [6.9e-4, 8.9e-5, 4.4e-4]
    assert list(claims_fig3.paper_roundoff("relu", lrs)) == [3.6e-4, 1.3e-4, 5.9e-4]  # its largest where printed
    result = claims_fig3.rule_within_gd_bound(lrs, [7e-4, 9e-5, 4.5e-4], bound, [7e-4, 9e-5, 4.5e-4], reference)
    assert result.verdict == REPRODUCED and "within 2 x" in result.text
    result = claims_fig3.rule_within_gd_bound(lrs, [7e-4, 9e-5, 1.3e-3], bound, [7e-4, 9e-5, 1.3e-3], reference)
    assert result.verdict == PARTLY and "beyond 2 x" in result.text
    assert np.isnan(claims_fig3.paper_roundoff("elu", lrs)).all()


def test_gd_bound_is_that_of_the_mean_squared_loss():
    """Mutation guard for Fig. 3's bound (Q_dynamics_elementwise.train with per_neuron.gd_drift_bound): one
    float64 step of the linear net at lr 0.001 changes Q by exactly lr^2/2 (|G_U|^2 - |G_V|^2) (paper_scale 2 x
    1/2) and the MSE by lr (|G_U|^2 + |G_V|^2) to first order, so drift / bound is (|G_U|^2 - |G_V|^2) /
    (HIGHER_ORDER (|G_U|^2 + |G_V|^2)) with G the MSE's gradients. A bound from the Frobenius loss |Y - U V^T|^2
    would be m n = 50 times larger."""
    import torch
    import Q_dynamics_elementwise as script
    from models import paper_init, paper_target
    from gfs.per_neuron import HIGHER_ORDER
    U, V = paper_init(script.M, script.N, script.HIDDEN, [script.INIT_STD], 1)
    U, V = U[0, 0].double().requires_grad_(), V[0, 0].double().requires_grad_()
    mse = (paper_target(script.M, script.N).double() - U @ V.T).square().mean()
    g_U, g_V = (g.square().sum().item() for g in torch.autograd.grad(mse, (U, V)))
    data = script.train(activation="linear", steps=1, device="cpu", dtype=torch.float64)
    measured = data["max_Q_change_zero"][0, -1] / data["drift_bound_zero"][0, -1]
    assert measured == pytest.approx(abs(g_U - g_V) / (HIGHER_ORDER * (g_U + g_V)), rel=1e-3)


def test_gap_check_both_ways():
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-15)).verdict == REPRODUCED
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-7)).verdict == NOT_REPRODUCED
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-7), float64=False).verdict == REPRODUCED


def test_both_conventions():
    same = toy_rules.both_conventions({"paper": Result(REPRODUCED, "a"), "zero": Result(REPRODUCED, "b")})
    assert same.verdict == REPRODUCED and "(both conventions)" in same.text
    differ = toy_rules.both_conventions({"paper": Result(NOT_REPRODUCED, "a"), "zero": Result(REPRODUCED, "b")})
    assert differ.verdict == verdict_rules.DEPENDS and "paper's convention: not reproduced (a)" in differ.text
    assert "zero convention: reproduced (b)" in differ.text


def test_a_trend_that_flips_with_the_integration_constant():
    """Q from 0 grows with the init scale (all Q > 0); with the paper code's constant (Q - 250 per network) it is
    negative and |Q| falls as the scale grows. The same sharpness then grows with |Q| in one convention only."""
    Q_zero = np.tile([0.01, 15.0, 30.0, 60.0], (10, 1)) * (1 + 0.01 * np.arange(10)[:, None])
    sharpness = 10 + Q_zero
    results = {c: toy_rules.rule_trend(np.abs(Q_zero - (250 if c == "paper" else 0)), sharpness, 1, sharpness)
               for c in toy_rules.CONVENTIONS}
    assert results["zero"].verdict == REPRODUCED and results["paper"].verdict == NOT_REPRODUCED
    assert toy_rules.both_conventions(results).verdict == verdict_rules.DEPENDS
    # linear and ReLU: no constant, both conventions the same
    same = {c: toy_rules.rule_trend(np.abs(Q_zero), sharpness, 1, sharpness) for c in toy_rules.CONVENTIONS}
    assert toy_rules.both_conventions(same).verdict == REPRODUCED


def test_q_key():
    assert toy_rules.q_key("Q0_zero", "zero") == "Q0_zero" and toy_rules.q_key("Q0_zero", "paper") == "Q0"
    assert toy_rules.q_key("sum_zero", "paper") == "sum_paper" and toy_rules.q_key("min_abs_zero", "paper") == "min_abs_paper"
    assert toy_rules.q_key("expected_Q_zero", "paper") == "expected_Q"


def test_the_reports_conventions_are_the_models():
    """The report names Q's two conventions without importing models (torch); they must be the model's."""
    from models import Q_CONVENTIONS
    assert toy_rules.CONVENTIONS == Q_CONVENTIONS


def test_trend_reports_the_range_of_the_integration_constant():
    """Q from 0 grows with the init scale; Q_c = Q - c x 250. For c <= 0 |Q_c| grows with Q, so the sharpness grows
    with it; from some c > 0 the paper code's c = 1 makes |Q_c| fall: the claim holds only for c in an interval that
    contains the zero convention's c and not the paper code's. Without a constant (entries 0) it holds for every c."""
    Q_zero = np.tile([0.01, 15.0, 30.0, 60.0], (10, 1)) * (1 + 0.01 * np.arange(10)[:, None])
    sharpness = 10 + Q_zero
    named = {"the paper code's": 1.0, "the zero convention's": 0.0}
    result = toy_rules.rule_trend(Q_zero, sharpness, 1, sharpness, entries=250, named=named)
    assert result.verdict == REPRODUCED and "integration constant: holds only for c in [-1, " in result.text
    assert result.rows[0][-1].startswith("only for c in [-1, ")  # the table's column *holds for c*
    assert "the paper code's c = 1 outside, the zero convention's c = 0 inside" in result.text
    paper = toy_rules.rule_trend(Q_zero, sharpness, 1, sharpness, c=1.0, entries=250)
    assert paper.verdict == NOT_REPRODUCED and "integration constant" not in paper.text  # one scan a claim
    flat = toy_rules.rule_trend(Q_zero, sharpness, 1, sharpness, entries=0, named=named)
    assert "holds for every c in the scanned [-1, 2]" in flat.text and flat.rows[0][-1] == "for every c"


def test_c_range_edges():
    """The intervals of c are read off the scan (grid 0.01): with Q from 1 to 16 and Q_c = Q - 16 c, |Q_c| grows
    with Q for c <= 1/16 and falls for c >= 1, so a value growing with Q holds from the scan's start -1 to an end
    between 0.07 and 1, and nowhere from 1 on."""
    Q = np.tile([1.0, 2.0, 4.0, 8.0, 16.0], (8, 1)) + 0.001 * np.arange(8)[:, None]
    text, short = trend_stats.c_range(Q, Q ** 2, 1, Q[:, :1] * 0 + 1, 16, {"a": 1.0, "b": 0.0})
    assert short == "only for c in " + text.split("holds only for c in ")[1].split(" of the scanned")[0]
    assert text.startswith("holds only for c in [-1, ") and " and " not in text.split(" of the scanned")[0]
    end = float(text.split("[-1, ")[1].split(")")[0])
    assert 0.07 <= end <= 1 and "a c = 1 outside, b c = 0 inside" in text


def predictor_stats(seeds, spread, edge):
    """Per-neuron statistics [S, 1, 5] (one orbit per seed), the same in both conventions: the sum fixed, min |Q_a|
    constant, the spread and the edge distance as given."""
    ones = np.ones((seeds, 1, 5))
    one = {"|sum Q_a|": 5.0 * ones, "spread of Q_a": spread, "min |Q_a|": ones, "edge distance": edge}
    return {c: one for c in toy_rules.CONVENTIONS}


def test_predictors_treat_float32_round_off_as_constant():
    """Mutation guard (CONSTANT): along every orbit the edge distance moves only by float32 round-off (1e-7 of it), here
    in step with the value; it is constant there, so it is blind to the value and is not tested. A tolerance of 1e-12
    would count the round-off as a trend and let it predict."""
    seeds, t = 12, np.linspace(0, 1, 5)
    spread = np.ones((seeds, 1, 5))
    edge = 5.0 * (1 + 1e-7 * t) * np.ones((seeds, 1, 1))
    value = 100 * (1 + 3 * t) * (1 + 0.01 * np.arange(seeds))[:, None, None]
    result = per_neuron_rules.rule_predictors(predictor_stats(seeds, spread, edge), value, np.full((6, 1), 100.0))
    assert "edge distance: does not predict (constant on every series: not tested)" in result.text
    assert result.verdict == NOT_REPRODUCED


def test_predictors_sign_test_is_two_sided():
    """Mutation guard: a statistic may predict in either direction, so its sign test is two-sided: 5 of 5 seeds up
    has p = 1/16 (not significant), where a one-sided test in the winning direction would give 1/32."""
    seeds, t = 5, np.linspace(0, 1, 5)
    spread = (1 + 3 * t) * np.ones((seeds, 1, 1)) + 0.01 * np.arange(seeds)[:, None, None]
    result = per_neuron_rules.rule_predictors(predictor_stats(seeds, spread, np.ones((seeds, 1, 5))), 100 * spread,
                                              np.full((6, 1), 100.0))
    assert "spread of Q_a: does not predict (up 5/5 seeds, p = 0.062" in result.text
    assert result.verdict == NOT_REPRODUCED
