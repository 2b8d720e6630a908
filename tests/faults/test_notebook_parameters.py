"""The notebooks' parameters: one table of rules (notebook_parameters.RULES) that covers every parameter of
both notebooks and refuses bad values in one line; QUICK honours a parameter set to another value;
papermill reads every parameter without a warning; outside the repository a notebook says where to run it."""
import logging
import math
import os
import subprocess
import sys

import nbformat
import pytest

from gfs.cifar import notebook_parameters as rules
from helpers import NOTEBOOKS, derived_cell, quick_values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parameters_cell(name):
    notebook = nbformat.read(os.path.join(ROOT, name), as_version=4)
    return next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))


def test_the_rules_cover_exactly_the_notebooks_parameters_and_accept_their_defaults():
    """A parameter added to a notebook needs a rule; a renamed one (GROUP_SCALES -> GROUP_SCALES) is renamed in
    the table too, or this fails."""
    names = set()
    for name in NOTEBOOKS:
        defaults = rules.notebook_defaults(os.path.join(ROOT, name))
        rules.check(defaults)
        assert set(defaults) <= set(rules.RULES), f"{name}: no rule for {set(defaults) - set(rules.RULES)}"
        names |= set(defaults)
    assert set(rules.RULES) == names, f"rules for no parameter: {set(rules.RULES) - names}"


@pytest.mark.parametrize("name, value, words", [
    ("LR", math.nan, "LR must be a finite number > 0, not nan"), ("LR", math.inf, "finite"), ("LR", 0, "> 0"),
    ("HIDDEN", 0, "HIDDEN must be a whole number >= 1, not 0"), ("HIDDEN", 16.0, "whole number"),
    ("HIDDEN", True, "whole number"), ("EPOCHS", -1, ">= 1"), ("SEED", -1, ">= 0"),
    ("GROUP_SCALES", [1, -2], "each a finite number > 0"), ("GROUP_SCALES", [], "non-empty"),
    ("NUM_G_LIST", [2, 0], "each a whole number >= 1"), ("N_EVAL", 0, "None (all) or a whole number >= 1"),
    ("ROBUSTNESS_RADII", [8], "a number in [0, 1]"), ("ROBUSTNESS_RADII", [0, math.nan], "[0, 1]"),
    ("NUMERICS", ["paper", "fast"], "'paper', 'exact'"), ("QUICK", "yes", "True or False"),
    ("DEVICE", "tpu", "auto, cpu, cuda or cuda:N"), ("GROUP_SCALE", -10.0, "> 0"), ("CIFAR_DIR", "", "non-empty")])
def test_a_bad_value_is_refused_in_one_line(name, value, words):
    with pytest.raises(rules.ParameterError) as error:
        rules.check({name: value})
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, value", [("LR", 1e-4), ("HIDDEN", 1), ("N_EVAL", None), ("N_EVAL", 5),
                                         ("ROBUSTNESS_RADII", [0, 1]), ("DEVICE", "cuda:1"),
                                         ("SEEDS", None), ("GROUP_SCALES", [1e-4, 20])])
def test_a_good_value_passes(name, value):
    rules.check({name: value})


def test_quick_replaces_only_the_parameters_left_at_their_defaults(capsys):
    values = rules.notebook_defaults(os.path.join(ROOT, "ensemble_CIFAR.ipynb"))
    values.update(N_TRAIN=1000, EPOCHS=3)  # set explicitly (papermill -p, run_notebook.py -p, an edit)
    applied = rules.quick_settings("ensemble_CIFAR.ipynb", values, dict(N_TRAIN=600, EPOCHS=2, N_EVAL=200))
    assert applied == {"N_EVAL": 200}
    assert capsys.readouterr().out == "QUICK: smoke-test settings N_EVAL=200; kept as set: N_TRAIN=1000, EPOCHS=3\n"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_quick_settings_name_parameters_of_their_notebook(name):
    """The derived cell's QUICK values are passed through quick_settings (so an explicit value is kept), and
    every name in them is a parameter of the notebook (a misspelt one would never apply)."""
    derived = derived_cell(name)
    assert f'notebook_parameters.quick_settings("{name}", globals(), dict(' in derived
    assert "notebook_parameters.check(globals())" in derived
    quick = quick_values(name)
    defaults = rules.notebook_defaults(os.path.join(ROOT, name))
    assert quick and set(quick) <= set(defaults)
    rules.check(quick)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_reads_every_parameter_without_a_warning(name, caplog):
    from papermill.translators import PythonTranslator
    with caplog.at_level(logging.WARNING):
        found = PythonTranslator.inspect(parameters_cell(name))
    assert [record.getMessage() for record in caplog.records] == []  # no "Unable to parse line"
    assert [p.name for p in found] == list(rules.notebook_defaults(os.path.join(ROOT, name)))  # --help-notebook


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_outside_the_repository_a_notebook_says_where_to_run_it(name, tmp_path):
    """The derived cell's import, run where the package is not importable (papermill's kernel runs in the
    caller's folder): one message that says where to run it."""
    derived = derived_cell(name)
    block = derived[derived.index("try:"):derived.index("if QUICK:")]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: run this notebook from the repository's folder, which holds the package gfs (cd "
        "there, or papermill --cwd REPOSITORY, or run_notebook.py from anywhere)")


@pytest.mark.parametrize("folder", ["figures", "./figures", os.path.join(ROOT, "figures")])
def test_a_quick_run_into_the_committed_figures_is_refused(folder, monkeypatch):
    monkeypatch.chdir(ROOT)  # the kernel's folder
    with pytest.raises(rules.ParameterError, match="never writes into the committed figures/"):
        rules.figures_dir(folder, quick=True)
    assert rules.figures_dir(folder, quick=False) == folder

