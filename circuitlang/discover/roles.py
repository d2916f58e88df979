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
    """Roles from every template of the searched prompt set, by position name (a name's token index
    differs between templates; names not in every template are not candidates)."""
    names = shared_position_names(scorer.engine.bound.templates)
    heads = list(circuit.heads)
    trials = [_ablated_at(circuit, index, name) for index in range(len(heads)) for name in names]
    if not trials:
        return {}
    base = scorer.means([circuit])[0]
    effects = torch.tensor(scorer.means(trials)).view(len(heads), len(names)) - base
    attention, moved = _attention_by_name(scorer, names)  # per layer [head, query name, key name]
    scorer.meter.advance(scorer.rows(1))  # the prompts, run once with their attention cached
    roles = {}
    for index, keep in enumerate(heads):
        query = int(effects[index].abs().argmax())
        key = int(moved[keep.layer][keep.head, query].argmax())
        roles[ir.Node(kind="head", layer=keep.layer, head=keep.head)] = HeadRole(
            f"{names[query]} reads {names[key]}", names[query], names[key], float(effects[index, query]),
            float(attention[keep.layer][keep.head, query, key]), float(moved[keep.layer][keep.head, query, key]))
    return roles


def naming_rows(scorer: Scorer, heads: int) -> int:
    """Rows of `name_heads` for a circuit of this many heads: each head ablated at each shared
    position, the circuit itself, and one run of the prompts for their attention."""
    trials = heads * len(shared_position_names(scorer.engine.bound.templates))
    return scorer.rows(trials + 2) if trials else 0


def shared_position_names(templates) -> list[str]:
    """Names of positions every template has, in the first template's token order; `end` (and
    `bos`) named as such even where a slot shares the token."""
    common = set.intersection(*(set(t.positions) for t in templates))
    first = templates[0].positions
    slots_first = sorted((n for n in common if n not in ("bos", "end")), key=lambda n: first[n])
    last = [n for n in ("end",) if n in common]
    taken = {first[n] for n in ("bos", "end") if n in common}
    return [n for n in ("bos",) if n in common] + [n for n in slots_first if first[n] not in taken] + last


def _ablated_at(circuit: Variant, index: int, position: str) -> Variant:
    keep = circuit.heads[index]
    ablated = replace(keep, ablated_at=(ir.PositionRef(name=position, span=NO_SPAN),))
    heads = circuit.heads[:index] + (ablated,) + circuit.heads[index + 1:]
    return replace(circuit, heads=heads, label=f"{keep.layer}.{keep.head} ablated at {position}")


def _attention_by_name(scorer: Scorer, names: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, averaged over every prompt of the set: attention [head, query, key] between named
    positions, and the same weighted by |v_k W_O|."""
    totals = [torch.zeros(2, scorer.n_heads, len(names), len(names)) for _ in range(scorer.n_layers)]
    n = 0
    for template in scorer.engine.bound.templates:
        index = torch.tensor([template.positions[name] for name in names])
        for layer, (pattern, moved) in enumerate(zip(*_attention(scorer, template))):
            picked = torch.stack([pattern, moved])[:, :, :, index][:, :, :, :, index]  # [2, n, head, q, k]
            totals[layer] += picked.sum(1).cpu()
        n += template.n_prompts
    return [t[0] / n for t in totals], [t[1] / n for t in totals]


def _attention(scorer: Scorer, template) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: attention [n, head, query, key], and attention weighted by |v_k W_O|."""
    model = scorer.session.model
    family = model.family
    wanted = {name for layer in range(scorer.n_layers)
              for name in (family.pattern(layer), family.head_input("v", layer))}
    _, cache = model.bridge.run_with_cache(template.clean.to(model.device), names_filter=lambda n: n in wanted)
    heads_kv = [family.kv_head(h) for h in range(family.n_heads)]  # each query head reads its group's values
    patterns, moved = [], []
    for layer in range(scorer.n_layers):
        pattern = cache[family.pattern(layer)]
        values = cache[family.head_input("v", layer)][:, :, heads_kv]  # [n, key, head, d_head]
        written = torch.einsum("nkhd,hde->nkhe", values, model.attention.W_O[layer]).norm(dim=-1)  # [n, key, head]
        patterns.append(pattern)
        moved.append(pattern * written.permute(0, 2, 1)[:, :, None, :])
    return patterns, moved
