"""Rendered prompts: text plus the character span of every slot, taken from the template.

A slot's position is known from where the template put it, never by searching the text for the
value (searching finds the first of two equal numbers: the bug this design rules out).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from circuitlang.data.values import Scalar, Value


@dataclass(frozen=True)
class Prompt:
    """One prompt. `slot_spans` maps slot name -> (start, end) character offsets in `text`."""

    index: int
    label: str  # e.g. "prompt #12 of digits (i=12)", used in every message about it
    template: int  # index into the dataset's templates
    text: str
    slot_spans: tuple[tuple[str, tuple[int, int]], ...]
    values: tuple[tuple[str, Scalar], ...]  # slot values as rendered
    fields: tuple[tuple[str, Value], ...]  # answer fields (a string or a set of strings)

    def span_of(self, slot: str) -> tuple[int, int]:
        return dict(self.slot_spans)[slot]

    def field(self, name: str) -> Value:
        return dict(self.fields)[name]


def render(template: str, values: dict[str, Scalar]) -> tuple[str, tuple[tuple[str, tuple[int, int]], ...]]:
    """Fill `{slot}` placeholders (`{{`/`}}` are literal braces) and record each slot's span."""
    pieces: list[str] = []
    spans: list[tuple[str, tuple[int, int]]] = []
    length = 0
    for text, is_slot in _pieces(template):
        if is_slot:
            value = str(values[text])
            spans.append((text, (length, length + len(value))))
            text = value
        pieces.append(text)
        length += len(text)
    return "".join(pieces), tuple(spans)


def template_slots(template: str) -> tuple[str, ...]:
    """Slot names of a (valid) template, in order."""
    return tuple(text for text, is_slot in _pieces(template) if is_slot)


@lru_cache(maxsize=1024)
def _pieces(template: str) -> tuple[tuple[str, bool], ...]:
    """The template as (text, is a slot name) in order, literal braces unescaped. A prompt set
    renders one template for thousands of prompts: it is read once."""
    pieces: list[tuple[str, bool]] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith(("{{", "}}"), i):
            literal.append(template[i])
            i += 2
        elif template[i] == "{":
            close = template.index("}", i)
            if literal:
                pieces.append(("".join(literal), False))
                literal = []
            pieces.append((template[i + 1 : close], True))
            i = close + 1
        else:
            literal.append(template[i])
            i += 1
    if literal:
        pieces.append(("".join(literal), False))
    return tuple(pieces)
