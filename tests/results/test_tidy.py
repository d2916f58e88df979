"""Every tidy table has its documented columns, rows or not."""

from __future__ import annotations

import numpy as np
import pytest

from circuitlang.results.tidy import REPORT_TABLES, TABLE_SCHEMAS
from tests.verification.test_edges import micro_report  # noqa: F401  (fixture)


@pytest.mark.parametrize("name", REPORT_TABLES)
def test_a_tables_rows_have_exactly_its_schemas_columns(micro_report, name):  # noqa: F811
    records = micro_report.table(name, kind="records")
    columns = [column for column, _ in TABLE_SCHEMAS[name]]
    assert all(list(row) == columns for row in records)
    assert list(micro_report.table(name).columns) == columns


@pytest.mark.parametrize("kind", ["pandas", "numpy"])
def test_a_table_with_no_rows_still_has_its_columns(micro_report, kind):  # noqa: F811
    """A report whose audit did not run: its audit table is empty, with the documented columns
    (it was a frame with no columns, which no filter could touch)."""
    without_audit = micro_report.model_copy(
        update={"prompt_sets": [prompt_set.model_copy(update={"audit": None}) for prompt_set in micro_report.prompt_sets]}
    )
    table = without_audit.table("audit", kind=kind)
    columns = [column for column, _ in TABLE_SCHEMAS["audit"]]
    assert len(table) == 0
    if kind == "pandas":
        assert list(table.columns) == columns and table["effect"].dtype == np.float64
        assert len(table[table["effect"] > 0.1]) == 0  # filters as a table with rows would
    else:
        assert table.dtype.names == tuple(columns) and table.dtype["effect"] == np.float64


def test_the_api_document_lists_every_column_of_every_table():
    import re

    from tests.conftest import ROOT

    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", (ROOT / "docs" / "api.md").read_text(), re.MULTILINE))
    for name in REPORT_TABLES:
        documented = set(re.findall(r"\w+", rows[name]))
        named = {column for column, _ in TABLE_SCHEMAS[name] if not column.endswith(("_low", "_high"))} - {"prompt_set"}
        assert named <= documented, f"{name}: {sorted(named - documented)} not in docs/api.md"


def test_patching_tables_name_nodes_as_specs_write_them():
    """A layer x head sweep's cell (row "layer 0", column "head 2") is the node "0.2"; a
    by-position sweep's keeps its row ("mlp 1") and names the position."""
    from circuitlang.results.patch_report import PatchMatrix, PatchReport

    def matrix(kind: str, rows: tuple[str, ...], columns: tuple[str, ...]) -> PatchMatrix:
        values = np.arange(len(rows) * len(columns), dtype=float).reshape(len(rows), len(columns))
        return PatchMatrix(kind, rows, columns, ("",) * len(columns), values, values / 10, values / 2)

    report = PatchReport(
        context=None,  # type: ignore[arg-type]  (the table reads the matrices only)
        matrices=(
            matrix("heads", ("layer 0", "layer 1"), ("head 0", "head 1", "head 2")),
            matrix("mlps_by_position", ("mlp 0", "mlp 1"), ("s4 / end",)),
        ),
    )
    rows = report.table(kind="records")
    assert [row["node"] for row in rows] == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2", "mlp 0", "mlp 1"]
    assert [row["position"] for row in rows] == ["all"] * 6 + ["s4 / end"] * 2
    assert rows[2]["delta"] == 2.0 and (rows[2]["row"], rows[2]["column"]) == ("layer 0", "head 2")
    assert list(report.table().columns) == [column for column, _ in TABLE_SCHEMAS["patch"]]
    cells = {(cell.node, cell.position): cell.delta for m in report.matrices for cell in m.cells()}
    assert all(cells[(row["node"], row["position"])] == row["delta"] for row in rows)  # the same names as the picture's cells
