"""The toy figures' shared rules with effect sizes and statistics over seeds (toy_rules.py) and Fig. 3's bound
(claims_fig3.py), each both ways, and the two conventions of Q."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from gfs.report.verdict_rules import NOT_REPRODUCED, PARTLY, REPRODUCED, Result
from gfs.report import verdict_rules
from gfs.report import toy_rules
from gfs.report import claims_fig3


def orbits(slope, series=10, points=7, noise=0.0, seed=0):
    """|Q| [N, L] and a value [N, L] = 100 (1 + slope * t) along t in [0, 1], plus noise."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.geomspace(1, 100, points), (series, 1))
    t = np.linspace(0, 1, points)
    return x, 100 * (1 + slope * t) * (1 + noise * rng.standard_normal((series, points)))


def test_trend_holds_when_significant_and_large():
    x, values = orbits(0.5)
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1])
    assert result.verdict == REPRODUCED and "10 of 10 series" in result.text


def test_trend_with_spearman_above_0_8_but_a_small_effect_is_not_reproduced():
    """A perfectly monotone trend (Spearman 1 on every orbit, as the old rule required >= 0.8) of only 3 %: below the
    minimum effect of 10 %, so it does not hold."""
    x, values = orbits(0.03)
    assert all(spearmanr(a, b).statistic >= 0.8 for a, b in zip(x, values))
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1])
    assert result.verdict == NOT_REPRODUCED and "minimum 10.0%" in result.text and "significant" in result.text


def test_trend_effect_must_exceed_the_spread_over_seeds():
    """Sigmoid's Fig. 9: 127 -> 134 (5 %) with a seed spread of +-4 (3 %): 2 x 3 % = 6 % is needed, so 5 % fails; the
    same 5 % with no spread over seeds would still fail the 10 % floor, and 15 % with that spread holds."""
    x, values = orbits(0.05)
    spread = np.array([[123.0], [127.0], [131.0], [127.0], [123.0], [131.0]])
    result = toy_rules.rule_trend(x, values, direction=1, reference=spread)
    assert result.verdict == NOT_REPRODUCED
    assert toy_rules.minimum_effect(spread) == pytest.approx(max(0.10, 2 * spread.std() / spread.mean()))
    x, values = orbits(0.15)
    assert toy_rules.rule_trend(x, values, direction=1, reference=spread).verdict == REPRODUCED
    wide = spread * np.array([[0.5], [1.0], [1.5], [1.0], [0.5], [1.5]])  # a spread of 40 %: 15 % is within it
    assert toy_rules.rule_trend(x, values, direction=1, reference=wide).verdict == NOT_REPRODUCED


def test_trend_needs_a_significant_sign_test():
    x, values = orbits(0.5, series=3)  # 3 of 3 series: one-sided p = 1/8, not below 0.05
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1])
    assert result.verdict == NOT_REPRODUCED and "not significant" in result.text
    x, values = orbits(0.5, series=5)  # 5 of 5: p = 1/32
    assert toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1]).verdict == REPRODUCED


def test_trend_in_the_other_direction_fails():
    x, values = orbits(-0.5)
    assert toy_rules.rule_trend(x, values, direction=1, reference=values[:, :1]).verdict == NOT_REPRODUCED
    assert toy_rules.rule_trend(x, values, direction=-1, reference=values[:, :1]).verdict == REPRODUCED


def test_trend_counts_never_reached_as_the_budget():
    x = np.tile([1.0, 10.0, 100.0], (6, 1))
    steps = np.tile([np.inf, 50_000.0, 10_000.0], (6, 1))  # falls with |Q|; the first never reaches the loss
    result = toy_rules.rule_trend(x, steps, direction=-1, reference=steps[:, 1:2], budget=400_000)
    assert result.verdict == REPRODUCED and result.value == pytest.approx(39.0)  # 400,000 / 10,000 - 1


def test_trend_leaves_out_series_with_nan():
    x, values = orbits(0.5)
    values[0, 3] = np.nan
    result = toy_rules.rule_trend(x, values, direction=1, reference=values[1:, :1])
    assert result.verdict == PARTLY and "1 series left out" in result.text  # it cannot be tested on that series


def test_within_gd_bound_both_ways():
    lrs = [0.1, 0.01, 0.001]
    assert claims_fig3.rule_within_gd_bound(lrs, [1e-3, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == REPRODUCED
    result = claims_fig3.rule_within_gd_bound(lrs, [1e-3, 1e-4, 4e-4], [2e-3, 2e-4, 2e-5])  # float32 round-off at 0.001
    assert result.verdict == PARTLY and "lr 0.001: 0.0004 of bound 2e-05" in result.text
    assert claims_fig3.rule_within_gd_bound(lrs, [3e-3, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == NOT_REPRODUCED
    assert claims_fig3.rule_within_gd_bound(lrs, [np.nan, 1e-4, 1e-5], [2e-3, 2e-4, 2e-5]).verdict == NOT_REPRODUCED


def test_gap_check_both_ways():
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-15)).verdict == REPRODUCED
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-7)).verdict == NOT_REPRODUCED
    assert toy_rules.rule_gap_below(np.full((3, 2, 5), 1e-7), float64=False).verdict == REPRODUCED


def test_both_conventions():
    same = toy_rules.both_conventions({"paper": Result(REPRODUCED, "a"), "zero": Result(REPRODUCED, "b")})
    assert same.verdict == REPRODUCED and "same verdict in both conventions" in same.text
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
