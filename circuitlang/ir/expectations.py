"""Lowering of `expect` lines: metric claims, per-node score claims and attention claims."""

from __future__ import annotations

from typing import Any

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.circuit import _PositionChecker, endpoint
from circuitlang.ir.stdlib import EDGE_CLAIMS, METRIC_CLAIMS, SCORE_CLAIMS
from circuitlang.ir.suggest import did_you_mean

ExpectDecl = ast.ExpectMetric | ast.ExpectScore | ast.ExpectAttends | ast.ExpectEdge


def lower_expectations(
    items: list[ast.Item], circuit: ir.Circuit, prompt_sets: tuple[ir.PromptSet, ...], errors: list[CircuitlangError]
) -> tuple[ir.Expectation, ...]:
    lowered = []
    names = {p.name for p in prompt_sets}
    for decl in items:
        if isinstance(decl, (ast.ExpectMetric, ast.ExpectScore, ast.ExpectAttends, ast.ExpectEdge)):
            _check_on(decl.on, names, errors)
            # A claim `on SET` is checked only against that prompt set's positions.
            scoped = tuple(p for p in prompt_sets if decl.on is None or p.name == decl.on.name)
            expectation = _lower_one(decl, circuit, _PositionChecker(scoped, errors), errors)
            if expectation is not None:
                lowered.append(expectation)
    return tuple(lowered)


def _lower_one(decl: ExpectDecl, circuit: ir.Circuit, checker: _PositionChecker, errors: list[CircuitlangError]) -> ir.Expectation | None:
    common: dict[str, Any] = dict(on=decl.on.name if decl.on else None, op=decl.op, threshold=decl.threshold.value, span=decl.span)
    if isinstance(decl, ast.ExpectMetric):
        if decl.metric.name not in METRIC_CLAIMS:
            errors.append(
                SpecError(f"unknown claim '{decl.metric.name}'", decl.metric.span, f"claims about the circuit: {', '.join(METRIC_CLAIMS)}")
            )
            return None
        if decl.metric.name == "edge_effect" and not circuit.edges:
            errors.append(
                SpecError(
                    "edge_effect is a claim about the declared edges, and the circuit declares none",
                    decl.metric.span,
                    "declare the circuit's edges (edge A -> B), or drop the claim",
                )
            )
            return None
        return ir.MetricExpectation(metric=decl.metric.name, **common)
    if isinstance(decl, ast.ExpectEdge):
        return _lower_edge_claim(decl, circuit, common, errors)
    targets, role = _targets(decl.target, circuit, errors)
    if targets is None:
        return None
    if isinstance(decl, ast.ExpectScore):
        if decl.score.name not in SCORE_CLAIMS:
            errors.append(
                SpecError(
                    f"unknown score '{decl.score.name}'", decl.score.span, f"scores of a node: {', '.join(SCORE_CLAIMS)} (or `attends Q -> K`)"
                )
            )
            return None
        return ir.ScoreExpectation(targets=targets, role=role, score=decl.score.name, **common)
    if any(node.kind != "head" for node in targets):
        errors.append(SpecError("only attention heads attend", decl.target.span, "make the claim about a head or a role of heads"))
        return None
    queries = tuple(checker.lower(p) for p in decl.queries)
    keys = tuple(checker.lower(p) for p in decl.keys)
    return ir.AttendsExpectation(targets=targets, role=role, queries=queries, keys=keys, **common)


def _lower_edge_claim(decl: ast.ExpectEdge, circuit: ir.Circuit, common: dict, errors: list[CircuitlangError]) -> ir.EdgeExpectation | None:
    sender, receiver = endpoint(decl.sender), endpoint(decl.receiver)
    if decl.score.name not in EDGE_CLAIMS:
        errors.append(
            SpecError(f"unknown score '{decl.score.name}' of an edge", decl.score.span, f"scores of an edge: {', '.join(EDGE_CLAIMS)}")
        )
        return None
    if not any(edge.sender == sender and edge.receiver == receiver for edge in circuit.edges):
        errors.append(
            SpecError(
                f"claim about the edge {sender} -> {receiver}, which is not declared",
                decl.span,
                f"declare it (edge {sender} -> {receiver}), or check its ends",
            )
        )
        return None
    return ir.EdgeExpectation(sender=sender, receiver=receiver, score=decl.score.name, **common)


def _targets(target: ast.Target, circuit: ir.Circuit, errors: list[CircuitlangError]) -> tuple[tuple[ir.Node, ...] | None, str | None]:
    if isinstance(target, ast.RoleRef):
        roles = circuit.roles()
        if target.name not in roles:
            errors.append(
                SpecError(
                    f'no role named "{target.name}"',
                    target.span,
                    did_you_mean(target.name, roles) + f"roles: {', '.join(repr(r) for r in roles) or 'none declared'}",
                )
            )
            return None, None
        return roles[target.name], target.name
    node = ir.HeadNode(layer=target.layer, head=target.head) if isinstance(target, ast.HeadRef) else ir.MlpNode(layer=target.layer)
    if node not in {member.node for member in circuit.nodes}:
        errors.append(
            SpecError(f"claim about {node}, which is not in the circuit", target.span, f"add {node} to a role, or check the head number")
        )
        return None, None
    return (node,), None


def _check_on(on: ast.Ident | None, names: set[str], errors: list[CircuitlangError]) -> None:
    if on is not None and on.name not in names:
        errors.append(SpecError(f"no prompt set named '{on.name}'", on.span, f"prompt sets: {', '.join(sorted(names))}"))
