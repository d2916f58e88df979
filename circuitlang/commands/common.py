"""What every command needs: load a spec or print its errors, and open a run on a device."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.data.datasets import expand_all
from circuitlang.errors import CircuitlangError, flatten, render_diagnostic
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec

if TYPE_CHECKING:  # torch is imported only by commands that run a model
    from circuitlang.engine.session import Session

EXIT_OK, EXIT_CLAIM_FAILED, EXIT_SPEC_ERROR, EXIT_RUNTIME_ERROR = 0, 1, 2, 3


class CommandFailed(Exception):
    """Raised after the problem was printed; carries the exit code."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def print_errors(error: CircuitlangError) -> None:
    for problem in flatten([error]):
        print(render_diagnostic(problem), file=sys.stderr)


ROOT_HELP = ("the project root: every file the spec names (data, `use`, model folder) must lie inside it "
             "(default: the spec's folder)")


def add_root_argument(parser) -> None:  # argparse.ArgumentParser
    parser.add_argument("--root", type=Path, default=None, metavar="DIR", help=ROOT_HELP)


def load_checked(path: Path, root: Path | None = None) -> ir.Spec:
    """The spec, validated and with its prompts expanded once; errors printed -> CommandFailed(2)."""
    try:
        spec = load_spec(path, root)
        expand_all(spec)
    except CircuitlangError as error:
        print_errors(error)
        raise CommandFailed(EXIT_SPEC_ERROR) from None
    return spec


def open_checked(spec: ir.Spec, device: str = "cpu", threads: int = 0) -> "Session":
    """Load the model and bind the prompts; binding errors -> 2, model errors -> 3 (printed)."""
    from circuitlang.engine.session import open_session
    from circuitlang.errors import DataError

    try:
        session = open_session(spec, device=device)
    except DataError as error:
        print_errors(error)
        raise CommandFailed(EXIT_SPEC_ERROR) from None
    except CircuitlangError as error:
        print_errors(error)
        raise CommandFailed(EXIT_RUNTIME_ERROR) from None
    set_threads(session, threads)
    return session


def set_threads(session: "Session", threads: int) -> None:
    from circuitlang.engine.session import set_threads as apply

    apply(session, threads)


def why_unwritable(path: Path | None) -> str:
    """Why `path` cannot take a report, or "" (the folder is created on write when missing)."""
    if path is None:
        return ""
    if path.is_dir():
        return "it is a directory"
    folder = next((p for p in path.resolve().parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK)):
        return f"{folder} is not a writable folder"
    return ""
