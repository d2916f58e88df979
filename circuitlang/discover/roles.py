"""Name the heads of a found circuit by what they do where they matter.

For each head: the named position (a slot, `bos` or `end`) where ablating only that head's output
changes the metric most, then the key position it attends to most from there: "end reads s4",
"s2 reads s1". The names are a first draft for the researcher to edit; the scores behind them
travel as comments in the written spec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from circuitlang.data.prompts import template_slots
from circuitlang.discover.scoring import Scorer
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir

_NO_SPAN = ir.Span(path="<discover>", line=1, column=1, end_line=1, end_column=1)


@dataclass(frozen=True)
class HeadRole:
    role: str
    query: str  # where ablating the head matters most
    key: str  # where it attends from there
    effect: float  # metric change when the head is ablated at `query` only
    attention: float  # its mean attention from `query` to `key`


@torch.no_grad()
def name_heads(scorer: Scorer, circuit: Variant) -> dict[ir.Node, HeadRole]:
    template = scorer.engine.bound.templates[0]
    names = _position_names(template)
    heads = [h for h in circuit.heads]
    trials = [_ablated_at(circuit, index, name) for index in range(len(heads)) for name in names.values()]
    if not trials:
        return {}
    base = scorer.means([circuit])[0]
    effects = torch.tensor(scorer.means(trials)).view(len(heads), len(names)) - base
    patterns = _patterns(scorer, template)
    roles = {}
    for index, keep in enumerate(heads):
        column = int(effects[index].abs().argmax())
        query_index = list(names)[column]
        attention = patterns[keep.layer][:, keep.head, query_index].mean(0)  # [key]
        key_index = int(attention.argmax())
        query, key = names[query_index], names.get(key_index, f"token {key_index}")
        roles[ir.Node(kind="head", layer=keep.layer, head=keep.head)] = HeadRole(
            f"{query} reads {key}", query, key, float(effects[index, column]), float(attention[key_index]))
    return roles


def _position_names(template) -> dict[int, str]:  # token index -> name, in token order
    """Slots by their names, except that the last token is `end` (as researchers call it)."""
    names = {template.positions[slot]: slot for slot in template_slots(template.template)}
    for special in ("bos", "end"):
        if special in template.positions:
            names[template.positions[special]] = special
    return dict(sorted(names.items()))


def _ablated_at(circuit: Variant, index: int, position: str) -> Variant:
    keep = circuit.heads[index]
    ablated = replace(keep, ablated_at=(ir.PositionRef(name=position, span=_NO_SPAN),))
    heads = circuit.heads[:index] + (ablated,) + circuit.heads[index + 1:]
    return replace(circuit, heads=heads, label=f"{keep.layer}.{keep.head} ablated at {position}")


def _patterns(scorer: Scorer, template) -> list[torch.Tensor]:  # per layer [n, heads, query, key]
    bridge = scorer.run.model.bridge
    _, cache = bridge.run_with_cache(template.clean, names_filter=lambda n: n.endswith("hook_pattern"))
    return [cache[f"blocks.{layer}.attn.hook_pattern"] for layer in range(scorer.n_layers)]
