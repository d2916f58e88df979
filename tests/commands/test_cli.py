"""The command line: exit codes, JSON output, fmt modes, and no torch for check/fmt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from circuitlang.cli import main
from tests.conftest import ROOT, SPECS

SHIPPED = sorted(str(p) for p in SPECS.glob("*.circ"))


def test_check_accepts_every_shipped_spec(capsys):
    assert main(["check", *SHIPPED]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == len(SHIPPED)


def test_check_reports_errors_with_location_caret_and_hint(write_spec, capsys):
    path = write_spec(
        'circuitlang 1\ncircuit c on "gpt2"\nprompts { template "{a}"; a = 1; answer = 2; wrong = 3 }\n'
        'metric logit_diff(answer, wrong)\nablate zero\nrole "x": 12.0, 3.12\n'
    )
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"{path}:6:11: semantic error: layer 12 does not exist: gpt2 has layers 0-11" in out
    assert f"{path}:6:17: semantic error: head 3.12 does not exist: layers have heads 0-11" in out
    assert '   6 | role "x": 12.0, 3.12\n' in out and "             ^^^^" in out
    assert "hint:" in out and "2 error(s)" in out


def test_check_json_output(write_spec, capsys):
    bad = write_spec('circuitlang 1\ncircuit c on "gpt2"\nmetrik kl\n', name="bad.circ")
    assert main(["check", "--format", "json", SHIPPED[0], str(bad)]) == 2
    report = json.loads(capsys.readouterr().out)
    good, broken = report["files"]
    assert good["ok"] and good["summary"]["prompt_sets"][0]["prompts"] > 0
    (error,) = broken["errors"]
    assert (error["stage"], error["line"], error["column"]) == ("syntax", 3, 1)


def test_missing_file_is_a_clear_error(capsys, tmp_path):
    assert main(["check", str(tmp_path / "nope.circ")]) == 2
    assert "file not found" in capsys.readouterr().out


def test_fmt_check_and_write(write_spec, capsys):
    messy = write_spec('circuitlang 1\ncircuit   c on "gpt2"\nprompts {template "{a}"; a=1;answer=2;wrong=3}\nmetric kl\nablate zero\n')
    assert main(["fmt", "--check", str(messy)]) == 1
    assert main(["fmt", "-w", str(messy)]) == 0
    assert main(["fmt", "--check", str(messy)]) == 0
    assert messy.read_text().startswith('circuitlang 1\ncircuit c on "gpt2"\n\nprompts {\n  template "{a}"\n  a = 1\n')
    assert main(["fmt", "--check", *SHIPPED]) == 0


def test_usage_error_exits_2(capsys):
    assert main(["frobnicate"]) == 2


def test_check_and_fmt_do_not_import_torch():
    code = (
        "import sys; from circuitlang.cli import main; "
        f"rc = main(['check', {SHIPPED!r}[0]]) + main(['fmt', '--check', {SHIPPED!r}[0]]); "
        "assert rc == 0, rc; bad = [m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_console_script_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "circuitlang", "check", SHIPPED[0]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout


def test_plan_lists_steps_and_costs(capsys):
    assert main(["plan", str(SPECS / "incr_digits.circ")]) == 0
    out = capsys.readouterr().out
    assert "digits:clean" in out and "digits:corrupt" in out and "digits:baselines" in out
    assert "[3 variants, 285 rows]" in out  # 95 prompts x F(M), F(C), F(empty)
    assert "at most" in out  # the greedy completeness search: its bound
    assert "digits:patch 4.4 -> 9.1 via k, v" in out and "digits:patch 9.1 -> logits" in out


@pytest.mark.slow
def test_plan_does_not_import_torch():
    code = (
        "import sys; from circuitlang.cli import main; "
        f"assert main(['plan', {str(SPECS / 'ioi.circ')!r}]) == 0; assert 'torch' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_crash_exits_3_not_the_failed_claim_code(monkeypatch, capsys):
    from circuitlang import cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_plan", broken)
    monkeypatch.setattr(sys, "argv", ["circuitlang", "plan", str(SPECS / "organism_incr_digits.circ")])
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == 3
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_check_warns_at_the_line_of_a_node_with_no_declared_inputs(write_spec, capsys):
    path = write_spec(
        'circuitlang 1\ncircuit c on "gpt2"\nprompts { template "{a}"; a = 1; answer = 2; wrong = 3 }\n'
        'metric logit_diff(answer, wrong)\nablate zero\nrole "early": 0.1\nrole "late": 9.1\n'
        "edge 9.1 -> logits\nedge 0.1 -> logits\n"
    )
    assert main(["check", "--no-tokenize", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}:7:14: 9.1 has no declared input from another node: it reads only the embeddings" in out
    assert "0.1 has no declared input" not in out  # layer 0 reads the embeddings by design


def test_a_byte_that_is_not_utf8_and_a_nul_in_a_string_are_errors_at_their_place(tmp_path, capsys):
    text = (SPECS / "organism_incr_digits.circ").read_text()
    latin = tmp_path / "latin.circ"
    latin.write_bytes(text.replace("# Found by", "# Found by caf\u00e9", 1).encode("latin-1"))
    nul = tmp_path / "nul.circ"
    nul.write_text(text.replace('"organism:seqcont"', '"./a\x00b"'))
    assert main(["check", "--no-tokenize", str(latin), str(nul)]) == 2
    out = capsys.readouterr().out
    assert f"{latin}:2:15: semantic error: byte 0xe9 is not UTF-8 text" in out
    assert f"{nul}:8:37: syntax error: a NUL character in a string" in out


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("for i in 1..95", "for i in 1..100000000", "the loops of incr_digits make more than 100,000 prompts"),
        ("for i in 1..95", "for i in 1..1000, j in 1..1000", "the loops of incr_digits make more than 100,000 prompts"),
        ("s1 = i\n", "s1 = pad(i, 1000000000)\n", "pad to 1000000000 characters, more than 1,000"),
        ("for i in 1..95", "for i in 1..99999999999999999999", "the loops of incr_digits make more than 100,000 prompts"),
        ("s1 = i\n", "s1 = len(1..99999999999999999999)\n", "has 99999999999999999999 values, more than 100,000"),
    ],
)
def test_a_spec_cannot_ask_for_unbounded_work(tmp_path, capsys, old, new, message):
    spec = tmp_path / "big.circ"
    spec.write_text((SPECS / "organism_incr_digits.circ").read_text().replace(old, new, 1))
    assert main(["check", "--no-tokenize", str(spec)]) == 2
    assert message in capsys.readouterr().out


def test_a_generator_cannot_ask_for_unbounded_work(tmp_path, capsys):
    spec = tmp_path / "big.circ"
    spec.write_text((SPECS / "organism_ioi.circ").read_text().replace("generate ioi(n = 200)", "generate ioi(n = 10000000)"))
    assert main(["check", "--no-tokenize", str(spec)]) == 2
    assert f"{spec}:11:3: limit error: generate ioi(n = 10000000) asks for more than 100,000 prompts" in capsys.readouterr().out


DATA_SPEC = """circuitlang 1
circuit c on "organism:seqcont"
prompts p {{
  template "{{s1}} {{s2}}"
  from "{name}"
}}
metric logit_diff(answer, wrong)
ablate zero
role "r": 0.0
"""


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("rows.csv", b"s1,s2,answer,wrong\n1,2,caf\xe9,2\n", "rows.csv line 2: byte 0xe9 is not UTF-8 text"),
        ("rows.jsonl", b'{"s1": 1}\n\xff\n', "rows.jsonl line 2: byte 0xff is not UTF-8 text"),
        ("rows.csv", b"s1,s2,answer,wrong\n" + b"x" * 200_000 + b",2,3,2\n", "rows.csv line 2: field larger than field limit"),
        ("rows.jsonl", b'{"s1": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "rows.jsonl line 1: a number too long or nesting"),
        ("rows.jsonl", b'{"s1": ' + b"9" * 5000 + b"}\n", "rows.jsonl line 1: a number too long or nesting"),
    ],
)
def test_a_hostile_data_file_is_a_data_error_at_the_from_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    spec = tmp_path / "spec.circ"
    spec.write_text(DATA_SPEC.format(name=name))
    assert main(["check", "--no-tokenize", str(spec)]) == 2
    out = capsys.readouterr().out
    assert f"{spec}:5:3: data error: {message}" in out


def test_verify_refuses_an_output_it_cannot_write_before_running(tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["verify", str(SPECS / "organism_incr_digits.circ"), "-o", str(folder)]) == 3
    assert f"{folder}: cannot write the report: it is a directory" in capsys.readouterr().err
