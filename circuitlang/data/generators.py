"""Built-in task generators: the classic datasets as (template, values) rows.

Each generator is a function of its parameters and a seeded RNG; its slots, answer fields and
defaults are declared in `ir.stdlib.GENERATORS`.
"""

from __future__ import annotations

import random
from typing import Callable

from circuitlang.data.values import Scalar, Value
from circuitlang.ir.stdlib import NAMES

Row = tuple[str, dict[str, Value]]

# IOI templates after Wang et al. (2022), Appendix; BABA puts the subject first, ABBA the io.
IOI_BABA = (
    "Then, {s1} and {io} went to the {place}. {s2} gave a {object} to",
    "When {s1} and {io} got a {object} at the {place}, {s2} decided to give it to",
    "After {s1} and {io} went to the {place}, {s2} gave a {object} to",
    "While {s1} and {io} were working at the {place}, {s2} gave a {object} to",
)
IOI_ABBA = tuple(t.replace("{s1} and {io}", "{io} and {s1}") for t in IOI_BABA)
IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")

# Greater-than after Hanna et al. (2023): nouns whose events last, two-digit centuries and years.
# Every slot appears once, so each names one position: xx2 repeats the century at the end.
GT_TEMPLATE = "The {noun} lasted from the year {xx}{yy} to the year {xx2}"
GT_NOUNS = ("war", "expedition", "reign", "dynasty", "empire", "project", "voyage", "siege", "journey")
GT_CENTURIES = tuple(range(11, 18))
GT_YEARS = tuple(range(2, 99))  # 01 is the corruption; 99 leaves no later year


def ioi(params: dict[str, Scalar], rng: random.Random) -> list[Row]:
    order = str(params["order"])
    templates = {"abba": IOI_ABBA, "baba": IOI_BABA}.get(order, IOI_BABA + IOI_ABBA)
    rows = []
    for _ in range(int(params["n"])):
        io, subject = rng.sample(NAMES, 2)
        values: dict[str, Value] = {
            "io": io, "s1": subject, "s2": subject,
            "place": rng.choice(IOI_PLACES), "object": rng.choice(IOI_OBJECTS),
            "answer": io, "wrong": subject,
        }
        rows.append((rng.choice(templates), values))
    return rows


def greater_than(params: dict[str, Scalar], rng: random.Random) -> list[Row]:
    rows = []
    for _ in range(int(params["n"])):
        year = rng.choice(GT_YEARS)
        century = str(rng.choice(GT_CENTURIES))
        values: dict[str, Value] = {
            "noun": rng.choice(GT_NOUNS), "xx": century, "yy": f"{year:02d}", "xx2": century,
            "answer": tuple(f"{y:02d}" for y in range(year + 1, 100)),
            "wrong": tuple(f"{y:02d}" for y in range(0, year + 1)),
        }
        rows.append((GT_TEMPLATE, values))
    return rows


GENERATOR_FUNCTIONS: dict[str, Callable[[dict[str, Scalar], random.Random], list[Row]]] = {
    "ioi": ioi,
    "greater_than": greater_than,
}
