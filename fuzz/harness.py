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
from typing import Callable

from circuitlang import cli
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.errors import EXIT_OK, EXIT_SPEC_ERROR, CircuitlangError

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
    results = []
    for command in (_check, _plan, _fmt):
        start_clock()
        results.append(command(path))
    return "ok" if all(results) else "error"


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(argv))
    if code not in (EXIT_OK, EXIT_SPEC_ERROR):
        raise ContractBroken(f"{argv[0]}: exit code {code}: {err.getvalue()[-500:]}")
    return code, out.getvalue(), err.getvalue()


def _check(path: Path) -> bool:
    code, out, _ = _run_cli("check", "--no-tokenize", "--format", "json", str(path))
    for error in json.loads(out)["files"][0]["errors"]:
        if error["line"] is None:
            raise ContractBroken(f"check: an error without a span: {error['message']}")
    return code == EXIT_OK


def _plan(path: Path) -> bool:
    code, out, err = _run_cli("plan", str(path))
    _require_places("plan", out + err)
    return code == EXIT_OK


def _fmt(path: Path) -> bool:
    code, out, err = _run_cli("fmt", str(path))
    _require_places("fmt", err)
    if code != EXIT_OK:
        return False
    _require_fixed_point(out, path)
    return True


def _require_places(command: str, output: str) -> None:
    unplaced = UNPLACED.search(output)
    if unplaced:
        raise ContractBroken(f"{command}: an error without a span: {unplaced.group(2)}")


def _require_fixed_point(formatted: str, path: Path) -> None:
    try:
        again = format_spec(parse(formatted, str(path)))
    except CircuitlangError as error:
        raise ContractBroken(f"fmt: its output does not parse: {error}") from None
    if again != formatted:
        raise ContractBroken("fmt: its output is not a fixed point (formatting it again changes it)")
