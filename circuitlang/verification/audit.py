"""The audit's numbers: the strongest paths from outside the circuit into it (numpy only).

Each tested pair S -> R (S outside the circuit, R a circuit node or the logits) has the effect of
a declared edge (verify/edges.py): (F(M) - F(M; S -> R patched)) / |F(M)|. The report keeps the
strongest pairs by |effect| (missing edges), and each sender patched into every receiver at once
(missing nodes): the parts of the model the hypothesis says nothing about, ranked by how much of
the metric flows through them into it.
"""

from __future__ import annotations

import numpy as np

from circuitlang.results.report import Audit, MissingEdge
from circuitlang.verification.statistics import Resamples, ratio

SHOWN = 10  # rows kept of each list


def effect_estimate(model: np.ndarray, patched: np.ndarray, resamples: Resamples):
    return resamples.estimate({"m": model, "p": patched}, lambda a: ratio(a["m"] - a["p"], np.abs(a["m"])))


def strongest(model: np.ndarray, patched: dict[tuple[str, str], np.ndarray], resamples: Resamples) -> list[MissingEdge]:
    """The SHOWN pairs with the largest |effect| (ranked on the full sample), with their intervals."""
    point = {pair: abs(float(model.mean() - values.mean())) for pair, values in patched.items()}
    ranked = sorted(patched, key=lambda pair: -point[pair])[:SHOWN]
    return [MissingEdge(sender=s, receiver=r, effect=effect_estimate(model, patched[(s, r)], resamples)) for s, r in ranked]


def audit_report(
    model: np.ndarray, edges: dict[tuple[str, str], np.ndarray], nodes: dict[tuple[str, str], np.ndarray], resamples: Resamples, runs: int
) -> Audit:
    return Audit(ran=True, runs=runs, pairs=len(edges), edges=strongest(model, edges, resamples), nodes=strongest(model, nodes, resamples))
