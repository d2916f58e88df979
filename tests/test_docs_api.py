"""docs/api.md runs: every Python block, in order, in one namespace, on the shipped organism."""

from __future__ import annotations

import numpy as np
import pytest

from circuitlang.results.tidy import REPORT_TABLES, structured, tidy
from tests.conftest import ROOT
from tests.doc_blocks import blocks, run_python_blocks

API_DOC = ROOT / "docs" / "api.md"


@pytest.fixture(scope="module")
def namespace():
    import os

    here = os.getcwd()
    os.chdir(ROOT)  # the examples name specs from the repository's root
    try:
        yield run_python_blocks(API_DOC)
    finally:
        os.chdir(here)


def test_the_api_document_has_examples():
    assert len(blocks(API_DOC, "python")) >= 6


@pytest.mark.slow
def test_every_example_runs(namespace):
    assert namespace["report"].passed


@pytest.mark.slow
def test_top_level_verify_takes_a_path_a_spec_or_a_run(namespace):
    import circuitlang

    from_spec = circuitlang.verify(namespace["spec"])
    from_run = circuitlang.verify(namespace["run"])
    first = namespace["report"].table("faithfulness", kind="records")
    for report in (from_spec, from_run):
        assert report.table("faithfulness", kind="records") == first  # the same numbers, however given
    with pytest.raises(TypeError, match="path to a .circ file, a Spec or a Run"):
        circuitlang.verify(42)


@pytest.mark.slow
def test_every_table_is_tidy_and_matches_the_report(namespace):
    report = namespace["report"]
    for name in REPORT_TABLES:
        records = report.table(name, kind="records")
        frame = report.table(name)
        assert len(frame) == len(records)
        for row in records:
            estimates = [column for column in row if f"{column}_low" in row]
            for column in estimates:  # value inside its interval, unless not computed
                value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
                assert np.isnan(value) or min(low, high) <= value <= max(low, high)
    minimality = report.table("minimality", kind="records")
    assert [row["node"] for row in minimality] == [row.node for row in report.prompt_sets[0].minimality]
    assert [row["minimality"] for row in minimality] == [row.score.value for row in report.prompt_sets[0].minimality]


@pytest.mark.slow
def test_an_unknown_table_is_named(namespace):
    with pytest.raises(ValueError, match="no table 'minimal'.*minimality"):
        namespace["report"].table("minimal")


@pytest.mark.slow
def test_without_pandas_a_table_is_a_numpy_structured_array(namespace, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    table = namespace["report"].table("edges")
    assert isinstance(table, np.ndarray) and table.dtype.names[:2] == ("prompt_set", "edge")
    with pytest.raises(ImportError, match="pip install pandas"):
        namespace["report"].table("edges", kind="pandas")


def test_structured_arrays_keep_types():
    rows = [{"name": "0.1", "count": 3, "value": 0.5, "needed": True}, {"name": "mlp 2", "count": 4, "value": float("nan"), "needed": False}]
    table = structured(rows)
    assert table.dtype["count"] == np.int64 and table.dtype["value"] == np.float64 and table.dtype["needed"] == np.bool_
    assert table["name"].tolist() == ["0.1", "mlp 2"]
    with pytest.raises(ValueError, match="kind='frame'"):
        tidy(rows, "frame")


def test_a_failing_block_names_its_line(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2\n```\n")
    with pytest.raises(AssertionError) as failure:
        run_python_blocks(doc)
    assert failure.traceback[-1].lineno + 1 == 10  # the assert's line in the document
