"""Compare circuits: the overlap of their nodes and edges, and the transfer matrix.

Takes specs (IR) and, for the transfer matrix, per-prompt metric arrays computed by the engine
(F(M) and F(empty) of each spec's prompt sets, F(C) of each circuit on them); gives a
`Comparison` (pydantic; its JSON is `circuitlang compare --format json`). No torch.

- Nodes are matched by name (`9.1`, `mlp 3`); a node's cell is its role in each spec.
- Edges are graph edges: the edges of EAP-IG's graph each circuit keeps, one per q/k/v channel
  (`ir.eap_ig.kept_graph_edges`): a circuit without declared edges keeps every edge among its
  nodes, from the embeddings and into the logits (circuitlang's semantics, docs/engine.md). Each
  spec's declared edges (its `edge` lines) are counted beside them.
- Jaccard(A, B) = |A & B| / |A | B|, and 1 when both are empty.
- Transfer: circuit A on spec B's prompt sets, with B's metric and ablation: faithfulness
  F(C_A) / F(M) and normalized faithfulness (F(C_A) - F(empty)) / (F(M) - F(empty)), each with a
  bootstrap interval drawn with B's settings (the numbers verify reports on the diagonal).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from circuitlang.data.positions import check_positions_in_templates
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import edge_name, kept_graph_edges
from circuitlang.verification.criteria import faithfulness_of
from circuitlang.results.comparison import NodeRow, Overlap, SpecSummary, TransferCell, TransferColumn
from circuitlang.verification.statistics import Resamples


# ---- overlap ----------------------------------------------------------------------------------------


def labels(specs: list[ir.Spec]) -> list[str]:
    names = [spec.name for spec in specs]
    return [name if names.count(name) == 1 else f"{name} ({spec.path})" for name, spec in zip(names, specs)]


def node_sort_key(node: ir.Node) -> tuple[int, int, int]:
    """Residual-stream order: layer, its heads by number, then its MLP."""
    return node.layer or 0, 1 if node.kind == "mlp" else 0, node.head or 0


def kept_edges(spec: ir.Spec) -> frozenset[str]:
    """The spec's graph edges, by their EAP-IG names."""
    return frozenset(edge_name(e) for e in kept_graph_edges(spec))


def jaccard(a: frozenset, b: frozenset) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def overlap(specs: list[ir.Spec]) -> tuple[list[SpecSummary], Overlap]:
    node_sets = [frozenset(m.node for m in spec.circuit.nodes) for spec in specs]
    edge_sets = [kept_edges(spec) for spec in specs]
    roles = [{m.node: m.role for m in spec.circuit.nodes} for spec in specs]
    rows = [NodeRow(node=str(node), roles=[r.get(node) for r in roles]) for node in sorted(frozenset().union(*node_sets), key=node_sort_key)]
    summaries = [
        SpecSummary(
            label=label, path=spec.path, model=spec.model.name, nodes=len(nodes), declared_edges=len(spec.circuit.edges), graph_edges=len(edges)
        )
        for label, spec, nodes, edges in zip(labels(specs), specs, node_sets, edge_sets)
    ]
    shared = frozenset.intersection(*node_sets) if node_sets else frozenset()
    notes = []
    if len({model_key(spec) for spec in specs}) > 1:
        notes.append("the specs are on different models: nodes and edges are matched by name only")
    return summaries, Overlap(
        nodes=rows,
        node_jaccard=_matrix(node_sets),
        graph_edge_jaccard=_matrix(edge_sets),
        shared_nodes=[str(n) for n in sorted(shared, key=node_sort_key)],
        shared_graph_edges=len(frozenset.intersection(*edge_sets)) if edge_sets else 0,
        notes=notes,
    )


def _matrix(sets: list[frozenset]) -> list[list[float]]:
    matrix = [[1.0] * len(sets) for _ in sets]
    for i, j in combinations(range(len(sets)), 2):
        matrix[i][j] = matrix[j][i] = jaccard(sets[i], sets[j])
    return matrix


# ---- transfer ------------------------------------------------------------------------------------------


def model_key(spec: ir.Spec) -> tuple[str, str]:
    return spec.model.source, spec.model.path or spec.model.hub_id or spec.model.name  # an alias is the same model


def transfer_blocker(circuit_spec: ir.Spec, prompts_spec: ir.Spec, prompt_set: str, templates: tuple[str, ...]) -> str | None:
    """Why circuit_spec's circuit cannot run on this prompt set, or None."""
    if model_key(circuit_spec) != model_key(prompts_spec):
        return "different models"
    circuit_only = circuit_spec.model_copy(update={"expectations": ()})
    problems = check_positions_in_templates(circuit_only, {prompt_set: templates})
    return f"{circuit_spec.name} names positions this prompt set lacks: {problems[0].message}" if problems else None


def resamples_for(spec: ir.Spec, n_prompts: int) -> Resamples:
    """The bootstrap resamples verify draws for a prompt set of this spec."""
    settings = spec.settings
    return Resamples.draw(n_prompts, settings.bootstrap, settings.confidence, settings.seed)


def transfer_column(
    index: int, label: str, prompt_set: str, metric: str, model: np.ndarray, empty: np.ndarray, resamples: Resamples
) -> TransferColumn:
    arrays = {"m": model, "e": empty}
    return TransferColumn(
        spec=index,
        prompt_set=prompt_set,
        label=label,
        prompts=len(model),
        metric=metric,
        f_model=resamples.estimate(arrays, lambda a: a["m"]),
        f_empty=resamples.estimate(arrays, lambda a: a["e"]),
    )


def transfer_cell(model: np.ndarray, circuit: np.ndarray, empty: np.ndarray, resamples: Resamples) -> TransferCell:
    """Faithfulness and normalized faithfulness, computed as verify computes them."""
    found = faithfulness_of(model, circuit, empty, resamples)
    return TransferCell(f_circuit=found.f_circuit, faithfulness=found.faithfulness, normalized_faithfulness=found.normalized_faithfulness)


def column_label(spec_label: str, spec: ir.Spec, prompt_set: str) -> str:
    return spec_label if len(spec.prompt_sets) == 1 else f"{spec_label}:{prompt_set}"
