"""`verify --look`: what the HTML page shows beside the verdict, for each prompt set, so that a
reader looks before trusting a claim: the mean attention pattern of every head of the circuit
(positions named as the spec names them) and the logit lens with each node's direct contribution.

These are readings of the clean run, not verification steps: they are not in the plan, not
cached, and they change no number of the report.
"""

from __future__ import annotations

from circuitlang.engine.session import Session
from circuitlang.ir import models as ir
from circuitlang.results.lens import Look
from circuitlang.workflows.attention import AttentionRequest, attention
from circuitlang.workflows.lens import CannotRead, LensRequest, lens


def look(session: Session) -> tuple[Look, ...]:
    heads = tuple((member.node.layer, member.node.head) for member in session.spec.circuit.nodes if isinstance(member.node, ir.HeadNode))
    return tuple(_look_at(session, prompt_set.name, heads) for prompt_set in session.spec.prompt_sets)


def _look_at(session: Session, prompt_set: str, heads: tuple[tuple[int, int], ...]) -> Look:
    notes: list[str] = []
    patterns = read = None
    if heads:
        try:
            patterns = attention(session, AttentionRequest(prompt_set, tuple(dict.fromkeys(heads))))
        except CannotRead as error:
            notes.append(f"attention: {error}")
    try:
        read = lens(session, LensRequest(prompt_set))
    except CannotRead as error:
        notes.append(f"lens: {error}")
    return Look(prompt_set, patterns, read, "; ".join(notes))
