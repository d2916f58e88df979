"""Iterative path patching: grow a circuit backwards from the logits, edge by edge.

Start with the logits as the only receiver. For each receiver (the logits, an MLP's input, a
head's q, k or v), path-patch every earlier node alone into it (engine.path_patching, MLPs frozen
so each score is the direct edge) and score the edge by the metric change, `F(patched) - F(M)`.
Keep the edges whose |score| is at or above the given percentile of the scores into that receiver
(a raw threshold means nothing across receivers: effects shrink towards the logits) and at or
above a noise floor; every sender of a kept edge becomes a receiver in turn.

Scores are cached, so trying several percentiles (`search_percentile`) costs one set of patching
runs per receiver, not per percentile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from circuitlang.discover.scoring import NO_SPAN, Scorer, node_order, variant_of
from circuitlang.engine.path_patching import Receiver, path_patch
from circuitlang.ir import models as ir

LOGITS = ir.LOGITS
# Percentiles tried from the strictest down when searching for a faithfulness target, for each
# noise floor (a fraction of |F(M)|) from the highest down.
PERCENTILES = (99.0, 98.0, 97.0, 95.0, 92.5, 90.0, 85.0, 80.0, 75.0, 70.0, 60.0, 50.0, 25.0, 0.0)
MIN_EFFECTS = (0.01, 0.003, 0.001)
Channel = str  # "q", "k", "v", or "" for MLP and logits receivers
EdgeKey = tuple[ir.Node, ir.Node, Channel]  # sender, receiver, channel


@dataclass
class EdgeScores:
    """Path-patching scores, computed on demand and kept."""

    scorer: Scorer
    include_mlps: bool = True
    scores: dict[EdgeKey, float] = field(default_factory=dict)

    def into(self, receiver: ir.Node, channel: Channel) -> dict[ir.Node, float]:
        """Score of every possible sender into (receiver, channel)."""
        senders = [s for s in self.nodes() if self.scorer.precedes(s, receiver)]
        for sender in senders:
            key = (sender, receiver, channel)
            if key not in self.scores:
                self.scores[key] = self._patch(sender, receiver, channel)
        return {s: self.scores[(s, receiver, channel)] for s in senders}

    def nodes(self) -> list[ir.Node]:
        return self.scorer.heads() + (self.scorer.mlps() if self.include_mlps else [])

    def _patch(self, sender: ir.Node, receiver: ir.Node, channel: Channel) -> float:
        target = Receiver(receiver, (channel,) if channel else ())
        values = path_patch(self.scorer.engine, [sender], [target], self.scorer.readout, freeze_mlps=True)
        self.scorer.evaluated += 1
        self.scorer.meter.advance(self.scorer.patch_rows(1))
        return float(values.mean()) - self.scorer.f_model


@dataclass(frozen=True)
class PathPatchingResult:
    percentile: float
    floor: float  # the noise floor on |score|, in the metric's units
    nodes: tuple[ir.Node, ...]
    edges: tuple[ir.Edge, ...]
    edge_scores: dict[tuple[ir.Node, ir.Node], dict[Channel, float]]
    faithfulness: float


def grow(scores: EdgeScores, percentile: float, min_effect: float) -> tuple[tuple[ir.Node, ...], tuple[ir.Edge, ...]]:
    """The nodes and edges reached from the logits at one percentile threshold."""
    kept: dict[tuple[ir.Node, ir.Node], list[Channel]] = {}
    frontier, seen = [LOGITS], {LOGITS}
    while frontier:
        receiver = frontier.pop(0)
        for channel in _channels(receiver):
            for sender in _selected(scores.into(receiver, channel), percentile, min_effect):
                kept.setdefault((sender, receiver), []).append(channel)
                if sender not in seen:
                    seen.add(sender)
                    frontier.append(sender)
    nodes = tuple(sorted(seen - {LOGITS}, key=node_order))
    edges = tuple(
        _edge(sender, receiver, channels)
        for (sender, receiver), channels in sorted(kept.items(), key=lambda item: (node_order(item[0][1]), node_order(item[0][0])))
    )
    return nodes, edges


def search_percentile(scores: EdgeScores, target: float, percentiles: tuple[float, ...], floors: tuple[float, ...]) -> PathPatchingResult:
    """The strictest setting whose circuit (nodes + edges) reaches the faithfulness target; the
    loosest one tried when none does. Noise floors (absolute |score| values) are tried from the
    highest, and for each floor the percentiles from the highest."""
    result = None
    with scores.scorer.meter.part(search_rows(scores, len(percentiles) * len(floors))):
        for floor in floors:
            for percentile in percentiles:
                nodes, edges = grow(scores, percentile, floor)
                variant = variant_of(nodes, edges, embed_edges=scores.scorer.embed_edges)
                faithfulness = scores.scorer.faithfulness([variant])[0]  # an empty circuit scores F(empty)/F(M)
                result = PathPatchingResult(percentile, floor, nodes, edges, _scores_of(scores, edges), faithfulness)
                if faithfulness >= target:
                    return result
    assert result is not None, "percentiles and floors must not be empty"  # the command's arguments ensure it
    return result


def search_rows(scores: EdgeScores, settings: int) -> int:
    """Rows of `search_percentile`, counted before it runs: every sender patched into every channel
    of every receiver, and one faithfulness per (floor, percentile) setting. The growth from the
    logits reaches only the receivers of kept edges, usually few, so this errs long: what the
    search did not need comes off the total when it ends."""
    senders = scores.nodes()
    patches = sum(len(_channels(receiver)) * sum(scores.scorer.precedes(s, receiver) for s in senders) for receiver in [*senders, LOGITS])
    return scores.scorer.patch_rows(patches) + scores.scorer.rows(settings)


def _selected(scores: dict[ir.Node, float], percentile: float, min_effect: float) -> list[ir.Node]:
    if not scores:
        return []
    magnitudes = np.abs(np.array(list(scores.values())))
    cut = max(float(np.percentile(magnitudes, percentile)), min_effect)
    return [sender for sender, score in scores.items() if abs(score) >= cut and abs(score) > 0]


def _channels(receiver: ir.Node) -> tuple[Channel, ...]:
    return ("q", "k", "v") if receiver.kind == "head" else ("",)


def _edge(sender: ir.Node, receiver: ir.Node, channels: list[Channel]) -> ir.Edge:
    kept = tuple(c for c in ("q", "k", "v") if c in channels) if receiver.kind == "head" else ()
    return ir.Edge(sender=sender, receiver=receiver, channels=kept, span=NO_SPAN)


def _scores_of(scores: EdgeScores, edges: tuple[ir.Edge, ...]) -> dict[tuple[ir.Node, ir.Node], dict[Channel, float]]:
    return {(e.sender, e.receiver): {c: scores.scores[(e.sender, e.receiver, c)] for c in (e.channels or ("",))} for e in edges}
