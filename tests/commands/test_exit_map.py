"""One map from errors to exit codes, at the command line's top.

Commands raise typed errors (circuitlang.errors) or return a Verdict; `cli.main` alone turns
either into an exit code, with `cli._exit_status` and `errors.exit_code`. The scan below fails
when code anywhere else in the package chooses a code: an `EXIT_` constant, a call of
`exit_code`, `sys.exit`, or an integer returned by the command-line layer.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from circuitlang import cli, errors
from circuitlang.errors import (
    CircuitlangError,
    ClusterError,
    DataError,
    InputError,
    LimitError,
    MissingExtra,
    ModelError,
    OutputError,
    Reported,
    SpecError,
    SpecErrors,
    SyntaxErrorInSpec,
    UsageError,
    Verdict,
)
from tests.conftest import ROOT, SPECS

PACKAGE = ROOT / "circuitlang"
CLI_LAYER = [PACKAGE / "cli.py", *sorted((PACKAGE / "commands").glob("*.py"))]
# Where a code may be chosen: the map (errors.py), the entry point and the process's end (cli.py).
MAY_NAME_A_CODE = {"main", "_exit_status", "run", "_exit_now"}
# exit_code is also called where verify writes the code it will end with into its failure reports.
MAY_CALL_EXIT_CODE = {"_exit_status", "_write_failures"}
EXITS = {"exit", "_exit"}  # sys.exit, os._exit, exit()


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "errors.py")


def _uses(path: Path) -> list[tuple[str, int, str]]:
    """(what, line, enclosing function) for each place in the module that could choose an exit code."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, function: str, in_main_block: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.If) and _is_main_block(node):
            in_main_block = True  # a script's own `sys.exit(main())`, not the command line's
        if isinstance(node, ast.Name) and node.id.startswith("EXIT_"):
            found.append((node.id, node.lineno, function))
        if isinstance(node, ast.ImportFrom):
            found.extend((alias.name, node.lineno, function) for alias in node.names if alias.name.startswith("EXIT_"))
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "exit_code":
                found.append(("exit_code()", node.lineno, function))
            if name in EXITS and not in_main_block:
                found.append((f"{name}()", node.lineno, function))
            if name == "SystemExit":
                found.append(("SystemExit()", node.lineno, function))
        if isinstance(node, ast.Attribute) and node.attr == "exit_code":
            found.append((".exit_code", node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function, in_main_block)

    visit(ast.parse(path.read_text()), "<module>", False)
    return found


def _is_main_block(node: ast.If) -> bool:
    test = node.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _allowed(path: Path, what: str, function: str) -> bool:
    if path.name != "cli.py" or path.parent != PACKAGE:
        return False
    if what == "exit_code()":
        return function in MAY_CALL_EXIT_CODE
    return function in MAY_NAME_A_CODE or function == "<module>" and what.startswith("EXIT_")  # the import


def test_no_code_outside_the_map_chooses_an_exit_code():
    chosen = [
        f"{path.relative_to(ROOT)}:{line}: {what} in {function}"
        for path in _modules()
        for what, line, function in _uses(path)
        if not _allowed(path, what, function)
    ]
    assert not chosen, "exit codes are chosen only by cli.main through cli._exit_status:\n" + "\n".join(chosen)


def test_the_command_line_layer_returns_no_integers():
    returned = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in CLI_LAYER
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and type(node.value.value) is int
    ]
    assert not returned, returned


def test_the_exit_codes_are_defined_once():
    defined = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        for name in ast.walk(target)
        if isinstance(name, ast.Name) and name.id.startswith("EXIT_")
    ]
    assert not defined, defined
    assert (errors.EXIT_OK, errors.EXIT_CLAIM_FAILED, errors.EXIT_SPEC_ERROR, errors.EXIT_RUNTIME_ERROR) == (0, 1, 2, 3)


def test_every_command_returns_a_verdict_or_nothing():
    """Each command's `run`, the function argparse calls, declares no integer result."""
    parser = cli._argument_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    for name, command in commands.items():
        run = command.get_default("run")
        assert inspect.signature(run).return_annotation in ("None", "Verdict", "Verdict | None"), name


# ---- the map ---------------------------------------------------------------------------------

ERROR_CODES = [
    (SyntaxErrorInSpec("s"), 2),
    (SpecError("s"), 2),
    (DataError("d"), 2),
    (LimitError("l"), 2),
    (UsageError("u"), 2),
    (InputError("i"), 2),
    (ModelError("m"), 3),
    (OutputError("o"), 3),
    (MissingExtra("x"), 3),
    (SpecErrors([SpecError("s"), ModelError("m")]), 3),
    (Reported([UsageError("u")]), 2),
    (Reported([DataError("d"), OutputError("o")]), 3),
    (Reported([SpecErrors([DataError("d"), ModelError("m")])]), 3),
]


@pytest.mark.parametrize(
    "ending, code",
    [(None, 0), (Verdict.PASSED, 0), (Verdict.FAILED, 1), *ERROR_CODES],
    ids=lambda value: type(value).__name__ if not isinstance(value, int) else str(value),
)
def test_how_a_command_ends_maps_to_its_code(ending, code):
    assert cli._exit_status(ending) == code


@pytest.mark.parametrize("error, code", ERROR_CODES, ids=[type(e).__name__ for e, _ in ERROR_CODES])
def test_an_error_a_command_raises_is_said_once_and_mapped_at_the_top(error, code, monkeypatch, capsys):
    def failing(args) -> None:
        raise error

    monkeypatch.setattr(cli, "_plan", failing)
    assert cli.main(["plan", str(SPECS / "organism_incr_digits.circ")]) == code
    out, err = capsys.readouterr()
    assert out == ""
    if isinstance(error, Reported):
        assert err == ""  # the command has shown it
    elif isinstance(error, errors.CommandError):
        assert err == error.message + "\n"  # the command's own line, as it wrote it
    else:
        assert err == "".join(errors.render_diagnostic(e) + "\n" for e in errors.flatten([error]))


def test_a_verdict_is_mapped_at_the_top(monkeypatch):
    monkeypatch.setattr(cli, "_plan", lambda args: Verdict.FAILED)
    assert cli.main(["plan", str(SPECS / "organism_incr_digits.circ")]) == 1


def test_a_missing_extra_is_a_runtime_error_at_the_top(monkeypatch, capsys):
    def needs_matplotlib(args) -> None:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli, "_plan", needs_matplotlib)
    assert cli.main(["plan", str(SPECS / "organism_incr_digits.circ")]) == 3
    assert capsys.readouterr().err == (
        "error: `circuitlang plan` needs matplotlib, which is not installed\n  hint: pip "
        "install 'circuitlang[pictures]' (install torch==2.13.0 first for the CPU build; "
        "see README)\n"
    )


def test_usage_errors_and_help_keep_argparse_codes(capsys):
    assert cli.main([]) == 2
    assert cli.main(["plan", "--no-such-option", "x.circ"]) == 2
    assert cli.main(["--help"]) == 0
    assert "usage: circuitlang" in capsys.readouterr().out


def test_the_error_kinds_belong_to_the_one_hierarchy():
    for kind in (UsageError, InputError, OutputError, MissingExtra, ClusterError, Reported):
        assert issubclass(kind, CircuitlangError)
    assert set(errors.RUNTIME_ERRORS) == {ModelError, OutputError, MissingExtra, ClusterError}
