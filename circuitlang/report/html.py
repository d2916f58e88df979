"""Report -> one self-contained HTML page (`verify --format html`): the headline numbers with their
intervals, the circuit drawn with each declared edge's measured effect, the node scores, the worst
completeness sets, the audit, the claims with their verdicts, and the spec's source with line
numbers, each claim linked to its line.

Self-contained: the styles, the script and the drawing (inline SVG, report/html_circuit.py) are in
the page, which fetches nothing; its Content-Security-Policy allows no fetch at all, and only the
page's own style and script (report/html_page.py). Every text from the spec or the report is
escaped where it is placed (`Html` marks markup built from escaped parts): the spec is untrusted. The numbers are the other
views' (report/render.py), in the same words and formats: one word, one number in every view.
"""

from __future__ import annotations

import base64
from typing import Sequence

from circuitlang.ir import models as ir
from circuitlang.report.html_circuit import LEGEND, circuit_svg, drawn_edges
from circuitlang.report.html_page import Html, element, page, table, text
from circuitlang.report.render import (
    INTERCHANGE_COLUMNS,
    _cache_line,
    _estimate,
    _interchange_cells,
    _scrubbing_rows,
    measured,
    summary_cells,
    summary_rows,
)
from circuitlang.results.lens import Look
from circuitlang.results.report import ClaimResult, PromptSetReport, Report

HEADLINE = ("faithfulness", "normalized faithfulness", "incompleteness (worst K)")
SHOWN_SETS = 5  # the worst completeness sets listed, as the table shows them


def to_html(report: Report, spec: ir.Spec, source: str, looks: Sequence[Look] = ()) -> str:
    """The page for a verification of `spec`, whose file's text is `source` (for the listing);
    `looks` (verify --look) add each prompt set's attention patterns and logit lens."""
    verdict = "all claims pass" if report.passed else "claims FAILED"  # the Markdown heading's words
    by_set = {found.prompt_set: found for found in looks}
    body = [
        _header(report, verdict),
        _contents(report),
        *(_prompt_set(report, spec, prompt_set, index, by_set.get(prompt_set.name)) for index, prompt_set in enumerate(report.prompt_sets)),
        _claims(report),
        _source(report.spec_path, source, report.claims),
    ]
    return page(f"circuitlang: {report.circuit} ({verdict})", body)


def _header(report: Report, verdict: str) -> Html:
    model = report.model
    facts = [
        ("spec", f"{report.spec_path} (sha256 {report.spec_sha256[:12]})"),
        ("model", f"{model.get('name')} (weights sha256 {str(model.get('weights_sha256'))[:12]})"),
        ("run", f"seed {report.seed}, {report.device}, {report.dtype}, {report.seconds:.1f} s"),
        ("versions", ", ".join(f"{name} {version}" for name, version in report.versions.model_dump().items())),
    ]
    badge = element("span", verdict, class_="badge " + ("pass" if report.passed else "fail"), id="verdict")
    return element(
        "header",
        [
            element("h1", [text(f"circuitlang: {report.circuit} "), badge]),
            element("dl", [Html(element("dt", name) + element("dd", value)) for name, value in facts], class_="facts"),
        ],
    )


def _contents(report: Report) -> Html:
    links = [element("a", prompt_set.name, href=f"#ps{index}") for index, prompt_set in enumerate(report.prompt_sets)]
    links += [element("a", "claims", href="#claims"), element("a", "spec source", href="#source")]
    return element("nav", links)


def _prompt_set(report: Report, spec: ir.Spec, prompt_set: PromptSetReport, index: int, looked: Look | None = None) -> Html:
    prefix = f"ps{index}"
    title = f"{prompt_set.name}: {prompt_set.prompts} prompts, metric {prompt_set.metric}, {prompt_set.variants_evaluated} variants"
    parts = [
        element("h2", title),
        *(element("p", f"warning: {warning}", class_="warning") for warning in prompt_set.warnings),
        _headline(prompt_set),
        element("div", [_circuit(spec, prompt_set, prefix), _summary(report, prompt_set)], class_="pair"),
        _edges(spec, prompt_set, prefix),
        _nodes(prompt_set),
        _completeness_sets(prompt_set),
        _audit(prompt_set),
        *_hypothesis(prompt_set),
        *([_look(looked)] if looked is not None else []),
    ]
    return element("section", parts, id=prefix, class_="prompt-set", data_prompt_set=prompt_set.name)


def _look(looked: Look) -> Html:
    """The clean run read directly (verify --look): the logit lens, the direct contributions and
    each circuit head's mean attention pattern, as `circuitlang lens` and `attention` draw them,
    inlined as PNG (the page fetches nothing)."""
    from circuitlang.report.attention_plot import attention_picture
    from circuitlang.report.lens_plot import direct_picture, lens_picture

    pictures: list[tuple[str, bytes | str]] = []
    if looked.lens is not None:
        pictures.append(("logit lens", lens_picture(looked.lens, "png")))
        if looked.lens.direct is not None:
            pictures.append(("direct contributions", direct_picture(looked.lens, "png")))
    if looked.attention is not None:
        patterns = looked.attention
        pictures += [(f"attention of {p.head}", attention_picture(patterns, p.head, "png")) for p in patterns.patterns]
    figures = [
        element("figure", [element("img", src=_png_uri(data), alt=caption), element("figcaption", caption)], class_="look")
        for caption, data in pictures
    ]
    note = [element("p", f"not drawn: {looked.note}", class_="warning")] if looked.note else []
    intro = element("p", "The clean run read directly: readings to look at beside the claims, not verification steps (verify --look).")
    return element("div", [element("h3", "look: the logit lens and attention patterns"), intro, *note, *figures], class_="looks")


def _png_uri(data: bytes | str) -> str:
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _headline(prompt_set: PromptSetReport) -> Html:
    """Faithfulness, normalized faithfulness and the worst incompleteness as the summary table
    states them, and the minimality verdicts counted."""
    cards = []
    for name, estimate, definition in summary_rows(prompt_set):
        if name in HEADLINE:
            value, interval = summary_cells(estimate)
            cards.append(_card(name, value, interval, definition))
    needed = sum(node.needed for node in prompt_set.minimality)
    cards.append(_card("minimality", f"{needed} of {len(prompt_set.minimality)}", "nodes needed", "the nodes table below"))
    return element("div", cards, class_="headline")


def _card(name: str, value: str, interval: str, definition: str) -> Html:
    parts = [element("div", name, class_="name"), element("div", value, class_="value"), element("div", interval, class_="interval")]
    return element("div", [*parts, element("div", definition, class_="definition")], class_="card", data_number=name)


def _circuit(spec: ir.Spec, prompt_set: PromptSetReport, prefix: str) -> Html:
    caption = element("figcaption", f"the circuit on {prompt_set.name}: {LEGEND}")
    return element("figure", [Html(circuit_svg(spec, prompt_set, prefix)), caption], class_="circuit")


def _summary(report: Report, prompt_set: PromptSetReport) -> Html:
    confidence = f"{report.settings.get('confidence', 0.95):.0%} CI"
    rows = [
        element("tr", [element("td", cell) for cell in (name, *summary_cells(estimate), definition)], data_number=name)
        for name, estimate, definition in summary_rows(prompt_set)
    ]
    return table(("number", "value", confidence, "definition"), rows, _cache_line(prompt_set), class_="summary")


def _edges(spec: ir.Spec, prompt_set: PromptSetReport, prefix: str) -> Html:
    title = f"declared edges on {prompt_set.name}: effect = (F(M) - F(M, edge path-patched)) / |F(M)|"
    rows = []
    for edge in drawn_edges(spec, prompt_set, prefix):
        effect = edge.effect
        line = element("a", effect.line, href=edge.href) if effect and edge.href else (effect.line if effect else "")
        needed = {"needed": "yes", "not-needed": "NOT NEEDED", "not-tested": "not tested"}[edge.kind]
        cells = [line, effect.edge if effect else f"{edge.sender} -> {edge.receiver}", _estimate(effect.effect if effect else None)]
        cells += [element("span", needed, class_=edge.kind), effect.note if effect else "not measured"]
        rows.append(element("tr", [element("td", cell) for cell in cells], data_edge=edge.id))
    return table(("line", "edge", "effect", "needed", "note"), rows, title, class_="edges") if rows else Html("")


def _nodes(prompt_set: PromptSetReport) -> Html:
    scores = {score.node: score for score in prompt_set.node_scores}
    rows = []
    for node in prompt_set.minimality:
        s = scores.get(node.node)
        needed = element("span", "yes", class_="needed") if node.needed else element("span", "NOT NEEDED", class_="not-needed")
        numbers = [_estimate(s.direct_logit if s else None), _estimate(s.copy_score if s else None), _estimate(s.next_score if s else None)]
        rows.append([node.node, node.role, _estimate(node.score), needed, *numbers])
    columns = ("node", "role", "minimality", "needed", "direct logit", "copy score", "next score")
    return table(columns, rows, f"nodes on {prompt_set.name}", class_="nodes")


def _completeness_sets(prompt_set: PromptSetReport) -> Html:
    sets = prompt_set.completeness.sets
    rows = [[", ".join(subset.nodes), subset.source, _estimate(subset.score)] for subset in sets[:SHOWN_SETS]]
    title = f"worst completeness sets on {prompt_set.name} ({len(sets)} tried)"
    return table(("K", "found by", "incompleteness"), rows, title, class_="completeness")


def _audit(prompt_set: PromptSetReport) -> Html:
    audit = prompt_set.audit
    if audit is None:
        return element("p", f"audit on {prompt_set.name}: not run (the prompt set has no corruption to patch from)", class_="audit")
    if not audit.ran:
        return element("p", f"audit on {prompt_set.name}: not run ({audit.note})", class_="audit")
    title = f"audit on {prompt_set.name}: the strongest paths into the circuit from outside it ({audit.pairs} pairs, {audit.runs} runs)"
    edges = [[f"{edge.sender} -> {edge.receiver}", _estimate(edge.effect)] for edge in audit.edges]
    nodes = [[node.sender, _estimate(node.effect)] for node in audit.nodes]
    parts = [table(("missing edge", "effect"), edges, title), table(("missing node (into the whole circuit)", "effect"), nodes)]
    return element("div", parts, class_="audit pair")


def _hypothesis(prompt_set: PromptSetReport) -> list[Html]:
    parts = []
    if prompt_set.interchange:
        rows = [_interchange_cells(score) for score in prompt_set.interchange]
        title = f"interchange interventions on {prompt_set.name}: IIA = top token is the counterfactual answer"
        parts.append(table(INTERCHANGE_COLUMNS, rows, title, class_="interchange"))
    if prompt_set.scrubbing is not None:
        title = f"causal scrubbing on {prompt_set.name}: recovered = (F(scrubbed) - F(random)) / (F(M) - F(random))"
        parts.append(table(("number", "value [CI]"), _scrubbing_rows(prompt_set.scrubbing), title, class_="scrubbing"))
    return parts


# ---- claims and source -----------------------------------------------------------------------------


def _claims(report: Report) -> Html:
    columns = ("line", "claim", "on", "target", "measured", "threshold", "margin", "verdict", "note")
    rows = [_claim_row(claim, index) for index, claim in enumerate(report.claims)]
    body = table(columns, rows, class_="claims") if rows else element("p", "the spec makes no claims (no `expect` lines)")
    return element("section", [element("h2", "claims"), body], id="claims")


def _claim_row(claim: ClaimResult, index: int) -> Html:
    verdict = "pass" if claim.passed else "FAIL"
    margin = "-" if claim.margin is None else f"{claim.margin:+.3g}"
    cells = [
        element("a", claim.line, href=f"#L{claim.line}", class_="claim-link"),
        element("code", claim.claim),
        claim.prompt_set,
        claim.target if claim.target != "circuit" else "",
        measured(claim),
        f"{claim.op} {claim.threshold:g}",
        margin,
        element("span", verdict, class_="verdict " + verdict.lower()),
        claim.note,
    ]
    return element("tr", [element("td", cell) for cell in cells], id=f"claim{index}", class_=verdict.lower(), data_verdict=verdict.lower())


def _source(path: str, source: str, claims: list[ClaimResult]) -> Html:
    """The spec as verified, one anchor per line (`#L12`); claim lines marked with their verdict."""
    verdicts = {claim.line: "pass" if claim.passed else "fail" for claim in claims}
    lines = [
        element(
            "span",
            [element("a", number, href=f"#L{number}", class_="number"), line, "\n"],
            id=f"L{number}",
            class_=" ".join(("line", *((f"claim {verdicts[number]}",) if number in verdicts else ()))),
        )
        for number, line in enumerate(source.splitlines(), start=1)
    ]
    listing = element("pre", lines, class_="source") if lines else element("p", "the spec's text was not available")
    return element("section", [element("h2", f"spec source: {path}"), listing], id="source")
