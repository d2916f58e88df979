"""`hypothesis` blocks (docs/language.md, "Hypotheses: what nodes carry"): parsed, printed, lowered
into the IR's hypotheses and interchange claims, and every static mistake reported at its place."""

from __future__ import annotations

import json
import logging

import pytest
from lark import Lark, logger

from circuitlang.dsl import ast
from circuitlang.dsl.parser import _grammar_text, parse
from circuitlang.dsl.printer import format_spec
from circuitlang.errors import CircuitlangError, flatten
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec
from tests.conftest import SPECS, lower_text

# Prompt set incr_digits: slots s1..s4, fields answer and wrong, loop variable i. Circuit: role
# "end reads s3 (q end)" = 0.0, 0.2 q end; role "end reads s3 (q end k s3)" = 0.4 q end k s3;
# `mlp 0, 1, 2, 3` (no `at`: every position).
BASE = (SPECS / "organism_incr_digits.circ").read_text()
BLOCK = """
hypothesis on incr_digits {
  step = s4 - s3
  next = s4 + step
  answer = next
  0.0, 0.2 at end carries s3
  "end reads s3 (q end)" carries s4
  0.4 carries s4
  mlp 1, 2 at end, s4 carries next
}
"""
CLAIMS = """
expect "end reads s3 (q end)" iia >= 0.8
expect 0.4 graded_iia >= 0.5
expect next iia on incr_digits >= 0.8
"""
HYPOTHESIS = BLOCK + CLAIMS
TEXT = BASE + HYPOTHESIS
OTHER_SET = """
prompts other {
  template "{s1} {s2} {s3} {s4}"
  for i in 1..5
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4; wrong = i + 3
  corrupt random { s1, s2, s3, s4 = random 1..99 }
}
"""


def errors(text: str) -> list[CircuitlangError]:
    try:
        lower_text(text)
    except CircuitlangError as raised:
        return flatten([raised])
    return []


def at(text: str, fragment: str, occurrence: int = 1) -> tuple[int, int]:
    """The line and column (from 1) where `fragment` occurs in `text` (its n-th occurrence)."""
    offset = -1
    for _ in range(occurrence):
        offset = text.index(fragment, offset + 1)
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def only_error(text: str) -> CircuitlangError:
    found = errors(text)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


def assert_error(text: str, fragment: str, message: str, hint: str | None = None, occurrence: int = 1) -> None:
    error = only_error(text)
    assert error.span is not None
    assert error.message.startswith(message), error.message
    assert (error.span.line, error.span.column) == at(text, fragment, occurrence), str(error)
    if hint is not None:
        assert error.hint is not None and error.hint.startswith(hint), error.hint


# ---- what it lowers to ------------------------------------------------------------------------


def test_the_hypothesis_lowers_to_variables_answer_and_carriers():
    spec = lower_text(TEXT)
    [hypothesis] = spec.hypotheses
    assert hypothesis.prompt_set == "incr_digits"
    assert [v.name for v in hypothesis.variables] == ["step", "next"]
    step = hypothesis.variables[0].value
    assert isinstance(step, ir.BinE) and step.op == "-"
    assert (step.left, step.right) == (ir.VarE(name="s4", span=step.left.span), ir.VarE(name="s3", span=step.right.span))
    assert isinstance(hypothesis.answer, ir.VarE) and hypothesis.answer.name == "next"

    def sites(carrier: ir.Carrier) -> list[tuple[str, list[str]]]:
        return [(str(site.node), [str(p) for p in site.positions]) for site in carrier.sites]

    texts = [carrier.text for carrier in hypothesis.carriers]
    assert texts == ["0.0, 0.2 at end carries s3", '"end reads s3 (q end)" carries s4', "0.4 carries s4", "mlp 1, 2 at end, s4 carries next"]
    by_text = dict(zip(texts, hypothesis.carriers))
    assert sites(by_text["0.0, 0.2 at end carries s3"]) == [("0.0", ["end"]), ("0.2", ["end"])]
    # Without `at`: each node's q positions from the circuit (the role line's `q end`).
    assert sites(by_text['"end reads s3 (q end)" carries s4']) == [("0.0", ["end"]), ("0.2", ["end"])]
    assert sites(by_text["0.4 carries s4"]) == [("0.4", ["end"])]
    assert sites(by_text["mlp 1, 2 at end, s4 carries next"]) == [("mlp 1", ["end", "s4"]), ("mlp 2", ["end", "s4"])]
    assert [c.role for c in hypothesis.carriers] == [None, "end reads s3 (q end)", None, None]
    assert [c.variable for c in hypothesis.carriers] == ["s3", "s4", "s4", "next"]
    assert hypothesis.carried == ("s3", "s4", "next")
    assert by_text["0.0, 0.2 at end carries s3"].span.line == at(TEXT, "0.0, 0.2 at end")[0]
    assert spec.hypothesis_for("incr_digits") == hypothesis


def test_interchange_claims_name_a_carrier_or_a_variable():
    claims = [e for e in lower_text(TEXT).expectations if isinstance(e, ir.InterchangeExpectation)]
    assert [(c.carrier, c.variable, c.score, c.on, c.op, c.threshold) for c in claims] == [
        (1, "s4", "iia", None, ">=", 0.8),  # the carrier written as the role
        (2, "s4", "graded_iia", None, ">=", 0.5),  # the carrier whose nodes are {0.4}
        (None, "next", "iia", "incr_digits", ">=", 0.8),  # every carrier of next
    ]


def test_on_may_be_left_out_with_one_prompt_set():
    spec = lower_text(TEXT.replace("hypothesis on incr_digits {", "hypothesis {"))
    assert spec.hypotheses[0].prompt_set == "incr_digits"


def test_a_generators_slots_and_fields_are_names_of_the_hypothesis():
    text = """circuitlang 1
circuit ioi on "gpt2"
prompts {
  generate ioi(n = 5)
  corrupt abc
}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "name mover": 9.9, 9.6 q end
hypothesis {
  same = wrong
  answer = io
  "name mover" carries io
}
expect io iia >= 0.5
"""
    [hypothesis] = lower_text(text).hypotheses
    assert hypothesis.carried == ("io",)
    assert "unknown name 'place_'" in str(errors(text.replace("same = wrong", "same = place_"))[0])


def test_a_data_files_columns_are_left_to_the_expansion(write_spec):
    """A `from` file's columns are read when the prompts are built: lowering accepts any name."""
    text = """circuitlang 1
circuit rows on "gpt2"
prompts {
  template "{s1} {s2}"
  from "rows.csv"
}
metric logit_diff(answer, wrong)
ablate zero
role "mover": 9.1 q end
hypothesis {
  answer = column_only_the_file_knows + s2
  9.1 carries column_only_the_file_knows
}
"""
    spec = load_spec(write_spec(text, rows__csv="s1,s2,answer,wrong,column_only_the_file_knows\n1,2,3,2,1\n"))
    assert spec.hypotheses[0].carried == ("column_only_the_file_knows",)


# ---- printing ---------------------------------------------------------------------------------


def test_fmt_prints_the_block_canonically_and_it_round_trips():
    messy = BASE + HYPOTHESIS.replace("  step = s4 - s3\n  next = s4 + step\n", "  step = s4-s3 ;next = s4 + (step)  # the step\n").replace(
        "0.0, 0.2 at end carries s3", "0.0,0.2  at end   carries s3"
    )
    formatted = format_spec(parse(messy, "a.circ"))
    assert format_spec(parse(formatted, "a.circ")) == formatted
    assert lower_text(formatted).canonical_json() == lower_text(messy).canonical_json() == lower_text(TEXT).canonical_json()
    block = formatted[formatted.index("hypothesis on") :]
    assert block.startswith(
        "hypothesis on incr_digits {\n"
        "  step = s4 - s3\n"
        "  next = s4 + step  # the step\n"
        "  answer = next\n"
        "  0.0, 0.2 at end carries s3\n"
        '  "end reads s3 (q end)" carries s4\n'
        "  0.4 carries s4\n"
        "  mlp 1, 2 at end, s4 carries next\n"
        "}\n\n"
        'expect "end reads s3 (q end)" iia >= 0.8\n'
    )
    assert format_spec(parse(TEXT, "a.circ")) == TEXT  # already canonical


def test_a_spec_without_a_hypothesis_keeps_its_canonical_json():
    spec = lower_text(BASE)
    assert spec.hypotheses == ()
    for spans in (False, True):
        assert "hypotheses" not in json.loads(spec.canonical_json(spans=spans))
    assert "hypotheses" in json.loads(lower_text(TEXT).canonical_json())


# ---- syntax -----------------------------------------------------------------------------------


def test_the_grammar_has_no_conflict_beyond_the_separators():
    """Lark resolves shift/reduce conflicts silently; the only ones are the optional separators'."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        Lark(_grammar_text(), parser="lalr", lexer="contextual", debug=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    conflicts = [m for m in messages if "onflict" in m]
    assert conflicts and all("for terminal _NL" in m or "for terminal SEMICOLON" in m for m in conflicts), conflicts


def test_a_name_target_is_a_variable_and_metric_claims_still_parse():
    items = parse("circuitlang 1\nexpect s3 iia on x >= 0.8\nexpect faithfulness on x >= 0.8\nexpect faithfulness >= 1\n").items
    assert isinstance(items[0], ast.ExpectScore) and items[0].target == ast.VariableRef("s3", items[0].target.span)
    assert isinstance(items[1], ast.ExpectMetric) and items[1].on is not None
    assert isinstance(items[2], ast.ExpectMetric)


@pytest.mark.parametrize(
    "block, fragment, hint",
    [
        ("hypothesis {\n  answer = s4\n  0.0 at end\n}\n", "0.0 at end", "a carrier is written NODES [at POSITIONS] carries NAME"),
        ('hypothesis {\n  answer = s4\n  template "x"\n}\n', 'template "x"', "inside hypothesis { } a line is one of"),
        ("expect s3 iia >= 0.8 on incr_digits\n", "on incr", "`on SET` comes before the comparison"),
    ],
)
def test_syntax_errors_in_hypotheses_get_a_hint(block, fragment, hint):
    text = BASE + block
    with pytest.raises(CircuitlangError) as raised:
        parse(text, "a.circ")
    [error] = flatten([raised.value])
    assert error.hint is not None and error.hint.startswith(hint), error.hint
    assert error.span is not None and error.span.line == at(text, fragment)[0]


def test_a_hypothesis_block_left_open_is_closed_by_the_next_one():
    text = BASE + "hypothesis {\n  answer = s4 +\nhypothesis on incr_digits {\n  answer = s4\n}\n"
    with pytest.raises(CircuitlangError) as raised:
        parse(text, "a.circ")
    found = flatten([raised.value])
    line, column = at(text, "answer = s4 +")
    assert [(e.span.line, e.span.column) for e in found if e.span] == [(line, column + len("answer = s4 +"))]


def test_hypothesis_is_a_statement_keyword():
    with pytest.raises(CircuitlangError, match="statement keyword|unexpected"):
        parse('circuitlang 1\nprompts {\n  template "{a}"\n  a = 1; hypothesis = 2\n}\n')


# ---- static checks: the prompt set ------------------------------------------------------------


def test_on_must_name_a_prompt_set():
    text = TEXT.replace("hypothesis on incr_digits {", "hypothesis on incr_digit {")
    assert_error(text, "incr_digit {", "no prompt set named 'incr_digit'", "did you mean 'incr_digits'?")


def test_on_is_required_with_several_prompt_sets():
    text = BASE + OTHER_SET + HYPOTHESIS.replace("hypothesis on incr_digits {", "hypothesis {").replace(" on incr_digits >=", " >=")
    assert_error(text, "hypothesis {", "with several prompt sets a hypothesis says which one it models", "write `hypothesis on NAME {`")


def test_a_prompt_set_has_one_hypothesis():
    second = "\nhypothesis on incr_digits {\n  answer = s4 + 1\n}\n"
    text = TEXT + second
    line = at(text, "hypothesis on")[0]
    assert_error(text, "hypothesis on", f"a second hypothesis for prompt set 'incr_digits' (the first is at line {line})", occurrence=2)


# ---- static checks: names and the answer ------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, fragment, message, hint",
    [
        ("next = s4 + step", "next = s4 + stp", "stp", "unknown name 'stp' in the hypothesis on incr_digits", "did you mean 'step'?"),
        (
            "step = s4 - s3",
            "step = next - s3",
            "next - s3",
            "'next' is used before its line (line ",
            "a variable may use the variables on earlier lines",
        ),
        ("step = s4 - s3", "step = random 1..3", "random 1..3", "`random` in a hypothesis", "a hypothesis computes each value"),
        ("step = s4 - s3", "s3 = s4 - 1\n  step = s4 - s3", "s3 = s4", "'s3' is a slot of prompt set 'incr_digits'", "rename the variable"),
        ("step = s4 - s3", "wrong = s4\n  step = s4 - s3", "wrong = s4", "'wrong' is a field of prompt set 'incr_digits'", None),
        ("step = s4 - s3", "i = s4\n  step = s4 - s3", "i = s4", "'i' is a loop variable of prompt set 'incr_digits'", None),
        ("next = s4 + step", "next = s4 + step\n  step = 2", "step = 2", "variable 'step' is assigned twice (first at line", None),
        ("answer = next\n", "answer = next\n  answer = s4\n", "answer = s4", "a second `answer = ...` line", "a hypothesis has one answer"),
        ("step = s4 - s3", "step = s4 - s3\n  y, x = s4", "x = s4", "a hypothesis names one value per line", "write `y = ...` and `x = ...`"),
        ("step = s4 - s3", "step = lenn(s4)", "lenn", "unknown function 'lenn'", "did you mean 'len'?"),
    ],
)
def test_names_in_a_hypothesis_are_checked(old, new, fragment, message, hint):
    text = TEXT.replace(old, new, 1)
    assert_error(text, fragment, message, hint)


def test_the_answer_line_is_required():
    text = TEXT.replace("  answer = next\n", "", 1).replace("expect next iia on incr_digits >= 0.8\n", "")
    # Without an answer nothing depends on anything: only the missing line is reported.
    assert_error(text, "hypothesis on", "the hypothesis has no `answer = ...` line", "say what the answer is")


# ---- static checks: carriers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, fragment, message, hint",
    [
        (
            "carries next",
            "carries nxt",
            "nxt",
            "'nxt' is not a slot, field or variable of the hypothesis on incr_digits",
            "did you mean 'next'?",
        ),
        (
            "0.0, 0.2 at end carries s3",
            "0.0, 0.2 at end carries s2",
            's2\n  "end',
            "the answer does not use s2: an interchange on it predicts no change",
            "carry a value the answer depends on (s3, s4, step, next)",
        ),
        ("0.0, 0.2 at end carries s3", "0.0, 1.1 at end carries s3", "1.1 at end", "1.1 is not in the circuit", "add 1.1 to a role"),
        ("0.0, 0.2 at end carries s3", "0.0, 9.1 at end carries s3", "9.1 at end", "layer 9 does not exist", None),
        ("0.0, 0.2 at end carries s3", "0.0, 0.0 at end carries s3", "0.0 at", "0.0 is listed twice", None),
        ('"end reads s3 (q end)" carries s4', '"end reads s3" carries s4', '"end reads s3"', 'no role named "end reads s3"', "did you mean"),
        (
            "0.0, 0.2 at end carries s3",
            "0.0, 0.2 q end carries s3",
            "q end carries",
            "'q' is not a position clause of a carrier",
            "a carrier takes `at",
        ),
        ("0.0, 0.2 at end carries s3", "0.0, 0.2 at end at s4 carries s3", "at s4 carries", "'at' is given twice", None),
        (
            "0.0, 0.2 at end carries s3",
            "0.0, 0.2 at s5 carries s3",
            "s5",
            "position 's5' is not a slot of prompt set 'incr_digits'",
            "positions there",
        ),
        (
            "mlp 1, 2 at end, s4 carries next",
            "mlp 1, 2 carries next",
            "mlp 1, 2 carries",
            "say where mlp 1, mlp 2 carry next: add `at end`",
            "the circuit keeps mlp 1, mlp 2 at every position (its line has no `at` clause)",
        ),
    ],
)
def test_carriers_are_checked(old, new, fragment, message, hint):
    text = TEXT.replace(old, new, 1)
    assert_error(text, fragment, message, hint)


def test_the_dependency_goes_through_variables():
    """s3 reaches the answer only through step and next."""
    text = TEXT.replace("answer = next", "answer = s4 + 1").replace("expect next iia on incr_digits >= 0.8\n", "")
    found = errors(text)
    assert {e.message for e in found} == {
        "the answer does not use s3: an interchange on it predicts no change",
        "the answer does not use next: an interchange on it predicts no change",
    }


# ---- static checks: claims --------------------------------------------------------------------


def test_an_interchange_claim_needs_a_hypothesis():
    text = BASE + "expect 0.0 iia >= 0.5\n"
    assert_error(text, "expect 0.0", "an interchange claim (iia) needs a hypothesis, and the spec has none", "declare one")


def test_a_claim_on_a_set_needs_that_sets_hypothesis():
    text = BASE + OTHER_SET + HYPOTHESIS + "expect s3 iia on other >= 0.5\n"
    assert_error(text, "other >= 0.5", "no hypothesis for prompt set 'other'", "declare one: hypothesis on other")


def test_with_several_hypotheses_a_claim_says_which():
    other = "hypothesis on other {\n  answer = s4 + 1\n  0.4 carries s4\n}\n"
    text = BASE + OTHER_SET + BLOCK + other + "expect 0.4 iia >= 0.5\n"
    assert_error(text, "expect 0.4 iia", "the spec has hypotheses for incr_digits, other: say which one the claim is about", "add `on SET`")


@pytest.mark.parametrize(
    "claim, fragment, message, hint",
    [
        (
            'expect "end reads s3 (q end k s3)" iia >= 0.5',
            '"end reads s3 (q end k s3)" iia',
            'no carrier of the hypothesis on incr_digits is written as "end reads s3 (q end k s3)"',
            "a claim names a carrier by its role as written",
        ),
        ("expect 0.0 iia >= 0.5", "0.0 iia", "no carrier of the hypothesis on incr_digits consists of 0.0 alone", None),
        ("expect mlp 1 iia >= 0.5", "mlp 1 iia", "no carrier of the hypothesis on incr_digits consists of mlp 1 alone", None),
        ("expect step iia >= 0.5", "step iia", "no node carries 'step' in the hypothesis on incr_digits", "carried there: s3, s4, next"),
        (
            "expect s3 copy_score >= 0.5",
            "copy_score",
            "unknown score 'copy_score' of a hypothesis's variable",
            "claims about a variable: iia, graded_iia",
        ),
        ("expect s3 attends end -> s4 >= 0.5", "s3 attends", "'s3' is not a node or a role", None),
        ("expect 0.0 iiaa >= 0.5", "iiaa", "unknown score 'iiaa'", "scores of a node: copy_score"),
    ],
)
def test_claims_are_checked(claim, fragment, message, hint):
    text = TEXT + claim + "\n"
    assert_error(text, fragment, message, hint)


def test_a_claim_naming_several_carriers_lists_them():
    text = TEXT.replace("  0.4 carries s4\n", '  0.4 carries s4\n  "end reads s3 (q end)" at end carries s3\n', 1)
    error = only_error(text)
    assert error.message == '2 carriers of the hypothesis on incr_digits are written as "end reads s3 (q end)": a claim names one'
    assert error.span is not None and (error.span.line, error.span.column) == at(text, '"end reads s3 (q end)" iia')
    assert error.hint is not None and '`"end reads s3 (q end)" at end carries s3`' in error.hint


def test_a_broken_hypothesis_does_not_make_its_claims_errors_too():
    text = TEXT.replace("0.4 carries s4", "0.4 carries s44")
    assert [e.message.split(":")[0] for e in errors(text)] == ["'s44' is not a slot, field or variable of the hypothesis on incr_digits"]
