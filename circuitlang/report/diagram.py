"""Circuits (IR) -> a plain description of a layered diagram: nodes with their rank, label lines
and colour, edges with their channel labels and colours, and the legend. Pure Python, no
Graphviz: `report/draw_graphviz.py` turns a `Diagram` into a picture.

Ranks run top to bottom in residual-stream order: `embed`, then for each layer its heads and then
its MLP, then `logits`; only ranks that hold a node are kept. Several specs drawn together give
one diagram of the union of their nodes and edges: each node lists the specs that declare it
(tags A, B, ...), a node in more than one spec is marked shared, and edges take their spec's
colour.

The caption counts nodes, declared edges (the arrows) and graph edges in the words of
`report/counts.py`, the words `check` and `compare` use; with several specs, the legend gives each
spec's own counts as `compare` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import ascii_uppercase
from typing import Sequence

from circuitlang.errors import SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import EdgeKey, kept_graph_edges
from circuitlang.report.counts import GRAPH_EDGES_MEANING, NO_GRAPH_EDGES, counted, size_text

# Paul Tol's "light" scheme (colour-blind safe, dark text stays readable), ordered so that
# neighbours in the sequence differ strongly; cycled when a diagram has more roles.
ROLE_COLOURS = ("#77AADD", "#EE8866", "#44BB99", "#EEDD88", "#FFAABB", "#99DDFF", "#BBCC33", "#AAAA00")
NEUTRAL = "#DDDDDD"  # the role "mlp" of bare `mlp` lines: context rather than a claim
# Paul Tol's "bright" scheme for the specs' edges and tags (dark enough for thin lines).
SPEC_COLOURS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377")
EDGE_COLOUR = "#444444"  # edges of a single spec
LAYOUT = "input at the top, output at the bottom; each layer's heads, then its MLP"


@dataclass(frozen=True)
class DiagramNode:
    id: str  # str(ir.Node): "9.1", "mlp 9", "embed", "logits"
    kind: str  # head | mlp | embed | logits
    rank: str  # a Diagram.ranks entry
    lines: tuple[str, ...]  # the name, then roles, positions and spec tags
    fill: str
    specs: tuple[str, ...]  # tags of the specs declaring the node
    shared: bool  # declared by more than one spec


@dataclass(frozen=True)
class DiagramEdge:
    sender: str
    receiver: str
    label: str  # the channels "q,k,v", "k,v", ...; empty for MLP and logits receivers
    colours: tuple[str, ...]  # one per spec declaring the edge
    specs: tuple[str, ...]


@dataclass(frozen=True)
class DiagramSpec:
    tag: str
    name: str
    path: str
    colour: str
    size: str  # the spec's nodes, declared edges and graph edges (report/counts.py)


@dataclass(frozen=True)
class Diagram:
    title: str
    caption: str  # nodes, declared edges and graph edges of the union (report/counts.py)
    ranks: tuple[str, ...]  # top to bottom
    nodes: tuple[DiagramNode, ...]
    edges: tuple[DiagramEdge, ...]
    roles: tuple[tuple[str, str], ...]  # (role, colour) in order of first appearance
    specs: tuple[DiagramSpec, ...]
    notes: tuple[str, ...]  # lines for the legend: what the marks mean, "no edges declared"


def build_diagram(specs: Sequence[ir.Spec]) -> Diagram:
    """One diagram for one or several specs of one model shape (SpecError otherwise)."""
    _check_same_shape(specs)
    graph_edges = [_graph_edges(spec) for spec in specs]
    drawn = tuple(
        DiagramSpec(
            _tag(i),
            s.name,
            s.path,
            SPEC_COLOURS[i % len(SPEC_COLOURS)] if len(specs) > 1 else EDGE_COLOUR,
            size_text(len(s.circuit.nodes), len(s.circuit.edges), None if kept is None else len(kept)),
        )
        for i, (s, kept) in enumerate(zip(specs, graph_edges))
    )
    roles = _role_colours(specs)
    nodes = _nodes(specs, drawn, roles)
    edges = _edges(specs, drawn)
    union = _union(graph_edges)
    title, caption = _title(specs, drawn, nodes, edges, union)
    return Diagram(
        title=title,
        caption=caption,
        ranks=tuple(dict.fromkeys(n.rank for n in nodes)),
        nodes=nodes,
        edges=edges,
        roles=tuple(roles.items()),
        specs=drawn,
        notes=_notes(specs, drawn, edges),
    )


def _union(graph_edges: Sequence[set[EdgeKey] | None]) -> set[EdgeKey] | None:
    """Every spec's graph edges together; None when one spec's are not known."""
    known = [edges for edges in graph_edges if edges is not None]
    return set().union(*known) if len(known) == len(graph_edges) else None


def _graph_edges(spec: ir.Spec) -> set[EdgeKey] | None:
    """The spec's graph edges; None where EAP-IG's graph lacks one of its declared edges, which a
    drawing shows all the same (the count is then not given)."""
    try:
        return kept_graph_edges(spec)
    except SpecError:
        return None


def _tag(index: int) -> str:
    return ascii_uppercase[index % 26] + (str(index // 26) if index >= 26 else "")  # A..Z, A1..


def rank_of(node: ir.Node) -> str:
    if node.kind == "head":
        return f"layer {node.layer} heads"
    return f"layer {node.layer} mlp" if node.kind == "mlp" else node.kind


def _order(node: ir.Node) -> tuple[int, int, int]:
    """Residual-stream order (embed, per layer the heads then the MLP, logits); heads by index."""
    if node.layer is None:
        return (-1 if node.kind == "embed" else 1 << 30, 0, 0)
    return (node.layer, int(node.kind == "mlp"), node.head or 0)


def _check_same_shape(specs: Sequence[ir.Spec]) -> None:
    def shape(spec: ir.Spec) -> str:
        return f"{spec.shape.n_layers} layers x {spec.shape.n_heads} heads" if spec.shape else spec.model.name

    first = specs[0]
    for spec in specs[1:]:
        if shape(spec) != shape(first):
            raise SpecError(
                f"{spec.name} is on {spec.model.name} ({shape(spec)}) but {first.name} is on {first.model.name} ({shape(first)})",
                spec.model.span,
                "draw together only specs on models of the same shape",
            )


def _role_colours(specs: Sequence[ir.Spec]) -> dict[str, str]:
    colours: dict[str, str] = {}
    for spec in specs:
        for role in spec.circuit.roles():
            if role not in colours:
                used = sum(1 for name in colours if name != "mlp")
                colours[role] = NEUTRAL if role == "mlp" else ROLE_COLOURS[used % len(ROLE_COLOURS)]
    return colours


def _nodes(specs: Sequence[ir.Spec], drawn: Sequence[DiagramSpec], roles: dict[str, str]) -> tuple[DiagramNode, ...]:
    """The circuits' nodes, and `embed` / `logits` when an edge reaches them, top to bottom."""
    members: dict[ir.Node, list[tuple[DiagramSpec, ir.CircuitNode]]] = {}
    for spec, info in zip(specs, drawn):
        for member in spec.circuit.nodes:
            members.setdefault(member.node, []).append((info, member))
    ends = {end for spec in specs for edge in spec.circuit.edges for end in (edge.sender, edge.receiver) if end.layer is None}
    ordered = sorted([*members, *ends], key=_order)
    return tuple(_node(node, members.get(node, []), roles, len(specs) > 1) for node in ordered)


def _node(node: ir.Node, found: list[tuple[DiagramSpec, ir.CircuitNode]], roles: dict[str, str], several: bool) -> DiagramNode:
    """Label lines: the name, its role and positions (per spec when the specs disagree), the specs."""
    described: dict[tuple[str, ...], list[str]] = {}
    for info, member in found:
        role = "" if member.role == "mlp" else member.role  # "mlp 3" already says it
        described.setdefault(tuple(t for t in (role, positions_text(member)) if t), []).append(info.tag)
    lines = [str(node)]
    if len(described) == 1:
        lines += next(iter(described))
    else:
        lines += [f"{','.join(tags)}: {' · '.join(text) or 'mlp'}" for text, tags in described.items()]
    tags = tuple(info.tag for info, _ in found)
    if several and tags:
        lines.append("in " + ",".join(tags))
    named = [member.role for _, member in found if member.role != "mlp"]
    fill = roles[named[0]] if named else NEUTRAL if found else "white"
    return DiagramNode(str(node), node.kind, rank_of(node), tuple(lines), fill, tags, len(tags) > 1)


def positions_text(member: ir.CircuitNode) -> str:
    """The position clauses compactly: "q end · k s1..s4" for heads, "at end" for MLPs."""

    def joined(positions: tuple[ir.Position, ...]) -> str:
        return ",".join(str(p) for p in positions)

    if member.node.kind == "mlp":
        return f"at {joined(member.q)}" if member.q else ""
    parts = [f"{name} {joined(positions)}" for name, positions in (("q", member.q), ("k", member.k)) if positions]
    return " · ".join(parts)


def _edges(specs: Sequence[ir.Spec], drawn: Sequence[DiagramSpec]) -> tuple[DiagramEdge, ...]:
    found: dict[tuple[str, str, str], list[DiagramSpec]] = {}
    for spec, info in zip(specs, drawn):
        for edge in spec.circuit.edges:
            found.setdefault((str(edge.sender), str(edge.receiver), ",".join(edge.channels)), []).append(info)
    return tuple(
        DiagramEdge(sender, receiver, label, tuple(i.colour for i in infos), tuple(i.tag for i in infos))
        for (sender, receiver, label), infos in found.items()
    )


def _title(
    specs: Sequence[ir.Spec],
    drawn: Sequence[DiagramSpec],
    nodes: Sequence[DiagramNode],
    edges: Sequence[DiagramEdge],
    graph_edges: set[EdgeKey] | None,
) -> tuple[str, str]:
    """The title (circuits and model) and the caption: nodes, declared edges and graph edges (of
    the union, when several specs are drawn)."""
    title = f"{' + '.join(spec.name for spec in specs)} on {', '.join(dict.fromkeys(s.model.name for s in specs))}"
    if len(specs) == 1:
        return title, drawn[0].size
    count = sum(1 for n in nodes if n.kind in ("head", "mlp"))
    shared = sum(1 for n in nodes if n.shared)
    graphed = NO_GRAPH_EDGES if graph_edges is None else counted(len(graph_edges), "graph edge")
    return title, f"{counted(count, 'node')} ({shared} shared), {counted(len(edges), 'declared edge')}, {graphed}"


def _notes(specs: Sequence[ir.Spec], drawn: Sequence[DiagramSpec], edges: Sequence[DiagramEdge]) -> tuple[str, ...]:
    notes = [LAYOUT, "ellipse: attention head · box: MLP"]
    if len(specs) > 1:
        notes.append('double border: node in several specs · "in A,B": the specs declaring it')
    if not edges:
        notes.append("no edges declared: nodes drawn by layer only")
    else:
        notes.append("arrows: the declared edges · edge labels: the receiving head's inputs (q, k, v)")
        bare = [info.name for spec, info in zip(specs, drawn) if not spec.circuit.edges]
        if bare and len(specs) > 1:
            notes.append("no edges declared in " + ", ".join(bare))
    notes.append(GRAPH_EDGES_MEANING)
    return tuple(notes)
