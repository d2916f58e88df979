"""`attention`: attention patterns of chosen heads on one prompt set, engine results -> AttentionResult.

The workflow behind `circuitlang attention` and `circuitlang.attention`: the mean pattern over
the prompt set between its positions (every token with one template, the named positions with
several), or one prompt's pattern over its every token (`prompt`, its index in the set, 0-based as
in `prompt #3 of digits`). Nothing here prints or exits; a head the model lacks or a prompt index
out of range raises `CannotRead` (workflows.lens) with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from circuitlang.engine import attention_patterns
from circuitlang.engine import lens as engine_lens
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.session import Session
from circuitlang.results.lens import POSITION_KINDS, AttentionPattern, AttentionResult
from circuitlang.workflows.lens import CannotRead, check_prompt_set, position_kind, read_context

Head = tuple[int, int]  # (layer, head)


@dataclass(frozen=True)
class AttentionRequest:
    prompt_set: str
    heads: tuple[Head, ...]
    prompt: int | None = None  # one prompt's index in the set, or None for the mean
    positions: str | None = None  # "tokens", "named", or None (as workflows.lens.position_kind)


def attention(session: Session, request: AttentionRequest) -> AttentionResult:
    check_prompt_set(session.spec, request.prompt_set)
    check_heads(request.heads, session.shape.n_layers, session.shape.n_heads, session.spec.model.name)
    bound = session.bound[request.prompt_set]
    model = session.model
    if request.prompt is None:
        kind = position_kind(bound, request.positions)
        read = engine_lens.columns(bound, model.tokenizer, kind == "tokens")
        values = attention_patterns.mean_attention(model, bound, request.heads, read, session.batch_size)
        text = _first_text(session, bound)
    else:
        template, row = prompt_row(bound, request.prompt)
        kind = _one_prompt_positions(request.positions)
        read = engine_lens.columns(bound, model.tokenizer, kind == "tokens", (template, row))
        tokens = bound.templates[template].clean[row]
        index = list(range(len(read))) if kind == "tokens" else [column.indices[template] for column in read]
        values = attention_patterns.prompt_attention(model, tokens, request.heads)[:, index][:, :, index]
        text = _prompt_text(session, request.prompt_set, request.prompt)
    return AttentionResult(
        read_context(session.spec, bound),
        tuple(column.label for column in read),
        tuple(column.example for column in read),
        kind,
        request.prompt,
        text,
        tuple(AttentionPattern(f"{layer}.{head}", values[i].numpy()) for i, (layer, head) in enumerate(request.heads)),
    )


def check_heads(heads: Sequence[Head], n_layers: int, n_heads: int, model: str) -> None:
    if not heads:
        raise CannotRead("no head given: name heads as layer.head, e.g. 0.1")
    for layer, head in heads:
        if not 0 <= layer < n_layers:
            raise CannotRead(f"head {layer}.{head}: layer {layer} does not exist: {model} has layers 0-{n_layers - 1}")
        if not 0 <= head < n_heads:
            raise CannotRead(f"head {layer}.{head}: head {head} does not exist: {model} has heads 0-{n_heads - 1} in every layer")


def check_prompt(index: int, n_prompts: int, prompt_set: str) -> None:
    if not 0 <= index < n_prompts:
        raise CannotRead(f"prompt {index}: prompt set '{prompt_set}' has {n_prompts} prompts, numbered 0-{n_prompts - 1}")


def prompt_row(bound: BoundPromptSet, index: int) -> tuple[int, int]:
    """(template, row) of the prompt at `index` in the set."""
    check_prompt(index, bound.n_prompts, bound.name)
    for t, template in enumerate(bound.templates):
        if index in template.prompt_indices:
            return t, template.prompt_indices.index(index)
    raise AssertionError(f"prompt {index} is in no template of {bound.name}")  # bind puts every prompt in one


def _one_prompt_positions(asked: str | None) -> str:
    """One prompt's every token by default; its named positions when asked."""
    if asked is not None and asked not in POSITION_KINDS:
        raise CannotRead(f"positions {asked!r}: choose {' or '.join(POSITION_KINDS)}")
    return asked or "tokens"


def _prompt_text(session: Session, prompt_set: str, index: int) -> str:
    dataset = next(d for d in session.datasets if d.name == prompt_set)
    return dataset.clean[index].text


def _first_text(session: Session, bound: BoundPromptSet) -> str:
    first = bound.templates[0].prompt_indices[0]
    return _prompt_text(session, bound.name, first)
