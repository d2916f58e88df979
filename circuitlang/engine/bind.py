"""Binding: datasets + the model's tokenizer -> token tensors, resolved positions, answer ids.

Prompts are grouped by template. Within a template every clean and corrupt prompt must have the
same token length and put every slot on the same token, so that "position s2 of this template"
means one token index: a prompt that breaks this is an error naming it, never a silent
misalignment. Answers must be single tokens (each member of a token set too). Those checks live in
`data.tokenization`, shared with `check`; this module only turns their result into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from circuitlang.data.datasets import Dataset
from circuitlang.data.tokenization import TokenizedTemplate, TokenizerPanic, model_error_of, plain, tokenize_dataset
from circuitlang.errors import raise_if_any
from circuitlang.ir import models as ir

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BoundTemplate:
    """The prompts of one template, as tensors (as numpy arrays where no model is loaded: a verify
    answered from the result cache). Row i of `clean` pairs with row i of `corrupt`."""

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
    # the `tokenizers.Tokenizer` that `check` reads from tokenizer.json
    return _bind(spec, datasets, tokenizer.backend_tokenizer, tokenizer.bos_token_id if prepend_bos else None, _as_tensors)


def bind_arrays(spec: ir.Spec, datasets: tuple[Dataset, ...], backend: Any, bos_id: int | None) -> tuple[BoundPromptSet, ...]:
    """Bind as `bind` does, with a `tokenizers.Tokenizer`, into numpy arrays (no torch): the token
    ids of the result cache's keys, when no model is loaded."""
    return _bind(spec, datasets, backend, bos_id, _as_arrays)


def _bind(
    spec: ir.Spec, datasets: tuple[Dataset, ...], backend: Any, bos_id: int | None, make: Callable[[TokenizedTemplate], BoundTemplate]
) -> tuple[BoundPromptSet, ...]:
    bound, errors = [], []
    backend = plain(backend)
    for dataset in datasets:
        prompt_set = spec.prompt_set(dataset.name)
        metric = spec.metric_for(prompt_set)
        try:
            templates, problems = tokenize_dataset(dataset, prompt_set, spec.lists, metric.args, backend, bos_id)
        except TokenizerPanic as panic:
            raise model_error_of(panic, spec.model) from None
        errors.extend(problems)
        bound.append(BoundPromptSet(dataset.name, metric, tuple(make(t) for t in templates), dataset.answer_prefix))
    raise_if_any(errors)
    return tuple(bound)


def _as_tensors(template: TokenizedTemplate) -> BoundTemplate:
    import torch

    corrupt = None if template.corrupt is None else torch.tensor(template.corrupt, dtype=torch.long)
    return BoundTemplate(
        template.template, template.prompt_indices, torch.tensor(template.clean, dtype=torch.long), corrupt, template.positions, template.answers
    )


def _as_arrays(template: TokenizedTemplate) -> BoundTemplate:
    corrupt = None if template.corrupt is None else np.array(template.corrupt, dtype=np.int64)
    clean = np.array(template.clean, dtype=np.int64)
    return BoundTemplate(template.template, template.prompt_indices, clean, corrupt, template.positions, template.answers)  # type: ignore[arg-type]
