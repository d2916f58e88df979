"""Every limit of ir.stdlib.LIMITS: a spec past it is an error at the construct's file:line:col,
naming the limit and the setting that raises it, exit 2 from the CLI and no traceback; the
setting raises it; `set count` bounds the work instead of trimming after it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.data.datasets import expand_all
from circuitlang.ir.lower import load_spec
from circuitlang.ir.stdlib import LIMIT_SETTINGS, LIMITS, SPEC_SETTINGS
from tests.conftest import ROOT, fast_cases

BASE = """circuitlang 1
circuit c on "organism:seqcont"
prompts p {
  template "{s1} {s2}"
  for i in 1..5
  s1 = i
  s2 = i + 1
  answer = i + 2
  wrong = i + 1
}
metric logit_diff(answer, wrong)
ablate zero
role "r": 0.0
"""


@dataclass(frozen=True)
class Case:
    limit: str  # a row of LIMITS
    old: str  # replaced in BASE by
    new: str
    at: str  # the error points at the first occurrence of this text in the new spec
    gist: str
    raised: str | None  # a top-level `set` line under which the spec checks; None: a fixed limit
    files: tuple[tuple[str, str], ...] = ()


def _slots(n: int) -> str:
    template = " ".join(f"{{a{k}}}" for k in range(n))
    return f'  template "{template}"\n' + "".join(f"  a{k} = i\n" for k in range(n))


def _jsonl(n: int) -> str:
    return "".join(f'{{"s1": {k}, "s2": {k + 1}, "answer": {k + 2}, "wrong": {k + 1}}}\n' for k in range(n))


BIG = "9" * 3000
CASES = (
    Case(
        "prompts per set",
        '  template "{s1} {s2}"\n  for i in 1..5\n  s1 = i\n  s2 = i + 1\n  answer = i + 2\n  wrong = i + 1\n',
        '  template "{s1} {s2}"\n  from "rows.jsonl"\n',
        'from "rows.jsonl"',
        "prompt set 'p' makes more than 100,000 prompts (the prompts per set limit)",
        "set max_prompts = 100001",
        (("rows.jsonl", _jsonl(100_001)),),
    ),
    Case(
        "loop product",
        "for i in 1..5",
        "for i in 1..317, j in 1..317",
        "j in 1..317",
        "the loops of p make more than 100,000 prompts (the loop product limit)",
        "set max_prompts = 100489",
    ),
    Case(
        "generated prompts",
        '  template "{s1} {s2}"\n  for i in 1..5\n  s1 = i\n  s2 = i + 1\n  answer = i + 2\n  wrong = i + 1\n',
        "  generate ioi(n = 100001)\n",
        "generate ioi",
        "generate ioi(n = 100001) asks for more than 100,000 prompts (the generated prompts limit)",
        "set max_prompts = 100001",
    ),
    Case(
        "range length",
        "s2 = i + 1",
        "s2 = random 1..100001",
        "1..100001",
        "the range 1..100001 has 100001 values, more than 100,000 (the range length limit)",
        "set max_range = 100001",
    ),
    Case(
        "list length",
        "s2 = i + 1",
        f"s2 = len([{', '.join(['1'] * 10_001)}])",
        "[1, 1",
        "this list has 10,001 items, more than 10,000 (the list length limit)",
        "set max_list = 10001",
    ),
    Case(
        "slots per template",
        '  template "{s1} {s2}"\n',
        _slots(101),
        '"{a0}',
        "this template has 101 slots, more than 100 (the slots per template limit)",
        "set max_slots = 101",
    ),
    Case(
        "template length",
        'template "{s1} {s2}"',
        f'template "{"x" * 10_000}{{s1}} {{s2}}"',
        '"xxx',
        "this template has 10,009 characters, more than 10,000 (the template length limit)",
        "set max_template = 10009",
    ),
    Case(
        "string literal length",
        "s2 = i + 1",
        f's2 = "{"y" * 1001}"',
        '"yyy',
        "this string has 1,001 characters, more than 1,000 (the string literal length limit)",
        "set max_text = 1001",
    ),
    Case(
        "text value length",
        "s2 = i + 1",
        f's2 = "{"y" * 600}" + "{"z" * 600}"',
        '"yyy',
        "this text has 1,200 characters, more than 1,000 (the text value length limit)",
        "set max_text = 1200",
    ),
    Case(
        "pad width",
        "s2 = i + 1",
        "s2 = pad(i, 1001)",
        "pad(",
        "pad to 1001 characters, more than 1,000 (the pad width limit)",
        "set max_text = 1001",
    ),
    Case(
        "expression depth",
        "s2 = i + 1",
        f"s2 = {'(' * 250}i{')' * 250}",
        f"{'(' * 51}i",  # the parser points at the 200th level
        "nests more than 200 levels deep",
        None,
    ),
    Case(
        "integer digits",
        "s2 = i + 1",
        f"x = {BIG}\n  s2 = x * x",
        "x * x",
        "this arithmetic makes a number of more than 4,300 digits (the integer digits limit)",
        None,
    ),
)


def test_every_limit_has_a_case_and_every_setting_is_a_spec_setting():
    assert {case.limit for case in CASES} == set(LIMITS)
    assert set(LIMIT_SETTINGS) <= set(SPEC_SETTINGS)
    assert all(limit.setting in LIMIT_SETTINGS for limit in LIMITS.values() if limit.setting)


def _write(tmp_path: Path, case: Case, extra: str = "") -> Path:
    assert case.old in BASE
    for name, content in case.files:
        (tmp_path / name).write_text(content)
    path = tmp_path / "limit.circ"
    path.write_text(BASE.replace(case.old, case.new, 1) + extra)
    return path


def _line_column(text: str, needle: str) -> tuple[int, int]:
    before = text[: text.index(needle)]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


@pytest.mark.parametrize(
    "case", fast_cases(CASES, lambda case: case.limit not in ("prompts per set", "list length")), ids=[case.limit for case in CASES]
)
def test_a_spec_past_a_limit_is_an_error_at_its_place(tmp_path, capsys, case):
    path = _write(tmp_path, case)
    assert main(["check", "--no-tokenize", str(path)]) == 2
    out, err = capsys.readouterr()
    line, column = _line_column(path.read_text(), case.at)
    stage = "syntax" if case.raised is None and case.limit == "expression depth" else "limit"
    assert f"{path}:{line}:{column}: {stage} error: " in out, out[:2000]
    assert case.gist in out
    assert "Traceback" not in out + err
    if case.raised:
        assert f"raise it with `{case.raised.split(' = ')[0]} = N`" in out


SLOW_TO_RAISE = ("loop product", "generated prompts", "prompts per set", "list length")  # seconds each: the slow set


@pytest.mark.parametrize(
    "case", fast_cases([case for case in CASES if case.raised], lambda case: case.limit not in SLOW_TO_RAISE), ids=lambda case: case.limit
)
def test_its_setting_raises_the_limit(tmp_path, capsys, case):
    path = _write(tmp_path, case, case.raised + "\n")
    assert main(["check", "--no-tokenize", str(path)]) == 0, capsys.readouterr().out[:2000]


def test_a_limit_can_be_lowered_too(tmp_path, capsys):
    path = tmp_path / "low.circ"
    path.write_text(BASE + "set max_prompts = 4\n")
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert f"{path}:5:7: limit error: the loops of p make more than 4 prompts" in capsys.readouterr().out


def test_a_limit_setting_must_be_positive(tmp_path, capsys):
    path = tmp_path / "zero.circ"
    path.write_text(BASE + "set max_text = 0\n")
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert "max_text must be 1 or more" in capsys.readouterr().out


def test_braces_in_a_prompt_label_do_not_break_the_message(tmp_path, capsys):
    path = tmp_path / "braces.circ"
    path.write_text(BASE.replace("for i in 1..5", 'for i in ["{x}", "{limit}"]').replace("s2 = i + 1", "s2 = pad(1, 5000)"))
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert "prompt #0 of p (i={x}): pad to 5000 characters, more than 1,000" in capsys.readouterr().out


# ---- set count bounds the work ---------------------------------------------------------------


def _expand(tmp_path: Path, text: str):
    path = tmp_path / "count.circ"
    path.write_text(text)
    return expand_all(load_spec(path))


def test_count_stops_generation_instead_of_trimming_after_it(tmp_path):
    text = BASE.replace("for i in 1..5", "for i in 1..10000000, j in 1..100000000000000000000000")
    started = time.perf_counter()
    (dataset,) = _expand(tmp_path, text.replace("  wrong = i + 1\n", "  wrong = i + 1\n  set count = 10\n"))
    assert time.perf_counter() - started < 5  # ten rows made, not 10**31 (nor an error)
    assert [p.text for p in dataset.clean] == [f"1 {2}"] * 10
    assert [dict(p.fields)["answer"] for p in dataset.clean] == ["3"] * 10


def test_count_does_not_make_the_rows_it_drops(tmp_path):
    """Row 6 would fail (index past the list); with count 5 it is never made."""
    text = BASE.replace("s2 = i + 1", "s2 = colors[i - 1]") + 'list colors = ["a", "b", "c", "d", "e"]\n'
    text = text.replace("for i in 1..5", "for i in 1..6")
    assert len(_expand(tmp_path, text.replace("  wrong = i + 1\n", "  wrong = i + 1\n  set count = 5\n"))[0].clean) == 5


def test_count_keeps_the_first_prompts_of_the_full_expansion(tmp_path):
    text = BASE.replace("s2 = i + 1", "s2 = random 1..99").replace("for i in 1..5", "for i in 1..50")
    full = _expand(tmp_path, text)[0].clean
    counted = _expand(tmp_path, text.replace("  wrong = i + 1\n", "  wrong = i + 1\n  set count = 7\n"))[0].clean
    assert counted == full[:7]


def test_count_is_the_set_with_only_those_rows_corruptions_included(tmp_path):
    """What `set count = N` means with random draws: exactly the set whose loop stops at N."""
    text = BASE.replace("s2 = i + 1", "s2 = random 1..99").replace(
        "  wrong = i + 1\n", "  wrong = i + 1\n  corrupt random { s1 = random 1..99 }\n"
    )
    counted = _expand(
        tmp_path, text.replace("for i in 1..5", "for i in 1..500").replace("  wrong = i + 1\n", "  wrong = i + 1\n  set count = 5\n")
    )[0]
    short = _expand(tmp_path, text)[0]
    assert counted.clean == short.clean and counted.corrupt == short.corrupt


def test_count_bounds_a_generator(tmp_path):
    spec = (ROOT / "specs" / "organism_ioi.circ").read_text()
    assert "generate ioi(n = 200)" in spec
    full = _expand(tmp_path, spec)[0]
    counted = _expand(tmp_path, spec.replace("generate ioi(n = 200)", "generate ioi(n = 200)\n  set count = 30"))[0]
    assert counted.clean == full.clean[:30]
    huge = spec.replace("generate ioi(n = 200)", "generate ioi(n = 10000000)\n  set count = 30")
    assert _expand(tmp_path, huge)[0].clean == full.clean[:30]


def test_a_count_over_the_limit_does_not_lift_it(tmp_path, capsys):
    path = tmp_path / "over.circ"
    path.write_text(BASE.replace("for i in 1..5", "for i in 1..200000").replace("  wrong = i + 1\n", "  wrong = i + 1\n  set count = 150000\n"))
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert "the loops of p make more than 100,000 prompts" in capsys.readouterr().out


def test_the_language_reference_states_every_limit():
    reference = (ROOT / "docs" / "language.md").read_text()
    for limit in LIMITS.values():
        raised = f"`set {limit.setting} = N`" if limit.setting else "fixed"
        assert f"| {limit.what} | {limit.default:,} | " in reference and raised in reference, limit.what


def test_a_long_answer_prefix_is_a_limit_error_at_its_block(tmp_path, capsys):
    path = tmp_path / "prefix.circ"
    path.write_text(BASE.replace("  wrong = i + 1\n", f'  wrong = i + 1\n  set answer_prefix = "{" " * 1001}"\n'))
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert f"{path}:3:1: limit error: this string has 1,001 characters" in capsys.readouterr().out


def test_a_limit_error_in_json_has_its_own_stage(tmp_path, capsys):
    path = tmp_path / "pad.circ"
    path.write_text(BASE.replace("s2 = i + 1", "s2 = pad(i, 5000)"))
    assert main(["check", "--no-tokenize", "--format", "json", str(path)]) == 2
    assert '"stage": "limit"' in capsys.readouterr().out


def test_loops_that_make_no_prompts_cannot_run_forever(tmp_path, capsys):
    path = tmp_path / "empty.circ"
    path.write_text(BASE.replace("for i in 1..5", "for i in 1..100000000000000000000, j in 1..0"))
    started = time.perf_counter()
    assert main(["check", "--no-tokenize", str(path)]) == 2
    assert time.perf_counter() - started < 30
    assert f"{path}:5:38: limit error: the loops of p go through more than 2 x 100,000 values" in capsys.readouterr().out
