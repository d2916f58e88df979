"""Corruptions: from one clean prompt's slot values to its paired corrupt slot values.

A corrupt prompt keeps the clean prompt's template (so positions line up) and its answer fields
(the metric always scores the clean answer); only slot values change.
"""

from __future__ import annotations

from typing import Callable

from circuitlang.data.values import Env, Value, draw_distinct, evaluate
from circuitlang.errors import DataError
from circuitlang.ir import models as ir
from circuitlang.data.generators import IOI_VERSIONS

SlotValues = dict[str, Value]
FileRow = dict[str, Value]  # a row of a corrupt file, as data.files reads it
Corrupter = Callable[[ir.Corruption, SlotValues, tuple[str, ...], Env, FileRow | None], SlotValues]


def apply_assignments(assignments: tuple[ir.Assignment, ...], env: Env) -> None:
    """Evaluate assignments in order into `env.variables` (shared by prompts and corruptions)."""
    for assignment in assignments:
        value = assignment.value
        if isinstance(value, ir.RandomE) and value.distinct:
            for target, drawn in zip(assignment.targets, draw_distinct(value, len(assignment.targets), env)):
                env.variables[target] = drawn
            continue
        for target in assignment.targets:
            env.variables[target] = evaluate(value, env)


def _random(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    apply_assignments(corruption.assignments, env)
    return {slot: env.variables[slot] for slot in slots}


def _repeat_last(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    if len(slots) < 2:
        raise DataError(f"{env.label}: repeat_last needs a template with two or more slots", corruption.span, "use random or a file corruption")
    return {**values, slots[-1]: values[slots[-2]]}


def _repeat_all(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    return {**values, **{slot: values[slots[0]] for slot in slots}}


def _swap(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    a, b = (str(arg) for arg in corruption.args)
    return {**values, a: values[b], b: values[a]}


def _file(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    assert row is not None  # expansion pairs every clean prompt with a row before calling this
    missing = [slot for slot in slots if slot not in row]
    if missing:
        raise DataError(
            f"{env.label}: corrupt file row has no column {missing[0]!r}",
            corruption.span,
            f"corrupt rows need a column per slot: {', '.join(slots)}",
        )
    return {**values, **{slot: row[slot] for slot in slots}}


def _abc(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    """Wang et al.'s ABC dataset: io, s1 and s2 become three distinct names unrelated to the clean ones,
    drawn from the names the clean prompts were drawn from."""
    used = {values.get("io"), values.get("s1")}
    pool = IOI_VERSIONS[str(env.generator.get("version", "compact"))].names
    io, s1, s2 = env.rng.sample([n for n in pool if n not in used], 3)
    return {**values, "io": io, "s1": s1, "s2": s2}


def _zero_one(corruption: ir.Corruption, values: SlotValues, slots: tuple[str, ...], env: Env, row: FileRow | None) -> SlotValues:
    """Hanna et al.'s 01 dataset: the start year becomes XX01, so no year is ruled out."""
    return {**values, "yy": "01"}


CORRUPTERS: dict[str, Corrupter] = {
    "random": _random,
    "repeat_last": _repeat_last,
    "repeat_all": _repeat_all,
    "swap": _swap,
    "file": _file,
    "abc": _abc,
    "01": _zero_one,
}
