"""Prompt rows from JSONL and CSV files (circuitlang/data/files.py)."""

from __future__ import annotations

import codecs

import pytest

from circuitlang.data.datasets import expand_all
from circuitlang.ir.lower import load_spec

SPEC = """circuitlang 1
circuit c on "gpt2"
prompts {{ template "{{a}} to {{b}}"; from "rows.{suffix}"; answer = b + 1; wrong = b }}
metric logit_diff(answer, wrong)
ablate zero
"""
ROWS = {"csv": "a,b\n1,2\n3,4\n", "jsonl": '{"a": 1, "b": 2}\n{"a": 3, "b": 4}\n'}


@pytest.mark.parametrize("suffix", sorted(ROWS))
def test_a_data_file_may_start_with_a_byte_order_mark(tmp_path, suffix):
    """Found while fuzzing data files (docs/fuzzing.md): a CSV saved as Excel's "CSV UTF-8" starts
    with a BOM, which became part of the first column's name ("slot '{a}' has no value"); a JSONL
    file with one was "not JSON". A data file is read as a spec is: one leading BOM is dropped."""
    (tmp_path / f"rows.{suffix}").write_bytes(codecs.BOM_UTF8 + ROWS[suffix].encode())
    (tmp_path / "spec.circ").write_text(SPEC.format(suffix=suffix), encoding="utf-8")
    (dataset,) = expand_all(load_spec(tmp_path / "spec.circ"))
    assert [p.text for p in dataset.clean] == ["1 to 2", "3 to 4"]
