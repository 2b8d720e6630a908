"""The rules of the CIFAR-10 claims beyond the paper (claims_fig10.py, claims_fig11.py) on small constructed numbers,
each both ways."""
import subprocess
import sys

import numpy as np
import pytest

from gfs.report.verdict_rules import CANNOT_TEST, NOT_REPRODUCED, PARTLY, REPRODUCED
from gfs.report import verdict_rules
from gfs.report import claims_fig11
from gfs.report import claims_fig10
from helpers import REPO

RADII = np.array([1, 2, 4, 8])


def test_same_predictions_needs_every_cell_of_a_row_at_the_threshold():
    eps = [10, 1, 0.1]
    agreement = np.array([[0.2, 0.3], [0.95, 0.995], [0.999, 0.991]])
    result = claims_fig10.rule_same_predictions(eps, agreement)
    assert result.verdict == PARTLY and "same predictions at eps in {0.1}" in result.text
    assert claims_fig10.rule_same_predictions(eps, np.full((3, 2), 0.995)).verdict == REPRODUCED
    assert claims_fig10.rule_same_predictions(eps, np.full((3, 2), 0.5)).verdict == NOT_REPRODUCED
    with_nan = claims_fig10.rule_same_predictions(eps, np.where(np.eye(3, 2) > 0, np.nan, 1.0))  # a NaN cell fails its row
    assert with_nan.verdict == PARTLY and "same predictions at eps in {0.1}" in with_nan.text


def test_action_generalises_reads_the_largest_fit_size_per_scale():
    sizes = [16, 64, 256, 1024]
    rising = np.array([[0.3, 0.8, 0.95, 0.995], [0.2, 0.5, 0.9, 0.992], [0.1, 0.2, 0.3, 0.4]])
    result = claims_fig10.rule_action_generalises([0.1, 1, 10], sizes, rising)
    assert result.verdict == PARTLY and "generalises at scale 0.1, 1" in result.deciding
    assert claims_fig10.rule_action_generalises([0.1], sizes, rising[:1]).verdict == REPRODUCED
    assert claims_fig10.rule_action_generalises([10], sizes, rising[2:]).verdict == NOT_REPRODUCED


def gain(diff, p, accuracy=(0.4, 0.2, 0.05, 0.0), **extra):
    return dict(radii=RADII, diff=np.array(diff), p=np.array(p), accuracy=np.array(accuracy), **extra)


def test_robust_gain_is_paired_significant_bonferroni_and_above_chance():
    assert claims_fig11.rule_robust_gain(**gain([0.05, 0.03, 0.0, 0.0], [1e-6, 1e-3, 1, 1])).verdict == REPRODUCED
    # p = 0.02 < 0.05 but not < 0.05 / 4: no gain
    assert claims_fig11.rule_robust_gain(**gain([0.05, 0, 0, 0], [0.02, 1, 1, 1])).verdict == NOT_REPRODUCED
    # a significant loss elsewhere: partly, and the loss decides (its signed difference and p, not the largest gain)
    result = claims_fig11.rule_robust_gain(**gain([0.05, -0.04, 0, 0], [1e-6, 1e-7, 1, 1]))
    assert result.verdict == PARTLY and result.deciding == "loss at 2/255" and (result.value, result.p) == (-0.04, 1e-7)
    # a gain where the ensemble is at most 0.01 above chance does not count
    assert claims_fig11.rule_robust_gain(**gain([0, 0, 0.05, 0], [1, 1, 1e-9, 1])).verdict == NOT_REPRODUCED
    # not a symmetry on its fitting images: cannot be tested
    result = claims_fig11.rule_robust_gain(**gain([0.05, 0.03, 0, 0], [1e-6, 1e-3, 1, 1], symmetry_error=0.5))
    assert result.verdict == CANNOT_TEST and "not symmetries" in result.text
    assert "as measured: reproduced" in result.text
    # an overflowing member (error NaN) is no symmetry; an error within the tolerance is
    assert claims_fig11.rule_robust_gain(**gain([0.05, 0.03, 0, 0], [1e-6, 1e-3, 1, 1], symmetry_error=np.nan)).verdict \
        == CANNOT_TEST
    assert claims_fig11.rule_robust_gain(**gain([0.05, 0.03, 0, 0], [1e-6, 1e-3, 1, 1], symmetry_error=5e-4)).verdict \
        == REPRODUCED


def test_gain_beyond_controls_needs_each_control_at_a_radius_where_the_gain_holds():
    ahead, behind = ([0.04, 0.02, 0, 0], [1e-6, 1e-4, 1, 1]), ([-0.02, 0, 0, 0], [1e-3, 1, 1, 1])
    base = gain([0.05, 0.03, 0, 0], [1e-6, 1e-3, 1, 1])
    both = claims_fig11.rule_gain_beyond_controls(**base, controls={"independent CNN": ahead, "shared trunk": ahead})
    assert both.verdict == REPRODUCED
    one = claims_fig11.rule_gain_beyond_controls(**base, controls={"independent CNN": ahead, "shared trunk": behind})
    assert one.verdict == PARTLY and "shared trunk: not beyond" in one.deciding
    # the deciding number is signed: a control significantly ahead reads negative, not a lead of 0
    assert one.value == -0.02 and one.value_name == "lead over the strongest control at 1/255"
    # ahead of the controls only where there is no gain over the original: not beyond
    late = ([0, 0, 0.04, 0], [1, 1, 1e-9, 1])
    assert claims_fig11.rule_gain_beyond_controls(**base, controls={"independent CNN": late}).verdict == NOT_REPRODUCED


def test_a_failed_sanity_check_is_raised_not_judged():
    from gfs.cifar import robustness

    class Saved:  # a saved figure (make_report.Figure): arrays, and the suite its .json describes
        name = "ensemble/x"
        data = {"seeds": np.arange(2), "radii": RADII / 255, "robust_acc_group": np.zeros((2, 4)),
                "alone_acc_deep": np.zeros((2, len(robustness.ATTACKS), 4)), "converged_group": np.ones((2, 4), bool)}
        for c in robustness.CLASSIFIERS:
            data[f"sanity_{c}"] = np.ones((2, len(robustness.SANITY_CHECKS), 4), bool)
        settings = {"suite": robustness.suite_description()}

        def __getitem__(self, key):
            return self.data[key]

        def setting(self, key):
            return self.settings[key]

    Saved.data["sanity_original"][1, list(robustness.SANITY_CHECKS).index("monotone_in_radius"), 3] = False
    with pytest.raises(verdict_rules.EvaluationFailed, match="seed 1, original, radius 8/255: robust accuracy does not increase"):
        claims_fig11.fig11_suite(Saved())
    old = Saved()
    old.data = {"seeds": np.arange(2)}
    with pytest.raises(verdict_rules.NotRun, match="predates this measurement"):
        claims_fig11.fig11_suite(old)


def test_cifar_claims_import_without_torch():
    """The report reads saved files only: the CIFAR claims (and the file names and thresholds they use) import with
    torch and torchvision unimportable."""
    code = ("import sys; sys.modules.update(torch=None, torchvision=None); "
            "import gfs.report.claims_fig10, gfs.report.claims_fig11; "
            "print(sorted(m for m in sys.modules if m.startswith('gfs.cifar')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.split() == ["['gfs.cifar',", "'gfs.cifar.dataset',", "'gfs.cifar.suite_checks',",
                                     "'gfs.cifar.thresholds']"]
