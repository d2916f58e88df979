"""What the fuzzer feeds, target by target (docs/fuzzing.md "Targets").

A target builds a case from (seed, index) alone — a set of files for the case folder, some of
them possibly not regular files (a folder, a FIFO, a link, a large sparse file) — and runs it,
returning "ok" (accepted) or "error" (refused as the contract allows); anything else it raises is
a finding. Each target module has NAME, COMMANDS (how many budgeted steps a case runs: the
parent's hard deadline), `prepare(folder)` (once per worker, before the budgets apply), `build(seed,
index)` and `run(folder, case, start_clock)`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

CASE_FOLDER = "case"  # under the worker's folder: emptied before each case of the file targets


@dataclass(frozen=True)
class Case:
    target: str
    files: dict[str, bytes]  # path in the case folder -> content
    # path -> "dir", "fifo", "link:PATH" (a link to PATH, relative to the case folder) or
    # "sparse:N" (N bytes that take no disk): what a path may be besides a regular file
    kinds: dict[str, str] = field(default_factory=dict)


def targets() -> dict[str, ModuleType]:
    """Imported on demand: the spec target's workers never import the others' libraries."""
    from fuzz.targets import cache, data, graph, model, spec

    return {module.NAME: module for module in (spec, data, graph, model, cache)}


TARGET_NAMES = ("spec", "data", "graph", "model", "cache")


def target(name: str) -> ModuleType:
    return targets()[name]


def build(name: str, seed: int, index: int) -> Case:
    return target(name).build(seed, index)


def write_case(folder: Path, case: Case) -> None:
    """Lay the case's files out in `folder`, emptied first (a previous case may have left a FIFO
    or a read-only folder behind)."""
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for name, kind in case.kinds.items():
        make_special(folder, folder / name, kind)


def make_special(folder: Path, path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    if kind == "dir":
        path.mkdir(exist_ok=True)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith("link:"):
        path.symlink_to(folder / kind[len("link:") :])
    elif kind.startswith("sparse:"):
        with open(path, "wb") as file:
            file.truncate(int(kind[len("sparse:") :]))
    else:
        raise ValueError(f"unknown kind of file: {kind}")
