"""Expectations -> pass/fail rows.

A claim passes when its point estimate satisfies the comparison. When the confidence interval
reaches across the threshold the row says so: the verdict then rests on this sample of prompts.
A claim about a role is checked for every node of the role (one row each); a claim without
`on SET` is checked on every prompt set.
"""

from __future__ import annotations

from typing import Callable

from circuitlang.ir import models as ir
from circuitlang.verification.edges import magnitude
from circuitlang.results.report import ClaimResult, PromptSetReport
from circuitlang.results.estimate import Estimate

# attention(prompt set, head, queries, keys) -> Estimate
Attention = Callable[[str, ir.Node, tuple[ir.Position, ...], tuple[ir.Position, ...]], Estimate]

_COMPARE = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


def check_claims(spec: ir.Spec, reports: list[PromptSetReport], attention: Attention) -> list[ClaimResult]:
    rows = []
    for claim in spec.expectations:
        for report in reports:
            if isinstance(claim, ir.InterchangeExpectation):
                hypothesis = spec.hypothesis_for(report.name)
                if hypothesis is not None and claim.on in (None, report.name):
                    rows.append(_interchange_claim(claim, hypothesis, report))
            elif isinstance(claim, ir.MetricExpectation) and claim.metric == "scrubbing":
                if claim.on == report.name or (claim.on is None and spec.hypothesis_for(report.name) is not None):
                    rows.append(_row(claim, report.name, "hypothesis", report.scrubbing.recovered if report.scrubbing else None))
            elif claim.on is None or claim.on == report.name:
                rows.extend(_check(claim, report, attention))
    return rows


def interchange_target(claim: ir.InterchangeExpectation, hypothesis: ir.Hypothesis) -> tuple[str, str]:
    """(the target as the claim wrote it, the report row it reads: a carrier's text or `variable V`)."""
    if claim.carrier is None:
        return claim.variable, f"variable {claim.variable}"
    carrier = hypothesis.carriers[claim.carrier]
    written = f'"{carrier.role}"' if carrier.role else ", ".join(str(node) for node in carrier.nodes)
    return written, carrier.text


def _interchange_claim(claim: ir.InterchangeExpectation, hypothesis: ir.Hypothesis, report: PromptSetReport) -> ClaimResult:
    written, row = interchange_target(claim, hypothesis)
    score = next((s for s in report.interchange if s.target == row), None)
    value = getattr(score, claim.score) if score else None
    return _row(claim, report.name, row, value, text=f"{written} {_claim_tail(claim)}")


def _claim_tail(claim: ir.InterchangeExpectation) -> str:
    on = f" on {claim.on}" if claim.on else ""
    return f"{claim.score}{on} {claim.op} {claim.threshold:g}"


def claim_text(claim: ir.Expectation) -> str:
    on = f" on {claim.on}" if claim.on else ""
    if isinstance(claim, ir.MetricExpectation):
        return f"{claim.metric}{on} {claim.op} {claim.threshold:g}"
    if isinstance(claim, ir.EdgeExpectation):
        return f"{claim.sender} -> {claim.receiver} {claim.score}{on} {claim.op} {claim.threshold:g}"
    if isinstance(claim, ir.InterchangeExpectation):
        return f"{claim.variable if claim.carrier is None else f'carrier {claim.carrier + 1}'} {_claim_tail(claim)}"
    target = f'"{claim.role}"' if claim.role else str(claim.targets[0])
    if isinstance(claim, ir.ScoreExpectation):
        return f"{target} {claim.score}{on} {claim.op} {claim.threshold:g}"
    queries = ", ".join(map(str, claim.queries))
    keys = ", ".join(map(str, claim.keys))
    return f"{target} attends {queries} -> {keys}{on} {claim.op} {claim.threshold:g}"


# What a claim's value is, in the words the report's tables use for the same number. One word, one
# number: `edge_effect` compares the weakest edge's |effect|, so its value is named "|effect|", not
# "effect" (the signed number of the edges table).
CIRCUIT_QUANTITIES = {
    "faithfulness": "faithfulness",
    "normalized_faithfulness": "normalized faithfulness",
    "f_model": "F(M)",
    "f_circuit": "F(C)",
    "f_empty": "F(empty)",
    "completeness": "incompleteness (worst K)",
    "completeness_mean": "incompleteness (mean)",
    "minimality": "minimality",
    "edge_effect": "|effect|",
    "scrubbing": "scrubbing recovered",
}
NODE_QUANTITIES = {"minimality": "minimality", "direct_logit": "direct logit", "copy_score": "copy score", "next_score": "next score"}
INTERCHANGE_QUANTITIES = {"iia": "IIA", "graded_iia": "graded IIA"}


def quantity(claim: ir.Expectation) -> str:
    """The name of the number a claim compares with its threshold."""
    if isinstance(claim, ir.MetricExpectation):
        return CIRCUIT_QUANTITIES[claim.metric]
    if isinstance(claim, ir.EdgeExpectation):
        return claim.score  # "effect": signed, the edges table's number
    if isinstance(claim, ir.ScoreExpectation):
        return NODE_QUANTITIES[claim.score]
    if isinstance(claim, ir.InterchangeExpectation):
        return INTERCHANGE_QUANTITIES[claim.score]
    return "attention"


# Quantities divided by F(M) (or by F(M) - F(empty)): meaningless when F(M) cannot be told from zero.
RATIOS_OF_F_MODEL = frozenset({"faithfulness", "normalized_faithfulness", "completeness", "completeness_mean", "minimality", "edge_effect"})


def _check(claim: ir.Expectation, report: PromptSetReport, attention: Attention) -> list[ClaimResult]:
    rows = _evaluated(claim, report, attention)
    if _is_ratio(claim) and report.faithfulness.f_model.includes_zero():  # a ratio to an unknown: the claim is not supported
        f = report.faithfulness.f_model
        note = (
            f"not meaningful: F(M) = {f.value:.3g} with CI [{f.low:.3g}, {f.high:.3g}] includes 0; use a metric "
            "the full model performs clearly, or more prompts"
        )
        return [row.model_copy(update={"passed": False, "note": note}) for row in rows]
    return rows


def _is_ratio(claim: ir.Expectation) -> bool:
    if isinstance(claim, ir.MetricExpectation):
        return claim.metric in RATIOS_OF_F_MODEL
    if isinstance(claim, ir.EdgeExpectation):
        return True  # an edge's effect is normalized by |F(M)|
    return isinstance(claim, ir.ScoreExpectation) and claim.score == "minimality"


def _evaluated(claim: ir.Expectation, report: PromptSetReport, attention: Attention) -> list[ClaimResult]:
    if isinstance(claim, ir.MetricExpectation) and claim.metric == "edge_effect":
        return [_least_needed_edge(claim, report)]
    if isinstance(claim, ir.MetricExpectation):
        target = "circuit"
        if claim.metric == "minimality" and report.minimality:  # name the least needed node
            target = min(report.minimality, key=lambda m: m.score.value).node
        return [_row(claim, report.name, target, _circuit_value(claim.metric, report))]
    if isinstance(claim, ir.EdgeExpectation):
        edge = next(e for e in report.edges if e.edge.split(" via ")[0] == f"{claim.sender} -> {claim.receiver}")
        return [_row(claim, report.name, edge.edge, edge.effect, edge.note)]
    assert not isinstance(claim, ir.InterchangeExpectation), "checked by _interchange_claim"
    rows = []
    for node in claim.targets:
        if isinstance(claim, ir.AttendsExpectation):
            value: Estimate | None = attention(report.name, node, claim.queries, claim.keys)
        else:
            value = _node_value(claim.score, str(node), report)
        rows.append(_row(claim, report.name, str(node), value))
    return rows


def _least_needed_edge(claim: ir.MetricExpectation, report: PromptSetReport) -> ClaimResult:
    """`edge_effect`: every declared edge is needed, i.e. the smallest |effect| passes. The row's
    value is that edge's |effect| with its interval (`edges.magnitude`), named so (`quantity`)."""
    tested = [(e.edge, e.effect) for e in report.edges if e.effect is not None]
    if not tested:
        note = report.edges[0].note if report.edges else "no declared edges"
        return _row(claim, report.name, "circuit", None, note)
    edge, effect = min(tested, key=lambda pair: abs(pair[1].value))
    return _row(claim, report.name, edge, magnitude(effect))


def _circuit_value(metric: str, report: PromptSetReport) -> Estimate | None:
    faithfulness = report.faithfulness
    values = {
        "faithfulness": faithfulness.faithfulness,
        "normalized_faithfulness": faithfulness.normalized_faithfulness,
        "f_model": faithfulness.f_model,
        "f_circuit": faithfulness.f_circuit,
        "f_empty": faithfulness.f_empty,
        "completeness": report.completeness.worst,
        "completeness_mean": report.completeness.mean,
    }
    if metric == "minimality":  # the least needed node
        return min((m.score for m in report.minimality), key=lambda e: e.value, default=None)
    return values[metric]


def _node_value(score: str, node: str, report: PromptSetReport) -> Estimate | None:
    if score == "minimality":
        return next((m.score for m in report.minimality if m.node == node), None)
    scores = next((s for s in report.node_scores if s.node == node), None)
    return getattr(scores, score, None) if scores else None


def _row(claim: ir.Expectation, prompt_set: str, target: str, value: Estimate | None, why: str = "", text: str = "") -> ClaimResult:
    if value is None or value.value != value.value:  # missing or NaN: the claim cannot be checked
        return ClaimResult(
            claim=text or claim_text(claim),
            line=claim.span.line,
            prompt_set=prompt_set,
            target=target,
            quantity=quantity(claim),
            value=value,
            op=claim.op,
            threshold=claim.threshold,
            passed=False,
            margin=None,
            note=f"no value: {why or 'the number could not be computed (see the report)'}",
        )
    passed = _COMPARE[claim.op](value.value, claim.threshold)
    margin = value.value - claim.threshold if claim.op in (">=", ">") else claim.threshold - value.value
    straddles = min(value.low, value.high) < claim.threshold < max(value.low, value.high)
    note = f"the confidence interval [{value.low:.3g}, {value.high:.3g}] includes the threshold" if straddles else ""
    return ClaimResult(
        claim=text or claim_text(claim),
        line=claim.span.line,
        prompt_set=prompt_set,
        target=target,
        quantity=quantity(claim),
        value=value,
        op=claim.op,
        threshold=claim.threshold,
        passed=passed,
        margin=margin,
        note=note,
    )
