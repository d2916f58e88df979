"""`circuitlang attention` and `circuitlang lens` on the shipped organism: the files they write
(pictures labelled by position names, tidy CSV that agrees with the Python API), and bad input
refused with one located line and exit 2, before the model loads where it can be."""

from __future__ import annotations

import csv

import pytest

import circuitlang
from circuitlang.cli import main
from circuitlang.report.attention_plot import attention_picture
from circuitlang.report.lens_plot import direct_picture, lens_picture
from tests.conftest import SPECS

ORGANISM = SPECS / "organism_incr_digits.circ"
TWO_TEMPLATES = ORGANISM.read_text().replace(
    '  template "{s1} {s2} {s3} {s4}"\n', '  template "{s1} {s2} {s3} {s4}"\n  template "{s1}, {s2}, {s3}, {s4}"\n'
)


def test_attention_writes_a_picture_per_head_and_the_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["attention", str(ORGANISM), "--heads", "0.0", "0.2", "--prompt", "3", "--image", "svg", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attention_0.0_prompt3.svg", "attention_0.2_prompt3.svg", "attention_prompt3.csv"]
    picture = (out / "attention_0.0_prompt3.svg").read_text()
    assert "Attention of head 0.0" in picture and "s4 / end" in picture and "prompt #3: '4 5 6 7'" in picture
    rows = list(csv.DictReader((out / "attention_prompt3.csv").open()))
    assert len(rows) == 2 * 5 * 5 and {row["prompt"] for row in rows} == {"3"}
    printed = capsys.readouterr().out
    assert "keys s4 / end attends to most" in printed and "wrote 3 files" in printed


def test_lens_writes_both_heatmaps_and_tables_that_agree_with_the_api(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["lens", str(ORGANISM), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["direct.csv", "direct.png", "lens.csv", "lens.png"]
    assert (out / "lens.png").read_bytes().startswith(b"\x89PNG")
    result = circuitlang.lens(ORGANISM)
    lens_rows = list(csv.DictReader((out / "lens.csv").open()))
    at_end = [float(row["value"]) for row in lens_rows if row["position"] == "s4 / end"]
    assert at_end == pytest.approx(list(result.lens[:, result.readout]), rel=1e-5)
    direct_rows = list(csv.DictReader((out / "direct.csv").open()))
    assert sum(float(row["direct"]) for row in direct_rows if row["position"] == "s4 / end") == pytest.approx(at_end[-1], abs=1e-3)
    printed = capsys.readouterr().out
    assert "logit[answer] − logit[wrong]" in printed and "add up to 12.54" in printed
    svg = lens_picture(result, "svg")
    assert isinstance(svg, str) and "Logit lens" in svg and "layer 3" in svg
    assert isinstance(direct_picture(result, "png"), bytes)
    with pytest.raises(ValueError, match="choose svg or png"):
        lens_picture(result, "gif")
    attention = circuitlang.attention(ORGANISM, heads=["0.0"])
    assert "mean over 95 prompts" in str(attention_picture(attention, "0.0"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["attention", "--heads", "9.1"], "head 9.1: layer 9 does not exist: organism:seqcont has layers 0-3"),
        (["attention", "--heads", "0.8"], "head 0.8: head 8 does not exist: organism:seqcont has heads 0-7"),
        (["attention", "--heads", "mlp0"], "--heads 'mlp0': attention patterns are per head"),
        (["attention", "--heads", "0.0", "--prompt", "95"], "prompt 95: prompt set 'incr_digits' has 95 prompts, numbered 0-94"),
        (["attention", "--heads", "0.0", "--prompt", "-1"], "must be 0 or more"),
        (["lens", "--prompt-set", "incr_digit"], "no prompt set 'incr_digit': did you mean 'incr_digits'?"),
        (["lens", "--positions", "token"], "did you mean 'tokens'?"),
    ],
)
def test_bad_input_is_one_located_line_and_exit_2(tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    assert main([arguments[0], str(ORGANISM), *arguments[1:], "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists()  # nothing written, no empty folder left


def test_token_positions_over_several_templates_are_refused_before_loading(tmp_path, capsys):
    spec = tmp_path / "two.circ"
    spec.write_text(TWO_TEMPLATES)
    assert main(["lens", str(spec), "--positions", "tokens", "-o", str(tmp_path / "out")]) == 2
    assert "has 2 templates" in capsys.readouterr().err
