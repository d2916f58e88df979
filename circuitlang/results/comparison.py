"""The comparison of circuits (`circuitlang compare`): node and edge overlap, the transfer matrix.

Computed in verification/cross_spec.py (overlap) and workflows/transfer.py (the transfer matrix);
rendered in report/comparison_tables.py. Its JSON is `circuitlang compare --format json`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from circuitlang.results.estimate import Estimate


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpecSummary(Frozen):
    label: str  # the spec's circuit name (with its path when two specs share it)
    path: str
    model: str
    nodes: int  # heads and MLPs
    declared_edges: int  # the spec's `edge` lines
    graph_edges: int  # EAP-IG's edges the circuit keeps, one per channel (see the module docstring)


class NodeRow(Frozen):
    node: str
    roles: list[str | None]  # per spec: the node's role there, or None


class Overlap(Frozen):
    nodes: list[NodeRow]  # every node of any spec, in layer order (heads, then the layer's MLP)
    node_jaccard: list[list[float]]  # [spec][spec]
    graph_edge_jaccard: list[list[float]]
    shared_nodes: list[str]  # in every spec
    shared_graph_edges: int  # graph edges in every spec
    notes: list[str]


class TransferColumn(Frozen):
    spec: int  # index into Comparison.specs
    prompt_set: str
    label: str
    prompts: int = 0
    metric: str = ""
    f_model: Estimate | None = None
    f_empty: Estimate | None = None


class TransferCell(Frozen):
    f_circuit: Estimate | None = None
    faithfulness: Estimate | None = None
    normalized_faithfulness: Estimate | None = None
    not_applicable: str | None = None  # why there is no number ("different models", a missing position...)


class Transfer(Frozen):
    columns: list[TransferColumn]
    rows: list[list[TransferCell]]  # [circuit spec][column]


class Comparison(Frozen):
    specs: list[SpecSummary]
    overlap: Overlap
    transfer: Transfer | None  # None with --no-transfer
