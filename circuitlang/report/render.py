"""Report -> rich tables, JSON, JUnit XML, GitHub annotations, Markdown. Nothing here prints:
each function returns text or renderables for the CLI to show or write."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from rich.table import Table
from rich.text import Text

from circuitlang.report.cells import plain_cells
from circuitlang.results.report import ClaimResult, EdgeEffect, InterchangeScore, PromptSetReport, Report, Scrubbing
from circuitlang.results.estimate import Estimate

FORMATS = ("table", "json", "junit", "github", "markdown")


def claim_message(claim: ClaimResult) -> str:
    """One sentence: what was claimed, what was measured, by how much it passed or failed."""
    where = f" on {claim.prompt_set}" + (f" for {claim.target}" if claim.target != "circuit" else "")
    if claim.value is None or claim.margin is None:
        return f"{claim.claim}{where}: not computed ({claim.note})"
    verdict = "passed" if claim.passed else "FAILED"
    by = f"by {abs(claim.margin):.3g}" if claim.passed else f"short by {abs(claim.margin):.3g}"
    note = f"; {claim.note}" if claim.note else ""
    return f"{claim.claim}{where}: {verdict}, measured {measured(claim)} ({by}){note}"


def measured(claim: ClaimResult) -> str:
    """The claim's number named as the tables name it: "|effect| 0.004 [0.000, 0.008]" for
    `edge_effect`, whose interval is not the signed one of the edges table's "effect" column."""
    return " ".join(part for part in (claim.quantity, _estimate(claim.value)) if part)


def _estimate(estimate: Estimate | None) -> str:
    if estimate is None:
        return "-"
    return f"{estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


# ---- rich -------------------------------------------------------------------------------------


def tables(report: Report) -> list[Table]:
    out = []
    for prompt_set in report.prompt_sets:
        out.extend([_summary(prompt_set, report), _nodes(prompt_set), _completeness_sets(prompt_set)])
        if prompt_set.edges:
            out.append(_edges(prompt_set))
        if prompt_set.audit is not None and prompt_set.audit.ran:
            out.append(_audit(prompt_set))
        for variable in dict.fromkeys(score.variable for score in prompt_set.interchange):
            out.append(_interchange(prompt_set, variable))
        if prompt_set.scrubbing is not None:
            out.append(_scrubbing(prompt_set.scrubbing, prompt_set.name))
    if report.claims:
        out.append(_claims(report))
    return out


INTERCHANGE_COLUMNS = ("carrier", "variable", "pairs", "IIA", "graded IIA", "baseline IIA")


def _interchange(prompt_set: PromptSetReport, variable: str) -> Table:
    title = f"interchange interventions on {prompt_set.name}, variable {variable}: IIA = top token is the counterfactual answer"
    table = Table(title=title)
    for column in INTERCHANGE_COLUMNS:
        table.add_column(column)
    for score in prompt_set.interchange:
        if score.variable == variable:
            table.add_row(*plain_cells(*_interchange_cells(score)))
    return table


def interchange_message(score: InterchangeScore) -> str:
    return (
        f"interchange, {score.target}: IIA {_estimate(score.iia)}, graded IIA {_estimate(score.graded_iia)}, "
        f"baseline IIA {_estimate(score.baseline_iia)} ({score.pairs} pairs)"
    )


def scrubbing_message(scrubbing: Scrubbing) -> str:
    return f"causal scrubbing: scrubbing recovered {_estimate(scrubbing.recovered)} ({scrubbing.prompts} prompts)"


def _scrubbing(scrubbing: Scrubbing, name: str) -> Table:
    table = Table(title=f"causal scrubbing on {name}: recovered = (F(scrubbed) - F(random)) / (F(M) - F(random))")
    for column in ("number", "value [CI]"):
        table.add_column(column)
    for label, value in _scrubbing_rows(scrubbing):
        table.add_row(*plain_cells(label, value))
    return table


def _scrubbing_rows(scrubbing: Scrubbing) -> list[tuple[str, str]]:
    agree = f", {scrubbing.only_the_base_agrees} kept the base's own (no other prompt agrees)" if scrubbing.only_the_base_agrees else ""
    return [
        ("F(M) on the scrubbed bases", _estimate(scrubbing.f_model)),
        ("F(scrubbed)", _estimate(scrubbing.f_scrubbed)),
        ("F(random)", _estimate(scrubbing.f_random)),
        ("scrubbing recovered", _estimate(scrubbing.recovered)),
        ("prompts, carrier sites resampled", f"{scrubbing.prompts}, {scrubbing.sites} per prompt{agree}"),
    ]


def _interchange_cells(score: InterchangeScore) -> tuple[str, ...]:
    pairs = f"{score.pairs}" + (f" ({score.without_source} bases without a source)" if score.without_source else "")
    return (score.target, score.variable, pairs, _estimate(score.iia), _estimate(score.graded_iia), _estimate(score.baseline_iia))


def _summary(prompt_set: PromptSetReport, report: Report) -> Table:
    confidence = f"{report.settings.get('confidence', 0.95):.0%} CI"
    table = Table(
        title=f"{report.circuit} on {prompt_set.name}: {prompt_set.prompts} prompts, metric "
        f"{prompt_set.metric}, {prompt_set.variants_evaluated} variants",
        caption=_cache_line(prompt_set),
    )
    for column in ("number", "value", confidence, "definition"):
        table.add_column(column)
    for name, estimate, definition in summary_rows(prompt_set):
        table.add_row(*plain_cells(name, *summary_cells(estimate), definition))
    return table


def summary_rows(prompt_set: PromptSetReport) -> list[tuple[str, Estimate, str]]:
    """The headline numbers, named and defined once: the table, Markdown and HTML show these rows."""
    f = prompt_set.faithfulness
    return [
        ("F(M)", f.f_model, "metric of the full model"),
        ("F(C)", f.f_circuit, "circuit, complement ablated"),
        ("F(empty)", f.f_empty, "everything ablated"),
        ("faithfulness", f.faithfulness, "F(C) / F(M)"),
        ("normalized faithfulness", f.normalized_faithfulness, "(F(C) - F(empty)) / (F(M) - F(empty))"),
        ("incompleteness (worst K)", prompt_set.completeness.worst, "max |F(C\\K) - F(M\\K)| / |F(M)|"),
        ("incompleteness (mean)", prompt_set.completeness.mean, "mean over the K tried"),
    ]


def summary_cells(estimate: Estimate) -> tuple[str, str]:
    """A headline number and its interval as every view prints them: ("0.9015", "[0.8777, 0.9237]")."""
    return f"{estimate.value:.4g}", f"[{estimate.low:.4g}, {estimate.high:.4g}]"


def _cache_line(prompt_set: PromptSetReport) -> str:
    use = prompt_set.cache
    if use.refused:
        return f"result cache: not used ({use.refused}), {use.misses} results computed"
    if not use.enabled:
        return f"result cache: off, {use.misses} results computed"
    return f"result cache: {use.hits} of {use.hits + use.misses} results reused, {use.misses} computed"


def _nodes(prompt_set: PromptSetReport) -> Table:
    table = Table(title=f"nodes on {prompt_set.name}")
    for column in ("node", "role", "minimality", "needed", "direct logit", "copy score", "next score"):
        table.add_column(column)
    scores = {s.node: s for s in prompt_set.node_scores}
    for node in prompt_set.minimality:
        s = scores.get(node.node)
        needed = Text("yes", style="green") if node.needed else Text("NOT NEEDED", style="bold red")
        table.add_row(
            *plain_cells(
                node.node,
                node.role,
                _estimate(node.score),
                needed,
                _estimate(s.direct_logit if s else None),
                _estimate(s.copy_score if s else None),
                _estimate(s.next_score if s else None),
            )
        )
    return table


def _edges(prompt_set: PromptSetReport) -> Table:
    table = Table(title=f"declared edges on {prompt_set.name}: effect = (F(M) - F(M, edge path-patched)) / |F(M)|")
    for column in ("line", "edge", "effect", "needed", "note"):
        table.add_column(column)
    for edge in prompt_set.edges:
        table.add_row(*plain_cells(str(edge.line), edge.edge, _estimate(edge.effect), _needed(edge), edge.note))
    return table


def _audit(prompt_set: PromptSetReport) -> Table:
    audit = prompt_set.audit
    assert audit is not None
    table = Table(
        title=f"audit on {prompt_set.name}: the strongest paths into the circuit from outside it ({audit.pairs} pairs, {audit.runs} runs)"
    )
    for column in ("missing edge", "effect", "missing node (into the whole circuit)", "effect "):
        table.add_column(column)
    for index in range(max(len(audit.edges), len(audit.nodes))):
        edge = audit.edges[index] if index < len(audit.edges) else None
        node = audit.nodes[index] if index < len(audit.nodes) else None
        table.add_row(
            *plain_cells(
                f"{edge.sender} -> {edge.receiver}" if edge else "",
                _estimate(edge.effect) if edge else "",
                node.sender if node else "",
                _estimate(node.effect) if node else "",
            )
        )
    return table


def _needed(edge: EdgeEffect) -> Text:
    if edge.effect is None:
        return Text("not tested", style="yellow")
    return Text("yes", style="green") if edge.needed else Text("NOT NEEDED", style="bold red")


def edge_message(edge: EdgeEffect) -> str:
    if edge.effect is None:
        return f"edge {edge.edge}: not tested ({edge.note})"
    verdict = "needed" if edge.needed else "NOT NEEDED (its effect cannot be told from zero)"
    return f"edge {edge.edge}: effect {_estimate(edge.effect)}, {verdict}"


def _completeness_sets(prompt_set: PromptSetReport, shown: int = 5) -> Table:
    table = Table(title=f"worst completeness sets on {prompt_set.name} ({len(prompt_set.completeness.sets)} tried)")
    for column in ("K", "found by", "incompleteness"):
        table.add_column(column)
    for subset in prompt_set.completeness.sets[:shown]:
        table.add_row(*plain_cells(", ".join(subset.nodes), subset.source, _estimate(subset.score)))
    return table


def _claims(report: Report) -> Table:
    table = Table(title="claims")
    for column in ("line", "claim", "on", "target", "measured", "verdict", "note"):
        table.add_column(column)
    for claim in report.claims:
        verdict = Text("pass", style="green") if claim.passed else Text("FAIL", style="bold red")
        table.add_row(
            *plain_cells(
                str(claim.line),
                claim.claim,
                claim.prompt_set,
                claim.target if claim.target != "circuit" else "",
                measured(claim),
                verdict,
                claim.note,
            )
        )
    return table


# ---- text formats -------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


def to_junit(report: Report) -> str:
    failures = sum(not c.passed for c in report.claims)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name={quoteattr("circuitlang " + report.circuit)} tests="{len(report.claims)}" '
        f'failures="{failures}" time="{report.seconds}">',
    ]
    for claim in report.claims:
        name = quoteattr(f"{claim.claim} [{claim.prompt_set}]" + (f" {claim.target}" if claim.target != "circuit" else ""))
        lines.append(f"  <testcase classname={quoteattr(report.spec_path)} name={name}>")
        if not claim.passed:
            lines.append(f"    <failure message={quoteattr(claim_message(claim))}>{escape(claim_message(claim))}</failure>")
        lines.append("  </testcase>")
    edges = [f"{p.name}: warning: {w}" for p in report.prompt_sets for w in p.warnings]
    edges += [f"{p.name}: {edge_message(e)}" for p in report.prompt_sets for e in p.edges]
    edges += [
        f"{p.name}: audit, missing edge {e.sender} -> {e.receiver}: effect {_estimate(e.effect)}"
        for p in report.prompt_sets
        if p.audit is not None
        for e in p.audit.edges
    ]
    edges += [f"{p.name}: {interchange_message(s)}" for p in report.prompt_sets for s in p.interchange]
    edges += [f"{p.name}: {scrubbing_message(p.scrubbing)}" for p in report.prompt_sets if p.scrubbing is not None]
    if edges:  # measurements, not claims: reported beside the test cases
        lines.append(f"  <system-out>{escape(chr(10).join(edges))}</system-out>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"


def to_github(report: Report, notices: bool = False) -> str:
    """GitHub Actions workflow commands: an error per failed claim (a notice per passed one only
    when asked for: a pull request's diff should show what is wrong), warnings."""
    lines = []
    for claim in report.claims:
        if claim.passed and not notices:
            continue
        kind = "notice" if claim.passed else "error"
        lines.append(f"::{kind} file={report.spec_path},line={claim.line},title=circuitlang::{_escaped(claim_message(claim))}")
    for prompt_set in report.prompt_sets:
        lines += [f"::warning file={report.spec_path},title=circuitlang::{_escaped(prompt_set.name + ': ' + w)}" for w in prompt_set.warnings]
    for prompt_set in report.prompt_sets:  # a declared edge that carries nothing measurable: a warning at its line
        for edge in (e for e in prompt_set.edges if not e.needed):
            lines.append(
                f"::warning file={report.spec_path},line={edge.line},title=circuitlang::{_escaped(prompt_set.name + ': ' + edge_message(edge))}"
            )
    return "\n".join(lines) + ("\n" if lines else "")


def _escaped(message: str) -> str:
    return message.replace("%", "%25").replace("\n", "%0A")


def to_markdown(report: Report) -> str:
    lines = [
        f"## circuitlang: {report.circuit} ({'all claims pass' if report.passed else 'claims FAILED'})",
        "",
        f"Model `{report.model.get('name')}` (weights sha256 `{str(report.model.get('weights_sha256'))[:12]}`), "
        f"seed {report.seed}, spec sha256 `{report.spec_sha256[:12]}`.",
        "",
    ]
    for prompt_set in report.prompt_sets:
        lines += [
            f"### {prompt_set.name} ({prompt_set.prompts} prompts, {prompt_set.metric})",
            "",
            "| number | value | CI |",
            "| --- | --- | --- |",
        ]
        for name, estimate, _ in summary_rows(prompt_set):
            lines.append(f"| {name} | {' | '.join(summary_cells(estimate))} |")
        lines += [f"\n> **Warning:** {warning}" for warning in prompt_set.warnings]
        lines += ["", "| node | role | minimality | needed |", "| --- | --- | --- | --- |"]
        lines += [f"| {m.node} | {m.role} | {_estimate(m.score)} | {'yes' if m.needed else '**no**'} |" for m in prompt_set.minimality]
        audit = prompt_set.audit
        if audit is not None and audit.ran:
            lines += [
                "",
                f"Audit: the strongest paths into the circuit from outside it ({audit.pairs} pairs):",
                "",
                "| missing edge | effect |",
                "| --- | --- |",
            ]
            lines += [f"| {e.sender} -> {e.receiver} | {_estimate(e.effect)} |" for e in audit.edges]
        if prompt_set.edges:
            lines += ["", "| line | declared edge | effect | needed |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {e.line} | {e.edge} | {_estimate(e.effect)} | "
                f"{'not tested: ' + e.note if e.effect is None else 'yes' if e.needed else '**no**'} |"
                for e in prompt_set.edges
            ]
        if prompt_set.interchange:
            lines += ["", "| " + " | ".join(INTERCHANGE_COLUMNS) + " |", "| --- " * len(INTERCHANGE_COLUMNS) + "|"]
            lines += ["| " + " | ".join(_interchange_cells(s)) + " |" for s in prompt_set.interchange]
        if prompt_set.scrubbing is not None:
            lines += ["", "| causal scrubbing | value [CI] |", "| --- | --- |"]
            lines += [f"| {label} | {value} |" for label, value in _scrubbing_rows(prompt_set.scrubbing)]
        lines.append("")
    if report.claims:
        lines += ["### claims", "", "| line | claim | verdict |", "| --- | --- | --- |"]
        lines += [f"| {c.line} | {claim_message(c)} | {'pass' if c.passed else '**FAIL**'} |" for c in report.claims]
    return "\n".join(lines) + "\n"


TEXT_FORMATS = {"json": to_json, "junit": to_junit, "github": to_github, "markdown": to_markdown}
