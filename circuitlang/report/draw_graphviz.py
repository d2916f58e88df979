"""A `Diagram` -> a picture laid out by Graphviz `dot` (through pygraphviz, imported only when a
picture is drawn): SVG, PNG, PDF, or the `.dot` source. Writes atomically; prints nothing.

Each rank is a `rank=same` subgraph that also holds a grey axis label ("layer 9 heads") at its
left; invisible edges chain the axis labels so that the layers keep their order even when a
circuit declares no edges. The title, caption and legend are one HTML label above the drawing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from circuitlang.report.diagram import Diagram, DiagramEdge, DiagramNode
from circuitlang.report.files import write_atomically

if TYPE_CHECKING:
    import pygraphviz

FORMATS = ("svg", "png", "pdf", "dot")
PNG_DPI = 110
FONT = "Helvetica"
SHAPES = {"head": "ellipse", "mlp": "box", "embed": "invhouse", "logits": "house"}
ROLES_PER_ROW = 4


def picture_format(path: Path) -> str | None:
    """The format named by the file's extension, or None when it is not one of FORMATS."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None


def render(diagram: Diagram, path: Path) -> None:
    """Lay the diagram out with dot and write it to `path` in the format its extension names."""
    kind = picture_format(path)
    if kind is None:
        raise ValueError(f"{path}: not one of {FORMATS}")
    graph = to_agraph(diagram)
    if kind == "dot":
        data = graph.string().encode("utf-8")
    else:
        data = graph.draw(format=kind, prog="dot", args=f"-Gdpi={PNG_DPI}" if kind == "png" else "")
    write_atomically(path, data)


def to_agraph(diagram: Diagram) -> "pygraphviz.AGraph":
    import pygraphviz

    graph = pygraphviz.AGraph(directed=True, strict=False, name="circuit")
    graph.graph_attr.update(
        rankdir="TB", labelloc="t", labeljust="l", fontname=FONT, nodesep="0.2", ranksep="0.35", label=_legend(diagram), outputorder="edgesfirst"
    )
    graph.node_attr.update(fontname=FONT, style="filled", penwidth="0.8", margin="0.06,0.03")
    graph.edge_attr.update(fontname=FONT, fontsize="9", arrowsize="0.6", penwidth="1.1")
    _add_axis(graph, diagram.ranks)
    for node in diagram.nodes:
        graph.add_node(node.id, **_node_attributes(node))
    for index, rank in enumerate(diagram.ranks):
        members = [f"axis:{rank}"] + [n.id for n in diagram.nodes if n.rank == rank]
        graph.add_subgraph(members, name=f"rank{index}", rank="same")
    for edge in diagram.edges:
        graph.add_edge(edge.sender, edge.receiver, **_edge_attributes(edge))
    return graph


def _add_axis(graph: "pygraphviz.AGraph", ranks: tuple[str, ...]) -> None:
    for rank in ranks:
        graph.add_node(f"axis:{rank}", label=rank, shape="plaintext", style="", fontsize="9", fontcolor="#777777")
    for upper, lower in zip(ranks, ranks[1:]):
        graph.add_edge(f"axis:{upper}", f"axis:{lower}", style="invis", weight="10")


def _node_attributes(node: DiagramNode) -> dict[str, str]:
    name, *details = (escape(line) for line in node.lines)
    small = "".join(f'<BR/><FONT POINT-SIZE="8">{line}</FONT>' for line in details)
    attributes = {"label": f'<<FONT POINT-SIZE="11"><B>{name}</B></FONT>{small}>', "shape": SHAPES[node.kind], "fillcolor": node.fill}
    if node.shared:
        attributes.update(peripheries="2", penwidth="1.4")
    return attributes


def _edge_attributes(edge: DiagramEdge) -> dict[str, str]:
    attributes = {"color": ":".join(edge.colours), "fontcolor": edge.colours[0] if len(edge.colours) == 1 else "#444444"}
    if edge.label:
        attributes["label"] = edge.label
    return attributes


# ---- the title, caption and legend ------------------------------------------------------------


def _legend(diagram: Diagram) -> str:
    """A one-column table of text lines (a nested table would stretch its columns to the title's width)."""
    lines = [f'<FONT POINT-SIZE="13"><B>{escape(diagram.title)}</B></FONT>', _small(diagram.caption)]
    roles = [f'<FONT COLOR="{colour}" POINT-SIZE="13">■</FONT> {_small(role)}' for role, colour in diagram.roles]
    lines += ["   ".join(roles[i : i + ROLES_PER_ROW]) for i in range(0, len(roles), ROLES_PER_ROW)]
    if len(diagram.specs) > 1:
        lines += [
            f'<FONT COLOR="{s.colour}" POINT-SIZE="11"><B>━━ {s.tag}</B></FONT> {_small(f"{s.name}  ({s.path}): {s.size}")}'
            for s in diagram.specs
        ]
    lines += [_small(note) for note in diagram.notes]
    rows = "".join(f'<TR><TD ALIGN="LEFT">{line}</TD></TR>' for line in lines)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{rows}</TABLE>>'


def _small(text: str) -> str:
    return f'<FONT POINT-SIZE="9">{escape(text)}</FONT>'
