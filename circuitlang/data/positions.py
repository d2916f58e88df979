"""Named positions -> token indices, per prompt, from the template's slot spans.

A slot's position is the token holding the slot's last character. The tokenizer's character
offsets say which token that is; the slot must end exactly where that token ends, otherwise the
tokenizer merged the slot with its neighbour and the position would be ambiguous (an error naming
the prompt and the slot). `end` is the last prompt token, `bos` the first.
"""

from __future__ import annotations

from typing import Sequence

from circuitlang.data.prompts import Prompt, template_slots
from circuitlang.errors import DataError
from circuitlang.ir import models as ir

Offsets = Sequence[tuple[int, int]]  # (start, end) character offsets of each token


class SlotError(DataError):
    """A slot that does not end on a token boundary; `slot` names it."""

    def __init__(self, slot: str, message: str, hint: str) -> None:
        super().__init__(message, None, hint)
        self.slot = slot


def slot_token_indices(prompt: Prompt, offsets: Offsets, first_token: int = 0) -> dict[str, int]:
    """Token index of every slot, `end` and `bos`. `first_token` skips a prepended BOS token."""
    positions = {"bos": 0, "end": len(offsets) - 1}
    for slot, (start, stop) in prompt.slot_spans:
        positions[slot] = _token_ending_at(prompt, slot, start, stop, offsets, first_token)
    return positions


def _token_ending_at(prompt: Prompt, slot: str, start: int, stop: int, offsets: Offsets, first_token: int) -> int:
    for index in range(first_token, len(offsets)):
        token_start, token_end = offsets[index]
        if token_start < stop <= token_end:
            if token_end != stop:
                piece = prompt.text[token_start:token_end]
                raise SlotError(
                    slot,
                    f"{prompt.label}: slot '{slot}' ends inside the token {piece!r} in {prompt.text!r}",
                    "the tokenizer merges the slot with the text after it; add a space or "
                    "change the template so each slot ends on a token boundary",
                )
            return index
    raise SlotError(slot, f"{prompt.label}: slot '{slot}' is not covered by any token in {prompt.text!r}", "check the tokenizer's offsets")


def check_positions_in_templates(spec: ir.Spec, templates: dict[str, tuple[str, ...]]) -> list[DataError]:
    """Every position the circuit, a claim or a hypothesis's carrier names must exist in *each*
    template of each prompt set it applies to, and every range must run forwards there (templates
    may order slots differently)."""
    problems: list[DataError] = []
    uses: list[tuple[ir.Position, str | None]] = [(p, None) for member in spec.circuit.nodes for p in (*(member.q or ()), *(member.k or ()))]
    for claim in spec.expectations:
        if isinstance(claim, ir.AttendsExpectation):
            uses.extend((p, claim.on) for p in (*claim.queries, *claim.keys))
    for hypothesis in spec.hypotheses:
        written = dict.fromkeys(p for carrier in hypothesis.carriers for site in carrier.sites for p in site.positions)
        uses.extend((p, hypothesis.prompt_set) for p in written)  # a carrier's nodes share its positions: each once
    for position, only in uses:
        for name, set_templates in templates.items():
            if only is None or only == name:
                problems.extend(_position_problems(position, name, set_templates))
    return problems


def _position_problems(position: ir.Position, set_name: str, templates: tuple[str, ...]) -> list[DataError]:
    problems = []
    for number, template in enumerate(templates):
        slots = template_slots(template)
        ends = (position.start, position.stop) if isinstance(position, ir.PositionRange) else (position,)
        missing = [ref.name for ref in ends if ref.name not in slots and ref.name not in ("end", "bos")]
        where = f"template #{number} of prompt set '{set_name}' ({template!r})"
        if missing:
            problems.append(
                DataError(
                    f"position '{missing[0]}' is not a slot of {where}",
                    position.span,
                    "a position must exist in every template of the prompt sets it is used on",
                )
            )
        elif isinstance(position, ir.PositionRange) and slots.index(position.start.name) > slots.index(position.stop.name):
            problems.append(
                DataError(f"range {position} runs backwards in {where}", position.span, f"slots there, in order: {', '.join(slots)}")
            )
    return problems


def expand_positions(positions: Sequence[ir.Position], template: str) -> tuple[tuple[str, int], ...]:
    """(name, offset) pairs for one template; a range `a..b` is every slot from a to b in order."""
    slots = template_slots(template)
    expanded: list[tuple[str, int]] = []
    for position in positions:
        if isinstance(position, ir.PositionRange):
            first, last = slots.index(position.start.name), slots.index(position.stop.name)
            expanded.extend((slot, 0) for slot in slots[first : last + 1])
        else:
            expanded.append((position.name, position.offset))
    return tuple(dict.fromkeys(expanded))


def token_positions(positions: Sequence[ir.Position], prompt: Prompt, template: str, named: dict[str, int], n_tokens: int) -> tuple[int, ...]:
    """Token indices for a position list in one prompt, with offsets checked against its length."""
    indices = []
    for name, offset in expand_positions(positions, template):
        index = named[name] + offset
        if not 0 <= index < n_tokens:
            raise DataError(
                f"{prompt.label}: position {name}{offset:+d} falls outside the prompt ({n_tokens} tokens)", None, "use a smaller offset"
            )
        indices.append(index)
    return tuple(sorted(set(indices)))
