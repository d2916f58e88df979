"""The bootstrap's resample means (verification/statistics.py)."""

from __future__ import annotations

import numpy as np


def test_resample_means_are_computed_once_per_array_and_equal_the_direct_bootstrap():
    """The resample means of an array are remembered by its contents: the interval is the one
    computed directly, an equal array reuses the bits, a changed one is computed again."""
    from circuitlang.verification.statistics import Resamples

    resamples = Resamples.draw(n_prompts=40, resamples=500, confidence=0.95, seed=3)
    values = np.random.default_rng(0).normal(size=40)
    direct = np.quantile(values[resamples.indices].mean(-1), [0.025, 0.975])
    first = resamples.estimate({"a": values}, lambda means: means["a"])
    assert (first.low, first.high) == (float(direct[0]), float(direct[1]))
    again = resamples.estimate({"a": values.copy(), "b": values}, lambda means: means["a"] - means["b"])
    assert (again.low, again.high) == (0.0, 0.0) and len(resamples._means) == 1  # one array's means, shared
    changed = values.copy()
    changed[0] += 1.0
    moved = resamples.estimate({"a": changed}, lambda means: means["a"])
    expected = np.quantile(changed[resamples.indices].mean(-1), [0.025, 0.975])
    assert (moved.low, moved.high) == (float(expected[0]), float(expected[1])) and len(resamples._means) == 2
