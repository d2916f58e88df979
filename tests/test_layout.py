"""The layout says what things are (README, Layout): the result models import nothing that computes
or renders them, the workflows are called only from the command line, the Python API and the
organism's driver script, and no two modules share a name that means different work.

Every import counts here, those inside functions too: a call-time import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "circuitlang"
# Jupyter looks up `_repr_markdown_` on the object it shows, so the notebook's Markdown view of a
# Report is the one call from results/ into report/ (docs/decisions.md, "How the code holds together").
RESULTS_MAY_CALL = {("circuitlang/results/report.py", "circuitlang.report.render")}
RESULTS_MAY_IMPORT = ("circuitlang.results", "circuitlang.ir")
WORKFLOW_CALLERS = ("circuitlang/cli.py", "circuitlang/api.py", "circuitlang/commands/", "circuitlang/workflows/")
WORKFLOW_SCRIPTS = {"circuitlang/organisms/seqcont/circuits.py"}  # `python -m` driver: discover, then verify


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def modules() -> list[tuple[str, Path]]:
    return [(str(path.relative_to(ROOT)), path) for path in sorted(PACKAGE.rglob("*.py"))]


def results_offenders() -> list[str]:
    offenders = []
    for name, path in modules():
        if not name.startswith("circuitlang/results/"):
            continue
        for line, module in imports(path):
            inside = module.startswith("circuitlang.") and not module.startswith(RESULTS_MAY_IMPORT)
            if inside and not any(name == allowed and module.startswith(target) for allowed, target in RESULTS_MAY_CALL):
                offenders.append(f"{name}:{line}: import {module}")
    return offenders


def workflow_offenders() -> list[str]:
    offenders = []
    for name, path in modules():
        if name.startswith(WORKFLOW_CALLERS) or name in WORKFLOW_SCRIPTS:
            continue
        offenders += [f"{name}:{line}: import {module}" for line, module in imports(path) if module.startswith("circuitlang.workflows")]
    return offenders


def test_the_result_models_import_nothing_that_computes_or_renders_them() -> None:
    assert not results_offenders(), "\n".join(results_offenders())


def test_the_workflows_are_called_only_from_the_command_line_and_the_api() -> None:
    assert not workflow_offenders(), "\n".join(workflow_offenders())


def test_the_scan_sees_the_imports_it_checks() -> None:
    """A check that cannot fail proves nothing: the scan sees the allowed call into report/, and the
    command line's imports of the workflows."""
    report_imports = [module for _, module in imports(PACKAGE / "results" / "report.py")]
    assert any(module.startswith("circuitlang.report.render") for module in report_imports)
    assert any(module.startswith("circuitlang.workflows") for _, module in imports(PACKAGE / "commands" / "patch.py"))


def test_module_names_say_what_they_do() -> None:
    """One module per name among the ones that used to collide: path patching is engine/path_patching.py,
    and `compare` is the command; the patch sweeps, their files and the comparison's pieces have their own names."""
    names = [name for name, _ in modules()]
    assert [name for name in names if "patching" in Path(name).name] == ["circuitlang/engine/path_patching.py"]
    assert [name for name in names if Path(name).name == "compare.py"] == ["circuitlang/commands/compare.py"]
    mirrored = {Path(name).stem for name in names if name.startswith("circuitlang/workflows/")} - {"__init__"}
    assert mirrored == {
        "verify",
        "patch",
        "transfer",
        "discover",
        "interchange",
        "attention",
        "lens",
        "look",
        "suite",
        "discover_suite",
    }  # interchange: the hypothesis step of verify; suite, discover_suite: several specs of verify, discover


def test_test_folders_mirror_the_package() -> None:
    """tests/<package>/ holds the tests of circuitlang/<package>/; what spans the project (the API,
    the docs, the README, CI, fuzzing, this layout) sits at tests/ itself."""
    folders = {path.parent.name for path in (ROOT / "tests").glob("*/test_*.py")}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert folders and folders <= packages, sorted(folders - packages)
