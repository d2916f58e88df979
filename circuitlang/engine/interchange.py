"""Interchange interventions: run a base prompt with some nodes' activations, at named positions,
taken from a source prompt of the same prompt set; everything else computes as the model does.

A site is a head's output before W_O (`z`, one head) or an MLP's output, at a named position
(a slot, `end`, `bos`, with an offset). The position is found by name in each prompt's own
template, so a base and a source of different templates exchange the activation at the same
named position. The source activations are the clean run's (the engine's clean cache holds them);
the base runs from the clean residual entering the first layer that has a site, with hooks that
overwrite each site, so the layers after a site see the source's value and compute on from it.

Where two named positions of a site fall on one token of the base (`s4` and `end` in "{s1} {s2}
{s3} {s4}") but on two of the source, the later one in the site's list gives the value.

Each pair may name its own sites (the baseline draws a different node set for each pair), so the
hooks write per row. The result per pair: the top next token over the whole vocabulary, and the
logits of the requested token ids (the counterfactual answer and the base's answer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from circuitlang.data.positions import expand_positions
from circuitlang.engine import forward
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.runner import Engine
from circuitlang.errors import DataError
from circuitlang.ir import models as ir

Sites = tuple[ir.Site, ...]
Chunk = tuple[list[int], torch.Tensor]  # indices into the bases, their end-position logits


@dataclass(frozen=True)
class Overwrite:
    """In one base run: `node`'s output at `positions` (None: at every position, from a source of
    the base's template) taken from the clean run of dataset prompt `source`."""

    node: ir.Node
    positions: tuple[ir.Position, ...] | None
    source: int


@dataclass(frozen=True)
class InterchangeResult:
    top: np.ndarray  # [n_pairs] the top next token over the vocabulary
    logits: np.ndarray  # [n_pairs, k] float64, the logits of the requested token ids


@dataclass(frozen=True)
class _Write:
    """One overwrite in one base row: activation kind and layer, token index (None: every
    position), head (None for an MLP), and the value."""

    kind: str
    layer: int
    row: int  # row within the chunk
    index: int | None
    head: int | None
    value: torch.Tensor


@torch.no_grad()
def interchange(engine: Engine, sites: Sequence[Sites], base: Sequence[int], source: Sequence[int], token_ids: np.ndarray) -> InterchangeResult:
    """Pair i: prompt base[i] with sites[i] from prompt source[i] (dataset indices); `token_ids`
    [n_pairs, k] are the tokens whose logits are read at the end position."""
    overwrites = [tuple(Overwrite(site.node, site.positions, s) for site in pair_sites) for pair_sites, s in zip(sites, source)]
    columns = torch.as_tensor(np.asarray(token_ids, dtype=np.int64))
    top = torch.empty(len(base), dtype=torch.long)
    logits = torch.empty(len(base), columns.shape[1], dtype=torch.float64)
    for chosen, full in _patched_logits(engine, overwrites, base):
        index = torch.tensor(chosen)
        top[index] = full.argmax(-1).cpu()
        logits[index] = full.gather(1, columns[index].to(full.device)).double().cpu()
    return InterchangeResult(top.numpy(), logits.numpy())


@torch.no_grad()
def patched_metric(
    engine: Engine, overwrites: Sequence[tuple[Overwrite, ...]], base: Sequence[int], answers_of: Sequence[int] | None = None
) -> np.ndarray:
    """The prompt set's metric of the run of each base prompt with `overwrites[i]`, read with the
    answer fields of prompt `answers_of[i]` (default: the base's own; the same template): [n]
    float64. Causal scrubbing reads this."""
    readout = engine.readout()
    where = _rows_by_prompt(engine)
    answers = list(base if answers_of is None else answers_of)
    out = np.empty(len(base))
    for chosen, full in _patched_logits(engine, overwrites, base):
        template = where[answers[chosen[0]]][0]
        assert all(where[answers[i]][0] is where[base[i]][0] for i in chosen), "answers are read from a prompt of the run's template"
        rows = torch.tensor([where[answers[i]][1] for i in chosen])
        columns = readout.columns(template)
        read = full if columns is None else full.gather(1, columns[rows].to(full.device))
        out[chosen] = readout.reduce(template, read, rows).double().cpu().numpy()
    return out


def _patched_logits(engine: Engine, overwrites: Sequence[tuple[Overwrite, ...]], base: Sequence[int]) -> Iterator[Chunk]:
    """(the indices into `base` of one chunk, their full end-position logits), chunk by chunk: the
    bases grouped by template, in the engine's batch size."""
    where = _rows_by_prompt(engine)
    by_template: dict[int, list[int]] = defaultdict(list)
    for pair, prompt in enumerate(base):
        by_template[id(where[prompt][0])].append(pair)
    for pairs in by_template.values():
        template = where[base[pairs[0]]][0]
        for chunk in forward.row_chunks(len(pairs), engine.batch_size):
            chosen = [pairs[i] for i in chunk]
            writes = [w for row, pair in enumerate(chosen) for w in _writes(engine, where, overwrites[pair], base[pair], row)]
            rows = torch.tensor([where[base[pair]][1] for pair in chosen])
            yield chosen, engine.logits_at(_run(engine, template, rows, writes), None)


def _rows_by_prompt(engine: Engine) -> dict[int, tuple[BoundTemplate, int]]:
    return {prompt: (template, row) for template in engine.bound.templates for row, prompt in enumerate(template.prompt_indices)}


def _writes(engine: Engine, where: dict[int, tuple[BoundTemplate, int]], overwrites: tuple[Overwrite, ...], base: int, row: int) -> list[_Write]:
    base_template = where[base][0]
    writes = []
    for overwrite in overwrites:
        source_template, source_row = where[overwrite.source]
        kind = "z" if isinstance(overwrite.node, ir.HeadNode) else "mlp_out"
        layer = overwrite.node.layer
        assert layer is not None
        head = overwrite.node.head if isinstance(overwrite.node, ir.HeadNode) else None
        activation = engine.clean_cache(source_template).acts[kind][layer][source_row]  # [P, (H,) d]
        if overwrite.positions is None:
            assert source_template is base_template, "a whole activation comes from a prompt of the base's template"
            writes.append(_Write(kind, layer, row, None, head, activation if head is None else activation[:, head]))
            continue
        for name, offset in expand_positions(overwrite.positions, base_template.template):
            at_base = _index(base_template, name, offset, overwrite.positions)
            at_source = _index(source_template, name, offset, overwrite.positions)
            writes.append(_Write(kind, layer, row, at_base, head, activation[at_source] if head is None else activation[at_source, head]))
    return writes


def _index(template: BoundTemplate, name: str, offset: int, positions: tuple[ir.Position, ...]) -> int:
    """The token index of a named position in one template, checked against its length (an offset
    past either end would wrap around, or fail, instead of naming a token)."""
    index = template.positions[name] + offset
    if not 0 <= index < template.seq_len:
        raise DataError(
            f"position {name}{offset:+d} falls outside the prompts of template {template.template!r} ({template.seq_len} tokens)",
            positions[0].span,
            "use a smaller offset",
        )
    return index


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
    """One hook for every write into one activation: the writes at one position and those of every
    position go in as two indexed assignments."""
    # One value per site: where two named positions of a carrier fall on one token of the base but
    # on two of the source, the later position in the carrier's list gives it.
    at_one = list({(w.row, w.index, w.head): w for w in writes if w.index is not None}.values())
    at_all = list({(w.row, w.head): w for w in writes if w.index is None}.values())

    def assign(patched: torch.Tensor, group: list[_Write]) -> None:
        if not group:
            return
        rows = torch.tensor([w.row for w in group])
        values = torch.stack([w.value for w in group]).to(patched.device, patched.dtype)
        heads = torch.tensor([w.head if w.head is not None else 0 for w in group])
        per_head = group[0].head is not None
        if group[0].index is None:
            if per_head:
                patched[rows, :, heads] = values
            else:
                patched[rows] = values
            return
        indices = torch.tensor([w.index for w in group])
        if per_head:
            patched[rows, indices, heads] = values
        else:
            patched[rows, indices] = values

    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        patched = activation.clone()
        assign(patched, at_all)  # every position first: a named position's write then wins
        assign(patched, at_one)
        return patched

    return hook
