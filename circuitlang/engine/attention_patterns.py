"""Attention patterns of chosen heads on the clean prompts: the mean over a prompt set, between the
positions a `lens.Column` names in every template, or every token of one prompt.

The model runs on the clean tokens with a hook on each needed layer's pattern (query heads'
attention, [n, head, query, key], after the softmax), batch by batch, and stops once the last
needed layer's pattern is read: nothing after it is computed.
"""

from __future__ import annotations

from typing import Sequence

import torch

from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.family import Family
from circuitlang.engine.lens import Column
from circuitlang.engine.models import LoadedModel

Head = tuple[int, int]  # (layer, head)


class _ReadEveryPattern(Exception):
    """Raised by the hook on the last needed pattern: the forward stops there."""


@torch.no_grad()
def mean_attention(model: LoadedModel, bound: BoundPromptSet, heads: Sequence[Head], read: Sequence[Column], batch_size: int) -> torch.Tensor:
    """float64 [heads, query column, key column]: each head's attention from one column's token
    to another's, averaged over every prompt of the set."""
    total = torch.zeros(len(heads), len(read), len(read), dtype=torch.float64)
    for t, template in enumerate(bound.templates):
        index = torch.tensor([column.indices[t] for column in read])
        for start in range(0, template.n_prompts, batch_size):
            patterns = _patterns(model, template.clean[start : start + batch_size], {layer for layer, _ in heads})
            for i, (layer, head) in enumerate(heads):
                total[i] += patterns[layer][:, head][:, index][:, :, index].double().sum(0).cpu()
    return total / bound.n_prompts


@torch.no_grad()
def prompt_attention(model: LoadedModel, tokens: torch.Tensor, heads: Sequence[Head]) -> torch.Tensor:
    """float64 [heads, query, key]: each head's attention on one prompt's tokens ([seq])."""
    patterns = _patterns(model, tokens[None], {layer for layer, _ in heads})
    return torch.stack([patterns[layer][0, head] for layer, head in heads]).double().cpu()


def _patterns(model: LoadedModel, tokens: torch.Tensor, layers: set[int]) -> dict[int, torch.Tensor]:
    recorded: dict[int, torch.Tensor] = {}
    last = max(layers)

    def recorder(layer: int):
        def hook(pattern: torch.Tensor, hook: object) -> torch.Tensor:
            recorded[layer] = pattern.detach()
            if layer == last:
                raise _ReadEveryPattern
            return pattern

        return hook

    with model.bridge.hooks(fwd_hooks=[(Family.pattern(layer), recorder(layer)) for layer in sorted(layers)]):
        try:
            model.bridge(tokens.to(model.device))
        except _ReadEveryPattern:
            pass
    missing = sorted(layers - set(recorded))
    if missing:  # an architecture whose hook points we do not know
        raise RuntimeError(f"the model's forward did not reach the attention pattern of layer {missing[0]}")
    return recorded
