"""Several syntax errors per file: after a syntax error the parser skips the rest of the broken
statement and reads on from the next one, so each statement that does not parse is reported once,
at its line and column, with the message it gets when it is the only mistake (docs/language.md,
section 2; docs/decisions.md, "Syntax errors").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.dsl.parser import parse
from circuitlang.errors import CircuitlangError, SyntaxErrorInSpec, flatten

VALID = """\
circuitlang 1
circuit digits on "organism:seqcont"

prompts digits {
  template "{s1} {s2} {s3} {s4}"
  for i in 1..95
  s1 = i
  s2 = i + 1
  s3 = i + 2
  s4 = i + 3
  answer = i + 4
  wrong = i + 3
  corrupt random {
    s1, s2, s3, s4 = random 1..99
  }
}

metric logit_diff(answer, wrong)
ablate mean of corrupt

role "end reads s3": 0.0, 0.2 q end
mlp 0, 1, 2, 3

edge 0.0 -> mlp 0
edge 0.2 -> mlp 0
edge mlp 0 -> mlp 1
edge mlp 1 -> mlp 2
edge mlp 2 -> mlp 3
edge mlp 3 -> logits

expect faithfulness >= 0.9
"""

# Three independent mistakes, each on its own line: (line, its broken text, column of the error).
END_OF_LINE = (8, "  s2 = i +", 11)
MISSING_COMMA = (18, "metric logit_diff(answer wrong)", 26)
TWO_LAYERS_RUN_TOGETHER = (22, "mlp 0, 1 2, 3", 10)
THREE_MISTAKES = (END_OF_LINE, MISSING_COMMA, TWO_LAYERS_RUN_TOGETHER)


def with_lines(changes: dict[int, str], text: str = VALID) -> str:
    """`text` with whole lines (1-based) replaced; a replacement may hold several lines."""
    lines = text.splitlines()
    for number, new in changes.items():
        lines[number - 1] = new
    return "\n".join(lines) + "\n"


def errors_of(text: str) -> list[CircuitlangError]:
    try:
        parse(text, "spec.circ")
    except CircuitlangError as error:
        return flatten([error])
    return []


def places(errors: list[CircuitlangError]) -> list[tuple[int, int]]:
    return [(e.span.line, e.span.column) for e in errors if e.span]


def test_the_valid_spec_parses_and_checks(write_spec):
    assert errors_of(VALID) == []
    assert main(["check", "--no-tokenize", str(write_spec(VALID))]) == 0


def test_three_errors_on_different_lines_are_all_reported_at_their_place():
    errors = errors_of(with_lines({line: broken for line, broken, _ in THREE_MISTAKES}))
    assert places(errors) == [(line, column) for line, _, column in THREE_MISTAKES]
    assert all(isinstance(e, SyntaxErrorInSpec) and e.hint for e in errors)


def test_each_error_reads_as_it_does_when_it_is_the_only_mistake():
    together = errors_of(with_lines({line: broken for line, broken, _ in THREE_MISTAKES}))
    alone = [errors_of(with_lines({line: broken}))[0] for line, broken, _ in THREE_MISTAKES]
    assert [(e.message, e.hint, e.span) for e in together] == [(e.message, e.hint, e.span) for e in alone]


# One mistake must give one error: nothing the recovery reads after it may be a follow-on error.
SINGLE_MISTAKES = {
    "missing =": ({7: "  s1 i"}, (7, 6)),
    "several mistakes in one statement": ({22: "mlp 0, 1 2 3 ) ] 4"}, (22, 10)),
    "unterminated string with braces": ({5: '  template "{s1} {s2} {s3'}, (5, 12)),
    "stray character": ({21: 'role "end reads s3": 0.0, 0.2 q end @'}, (21, 37)),
    "junk before a block's brace": ({4: "prompts digits extra {"}, (4, 16)),
    "a block's brace on the next line": ({4: "prompts digits\n{"}, (4, 15)),
    "a block without its opening brace": ({4: "prompts digits"}, (4, 15)),
    "a block without its closing brace": ({16: ""}, (4, 16)),  # at the '{' left open, not the next block
    "a corrupt block without its closing brace": ({15: ""}, (4, 16)),  # the corrupt block takes the prompts block's }
    "a top-level statement inside a block": ({12: '  role "x": 1.1'}, (12, 3)),
    "a block statement at top level": ({17: 'template "{s1}"'}, (17, 1)),
    "a stray closing brace": ({20: "}"}, (20, 1)),
    "unclosed parenthesis": ({18: "metric logit_diff(answer, wrong"}, (19, 1)),
    "a mistake inside a list that spans lines": ({17: "list xs = [1, 2 3,\n  4, 5]"}, (17, 17)),
    "no version header": ({1: ""}, (2, 1)),
    "junk after the version header": ({1: "circuitlang 1 2"}, (1, 15)),
}


@pytest.mark.parametrize("changes, place", SINGLE_MISTAKES.values(), ids=SINGLE_MISTAKES.keys())
def test_a_single_mistake_is_a_single_error(changes, place):
    assert places(errors_of(with_lines(changes))) == [place]


def test_errors_inside_blocks_are_found_and_the_block_is_read_on():
    text = with_lines(
        {
            7: "  s1 = )",  # the block's first statement fails ...
            10: "  s4 = i +; s4 = ]",  # ... two on one line, one per statement ...
            14: "    s1, s2, s3 s4 = random 1..99",  # ... one in the nested corrupt block ...
            22: "mlp 0, 1 2, 3",  # ... and the statements after the blocks are read at top level again
        }
    )
    assert places(errors_of(text)) == [(7, 8), (10, 11), (10, 18), (14, 16), (22, 10)]


def test_a_block_left_open_ends_where_the_next_block_starts():
    """The second block is read as a block of its own, so its mistakes are found too."""
    text = with_lines({16: "", 17: 'prompts more {\n  template "{s1}"\n  s1 = )\n}'})
    assert places(errors_of(text)) == [(4, 16), (19, 8)]


def test_a_syntax_error_hides_the_meaning_errors(write_spec, capsys):
    text = with_lines({18: "metric logit_difff(answer, wrong)", 22: "mlp 0, 1 2, 3"})
    assert main(["check", "--no-tokenize", "--format", "json", str(write_spec(text))]) == 2
    [result] = json.loads(capsys.readouterr().out)["files"]
    assert [(e["stage"], e["line"]) for e in result["errors"]] == [("syntax", 22)]


def three_mistakes(write_spec) -> Path:
    return write_spec(with_lines({line: broken for line, broken, _ in THREE_MISTAKES}))


def test_check_exits_2_and_shows_every_error(write_spec, capsys):
    path = three_mistakes(write_spec)
    assert main(["check", "--no-tokenize", str(path)]) == 2
    out = capsys.readouterr().out
    for line, _, column in THREE_MISTAKES:
        assert f"{path}:{line}:{column}: syntax error:" in out
    assert "3 error(s)" in out


def test_check_json_lists_every_error(write_spec, capsys):
    path = three_mistakes(write_spec)
    assert main(["check", "--no-tokenize", "--format", "json", str(path)]) == 2
    [result] = json.loads(capsys.readouterr().out)["files"]
    assert not result["ok"]
    assert [(e["stage"], e["line"], e["column"]) for e in result["errors"]] == [("syntax", line, column) for line, _, column in THREE_MISTAKES]
    assert len(result["rendered"]) == 3


@pytest.mark.parametrize("command", ["plan", "fmt"])
def test_plan_and_fmt_show_every_error(command, write_spec, capsys):
    path = three_mistakes(write_spec)
    assert main([command, str(path)]) == 2
    captured = capsys.readouterr()
    for line, _, column in THREE_MISTAKES:
        assert f"{path}:{line}:{column}: syntax error:" in captured.out + captured.err


def test_verify_json_lists_every_error(write_spec, capsys):
    path = three_mistakes(write_spec)
    assert main(["verify", "--format", "json", str(path)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [(e["line"], e["column"]) for e in report["errors"]] == [(line, column) for line, _, column in THREE_MISTAKES]


def test_a_flood_of_syntax_errors_is_cut_to_the_first_hundred(write_spec, capsys):
    """One 50 KB line of 6,250 broken statements: each is an error, the first 100 are kept."""
    path = write_spec(with_lines({7: "  s1 = i" + "; s1 = )" * 6_250}))
    assert main(["check", "--no-tokenize", "--format", "json", str(path)]) == 2
    [result] = json.loads(capsys.readouterr().out)["files"]
    assert len(result["errors"]) == 101 and result["errors"][-1]["message"] == "... and 6150 more errors"
    assert {e["stage"] for e in result["errors"]} == {"syntax"}


def test_an_unclosed_brace_is_reported_where_it_was_opened():
    """`metric` may stand inside a prompts block, so a missing `}` was first noticed at `ablate`,
    five lines below, as "unexpected 'ablate'"; the error now points at the `{` left open."""
    text = 'circuitlang 1\ncircuit c on "organism:seqcont"\nprompts p {\n  template "1 2 {a}"\n  a = 4\n'
    text += "metric logit_diff(answer, wrong)\n\nablate zero\n"
    [error] = errors_of(text)
    assert (error.span.line, error.span.column) == (3, 11)
    assert error.message == "this '{' is not closed before 'ablate' on line 8" and "close the block with '}'" in error.hint
    [at_end] = errors_of(text.replace("ablate zero\n", ""))
    assert (at_end.span.line, at_end.message) == (3, "this '{' is not closed by the end of the file")
