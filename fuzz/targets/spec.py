"""The spec front end: a mutated or generated `.circ` file through `check --no-tokenize`, `plan`
and `fmt` (fuzz/cases.py builds it, fuzz/harness.py runs it). Its case lives in the worker's own
folder, beside copies of every file a seed may name, so that relative paths resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fuzz import harness
from fuzz.cases import build_case
from fuzz.corpus import lay_out_data_files, seeds
from fuzz.targets import Case

NAME = "spec"
COMMANDS = 3  # check, plan, fmt
SPEC_NAME = "spec.circ"


def prepare(folder: Path) -> None:
    lay_out_data_files(folder)
    spec = folder / SPEC_NAME
    spec.write_bytes(seeds()[0].data)
    harness.run_spec(spec)  # builds the parser before the alarm and the limit apply


def build(seed: int, index: int) -> Case:
    return Case(NAME, {SPEC_NAME: build_case(seed, index)})


def lay_out(folder: Path, case: Case) -> None:
    (folder / SPEC_NAME).write_bytes(case.files[SPEC_NAME])


def run(folder: Path, case: Case, start_clock: Callable[[], None]) -> str:
    return harness.run_spec(folder / SPEC_NAME, start_clock)
