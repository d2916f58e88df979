"""docs/lens.md runs: its Python block on the shipped organism, and its commands are the ones that
made the pictures it shows."""

from __future__ import annotations

import os

from tests.conftest import ROOT
from tests.doc_blocks import run_python_blocks

LENS_DOC = ROOT / "docs" / "lens.md"


def test_the_python_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example names specs from the repository's root
    namespace = run_python_blocks(LENS_DOC)
    assert namespace["svg"].startswith("<?xml") and namespace["png"].startswith(b"\x89PNG")
    assert len(namespace["table"]) == 2 * 5 * 5 and namespace["one"].prompt == 3


def test_every_picture_the_document_shows_is_made_by_its_commands():
    text = LENS_DOC.read_text()
    shown = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    made = {"lens.png", "direct.png"}
    attention = "circuitlang attention specs/organism_incr_digits.circ --heads 0.0 0.2 0.4 -o docs/pictures/lens_incr_digits/"
    assert attention in text and "circuitlang lens specs/organism_incr_digits.circ -o docs/pictures/lens_incr_digits/" in text
    made |= {f"attention_{head}.png" for head in ("0.0", "0.2", "0.4")}
    assert len(shown) == 4
    for picture in shown:
        folder, name = picture.rsplit("/", 1)
        assert folder == "pictures/lens_incr_digits" and name in made and os.path.exists(ROOT / "docs" / picture), picture
