"""Faithfulness, completeness and minimality of a circuit C on one prompt set.

Definitions (docs/verify.md):
- F(X): the mean metric over prompts of variant X. M: the full model; C: the circuit with its
  complement ablated; empty: everything ablated.
- faithfulness = F(C) / F(M); normalized = (F(C) - F(empty)) / (F(M) - F(empty)).
- incompleteness(K) = |F(C\\K) - F(M\\K)| / |F(M)| for K in C, with K drawn at random (each node
  with probability 1/2, seeded), as each role class, and by greedy search (IOI appendix M): start
  from the empty set and add, step by step, the node that raises incompleteness most.
  Completeness reports the worst K and the mean over all K tried.
- minimality(v) = max over K in {empty, v's role class, random subsets of C\\{v}} of
  |F(C\\(K+v)) - F(C\\K)| / |F(M)|; v is needed when this reaches the threshold.
Every number carries a bootstrap interval over prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from circuitlang.compile.subsets import (
    BASELINES,
    COMPLETENESS,
    EMPTY,
    GREEDY,
    MINIMALITY,
    Nodes,
    completeness_sets,
    minimality_candidates,
    minimality_variants,
    nodes_of,
)
from circuitlang.ir import models as ir
from circuitlang.results.report import Completeness, Faithfulness, NodeMinimality, SubsetScore
from circuitlang.verification.statistics import Resamples, ratio

# evaluate(kind, removed sets) -> per-prompt metric [len(sets), n_prompts]; kind "C" or "M"
Evaluate = Callable[[str, list[Nodes]], np.ndarray]


@dataclass
class VariantBank:
    """Per-prompt metrics of C\\K and M\\K, evaluated in batches and remembered."""

    evaluate: Evaluate
    values: dict[tuple[str, Nodes], np.ndarray] = field(default_factory=dict)
    step: str = BASELINES  # the schedule step (compile.subsets) that new evaluations count towards
    executed: dict[str, int] = field(default_factory=dict)  # step -> variants evaluated

    def ensure(self, kind: str, sets: list[Nodes]) -> None:
        missing = list(dict.fromkeys(s for s in sets if (kind, s) not in self.values))
        if missing:
            self.executed[self.step] = self.executed.get(self.step, 0) + len(missing)
            for removed, row in zip(missing, self.evaluate(kind, missing)):
                self.values[(kind, removed)] = row

    def get(self, kind: str, removed: Nodes) -> np.ndarray:
        return self.values[(kind, removed)]


def node_label(node: ir.Node) -> str:
    return str(node)


@dataclass(frozen=True)
class Criteria:
    """Computes the three criteria from a bank of variant metrics."""

    circuit: ir.Circuit
    settings: ir.Settings
    bank: VariantBank
    resamples: Resamples
    empty: np.ndarray  # per-prompt metric of the empty circuit

    @property
    def nodes(self) -> list[ir.Node]:
        return nodes_of(self.circuit)

    def _arrays(self, **named: tuple[str, Nodes] | np.ndarray) -> dict[str, np.ndarray]:
        return {name: value if isinstance(value, np.ndarray) else self.bank.get(*value) for name, value in named.items()}

    def faithfulness(self) -> Faithfulness:
        self.bank.step = BASELINES
        self._ensure_pairs([EMPTY])
        return faithfulness_of(self.bank.get("M", EMPTY), self.bank.get("C", EMPTY), self.empty, self.resamples)

    # ---- completeness
    def completeness(self) -> Completeness:
        """The K fixed in advance first, then the greedy search (whose choices depend on them)."""
        self.fixed_completeness_sets()
        return self.greedy_completeness()

    def fixed_completeness_sets(self) -> None:
        """Schedule step `completeness`: C\\K and M\\K for the K drawn or named in advance."""
        self.bank.step = COMPLETENESS
        named = completeness_sets(self.circuit, self.settings)
        self._ensure_pairs([EMPTY] + [k for _, k in named])

    def greedy_completeness(self) -> Completeness:
        """Schedule step `completeness greedy`, after `fixed_completeness_sets`: the greedy search,
        then incompleteness over every K tried."""
        self.bank.step = GREEDY
        named = completeness_sets(self.circuit, self.settings) + self._greedy() or [("empty", EMPTY)]
        arrays = self._completeness_arrays([k for _, k in named])
        scores = [
            SubsetScore(nodes=sorted(map(node_label, k)), source=source, score=self.resamples.estimate(arrays, _incompleteness(i)))
            for i, (source, k) in enumerate(named)
        ]
        scores.sort(key=lambda s: -s.score.value)
        worst = self.resamples.estimate(arrays, lambda a: np.max([_incompleteness(i)(a) for i in range(len(named))], 0))
        mean = self.resamples.estimate(arrays, lambda a: np.mean([_incompleteness(i)(a) for i in range(len(named))], 0))
        return Completeness(worst=worst, worst_set=scores[0], mean=mean, sets=scores)

    def _ensure_pairs(self, sets: list[Nodes]) -> None:
        self.bank.ensure("C", sets)
        self.bank.ensure("M", sets)

    def _completeness_arrays(self, sets: list[Nodes]) -> dict[str, np.ndarray]:
        arrays = {"m": self.bank.get("M", EMPTY)}
        for i, k in enumerate(sets):
            arrays[f"c{i}"], arrays[f"m{i}"] = self.bank.get("C", k), self.bank.get("M", k)
        return arrays

    def _greedy(self) -> list[tuple[str, Nodes]]:
        """IOI appendix M: grow K one node at a time, each time by the node that raises
        incompleteness most (on the full sample)."""
        found: list[tuple[str, Nodes]] = []
        current: Nodes = EMPTY
        for step in range(min(self.settings.greedy_steps, len(self.nodes))):
            candidates = [current | {node} for node in self.nodes if node not in current]
            self._ensure_pairs(candidates)
            current = max(candidates, key=self._incompleteness_point)
            found.append((f"greedy step {step + 1}", current))
        return found

    def _incompleteness_point(self, removed: Nodes) -> float:
        m = self.bank.get("M", EMPTY).mean()
        return abs(self.bank.get("C", removed).mean() - self.bank.get("M", removed).mean()) / abs(m) if m else np.nan

    # ---- minimality
    def minimality(self) -> list[NodeMinimality]:
        self.bank.step = MINIMALITY
        self._ensure_pairs([EMPTY])
        roles = {member.node: member.role for member in self.circuit.nodes}
        candidates = minimality_candidates(self.circuit, self.settings)
        self.bank.ensure("C", [removed for _, removed in minimality_variants(candidates)])
        return [self._node_minimality(node, roles[node], candidates[node]) for node in self.nodes]

    def _node_minimality(self, node: ir.Node, role: str, sets: list[Nodes]) -> NodeMinimality:
        arrays = {"m": self.bank.get("M", EMPTY)}
        for i, k in enumerate(sets):
            arrays[f"with{i}"], arrays[f"without{i}"] = self.bank.get("C", k), self.bank.get("C", k | {node})

        def gap(i: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
            return lambda a: ratio(np.abs(a[f"without{i}"] - a[f"with{i}"]), np.abs(a["m"]))

        worst = max(range(len(sets)), key=lambda i: float(gap(i)({k: v.mean() for k, v in arrays.items()})))
        score = self.resamples.estimate(arrays, lambda a: np.max([gap(i)(a) for i in range(len(sets))], 0))
        return NodeMinimality(
            node=node_label(node),
            role=role,
            score=score,
            worst_set=sorted(map(node_label, sets[worst])),
            needed=score.value >= self.settings.minimality_threshold,
        )


def faithfulness_of(model: np.ndarray, circuit: np.ndarray, empty: np.ndarray, resamples: Resamples) -> Faithfulness:
    """F(M), F(C), F(empty), F(C)/F(M) and (F(C) - F(empty)) / (F(M) - F(empty)) from per-prompt
    metrics, with their intervals: the one faithfulness computation (verify, compare)."""
    arrays, estimate = {"m": model, "c": circuit, "e": empty}, resamples.estimate
    return Faithfulness(
        f_model=estimate(arrays, lambda a: a["m"]),
        f_circuit=estimate(arrays, lambda a: a["c"]),
        f_empty=estimate(arrays, lambda a: a["e"]),
        faithfulness=estimate(arrays, lambda a: ratio(a["c"], a["m"])),
        normalized_faithfulness=estimate(arrays, lambda a: ratio(a["c"] - a["e"], a["m"] - a["e"])),
    )


def faithfulness_point(f_circuit: float, f_model: float) -> float:
    """F(C) / F(M) on the full sample (what searches compare with their target); NaN when F(M) = 0."""
    return float(ratio(np.asarray(f_circuit), np.asarray(f_model)))


def _incompleteness(i: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda a: ratio(np.abs(a[f"c{i}"] - a[f"m{i}"]), np.abs(a["m"]))
