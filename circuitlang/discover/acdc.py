"""ACDC-style edge pruning (Conmy et al. 2023): remove every edge the output does not need.

Start from the full graph: every head and MLP, and every edge between them (a head's q, k and v
are separate edges; the embeddings' edges only with `set embed_edges = declared`). Visit receivers
from the logits backwards, and each receiver's incoming edges from the latest sender backwards;
remove an edge when doing so raises the score by less than the threshold τ, keeping the removal
for the rest of the search. The score is the KL divergence of the circuit's next-token
distribution from the model's (`score="kl"`), or the metric's drop as a fraction of |F(M)|
(`score="metric"`). Edge ablation follows the engine's semantics, so the result is exactly what
`verify` will measure. Finally nodes with no path to the logits are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from circuitlang.discover.path_growth import LOGITS
from circuitlang.discover.scoring import NO_SPAN, Scorer, node_order, precedes, variant_of
from circuitlang.ir import models as ir

# Thresholds tried from the largest (smallest circuit) down when searching for a faithfulness target.
KL_THRESHOLDS = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)
METRIC_THRESHOLDS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
EdgeKey = tuple[ir.Node, ir.Node, str]  # sender, receiver, channel ("" into MLPs and logits)


@dataclass(frozen=True)
class AcdcResult:
    threshold: float
    score: str
    nodes: tuple[ir.Node, ...]
    edges: tuple[ir.Edge, ...]
    faithfulness: float
    edges_tried: int
    tried: tuple[AcdcResult, ...] = ()  # every threshold a search ran, in the order run


def acdc(scorer: Scorer, threshold: float, score: str = "kl", within: Sequence[ir.Node] | None = None) -> AcdcResult:
    """ACDC over the full graph, or over the edges among `within` (every other node ablated):
    the edges of a circuit found by node pruning."""
    nodes, senders, edges = full_graph(scorer, within)
    receivers = sorted(nodes + [LOGITS], key=node_order, reverse=True)
    with scorer.meter.part(acdc_rows(scorer, within)) as part:
        current = _score(scorer, nodes, edges, score)
        tried = 0
        for index, receiver in enumerate(receivers):
            part.left(scorer.rows(_untried(edges, receivers[index:]) + 1))  # skipped receivers give theirs back
            if receiver not in _useful(edges):  # its output reaches the logits along no edge left: its
                continue  # inputs change nothing, and its edges go at the end
            incoming = _incoming(receiver, senders, scorer.parallel_attn_mlp)
            for key in sorted(incoming, key=lambda k: (node_order(k[0]), k[2]), reverse=True):
                if key not in edges:
                    continue
                trial = edges - {key}
                value = _score(scorer, nodes, trial, score)
                tried += 1
                if value - current < threshold:
                    edges, current = trial, value
        kept_nodes, kept_edges = connected_to_logits(edges)
        circuit = as_edges(kept_edges)
        faithfulness = scorer.faithfulness([variant_of(kept_nodes, circuit, embed_edges=scorer.embed_edges)])[0]
    return AcdcResult(threshold, score, kept_nodes, circuit, faithfulness, tried)


def acdc_rows(scorer: Scorer, within: Sequence[ir.Node] | None = None) -> int:
    """Rows of one ACDC pass, counted before it runs: the first score, one trial per edge of the
    graph and the final faithfulness. Receivers cut off from the logits skip their trials, so this
    errs long until the pass reaches them."""
    return scorer.rows(len(full_graph(scorer, within)[2]) + 2)


def full_graph(scorer: Scorer, within: Sequence[ir.Node] | None) -> tuple[list[ir.Node], list[ir.Node], set[EdgeKey]]:
    """The nodes, the senders (the embeddings too with `embed_edges = declared`) and every edge among them."""
    nodes = sorted(within if within is not None else scorer.heads() + scorer.mlps(), key=node_order)
    senders = nodes + ([ir.EMBED] if scorer.embed_edges == "declared" else [])
    edges = {key for receiver in nodes + [LOGITS] for key in _incoming(receiver, senders, scorer.parallel_attn_mlp)}
    return nodes, senders, edges


def _untried(edges: set[EdgeKey], receivers: Sequence[ir.Node]) -> int:
    """Edges still in the graph into these receivers: the most trials they can take."""
    waiting = set(receivers)
    return sum(1 for _, receiver, _ in edges if receiver in waiting)


def search_threshold(
    scorer: Scorer,
    schedule: Sequence[float],
    target: float,
    score: str = "kl",
    announce: Callable[[float], None] = lambda threshold: None,
    within: Sequence[ir.Node] | None = None,
) -> AcdcResult:
    """The largest threshold of the schedule whose circuit reaches the faithfulness target.

    A larger threshold removes more edges, so faithfulness falls as the threshold grows; the search
    bisects the sorted schedule on that assumption (each ACDC run is a full pass over the edges).
    Every run is kept in `tried`, so a non-monotone case is visible in the written spec.
    """
    thresholds = sorted(schedule, reverse=True)
    runs: dict[float, AcdcResult] = {}

    def attempt(index: int) -> AcdcResult:
        if thresholds[index] not in runs:
            announce(thresholds[index])
            runs[thresholds[index]] = acdc(scorer, thresholds[index], score, within)
        return runs[thresholds[index]]

    with scorer.meter.part(search_rows(scorer, len(thresholds), within)):
        low, high = 0, len(thresholds) - 1  # find the first index (largest threshold) that reaches the target
        while low < high:
            middle = (low + high) // 2
            if attempt(middle).faithfulness >= target:
                high = middle
            else:
                low = middle + 1
        best = attempt(low)
    return replace(best, tried=tuple(runs.values()))


def search_rows(scorer: Scorer, thresholds: int, within: Sequence[ir.Node] | None = None) -> int:
    """Rows of `search_threshold`, counted before it runs: the bisection's most passes, one more
    than the halvings of the schedule (a pass it can reuse is not run again, so this errs long)."""
    return (math.ceil(math.log2(thresholds)) + 1) * acdc_rows(scorer, within)


def as_edges(keys: set[EdgeKey]) -> tuple[ir.Edge, ...]:
    """Edge keys grouped into IR edges (one per sender and receiver, with its channels)."""
    channels: dict[tuple[ir.Node, ir.Node], set[str]] = {}
    for sender, receiver, channel in keys:
        channels.setdefault((sender, receiver), set()).add(channel)
    ordered = sorted(channels, key=lambda pair: (node_order(pair[1]), node_order(pair[0])))
    return tuple(
        ir.Edge(sender=s, receiver=r, span=NO_SPAN, channels=tuple(c for c in ("q", "k", "v") if c in channels[(s, r)])) for s, r in ordered
    )


def _incoming(receiver: ir.Node, senders: list[ir.Node], parallel_attn_mlp: bool = False) -> list[EdgeKey]:
    channels = ("q", "k", "v") if receiver.kind == "head" else ("",)
    return [
        (s, receiver, c) for s in senders if s != receiver and (s.kind == "embed" or precedes(s, receiver, parallel_attn_mlp)) for c in channels
    ]


def _score(scorer: Scorer, nodes: list[ir.Node], edges: set[EdgeKey], score: str) -> float:
    variant = variant_of(nodes, as_edges(edges), embed_edges=scorer.embed_edges)
    if score == "kl":
        return scorer.means([variant], scorer.kl_readout())[0]
    value = scorer.means([variant])[0]
    return (scorer.f_model - value) / abs(scorer.f_model) if scorer.f_model else float("nan")


def _useful(edges: set[EdgeKey]) -> set[ir.Node]:
    """The logits and every node with a path of edges to them."""
    useful = {LOGITS}
    changed = True
    while changed:
        before = len(useful)
        useful |= {s for s, r, _ in edges if r in useful}
        changed = len(useful) != before
    return useful


def connected_to_logits(edges: set[EdgeKey]) -> tuple[tuple[ir.Node, ...], set[EdgeKey]]:
    """Nodes with a path to the logits, and the edges among them."""
    useful = _useful(edges)
    kept = {key for key in edges if key[0] in useful and key[1] in useful}
    nodes = tuple(sorted((n for n in useful if n.kind in ("head", "mlp")), key=node_order))
    return nodes, kept
