"""Errors for every stage, each pointing at the user's source.

`Span` is where something came from in a `.circ` file; it travels from the parser into the IR so
that a semantic error found late still points at the line that caused it. Every user-facing error
is a `CircuitlangError` with a message (what is wrong), an optional span and a hint (one sentence
on how to fix it). Stages collect several errors and raise them together as `SpecErrors`.

Commands raise these errors and never choose an exit code: `exit_code` below is the one map from
errors to codes, and the command line's entry point (`circuitlang.cli.main`) the one place that
applies it, or maps a command's `Verdict` to 0 or 1.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Iterable, Sequence

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A region of a source file: 1-based line and column, end exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class CircuitlangError(Exception):
    """Root of every error circuitlang reports to a user (never a bare traceback)."""

    stage = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"

    def to_dict(self) -> dict[str, object]:
        span = self.span
        return {
            "stage": self.stage,
            "message": self.message,
            "hint": self.hint,
            "path": span.path if span else None,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "end_line": span.end_line if span else None,
            "end_column": span.end_column if span else None,
        }


class SyntaxErrorInSpec(CircuitlangError):
    """The text does not follow the grammar."""

    stage = "syntax"


class SpecError(CircuitlangError):
    """The spec parses but means something impossible (unknown slot, layer out of range...)."""

    stage = "semantic"


class DataError(CircuitlangError):
    """Prompt expansion failed for a particular prompt (bad index, missing file column...)."""

    stage = "data"


class LimitError(CircuitlangError):
    """The spec asks for more than a stated limit (ir.stdlib.LIMITS); checked before the work is
    allocated, and the hint names the setting that raises the limit."""

    stage = "limit"


class ModelError(CircuitlangError):
    """A model could not be found, loaded or described."""

    stage = "model"


class CommandError(CircuitlangError):
    """What a command refuses or fails to do, said in the command's own words: the message is the
    whole text shown, without a stage word or a source line."""

    stage = "command"


class UsageError(CommandError):
    """The command line asks for what the command cannot do: options that do not go together, a
    value that names nothing in the spec (`--prompts`), an output format the command lacks."""

    stage = "usage"


class InputError(CommandError):
    """A file the command reads, or the spec's task, rules out what was asked: a graph file that
    is not JSON or scores nothing, a search or sweep that these prompts cannot support."""

    stage = "input"


class OutputError(CommandError):
    """A file the command must write cannot be written (a directory, a read-only folder, a full disk)."""

    stage = "output"


class ClusterError(CommandError):
    """A Ray cluster could not be reached, or lost the work it was given (`verify --ray`)."""

    stage = "cluster"


class MissingExtra(CommandError):
    """A library that one of circuitlang's optional extras installs is not installed."""

    stage = "install"


MAX_ERRORS = 100  # errors kept from one pass over a file
CARET_CONTEXT = 120  # characters of a long source line shown on each side of the error


class SpecErrors(CircuitlangError):
    """Several errors found in one pass, reported together in source order."""

    stage = "errors"

    def __init__(self, errors: Sequence[CircuitlangError]) -> None:
        ordered = sorted(errors, key=_error_sort_key)
        if len(ordered) > MAX_ERRORS:  # a mutated line can make thousands; the first ones say what to fix
            rest = ordered[MAX_ERRORS]
            kind = SpecError if isinstance(rest, SpecErrors) else type(rest)
            ordered = ordered[:MAX_ERRORS] + [kind(f"... and {len(ordered) - MAX_ERRORS} more errors", rest.span, "fix the errors above first")]
        self.errors: tuple[CircuitlangError, ...] = tuple(ordered)
        first = ordered[0] if ordered else None
        message = f"{len(ordered)} error(s); first: {first.message}" if first else "no errors"
        super().__init__(message, first.span if first else None, first.hint if first else None)

    def __reduce__(self) -> tuple:  # pickled from its errors (a Ray worker's raise reaches the driver so)
        return (type(self), (self.errors,))


def _error_sort_key(error: CircuitlangError) -> tuple[str, int, int]:
    span = error.span
    return (span.path, span.line, span.column) if span else ("", 0, 0)


def flatten(errors: Iterable[CircuitlangError]) -> list[CircuitlangError]:
    """Expand any `SpecErrors` into its members, keeping source order."""
    flat: list[CircuitlangError] = []
    for error in errors:
        flat.extend(error.errors if isinstance(error, SpecErrors) else (error,))
    return sorted(flat, key=_error_sort_key)


class Reported(CircuitlangError):
    """Errors the command has already shown where its output goes (check's report, plan's stdout,
    verify's report files) or beside output it still produced: the entry point maps them to the
    exit code and says nothing more."""

    stage = "reported"

    def __init__(self, errors: Sequence[CircuitlangError]) -> None:
        self.errors: tuple[CircuitlangError, ...] = tuple(flatten(errors))
        super().__init__(f"{len(self.errors)} error(s), already shown")

    def __reduce__(self) -> tuple:
        return (type(self), (self.errors,))


# Exit codes, as the README states them: 0 ok, 1 a claim failed, 2 the spec, its data or the command
# line must change, 3 a model or the machine failed. 130 and 141 end the process as SIGINT and
# SIGPIPE would (128 + the signal's number), as shells expect.
EXIT_OK, EXIT_CLAIM_FAILED, EXIT_SPEC_ERROR, EXIT_RUNTIME_ERROR = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 128 + 2, 128 + 13

# The errors a model or the machine caused (exit 3); every other error is for the spec, its data or
# the command line to fix (exit 2).
RUNTIME_ERRORS: tuple[type[CircuitlangError], ...] = (ModelError, OutputError, MissingExtra, ClusterError)


class Verdict(Enum):
    """What a command that judges found (verify's claims, fmt --check, discover's target): an
    answer, not an error. The entry point maps PASSED to 0 and FAILED to 1."""

    PASSED = "passed"
    FAILED = "failed"


def exit_code(errors: Iterable[CircuitlangError]) -> int:
    """The one map from errors to an exit code: 3 when any is a runtime error (a model that is there
    but cannot be read, downloaded or loaded, found while reading the spec or while loading the
    weights; an output that cannot be written; a missing extra), else 2 (the spec, its data or the
    command line must change; a model name that names nothing is a spec error)."""
    found = flatten(errors)
    found += [shown for error in found if isinstance(error, Reported) for shown in error.errors]
    return EXIT_RUNTIME_ERROR if any(isinstance(e, RUNTIME_ERRORS) for e in found) else EXIT_SPEC_ERROR


def raise_if_any(errors: Sequence[CircuitlangError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise SpecErrors(errors)


def render_diagnostic(error: CircuitlangError, source: str | None = None) -> str:
    """Format one error like a compiler: location, message, the source line with a caret, hint."""
    lines = [f"{error.span}: {error.stage} error: {error.message}" if error.span else f"{error.stage} error: {error.message}"]
    if error.span is not None:
        text = source if source is not None else _read_quietly(error.span.path)
        lines.extend(_caret_lines(error.span, text))
    if error.hint:
        lines.append(f"  hint: {error.hint}")
    return "\n".join(lines)


def _caret_lines(span: Span, text: str | None) -> list[str]:
    if text is None:
        return []
    source_lines = text.splitlines()
    if not 1 <= span.line <= len(source_lines):
        return []
    line = source_lines[span.line - 1]
    width = span.end_column - span.column if span.end_line == span.line else len(line) - span.column + 1
    start = max(0, span.column - 1 - CARET_CONTEXT)  # a long line is shown around the error, not whole
    shown = line[start : span.column - 1 + min(width, CARET_CONTEXT) + CARET_CONTEXT]
    gutter = f"{span.line:>4} | " + ("..." if start else "")
    return [gutter + shown, " " * len(gutter) + " " * (span.column - 1 - start) + "^" * max(1, min(width, CARET_CONTEXT))]


def _read_quietly(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8-sig", errors="replace")  # a bad byte is shown, not fatal
    except (OSError, ValueError):
        return None
