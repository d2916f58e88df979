"""The six training tasks, in the exact text formats circuitlang's prompt sets render.

Every example is a clean prompt, its answer (one continuation, or for greater-than the set of
correct years), the wrong answer a spec would compare against, and its natural corruption (used by
specs, never in training). Texts are rendered with circuitlang's own `render` and, for IOI and
greater-than, the templates, names, nouns and ranges of `circuitlang.data.generators`, so a spec
written with the same template (or `generate ioi(...)` / `generate greater_than(...)`) evaluates
the model on exactly the distribution it was trained on. Answers carry the prefix a spec's
`answer_prefix` adds: " " (the default) everywhere except greater-than, where years follow the
century without a space.

Held-out prompts never appear in training, neither as a whole nor as a prefix of a longer text:

- increasing digits: starts i with i % 11 == 6 (6, 17, 28, ..., 94);
- decreasing digits: starts i with i % 11 == 3 (14, 25, ..., 91);
- months: the sequences starting at May and at November (the latter wraps to January);
- number words: the sequences starting at "Three" and at "Eleven";
- greater-than: every (century, year) pair with (century + year) % 10 == 3, for every noun;
- IOI: every unordered name pair {NAMES[a], NAMES[b]} with (a + b) % 7 == 3, in both roles.

A held-out sequence must still be learnable: its last step (s4 -> answer) is a step some training
prompt takes. That is why start 95 is never held out: "95 96 97 98" -> " 99" is the only prompt
whose answer is 99, so without it no training text ever continues 98 with 99.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from circuitlang.data import generators as g
from circuitlang.data.prompts import render
from circuitlang.data.values import Scalar
from circuitlang.ir.stdlib import MONTHS, NAMES, NUMBER_WORDS

SEQ_TEMPLATE = "{s1} {s2} {s3} {s4}"


@dataclass(frozen=True)
class Example:
    task: str
    text: str  # the clean prompt, as circuitlang renders it
    answers: tuple[str, ...]  # correct continuation(s), prefix included; several = a set (greater-than)
    wrong: tuple[str, ...]  # what a spec's `wrong` field holds, prefix included
    corrupt: str  # the natural corruption of the prompt (not used in training)
    slots: tuple[tuple[str, tuple[int, int]], ...]  # slot -> character span, from the template
    label: str  # e.g. "start=12" or "Mary/John"


def _example(
    task: str,
    template: str,
    values: dict[str, Scalar],
    answers: tuple[str, ...],
    wrong: tuple[str, ...],
    corrupt_values: dict[str, Scalar],
    label: str,
) -> Example:
    text, spans = render(template, values)
    corrupt, _ = render(template, {**values, **corrupt_values})
    return Example(task, text, answers, wrong, corrupt, spans, label)


def _sequence(
    task: str,
    members: list[Scalar],
    answer: Scalar,
    rng: random.Random,
    pool: tuple[Scalar, ...],
    label: str,
    first: Callable[[Scalar], Scalar] = lambda x: x,
) -> Example:
    values = {f"s{k + 1}": first(m) if k == 0 else m for k, m in enumerate(members)}
    corrupt = {f"s{k + 1}": first(v) if k == 0 else v for k, v in enumerate(rng.choice(pool) for _ in range(4))}
    return _example(task, SEQ_TEMPLATE, values, (f" {answer}",), (f" {members[-1]}",), corrupt, label)


# ---- the tasks: all prompts of the small ones; a sampler for the big ones ----


def incr_digits(start: int, rng: random.Random) -> Example:
    """ "12 13 14 15" -> " 16", start 1..95 (as specs/incr_digits.circ); corruption: random 1..99."""
    return _sequence("incr_digits", [start + k for k in range(4)], start + 4, rng, tuple(range(1, 100)), f"start={start}")


def decr_digits(start: int, rng: random.Random) -> Example:
    """ "15 14 13 12" -> " 11", start 5..99 (answers 1..95); corruption: random 1..99."""
    return _sequence("decr_digits", [start - k for k in range(4)], start - 4, rng, tuple(range(1, 100)), f"start={start}")


def months(start: int, rng: random.Random) -> Example:
    """ "January February March April" -> " May", start 0..11, cyclic; corruption: random months."""
    return _sequence("months", [MONTHS[(start + k) % 12] for k in range(4)], MONTHS[(start + 4) % 12], rng, MONTHS, f"start={MONTHS[start]}")


def number_words(start: int, rng: random.Random) -> Example:
    """ "One two three four" -> " five" (first word capitalized, as specs/incr_tasks.circ), start
    0..16 (answers up to "twenty"); corruption: random number words."""
    return _sequence(
        "number_words",
        [NUMBER_WORDS[start + k] for k in range(4)],
        NUMBER_WORDS[start + 4],
        rng,
        NUMBER_WORDS,
        f"start={NUMBER_WORDS[start]}",
        first=lambda w: str(w).capitalize(),
    )


def greater_than(noun: str, century: int, year: int) -> Example:
    """Hanna et al.: 'The war lasted from the year 1732 to the year 17' -> a year after 32, as
    circuitlang's `greater_than` generator renders it; corruption: the start year becomes XX01."""
    values: dict[str, Scalar] = {"noun": noun, "xx": str(century), "yy": f"{year:02d}", "xx2": str(century)}
    return _example(
        "greater_than",
        g.GT_TEMPLATE,
        values,
        tuple(f"{y:02d}" for y in range(year + 1, 100)),
        tuple(f"{y:02d}" for y in range(year + 1)),
        {"yy": "01"},
        f"{noun} {century}{year:02d}",
    )


def ioi(template: str, io: str, subject: str, place: str, obj: str, rng: random.Random) -> Example:
    """Wang et al.'s IOI, circuitlang's `ioi` generator templates: the answer is the indirect
    object; corruption: ABC (three fresh distinct names)."""
    values: dict[str, Scalar] = {"io": io, "s1": subject, "s2": subject, "place": place, "object": obj}
    a, b, c = rng.sample([n for n in NAMES if n not in (io, subject)], 3)
    return _example("ioi", template, values, (f" {io}",), (f" {subject}",), {"io": a, "s1": b, "s2": c}, f"{io}/{subject}")


INCR_STARTS = tuple(range(1, 96))
DECR_STARTS = tuple(range(5, 100))
MONTH_STARTS = tuple(range(12))
NUMBER_WORD_STARTS = tuple(range(17))
IOI_TEMPLATES = g.IOI_BABA + g.IOI_ABBA


def held_out_start(task: str, start: int) -> bool:
    return {
        "incr_digits": start % 11 == 6,
        "decr_digits": start % 11 == 3,
        "months": start in (4, 10),
        "number_words": start in (3, 11),
    }[task]


def held_out_years(century: int, year: int) -> bool:
    return (century + year) % 10 == 3


def held_out_names(a: str, b: str) -> bool:
    return (NAMES.index(a) + NAMES.index(b)) % 7 == 3


SEQUENCE_TASKS: dict[str, tuple[Callable[[int, random.Random], Example], tuple[int, ...]]] = {
    "incr_digits": (incr_digits, INCR_STARTS),
    "decr_digits": (decr_digits, DECR_STARTS),
    "months": (months, MONTH_STARTS),
    "number_words": (number_words, NUMBER_WORD_STARTS),
}
TASKS = (*SEQUENCE_TASKS, "greater_than", "ioi")


# ---- training: an endless, seeded stream over the training split ----


def sample_training(task: str, rng: random.Random) -> Example:
    """One training example of `task`, drawn uniformly from its training split."""
    if task in SEQUENCE_TASKS:
        make, starts = SEQUENCE_TASKS[task]
        start = rng.choice([s for s in starts if not held_out_start(task, s)])
        return make(start, rng)
    if task == "greater_than":
        while True:
            noun, century, year = rng.choice(g.GT_NOUNS), rng.choice(g.GT_CENTURIES), rng.choice(g.GT_YEARS)
            if not held_out_years(century, year):
                return greater_than(noun, century, year)
    while True:
        io, subject = rng.sample(NAMES, 2)
        if not held_out_names(io, subject):
            return ioi(rng.choice(IOI_TEMPLATES), io, subject, rng.choice(g.IOI_PLACES), rng.choice(g.IOI_OBJECTS), rng)


def training_stream(seed: int, batch_size: int) -> Iterator[list[Example]]:
    """Batches of examples; every batch holds the six tasks in equal shares (round robin), and the
    whole stream is a function of `seed`."""
    rng = random.Random(seed)
    position = 0
    while True:
        batch = []
        for _ in range(batch_size):
            batch.append(sample_training(TASKS[position % len(TASKS)], rng))
            position += 1
        yield batch


# ---- evaluation sets ----


def held_out(task: str, seed: int = 0) -> list[Example]:
    """Every held-out prompt of `task` (IOI: each held-out pair in both roles in all 8 templates,
    with a seeded place and object)."""
    rng = random.Random(f"held-out {task} {seed}")
    if task in SEQUENCE_TASKS:
        make, starts = SEQUENCE_TASKS[task]
        return [make(s, rng) for s in starts if held_out_start(task, s)]
    if task == "greater_than":
        return [greater_than(noun, c, y) for noun in g.GT_NOUNS for c in g.GT_CENTURIES for y in g.GT_YEARS if held_out_years(c, y)]
    return [
        ioi(t, io, s, rng.choice(g.IOI_PLACES), rng.choice(g.IOI_OBJECTS), rng)
        for io in NAMES
        for s in NAMES
        if io != s and held_out_names(io, s)
        for t in IOI_TEMPLATES
    ]


def every_prompt(task: str, seed: int = 0, n: int = 1000) -> list[Example]:
    """The task's whole distribution (training and held-out): every prompt of the sequence tasks
    and greater-than; for IOI `n` seeded draws, as `generate ioi(n = ...)` makes them."""
    rng = random.Random(f"all {task} {seed}")
    if task in SEQUENCE_TASKS:
        make, starts = SEQUENCE_TASKS[task]
        return [make(s, rng) for s in starts]
    if task == "greater_than":
        return [greater_than(noun, c, y) for noun in g.GT_NOUNS for c in g.GT_CENTURIES for y in g.GT_YEARS]
    out = []
    for _ in range(n):
        io, subject = rng.sample(NAMES, 2)
        out.append(ioi(rng.choice(IOI_TEMPLATES), io, subject, rng.choice(g.IOI_PLACES), rng.choice(g.IOI_OBJECTS), rng))
    return out
