"""The size of a circuit in the words every output uses for it (`check`, `draw`, `compare`).

- nodes: the circuit's heads and MLPs (the embeddings and the logits are not counted);
- declared edges: the spec's `edge` lines, one each whatever its `via` (`4.4 -> 9.1 via k, v` is
  one declared edge); `draw` draws these and `verify` tests these;
- graph edges: the edges of EAP-IG's graph the circuit keeps, one per q, k, v channel into a head
  (`4.4 -> 9.1 via k, v` is two), with the embeddings' edges it keeps (`ir.eap_ig.kept_graph_edges`;
  a circuit without declared edges keeps every edge among its nodes); `compare` and `export`
  count these.
"""

from __future__ import annotations

GRAPH_EDGES_MEANING = (
    "graph edges: EAP-IG's edges the circuit keeps, one per q, k, v channel into a head, "
    "the embeddings' edges included (as compare and export count them)"
)


def counted(number: int, thing: str) -> str:
    """`1 node`, `3 nodes`; `thing` is singular."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


NO_GRAPH_EDGES = "graph edges n/a (a declared edge is not in EAP-IG's graph of this model)"


def size_text(nodes: int, declared_edges: int, graph_edges: int | None) -> str:
    """`13 nodes, 33 declared edges, 70 graph edges`; `graph_edges` is None where EAP-IG's graph
    lacks a declared edge (a head into its own layer's MLP where both read one residual)."""
    graphed = NO_GRAPH_EDGES if graph_edges is None else counted(graph_edges, "graph edge")
    return f"{counted(nodes, 'node')}, {counted(declared_edges, 'declared edge')}, {graphed}"
