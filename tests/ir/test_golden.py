"""Golden files: each tests/golden/NAME.circ lowers to exactly tests/golden/NAME.ir.json.

Set UPDATE_GOLDEN=1 to rewrite the expected files after an intended change (then read the diff).
"""

from __future__ import annotations

import os

import pytest

from circuitlang.ir.lower import load_spec
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"


def _portable(text: str) -> str:
    return text.replace(str(ROOT), "<root>")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.circ")), ids=lambda p: p.stem)
def test_ir_matches_golden(path):
    spec = load_spec(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, root=ROOT)  # reuse.circ uses specs/
    actual = _portable(spec.canonical_json(spans=True)) + "\n"
    expected_path = path.with_suffix(".ir.json")
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(actual)
    assert expected_path.exists(), f"run UPDATE_GOLDEN=1 pytest {__file__} to create {expected_path.name}"
    assert actual == expected_path.read_text()
