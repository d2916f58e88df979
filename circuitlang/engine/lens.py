"""The logit lens and direct logit attribution, on the clean prompts of a bound prompt set.

Takes an `Engine` (its clean cache already holds the residual stream entering every layer, the
residual entering the final norm, every head's z and every MLP's output) and the positions to read
(`Column`s); gives one number per prompt, stage or node, and position.

- Logit lens: the residual stream after the embeddings and after each layer, read as the model
  reads its last one: through the final norm (its scale computed from that residual, as the model
  does) and the unembedding, then the spec's metric (`Readout`) on those logits. At the last
  stage and the `end` position it is the model's own metric on the clean run.
- Direct contributions: every piece the final residual is the sum of (the embeddings, each head's
  z W_O, each layer's attention bias b_O, each MLP's output), read through the final norm with its
  scale frozen at the clean run's value at that position (the norm is then linear), and along the
  metric's direction in the unembedding (answer minus wrong token; the mean over a token set).
  The norm's bias and the unembedding's bias along the direction are one more piece, "bias". The
  pieces add up exactly to the logit difference (for logit_diff: to the metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitlang.engine import forward
from circuitlang.engine.bind import BoundPromptSet, BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.models import unembedding
from circuitlang.engine.runner import Engine
from circuitlang.engine.scores import final_norm_weight, norm_eps, rms_norm
from circuitlang.ir.stdlib import METRICS

EMBED, FINAL_BIAS = "embed", "bias"


@dataclass(frozen=True)
class Column:
    """A position read in every template of a prompt set: the named positions on it (or `#i`, a
    token index that no name marks), an example token, and its token index in each template."""

    names: tuple[str, ...]
    example: str
    indices: tuple[int, ...]  # one per template, in the prompt set's template order

    @property
    def label(self) -> str:
        return " / ".join(self.names)


def columns(bound: BoundPromptSet, tokenizer: Any, every_token: bool, prompt_row: tuple[int, int] | None = None) -> tuple[Column, ...]:
    """Named positions present in every template (names on one token in every template share a
    column), in token order; or with `every_token` each token index of a one-template set, named
    where a name marks it. The example tokens come from the first prompt, or from `prompt_row`
    (template index, row) when one prompt is read (with `every_token`: that prompt's every token,
    column i being token i, whatever the other templates)."""
    templates = bound.templates
    at_template, at_row = prompt_row or (0, 0)
    first = templates[at_template]

    def example(index: int) -> str:
        return str(tokenizer.decode([int(first.clean[at_row, index])]))

    if every_token:
        if len(templates) != 1 and prompt_row is None:
            raise ValueError(f"prompt set '{bound.name}' has {len(templates)} templates; a token index means a different token in each")
        names_at: dict[int, list[str]] = {}
        for name in _name_order(first):
            names_at.setdefault(first.positions[name], []).append(name)
        return tuple(Column(tuple(names_at.get(i, [f"#{i}"])), example(i), (i,)) for i in range(first.seq_len))
    shared = [name for name in _name_order(templates[0]) if all(name in t.positions for t in templates)]
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in shared:
        groups.setdefault(tuple(t.positions[name] for t in templates), []).append(name)
    ordered = sorted(groups.items(), key=lambda item: item[0][at_template])
    return tuple(Column(tuple(names), example(indices[at_template]), indices) for indices, names in ordered)


def _name_order(template: BoundTemplate) -> list[str]:
    slots = [name for name in template.positions if name not in ("bos", "end")]
    present = ["bos"] if "bos" in template.positions else []
    return [*present, *sorted(slots, key=lambda s: template.positions[s]), "end"]


def stage_labels(n_layers: int) -> tuple[str, ...]:
    """The residual stream read by the lens: after the embeddings, then after each layer."""
    return (EMBED, *(f"layer {layer}" for layer in range(n_layers)))


@torch.no_grad()
def logit_lens(engine: Engine, read: tuple[Column, ...]) -> torch.Tensor:
    """The metric read from the residual stream after each stage, per prompt: float64
    [n_prompts, n_layers + 1, columns] (prompts in dataset order)."""
    readout = engine.readout()
    out = torch.empty(engine.bound.n_prompts, engine.n_layers + 1, len(read), dtype=torch.float64)
    for t, template in enumerate(engine.bound.templates):
        clean = engine.clean_cache(template)
        streams = (*clean.resid_pre, clean.final_residual)
        ids = readout.columns(template)
        dataset_rows = torch.tensor(template.prompt_indices)
        for chunk in forward.row_chunks(template.n_prompts, engine.batch_size):
            rows = torch.tensor(chunk)
            for s, stream in enumerate(streams):
                for c, column in enumerate(read):
                    logits = engine.logits_at(stream[rows, column.indices[t]], None if ids is None else ids[rows])
                    out[dataset_rows[rows], s, c] = readout.reduce(template, logits, rows).double().cpu()
    return out


def contribution_labels(n_layers: int, n_heads: int) -> tuple[str, ...]:
    """The pieces of the final residual: embed, then per layer its heads L.H, `attn bias L` and
    `mlp L`, then `bias` (the final norm's and the unembedding's)."""
    labels = [EMBED]
    for layer in range(n_layers):
        labels += [f"{layer}.{head}" for head in range(n_heads)] + [f"attn bias {layer}", f"mlp {layer}"]
    return (*labels, FINAL_BIAS)


def why_no_contributions(engine: Engine) -> str | None:
    """Why direct contributions are not defined for this model and metric (None when they are)."""
    if not engine.bound.metric.args:
        return f"the metric {engine.bound.metric.name} reads no answer token, so there is no direction in the unembedding to read along"
    return engine.model.family.why_no_edges()


@torch.no_grad()
def direct_contributions(engine: Engine, read: tuple[Column, ...]) -> torch.Tensor:
    """Each piece's direct contribution along the metric's direction, per prompt: float64
    [n_prompts, pieces (`contribution_labels`), columns]."""
    why = why_no_contributions(engine)
    if why:
        raise ValueError(why)
    labels = contribution_labels(engine.n_layers, engine.n_heads)
    out = torch.empty(engine.bound.n_prompts, len(labels), len(read), dtype=torch.float64)
    for t, template in enumerate(engine.bound.templates):
        rows = torch.tensor(template.prompt_indices)
        for c, column in enumerate(read):
            out[rows, :, c] = _pieces_at(engine, template, column.indices[t]).double().cpu()
    return out


def _pieces_at(engine: Engine, template: BoundTemplate, position: int) -> torch.Tensor:
    """[n, pieces] at one token index, in the order of `contribution_labels`."""
    model, bridge = engine.model, engine.model.bridge
    clean = engine.clean_cache(template)
    direction, offset = _direction(engine, template)  # [n, D], [n]
    read = _frozen_reader(bridge, clean.final_residual[:, position], direction)
    pieces = [read(clean.resid_pre[0][:, position, None])]
    for layer in range(engine.n_layers):
        heads = torch.einsum("nhd,hde->nhe", clean.acts["z"][layer][:, position], model.attention.W_O[layer])
        bias = Family.output_projection(bridge, layer)(torch.zeros(1, heads.shape[1] * model.attention.W_O[layer].shape[1], device=heads.device))
        pieces += [read(heads), read(bias.expand(heads.shape[0], -1)[:, None]), read(clean.acts["mlp_out"][layer][:, position, None])]
    zeros = torch.zeros(1, direction.shape[-1], device=direction.device, dtype=direction.dtype)
    pieces.append((Family.final_norm(bridge)(zeros) * direction).sum(-1)[:, None] + offset[:, None])
    return torch.cat(pieces, dim=1)


def _frozen_reader(bridge: Any, final: torch.Tensor, direction: torch.Tensor):
    """part [n, k, D] -> [n, k]: the part through the final norm with the clean run's scale at
    this position (the norm's bias left out), along `direction`."""
    centring = not rms_norm(bridge)  # LayerNorm subtracts the mean; RMSNorm does not
    if centring:
        final = final - final.mean(-1, keepdim=True)
    scale = final.pow(2).mean(-1, keepdim=True).add(norm_eps(bridge)).sqrt()[:, None]  # [n, 1, 1]
    weight = final_norm_weight(bridge, final.shape[-1]).to(final.device)

    def read(part: torch.Tensor) -> torch.Tensor:
        if centring:
            part = part - part.mean(-1, keepdim=True)
        return ((part / scale) * weight * direction[:, None]).sum(-1)

    return read


def _direction(engine: Engine, template: BoundTemplate) -> tuple[torch.Tensor, torch.Tensor]:
    """The metric's direction in the unembedding ([n, D]: the answer's column, minus the wrong
    one's for a contrast; the mean column of a token set) and the unembedding's bias along it ([n])."""
    bridge = engine.model.bridge
    w_u, b_u = unembedding(bridge)
    b_u = b_u if b_u is not None else torch.zeros(w_u.shape[1], device=w_u.device, dtype=w_u.dtype)
    metric = engine.bound.metric

    def mean_column(field: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = template.answers[field]
        return torch.stack([w_u[:, list(i)].mean(-1) for i in ids]), torch.stack([b_u[list(i)].mean() for i in ids])

    direction, offset = mean_column(metric.args[0])
    if METRICS[metric.name].contrast:
        minus, minus_offset = mean_column(metric.args[1])
        direction, offset = direction - minus, offset - minus_offset
    return direction, offset
