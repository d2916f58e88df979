"""Declared edges as claims: each edge's effect on the metric, from path patching (numpy only).

An edge S -> R is tested by patching S's output from the paired corrupt prompt into R's input
along the direct path only (docs/verify.md): the metric falls by what the edge carries. Its effect
is that fall as a fraction of the full model's metric, with the same prompt resamples as every
other number:

    effect(S -> R) = (F(M) - F(M; S -> R patched)) / |F(M)|

An edge is needed when its interval excludes 0 and |effect| >= minimality_threshold: as for
nodes, a declared edge that carries nothing measurable is flagged, whatever its sign.
"""

from __future__ import annotations

import numpy as np

from circuitlang.ir import models as ir
from circuitlang.results.report import EdgeEffect
from circuitlang.results.estimate import Estimate
from circuitlang.verification.statistics import Resamples, ratio


def edge_effect(edge: ir.Edge, model: np.ndarray, patched: np.ndarray, resamples: Resamples, threshold: float) -> EdgeEffect:
    """`model`, `patched`: the metric per prompt of the full model and of the patched run."""
    effect = resamples.estimate({"m": model, "p": patched}, lambda a: ratio(a["m"] - a["p"], np.abs(a["m"])))
    needed = not effect.low <= 0 <= effect.high and abs(effect.value) >= threshold
    return EdgeEffect(edge=str(edge), line=edge.span.line, effect=effect, needed=needed)


def untested(edge: ir.Edge, why: str) -> EdgeEffect:
    return EdgeEffect(edge=str(edge), line=edge.span.line, effect=None, needed=False, note=why)


def magnitude(estimate: Estimate) -> Estimate:
    """|x| with its interval: abs is monotone on each side of 0, so the percentile interval maps."""
    low, high = sorted((abs(estimate.low), abs(estimate.high)))
    if estimate.low <= 0 <= estimate.high:
        low = 0.0
    return Estimate(value=abs(estimate.value), low=low, high=high)
