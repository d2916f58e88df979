"""Patching sweeps -> numbers: a JSON document (units, definitions, full matrices), one CSV per
sweep, and a rich table of the largest effects. Nothing here prints; the pictures are in
report.heatmaps.

Every effect is stated twice, with its unit: `delta`, the mean over prompts of F(patched) − F(M)
in the metric's own units (logits for a logit difference), and `normalized`,
(F(patched) − F(M)) / (F(M) − F(∅)), a fraction with no unit (−1: as bad as ablating everything).
Nothing is rescaled (no percentages): a number reads the same in the JSON, the CSV, the table and
on the colour bar.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
from rich.table import Table

from circuitlang.report.cells import plain_cells
from circuitlang.results.patch_report import PatchContext, PatchMatrix

NORMALIZED_UNIT = "fraction of F(M) − F(∅)"


def patched_from(kind: str, context: PatchContext) -> str:
    if kind == "path":
        return "the paired corrupt prompt (path patching), every other head frozen to its clean output"
    return f"the spec's ablation value ({context.ablation}), everything else clean"


def to_json(context: PatchContext, matrices: list[PatchMatrix], seconds: float) -> str:
    document = {
        "spec": context.spec_path,
        "circuit": context.circuit,
        "model": context.model,
        "prompt_set": context.prompt_set,
        "n_prompts": context.n_prompts,
        "metric": context.metric,
        "unit": context.unit,
        "ablation": context.ablation,
        "positions": context.positions,
        "left_out_positions": list(context.left_out_positions),
        "f_model": context.f_model,
        "f_empty": context.f_empty,
        "definitions": {
            "delta": f"mean over prompts of F(patched) − F(M), in {context.unit}",
            "stderr": f"standard error of delta over prompts, in {context.unit}",
            "normalized": "(F(patched) − F(M)) / (F(M) − F(∅)), no unit: −1 is as bad as ablating everything",
            "all": "the column 'all' ablates the node at every position",
            "null": "a cell that does not apply (path patching: a head with no direct path into the receiver, "
            "in the receiver's layer or later; an MLP receiver reads its own layer's heads)",
        },
        "seconds": round(seconds, 2),
        "sweeps": [_matrix_json(m, context) for m in matrices],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _matrix_json(matrix: PatchMatrix, context: PatchContext) -> dict[str, object]:
    return {
        "name": matrix.name,
        "kind": matrix.kind,
        "title": matrix.title,
        "receiver": matrix.receiver,
        "patched_from": patched_from(matrix.kind, context),
        "rows": list(matrix.rows),
        "columns": list(matrix.columns),
        "example_tokens": list(matrix.examples),
        "delta": _nested(matrix.delta),
        "stderr": _nested(matrix.stderr),
        "normalized": _nested(matrix.normalized),
    }


def _nested(values: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(float(v)) else float(v) for v in row] for row in values]


def to_csv(matrix: PatchMatrix, context: PatchContext) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["node", "position", "receiver", "example_token", "delta", "stderr", "normalized", "delta_unit"])
    for cell in matrix.cells():
        writer.writerow(
            [
                cell.node,
                cell.position,
                matrix.receiver or "",
                cell.example,
                f"{cell.delta:.6g}",
                f"{cell.stderr:.6g}",
                f"{cell.normalized:.6g}",
                context.unit,
            ]
        )
    return stream.getvalue()


def top_effects(context: PatchContext, matrices: list[PatchMatrix], shown: int = 10) -> Table:
    """The `shown` cells with the largest |delta| over every sweep (a head ablated everywhere is
    listed once, though both per-head sweeps hold it)."""
    has_heads = any(m.kind == "heads" for m in matrices)
    cells = [(m, cell) for m in matrices for cell in m.cells() if not (has_heads and m.kind == "heads_by_position" and cell.position == "all")]
    cells.sort(key=lambda item: -abs(item[1].delta))
    table = Table(
        title=f"largest effects on {context.prompt_set} ({context.n_prompts} prompts): "
        f"F(M) = {context.f_model:.4g}, F(∅) = {context.f_empty:.4g} {context.unit}"
    )
    for column in ("sweep", "node", "position", "into"):
        table.add_column(column)
    for column in (context.delta_label(), "± s.e.", "normalized"):
        table.add_column(column, justify="right")
    for matrix, cell in cells[:shown]:
        table.add_row(
            *plain_cells(
                matrix.kind,
                cell.node,
                cell.position,
                matrix.receiver or "",
                f"{cell.delta:+.4g}",
                f"{cell.stderr:.2g}",
                f"{cell.normalized:+.3g}",
            )
        )
    return table
