"""The result of `circuitlang patch`: what the sweeps ran on, and one matrix per sweep.

Computed in workflows/patch.py; written as JSON and CSV in report/patch_files.py and drawn in
report/heatmaps.py. Every effect is stated twice, with its unit: `delta` (metric units) and
`normalized` ((F(patched) − F(M)) / (F(M) − F(∅)), a fraction with no unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from circuitlang.ir.stdlib import METRICS
from circuitlang.results.tidy import TABLE_SCHEMAS, patch_rows, tidy

KIND_TITLES = {
    "heads": "activation patching per head: one head ablated at every position",
    "heads_by_position": "activation patching per head and position: one head ablated at one position",
    "mlps_by_position": "activation patching per MLP and position: one MLP ablated at one position",
    "path": "path patching into {receiver}: one sender head at a time",
    "path_with_mlps": "path patching into {receiver}: one sender (a head or an MLP) at a time",
}


@dataclass(frozen=True)
class PatchContext:
    """What the sweeps were run on: shown in every title and stored in the JSON."""

    spec_path: str
    circuit: str
    model: str
    prompt_set: str
    n_prompts: int
    metric: str  # as written, e.g. logit_diff(answer, wrong)
    metric_name: str
    ablation: str  # e.g. "mean of corrupt"
    f_model: float
    f_empty: float
    positions: str  # "named" or "token index"
    left_out_positions: tuple[str, ...] = ()  # named positions missing from some template

    @property
    def unit(self) -> str:
        kind = METRICS.get(self.metric_name)
        return kind.unit if kind else "metric units"

    def delta_label(self) -> str:
        return f"Δ {self.metric_name} ({self.unit})"


@dataclass(frozen=True)
class PatchMatrix:
    kind: str  # heads | heads_by_position | mlps_by_position | path
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    examples: tuple[str, ...]  # an example token per column, or ""
    delta: np.ndarray  # [rows, columns], metric units; NaN where the cell does not apply
    stderr: np.ndarray
    normalized: np.ndarray
    receiver: str | None = None

    @property
    def name(self) -> str:
        """File stem: heads, heads_by_position, mlps_by_position, path_to_logits, path_to_9.1_qkv."""
        if self.kind != "path":
            return self.kind
        receiver = str(self.receiver).replace(" (", "_").replace(", ", "").replace(")", "").replace(" ", "")
        return f"path_to_{receiver}"

    @property
    def title(self) -> str:
        kind = "path_with_mlps" if self.kind == "path" and "mlp" in self.columns else self.kind
        return KIND_TITLES[kind].format(receiver=self.receiver)

    def cells(self) -> list[Cell]:
        """Every cell that applies, named by node and position."""
        out = []
        for i, row in enumerate(self.rows):
            for j, column in enumerate(self.columns):
                if not math.isnan(float(self.delta[i, j])):
                    node, position = self.node_and_position(row, column)
                    out.append(
                        Cell(node, position, self.examples[j], float(self.delta[i, j]), float(self.stderr[i, j]), float(self.normalized[i, j]))
                    )
        return out

    def node_and_position(self, row: str, column: str) -> tuple[str, str]:
        """The node of a cell as a spec writes it ("0.2", "mlp 1") and where it was patched."""
        if self.kind in ("heads", "path"):  # layer x head (and a path sweep's MLP); patched at every position
            layer = row.removeprefix("layer ")
            return (f"mlp {layer}" if column == "mlp" else f"{layer}.{column.removeprefix('head ')}"), "all"
        return row, column


@dataclass(frozen=True)
class Cell:
    node: str  # "0.2", "mlp 1"
    position: str  # a named position, "s4 / end", or "all"
    example: str
    delta: float
    stderr: float
    normalized: float


@dataclass(frozen=True)
class PatchReport:
    context: PatchContext
    matrices: tuple[PatchMatrix, ...]

    def table(self, kind: str = "auto"):
        """Every cell of every sweep as a tidy table (sweep, kind, node, position, row, column, delta,
        stderr, normalized): `node` as a spec writes it ("0.2", "mlp 1"), `row` and `column` as the
        matrix labels them."""
        return tidy(patch_rows(self), kind, TABLE_SCHEMAS["patch"])
