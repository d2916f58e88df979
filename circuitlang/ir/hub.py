"""Hugging Face hub names as TransformerLens knows them, without importing torch or TransformerLens.

`on "gpt2-small"` must mean what it means in TransformerLens at check time too, where neither
torch nor TransformerLens may be installed. So circuitlang ships a copy of TransformerLens's table
of official model names and their aliases (`hub_models.json`, next to this module) and resolves
names against it the way `transformer_lens.supported_models.get_official_model_name` does:
case-insensitively, an official name resolving to itself.

`python -m circuitlang.ir.hub` rewrites the shipped table from the installed TransformerLens;
a test checks that the shipped copy equals what the installed TransformerLens gives.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

TABLE_FILE = "hub_models.json"


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    text = resources.files("circuitlang.ir").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def official_names() -> list[str]:
    """TransformerLens's official (Hugging Face) model names, in its order."""
    return list(_table()["official_names"])


def aliases() -> dict[str, list[str]]:
    """Official name -> TransformerLens's short aliases for it (`gpt2` -> [`gpt2-small`])."""
    return {name: list(names) for name, names in _table()["aliases"].items()}


@lru_cache(maxsize=1)
def _alias_map() -> dict[str, str]:
    """Lower-cased alias or official name -> official name, as TransformerLens builds it (an
    official name written later wins over an alias of the same spelling)."""
    table = aliases()
    mapping: dict[str, str] = {}
    for official in official_names():
        for alias in table.get(official, []):
            mapping[alias.lower()] = official
        mapping[official.lower()] = official
    return mapping


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """Lower-cased name -> the name as TransformerLens writes it, for suggestions."""
    table = aliases()
    written = [*official_names(), *(alias for official in official_names() for alias in table.get(official, []))]
    return {name.lower(): name for name in reversed(written)}


def official_hub_name(name: str) -> str | None:
    """The official name TransformerLens loads for `name` (an alias or an official name, any
    case); None when TransformerLens does not know the name."""
    return _alias_map().get(name.lower())


def nearest_hub_names(name: str, n: int = 3) -> list[str]:
    """Up to `n` known names (official or alias) closest to `name`, closest first; a name with an
    `org/` TransformerLens does not use is also compared without it."""
    spellings = _spellings()
    candidates = list(spellings)
    close = difflib.get_close_matches(name.lower(), candidates, n=n, cutoff=0.6)
    if not close and "/" in name:
        close = difflib.get_close_matches(name.rsplit("/", 1)[1].lower(), candidates, n=n, cutoff=0.6)
    return [spellings[match] for match in close]


# ---- regenerating the shipped table ---------------------------------------------------------


def table_from_transformer_lens() -> dict[str, Any]:
    """The table as the installed TransformerLens defines it (imports TransformerLens)."""
    from transformer_lens import supported_models

    names = list(supported_models.OFFICIAL_MODEL_NAMES)
    table = supported_models.MODEL_ALIASES
    return {"official_names": names, "aliases": {name: list(table[name]) for name in names if name in table}}


def write_table(path: Path | None = None) -> Path:
    """Write TransformerLens's table to `path` (default: the shipped copy) and return the path."""
    target = path or Path(__file__).with_name(TABLE_FILE)
    target.write_text(json.dumps(table_from_transformer_lens(), indent=1) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":
    print(f"wrote {write_table()}")
