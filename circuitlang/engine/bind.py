"""Binding: datasets + tokenizer -> token tensors, resolved positions and answer token ids.

Prompts are grouped by template. Within a template every clean and corrupt prompt must have the
same token length and put every slot on the same token, so that "position s2 of this template"
means one token index: a prompt that breaks this is an error naming it, never a silent
misalignment. Answers must be single tokens (each member of a token set too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitlang.data.datasets import Dataset
from circuitlang.data.positions import slot_token_indices
from circuitlang.data.prompts import Prompt
from circuitlang.errors import DataError, raise_if_any
from circuitlang.ir import models as ir


@dataclass(frozen=True)
class BoundTemplate:
    """The prompts of one template, as tensors. Row i of `clean` pairs with row i of `corrupt`."""

    template: str
    prompt_indices: tuple[int, ...]  # rows -> index in the dataset
    clean: torch.Tensor  # [n, seq] token ids
    corrupt: torch.Tensor | None  # [n, seq] or None without a corruption
    positions: dict[str, int]  # slot / end / bos -> token index, the same for every row
    answers: dict[str, tuple[tuple[int, ...], ...]]  # field -> per row, its token id(s)

    @property
    def n_prompts(self) -> int:
        return int(self.clean.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.clean.shape[1])


@dataclass(frozen=True)
class BoundPromptSet:
    name: str
    metric: ir.Metric
    templates: tuple[BoundTemplate, ...]
    answer_prefix: str = " "

    @property
    def n_prompts(self) -> int:
        return sum(t.n_prompts for t in self.templates)


def bind(spec: ir.Spec, datasets: tuple[Dataset, ...], tokenizer: object, prepend_bos: bool) -> tuple[BoundPromptSet, ...]:
    bound, errors = [], []
    for dataset in datasets:
        metric = spec.metric_for(spec.prompt_set(dataset.name))
        try:
            bound.append(bind_dataset(dataset, metric, tokenizer, prepend_bos, spec.prompt_set(dataset.name).span))
        except DataError as error:
            errors.append(error)
    raise_if_any(errors)
    return tuple(bound)


def bind_dataset(dataset: Dataset, metric: ir.Metric, tokenizer: object, prepend_bos: bool,
                 span: ir.Span | None = None) -> BoundPromptSet:
    templates = []
    for number, template in enumerate(dataset.templates):
        rows = tuple(i for i, p in enumerate(dataset.clean) if p.template == number)
        templates.append(_bind_template(dataset, template, rows, metric, tokenizer, prepend_bos, span))
    return BoundPromptSet(dataset.name, metric, tuple(templates), dataset.answer_prefix)


def _bind_template(dataset: Dataset, template: str, rows: tuple[int, ...], metric: ir.Metric, tokenizer: object,
                   prepend_bos: bool, span: ir.Span | None) -> BoundTemplate:
    clean = [_tokenize(dataset.clean[i], tokenizer, prepend_bos, span) for i in rows]
    reference_ids, reference_positions = clean[0]
    for i, (ids, positions) in zip(rows, clean):
        _same_shape(dataset.clean[i], ids, positions, dataset.clean[rows[0]], reference_ids, reference_positions, span)
    corrupt = None
    if dataset.corrupt:
        tokenized = [_tokenize(dataset.corrupt[i], tokenizer, prepend_bos, span) for i in rows]
        for i, (ids, positions) in zip(rows, tokenized):
            _same_shape(dataset.corrupt[i], ids, positions, dataset.clean[i], reference_ids, reference_positions, span)
        corrupt = torch.tensor([ids for ids, _ in tokenized], dtype=torch.long)
    answers = {field: tuple(_answer_ids(dataset.clean[i], field, dataset.answer_prefix, tokenizer, span) for i in rows)
               for field in metric.args}
    return BoundTemplate(template, rows, torch.tensor([ids for ids, _ in clean], dtype=torch.long), corrupt,
                         reference_positions, answers)


def _tokenize(prompt: Prompt, tokenizer: object, prepend_bos: bool, span: ir.Span | None) -> tuple[list[int], dict[str, int]]:
    encoded = tokenizer(prompt.text, add_special_tokens=False, return_offsets_mapping=True)  # type: ignore[operator]
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    if prepend_bos:
        ids, offsets = [tokenizer.bos_token_id] + ids, [(0, 0)] + offsets  # type: ignore[attr-defined]
    try:
        positions = slot_token_indices(prompt, offsets, first_token=1 if prepend_bos else 0)
    except DataError as error:
        raise DataError(error.message, span, error.hint) from None
    return ids, positions


def _same_shape(prompt: Prompt, ids: list[int], positions: dict[str, int], reference: Prompt,
                reference_ids: list[int], reference_positions: dict[str, int], span: ir.Span | None) -> None:
    if len(ids) != len(reference_ids):
        raise DataError(f"{prompt.label}: {prompt.text!r} is {len(ids)} tokens, but {reference.label} "
                        f"({reference.text!r}) of the same template is {len(reference_ids)}", span,
                        "prompts of one template must tokenize to the same length: choose slot values that are "
                        "one token each (or the same number of tokens)")
    for slot, index in positions.items():
        if reference_positions.get(slot) != index:
            raise DataError(f"{prompt.label}: slot '{slot}' is token {index} in {prompt.text!r}, but token "
                            f"{reference_positions.get(slot)} in {reference.text!r}", span,
                            "every prompt of a template must put each slot on the same token")


def _answer_ids(prompt: Prompt, field: str, prefix: str, tokenizer: object, span: ir.Span | None) -> tuple[int, ...]:
    value = prompt.field(field)
    members = value if isinstance(value, tuple) else (value,)
    if not members:
        raise DataError(f"{prompt.label}: answer field '{field}' is an empty set", span, "check the answer range")
    ids = []
    for member in members:
        encoded = tokenizer(prefix + str(member), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        if len(encoded) != 1:
            pieces = [tokenizer.decode([t]) for t in encoded]  # type: ignore[attr-defined]
            raise DataError(f"{prompt.label}: answer {prefix + str(member)!r} ({field}) is {len(encoded)} tokens "
                            f"{pieces}, not one", span,
                            "the metric compares single next tokens: choose one-token answers, or change "
                            "`set answer_prefix`")
        ids.append(encoded[0])
    return tuple(ids)
