"""Interchange interventions: run a base prompt with some nodes' activations, at named positions,
taken from a source prompt of the same prompt set; everything else computes as the model does.

A site is a head's output before W_O (`z`, one head) or an MLP's output, at a named position
(a slot, `end`, `bos`, with an offset). The position is found by name in each prompt's own
template, so a base and a source of different templates exchange the activation at the same
named position. The source activations are the clean run's (the engine's clean cache holds them);
the base runs from the clean residual entering the first layer that has a site, with hooks that
overwrite each site, so the layers after a site see the source's value and compute on from it.

Each pair may name its own sites (the baseline draws a different node set for each pair), so the
hooks write per row. The result per pair: the top next token over the whole vocabulary, and the
logits of the requested token ids (the counterfactual answer and the base's answer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from circuitlang.data.positions import expand_positions
from circuitlang.engine import forward
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.runner import Engine
from circuitlang.ir import models as ir

Sites = tuple[ir.Site, ...]


@dataclass(frozen=True)
class InterchangeResult:
    top: np.ndarray  # [n_pairs] the top next token over the vocabulary
    logits: np.ndarray  # [n_pairs, k] float64, the logits of the requested token ids


@dataclass(frozen=True)
class _Write:
    """One overwrite in one base row: activation kind and layer, token index, head (None for an
    MLP), and the value."""

    kind: str
    layer: int
    row: int  # row within the chunk
    index: int
    head: int | None
    value: torch.Tensor


@torch.no_grad()
def interchange(engine: Engine, sites: Sequence[Sites], base: Sequence[int], source: Sequence[int], token_ids: np.ndarray) -> InterchangeResult:
    """Pair i: prompt base[i] with sites[i] from prompt source[i] (dataset indices); `token_ids`
    [n_pairs, k] are the tokens whose logits are read at the end position."""
    columns = torch.as_tensor(np.asarray(token_ids, dtype=np.int64))
    where = _rows_by_prompt(engine)
    top = torch.empty(len(base), dtype=torch.long)
    logits = torch.empty(len(base), columns.shape[1], dtype=torch.float64)
    by_template: dict[int, list[int]] = defaultdict(list)
    for pair, prompt in enumerate(base):
        by_template[id(where[prompt][0])].append(pair)
    for pairs in by_template.values():
        template = where[base[pairs[0]]][0]
        for chunk in forward.row_chunks(len(pairs), engine.batch_size):
            chosen = [pairs[i] for i in chunk]
            writes = [w for row, pair in enumerate(chosen) for w in _writes(engine, where, sites[pair], base[pair], source[pair], row)]
            rows = torch.tensor([where[base[pair]][1] for pair in chosen])
            end = _run(engine, template, rows, writes)
            full = engine.logits_at(end, None)
            index = torch.tensor(chosen)
            top[index] = full.argmax(-1).cpu()
            logits[index] = full.gather(1, columns[index].to(full.device)).double().cpu()
    return InterchangeResult(top.numpy(), logits.numpy())


def _rows_by_prompt(engine: Engine) -> dict[int, tuple[BoundTemplate, int]]:
    return {prompt: (template, row) for template in engine.bound.templates for row, prompt in enumerate(template.prompt_indices)}


def _writes(engine: Engine, where: dict[int, tuple[BoundTemplate, int]], sites: Sites, base: int, source: int, row: int) -> list[_Write]:
    (base_template, _), (source_template, source_row) = where[base], where[source]
    cache = engine.clean_cache(source_template)
    writes = []
    for site in sites:
        kind = "z" if isinstance(site.node, ir.HeadNode) else "mlp_out"
        layer = site.node.layer
        assert layer is not None
        head = site.node.head if isinstance(site.node, ir.HeadNode) else None
        for name, offset in expand_positions(site.positions, base_template.template):
            at_base = base_template.positions[name] + offset
            at_source = source_template.positions[name] + offset
            activation = cache.acts[kind][layer][source_row, at_source]
            writes.append(_Write(kind, layer, row, at_base, head, activation if head is None else activation[head]))
    return writes


@torch.no_grad()
def _run(engine: Engine, template: BoundTemplate, rows: torch.Tensor, writes: list[_Write]) -> torch.Tensor:
    """The residual entering the final norm at the end position, for `rows` of the template."""
    clean = engine.clean_cache(template)
    end = template.positions["end"]
    if not writes:
        return clean.final_residual[rows, end].to(engine.model.device)
    start = min(w.layer for w in writes)
    grouped: dict[tuple[str, int], list[_Write]] = defaultdict(list)
    for write in writes:
        grouped[(write.kind, write.layer)].append(write)
    hooks = [(Family.activation(kind, layer), _overwrite(group)) for (kind, layer), group in grouped.items()]
    residual = engine.forward_from(start, clean.resid_pre[start][rows], hooks)
    return residual[:, end]


def _overwrite(writes: list[_Write]):
    rows = torch.tensor([w.row for w in writes])
    indices = torch.tensor([w.index for w in writes])
    heads = torch.tensor([w.head if w.head is not None else 0 for w in writes])
    values = torch.stack([w.value for w in writes])
    per_head = writes[0].head is not None

    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        patched = activation.clone()
        value = values.to(activation.device, activation.dtype)
        if per_head:
            patched[rows, indices, heads] = value
        else:
            patched[rows, indices] = value
        return patched

    return hook
