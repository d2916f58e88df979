"""Mutations of JSON documents (graph files, config.json, tokenizer.json, JSONL rows): first on the
parsed value (a field replaced by a value of another type or at a numeric edge, deleted, renamed,
duplicated, nested deep), then, sometimes, on the serialized bytes. Text that no Python value
serializes to (duplicated keys, numbers of 5,000 digits, `1e999`, nesting 100,000 deep, `{},{},...`
by the million) enters through placeholders replaced after `json.dumps`.
"""

from __future__ import annotations

import json
import random
from typing import Any, Sequence

from fuzz.mutate import (
    byte_order_mark,
    delete_line,
    delete_span,
    duplicate_line,
    flip_bits,
    line_endings,
    nul_byte,
    replace_byte,
    shuffle_lines,
    truncate,
    unicode_text,
)

# Values of the wrong type, or at the edges of machine words and of floats.
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**30,
    1e308,
    -0.0,
    0.5,
    1e-320,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x",
    "\x00",
    "\ud800",
    "a" * 10_000,
    [],
    {},
    [1, 2],
    {"a": 1},
    [[[]]],
    "a0.h99",
    "m-1",
    "logits",
    "input",
)
# Raw JSON text for what json.dumps cannot write.
RAW_TEXTS = (
    "9" * 4301,
    "9" * 20_000,
    "-" + "9" * 5000,
    "1e999",
    "-1e999",
    "1" + "0" * 400 + ".5",
    "NaN",
    "Infinity",
    "-Infinity",
    "1E400",
    "0.0000000000000000000000000001",
    "00",
    "+1",
    ".5",
    "0x10",
    '"\\ud800"',
    '"\\u0000"',
)
DEPTHS = (100, 1000, 5000, 100_000)
PLACEHOLDER = "\x00fuzz-raw-{}\x00"
BYTE_MUTATIONS = (
    flip_bits,
    replace_byte,
    delete_span,
    unicode_text,
    nul_byte,
    line_endings,
    byte_order_mark,
    truncate,
    duplicate_line,
    delete_line,
    shuffle_lines,
)


def mutate_json(rng: random.Random, value: Any, names: Sequence[str] = (), bytes_share: float = 0.3) -> bytes:
    """`value` (not modified) with one to four structural mutations, serialized; with probability
    `bytes_share`, one to three byte mutations more. `names` are words worth putting in keys."""
    value = json.loads(json.dumps(value))  # a private copy
    raws: list[str] = []
    for _ in range(rng.randint(1, 4)):
        value = _mutate_once(rng, value, names, raws)
    data = _dumps(rng, value, raws)
    if rng.random() < bytes_share:
        for _ in range(rng.randint(1, 3)):
            data = rng.choice(BYTE_MUTATIONS)(rng, data, ())
    return data


def _dumps(rng: random.Random, value: Any, raws: list[str]) -> bytes:
    indent = rng.choice((None, None, 2))
    text = json.dumps(value, indent=indent, ensure_ascii=rng.random() < 0.5)
    for i, raw in enumerate(raws):  # each placeholder is a string: replace it with its quotes
        text = text.replace(json.dumps(PLACEHOLDER.format(i), ensure_ascii=False), raw)
        text = text.replace(json.dumps(PLACEHOLDER.format(i)), raw)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate stays in: bytes that are not UTF-8


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in the document, the root's (None, None) first."""
    found: list[tuple[Any, Any]] = [(None, None)]
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            found.append((node, key))
            stack.append(child)
    return found


def _raw(raws: list[str], text: str) -> str:
    raws.append(text)
    return PLACEHOLDER.format(len(raws) - 1)


def _mutate_once(rng: random.Random, value: Any, names: Sequence[str], raws: list[str]) -> Any:
    container, key = rng.choice(_slots(value))
    if container is None:
        return _new_value(rng, value, raws)
    shape = rng.randrange(8)
    if shape <= 2:
        container[key] = _new_value(rng, container[key], raws)
    elif shape == 3:
        del container[key]
    elif shape == 4 and isinstance(container, dict):  # renamed: an unknown key, or another known one
        container[rng.choice((*names, "", key + "x", key.upper()) if names else (key + "x", ""))] = container.pop(key)
    elif shape == 5 and isinstance(container, dict):  # a duplicated key with another value
        container[_raw(raws, json.dumps(key))] = _new_value(rng, container[key], raws)
    elif shape == 6 and isinstance(container, list):
        container.extend(container[:1] * rng.choice((1, 10, 1000)))
    else:
        container[key] = _raw(raws, _deep(rng))
    return value


def _new_value(rng: random.Random, old: Any, raws: list[str]) -> Any:
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(ODD_VALUES)
    if roll < 0.75:
        return _raw(raws, rng.choice(RAW_TEXTS))
    if roll < 0.85:
        return _raw(raws, _deep(rng))
    if roll < 0.95:
        return _raw(raws, "[" + ",".join(["{}"] * rng.choice((1000, 100_000, 1_000_000))) + "]")  # amplification
    return [old] * rng.choice((2, 100))


def _deep(rng: random.Random) -> str:
    depth = rng.choice(DEPTHS)
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}")))
    return opener * depth + "0" + closer * depth
