"""Name the heads of a found circuit by what they do where they matter.

For each head: the named position (a slot, `bos` or `end`) where ablating only that head's output
changes the metric most, then the key position whose value it moves most from there: "end reads
s4", "s2 reads s1". "Moves most" weighs attention by the size of what each key writes,
`attention(q, k) * |v_k W_O|` (Kobayashi et al. 2020): heads that rest on `bos` give it much
attention but write almost nothing from it, so raw attention would name most heads "reads bos".
The names are a first draft for the researcher to edit; the scores behind them travel as
comments in the written spec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from circuitlang.data.prompts import template_slots
from circuitlang.discover.scoring import NO_SPAN, Scorer
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir



@dataclass(frozen=True)
class HeadRole:
    role: str
    query: str  # where ablating the head matters most
    key: str  # where it attends from there
    effect: float  # metric change when the head is ablated at `query` only
    attention: float  # its mean attention from `query` to `key`
    weighted: float  # the same weighted by |v_k W_O|, the quantity `key` maximizes


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
    patterns, moved = _attention(scorer, template)
    roles = {}
    for index, keep in enumerate(heads):
        column = int(effects[index].abs().argmax())
        query_index = list(names)[column]
        attention = patterns[keep.layer][:, keep.head, query_index].mean(0)  # [key]
        weighted = moved[keep.layer][:, keep.head, query_index].mean(0)
        key_index = int(weighted.argmax())
        query, key = names[query_index], names.get(key_index, f"token {key_index}")
        roles[ir.Node(kind="head", layer=keep.layer, head=keep.head)] = HeadRole(
            f"{query} reads {key}", query, key, float(effects[index, column]), float(attention[key_index]),
            float(weighted[key_index]))
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
    ablated = replace(keep, ablated_at=(ir.PositionRef(name=position, span=NO_SPAN),))
    heads = circuit.heads[:index] + (ablated,) + circuit.heads[index + 1:]
    return replace(circuit, heads=heads, label=f"{keep.layer}.{keep.head} ablated at {position}")


def _attention(scorer: Scorer, template) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: attention [n, head, query, key], and attention weighted by |v_k W_O|."""
    bridge = scorer.run.model.bridge
    wanted = ("hook_pattern", "hook_v")
    _, cache = bridge.run_with_cache(template.clean, names_filter=lambda n: n.endswith(wanted))
    patterns, moved = [], []
    for layer in range(scorer.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        values = cache[f"blocks.{layer}.attn.hook_v"]  # [n, key, head, d_head]
        written = torch.einsum("nkhd,hde->nkhe", values, bridge.W_O[layer]).norm(dim=-1)  # [n, key, head]
        patterns.append(pattern)
        moved.append(pattern * written.permute(0, 2, 1)[:, :, None, :])
    return patterns, moved
