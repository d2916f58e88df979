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
from typing import TYPE_CHECKING

from circuitlang.discover.scoring import NO_SPAN, Scorer
from circuitlang.engine.head_reads import attention_between
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class HeadRole:
    role: str
    query: str  # where ablating the head matters most
    key: str  # where it attends from there
    effect: float  # metric change when the head is ablated at `query` only
    attention: float  # its mean attention from `query` to `key`
    weighted: float  # the same weighted by |v_k W_O|, the quantity `key` maximizes


def name_heads(scorer: Scorer, circuit: Variant) -> dict[ir.Node, HeadRole]:
    """Roles from every template of the searched prompt set, by position name (a name's token index
    differs between templates; names not in every template are not candidates)."""
    names = shared_position_names(scorer.engine.bound.templates)
    heads = list(circuit.heads)
    trials = [_ablated_at(circuit, index, name) for index in range(len(heads)) for name in names]
    if not trials:
        return {}
    base = scorer.means([circuit])[0]
    effects = _effects(scorer.means(trials), base, len(heads), len(names))
    attention, moved = attention_between(scorer.engine, names)  # per layer [head, query name, key name]
    scorer.meter.advance(scorer.rows(1))  # the prompts, run once with their attention cached
    roles: dict[ir.Node, HeadRole] = {}
    for index, keep in enumerate(heads):
        query = int(effects[index].abs().argmax())
        key = int(moved[keep.layer][keep.head, query].argmax())
        roles[ir.HeadNode(layer=keep.layer, head=keep.head)] = HeadRole(
            f"{names[query]} reads {names[key]}",
            names[query],
            names[key],
            float(effects[index, query]),
            float(attention[keep.layer][keep.head, query, key]),
            float(moved[keep.layer][keep.head, query, key]),
        )
    return roles


def _effects(means: list[float], base: float, heads: int, names: int) -> torch.Tensor:
    """[head, position name]: the metric's change when the head is ablated at that position only,
    in float32 as the engine gives its tensors."""
    import torch  # at a module's top only in engine/ (README, Layout)

    return torch.tensor(means).view(heads, names) - base


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
    heads = circuit.heads[:index] + (ablated,) + circuit.heads[index + 1 :]
    return replace(circuit, heads=heads, label=f"{keep.layer}.{keep.head} ablated at {position}")
