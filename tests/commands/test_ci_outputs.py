"""What CI reads: one verify writes several formats at once, and an error reaches every one.

A spec error under `--format junit -o report.xml` used to print to stderr only and write no XML,
so the JUnit uploader and the annotations saw nothing.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest

from circuitlang.cli import main
from tests.conftest import ROOT, SPECS

SPEC = SPECS / "organism_incr_digits.circ"


@pytest.mark.slow
def test_one_run_writes_the_table_junit_markdown_and_json(tmp_path, capsys):
    junit, summary, report = tmp_path / "report.xml", tmp_path / "summary.md", tmp_path / "report.json"
    code = main(["verify", str(SPEC), "--no-audit", "--write", f"junit={junit}", "--write", f"markdown={summary}", "--write", f"json={report}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "all claims pass" in out  # the table, on the terminal
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert summary.read_text().startswith("## circuitlang: organism_incr_digits (all claims pass)")
    assert json.loads(report.read_text())["passed"] is True


@pytest.mark.slow
def test_github_annotations_stay_quiet_on_passing_claims(capsys):
    assert main(["verify", str(SPEC), "--no-audit", "--format", "github"]) == 0
    assert "::notice" not in capsys.readouterr().out
    assert main(["verify", str(SPEC), "--no-audit", "--format", "github", "--notices"]) == 0
    assert "::notice file=" in capsys.readouterr().out


def _broken(tmp_path):
    spec = tmp_path / "broken.circ"
    spec.write_text(SPEC.read_text().replace('role "end reads s3 (q end)": 0.0', 'role "end reads s3 (q end)": 7.0'))
    return spec


def test_a_spec_error_reaches_every_format(tmp_path, capsys):
    spec = _broken(tmp_path)
    junit, summary, report, page = tmp_path / "report.xml", tmp_path / "summary.md", tmp_path / "report.json", tmp_path / "report.html"
    code = main(
        ["verify", str(spec), "--format", "github", "--write", f"junit={junit}", "--write", f"markdown={summary}", "--write", f"json={report}"]
        + ["--write", f"html={page}"]
    )
    assert code == 2
    captured = capsys.readouterr()
    assert f"{spec}:" in captured.err and "layer 7 does not exist" in captured.err  # the diagnostic, as ever
    annotations = [line for line in captured.out.splitlines() if line.startswith("::error")]
    assert annotations and all(a.startswith(f"::error file={spec},line=") for a in annotations)
    assert "layer 7 does not exist" in annotations[0]
    suite = ElementTree.parse(junit).getroot()
    [error] = suite.iter("error")
    assert suite.get("errors") == "1" and "layer 7 does not exist" in error.get("message") and error.get("type") == "exit 2"
    assert "layer 7 does not exist" in error.text
    assert "not verified: exit 2" in summary.read_text() and "layer 7 does not exist" in summary.read_text()
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["exit_code"] == 2 and data["errors"][0]["line"] is not None
    assert "(not verified: exit 2)" in page.read_text() and "layer 7 does not exist" in page.read_text()  # tests/report/test_html.py opens one


def test_a_model_error_reaches_every_format(tmp_path, capsys):
    spec = tmp_path / "nomodel.circ"
    spec.write_text(SPEC.read_text().replace('"organism:seqcont"', '"./missing-model"'))
    (tmp_path / "missing-model").mkdir()
    config = (ROOT / "circuitlang" / "organisms" / "seqcont" / "weights" / "config.json").read_text()
    (tmp_path / "missing-model" / "config.json").write_text(config)  # a config, and nothing else
    junit = tmp_path / "report.xml"
    assert main(["verify", str(spec), "--format", "junit", "-o", str(junit)]) == 3
    [error] = ElementTree.parse(junit).getroot().iter("error")
    assert error.get("type") == "exit 3" and "has no tokenizer" in error.get("message")


@pytest.mark.parametrize("request_text", ["junit", "xml=report.xml", "junit="])
def test_a_malformed_write_request_is_a_usage_error(request_text, capsys):
    assert main(["verify", str(SPEC), "--write", request_text]) == 2
    assert "expected FORMAT=PATH" in capsys.readouterr().err


def test_two_outputs_cannot_share_stdout(capsys):
    assert main(["verify", str(SPEC), "--format", "json", "--write", "junit=-"]) == 2
    assert "one output at most can go to stdout" in capsys.readouterr().err
