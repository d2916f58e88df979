"""Interchange interventions (engine.interchange) against pyvene's, an independent implementation
on the model as Hugging Face `transformers` loads it: benchmarks/pyvene_agreement.py, run here
only where its separate pyvene environment exists (its docstring says how to make it)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "pyvene_agreement.py"
spec = importlib.util.spec_from_file_location("pyvene_agreement", SCRIPT)
assert spec is not None and spec.loader is not None
agreement = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = agreement  # its dataclass looks its module up there
spec.loader.exec_module(agreement)

PYVENE_PYTHON = os.environ.get("PYVENE_PYTHON", agreement.DEFAULT_PYVENE_PYTHON)
if not Path(PYVENE_PYTHON).exists():
    pytest.skip(
        f"no pyvene environment at {PYVENE_PYTHON} (set PYVENE_PYTHON, or make it as benchmarks/pyvene_agreement.py says)",
        allow_module_level=True,
    )

import circuitlang as cl


@pytest.mark.slow
def test_interchange_agrees_with_pyvene() -> None:
    """Clean logits first (the two loaders give the same model), then every site set: the same top
    token for every pair and every logit within 1e-4, where the interventions move logits by up to
    tens (so a site patched wrongly on either side would show)."""
    run = cl.open_run(cl.load(agreement.SPEC))
    clean, rows, versions = agreement.compare(run, PYVENE_PYTHON)
    assert versions["pyvene"]
    for row in (clean, *rows):
        assert row.ok(1e-4), row
    assert max(row.effect for row in rows) > 1.0  # the interventions did something
