"""A misspelt option value of `discover` or `patch` is answered in one line: the value, the nearest
valid one when one is close, and the valid ones; exit 2, before any model loads."""

from __future__ import annotations

import pytest

from circuitlang.cli import main
from tests.conftest import SPECS

SPEC = str(SPECS / "organism_incr_digits.circ")


def _error_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "choose from" in line or "expected" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "option, wrong, nearest, choices",
    [
        ("--method", "prun", "prune", "prune, path-patching, acdc, eap, eap-ig"),
        ("--order", "backwrd", "backward", "both, fb, bf, forward, backward"),
        ("--score", "kll", "kl", "kl, metric"),
        ("--prompts", "incr_digit", "incr_digits", "incr_digits"),
    ],
)
def test_discover_suggests_the_nearest_value(tmp_path, capsys, option, wrong, nearest, choices):
    method = [] if option == "--method" else ["--method", "prune"]
    line = _error_line(["discover", SPEC, *method, option, wrong, "-o", str(tmp_path / "found.circ")], capsys)
    assert f"'{wrong}'" in line and f"did you mean '{nearest}'?" in line and line.endswith(choices)


@pytest.mark.parametrize(
    "option, wrong, nearest, choices",
    [
        ("--kind", "head", "heads", "heads, heads-by-position, mlps, path"),
        ("--image", "pgn", "png", "png, svg"),
        ("--prompts", "incr_digit", "incr_digits", "incr_digits"),
        ("--receiver", "logit", "logits", "logits, L.H (q, k and v), L.H:q or L.H:k,v, or mlpL"),
        ("--receiver", "mpl 2", "mlp 2", "logits, L.H (q, k and v), L.H:q or L.H:k,v, or mlpL"),
        ("--receiver", "2.1:qq", "2.1:q", "logits, L.H (q, k and v), L.H:q or L.H:k,v, or mlpL"),
    ],
)
def test_patch_suggests_the_nearest_value(tmp_path, capsys, option, wrong, nearest, choices):
    line = _error_line(["patch", SPEC, "-o", str(tmp_path / "out"), option, wrong], capsys)
    assert f"'{wrong}'" in line and f"did you mean '{nearest}'?" in line and line.endswith(choices)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, option", [("discover", "--method"), ("patch", "--kind"), ("patch", "--receiver")])
def test_nothing_close_gets_the_choices_without_a_guess(tmp_path, capsys, command, option):
    method = ["--method", "prune"] if command == "discover" and option != "--method" else []
    line = _error_line([command, SPEC, *method, option, "zzzzzz", "-o", str(tmp_path / "out.circ")], capsys)
    assert "'zzzzzz'" in line and "did you mean" not in line
