"""Misspelt commands, options and choices get a "did you mean" (commands/usage.py)."""

from __future__ import annotations

import pytest

from circuitlang.cli import main
from circuitlang.errors import EXIT_SPEC_ERROR


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["verfy", "x.circ"], "did you mean verify?"),
        (["verify", "--formt", "json", "x.circ"], "did you mean --format?"),
        (["verify", "--format", "jsn", "x.circ"], "did you mean json?"),
        (["check", "--no-tokenise", "x.circ"], "did you mean --no-tokenize?"),
        (["patch", "-o", "out", "--reciever", "9.1", "x.circ"], "did you mean --receiver?"),
    ],
)
def test_a_misspelling_gets_what_was_meant(argv, meant, capsys):
    assert main(argv) == EXIT_SPEC_ERROR  # a usage error, as before
    error = capsys.readouterr().err
    assert meant in error and "Traceback" not in error


def test_two_misspelt_options_are_each_named(capsys):
    main(["check", "--no-tokenise", "--formatt", "json", "x.circ"])
    assert "did you mean --no-tokenize (for --no-tokenise), --format (for --formatt)?" in capsys.readouterr().err


def test_nothing_close_gets_no_guess(capsys):
    main(["xyzzy"])
    error = capsys.readouterr().err
    assert "invalid choice: 'xyzzy'" in error and "did you mean" not in error
