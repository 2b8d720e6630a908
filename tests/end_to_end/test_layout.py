"""The layout the README describes: the top level holds the design card's files, the library is one package whose
imports run one way (no cycle; nothing imports a script, an entry point or the report from below), and no module
grows past what a reader takes in at once."""
import ast
import glob
import os

from helpers import REPO

TOP_LEVEL = {"Q_dynamics_elementwise.py", "Q_distribution.py", "Q_convergence_elementwise.py",
             "Q_convergence_radial.py", "Q_hessian_eigenvalues.py", "models.py", "make_report.py", "run_notebook.py"}
ENTRY_POINTS = {os.path.splitext(name)[0] for name in TOP_LEVEL} - {"models"}
MAX_LINES = 450


def project_modules():
    """{module name: path} of the top-level files and every module of gfs/."""
    paths = glob.glob(os.path.join(REPO, "*.py")) + glob.glob(os.path.join(REPO, "gfs", "**", "*.py"), recursive=True)
    modules = {}
    for path in paths:
        name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return modules


def imports_of(path, modules):
    """The project modules that `path` imports anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph():
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_the_top_level_holds_the_design_cards_python_files():
    assert {os.path.basename(p) for p in glob.glob(os.path.join(REPO, "*.py"))} == TOP_LEVEL


def test_imports_have_no_cycle():
    graph, state = import_graph(), {}

    def visit(name, path):
        state[name] = "open"
        for child in sorted(graph[name]):
            assert state.get(child) != "open", " -> ".join(path + [child])
            if child not in state:
                visit(child, path + [child])
        state[name] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_imports_one_above_it():
    """The library imports no script or entry point; only make_report and the report's own modules import the
    report; models.py imports nothing of the project."""
    graph = import_graph()
    for name, imported in graph.items():
        if name.startswith("gfs"):
            assert not imported & ENTRY_POINTS, (name, imported & ENTRY_POINTS)
        if not (name == "make_report" or name.startswith("gfs.report")):
            assert not {m for m in imported if m.startswith("gfs.report")}, name
    assert graph["models"] == set()


def test_no_module_is_longer_than_a_reader_takes_in():
    for name, path in project_modules().items():
        assert sum(1 for _ in open(path)) <= MAX_LINES, name
