"""Bad input to the commands beyond check/verify: a message and exit 2 or 3, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitlang.cli import main

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_an_unknown_device_is_a_usage_error_at_the_option(capsys) -> None:
    assert main(["verify", str(SPECS / "organism_months.circ"), "--device", "bogus"]) == 2
    assert "argument --device: unknown device 'bogus'" in capsys.readouterr().err


def test_an_unknown_device_through_the_api_is_a_model_error() -> None:
    import circuitlang
    from circuitlang.errors import ModelError

    with pytest.raises(ModelError, match="unknown device 'bogus'"):
        circuitlang.open_run(circuitlang.load(SPECS / "organism_months.circ"), device="bogus")


def test_an_unwritable_output_is_a_runtime_error(tmp_path: Path, capsys) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["export", str(SPECS / "organism_ioi.circ"), "-o", str(blocked / "g.json")]) == 3
    assert (
        main(["compare", str(SPECS / "organism_ioi.circ"), str(SPECS / "organism_months.circ"), "--no-transfer", "-o", str(blocked / "c.json")])
        == 3
    )
    assert "cannot write" in capsys.readouterr().err


def test_import_with_a_name_that_is_not_a_circuit_name_says_so(tmp_path: Path, capsys) -> None:
    graph = tmp_path / "g.json"
    assert main(["export", str(SPECS / "organism_ioi.circ"), "-o", str(graph)]) == 0
    code = main(["import", str(graph), "--base", str(SPECS / "organism_ioi.circ"), "--name", "bad name", "-o", str(tmp_path / "i.circ")])
    assert code == 2 and "syntax error" in capsys.readouterr().err


def test_transfer_of_a_kl_metric_is_not_applicable_rather_than_nan(tmp_path: Path, capsys) -> None:
    import json

    paths = []
    for name in ("incr_digits", "decr_digits"):
        text = (SPECS / f"organism_{name}.circ").read_text().replace("metric logit_diff(answer, wrong)", "metric kl")
        paths.append(tmp_path / f"{name}.circ")
        paths[-1].write_text(text.replace("expect faithfulness >= 0.9", ""))
    assert main(["compare", *map(str, paths), "--format", "json"]) == 0
    cells = [cell for row in json.loads(capsys.readouterr().out)["transfer"]["rows"] for cell in row]
    assert all("F(M) = 0" in cell["not_applicable"] for cell in cells)
