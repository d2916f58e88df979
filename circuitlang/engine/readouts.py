"""Metric readouts: each metric, per prompt, from the logits at the `end` position.

Each metric says which logits it needs (`Readout.columns`: two columns for a logit difference; the
whole vocabulary for anything built on probabilities, which need the softmax's denominator) and
how to turn them into one number per prompt (`Readout.reduce`).

- logit_diff(a, w): logit[a] - logit[w]
- prob_diff(A, W):  sum of p over the token set A minus sum over W (greater-than: years after YY
  minus years up to YY)
- logprob(a):       log p(a)
- accuracy(a):      1 if a is the top-1 token, else 0
- kl:               KL(clean || run) between the clean model's next-token distribution and this run's
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from circuitlang.engine.bind import BoundTemplate
from circuitlang.ir import models as ir


@dataclass(frozen=True)
class Readout:
    """What the metric reads at the `end` position: `columns(template)` gives per-row token ids
    ([n, k]) or None for the full vocabulary; `reduce` turns those logits into one value per row."""

    columns: Callable[[BoundTemplate], torch.Tensor | None]
    reduce: Callable[[BoundTemplate, torch.Tensor, torch.Tensor], torch.Tensor]


CleanLogits = Callable[[BoundTemplate], torch.Tensor]  # [n, vocab] logits of the clean model at end


def readout_for(metric: ir.Metric, clean_logits: CleanLogits) -> Readout:
    return READOUTS[metric.name](metric, clean_logits)


def single_ids(template: BoundTemplate, field: str) -> torch.Tensor:
    """[n] token ids of a single-token answer field."""
    return torch.tensor([ids[0] for ids in template.answers[field]], dtype=torch.long)


def _logit_diff(metric: ir.Metric) -> Readout:
    answer, wrong = metric.args

    def columns(template: BoundTemplate) -> torch.Tensor:
        return torch.stack([single_ids(template, answer), single_ids(template, wrong)], dim=1)

    return Readout(columns, lambda template, logits, rows: logits[:, 0] - logits[:, 1])


def _logprob(metric: ir.Metric) -> Readout:
    (answer,) = metric.args

    def reduce(template: BoundTemplate, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ids = single_ids(template, answer)[rows].to(logits.device)
        return logits.log_softmax(-1).gather(1, ids[:, None])[:, 0]

    return Readout(lambda template: None, reduce)


def _accuracy(metric: ir.Metric) -> Readout:
    (answer,) = metric.args

    def reduce(template: BoundTemplate, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ids = single_ids(template, answer)[rows].to(logits.device)
        return (logits.argmax(-1) == ids).to(logits.dtype)

    return Readout(lambda template: None, reduce)


def token_set_mask(template: BoundTemplate, field: str, vocab: int) -> torch.Tensor:
    """[n, vocab] boolean membership of each prompt's token set."""
    mask = torch.zeros(template.n_prompts, vocab, dtype=torch.bool)
    for row, ids in enumerate(template.answers[field]):
        mask[row, list(ids)] = True
    return mask


def _prob_diff(metric: ir.Metric) -> Readout:
    above, below = metric.args

    def reduce(template: BoundTemplate, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(-1)
        vocab = logits.shape[-1]
        plus = token_set_mask(template, above, vocab)[rows].to(logits.device)
        minus = token_set_mask(template, below, vocab)[rows].to(logits.device)
        return (probs * plus).sum(-1) - (probs * minus).sum(-1)

    return Readout(lambda template: None, reduce)


def _kl(clean_logits: CleanLogits) -> Readout:
    def reduce(template: BoundTemplate, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        clean = clean_logits(template)[rows].to(logits.device).log_softmax(-1)
        run = logits.log_softmax(-1)
        return (clean.exp() * (clean - run)).sum(-1)

    return Readout(lambda template: None, reduce)


# The implementation of each metric of the language (ir.stdlib.METRICS); tests check both list the same.
READOUTS: dict[str, Callable[[ir.Metric, CleanLogits], Readout]] = {
    "logit_diff": lambda metric, clean: _logit_diff(metric),
    "prob_diff": lambda metric, clean: _prob_diff(metric),
    "logprob": lambda metric, clean: _logprob(metric),
    "accuracy": lambda metric, clean: _accuracy(metric),
    "kl": lambda metric, clean: _kl(clean),
}
