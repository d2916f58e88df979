"""The engine boundary: torch and transformer_lens are imported at a module's top only in
circuitlang/engine/ (README, Layout). Elsewhere they are imported inside the functions that need
them, or for type annotations only (`if TYPE_CHECKING:`), so that what reads specs, plans and
writes reports stays light; the organism's training scripts, which the package never imports,
are the one exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "circuitlang"
HEAVY = ("torch", "transformer_lens")
# scripts run as `python -m circuitlang.organisms.seqcont.train` / `.evaluate` to train and check the organism
SCRIPTS = {"circuitlang/organisms/seqcont/train.py", "circuitlang/organisms/seqcont/evaluate.py"}


def module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module is imported: not inside a function,
    nor in the body of `if TYPE_CHECKING:`."""
    deferred: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            deferred |= {id(inner) for inner in ast.walk(node) if inner is not node}
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            deferred |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    imports = []
    for node in ast.walk(tree):
        if id(node) in deferred:
            continue
        if isinstance(node, ast.Import):
            imports += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports.append((node.lineno, node.module))
    return imports


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def heavy_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{line}: import {module}" for line, module in module_level_imports(tree) if module.split(".")[0] in HEAVY]


def test_torch_and_transformer_lens_are_imported_at_a_modules_top_only_in_the_engine() -> None:
    outside = [
        path for path in sorted(PACKAGE.rglob("*.py")) if path.parent != PACKAGE / "engine" and str(path.relative_to(ROOT)) not in SCRIPTS
    ]
    offenders = [line for path in outside for line in heavy_imports(path)]
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_imports_at_the_top_and_only_there() -> None:
    """A check that cannot fail proves nothing: the scan finds the engine's imports and the
    scripts', and none that a function or `if TYPE_CHECKING:` holds."""
    assert heavy_imports(PACKAGE / "engine" / "runner.py")
    assert all(heavy_imports(ROOT / script) for script in SCRIPTS)
    tree = ast.parse(
        "import os\nif TYPE_CHECKING:\n    import torch\nelse:\n    import numpy\n"
        "def f():\n    import torch\nclass C:\n    import transformer_lens\n"
        "try:\n    from torch import nn\nexcept ImportError:\n    pass\n"
    )
    assert sorted(module for _, module in module_level_imports(tree)) == ["numpy", "os", "torch", "transformer_lens"]


def test_nothing_in_the_package_imports_the_training_scripts_at_its_top() -> None:
    """The scripts may import torch at their top because only `python -m` runs them."""
    names = {script.removesuffix(".py").replace("/", ".") for script in SCRIPTS}
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
        if module in names
    ]
    assert not offenders, "\n".join(offenders)
