"""Discovery by edge attribution (EAP, EAP-IG): score every edge from gradients, keep the best.

Scoring costs one forward and one backward pass over the prompts per step (EAP: one step, at the
clean inputs; EAP-IG: `--steps`, 5 by default, at the points of `--ig-grid` on the line from the
corrupt inputs to the clean ones), whatever the number of edges: GPT-2 small's 32,491 edges cost
what the organism's 1,418 do, per prompt. The circuit is then the top edges by |score|, pruned to those on a
path to the logits: `--top N` of them, or the fewest whose circuit reaches the faithfulness target.
Every candidate is evaluated exactly by edge ablation, so the faithfulness written into the spec is
what `verify` measures, never the scores' estimate.

Finding the fewest: the sizes 1, 2, 4, ... and every edge are evaluated in one batched call, then
the doubling below the first size that reaches the target is bisected. This assumes faithfulness grows with k,
which a ranking need not give exactly; every size tried is written into the spec's header, so a
non-monotone curve is visible there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from circuitlang.discover.acdc import EdgeKey
from circuitlang.discover.curves import CurvePoint, evaluate_top, graph_edges
from circuitlang.discover.scoring import Scorer
from circuitlang.engine import attribution
from circuitlang.discover.methods import DEFAULT_IG_GRID, EAP_IG_STEPS, IGGrid
from circuitlang.engine.attribution import Graph
from circuitlang.verification.criteria import faithfulness_point

BACKWARD_ROWS = 2  # a backward pass costs about two forwards: progress counts a step as three rows


@dataclass(frozen=True)
class Selection:
    k: int  # top edges asked for
    point: CurvePoint  # the pruned circuit's exact evaluation
    faithfulness: float  # F(C)/F(M), the target's measure
    tried: tuple[tuple[int, float], ...]  # (k, faithfulness) of every size evaluated, in order


def why_not_attributable(scorer: Scorer, method: str) -> str | None:
    """Why `method` cannot score this prompt set's edges (None when it can)."""
    if scorer.engine.bound.metric.name == "accuracy":
        return (
            "accuracy is a step function, so its gradient is zero everywhere and every edge would score 0: use a "
            "smooth metric such as logit_diff or prob_diff"
        )
    if method == "eap-ig" and any(t.corrupt is None for t in scorer.engine.bound.templates):
        return (
            f"prompt set '{scorer.engine.bound.name}' has no corruption, and EAP-IG integrates the gradient from "
            "the corrupt prompts' inputs to the clean ones: add a `corrupt` line, or use eap"
        )
    return None


def attribution_graph(scorer: Scorer) -> Graph:
    return Graph(scorer.n_layers, scorer.n_heads, scorer.parallel_attn_mlp, scorer.embed_edges == "declared")


def edge_scores(scorer: Scorer, method: str, steps: int = EAP_IG_STEPS, grid: IGGrid = DEFAULT_IG_GRID) -> dict[EdgeKey, float]:
    """Every edge's estimated metric drop when it alone is removed (`method`: eap or eap-ig, whose
    gradients are taken at `steps` points of `grid`), for the graph `acdc` and `curves` use."""
    result = attribution.edge_scores(scorer.engine, attribution_graph(scorer), gradient_points(method, steps, grid))
    scorer.meter.advance(scoring_rows(scorer, method, steps))
    return result.scores


def gradient_points(method: str, steps: int, grid: IGGrid) -> tuple[float, ...]:
    """Where on the line from the corrupt inputs (0) to the clean ones (1) the method takes its
    gradients: EAP at the clean inputs only."""
    if method == "eap":
        return (1.0,)
    if method == "eap-ig":
        return grid.alphas(steps)
    raise ValueError(f"unknown attribution method {method!r}")


def scoring_rows(scorer: Scorer, method: str, steps: int) -> int:
    """Prompt rows of scoring, a backward pass counted as two forwards."""
    return scorer.rows(1 if method == "eap" else steps) * (1 + BACKWARD_ROWS)


def selection_rows(scorer: Scorer, target_search: bool) -> int:
    """Rows of choosing the edges, at the most: every doubling, then the bisection of the last."""
    if not target_search:
        return scorer.rows(1)
    doublings = max(1, len(graph_edges(scorer))).bit_length() + 1
    return scorer.rows(2 * doublings)


def select_top(scorer: Scorer, scores: dict[EdgeKey, float], k: int) -> Selection:
    point = evaluate_top(scorer, scores, [k])[0]
    faithfulness = faithfulness_point(point.metric, scorer.f_model)
    return Selection(k, point, faithfulness, ((k, faithfulness),))


def smallest_reaching(scorer: Scorer, scores: dict[EdgeKey, float], target: float) -> Selection:
    """The fewest top edges whose circuit reaches `target` (F(C)/F(M)); all of them if none do."""
    total = len(graph_edges(scorer))
    sizes = _doublings(total)
    tried: dict[int, CurvePoint] = dict(zip(sizes, evaluate_top(scorer, scores, sizes)))
    reached = [k for k in sizes if _faithfulness(scorer, tried[k]) >= target]
    if not reached:
        return _selection(scorer, total, tried)
    high = reached[0]
    low = max((k for k in sizes if k < high), default=0)
    while high - low > 1:  # faithfulness(low) < target <= faithfulness(high)
        middle = (low + high) // 2
        tried[middle] = evaluate_top(scorer, scores, [middle])[0]
        low, high = (low, middle) if _faithfulness(scorer, tried[middle]) >= target else (middle, high)
    return _selection(scorer, high, tried)


def _doublings(total: int) -> list[int]:
    sizes, k = [], 1
    while k < total:
        sizes.append(k)
        k *= 2
    return sizes + [total]


def _faithfulness(scorer: Scorer, point: CurvePoint) -> float:
    return faithfulness_point(point.metric, scorer.f_model)


def _selection(scorer: Scorer, k: int, tried: dict[int, CurvePoint]) -> Selection:
    return Selection(k, tried[k], _faithfulness(scorer, tried[k]), tuple((size, _faithfulness(scorer, tried[size])) for size in sorted(tried)))


def channel_notes(scores: dict[EdgeKey, float], edges: Iterable[EdgeKey]) -> dict[tuple, str]:
    """Per (sender, receiver): its channels' scores, as the written spec's edge comments."""
    notes: dict[tuple, list[str]] = {}
    for sender, receiver, channel in sorted(edges, key=lambda key: "qkv".find(key[2]) if key[2] else 0):
        notes.setdefault((sender, receiver), []).append(f"{channel or 'resid'} {scores[(sender, receiver, channel)]:+.3g}")
    return {pair: ", ".join(parts) for pair, parts in notes.items()}
