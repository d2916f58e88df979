"""Binding: datasets + the model's tokenizer -> token tensors, resolved positions, answer ids.

Prompts are grouped by template. Within a template every clean and corrupt prompt must have the
same token length and put every slot on the same token, so that "position s2 of this template"
means one token index: a prompt that breaks this is an error naming it, never a silent
misalignment. Answers must be single tokens (each member of a token set too). Those checks live in
`data.tokenization`, shared with `check`; this module only turns their result into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitlang.data.datasets import Dataset
from circuitlang.data.tokenization import TokenizedTemplate, tokenize_dataset
from circuitlang.errors import raise_if_any
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


def bind(spec: ir.Spec, datasets: tuple[Dataset, ...], tokenizer: Any, prepend_bos: bool) -> tuple[BoundPromptSet, ...]:
    """Bind every prompt set with the model's (Hugging Face fast) tokenizer; all errors together."""
    backend = tokenizer.backend_tokenizer  # the `tokenizers.Tokenizer` that `check` reads from tokenizer.json
    bos_id = tokenizer.bos_token_id if prepend_bos else None
    bound, errors = [], []
    for dataset in datasets:
        prompt_set = spec.prompt_set(dataset.name)
        metric = spec.metric_for(prompt_set)
        templates, problems = tokenize_dataset(dataset, prompt_set, spec.lists, metric.args, backend, bos_id)
        errors.extend(problems)
        bound.append(BoundPromptSet(dataset.name, metric, tuple(_as_tensors(t) for t in templates), dataset.answer_prefix))
    raise_if_any(errors)
    return tuple(bound)


def _as_tensors(template: TokenizedTemplate) -> BoundTemplate:
    corrupt = None if template.corrupt is None else torch.tensor(template.corrupt, dtype=torch.long)
    return BoundTemplate(
        template.template, template.prompt_indices, torch.tensor(template.clean, dtype=torch.long), corrupt, template.positions, template.answers
    )
