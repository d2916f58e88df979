"""Node pruning: shrink a circuit while it stays faithful.

Starting from every head (with every MLP kept), visit the heads in an order and drop each one
whose removal keeps faithfulness F(C)/F(M) at or above a target, in passes until none can go. The
order matters (the seeds found forward and backward pruning give different circuits), so both
are available: "backward" visits the last layer first, "forward" the first layer first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from circuitlang.api import Run
from circuitlang.engine.readouts import readout_for
from circuitlang.engine.variants import HeadKeep, MlpKeep, Variant
from circuitlang.ir import models as ir


@dataclass(frozen=True)
class PruneResult:
    order: str
    heads: tuple[ir.Node, ...]
    faithfulness: float
    f_model: float
    variants_evaluated: int


def prune_heads(run: Run, prompt_set: str | None = None, target: float = 0.9, order: str = "backward",
                keep_mlps: bool = True) -> PruneResult:
    """Greedy one-pass pruning of heads to the given faithfulness target (mean over prompts)."""
    cfg = run.model.bridge.cfg
    engine = run.engine(prompt_set)
    readout = readout_for(engine.bound.metric, lambda template: run.clean_logits(engine, template))
    heads = [ir.Node(kind="head", layer=layer, head=head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    mlps = tuple(MlpKeep(layer) for layer in range(cfg.n_layers)) if keep_mlps else ()
    f_model = float(engine.run([run.full_model()], readout).mean())
    kept = list(heads)
    evaluated = 1
    changed = True
    while changed:  # repeat passes: a removal can make a head kept earlier unnecessary
        changed = False
        for head in list(reversed(kept)) if order == "backward" else list(kept):
            trial = [h for h in kept if h != head]
            value = float(engine.run([_variant(trial, mlps)], readout).mean())
            evaluated += 1
            if f_model and value / f_model >= target:
                kept, changed = trial, True
    final = float(engine.run([_variant(kept, mlps)], readout).mean())
    return PruneResult(order, tuple(kept), final / f_model if f_model else float("nan"), f_model, evaluated + 1)


def _variant(heads: Sequence[ir.Node], mlps: tuple[MlpKeep, ...]) -> Variant:
    return Variant(tuple(HeadKeep(h.layer, h.head) for h in heads), mlps, None, "all", "pruned")  # type: ignore[arg-type]
