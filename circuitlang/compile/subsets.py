"""The subsets K of the circuit that a verification evaluates, and in which order.

`plan` prints and `verify` runs the same schedule, built here without a model:

1. baselines: F(C) and F(M) (K = empty), and F(empty);
2. minimality: for each node v, C\\K and C\\(K+v) for K in {empty, v's role class, random};
3. completeness: C\\K and M\\K for K random and each role class;
4. completeness greedy: K grown one node at a time (IOI appendix M). It depends on the measured
   values, so only its bound is known in advance; it runs last so that every count before it is
   exact.

A variant (a kind, "C" or "M", and a removed set) is evaluated once: a step counts only the
variants no earlier step evaluated. Random subsets are drawn from RNGs seeded by `set seed`,
independent of the prompt draws.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from circuitlang.ir import models as ir

Nodes = frozenset[ir.Node]
Variant = tuple[str, Nodes]  # ("C" | "M", removed nodes)
EMPTY: Nodes = frozenset()
BASELINES, MINIMALITY, COMPLETENESS, GREEDY = "baselines", "minimality", "completeness", "completeness greedy"


def random_sets(pool: list[ir.Node], count: int, seed: int, salt: int) -> list[Nodes]:
    """`count` subsets of `pool`, each node in with probability 1/2."""
    rng = random.Random(seed * 7919 + salt)
    return [frozenset(node for node in pool if rng.random() < 0.5) for _ in range(count)]


def nodes_of(circuit: ir.Circuit) -> list[ir.Node]:
    return [member.node for member in circuit.nodes]


def completeness_sets(circuit: ir.Circuit, settings: ir.Settings) -> list[tuple[str, Nodes]]:
    """The K fixed in advance, with where each came from: random, then each role class."""
    named = [("random", k) for k in random_sets(nodes_of(circuit), settings.completeness_samples, settings.seed, 1)]
    named += [(f"role: {role}", frozenset(nodes)) for role, nodes in circuit.roles().items()]
    return [(source, k) for source, k in named if k]


def minimality_candidates(circuit: ir.Circuit, settings: ir.Settings) -> dict[ir.Node, list[Nodes]]:
    """For each node v, the K tried: empty, v's role class without v, random subsets of C\\{v}."""
    nodes, by_role = nodes_of(circuit), circuit.roles()
    roles = {member.node: member.role for member in circuit.nodes}
    candidates = {}
    for index, node in enumerate(nodes):
        others = [n for n in nodes if n != node]
        sets = [EMPTY, frozenset(n for n in by_role[roles[node]] if n != node)]
        sets += random_sets(others, settings.minimality_samples, settings.seed, 100 + index)
        candidates[node] = list(dict.fromkeys(sets))
    return candidates


def greedy_bound(circuit: ir.Circuit, settings: ir.Settings) -> tuple[int, int]:
    """(steps, most variants): step s tries each node not yet in K, as C\\K and M\\K."""
    n = len(circuit.nodes)
    steps = min(settings.greedy_steps, n)
    return steps, 2 * sum(n - step for step in range(steps))


def pairs(sets: list[Nodes]) -> list[Variant]:
    return [(kind, k) for k in sets for kind in ("C", "M")]


def minimality_variants(candidates: dict[ir.Node, list[Nodes]]) -> list[Variant]:
    removed = [k for sets in candidates.values() for k in sets]
    removed += [k | {node} for node, sets in candidates.items() for k in sets]
    return [("C", k) for k in removed]


@dataclass(frozen=True)
class ScheduledStep:
    name: str
    variants: int  # new variants this step evaluates (exact), or at most (greedy)
    exact: bool


def schedule(circuit: ir.Circuit, settings: ir.Settings) -> list[ScheduledStep]:
    """The steps of one prompt set's verification with their variant counts, duplicates removed
    in execution order (the empty-circuit run is one of the baselines)."""
    seen: set[Variant] = set()

    def new(variants: list[Variant]) -> int:
        fresh = set(variants) - seen
        seen.update(fresh)
        return len(fresh)

    baselines = new(pairs([EMPTY])) + 1  # + F(empty), run on its own
    minimality = new(minimality_variants(minimality_candidates(circuit, settings)))
    completeness = new(pairs([k for _, k in completeness_sets(circuit, settings)]))
    _, greedy = greedy_bound(circuit, settings)
    return [
        ScheduledStep(BASELINES, baselines, True),
        ScheduledStep(MINIMALITY, minimality, True),
        ScheduledStep(COMPLETENESS, completeness, True),
        ScheduledStep(GREEDY, greedy, False),
    ]
