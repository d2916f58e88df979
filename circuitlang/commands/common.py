"""What every command needs: load a spec or print its errors, and open a run on a device."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.data.datasets import expand_all
from circuitlang.errors import CircuitlangError, flatten, render_diagnostic
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec

if TYPE_CHECKING:  # torch is imported only by commands that run a model
    from circuitlang.api import Run

EXIT_OK, EXIT_CLAIM_FAILED, EXIT_SPEC_ERROR, EXIT_RUNTIME_ERROR = 0, 1, 2, 3


class CommandFailed(Exception):
    """Raised after the problem was printed; carries the exit code."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def print_errors(error: CircuitlangError) -> None:
    for problem in flatten([error]):
        print(render_diagnostic(problem), file=sys.stderr)


def load_checked(path: Path) -> ir.Spec:
    """The spec, validated and with its prompts expanded once; errors printed -> CommandFailed(2)."""
    try:
        spec = load_spec(path)
        expand_all(spec)
    except CircuitlangError as error:
        print_errors(error)
        raise CommandFailed(EXIT_SPEC_ERROR) from None
    return spec


def open_checked(spec: ir.Spec, device: str = "cpu", threads: int = 0) -> "Run":
    """Load the model and bind the prompts; binding errors -> 2, model errors -> 3 (printed)."""
    from circuitlang.api import open_run
    from circuitlang.errors import DataError

    try:
        run = open_run(spec, device=device)
    except DataError as error:
        print_errors(error)
        raise CommandFailed(EXIT_SPEC_ERROR) from None
    except CircuitlangError as error:
        print_errors(error)
        raise CommandFailed(EXIT_RUNTIME_ERROR) from None
    set_threads(run, threads)
    return run


def set_threads(run: "Run", threads: int) -> None:
    import torch

    parameters = sum(p.numel() for p in run.model.bridge.original_model.parameters())
    if threads > 0:
        torch.set_num_threads(threads)
    elif parameters < 10_000_000 and run.model.device.type == "cpu":
        torch.set_num_threads(1)  # measured: 8 s instead of 55 s for the organism on a busy 2-core machine
