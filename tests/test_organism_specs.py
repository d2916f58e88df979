"""Every shipped organism spec holds what its header says: faithfulness at or above 0.9, equal to
the number discovery wrote, computed here by a plain `run.metric` call (not the verifier)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import circuitlang

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("organism_*.circ"))


def test_six_tasks_are_shipped() -> None:
    assert [p.stem for p in SPECS] == ["organism_decr_digits", "organism_greater_than", "organism_incr_digits",
                                       "organism_ioi", "organism_months", "organism_number_words"]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_organism_circuit_is_faithful_as_its_header_says(path: Path) -> None:
    spec = circuitlang.load(path)
    assert spec.circuit.edges and any(m.q is not None for m in spec.circuit.nodes)  # roles, positions and edges
    run = circuitlang.open_run(spec)
    values = run.metric([run.full_model(), run.circuit()]).mean(1)
    faithfulness = float(values[1] / values[0])
    written = float(re.search(r"faithfulness of this circuit ([0-9.]+)", path.read_text()).group(1))
    assert faithfulness == pytest.approx(written, abs=5e-5)
    assert faithfulness >= 0.9
