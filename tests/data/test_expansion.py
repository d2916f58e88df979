"""Prompt expansion: loops, lists, random draws, files, generators and corruptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitlang.data.datasets import expand_all
from circuitlang.errors import DataError
from circuitlang.ir.lower import load_spec
from tests.conftest import SPECS, datasets_of

HEADER = 'circuitlang 1\ncircuit c on "gpt2"\nmetric logit_diff(answer, wrong)\nablate zero\n'


def one(text: str, tmp_path):
    (dataset,) = datasets_of(HEADER + text, tmp_path)
    return dataset


def test_loops_are_a_product_and_later_loops_see_earlier_variables(tmp_path):
    d = one('prompts { template "{a} {b}"; for i in 1..3, j in i..3; a = i; b = j; answer = 0; wrong = 1 }', tmp_path)
    assert [p.text for p in d.clean] == ["1 1", "1 2", "1 3", "2 2", "2 3", "3 3"]


def test_cyclic_list_wraps_and_plain_list_does_not(tmp_path):
    d = one('prompts { template "{a}"; for i in 10..13; a = months[i]; answer = months[i + 1]; wrong = "x" }', tmp_path)
    assert [p.text for p in d.clean] == ["November", "December", "January", "February"]
    assert d.clean[1].field("answer") == "January"
    with pytest.raises(DataError, match=r"prompt #1 of c \(i=20\): index 21 is outside list 'number_words'"):
        one('prompts { template "{a}"; for i in 19..20; a = number_words[i + 1]; answer = 0; wrong = 1 }', tmp_path)


def test_user_lists_and_functions(tmp_path):
    text = (
        'list colors = ["red", "green"]\n'
        'prompts { template "{a} {b} {c}"; for i in 0..1; a = upper(colors[i]); b = pad(i + 3, 2)\n'
        'c = str(len(colors)) + "x"; answer = pad(i..i + 1, 2); wrong = 1 }'
    )
    d = one(text, tmp_path)
    assert [p.text for p in d.clean] == ["RED 03 2x", "GREEN 04 2x"]
    assert d.clean[0].field("answer") == ("00", "01")


def test_random_draws_are_seeded_and_distinct_means_distinct(tmp_path):
    text = 'prompts { template "{a} {b} {c}"; for i in 1..40; a, b, c = random 1..4 distinct; answer = 0; wrong = 1 }'
    first, second = one(text, tmp_path), one(text, tmp_path)
    assert [p.text for p in first.clean] == [p.text for p in second.clean]
    assert all(len(set(p.text.split())) == 3 for p in first.clean)
    reseeded = one(text + "\nset seed = 1", tmp_path)
    assert [p.text for p in reseeded.clean] != [p.text for p in first.clean]


BASE = 'prompts { template "{s1} {s2} {s3} {s4}"; for i in 1..5; s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3\nanswer = i + 4; wrong = i + 3\n'


@pytest.mark.parametrize(
    "corruption, expected",
    [
        ("corrupt repeat_last", "1 2 3 3"),
        ("corrupt repeat_all", "1 1 1 1"),
        ("corrupt swap(s1, s4)", "4 2 3 1"),
        ("corrupt random { s4 = s1 + 50 }", "1 2 3 51"),
    ],
)
def test_corruptions_change_slots_and_keep_template_and_answers(tmp_path, corruption, expected):
    d = one(BASE + corruption + "\n}", tmp_path)
    assert d.corrupt[0].text == expected
    assert d.corrupt[0].template == d.clean[0].template
    assert d.corrupt[0].fields == d.clean[0].fields


def test_data_files_jsonl_and_csv(write_spec):
    text = HEADER + 'prompts { template "{a} to {b}"; from "rows.%s"; answer = b + 1; wrong = b }\n'
    path = write_spec(text % "jsonl", rows__jsonl='{"a": 1, "b": 2}\n{"a": "x", "b": 5}\n')
    (d,) = expand_all(load_spec(path))
    assert [p.text for p in d.clean] == ["1 to 2", "x to 5"] and d.clean[1].field("answer") == "6"
    path = write_spec(text % "csv", rows__csv="a,b\n01,2\n")
    (d,) = expand_all(load_spec(path))
    assert d.clean[0].text == "01 to 2"  # "01" stays text: converting it would lose the zero


def test_corrupt_file_pairs_rows_in_order(write_spec):
    text = HEADER + 'prompts { template "{a}"; for i in 1..2; a = i; answer = 0; wrong = 1; corrupt file("c.jsonl") }'
    path = write_spec(text, c__jsonl='{"a": 7}\n{"a": 8}\n')
    (d,) = expand_all(load_spec(path))
    assert [p.text for p in d.corrupt] == ["7", "8"]


COMPACT_IOI = """circuitlang 1
circuit c on "gpt2"
prompts ioi {
  generate ioi(n = 100, order = "mixed")
  corrupt abc
}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "r": 9.9 q end
"""


def test_ioi_generator_and_abc_corruption(tmp_path):
    (d,) = datasets_of(COMPACT_IOI, tmp_path)  # the compact version (the default): 4 templates in each order
    assert len(d.clean) == 100 and len(d.templates) == 8
    for clean, corrupt in zip(d.clean, d.corrupt):
        values, bad = dict(clean.values), dict(corrupt.values)
        assert values["s1"] == values["s2"] != values["io"]
        assert clean.field("answer") == values["io"] and clean.field("wrong") == values["s1"]
        assert len({bad["io"], bad["s1"], bad["s2"]}) == 3
        assert not {bad["io"], bad["s1"], bad["s2"]} & {values["io"], values["s1"]}


def test_greater_than_generator_and_01_corruption():
    (d,) = expand_all(load_spec(SPECS / "greater_than.circ"))
    for clean, corrupt in zip(d.clean, d.corrupt):
        yy = int(dict(clean.values)["yy"])
        assert clean.field("answer") == tuple(f"{y:02d}" for y in range(yy + 1, 100))
        assert clean.field("wrong") == tuple(f"{y:02d}" for y in range(0, yy + 1))
        assert dict(corrupt.values)["yy"] == "01" and corrupt.text.endswith(clean.text[-len("to the year 17") :])


# The evaluator against Python's own integer arithmetic, the obvious reference.
small = st.integers(min_value=-30, max_value=30)


@st.composite
def arithmetic(draw, depth: int = 0):
    if depth > 3 or draw(st.booleans()):
        value = draw(small)
        return (f"({value})" if value < 0 else str(value)), value
    (left_text, left), (right_text, right) = draw(arithmetic(depth + 1)), draw(arithmetic(depth + 1))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    if op in ("//", "%") and right == 0:
        op = "+"
    result = {"+": left + right, "-": left - right, "*": left * right, "//": left // right if right else 0, "%": left % right if right else 0}[
        op
    ]
    return f"({left_text} {op} {right_text})", result


@settings(max_examples=60, deadline=None)
@given(arithmetic())
def test_expressions_match_python_integer_arithmetic(tmp_path_factory, case):
    text, expected = case
    d = one(f'prompts {{ template "{{a}}"; a = {text}; answer = 0; wrong = 1 }}', tmp_path_factory.mktemp("e"))
    assert d.clean[0].text == str(expected)
