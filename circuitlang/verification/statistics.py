"""Bootstrap confidence intervals over prompts.

Every reported number is a function of the means, over prompts, of a few per-prompt arrays (the
metric of F(M), F(C), F(empty), C\\K, M\\K, ...). One set of prompt resamples is drawn per prompt
set and shared by every number, so numbers stay consistent with each other across resamples.
The interval is the percentile interval of the statistic over the resamples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from circuitlang.results.estimate import Estimate


@dataclass(frozen=True)
class Resamples:
    """Prompt indices of each bootstrap resample: [resamples, n_prompts]."""

    indices: np.ndarray
    confidence: float
    # Each per-prompt array's resample means, computed once: the same arrays (F(M), F(empty), ...)
    # enter many numbers (the bootstrap was most of a cached verify's time). Keyed by the array's
    # contents, so an equal array gets the same bits and a changed one is computed again.
    _means: dict[tuple[str, tuple[int, ...], bytes], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def draw(cls, n_prompts: int, resamples: int, confidence: float, seed: int) -> "Resamples":
        rng = np.random.default_rng(seed)
        return cls(rng.integers(0, n_prompts, size=(resamples, n_prompts)), confidence)

    def estimate(self, per_prompt: dict[str, np.ndarray], statistic: Callable[[dict[str, np.ndarray]], np.ndarray]) -> Estimate:
        """`statistic` maps {name: mean(s)} to a value; it is applied to the full-sample means and
        to every resample's means (arrays of shape [resamples]) at once."""
        point = float(statistic({k: np.asarray(v.mean()) for k, v in per_prompt.items()}))
        boot = statistic({k: self._resample_means(v) for k, v in per_prompt.items()})
        alpha = (1 - self.confidence) / 2
        finite = boot[np.isfinite(boot)]
        if finite.size == 0:
            return Estimate(value=point, low=float("nan"), high=float("nan"))
        low, high = np.quantile(finite, [alpha, 1 - alpha])
        return Estimate(value=point, low=float(low), high=float(high))

    def _resample_means(self, values: np.ndarray) -> np.ndarray:
        """values[indices].mean(-1): [resamples], the same bits however often it is asked for."""
        values = np.ascontiguousarray(values)
        key = (values.dtype.str, values.shape, hashlib.sha256(values.tobytes()).digest())  # (the digest: keys stay small)
        if key not in self._means:
            means = values[self.indices].mean(-1)
            means.setflags(write=False)  # shared by every number that reads it: never changed in place
            self._means[key] = means
        return self._means[key]


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (reported, never silently inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / np.where(denominator != 0, denominator, 1), np.nan)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks, tied values sharing their
    mean rank (how edge scores are compared with exact effects)."""
    return float(np.corrcoef(_ranks(np.asarray(a, dtype=float)), _ranks(np.asarray(b, dtype=float)))[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
