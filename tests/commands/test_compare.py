"""`circuitlang compare`: overlap of nodes and edges, and the transfer matrix of faithfulness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import circuitlang
from circuitlang.cli import main
from circuitlang.discover.write import FoundCircuit, write_spec
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec
from circuitlang.report.comparison_tables import to_markdown
from circuitlang.workflows.transfer import transfer_matrix
from circuitlang.api import verify
from circuitlang.engine.session import open_session
from circuitlang.results.comparison import Comparison
from circuitlang.verification.cross_spec import overlap, transfer_blocker

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _prompts(slots: int, count: int) -> str:
    names = [f"s{i + 1}" for i in range(slots)]
    return (
        f'prompts p {{\n  template "{" ".join("{" + n + "}" for n in names)}"\n  for i in 1..{count}\n'
        + "".join(f"  {n} = i + {k}\n" for k, n in enumerate(names))
        + f"  answer = i + {slots}\n  wrong = i + {slots - 1}\n"
        + f"  corrupt random {{\n    {', '.join(names)} = random 1..99\n  }}\n}}"
    )


def _spec(
    tmp_path: Path, name: str, circuit: str, slots: int = 4, count: int = 8, model: str = "organism:seqcont", settings: str = ""
) -> ir.Spec:
    text = (
        f'circuitlang 1\ncircuit {name} on "{model}"\n{settings}\n{_prompts(slots, count)}\n'
        f"metric logit_diff(answer, wrong)\nablate mean of corrupt\n{circuit}\n"
    )
    path = tmp_path / f"{name}.circ"
    path.write_text(text)
    return load_spec(path)


def _reference_edges(spec: ir.Spec) -> set[tuple[str, str, str]]:
    """Edges a circuit keeps, enumerated the slow obvious way: every pair in residual order (embed,
    then per layer its heads, then its MLP, then logits), one per channel into a head."""

    def rank(node: ir.Node) -> float:
        return {"embed": -1.0, "logits": 1e9}.get(node.kind) or 2 * node.layer + (node.kind == "mlp")

    def channels(node: ir.Node) -> tuple[str, ...]:
        return ("q", "k", "v") if node.kind == "head" else ("",)

    nodes = [m.node for m in spec.circuit.nodes]
    if spec.circuit.edges:
        kept = {(str(e.sender), str(e.receiver), c) for e in spec.circuit.edges for c in (e.channels or ("",))}
        if spec.settings.embed_edges == "all":
            kept |= {("embed", str(r), c) for r in [*nodes, ir.LOGITS] for c in channels(r)}
        return kept
    ends = [ir.EMBED, *nodes, ir.LOGITS]
    return {(str(s), str(r), c) for s in ends for r in ends if rank(s) < rank(r) for c in channels(r)}


def test_overlap_matches_sets_counted_by_hand(tmp_path: Path) -> None:
    a = _spec(tmp_path, "a", 'role "x": 0.1, 1.2\nmlp 0')
    b = _spec(tmp_path, "b", 'role "y": 1.2, 2.3\nmlp 0, 1')
    c = _spec(
        tmp_path,
        "c",
        'role "z": 0.1, 2.3\nmlp 1\nedge 0.1 -> 2.3 via v\nedge 2.3 -> logits\nedge mlp 1 -> logits',
        settings="set embed_edges = declared",
    )
    summaries, result = overlap([a, b, c])
    assert [row.node for row in result.nodes] == ["0.1", "mlp 0", "1.2", "mlp 1", "2.3"]
    assert result.nodes[0].roles == ["x", None, "z"] and result.nodes[3].roles == [None, "mlp", "mlp"]
    assert result.node_jaccard[0][1] == pytest.approx(2 / 5) and result.node_jaccard[0][2] == pytest.approx(1 / 5)
    assert result.node_jaccard[1][2] == pytest.approx(2 / 5) and result.shared_nodes == []
    edges = [_reference_edges(s) for s in (a, b, c)]
    assert len(edges[0]) == 18 and edges[2] == {("0.1", "2.3", "v"), ("2.3", "logits", ""), ("mlp 1", "logits", "")}
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        expected = len(edges[i] & edges[j]) / len(edges[i] | edges[j])
        assert result.graph_edge_jaccard[i][j] == result.graph_edge_jaccard[j][i] == pytest.approx(expected)
    assert [s.graph_edges for s in summaries] == [len(e) for e in edges]
    assert [s.declared_edges for s in summaries] == [0, 0, 3]  # `via v` is one declared edge, one graph edge
    assert result.shared_graph_edges == len(edges[0] & edges[1] & edges[2])
    assert result.notes == []


@pytest.mark.slow
def test_overlap_alone_runs_no_model(capsys) -> None:
    args = ["compare", str(SPECS / "ioi.circ"), str(SPECS / "organism_ioi.circ"), "--no-transfer", "--format", "json"]
    assert main(args) == 0
    result = Comparison.model_validate_json(capsys.readouterr().out)
    first, second = ({str(m.node) for m in circuitlang.load(SPECS / name).circuit.nodes} for name in ("ioi.circ", "organism_ioi.circ"))
    assert result.transfer is None and result.overlap.node_jaccard[0][1] == len(first & second) / len(first | second)
    assert "different models" in result.overlap.notes[0]
    script = f"import sys; from circuitlang.cli import main; main({args!r}); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0


def test_blockers_name_other_models_and_missing_positions(tmp_path: Path) -> None:
    with_s4 = _spec(tmp_path, "with_s4", 'role "r": 0.2 q s4\nmlp 0')
    three = _spec(tmp_path, "three", 'role "r": 0.2', slots=3)
    other_model = _spec(tmp_path, "gpt", 'role "r": 0.2', model="gpt2")
    assert transfer_blocker(with_s4, other_model, "p", ("{s1} {s2} {s3} {s4}",)) == "different models"
    reason = transfer_blocker(with_s4, three, "p", ("{s1} {s2} {s3}",))
    assert reason is not None and "'s4' is not a slot" in reason and "with_s4" in reason
    assert transfer_blocker(three, with_s4, "p", ("{s1} {s2} {s3} {s4}",)) is None


def test_a_circuit_naming_a_missing_position_gets_an_na_cell_with_its_reason(tmp_path: Path) -> None:
    with_s4 = _spec(tmp_path, "with_s4", 'role "r": 0.2 q s4\nmlp 0..3', count=6)
    three = _spec(tmp_path, "three", 'role "r": 0.0, 0.2\nmlp 0..3', slots=3, count=6)
    transfer = transfer_matrix([with_s4, three], open_session)
    blocked = transfer.rows[0][1]
    assert blocked.faithfulness is None and "'s4' is not a slot" in (blocked.not_applicable or "")
    assert all(cell.faithfulness is not None for cell in (transfer.rows[0][0], transfer.rows[1][0], transfer.rows[1][1]))
    summaries, shared = overlap([with_s4, three])
    text = to_markdown(Comparison(specs=summaries, overlap=shared, transfer=transfer))
    assert "| with_s4 | " in text and "n/a [1]" in text and "[1] with_s4 names positions" in text


@pytest.mark.slow
def test_transfer_diagonal_is_verify_faithfulness_and_the_table_is_printed(tmp_path: Path, capsys) -> None:
    names = ["organism_incr_digits", "organism_months"]
    out = tmp_path / "compare.json"
    assert main(["compare", *(str(SPECS / f"{n}.circ") for n in names), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "transfer: faithfulness" in printed and "organism_months" in printed and "Jaccard of node sets" in printed
    result = Comparison.model_validate(json.loads(out.read_text()))
    assert result.transfer is not None
    for index, name in enumerate(names):
        report = verify(circuitlang.open_run(load_spec(SPECS / f"{name}.circ")))
        expected = report.prompt_sets[0].faithfulness
        cell = result.transfer.rows[index][index]
        assert cell.faithfulness.value == pytest.approx(expected.faithfulness.value, abs=1e-9)
        assert cell.normalized_faithfulness.value == pytest.approx(expected.normalized_faithfulness.value, abs=1e-9)
        assert (cell.faithfulness.low, cell.faithfulness.high) == pytest.approx(
            (expected.faithfulness.low, expected.faithfulness.high), abs=1e-9
        )
    # Off the diagonal: the digits circuit on the months prompts is what verify says of a months spec
    # that declares the digits circuit.
    digits = load_spec(SPECS / "organism_incr_digits.circ")
    moved = tmp_path / "digits_on_months.circ"
    moved.write_text(write_spec(SPECS / "organism_months.circ", FoundCircuit(digits.circuit), moved))
    expected = verify(circuitlang.open_run(load_spec(moved))).prompt_sets[0].faithfulness
    assert result.transfer.rows[0][1].faithfulness.value == pytest.approx(expected.faithfulness.value, abs=1e-9)


def test_a_spec_whose_model_does_not_load_gets_na_columns_and_exit_3(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small = _spec(tmp_path, "small", 'role "r": 0.2\nmlp 0..3', count=4)
    hub = _spec(tmp_path, "hub", 'role "r": 0.2', model="distilgpt2")  # never in the tests' Hugging Face cache
    assert main(["compare", small.path, hub.path, "--format", "json"]) == 3
    rows = Comparison.model_validate_json(capsys.readouterr().out).transfer.rows
    assert rows[0][0].faithfulness is not None and rows[1][0].not_applicable == "different models"
    assert all("the model of hub did not load: 'distilgpt2' is not in the local" in cell.not_applicable for cell in (rows[0][1], rows[1][1]))
