"""Node pruning: shrink a circuit while it stays faithful.

Start from every head (MLPs kept, or pruned too with `include_mlps`) and visit the candidates in
passes, dropping each one whose removal keeps faithfulness F(C)/F(M) at or above the target. The
order of passes matters (the seeds found that forward-then-backward and backward-then-forward
pruning give different circuits), so a schedule names it: ("backward",) repeats backward passes;
("forward", "backward") alternates, starting forward. Passes continue until a whole round of the
schedule removes nothing. `compare_orders` runs both alternations and reports how far they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from circuitlang.discover.scoring import Scorer, node_order, variant_of
from circuitlang.ir import models as ir

SCHEDULES = {"backward": ("backward",), "forward": ("forward",), "fb": ("forward", "backward"), "bf": ("backward", "forward")}


@dataclass(frozen=True)
class PruneResult:
    schedule: str
    nodes: tuple[ir.Node, ...]  # kept, in computation order
    faithfulness: float
    f_model: float
    variants_evaluated: int

    @property
    def heads(self) -> tuple[ir.Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "head")


@dataclass(frozen=True)
class OrderComparison:
    """Forward-then-backward vs backward-then-forward, their intersection and union."""

    fb: PruneResult
    bf: PruneResult
    intersection: tuple[ir.Node, ...]
    intersection_faithfulness: float
    union: tuple[ir.Node, ...]
    union_faithfulness: float
    include_mlps: bool = False

    def pruned(self, nodes: Sequence[ir.Node]) -> list[ir.Node]:
        """The nodes pruning could have removed (heads, and MLPs with include_mlps): what orders can disagree on."""
        return [n for n in nodes if self.include_mlps or n.kind == "head"]

    @property
    def jaccard(self) -> float:
        """Agreement of the two orders over the nodes they could drop (kept MLPs would inflate it)."""
        union = self.pruned(self.union)
        return len(self.pruned(self.intersection)) / len(union) if union else 1.0


def prune_nodes(scorer: Scorer, target: float = 0.9, schedule: str = "backward", include_mlps: bool = False) -> PruneResult:
    """Greedy pruning to the faithfulness target (mean over prompts), in the schedule's order."""
    start = scorer.evaluated
    kept = scorer.heads() + scorer.mlps()
    kept.sort(key=node_order)
    can_go = [n for n in kept if include_mlps or n.kind == "head"]
    passes = SCHEDULES[schedule]
    changed = True
    with scorer.meter.part(prune_rows(scorer, schedule, include_mlps)) as part:
        while changed:  # a removal can make a node kept earlier unnecessary: repeat rounds
            changed = False
            for number, direction in enumerate(passes):
                # This round's passes left and one round that removes nothing (counted at the start
                # too); a removal in that round adds another, so the total can grow by a few rows.
                part.left(scorer.rows((2 * len(passes) - number) * len(can_go) + 1))
                visit = list(reversed(can_go)) if direction == "backward" else list(can_go)
                for node in visit:
                    trial = [n for n in kept if n != node]
                    if scorer.faithfulness([variant_of(trial)])[0] >= target:
                        kept, changed = trial, True
                        can_go.remove(node)
        final = scorer.faithfulness([variant_of(kept)])[0]
    return PruneResult(schedule, tuple(kept), final, scorer.f_model, scorer.evaluated - start)


def prune_rows(scorer: Scorer, schedule: str, include_mlps: bool) -> int:
    """Rows of a pruning, counted before it runs: a round of the schedule visiting every candidate,
    a round that finds nothing more to remove (it visits only what the first kept, so this errs
    long), and the final evaluation."""
    candidates = len(scorer.heads()) + (len(scorer.mlps()) if include_mlps else 0)
    return scorer.rows(2 * len(SCHEDULES[schedule]) * candidates + 1)


def compare_orders(scorer: Scorer, target: float = 0.9, include_mlps: bool = False) -> OrderComparison:
    fb = prune_nodes(scorer, target, "fb", include_mlps)
    bf = prune_nodes(scorer, target, "bf", include_mlps)
    intersection = tuple(n for n in fb.nodes if n in set(bf.nodes))
    union = tuple(sorted(set(fb.nodes) | set(bf.nodes), key=node_order))
    f_intersection, f_union = scorer.faithfulness([variant_of(intersection), variant_of(union)])
    return OrderComparison(fb, bf, intersection, f_intersection, union, f_union, include_mlps)


def compare_rows(scorer: Scorer, include_mlps: bool) -> int:
    """Rows of `compare_orders`: both prunings, then their intersection and union."""
    return prune_rows(scorer, "fb", include_mlps) + prune_rows(scorer, "bf", include_mlps) + scorer.rows(2)


def prune_heads(scorer: Scorer, target: float = 0.9, order: str = "backward") -> PruneResult:
    """Heads only, every MLP kept: the pruning the organism's shipped circuits were found with."""
    return prune_nodes(scorer, target, order, include_mlps=False)


def kept_mlps(nodes: Sequence[ir.Node]) -> tuple[ir.Node, ...]:
    return tuple(n for n in nodes if n.kind == "mlp")
