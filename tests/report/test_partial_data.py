"""A report on part of the figures (a CIFAR-only run, a fresh clone before `make figures`): every missing figure's
claims read "not run" and its tables are left out, with no data error."""
import make_report as mr
from gfs.report.verdict_rules import NOT_RUN


def test_a_report_without_any_saved_figure_says_not_run_and_meets_no_data_error(tmp_path):
    text, errors = mr.build_report(str(tmp_path))
    assert errors == []
    assert "Table not shown" not in text
    assert text.count(f"**{NOT_RUN}**") >= len([c for s in mr.SECTIONS for c in s.claims])
