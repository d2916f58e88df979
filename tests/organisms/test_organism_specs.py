"""Every shipped organism spec holds what its header says: faithfulness at or above 0.9, equal to
the number discovery wrote, computed here by a plain `run.metric` call (not the verifier)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import circuitlang
from tests.conftest import fast_cases

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("organism_*.circ"))


def test_six_tasks_are_shipped() -> None:
    assert [p.stem for p in SPECS] == [
        "organism_decr_digits",
        "organism_greater_than",
        "organism_incr_digits",
        "organism_ioi",
        "organism_months",
        "organism_number_words",
    ]


def test_each_spec_is_the_task_the_discovery_script_starts_from() -> None:
    """`python -m circuitlang.organisms.seqcont.circuits` wrote these files: each holds its task
    (header, prompts, metric, ablation) as the script writes it before discovery adds the circuit."""
    from circuitlang.organisms.seqcont.circuits import TASKS, spec_text

    assert [f"organism_{task}" for task in sorted(TASKS)] == [p.stem for p in SPECS]
    for path in SPECS:
        shipped = path.read_text()
        assert "# Found by: python -m circuitlang.organisms.seqcont.circuits" in shipped
        header, *blocks = spec_text(path.stem.removeprefix("organism_")).split("\n\n")
        assert all(line in shipped.splitlines() for line in header.splitlines())
        assert all(block in shipped for block in blocks), path.name


@pytest.mark.parametrize("path", fast_cases(SPECS, lambda p: p.stem in ("organism_decr_digits", "organism_months")), ids=[p.stem for p in SPECS])
def test_organism_circuit_is_faithful_as_its_header_says(path: Path) -> None:
    spec = circuitlang.load(path)
    assert spec.circuit.edges and any(m.q is not None for m in spec.circuit.nodes)  # roles, positions and edges
    run = circuitlang.open_run(spec)
    values = run.metric([run.full_model(), run.circuit()]).mean(1)
    faithfulness = float(values[1] / values[0])
    written = float(re.search(r"faithfulness of this circuit ([0-9.]+)", path.read_text()).group(1))
    assert faithfulness == pytest.approx(written, abs=5e-5)
    assert faithfulness >= 0.9
