"""Rendered prompts: text plus the character span of every slot, taken from the template.

A slot's position is known from where the template put it, never by searching the text for the
value (searching finds the first of two equal numbers: the bug this design rules out).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    length, i = 0, 0
    while i < len(template):
        if template.startswith(("{{", "}}"), i):
            pieces.append(template[i])
            length, i = length + 1, i + 2
            continue
        if template[i] == "{":
            close = template.index("}", i)
            name = template[i + 1:close]
            text = str(values[name])
            spans.append((name, (length, length + len(text))))
            pieces.append(text)
            length, i = length + len(text), close + 1
            continue
        pieces.append(template[i])
        length, i = length + 1, i + 1
    return "".join(pieces), tuple(spans)


def template_slots(template: str) -> tuple[str, ...]:
    """Slot names of a (valid) template, in order."""
    rendered_names: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith(("{{", "}}"), i):
            i += 2
        elif template[i] == "{":
            close = template.index("}", i)
            rendered_names.append(template[i + 1:close])
            i = close + 1
        else:
            i += 1
    return tuple(rendered_names)
