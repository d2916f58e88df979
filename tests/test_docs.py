"""Every complete example in docs/language.md passes `circuitlang check` (self-contained ones)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, errors_of

LANGUAGE = (ROOT / "docs" / "language.md").read_text()
EXAMPLES = [
    block
    for block in re.findall(r"```circ\n(.*?)```", LANGUAGE, flags=re.S)
    if block.startswith("circuitlang 1") and not re.search(r'^\s*(use |from ")|file\(', block, flags=re.M)
]


def test_the_reference_has_examples():
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_language_reference_example_checks(tmp_path, number):
    path = tmp_path / "example.circ"
    path.write_text(EXAMPLES[number])
    assert [str(e) for e in errors_of(path)] == []
