"""Position refinement: say where each head of a found circuit works, when that keeps it faithful.

A head found by a search is kept at every position. For each head in turn, try keeping it clean
only at the query position its role names (`q end`), then reading clean keys and values only at
the key position its role names (`k s3`); keep each restriction when faithfulness stays at or
above the target. The result is a sharper claim that `verify` checks like any other. With
grouped-query attention a head's keys are its group's, so key positions are not restricted (one
head's restriction would change what the other heads of its group read).
"""

from __future__ import annotations

from circuitlang.discover.roles import HeadRole, shared_position_names
from circuitlang.discover.scoring import NO_SPAN, Scorer
from circuitlang.engine.variants import circuit_variant
from circuitlang.ir import models as ir


def restrict_positions(scorer: Scorer, circuit: ir.Circuit, roles: dict[ir.Node, HeadRole], target: float) -> tuple[ir.Circuit, float]:
    """The circuit with every restriction that keeps faithfulness >= target, and its faithfulness.
    Only positions that every template of every prompt set of the spec has are written: the spec
    applies its circuit to all of them."""
    everywhere = set(shared_position_names([t for bound in scorer.session.bound.values() for t in bound.templates]))
    current = _faithfulness(scorer, circuit)
    clauses = ("q",) if scorer.session.model.family.grouped else ("q", "k")
    for index, member in enumerate(circuit.nodes):
        role = roles.get(member.node)
        if role is None:
            continue
        for clause, name in ((c, role.query if c == "q" else role.key) for c in clauses):
            if name not in everywhere:
                continue
            trial = _with(circuit, index, clause, name)
            value = _faithfulness(scorer, trial)
            if value >= target:
                circuit, current = trial, value
    return circuit, current


def positions_rows(scorer: Scorer, heads: int) -> int:
    """Rows of `restrict_positions` for a circuit of this many heads, at most: the circuit, and a
    trial of each head's query and key restriction (one whose position is not shared is skipped)."""
    return scorer.rows(2 * heads + 1)


def _with(circuit: ir.Circuit, index: int, clause: str, name: str) -> ir.Circuit:
    member = circuit.nodes[index].model_copy(update={clause: (ir.PositionRef(name=name, span=NO_SPAN),)})
    return circuit.model_copy(update={"nodes": circuit.nodes[:index] + (member,) + circuit.nodes[index + 1 :]})


def _faithfulness(scorer: Scorer, circuit: ir.Circuit) -> float:
    return scorer.faithfulness([circuit_variant(circuit, embed_edges=scorer.embed_edges)])[0]
