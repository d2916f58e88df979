"""EAP-IG graph files: names, the model's graph, export, import, and the round trip through both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.errors import CircuitlangError, SpecError, flatten
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import GraphConfig, export_graph, export_warnings, graph_config, parse_edge, parse_node
from circuitlang.ir.eap_ig_import import import_graph
from circuitlang.ir.lower import load_spec
from tests.conftest import fast_cases

SPECS = Path(__file__).resolve().parents[2] / "specs"
ORGANISM = ir.ModelShape(n_layers=4, n_heads=8, origin="test")


def reference_graph(n_layers: int, n_heads: int, parallel: bool = False) -> tuple[list[str], list[str]]:
    """Node and edge names as EAP-IG's Graph.from_model builds them: a residual stream that every
    new component reads, and that heads (then MLPs) join layer by layer."""
    nodes, edges, stream = ["input"], [], ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        mlp = f"m{layer}"
        nodes += heads + [mlp]
        for sender in stream:
            for head in heads:
                edges += [f"{sender}->{head}<{c}>" for c in "qkv"]
            if parallel:
                edges.append(f"{sender}->{mlp}")
        stream = stream + heads
        if not parallel:
            edges += [f"{sender}->{mlp}" for sender in stream]
        stream = stream + [mlp]
    edges += [f"{sender}->logits" for sender in stream]
    return nodes + ["logits"], edges


def _edge_set(circuit: ir.Circuit) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(str(e.sender), str(e.receiver), e.channels) for e in circuit.edges}


def _in_graph(data: dict) -> set[str]:
    return {name for name, info in data["edges"].items() if info["in_graph"]}


# ---- names -------------------------------------------------------------------------------------------


def test_node_and_edge_names_parse_as_eap_ig_writes_them() -> None:
    assert parse_node("a9.h9") == ir.HeadNode(layer=9, head=9)
    assert parse_node("m3") == ir.MlpNode(layer=3)
    assert parse_node("input") == ir.EMBED and parse_node("logits") == ir.LOGITS
    assert parse_node("a9h9") is None and parse_node("mlp3") is None and parse_node("a1.h") is None
    assert parse_edge("a9.h9->a10.h0<q>") == (parse_node("a9.h9"), parse_node("a10.h0"), "q")
    assert parse_edge("m3->logits") == (parse_node("m3"), parse_node("logits"), None)


@pytest.mark.parametrize(
    "name, says",
    [
        ("a0.h1->a2.h3", "needs a channel"),
        ("a0.h1->m2<q>", "has no channel"),
        ("a0.h1-a2.h3<q>", "SENDER->RECEIVER"),
        ("a0.h1->a2.h3<x>", "needs a channel"),
        ("b0->m1", "'b0' is not an EAP-IG node name"),
    ],
)
def test_bad_edge_names_say_what_is_wrong(name: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_edge(name)


# ---- the model's graph and the export ------------------------------------------------------------


@pytest.mark.parametrize("spec_name, layers, heads", [("organism_ioi", 4, 8), ("ioi", 12, 12)])
def test_export_lists_every_node_and_edge_of_the_model(spec_name: str, layers: int, heads: int) -> None:
    data = export_graph(load_spec(SPECS / f"{spec_name}.circ"))
    nodes, edges = reference_graph(layers, heads)
    assert list(data["nodes"]) == nodes
    assert sorted(data["edges"]) == sorted(edges) and len(data["edges"]) == len(edges)
    assert data["cfg"] == {
        "n_layers": layers,
        "n_heads": heads,
        "parallel_attn_mlp": False,
        "d_model": 128 if spec_name.startswith("organism") else 768,
    }


def test_parallel_attention_and_mlp_have_no_head_to_mlp_edge_in_their_layer(tmp_path: Path) -> None:
    folder = tmp_path / "neox"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "gpt_neox", "num_hidden_layers": 3, "num_attention_heads": 2, "hidden_size": 16})
    )
    spec_path = tmp_path / "s.circ"
    spec_path.write_text(_small_spec('"./neox"', 'role "r": 0.1, 1.0\nmlp 1\n'))
    spec = load_spec(spec_path)
    assert graph_config(spec) == GraphConfig(3, 2, True, 16)
    assert sorted(export_graph(spec)["edges"]) == sorted(reference_graph(3, 2, parallel=True)[1])
    spec_path.write_text(_small_spec('"./neox"', 'role "r": 1.0\nmlp 1\nedge 1.0 -> mlp 1\nedge mlp 1 -> logits\n'))
    with pytest.raises(SpecError, match="does not exist in EAP-IG's graph"):
        export_graph(load_spec(spec_path))


def _small_spec(model: str, circuit: str, settings: str = "") -> str:
    return (
        f'circuitlang 1\ncircuit small on {model}\n{settings}\nprompts p {{\n  template "{{s1}} {{s2}}"\n'
        "  for i in 1..9\n  s1 = i\n  s2 = i + 1\n  answer = i + 2\n  wrong = i\n"
        "  corrupt random {\n    s1, s2 = random 1..9\n  }\n}\nmetric logit_diff(answer, wrong)\n"
        f"ablate mean of corrupt\n{circuit}"
    )


def test_a_node_circuit_exports_every_edge_among_its_nodes(tmp_path: Path) -> None:
    path = tmp_path / "nodes.circ"
    path.write_text(_small_spec('"organism:seqcont"', 'role "r": 0.0, 0.2, 1.1, 1.3\nmlp 0..3\n'))
    spec = load_spec(path)  # no edges
    kept = {"a0.h0", "a0.h2", "a1.h1", "a1.h3", "m0", "m1", "m2", "m3"}
    expected = {
        e for e in reference_graph(4, 8)[1] if e.split("->")[0] in kept | {"input"} and e.split("->")[1].split("<")[0] in kept | {"logits"}
    }
    data = export_graph(spec)
    assert _in_graph(data) == expected
    assert {n for n, v in data["nodes"].items() if v["in_graph"]} == kept | {"input", "logits"}
    assert all(info["score"] == 0.0 for info in data["edges"].values())


def test_declared_edges_export_as_declared_plus_the_embedding_edges(tmp_path: Path) -> None:
    circuit = 'role "r": 0.1, 2.3\nmlp 1\nedge 0.1 -> 2.3 via v\nedge 0.1 -> mlp 1\nedge mlp 1 -> logits\nedge 2.3 -> logits\n'
    path = tmp_path / "s.circ"
    path.write_text(_small_spec('"organism:seqcont"', circuit))
    declared = {"a0.h1->a2.h3<v>", "a0.h1->m1", "m1->logits", "a2.h3->logits"}
    embed = {
        "input->a0.h1<q>",
        "input->a0.h1<k>",
        "input->a0.h1<v>",
        "input->a2.h3<q>",
        "input->a2.h3<k>",
        "input->a2.h3<v>",
        "input->m1",
        "input->logits",
    }
    assert _in_graph(export_graph(load_spec(path))) == declared | embed
    path.write_text(_small_spec('"organism:seqcont"', circuit + "edge embed -> 0.1 via q\n", "set embed_edges = declared"))
    assert _in_graph(export_graph(load_spec(path))) == declared | {"input->a0.h1<q>"}


def test_exported_files_have_what_eap_ig_from_json_reads() -> None:
    """EAP-IG's loader rebuilds the graph from cfg and sets each listed node and edge by name:
    every name must exist there, nodes need in_graph, edge scores must be numbers."""
    spec = load_spec(SPECS / "incr_digits.circ")
    nodes, edges = reference_graph(12, 12)
    current, legacy = export_graph(spec), export_graph(spec, legacy=True)
    assert {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"} <= set(current["cfg"])
    assert all(isinstance(v, dict) and isinstance(v["in_graph"], bool) for v in current["nodes"].values())
    assert all(isinstance(v, bool) for v in legacy["nodes"].values()) and legacy["n_pos"] is None
    for data in (current, legacy):
        assert set(data["nodes"]) <= set(nodes) and set(data["edges"]) <= set(edges)
        assert all(isinstance(v["score"], float) and isinstance(v["in_graph"], bool) for v in data["edges"].values())
        json.dumps(data)


def test_positions_are_dropped_with_a_warning() -> None:
    [warning] = export_warnings(load_spec(SPECS / "incr_digits.circ"))
    assert "9.1 q end k s1..s4" in warning and "4.4 q s2..s4" in warning
    assert export_warnings(load_spec(SPECS / "greater_than.circ")) != []
    assert export_warnings(load_spec(SPECS / "incr_tasks.circ")) != []


# ---- import -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec_name", fast_cases(["greater_than", "ioi", "incr_digits", "organism_months"], ("organism_months",)))
def test_round_trip_spec_to_graph_to_spec_keeps_nodes_and_edges(spec_name: str) -> None:
    spec = load_spec(SPECS / f"{spec_name}.circ")
    back = import_graph(json.loads(json.dumps(export_graph(spec))), "g.json", spec.shape, embed_edges=spec.settings.embed_edges)
    assert {m.node for m in back.circuit.nodes} == {m.node for m in spec.circuit.nodes}
    assert _edge_set(back.circuit) == _edge_set(spec.circuit)
    assert back.embed_edges == spec.settings.embed_edges and back.warnings == ()


def test_round_trip_with_declared_embedding_edges(tmp_path: Path) -> None:
    path = tmp_path / "s.circ"
    circuit = 'role "r": 0.1, 2.3\nedge embed -> 0.1 via k\nedge 0.1 -> 2.3\nedge 2.3 -> logits\n'
    path.write_text(_small_spec('"organism:seqcont"', circuit, "set embed_edges = declared"))
    spec = load_spec(path)
    back = import_graph(export_graph(spec, legacy=True), "g.json", spec.shape, embed_edges="declared")
    assert (
        _edge_set(back.circuit) == _edge_set(spec.circuit) == {("embed", "0.1", ("k",)), ("0.1", "2.3", ("q", "k", "v")), ("2.3", "logits", ())}
    )
    # Into a spec that keeps every embedding edge, the same graph asks for `embed_edges = declared`.
    assert import_graph(export_graph(spec), "g.json", spec.shape).embed_edges == "declared"


def _hand_written(scores: dict[str, float], in_graph: set[str], legacy: bool = False) -> dict:
    """A 4 x 8 graph file as EAP-IG's to_json writes it: every node and edge, scores and flags."""
    nodes, edges = reference_graph(4, 8)
    touched = {part.split("<")[0] for name in in_graph for part in name.split("->")} | {"logits"}
    return {
        "cfg": {"n_layers": 4, "n_heads": 8, "parallel_attn_mlp": False, "d_model": 128},
        "nodes": {n: (n in touched) if legacy else {"in_graph": n in touched} for n in nodes},
        "edges": {e: {"score": scores.get(e, 0.0), "in_graph": e in in_graph} for e in edges},
    }


def test_a_hand_written_graph_imports_to_the_expected_circuit() -> None:
    chosen = {"input->a0.h1<v>", "a0.h1->a2.h0<k>", "a0.h1->a2.h0<v>", "a2.h0->m2", "m2->logits", "input->logits"}
    scores = {"a0.h1->a2.h0<k>": 0.25, "a0.h1->a2.h0<v>": -0.5, "m2->logits": 1.5}
    for legacy in (False, True):
        got = import_graph(_hand_written(scores, chosen, legacy), "g.json", ORGANISM)
        assert [(str(m.node), m.role) for m in got.circuit.nodes] == [("0.1", "imported head"), ("2.0", "imported head"), ("mlp 2", "mlp")]
        assert _edge_set(got.circuit) == {
            ("embed", "0.1", ("v",)),
            ("0.1", "2.0", ("k", "v")),
            ("2.0", "mlp 2", ()),
            ("mlp 2", "logits", ()),
            ("embed", "logits", ()),
        }
        assert got.embed_edges == "declared" and (got.selected, got.total) == (6, len(reference_graph(4, 8)[1]))
        h01, h20, m2 = (parse_node(n) for n in ("a0.h1", "a2.h0", "m2"))
        assert got.edge_scores[(h01, h20)] == {"k": 0.25, "v": -0.5}
        assert got.edge_scores[(m2, parse_node("logits"))] == {"": 1.5}


def test_a_graph_complete_among_its_nodes_is_a_node_circuit() -> None:
    nodes = {"a1.h2", "m3"}
    chosen = {
        e for e in reference_graph(4, 8)[1] if e.split("->")[0] in nodes | {"input"} and e.split("->")[1].split("<")[0] in nodes | {"logits"}
    }
    got = import_graph(_hand_written({}, chosen), "g.json", ORGANISM)
    assert {str(m.node) for m in got.circuit.nodes} == {"1.2", "mlp 3"} and got.circuit.edges == ()


def test_top_n_takes_the_largest_scores_then_prunes_as_eap_ig_does() -> None:
    scores = {"a0.h1->logits": 5.0, "m0->a1.h0<q>": -4.0, "input->a0.h1<v>": 3.0, "a3.h3->logits": 0.1}
    data = _hand_written(scores, set(_hand_written({}, set())["edges"]))  # unpruned: every edge in the graph
    got = import_graph(data, "g.json", ORGANISM, top=3)  # 1.0 reads m0 but feeds nothing: pruned, with m0
    assert _edge_set(got.circuit) == {("embed", "0.1", ("v",)), ("0.1", "logits", ())}
    assert _edge_set(import_graph(data, "g.json", ORGANISM, threshold=3.0).circuit) == _edge_set(got.circuit)
    nothing = import_graph(data, "g.json", ORGANISM, threshold=4.0)  # a0.h1->logits lost its input: pruned
    assert nothing.circuit == ir.Circuit() and "no edge was selected" in nothing.warnings[0]
    assert "every edge of the model is in the graph" in import_graph(data, "g.json", ORGANISM).warnings[0]
    with pytest.raises(CircuitlangError, match="no edge scores"):
        import_graph(_hand_written({}, set()), "g.json", ORGANISM, top=3)


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda d: d["nodes"].update({"a9h9": {"in_graph": True}}), "g.json: node 'a9h9' is not an EAP-IG node name"),
        (
            lambda d: d["edges"].update({"a0.h0->a1.h0": {"score": 0.0, "in_graph": True}}),
            "edge 'a0.h0->a1.h0' is not an EAP-IG edge name: an edge into the head a1.h0 needs a channel",
        ),
        (
            lambda d: d["edges"].update({"a2.h0->a1.h0<q>": {"score": 0.0, "in_graph": True}}),
            "edge 'a2.h0->a1.h0<q>' does not exist: a2.h0 cannot write into a1.h0",
        ),
        (lambda d: d["edges"].update({"a1.h0->a1.h1<q>": {"score": 0.0, "in_graph": True}}), "does not exist"),
        (lambda d: d["edges"].update({"a5.h0->logits": {"score": 0.0, "in_graph": True}}), "a5.h0 names layer 5, but the model has layers 0-3"),
        (lambda d: d["nodes"].update({"a0.h8": {"in_graph": True}}), "names head 8, but layers have heads 0-7"),
        (lambda d: d["edges"].update({"m0->logits": {"score": "high", "in_graph": True}}), 'expected {"score"'),
        (lambda d: d["cfg"].update({"n_layers": 12, "n_heads": 12}), "12 layers x 12 heads, but the base spec's model has 4 x 8"),
        (lambda d: d.pop("edges"), "not an EAP-IG graph file"),
    ],
)
def test_bad_files_name_the_file_and_the_bad_entry(edit, says: str) -> None:
    data = _hand_written({}, {"m0->logits"})
    edit(data)
    with pytest.raises(CircuitlangError) as raised:
        import_graph(data, "g.json", ORGANISM)
    messages = [f"{e.message} ({e.hint})" for e in flatten([raised.value])]
    assert any(says in m for m in messages), messages
    assert all(m.startswith("g.json: ") for m in messages)


# ---- the commands -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_then_import_commands_write_a_spec_with_the_same_circuit(tmp_path: Path, capsys) -> None:
    graph, out = tmp_path / "graph.json", tmp_path / "out" / "incr.circ"
    assert main(["export", str(SPECS / "incr_digits.circ"), "--to", "eap-ig", "-o", str(graph)]) == 0
    assert "dropped the positions of 3 node(s)" in capsys.readouterr().err
    out.parent.mkdir()
    assert main(["import", str(graph), "--base", str(SPECS / "incr_digits.circ"), "-o", str(out)]) == 0
    written, base = load_spec(out), load_spec(SPECS / "incr_digits.circ")
    assert {m.node for m in written.circuit.nodes} == {m.node for m in base.circuit.nodes}
    assert _edge_set(written.circuit) == _edge_set(base.circuit)
    assert json.loads(written.canonical_json())["prompt_sets"] == json.loads(base.canonical_json())["prompt_sets"]
    assert [e.metric for e in written.expectations] == ["faithfulness", "completeness", "minimality"]


def test_import_command_writes_scores_and_the_embedding_setting(tmp_path: Path) -> None:
    graph, out = tmp_path / "g.json", tmp_path / "o.circ"
    chosen = {"input->a0.h1<v>", "a0.h1->a2.h0<k>", "a2.h0->logits"}
    graph.write_text(json.dumps(_hand_written({"a0.h1->a2.h0<k>": 0.25, "a2.h0->logits": -1.5}, chosen)))
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ"), "-o", str(out)]) == 0
    text = out.read_text()
    assert "set embed_edges = declared" in text
    assert "edge 0.1 -> 2.0 via k  # scores k 0.25" in text and "edge 2.0 -> logits  # score -1.5" in text
    assert load_spec(out).settings.embed_edges == "declared"


def test_import_command_reports_a_bad_file_without_a_traceback(tmp_path: Path, capsys) -> None:
    graph = tmp_path / "g.json"
    data = _hand_written({}, {"m0->logits"})
    data["edges"]["a0.h0->m0<q>"] = {"score": 0.0, "in_graph": True}
    graph.write_text(json.dumps(data))
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ")]) == 2
    err = capsys.readouterr().err
    assert f"{graph}: edge 'a0.h0->m0<q>' is not an EAP-IG edge name: an edge into m0 has no channel" in err
    graph.write_text("{not json")
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ")]) == 2
    assert "not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["edge", "node"])
def test_a_score_too_large_for_a_float_is_a_located_data_error(tmp_path: Path, capsys, where: str) -> None:
    """JSON admits a 400-digit integer; float() of it raises OverflowError (a traceback, exit 3)."""
    graph = tmp_path / "g.json"
    data = _hand_written({"a2.h0->logits": 1.0}, {"input->a0.h1<v>", "a0.h1->a2.h0<k>", "a2.h0->logits"})
    huge = 10**400
    if where == "edge":
        data["edges"]["a2.h0->logits"]["score"] = huge
    else:
        data["nodes"]["a2.h0"] = {"in_graph": True, "score": huge}
    graph.write_text(json.dumps(data))
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ")]) == 2
    assert "too large for a float" in capsys.readouterr().err


def test_a_graph_file_of_empty_values_is_refused_before_parsing(tmp_path: Path, capsys) -> None:
    """`[{},{},...]`: three bytes a value, which json holds in about 27 times the file's size. The
    base spec's model bounds how many values a graph of it can have (the organism: a few thousand)."""
    graph = tmp_path / "g.json"
    graph.write_text("[" + ",".join(["{}"] * 200_000) + "]")
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ")]) == 2
    err = capsys.readouterr().err
    assert "JSON values, more than a graph of the base spec's model can hold" in err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_graph_file_that_is_a_device_is_refused(tmp_path: Path, capsys) -> None:
    graph = tmp_path / "g.json"
    graph.symlink_to("/dev/zero")
    assert main(["import", str(graph), "--base", str(SPECS / "organism_incr_digits.circ")]) == 2
    assert "not a regular file" in capsys.readouterr().err
