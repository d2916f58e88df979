"""Shared helpers for the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.dsl.parser import parse
from circuitlang.errors import CircuitlangError, flatten
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec, lower

ROOT = Path(__file__).resolve().parent.parent

# The tests run many tiny tensor operations, where a second thread only adds synchronization (and,
# on a busy 2-core machine, long waits); speed is measured in benchmarks/, not here.
torch.set_num_threads(1)
SPECS = ROOT / "specs"


def lower_text(text: str, path: str = "test.circ") -> ir.Spec:
    return lower(parse(text, path))


def errors_of(path: Path) -> list[CircuitlangError]:
    """Every error `circuitlang check` would report for a file (parse, lower, expand)."""
    try:
        expand_all(load_spec(path))
    except CircuitlangError as error:
        return flatten([error])
    return []


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write spec text (and optional side files) into a temporary folder; return its path."""
    def write(text: str, name: str = "spec.circ", **files: str) -> Path:
        for file_name, content in files.items():
            (tmp_path / file_name.replace("__", ".")).write_text(content, encoding="utf-8")
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


def datasets_of(text: str, tmp_path: Path) -> tuple[Dataset, ...]:
    path = tmp_path / "spec.circ"
    path.write_text(text, encoding="utf-8")
    return expand_all(load_spec(path))
