"""Attention and lens results -> numbers: tidy tables as CSV text, and the short rich tables the
commands print. Nothing here prints; the pictures are in report.attention_plot and report.lens_plot.
Numbers are the result's own, unscaled: a value reads the same in the CSV, the table and on the
colour bar.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.markup import escape
from rich.table import Table

from circuitlang.report.cells import plain_cells
from circuitlang.results.lens import AttentionResult, LensResult, piece_kind

SHOWN_KEYS = 3  # the keys a query attends to most, listed per head
SHOWN_PIECES = 10


def table_csv(rows: list[dict[str, Any]]) -> str:
    """Tidy rows (all with the same columns) as CSV; floats to 6 significant digits."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    if rows:
        writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow([f"{value:.6g}" if isinstance(value, float) else value for value in row.values()])
    return stream.getvalue()


def attention_summary(result: AttentionResult) -> Table:
    """Per head, where the last position (the metric's readout, `end`) attends most."""
    table = Table(title=escape(f"attention from {result.positions[-1]} on {result.context.prompt_set}: {result.described}"))
    table.add_column("head")
    table.add_column(escape(f"keys {result.positions[-1]} attends to most (attention)"))
    for found in result.patterns:
        last = found.pattern[-1]
        order = sorted(range(len(last)), key=lambda k: -float(last[k]))[:SHOWN_KEYS]
        table.add_row(*plain_cells(found.head, ", ".join(f"{result.positions[k]} {float(last[k]):.2f}" for k in order)))
    return table


def lens_summary(result: LensResult) -> Table:
    """The lens at the readout position after each stage."""
    column = result.readout
    table = Table(title=escape(f"logit lens at {result.positions[column]} on {result.context.prompt_set} ({result.context.n_prompts} prompts)"))
    table.add_column("residual stream after")
    table.add_column(escape(f"{result.context.metric} ({result.context.unit})"), justify="right")
    table.add_column("± s.e.", justify="right")
    for s, stage in enumerate(result.stages):
        table.add_row(*plain_cells(stage, f"{result.lens[s, column]:+.4g}", f"{result.lens_stderr[s, column]:.2g}"))
    return table


def direct_summary(result: LensResult) -> Table | None:
    """The largest direct contributions at the readout position, and their total."""
    direct, stderr = result.direct, result.direct_stderr
    if direct is None or stderr is None:
        return None
    column = result.readout
    order = sorted(range(len(result.pieces)), key=lambda i: -abs(float(direct[i, column])))
    total = float(direct[:, column].sum())
    table = Table(
        title=escape(
            f"largest direct contributions at {result.positions[column]} along {result.direction}: "
            f"all {len(result.pieces)} add up to {total:.4g} {result.context.unit}"
        )
    )
    for name in ("piece", "kind"):
        table.add_column(name)
    table.add_column(f"direct ({result.context.unit})", justify="right")
    table.add_column("± s.e.", justify="right")
    for i in order[:SHOWN_PIECES]:
        piece = result.pieces[i]
        table.add_row(*plain_cells(piece, piece_kind(piece), f"{direct[i, column]:+.4g}", f"{stderr[i, column]:.2g}"))
    return table
