"""A verified circuit -> inline SVG text for the HTML report (report/html.py): the spec's diagram
(report/diagram.py) with each declared edge drawn by what verify measured, its line width growing
with |effect| and its colour and dash saying needed, not needed or not tested.

Graphviz `dot` lays the diagram out when pygraphviz is installed (the `pictures` extra), as
`circuitlang draw` does; the SVG text comes back from memory, no file is written. Without it (the
light install) the diagram is laid out here, one row per rank, so that the page still shows the
circuit. Both layouts give every declared edge one `<g class="edge ...">` whose id the edges
table's rows name, linked to the edge's line in the source listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

from circuitlang.ir import models as ir
from circuitlang.report.diagram import Diagram, DiagramNode, build_diagram
from circuitlang.report.render import edge_message
from circuitlang.results.report import EdgeEffect, PromptSetReport

NEEDED = "#225588"
NOT_NEEDED = "#CC3311"
NOT_TESTED = "#999999"
WIDEST_EFFECT = 0.5  # |effect| (a fraction of F(M)) past which lines grow no wider
LEGEND = (
    f"line width grows with |effect| (up to {WIDEST_EFFECT}); label: the effect; "
    "blue solid: needed · red dashed: not needed · grey dotted: not tested; "
    "a red dashed border: a node that is not needed; click an edge for its line in the spec"
)


@dataclass(frozen=True)
class DrawnEdge:
    """One declared edge as the page draws it."""

    id: str  # the SVG element's id, which the edges table's row names
    sender: str
    receiver: str
    channels: str  # "k,v": the diagram's edge label
    effect: EdgeEffect | None  # None: verify reported no effect for it
    href: str  # "#L31": its line in the source listing; "" for an edge of a `use`d file

    @property
    def kind(self) -> str:
        if self.effect is None or self.effect.effect is None:
            return "not-tested"
        return "needed" if self.effect.needed else "not-needed"

    @property
    def colour(self) -> str:
        return {"needed": NEEDED, "not-needed": NOT_NEEDED, "not-tested": NOT_TESTED}[self.kind]

    @property
    def width(self) -> float:
        if self.effect is None or self.effect.effect is None:
            return 1.0
        return 1.0 + 16.0 * min(abs(self.effect.effect.value), WIDEST_EFFECT)

    @property
    def label(self) -> str:
        """The channels and the effect as the edges table states it (three decimals)."""
        if self.effect is None or self.effect.effect is None:
            return f"{self.channels} not tested".strip()
        return f"{self.channels} {self.effect.effect.value:.3f}".strip()

    @property
    def tooltip(self) -> str:
        return edge_message(self.effect) if self.effect else f"edge {self.sender} -> {self.receiver}: not measured"


def drawn_edges(spec: ir.Spec, prompt_set: PromptSetReport, prefix: str) -> tuple[DrawnEdge, ...]:
    """The spec's declared edges, in its order, each with its effect on `prompt_set`. An effect is
    matched by its text and line, which verify took from the same edge."""
    effects = {(effect.edge, effect.line): effect for effect in prompt_set.edges}
    return tuple(
        DrawnEdge(
            id=f"{prefix}-edge-{index}",
            sender=str(edge.sender),
            receiver=str(edge.receiver),
            channels=",".join(edge.channels),
            effect=effects.get((str(edge), edge.span.line)),
            href=f"#L{edge.span.line}" if edge.span.path == spec.path else "",
        )
        for index, edge in enumerate(spec.circuit.edges)
    )


def circuit_svg(spec: ir.Spec, prompt_set: PromptSetReport, prefix: str) -> str:
    """The circuit with its measured edges as one `<svg>` element; `prefix` keeps its ids apart
    from another prompt set's drawing on the same page."""
    diagram = build_diagram([spec])
    edges = drawn_edges(spec, prompt_set, prefix)
    unneeded = frozenset(node.node for node in prompt_set.minimality if not node.needed)
    try:
        return graphviz_svg(diagram, edges, unneeded)
    except ImportError:  # the light install: no pygraphviz
        return layered_svg(diagram, edges, unneeded, prefix)


# ---- Graphviz ---------------------------------------------------------------------------------


def graphviz_svg(diagram: Diagram, edges: tuple[DrawnEdge, ...], unneeded: frozenset[str]) -> str:
    """`circuitlang draw`'s layout, its edges restyled by effect; the title and legend are left to
    the page, which says them in HTML."""
    from circuitlang.report.draw_graphviz import to_agraph

    graph = to_agraph(diagram)
    graph.graph_attr["label"] = ""
    by_key = {(edge.sender, edge.receiver, edge.channels): edge for edge in edges}
    for link in graph.edges():
        drawn = by_key.get((link[0], link[1], link.attr.get("label") or ""))
        if drawn is not None:
            link.attr.update(_graphviz_edge(drawn))
    for node in unneeded:
        graph.get_node(node).attr.update({"color": NOT_NEEDED, "style": "filled,dashed", "penwidth": "2", "class": "not-needed"})
    svg = graph.draw(format="svg", prog="dot").decode("utf-8")
    return svg[svg.index("<svg") :]  # inline: without the XML declaration and doctype


def _graphviz_edge(edge: DrawnEdge) -> dict[str, str]:
    style = {"needed": "solid", "not-needed": "dashed", "not-tested": "dotted"}[edge.kind]
    attributes = {
        "id": edge.id,
        "class": edge.kind,
        "color": edge.colour,
        "fontcolor": edge.colour,
        "penwidth": f"{edge.width:.2f}",
        "style": style,
        "label": edge.label,
        "tooltip": edge.tooltip,
    }
    if edge.href:
        attributes["href"] = edge.href
    return attributes


# ---- the layout without Graphviz ----------------------------------------------------------------

AXIS_WIDTH = 110  # the rank names at the left
COLUMN = 150  # horizontal room per node
ROW = 80
NODE_WIDTH, NODE_HEIGHT = 120, 36
BOW = 40  # how far an edge that skips ranks bows out, per rank skipped: it must not run through the nodes between
DASHES = {"needed": "", "not-needed": "6,4", "not-tested": "2,3"}


def layered_svg(diagram: Diagram, edges: tuple[DrawnEdge, ...], unneeded: frozenset[str], prefix: str) -> str:
    """Ranks as rows top to bottom, each rank's nodes spread evenly; edges as curves from the
    sender's bottom to the receiver's top, those that skip ranks bowing out to alternate sides."""
    rows = {rank: row for row, rank in enumerate(diagram.ranks)}
    skips = {edge.id: _skip(edge, diagram, rows) for edge in edges}
    margin = max([abs(_bow(skip, 0)) for skip in skips.values()] + [0.0])  # room for the widest bow
    places = _places(diagram, AXIS_WIDTH + margin)
    widest = max((sum(1 for n in diagram.nodes if n.rank == rank) for rank in diagram.ranks), default=1)
    width, height = AXIS_WIDTH + 2 * margin + widest * COLUMN, len(diagram.ranks) * ROW + 10
    drawn = [edge for edge in edges if edge.sender in places and edge.receiver in places]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif">',
        _markers(prefix),
        *(_axis_label(rank, index) for index, rank in enumerate(diagram.ranks)),
        *(_layered_edge(edge, places, prefix, _bow(skips[edge.id], index)) for index, edge in enumerate(drawn) if skips[edge.id] <= 1),
        *(_layered_edge(edge, places, prefix, _bow(skips[edge.id], index)) for index, edge in enumerate(e for e in drawn if skips[e.id] > 1)),
        *(_layered_node(node, places[node.id], node.id in unneeded) for node in diagram.nodes),
        "</svg>",
    ]
    return "\n".join(parts)


def _skip(edge: DrawnEdge, diagram: Diagram, rows: dict[str, int]) -> int:
    """How many rows the edge goes down (1: to the next rank)."""
    rank = {node.id: node.rank for node in diagram.nodes}
    if edge.sender not in rank or edge.receiver not in rank:
        return 1
    return abs(rows[rank[edge.receiver]] - rows[rank[edge.sender]])


def _bow(skip: int, index: int) -> float:
    """0 for an edge to the next rank; else the horizontal reach of its curve, to alternate sides."""
    return 0.0 if skip <= 1 else (BOW / 2 + BOW * (skip - 1)) * (1 if index % 2 == 0 else -1)


def _places(diagram: Diagram, left: float) -> dict[str, tuple[float, float]]:
    """Each node's centre."""
    places = {}
    for row, rank in enumerate(diagram.ranks):
        members = [node for node in diagram.nodes if node.rank == rank]
        for column, node in enumerate(members):
            places[node.id] = (left + (column + 0.5) * COLUMN, row * ROW + ROW / 2 + 5)
    return places


def _markers(prefix: str) -> str:
    """One arrowhead per edge colour (a marker cannot take its line's colour in SVG 1.1)."""
    heads = "".join(
        f'<marker id="{prefix}-arrow-{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="5" markerHeight="5" '
        f'orient="auto-start-reverse" markerUnits="userSpaceOnUse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for kind, colour in (("needed", NEEDED), ("not-needed", NOT_NEEDED), ("not-tested", NOT_TESTED))
    )
    return f"<defs>{heads}</defs>"


def _axis_label(rank: str, row: int) -> str:
    return f'<text x="8" y="{row * ROW + ROW / 2 + 9}" font-size="11" fill="#777777">{escape(rank)}</text>'


def _layered_edge(edge: DrawnEdge, places: dict[str, tuple[float, float]], prefix: str, bow: float) -> str:
    """From the sender's bottom to the receiver's top; an edge that skips ranks (bow != 0) leaves
    and enters by the nodes' sides instead, so that it passes beside the column of nodes between."""
    (x1, y1), (x2, y2) = places[edge.sender], places[edge.receiver]
    if bow:
        side = NODE_WIDTH / 2 if bow > 0 else -NODE_WIDTH / 2
        x1, x2 = x1 + side, x2 + side + (3 if bow > 0 else -3)
        c1, c2 = (x1 + bow, y1), (x2 + bow, y2)
    else:
        y1, y2 = y1 + NODE_HEIGHT / 2, y2 - NODE_HEIGHT / 2 - 2
        c1, c2 = (x1, (y1 + y2) / 2), (x2, (y1 + y2) / 2)
    path = (
        f'<path d="M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}" fill="none" '
        f'stroke="{edge.colour}" stroke-width="{edge.width:.2f}" stroke-dasharray="{DASHES[edge.kind] or "none"}" '
        f'marker-end="url(#{prefix}-arrow-{edge.kind})"/>'
    )
    x, y = (x1 + x2) / 2 + 0.75 * bow, (y1 + y2) / 2  # the curve's midpoint; the label beside it, outward
    anchor, x = ("end", x - 4) if bow < 0 else ("start", x + 4)
    label = f'<text x="{x:.1f}" y="{y:.1f}" font-size="10" text-anchor="{anchor}" fill="{edge.colour}">{escape(edge.label)}</text>'
    linked = f'<a href="{escape(edge.href)}">{path}{label}</a>' if edge.href else path + label
    return f'<g id="{escape(edge.id)}" class="edge {edge.kind}"><title>{escape(edge.tooltip)}</title>{linked}</g>'


def _layered_node(node: DiagramNode, place: tuple[float, float], unneeded: bool) -> str:
    x, y = place
    border = f'stroke="{NOT_NEEDED}" stroke-width="2" stroke-dasharray="5,3"' if unneeded else 'stroke="#333333" stroke-width="0.8"'
    if node.kind == "head":
        shape = f'<ellipse cx="{x}" cy="{y}" rx="{NODE_WIDTH / 2}" ry="{NODE_HEIGHT / 2}" fill="{node.fill}" {border}/>'
    else:
        corner = f'x="{x - NODE_WIDTH / 2}" y="{y - NODE_HEIGHT / 2}"'
        shape = f'<rect {corner} width="{NODE_WIDTH}" height="{NODE_HEIGHT}" fill="{node.fill}" {border}/>'
    name, *details = node.lines
    detail = _shortened(" · ".join(details), 24)
    text = f'<text x="{x}" y="{y - 2 if detail else y + 4}" font-size="12" font-weight="bold" text-anchor="middle">{escape(name)}</text>'
    if detail:
        text += f'<text x="{x}" y="{y + 11}" font-size="8" text-anchor="middle">{escape(detail)}</text>'
    title = f"<title>{escape(' · '.join(node.lines))}</title>"
    return f'<g class="node{" not-needed" if unneeded else ""}">{title}{shape}{text}</g>'


def _shortened(text: str, length: int) -> str:
    """A label that fits its node; the node's title holds the whole text."""
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= length else text[: length - 1] + "…"
