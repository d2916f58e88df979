"""Hostile specs: each input that once crashed the front end (or could) is a located error now.

One row per cause, applied to a shipped spec: the error class, its line, the gist of its message,
and what `check --no-tokenize`, `plan` and `fmt` exit with, run as the console script runs them
(exit 2 for a spec error, never a traceback). fmt only parses, so a meaning error leaves it at 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from circuitlang import cli
from circuitlang.data.datasets import expand_all
from circuitlang.dsl.parser import parse
from circuitlang.errors import CircuitlangError, LimitError, SpecError, SyntaxErrorInSpec, flatten
from circuitlang.ir import models as ir
from circuitlang.ir.circuit import runs_forward
from circuitlang.ir.lower import load_spec
from tests.conftest import SPECS

BASE = (SPECS / "organism_incr_digits.circ").read_text(encoding="utf-8")
UNKNOWN_MODEL = '"someorg/unknown"'  # a hub name without a known shape: layers are not checked against one


def replaced(old: str, new: str, text: str = BASE) -> Callable[[], bytes]:
    assert old in text, old
    return lambda: text.replace(old, new, 1).encode("utf-8")


def latin1_comment() -> bytes:
    return BASE.replace("# Found by", "# Found by caf\u00e9", 1).encode("latin-1")


def lone_surrogate_in_template() -> bytes:
    return BASE.encode("utf-8").replace(b'template "{s1}', b'template "\xed\xa0\x80{s1}', 1)


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[], bytes]
    error: type[CircuitlangError] | None  # None: the spec is valid
    line: int = 0
    gist: str = ""
    fmt_parses: bool = False  # the mistake is in the meaning: fmt formats it


CASES = (
    Hostile(
        "integer of 4301 digits",
        replaced("for i in 1..95", "for i in 1.." + "9" * 4301),
        SyntaxErrorInSpec,
        12,
        "a number with more than 4300 digits",
    ),
    Hostile("300 `+` terms", replaced("s2 = i + 1\n", "s2 = i" + " + 1" * 300 + "\n"), SyntaxErrorInSpec, 14, "nests more than 200 levels deep"),
    Hostile(
        "30,000 `+` terms", replaced("s2 = i + 1\n", "s2 = i" + " + 1" * 30_000 + "\n"), SyntaxErrorInSpec, 14, "nests more than 200 levels deep"
    ),
    Hostile(
        "300 nested parentheses",
        replaced("s2 = i + 1\n", "s2 = " + "(" * 300 + "i" + ")" * 300 + "\n"),
        SyntaxErrorInSpec,
        14,
        "nests more than 200 levels deep",
    ),
    Hostile(
        "300 unary minus signs", replaced("s2 = i + 1\n", "s2 = " + "-" * 300 + "i\n"), SyntaxErrorInSpec, 14, "nests more than 200 levels deep"
    ),
    Hostile(
        "huge layer in `mlp N`",
        replaced("mlp 0, 1, 2, 3", "mlp 0, 1, 2, 3, 99999999999999999999999999"),
        SpecError,
        29,
        "layer 99999999999999999999999999 does not exist",
        fmt_parses=True,
    ),
    Hostile(
        "huge layer in `mlp N`, model shape unknown",
        replaced("mlp 0, 1, 2, 3", "mlp 0, 1, 2, 3, 99999999999999999999999999", BASE.replace('"organism:seqcont"', UNKNOWN_MODEL)),
        SpecError,
        29,
        "is deeper than any model",
        fmt_parses=True,
    ),
    Hostile(
        "layer range of 10**12 layers, model shape unknown",
        replaced("mlp 0, 1, 2, 3", "mlp 0..1000000000000", BASE.replace('"organism:seqcont"', UNKNOWN_MODEL)),
        SpecError,
        29,
        "layer 1000000000000 is deeper than any model",
        fmt_parses=True,
    ),
    Hostile(
        "huge head layer in a role",
        replaced("0.4 q end k s3", "18446744073709551616.4 q end k s3"),
        SpecError,
        28,
        "layer 18446744073709551616 does not exist",
        fmt_parses=True,
    ),
    Hostile("loop range ends past 2**63", replaced("for i in 1..95", "for i in 9223372036854775807..9223372036854775809"), None),
    Hostile(
        "random range of 2**64 values",
        replaced("random 1..99", "random 1..18446744073709551616"),
        LimitError,
        20,
        "has 18446744073709551616 values",
        fmt_parses=True,
    ),
    Hostile(
        "batch size of 141 digits",
        replaced("expect faithfulness >= 0.9", "expect faithfulness >= 0.9\nset batch_size = 1" + "0" * 140),
        SpecError,
        46,
        "batch_size must be at most 2**63 - 1",
        fmt_parses=True,
    ),
    Hostile(
        "completeness_samples of 2**63 - 1",
        replaced("expect faithfulness >= 0.9", "expect faithfulness >= 0.9\nset completeness_samples = 9223372036854775807"),
        SpecError,
        46,
        "completeness_samples must be at most 1,000",
        fmt_parses=True,
    ),
    Hostile("NUL byte in the model path", replaced('"organism:seqcont"', '"./a\x00b"'), SyntaxErrorInSpec, 8, "a NUL character in a string"),
    Hostile(
        "NUL byte in a data file path",
        replaced("  for i in 1..95\n", '  for i in 1..95\n  from "rows\x00.csv"\n'),
        SyntaxErrorInSpec,
        13,
        "a NUL character in a string",
    ),
    Hostile(
        "statement keyword as a name right after `{`",
        replaced("corrupt random {\n    s1, s2, s3, s4 = random 1..99\n  }", "corrupt random { role = random 1..99 }"),
        SyntaxErrorInSpec,
        19,
        "'role' is a statement keyword and cannot name a slot or variable",
    ),
    Hostile(
        "statement keyword as a variable",
        replaced("s2 = i + 1\n", "s2 = corrupt + 1\n"),
        SyntaxErrorInSpec,
        14,
        "'corrupt' is a statement keyword",
    ),
    Hostile("latin-1 byte", latin1_comment, SpecError, 2, "byte 0xe9 is not UTF-8 text"),
    Hostile("lone surrogate bytes", lone_surrogate_in_template, SpecError, 11, "byte 0xed is not UTF-8 text"),
    Hostile(
        "organism name longer than a file name may be",
        replaced('"organism:seqcont"', '"organism:' + "x" * 300 + '"'),
        SpecError,
        8,
        "no shipped organism named",
        fmt_parses=True,
    ),
    Hostile(
        "organism name that is a path",
        replaced('"organism:seqcont"', '"organism:../../../../tmp/h/evil"'),
        SpecError,
        8,
        "no shipped organism named '../../../../tmp/h/evil'",
        fmt_parses=True,
    ),
    Hostile("spec over 256 KB", lambda: (BASE + "# " + "x" * 300_000 + "\n").encode("utf-8"), SpecError, 1, "a spec file may hold"),
    Hostile(
        "loop of 10**12 values with assignments",
        replaced("for i in 1..95", "for i in 1..1000000000000"),
        LimitError,
        12,
        "make more than 100,000 prompts",
        fmt_parses=True,
    ),
    Hostile("byte-order mark", lambda: b"\xef\xbb\xbf" + BASE.encode("utf-8"), None),
    Hostile("CRLF line ends", lambda: BASE.replace("\n", "\r\n").encode("utf-8"), None),
)


def written(case: Hostile, folder: Path) -> Path:
    path = folder / "hostile.circ"
    path.write_bytes(case.make())
    return path


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_error_has_its_class_line_and_message(case, tmp_path):
    path = written(case, tmp_path)
    if case.error is None:
        expand_all(load_spec(path))
        return
    with pytest.raises(CircuitlangError) as raised:
        expand_all(load_spec(path))
    first = flatten([raised.value])[0]
    assert isinstance(first, case.error), repr(first)
    assert first.span is not None and (first.span.path, first.span.line) == (str(path), case.line), first.span
    assert case.gist in first.message
    assert first.hint


@pytest.mark.parametrize(
    "case, command", [pytest.param(case, command, id=f"{case.name}-{command}") for case in CASES for command in ("check", "plan", "fmt")]
)
def test_the_commands_exit_2_without_a_traceback(case, command, tmp_path, monkeypatch, capsys):
    path = written(case, tmp_path)
    argv = ["check", "--no-tokenize", str(path)] if command == "check" else [command, str(path)]
    monkeypatch.setattr(sys, "argv", ["circuitlang", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.run()
    output = capsys.readouterr()
    refused = case.error is not None and not (command == "fmt" and case.fmt_parses)
    assert exited.value.code == (2 if refused else 0), output.err[-3000:]
    assert "Traceback" not in output.out + output.err
    if refused:
        assert f"{path}:{case.line}:" in output.out + output.err


def test_fmt_output_of_a_valid_hostile_spec_is_canonical(tmp_path):
    """A byte-order mark and CRLF line ends are dropped by fmt, whose output is a fixed point."""
    path = tmp_path / "crlf.circ"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.replace("\n", "\r\n").encode("utf-8"))
    formatted = cli.format_spec(parse(path.read_text(encoding="utf-8"), str(path)))
    assert "\r" not in formatted and not formatted.startswith("\ufeff")
    assert cli.format_spec(parse(formatted, str(path))) == formatted


def test_residual_order_of_layers_beyond_any_float():
    """Edges between nodes of layers past 2**1024 once overflowed a float conversion."""
    deep = ir.MlpNode(layer=10**400)
    deeper_head = ir.HeadNode(layer=10**400 + 1, head=0)
    assert runs_forward(deep, deeper_head) and runs_forward(deep, ir.LOGITS)
    assert not runs_forward(deeper_head, deep)


def test_thousands_of_errors_are_cut_to_the_first_hundred_and_long_lines_to_their_place(tmp_path, capsys):
    """12,500 "assigned twice" errors on one 50 KB line once rendered the whole line 12,500 times
    (over a gigabyte of JSON); now the first 100 are kept, the rest counted, each line clipped."""
    path = tmp_path / "flood.circ"
    path.write_text(BASE.replace("  s1 = i\n", "  s1" + ", s1" * 12_500 + " = i\n", 1))
    assert cli.main(["check", "--no-tokenize", "--format", "json", str(path)]) == 2
    import json

    [result] = json.loads(capsys.readouterr().out)["files"]
    assert len(result["errors"]) == 101 and result["errors"][-1]["message"] == "... and 12400 more errors"
    assert max(len(text) for text in result["rendered"]) < 1000
