"""The documentation holds together: the README stays short, every relative link in README.md and
docs/*.md points at a file of the repository, and every defect code (B1, B2, ...) that the code,
tests or notebooks refer to is defined in docs/differences.md."""
import glob
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README_LIMIT = 12 * 1024  # bytes: a README a newcomer finishes; the rest belongs in docs/
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
# Markdown links [text](target) and HTML src="target" / href="target"
LINK = re.compile(r"\]\(([^)\s]+)\)|(?:src|href)=\"([^\"]+)\"")
CODE = re.compile(r"\bB[0-9]{1,2}\b")


def relative_links(text):
    """The targets of the relative links in a markdown text, without their #anchors."""
    targets = [a or b for a, b in LINK.findall(text)]
    return [t.split("#")[0] for t in targets
            if t.split("#")[0] and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # skip http:, mailto:, ...


def broken_links(page):
    with open(page, encoding="utf-8") as f:
        text = f.read()
    folder = os.path.dirname(page)
    return [t for t in relative_links(text) if not os.path.exists(os.path.normpath(os.path.join(folder, t)))]


def defined_codes(text):
    """Codes defined in docs/differences.md: the first cell of a table row, `| B7 | ...`."""
    return set(re.findall(r"^\|\s*(B[0-9]{1,2})\s*\|", text, flags=re.M))


def test_readme_is_short():
    size = os.path.getsize(os.path.join(ROOT, "README.md"))
    assert size <= README_LIMIT, f"README.md is {size} bytes; move details to docs/ (limit {README_LIMIT})"


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text('[ok](there.md#part) [web](https://example.org) <img src="missing.png"> [bad](gone.md)')
    assert broken_links(str(page)) == ["missing.png", "gone.md"]


def tracked_files(*patterns):
    try:
        out = subprocess.run(["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an unpacked archive)
        out = "\n".join(os.path.relpath(p, ROOT) for pattern in patterns
                        for p in glob.glob(os.path.join(ROOT, "**", pattern), recursive=True))
    return [os.path.join(ROOT, name) for name in out.split()]


def test_every_defect_code_used_is_defined():
    with open(os.path.join(ROOT, "docs", "differences.md"), encoding="utf-8") as f:
        defined = defined_codes(f.read())
    used = {}
    for path in tracked_files("*.py", "*.ipynb", "*.md"):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith(".ipynb"):  # the cells' text, not their outputs (base64 images hold any letters)
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        for code in CODE.findall(text):
            used.setdefault(code, os.path.relpath(path, ROOT))
    assert used, "no defect code found: the search is broken"
    missing = {code: where for code, where in used.items() if code not in defined}
    assert not missing, f"defect codes used but not defined in docs/differences.md: {missing}"


def test_code_definitions_are_read_from_table_rows_only():
    text = "| B1 | double softmax |\n| B12 | small issues |\nsee B3 in the text\n"
    assert defined_codes(text) == {"B1", "B12"}


def module_index():
    """{module basename: set of its top-level names} for the top-level files and every module of gfs/."""
    import ast
    paths = glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "gfs", "**", "*.py"), recursive=True)
    index = {}
    for path in paths:
        tree = ast.parse(open(path, encoding="utf-8").read())
        names = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        index.setdefault(os.path.splitext(os.path.basename(path))[0], set()).update(names)
    return index


STALE_NAME = re.compile(r"`([A-Za-z_][\w/]*)\.(py|[A-Za-z_]\w*)\b")


def stale_names(text, index, files):
    """The `module.py` and `module.name` mentions of a markdown text that name no module, or nothing in it."""
    stale = []
    for module, attribute in STALE_NAME.findall(text):
        base = module.split("/")[-1]
        if attribute == "py":
            if base not in index and module + ".py" not in files:
                stale.append(module + ".py")
        elif base in index and attribute not in index[base]:
            stale.append(f"{base}.{attribute}")
        elif "/" not in module and base not in index and re.match(r"^[a-z_]+$", base) and base + ".py" in files:
            stale.append(f"{base}.{attribute}")
    return stale


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_docs_name_no_stale_module(page):
    files = {os.path.relpath(p, ROOT) for p in tracked_files("*.py")}
    files |= {os.path.basename(p) for p in files}
    with open(page, encoding="utf-8") as f:
        assert stale_names(f.read(), module_index(), files) == []


def test_stale_name_check_catches_a_moved_module():
    index = {"robustness": {"ATTACKS"}}
    assert stale_names("`robustness.ATTACKS`, `robustness.GONE`, `threat_models.py`", index, set()) == [
        "robustness.GONE", "threat_models.py"]
