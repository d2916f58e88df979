"""One case, in-process: `circuitlang check --no-tokenize`, `plan` and `fmt` on a spec file,
through `cli.main` itself (output captured), so that the fuzzer sees exactly what they do.

`run_spec(path)` returns "ok" when all three accept the file and "error" when they refuse it with
located diagnostics; it raises `ContractBroken` for a diagnostic without a place, for fmt output
that does not parse or is not a fixed point, and lets any unexpected exception out (a crash).
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from circuitlang import cli
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.errors import EXIT_OK, EXIT_RUNTIME_ERROR, EXIT_SPEC_ERROR, CircuitlangError

# A diagnostic printed without a place starts with its stage (render_diagnostic).
UNPLACED = re.compile(r"^([a-z]+) error: (.*)$", re.MULTILINE)


class ContractBroken(Exception):
    """The front end ended without a crash but broke the contract of docs/fuzzing.md."""


def reuse_argument_parser() -> None:
    """Build the CLI's argument parser once per worker process: it is the same for every case, and
    building it took a fifth of a case's time. (Never in a test session, where tests patch the
    command functions the parser refers to.)"""
    cli._argument_parser = lru_cache(maxsize=1)(cli._argument_parser)


def run_spec(path: Path, start_clock: Callable[[], None] = lambda: None) -> str:
    """'ok' or 'error'; `start_clock` is called before each command (each has its own time budget)."""
    return run_commands(path, (check, plan, _fmt), start_clock)


def run_commands(path: Path, commands: Sequence[Callable[[Path], bool]], start_clock: Callable[[], None]) -> str:
    """'ok' when every command accepts the file, else 'error' (each has its own time budget)."""
    results = []
    for command in commands:
        start_clock()
        results.append(command(path))
    return "ok" if all(results) else "error"


def run_cli(*argv: str, model_errors: bool = False) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `circuitlang ARGV`; an exit code other than 0 or 2 (or 3, a
    model error, when `model_errors`) breaks the contract."""
    allowed = (EXIT_OK, EXIT_SPEC_ERROR, EXIT_RUNTIME_ERROR) if model_errors else (EXIT_OK, EXIT_SPEC_ERROR)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    if code not in allowed:
        raise ContractBroken(f"{argv[0]}: exit code {code}: {err.getvalue()[-500:]}")
    return code, out.getvalue(), err.getvalue()


def check(path: Path, tokenize: bool = False, model_errors: bool = False) -> bool:
    """`check --format json`: every error has a message, and a place unless it is a model error
    (about a model folder's files, not the spec's text) where `model_errors` allows those."""
    flags = () if tokenize else ("--no-tokenize",)
    code, out, _ = run_cli("check", *flags, "--format", "json", str(path), model_errors=model_errors)
    for error in json.loads(out)["files"][0]["errors"]:
        if not error["message"]:
            raise ContractBroken(f"check: an error without a message ({error['stage']})")
        if error["line"] is None and not (model_errors and error["stage"] == "model"):
            raise ContractBroken(f"check: an error without a span: {error['message']}")
    return code == EXIT_OK


def plan(path: Path, model_errors: bool = False) -> bool:
    code, out, err = run_cli("plan", str(path), model_errors=model_errors)
    _require_places("plan", out + err, model_errors)
    return code == EXIT_OK


def _fmt(path: Path) -> bool:
    code, out, err = run_cli("fmt", str(path))
    _require_places("fmt", err)
    if code != EXIT_OK:
        return False
    _require_fixed_point(out, path)
    return True


def _require_places(command: str, output: str, model_errors: bool = False) -> None:
    for unplaced in UNPLACED.finditer(output):
        if model_errors and unplaced.group(1) == "model":
            continue
        raise ContractBroken(f"{command}: an error without a span: {unplaced.group(2)}")


def _require_fixed_point(formatted: str, path: Path) -> None:
    try:
        again = format_spec(parse(formatted, str(path)))
    except CircuitlangError as error:
        raise ContractBroken(f"fmt: its output does not parse: {error}") from None
    if again != formatted:
        raise ContractBroken("fmt: its output is not a fixed point (formatting it again changes it)")
