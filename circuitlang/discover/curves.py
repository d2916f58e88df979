"""Faithfulness curves: circuits of growing size taken from edge scores, evaluated exactly.

Any edge scores (EAP, EAP-IG, path patching, an imported EAP-IG graph file) rank the edges of the
model's graph, by |score| or by signed score (`ranking.Ranking`). For each size k the circuit is
the k edges ranked first, pruned to those on a path to the logits, and it is evaluated with the engine's edge ablation: the number `verify` would
report for that circuit, not an approximation. The curve and its areas follow MIB (Mueller et al.
2025, "MIB: A Mechanistic Interpretability Benchmark"):

    f(C) = (m(C) - m(∅)) / (m(M) - m(∅))       normalized faithfulness (MIB's "faithfulness")
    CPR  = Σ_i (x_{i+1} - x_i) (f_i + f_{i+1}) / 2                 area under f
    CMD  = Σ_i (x_{i+1} - x_i) (|1 - f_i| + |1 - f_{i+1}|) / 2     area between f and 1

with x_i the requested fraction of the graph's edges (MIB's released evaluation); the same sums
over ln x_i are given too, since a linear axis gives half the area to circuits of over half the
model. docs/discover.md, "Faithfulness curves", says why.

f is named `normalized_faithfulness` in every output, never "faithfulness": `verify`, `compare` and
`discover` call F(C)/F(M) faithfulness. m(∅) is the graph with no edge kept: with `embed_edges =
all` the run `verify` calls F(empty), so f is `verify`'s normalized faithfulness of that circuit;
with `declared` the embeddings' edges go too, so m(∅) is MIB's zero and not F(empty). Hence m(M)
and m(∅) (`m_model`, `m_empty`), not F(M) and F(empty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from circuitlang.discover.acdc import EdgeKey, as_edges, connected_to_logits, full_graph
from circuitlang.discover.ranking import Ranking
from circuitlang.discover.scoring import Scorer, node_order, variant_of
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir

MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
CHANNEL_ORDER = {"q": 0, "k": 1, "v": 2, "": 3}


@dataclass(frozen=True)
class CurvePoint:
    k: int  # edges asked for: the k ranked first
    edges: int  # edges left after pruning to the logits
    nodes: int  # heads and MLPs of the pruned circuit
    metric: float  # m(C): the mean metric over the prompts
    normalized_faithfulness: float  # f(C) = (m(C) - m(∅)) / (m(M) - m(∅)): 0 with no edge, 1 the model


@dataclass(frozen=True)
class FaithfulnessCurve:
    label: str
    total_edges: int  # edges of the graph the fractions are of
    fractions: tuple[float, ...]
    points: tuple[CurvePoint, ...]
    m_model: float  # m(M): the full model's mean metric, F(M)
    m_empty: float  # m(∅): the graph with no edge kept (see the module docstring)
    ranking: Ranking = Ranking.ABSOLUTE
    cpr: float = field(init=False)
    cmd: float = field(init=False)
    cpr_log: float = field(init=False)
    cmd_log: float = field(init=False)

    def __post_init__(self) -> None:
        values = [p.normalized_faithfulness for p in self.points]
        object.__setattr__(self, "cpr", area_under(self.fractions, values))
        object.__setattr__(self, "cmd", area_from_one(self.fractions, values))
        logs = [math.log(x) for x in self.fractions]
        object.__setattr__(self, "cpr_log", area_under(logs, values))
        object.__setattr__(self, "cmd_log", area_from_one(logs, values))

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ranking": self.ranking.value,
            "total_edges": self.total_edges,
            "m_model": self.m_model,
            "m_empty": self.m_empty,
            "points": [
                {
                    "fraction": x,
                    "k": p.k,
                    "edges": p.edges,
                    "nodes": p.nodes,
                    "metric": p.metric,
                    "normalized_faithfulness": p.normalized_faithfulness,
                }
                for x, p in zip(self.fractions, self.points)
            ],
            "cpr": self.cpr,
            "cmd": self.cmd,
            "cpr_log": self.cpr_log,
            "cmd_log": self.cmd_log,
            "integration": "trapezoid rule over the fraction of edges (cpr, cmd) and over its natural log (cpr_log, cmd_log)",
        }


def area_under(xs: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid rule: the area under the piecewise-linear curve through (xs, values)."""
    return sum((x2 - x1) * (v1 + v2) / 2 for x1, x2, v1, v2 in zip(xs, xs[1:], values, values[1:]))


def area_from_one(xs: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid rule on |1 - f|, as MIB integrates it (not the exact area where f crosses 1)."""
    return area_under(xs, [abs(1.0 - v) for v in values])


def edge_order(key: EdgeKey) -> tuple:
    """Computation order of an edge: by receiver, then sender, then channel q, k, v."""
    sender, receiver, channel = key
    return node_order(receiver), node_order(sender), CHANNEL_ORDER.get(channel or "", 3)


def ranked(scores: Mapping[EdgeKey, float], ranking: Ranking = Ranking.ABSOLUTE) -> list[EdgeKey]:
    """Edges from the strongest down (largest |score|, or largest signed score); equal scores in
    computation order."""
    return sorted(scores, key=lambda key: (-ranking.strength(scores[key]), edge_order(key)))


def top_edges(scores: Mapping[EdgeKey, float], k: int, ranking: Ranking = Ranking.ABSOLUTE) -> set[EdgeKey]:
    """The k edges ranked first, pruned to those on a path to the logits: an edge whose
    receiver reaches the logits along no chosen edge cannot change the output."""
    return _pruned(ranked(scores, ranking), k)[1]


def _pruned(order: Sequence[EdgeKey], k: int) -> tuple[tuple[ir.Node, ...], set[EdgeKey]]:
    """The nodes and edges of the first k edges of `order`, pruned to the logits."""
    return connected_to_logits(set(order[: max(k, 0)]))


def graph_edges(scorer: Scorer) -> set[EdgeKey]:
    """The edges edge ablation can remove: among heads, MLPs and the logits, and from the
    embeddings only with `set embed_edges = declared` (otherwise they are always kept)."""
    return full_graph(scorer, None)[2]


def on_graph(scorer: Scorer, scores: Mapping[EdgeKey, float]) -> dict[EdgeKey, float]:
    """Scores for exactly the graph's edges: an edge without a score scores 0 (so the largest
    circuit is the whole model), and scores of edges the engine always keeps are dropped."""
    return {key: float(scores.get(key, 0.0)) for key in graph_edges(scorer)}


def evaluate_top(scorer: Scorer, scores: Mapping[EdgeKey, float], ks: Sequence[int], ranking: Ranking = Ranking.ABSOLUTE) -> list[CurvePoint]:
    """The top-k circuit for each k, all evaluated in one batched engine call."""
    return _evaluate_top(scorer, scores, ks, ranking)[0]


def _evaluate_top(scorer: Scorer, scores: Mapping[EdgeKey, float], ks: Sequence[int], ranking: Ranking) -> tuple[list[CurvePoint], float]:
    """The points, and m(∅): the graph's empty circuit (no edge), evaluated in the same call. With
    `embed_edges = all` it is the empty circuit of `verify`; with `declared` the embeddings are a
    sender too, so the circuit without edges also loses them (MIB's fully corrupted run)."""
    order = ranked(on_graph(scorer, scores), ranking)
    circuits = [_pruned(order, k) for k in ks]
    variants = [empty_graph(scorer)]
    variants += [variant_of(nodes, as_edges(edges), label=f"top {k}", embed_edges=scorer.embed_edges) for k, (nodes, edges) in zip(ks, circuits)]
    empty, *values = scorer.means(variants)
    return [
        CurvePoint(k, len(edges), len(nodes), value, normalized_faithfulness(value, scorer.f_model, empty))
        for k, (nodes, edges), value in zip(ks, circuits, values)
    ], empty


def empty_graph(scorer: Scorer) -> Variant:
    """The graph's circuit without edges, whose mean metric is m(∅), f's zero."""
    return variant_of([], (), label="no edge", embed_edges=scorer.embed_edges)


def normalized_faithfulness(value: float, m_model: float, m_empty: float) -> float:
    """MIB's f: 0 at the empty circuit, 1 at the model; NaN when the two agree."""
    span = m_model - m_empty
    return (value - m_empty) / span if span else float("nan")


def sizes(total: int, fractions: Sequence[float]) -> list[int]:
    """k = ⌊fraction · total⌋, as MIB counts (the small tolerance keeps 0.29 · 100 at 29)."""
    return [min(total, int(math.floor(x * total + 1e-9))) for x in fractions]


def curve(
    scorer: Scorer,
    scores: Mapping[EdgeKey, float],
    fractions: Sequence[float] = MIB_FRACTIONS,
    label: str = "",
    ranking: Ranking = Ranking.ABSOLUTE,
) -> FaithfulnessCurve:
    """The faithfulness curve at these fractions of the graph's edges, ranked by `ranking`, with
    its areas."""
    if not fractions or any(not 0 < x <= 1 for x in fractions) or list(fractions) != sorted(set(fractions)):
        raise ValueError("fractions must be increasing, distinct, and in (0, 1]")
    total = len(graph_edges(scorer))
    points, empty = _evaluate_top(scorer, scores, sizes(total, fractions), ranking)
    return FaithfulnessCurve(label, total, tuple(fractions), tuple(points), scorer.f_model, empty, ranking)
