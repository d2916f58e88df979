"""`circuitlang draw`: the diagram description (nodes, ranks, edge labels, shared nodes) and the
rendered pictures (SVG, PNG, dot), exit codes, and no plotting imports for `check`."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import kept_graph_edges
from circuitlang.ir.lower import load_spec
from circuitlang.report.diagram import EDGE_COLOUR, NEUTRAL, ROLE_COLOURS, SPEC_COLOURS, build_diagram
from tests.conftest import ROOT, SPECS

ORGANISM = [SPECS / f"organism_{name}.circ" for name in ("incr_digits", "months", "number_words")]
SMALL = (
    'circuitlang 1\ncircuit {name} on "gpt2"\nprompts {{ template "{{a}}"; a = 1; answer = 2; wrong = 3 }}\n'
    "metric logit_diff(answer, wrong)\nablate zero\n{body}\n"
)


def expected_rank(node: ir.Node) -> str:
    return {"head": f"layer {node.layer} heads", "mlp": f"layer {node.layer} mlp"}.get(node.kind, node.kind)


@pytest.mark.parametrize("name", ["ioi", "greater_than", "incr_digits"])
def test_every_declared_node_is_drawn_on_its_layers_rank(name):
    spec = load_spec(SPECS / f"{name}.circ")
    diagram = build_diagram([spec])
    drawn = {node.id: node for node in diagram.nodes}
    for member in spec.circuit.nodes:
        node = drawn[str(member.node)]
        assert node.rank == expected_rank(member.node) and node.kind == member.node.kind
        if member.role != "mlp":
            assert member.role in node.lines and node.fill == dict(diagram.roles)[member.role]
    # ranks run top to bottom in residual order, and only ranks holding a node are kept
    order = {"embed": (-1, 0), "logits": (99, 0)}
    keys = [order.get(r) or (int(r.split()[1]), r.endswith("mlp")) for r in diagram.ranks]
    assert keys == sorted(keys) and set(diagram.ranks) == {n.rank for n in diagram.nodes}


def test_roles_take_palette_colours_in_order_of_first_appearance():
    spec = load_spec(SPECS / "ioi.circ")
    roles = list(dict.fromkeys(member.role for member in spec.circuit.nodes if member.role != "mlp"))
    coloured = tuple((role, colour) for role, colour in build_diagram([spec]).roles if role != "mlp")
    assert coloured == tuple(zip(roles, ROLE_COLOURS))
    assert dict(build_diagram([load_spec(ORGANISM[0])]).roles)["mlp"] == NEUTRAL


def test_positions_are_shown_compactly():
    lines = {n.id: n.lines for n in build_diagram([load_spec(SPECS / "incr_digits.circ")]).nodes}
    assert lines["9.1"] == ("9.1", "number mover", "q end · k s1..s4")
    assert lines["4.4"] == ("4.4", "number detector", "q s2..s4") and lines["mlp 0"] == ("mlp 0",)
    gt = {n.id: n.lines for n in build_diagram([load_spec(SPECS / "greater_than.circ")]).nodes}
    assert gt["mlp 9"] == ("mlp 9", "comparison mlp", "at end")


def test_edges_are_the_declared_ones_labelled_with_their_channels():
    spec = load_spec(SPECS / "incr_digits.circ")
    diagram = build_diagram([spec])
    drawn = {(e.sender, e.receiver): e for e in diagram.edges}
    assert len(drawn) == len(spec.circuit.edges) == 11
    for edge in spec.circuit.edges:
        label = drawn[str(edge.sender), str(edge.receiver)].label
        assert label == ("" if edge.receiver.kind in ("mlp", "logits") else ",".join(edge.channels))
    assert drawn["4.4", "9.1"].label == "k,v" and drawn["5.5", "9.1"].label == "q,k,v"
    ids = {n.id for n in diagram.nodes}
    assert "logits" in ids and "embed" not in ids  # ends are drawn only when an edge reaches them
    assert diagram.ranks[-1] == "logits" and all(e.colours == (EDGE_COLOUR,) for e in diagram.edges)


def test_no_edges_are_invented_and_the_picture_says_so():
    diagram = build_diagram([load_spec(SPECS / "ioi.circ")])
    assert diagram.edges == () and "no edges declared: nodes drawn by layer only" in diagram.notes


def test_shared_nodes_are_marked_with_their_specs(tmp_path):
    bodies = {"a": 'role "r": 0.0, 0.2\nmlp 0..3', "b": 'role "r": 0.2\nmlp 0..3', "c": 'role "r": 0.6\nmlp 0..3'}
    paths = []
    for name, body in bodies.items():
        paths.append(tmp_path / f"{name}.circ")
        paths[-1].write_text(SMALL.format(name=name, body=body))
    diagram = build_diagram([load_spec(path) for path in paths])
    nodes = {n.id: n for n in diagram.nodes}
    assert nodes["0.2"].specs == ("A", "B") and nodes["0.2"].shared and "in A,B" in nodes["0.2"].lines
    assert nodes["0.0"].specs == ("A",) and not nodes["0.0"].shared
    assert nodes["0.6"].specs == ("C",) and all(nodes[f"mlp {i}"].specs == ("A", "B", "C") for i in range(4))
    union = set().union(*(kept_graph_edges(load_spec(path)) for path in paths))
    assert diagram.caption == f"7 nodes (5 shared), 0 declared edges, {len(union)} graph edges"
    sizes = [spec.size for spec in diagram.specs]
    assert sizes == [f"{n} nodes, 0 declared edges, {len(kept_graph_edges(load_spec(p)))} graph edges" for n, p in zip((6, 5, 5), paths)]
    assert [(s.tag, s.name) for s in diagram.specs] == [("A", "a"), ("B", "b"), ("C", "c")]


def test_edges_take_their_specs_colours_and_disagreeing_roles_are_shown_per_spec(tmp_path):
    first = tmp_path / "a.circ"
    first.write_text(SMALL.format(name="a", body='role "x": 1.0, 2.0\nedge 1.0 -> 2.0 via k\nedge 2.0 -> logits'))
    second = tmp_path / "b.circ"
    second.write_text(SMALL.format(name="b", body='role "y": 1.0, 3.0 q end\nedge 1.0 -> 3.0\nedge 3.0 -> logits'))
    diagram = build_diagram([load_spec(first), load_spec(second)])
    edges = {(e.sender, e.receiver): e for e in diagram.edges}
    assert edges["1.0", "2.0"].colours == (SPEC_COLOURS[0],) and edges["1.0", "2.0"].label == "k"
    assert edges["1.0", "3.0"].colours == (SPEC_COLOURS[1],) and edges["1.0", "3.0"].specs == ("B",)
    node = next(n for n in diagram.nodes if n.id == "1.0")
    assert node.lines == ("1.0", "A: x", "B: y · q end", "in A,B") and node.shared
    same = build_diagram([load_spec(first), load_spec(first)])
    assert {e.colours for e in same.edges} == {tuple(SPEC_COLOURS[:2])}  # one edge, drawn in both colours


def test_specs_on_models_of_different_shapes_are_refused(capsys, tmp_path):
    code = main(["draw", str(SPECS / "ioi.circ"), str(ORGANISM[0]), "-o", str(tmp_path / "x.svg")])
    err = capsys.readouterr().err
    assert code == 2 and "4 layers x 8 heads" in err and "same shape" in err and not (tmp_path / "x.svg").exists()


def test_svg_is_xml_with_every_node_label_and_the_legend(tmp_path):
    path = tmp_path / "pictures" / "ioi.svg"
    assert main(["draw", str(SPECS / "ioi.circ"), "-o", str(path)]) == 0
    texts = {t.text for t in ElementTree.parse(path).iter("{http://www.w3.org/2000/svg}text")}
    diagram = build_diagram([load_spec(SPECS / "ioi.circ")])
    assert all(line in texts for node in diagram.nodes for line in node.lines)
    assert diagram.caption.startswith(f"{len(diagram.nodes)} nodes, 0 declared edges, ")
    assert {"ioi on gpt2", diagram.caption, "no edges declared: nodes drawn by layer only"} <= texts
    assert [p.name for p in path.parent.iterdir()] == ["ioi.svg"]  # no temporary file left behind


def test_png_and_pdf_are_written_with_their_signatures(tmp_path):
    specs = [str(path) for path in ORGANISM]
    assert main(["draw", *specs, "-o", str(tmp_path / "shared.png")]) == 0
    assert (tmp_path / "shared.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert main(["draw", specs[0], "-o", str(tmp_path / "one.pdf")]) == 0
    assert (tmp_path / "one.pdf").read_bytes().startswith(b"%PDF")


def test_dot_source_puts_each_layer_on_one_rank(tmp_path):
    import pygraphviz

    path = tmp_path / "gt.dot"
    assert main(["draw", str(SPECS / "greater_than.circ"), "-o", str(path)]) == 0
    graph = pygraphviz.AGraph(str(path))
    ranks = [
        sorted(str(n) for n in sub.nodes() if not str(n).startswith("axis:"))
        for sub in graph.subgraphs()
        if sub.graph_attr.get("rank") == "same"
    ]
    spec = load_spec(SPECS / "greater_than.circ")
    by_rank: dict[str, list[str]] = {}
    for member in spec.circuit.nodes:
        by_rank.setdefault(expected_rank(member.node), []).append(str(member.node))
    assert sorted(ranks) == sorted(sorted(nodes) for nodes in by_rank.values())


def test_unknown_extension_exits_2(capsys, tmp_path):
    assert main(["draw", str(SPECS / "ioi.circ"), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "unknown picture format '.jpg'" in capsys.readouterr().err and not (tmp_path / "x.jpg").exists()


def test_spec_errors_exit_2(write_spec, capsys, tmp_path):
    path = write_spec(SMALL.format(name="c", body='role "x": 12.0'))
    assert main(["draw", str(path), "-o", str(tmp_path / "x.svg")]) == 2
    assert "layer 12 does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_check_does_not_import_plotting_libraries():
    code = (
        "import sys; from circuitlang.cli import main; "
        f"assert main(['check', {str(SPECS / 'ioi.circ')!r}]) == 0; "
        "bad = [m for m in ('pygraphviz', 'matplotlib', 'torch') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_committed_pictures_are_current(tmp_path):
    """docs/pictures/*.svg are what `draw` makes today (regenerate with the commands in docs/pictures.md)."""
    for name, specs in (("ioi", ["ioi.circ"]), ("incr_digits", ["incr_digits.circ"])):
        committed = ROOT / "docs" / "pictures" / f"{name}.svg"
        assert main(["draw", *(str(SPECS / s) for s in specs), "-o", str(tmp_path / f"{name}.svg")]) == 0
        assert _texts(tmp_path / f"{name}.svg") == _texts(committed)


def _texts(path: Path) -> list[str]:
    """The SVG's words and their colours, independent of the exact coordinates of a Graphviz version."""
    return sorted(f"{e.text}:{e.get('fill')}" for e in ElementTree.parse(path).iter("{http://www.w3.org/2000/svg}text"))


def test_an_edge_eap_igs_graph_lacks_is_drawn_without_a_graph_edge_count(write_spec, tmp_path):
    """Pythia's attention and MLP read one residual: head 1.0 does not feed mlp 1 in EAP-IG's graph.
    `check` accepts the spec, so `draw` draws it, and says the graph-edge count is not given."""
    body = 'role "x": 0.0, 1.0\nmlp 1\nedge 0.0 -> 1.0\nedge 1.0 -> mlp 1\nedge mlp 1 -> logits'
    text = SMALL.format(name="c", body=body)
    path = write_spec(text.replace('on "gpt2"', 'on "EleutherAI/pythia-70m"'))
    assert main(["check", "--no-tokenize", str(path)]) == 0
    diagram = build_diagram([load_spec(path)])
    assert diagram.caption == "3 nodes, 3 declared edges, graph edges n/a (a declared edge is not in EAP-IG's graph of this model)"
    assert main(["draw", str(path), "-o", str(tmp_path / "c.svg")]) == 0
