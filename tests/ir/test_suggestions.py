"""A misspelt name is answered with the nearest one the spec defines."""

from __future__ import annotations

import pytest

from circuitlang.errors import flatten
from circuitlang.ir.lower import load_spec
from tests.conftest import SPECS

BASE = (SPECS / "organism_incr_digits.circ").read_text()


@pytest.mark.parametrize(
    "old, new, hint",
    [
        ("0.2 q end", "0.2 q ed", "did you mean 'end'? positions there:"),
        ("0.4 q end k s3", "0.4 q end k s33", "did you mean 's3'? positions there:"),
        ("    s1, s2, s3, s4 = random 1..99", "    s1, s2, s3, sx4 = random 1..99", "did you mean 's4'? slots:"),
        ("  s2 = i + 1\n", "  s2 = ii + 1\n", "did you mean 'i'? names defined here:"),
        ("expect faithfulness >= 0.9", 'expect "end reads s3 (q ed)" minimality >= 0.0', "did you mean 'end reads s3 (q end)'? roles:"),
        ("  s2 = i + 1\n", "  s2 = lenn(i)\n", "did you mean 'len'? functions:"),
    ],
)
def test_the_hint_names_the_nearest_name(tmp_path, old, new, hint):
    assert old in BASE
    path = tmp_path / "typo.circ"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(Exception) as raised:
        load_spec(path)
    hints = [error.hint for error in flatten([raised.value])]
    assert any(h and h.startswith(hint) for h in hints), hints


def test_no_guess_when_nothing_is_close(tmp_path):
    path = tmp_path / "typo.circ"
    path.write_text(BASE.replace("0.2 q end", "0.2 q zzzzzz", 1))
    with pytest.raises(Exception) as raised:
        load_spec(path)
    assert all("did you mean" not in (e.hint or "") for e in flatten([raised.value]))
