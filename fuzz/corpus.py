"""Seed specs and the data files they name.

Seeds are the shipped specs, the error catalogue (tests/errors) and the `circ` blocks of
docs/language.md. Each case runs in a folder laid out like the places the seeds come from, so a
relative `from "data/x.csv"` or `use circuit from "incr_digits.circ"` still finds its file.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ERRORS = ROOT / "tests" / "errors"
LANGUAGE_DOC = ROOT / "docs" / "language.md"

# The rows docs/language.md shows for its `from` examples (the files are not shipped).
DOC_DATA_FILES = {
    "data/sequences.jsonl": '{"s1": 3, "s2": 4, "s3": 5, "s4": 6, "answer": 7, "wrong": 6}\n'
    '{"s1": 10, "s2": 11, "s3": 12, "s4": 13, "answer": 14, "wrong": 13}\n',
    "data/sequences_corrupt.jsonl": '{"s1": 8, "s2": 1, "s3": 4, "s4": 2}\n{"s1": 5, "s2": 9, "s3": 3, "s4": 7}\n',
}


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes


@lru_cache(maxsize=1)
def seeds() -> tuple[Seed, ...]:
    found = [Seed(f"specs/{p.name}", p.read_bytes()) for p in sorted(SPECS.glob("*.circ"))]
    found += [Seed(f"tests/errors/{p.name}", p.read_bytes()) for p in sorted(ERRORS.glob("*.circ"))]
    found += [Seed(f"docs/language.md#{i}", text.encode()) for i, text in enumerate(_doc_blocks())]
    return tuple(found)


def _doc_blocks() -> list[str]:
    text = LANGUAGE_DOC.read_text(encoding="utf-8")
    return [block for block in re.findall(r"```circ\n(.*?)```", text, flags=re.DOTALL) if block.lstrip().startswith(("circuitlang", "#"))]


def lay_out_data_files(folder: Path) -> None:
    """Copy every file a seed may name into `folder`: the shipped specs (for `use`), the error
    catalogue's data/ folder, and the docs' data files."""
    for spec in SPECS.glob("*.circ"):
        shutil.copyfile(spec, folder / spec.name)
    shutil.copytree(ERRORS / "data", folder / "data", dirs_exist_ok=True)
    for name, content in DOC_DATA_FILES.items():
        (folder / name).write_text(content, encoding="utf-8")
