"""Comparison -> rich tables, Markdown or JSON (`circuitlang compare`). Nothing here prints.

Tables: nodes x specs (each cell the node's role in that spec; under it each spec's nodes,
declared edges and graph edges, in the words of `report/counts.py`), Jaccard of node sets and of
graph-edge sets per pair, the nodes shared by all, and the transfer matrix (faithfulness, then
normalized faithfulness) with a numbered note under it for every cell that has no number.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from circuitlang.report.cells import plain_cells
from circuitlang.report.counts import GRAPH_EDGES_MEANING, counted, size_text
from circuitlang.results.comparison import Comparison, Transfer, TransferCell
from circuitlang.results.estimate import Estimate


@dataclass(frozen=True)
class Grid:
    """One table, independent of how it is drawn."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]


def grids(comparison: Comparison) -> list[Grid]:
    names = [s.label for s in comparison.specs]
    overlap = comparison.overlap
    sizes = [size_text(s.nodes, s.declared_edges, s.graph_edges) for s in comparison.specs]
    out = [
        Grid(
            "nodes x specs (cell: the node's role)",
            ["node", *names],
            [[row.node, *(role or "" for role in row.roles)] for row in overlap.nodes],
            [f"{name}: {size} ({s.path}, model {s.model})" for name, size, s in zip(names, sizes, comparison.specs)] + [GRAPH_EDGES_MEANING],
        ),
        Grid("Jaccard of node sets", ["", *names], _matrix_rows(names, overlap.node_jaccard), []),
        Grid(
            "Jaccard of graph-edge sets (EAP-IG's edges, one per q/k/v channel)",
            ["", *names],
            _matrix_rows(names, overlap.graph_edge_jaccard),
            [
                f"nodes in every spec: {', '.join(overlap.shared_nodes) or 'none'}; "
                f"{counted(overlap.shared_graph_edges, 'graph edge')} in every spec",
                *overlap.notes,
            ],
        ),
    ]
    if comparison.transfer is not None:
        out += _transfer_grids(comparison.transfer, names)
    return out


def _matrix_rows(names: list[str], matrix: list[list[float]]) -> list[list[str]]:
    return [[name, *(f"{value:.2f}" for value in row)] for name, row in zip(names, matrix)]


def _transfer_grids(transfer: Transfer, names: list[str]) -> list[Grid]:
    footnotes: dict[str, int] = {}
    header = ["circuit / prompts", *(c.label for c in transfer.columns)]

    def cell(value: TransferCell, field: str) -> str:
        if value.not_applicable is not None:
            number = footnotes.setdefault(value.not_applicable, len(footnotes) + 1)
            return f"n/a [{number}]"
        return _number(getattr(value, field))

    faithful = [[name, *(cell(c, "faithfulness") for c in row)] for name, row in zip(names, transfer.rows)]
    normalized = [[name, *(cell(c, "normalized_faithfulness") for c in row)] for name, row in zip(names, transfer.rows)]
    faithful += [["F(M)", *(_number(c.f_model) for c in transfer.columns)], ["F(empty)", *(_number(c.f_empty) for c in transfer.columns)]]
    notes = [f"{c.label}: {c.prompts} prompts, metric {c.metric}" for c in transfer.columns if c.f_model is not None]
    notes += [f"[{number}] {reason}" for reason, number in footnotes.items()]
    return [
        Grid(
            "transfer: faithfulness F(C)/F(M) of each circuit (rows) on each spec's prompts, metric and ablation (columns)",
            header,
            faithful,
            notes,
        ),
        Grid("transfer: normalized faithfulness (F(C) - F(empty)) / (F(M) - F(empty))", header, normalized, []),
    ]


def _number(estimate: Estimate | None) -> str:
    return "-" if estimate is None else f"{estimate.value:.3f}"


def tables(comparison: Comparison) -> list[Table | str]:
    """Rich tables, each followed by its notes as plain lines."""
    out: list[Table | str] = []
    for grid in grids(comparison):
        table = Table(title=grid.title)
        for column in grid.header:
            table.add_column(column)
        for row in grid.rows:
            table.add_row(*plain_cells(*row))
        out.append(table)
        out.extend(grid.notes)
    return out


def to_markdown(comparison: Comparison) -> str:
    lines = []
    for grid in grids(comparison):
        lines += [f"**{grid.title}**", "", "| " + " | ".join(grid.header) + " |", "|" + " --- |" * len(grid.header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in grid.rows]
        lines += [""] + [f"{note}  " for note in grid.notes] + ([""] if grid.notes else [])
    return "\n".join(lines).rstrip() + "\n"


def to_json(comparison: Comparison) -> str:
    return comparison.model_dump_json(indent=2) + "\n"
