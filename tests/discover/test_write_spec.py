"""The spec writer: a found circuit written into its base spec reads back as the same circuit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from circuitlang.discover.write import FoundCircuit, write_spec
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _circuit_json(spec: ir.Spec) -> object:
    return json.loads(spec.canonical_json())["circuit"]


@pytest.mark.parametrize("name", ["ioi", "greater_than", "incr_digits", "incr_tasks"])
def test_rewriting_a_spec_with_its_own_circuit_keeps_its_meaning(name: str, tmp_path: Path) -> None:
    base = load_spec(SPECS / f"{name}.circ")
    out = tmp_path / "nested" / "found.circ"
    out.parent.mkdir()
    text = write_spec(SPECS / f"{name}.circ", FoundCircuit(base.circuit), out)
    out.write_text(text)
    # Relative `use` paths were rewritten for the new folder; they reach back into specs/, so the
    # project root is a folder above both.
    written = load_spec(out, root=os.path.commonpath([out, SPECS]))
    assert _circuit_json(written) == _circuit_json(base)
    assert json.loads(written.canonical_json())["prompt_sets"] == json.loads(base.canonical_json())["prompt_sets"]
    assert written.expectations == ()
    assert format_spec(parse(text)) == text  # canonical


def test_notes_header_and_claims_are_written_where_a_reader_looks(tmp_path: Path) -> None:
    base = load_spec(SPECS / "incr_digits.circ")
    first = base.circuit.nodes[0].node
    edge = base.circuit.edges[0]
    found = FoundCircuit(
        base.circuit,
        header=("found by a test", "F(M) = 1.5"),
        claims=("expect faithfulness >= 0.8",),
        node_notes={first: "effect -0.42"},
        edge_notes={(edge.sender, edge.receiver): "score 0.1"},
    )
    text = write_spec(SPECS / "incr_digits.circ", found, tmp_path / "x.circ", name="renamed")
    lines = text.splitlines()
    assert lines[:3] == ["circuitlang 1", "# found by a test", "# F(M) = 1.5"]
    assert any(line.endswith("# effect -0.42") and f"{first.layer}.{first.head}" in line for line in lines)
    assert any(line.startswith(f"edge {edge.sender}") and line.endswith("# score 0.1") for line in lines)
    (tmp_path / "x.circ").write_text(text)
    spec = load_spec(tmp_path / "x.circ")
    assert spec.name == "renamed" and len(spec.expectations) == 1


def test_one_role_with_different_positions_is_written_as_distinct_roles(tmp_path: Path) -> None:
    base = load_spec(SPECS / "incr_digits.circ")
    members = list(base.circuit.nodes)
    members[1] = members[1].model_copy(update={"role": members[0].role, "q": None, "k": None})
    found = FoundCircuit(base.circuit.model_copy(update={"nodes": tuple(members)}))
    out = tmp_path / "x.circ"
    out.write_text(write_spec(SPECS / "incr_digits.circ", found, out))
    roles = load_spec(out).circuit.roles()
    assert members[0].node in roles[f"{members[0].role} (q end k s1..s4)"]
    assert members[1].node in roles[f"{members[0].role} (all positions)"]


def test_comments_about_the_replaced_circuit_go_with_it(tmp_path: Path) -> None:
    base = tmp_path / "base.circ"
    text = (SPECS / "incr_digits.circ").read_text()
    text = text.replace('role "number mover"', '# The movers, as the paper found them.\nrole "number mover"')
    text = text.replace("expect faithfulness", "# Both heads are needed for 0.8.\nexpect faithfulness")
    text = text.replace("ablate mean of corrupt", "ablate mean of corrupt  # as the seeds did")
    base.write_text(text)
    written = write_spec(base, FoundCircuit(load_spec(base).circuit), tmp_path / "x.circ")
    assert "The movers" not in written and "Both heads" not in written
    assert "ablate mean of corrupt  # as the seeds did" in written
