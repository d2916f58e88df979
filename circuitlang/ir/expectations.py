"""Lowering of `expect` lines: metric claims, per-node score claims, attention claims, edge claims and
interchange claims about a hypothesis's carriers and variables."""

from __future__ import annotations

from typing import Any

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.circuit import _PositionChecker, endpoint
from circuitlang.ir.hypotheses import Hypotheses
from circuitlang.ir.stdlib import EDGE_CLAIMS, INTERCHANGE_CLAIMS, METRIC_CLAIMS, SCORE_CLAIMS
from circuitlang.ir.suggest import did_you_mean

ExpectDecl = ast.ExpectMetric | ast.ExpectScore | ast.ExpectAttends | ast.ExpectEdge


def lower_expectations(
    items: list[ast.Item],
    circuit: ir.Circuit,
    prompt_sets: tuple[ir.PromptSet, ...],
    hypotheses: Hypotheses,
    errors: list[CircuitlangError],
) -> tuple[ir.Expectation, ...]:
    lowered: list[ir.Expectation] = []
    names = {p.name for p in prompt_sets}
    for decl in items:
        if isinstance(decl, (ast.ExpectMetric, ast.ExpectScore, ast.ExpectAttends, ast.ExpectEdge)):
            _check_on(decl.on, names, errors)
            if isinstance(decl, ast.ExpectScore) and (decl.score.name in INTERCHANGE_CLAIMS or isinstance(decl.target, ast.VariableRef)):
                claim = _lower_interchange_claim(decl, hypotheses, names, errors)
                if claim is not None:
                    lowered.append(claim)
                continue
            if isinstance(decl, ast.ExpectMetric) and decl.metric.name == "scrubbing" and not _has_hypothesis(decl, hypotheses, errors):
                continue
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
                    f"unknown score '{decl.score.name}'",
                    decl.score.span,
                    f"scores of a node: {', '.join(SCORE_CLAIMS)} (or `attends Q -> K`); of a carrier: {', '.join(INTERCHANGE_CLAIMS)}",
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
    if isinstance(target, ast.VariableRef):
        errors.append(SpecError(f"'{target.name}' is not a node or a role", target.span, 'attention is claimed of a head L.H or a role "NAME"'))
        return None, None
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


def _lower_interchange_claim(
    decl: ast.ExpectScore, hypotheses: Hypotheses, names: set[str], errors: list[CircuitlangError]
) -> ir.InterchangeExpectation | None:
    """`expect TARGET iia|graded_iia ...`: a claim on one carrier (its role as written, or a head or
    MLP that is exactly its nodes) or on a variable (every carrier of it at once)."""
    score = next((known for known in INTERCHANGE_CLAIMS if known == decl.score.name), None)
    if score is None:  # the target is a name, which only a hypothesis's variable is
        errors.append(
            SpecError(
                f"unknown score '{decl.score.name}' of a hypothesis's variable",
                decl.score.span,
                f"claims about a variable: {', '.join(INTERCHANGE_CLAIMS)}; a claim about the whole circuit names no target",
            )
        )
        return None
    hypothesis = _hypothesis_for(decl, hypotheses, names, errors)
    if hypothesis is None:
        return None
    common: dict[str, Any] = dict(on=decl.on.name if decl.on else None, op=decl.op, threshold=decl.threshold.value, span=decl.span)
    if isinstance(decl.target, ast.VariableRef):
        name = decl.target.name
        if not hypothesis.carriers_of(name):
            errors.append(
                SpecError(
                    f"no node carries '{name}' in the hypothesis on {hypothesis.prompt_set}",
                    decl.target.span,
                    did_you_mean(name, hypothesis.carried) + f"carried there: {', '.join(hypothesis.carried) or 'nothing'}",
                )
            )
            return None
        return ir.InterchangeExpectation(carrier=None, variable=name, score=score, **common)
    index = _carrier_index(decl.target, hypothesis, errors)
    if index is None:
        return None
    return ir.InterchangeExpectation(carrier=index, variable=hypothesis.carriers[index].variable, score=score, **common)


def _has_hypothesis(decl: ast.ExpectMetric, hypotheses: Hypotheses, errors: list[CircuitlangError]) -> bool:
    """`expect scrubbing ...` scrubs with a hypothesis: the one of its `on` set, or (without `on`)
    every prompt set that has one."""
    if hypotheses.unresolved or (decl.on is not None and decl.on.name in hypotheses.broken):
        return False  # the hypothesis block's own errors say what is wrong
    sets = {h.prompt_set for h in hypotheses.lowered}
    if (decl.on is None and sets) or (decl.on is not None and decl.on.name in sets):
        return True
    where = f"prompt set '{decl.on.name}'" if decl.on is not None else "the spec"
    errors.append(
        SpecError(
            f"causal scrubbing needs a hypothesis, and {where} has none",
            decl.metric.span,
            'declare what the circuit\'s nodes carry: hypothesis { ... } (docs/language.md, "Hypotheses")',
        )
    )
    return False


def _hypothesis_for(decl: ast.ExpectScore, hypotheses: Hypotheses, names: set[str], errors: list[CircuitlangError]) -> ir.Hypothesis | None:
    """The hypothesis of the claim's `on` set, or the only one. None, with an error unless a
    hypothesis block that could be meant has errors of its own, when there is no such hypothesis."""
    if decl.on is not None:
        if decl.on.name not in names or decl.on.name in hypotheses.broken or hypotheses.unresolved:
            return None  # an unknown set is reported by _check_on
        found = next((h for h in hypotheses.lowered if h.prompt_set == decl.on.name), None)
        if found is None:
            errors.append(
                SpecError(
                    f"no hypothesis for prompt set '{decl.on.name}'",
                    decl.on.span,
                    f'declare one: hypothesis on {decl.on.name} {{ ... }} (docs/language.md, "Hypotheses")',
                )
            )
        return found
    if hypotheses.declared() == 1:
        return hypotheses.lowered[0] if hypotheses.lowered else None
    if hypotheses.declared() > 1:
        sets = sorted([h.prompt_set for h in hypotheses.lowered] + list(hypotheses.broken))
        errors.append(
            SpecError(
                f"the spec has hypotheses for {', '.join(sets)}: say which one the claim is about",
                decl.span,
                f"add `on SET` before the comparison, e.g. expect ... {decl.score.name} on {sets[0]} {decl.op} {decl.threshold.text}",
            )
        )
    elif not hypotheses.unresolved:
        errors.append(
            SpecError(
                f"an interchange claim ({decl.score.name}) needs a hypothesis, and the spec has none",
                decl.span,
                'declare one: hypothesis { VARIABLE = ...; answer = ...; NODES carries VARIABLE } (docs/language.md, "Hypotheses")',
            )
        )
    return None


def _carrier_index(target: ast.RoleRef | ast.HeadRef | ast.MlpRef, hypothesis: ir.Hypothesis, errors: list[CircuitlangError]) -> int | None:
    """The one carrier a role (as written on its line) or a node (exactly its nodes) names."""
    carriers = hypothesis.carriers
    if isinstance(target, ast.RoleRef):
        matches = [i for i, carrier in enumerate(carriers) if carrier.role == target.name]
        one, several = f'is written as "{target.name}"', f'are written as "{target.name}"'
    else:
        node: ir.Node = ir.HeadNode(layer=target.layer, head=target.head) if isinstance(target, ast.HeadRef) else ir.MlpNode(layer=target.layer)
        matches = [i for i, carrier in enumerate(carriers) if set(carrier.nodes) == {node}]
        one, several = f"consists of {node} alone", f"consist of {node} alone"
    if len(matches) == 1:
        return matches[0]
    listed = "; ".join(f"`{carrier.text}`" for carrier in carriers) or "none"
    if matches:
        message = f"{len(matches)} carriers of the hypothesis on {hypothesis.prompt_set} {several}: a claim names one"
        hint = f"claim about the value they carry (every carrier of it at once), or keep one such carrier; they are: {listed}"
    else:
        message = f"no carrier of the hypothesis on {hypothesis.prompt_set} {one}"
        hint = f"a claim names a carrier by its role as written, or by a head or MLP that is its only node; carriers: {listed}"
    errors.append(SpecError(message, target.span, hint))
    return None
