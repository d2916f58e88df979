"""Did-you-mean for names a spec gets wrong: slots, positions, roles, variables, lists, functions."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """ "did you mean 'x'? " for the closest candidate (difflib's ratio at least 0.6), else ""."""
    nearest = difflib.get_close_matches(name, [c for c in candidates if c != name], n=1, cutoff=0.6)
    return f"did you mean '{nearest[0]}'? " if nearest else ""
