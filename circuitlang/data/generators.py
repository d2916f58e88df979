"""Built-in task generators: the classic datasets as (template, values) rows.

Each generator is a function of its parameters and a seeded RNG; its slots, answer fields and
defaults are declared in `ir.stdlib.GENERATORS`. Each has two versions (parameter `version`):

- `compact` (the default): circuitlang's small vocabulary, on which the shipped organism was
  trained and its circuits found; it runs on any tokenizer that has its words.
- the published dataset (`wang2022`, `hanna2023`): templates, names, nouns and years as the
  paper's reference code builds them for GPT-2, so a spec can replicate the paper's evaluation
  (docs/published_circuits.md compares them line by line with their sources).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from circuitlang.data.values import Scalar, Value
from circuitlang.ir.stdlib import NAMES

Row = tuple[str, dict[str, Value]]


@dataclass(frozen=True)
class IoiVocabulary:
    baba: tuple[str, ...]  # the subject first: "{s1} and {io}"
    names: tuple[str, ...]

    @property
    def abba(self) -> tuple[str, ...]:
        return tuple(t.replace("{s1} and {io}", "{io} and {s1}", 1) for t in self.baba)


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

# Wang et al.'s reference code (Easy-Transformer's ioi_dataset.py) for prompt_type "mixed": the first
# 7 of the 15 templates of the paper's Fig. 14 in each order (BABA, and ABBA by swapping the first
# two names), each cut before its final name, and its 99 names, one GPT-2 token each.
WANG_BABA = (
    "Then, {s1} and {io} went to the {place}. {s2} gave a {object} to",
    "Then, {s1} and {io} had a lot of fun at the {place}. {s2} gave a {object} to",
    "Then, {s1} and {io} were working at the {place}. {s2} decided to give a {object} to",
    "Then, {s1} and {io} were thinking about going to the {place}. {s2} wanted to give a {object} to",
    "Then, {s1} and {io} had a long argument, and afterwards {s2} said to",
    "After {s1} and {io} went to the {place}, {s2} gave a {object} to",
    "When {s1} and {io} got a {object} at the {place}, {s2} decided to give it to",
)
WANG_NAMES = (
    "Michael",
    "Christopher",
    "Jessica",
    "Matthew",
    "Ashley",
    "Jennifer",
    "Joshua",
    "Amanda",
    "Daniel",
    "David",
    "James",
    "Robert",
    "John",
    "Joseph",
    "Andrew",
    "Ryan",
    "Brandon",
    "Jason",
    "Justin",
    "Sarah",
    "William",
    "Jonathan",
    "Stephanie",
    "Brian",
    "Nicole",
    "Nicholas",
    "Anthony",
    "Heather",
    "Eric",
    "Elizabeth",
    "Adam",
    "Megan",
    "Melissa",
    "Kevin",
    "Steven",
    "Thomas",
    "Timothy",
    "Christina",
    "Kyle",
    "Rachel",
    "Laura",
    "Lauren",
    "Amber",
    "Brittany",
    "Danielle",
    "Richard",
    "Kimberly",
    "Jeffrey",
    "Amy",
    "Crystal",
    "Michelle",
    "Tiffany",
    "Jeremy",
    "Benjamin",
    "Mark",
    "Emily",
    "Aaron",
    "Charles",
    "Rebecca",
    "Jacob",
    "Stephen",
    "Patrick",
    "Sean",
    "Erin",
    "Jamie",
    "Kelly",
    "Samantha",
    "Nathan",
    "Sara",
    "Dustin",
    "Paul",
    "Angela",
    "Tyler",
    "Scott",
    "Katherine",
    "Andrea",
    "Gregory",
    "Erica",
    "Mary",
    "Travis",
    "Lisa",
    "Kenneth",
    "Bryan",
    "Lindsey",
    "Kristen",
    "Jose",
    "Alexander",
    "Jesse",
    "Katie",
    "Lindsay",
    "Shannon",
    "Vanessa",
    "Courtney",
    "Christine",
    "Alicia",
    "Cody",
    "Allison",
    "Bradley",
    "Samuel",
)
IOI_VERSIONS = {"compact": IoiVocabulary(IOI_BABA, NAMES), "wang2022": IoiVocabulary(WANG_BABA, WANG_NAMES)}

# Greater-than after Hanna et al. (2023): nouns whose events last, two-digit centuries and years.
# Every slot appears once, so each names one position: xx2 repeats the century at the end.
GT_TEMPLATE = "The {noun} lasted from the year {xx}{yy} to the year {xx2}"
GT_NOUNS = ("war", "expedition", "reign", "dynasty", "empire", "project", "voyage", "siege", "journey")
GT_CENTURIES = tuple(range(11, 18))
GT_YEARS = tuple(range(2, 99))  # 01 is the corruption; 99 leaves no later year

# Hanna et al.'s reference code (hannamw/gpt2-greater-than): GPT-2's tokenizer puts BOS before
# " The"; 120 nouns (potential_nouns.txt); the years whose " XXYY" GPT-2 splits into " XX" and "YY",
# without the first and the last such year of each century (get_valid_years), for the centuries
# 11-17. HANNA_YEARS lists them as (first, last, YYs missing in between) per century;
# tests/data/test_generators_published.py recomputes the table from GPT-2's tokenizer.
HANNA_TEMPLATE = " The {noun} lasted from the year {xx}{yy} to the year {xx2}"
HANNA_NOUNS = (
    "abduction",
    "accord",
    "affair",
    "agreement",
    "appraisal",
    "assaults",
    "assessment",
    "attack",
    "attempts",
    "campaign",
    "captivity",
    "case",
    "challenge",
    "chaos",
    "clash",
    "collaboration",
    "coma",
    "competition",
    "confrontation",
    "consequence",
    "conspiracy",
    "construction",
    "consultation",
    "contact",
    "contract",
    "convention",
    "cooperation",
    "custody",
    "deal",
    "decline",
    "decrease",
    "demonstrations",
    "development",
    "disagreement",
    "disorder",
    "dispute",
    "domination",
    "dynasty",
    "effect",
    "effort",
    "employment",
    "endeavor",
    "engagement",
    "epidemic",
    "evaluation",
    "exchange",
    "existence",
    "expansion",
    "expedition",
    "experiments",
    "fall",
    "fame",
    "flights",
    "friendship",
    "growth",
    "hardship",
    "hostility",
    "illness",
    "impact",
    "imprisonment",
    "improvement",
    "incarceration",
    "increase",
    "insurgency",
    "invasion",
    "investigation",
    "journey",
    "kingdom",
    "marriage",
    "modernization",
    "negotiation",
    "notoriety",
    "obstruction",
    "operation",
    "order",
    "outbreak",
    "outcome",
    "overhaul",
    "patrols",
    "pilgrimage",
    "plague",
    "plan",
    "practice",
    "process",
    "program",
    "progress",
    "project",
    "pursuit",
    "quest",
    "raids",
    "reforms",
    "reign",
    "relationship",
    "retaliation",
    "riot",
    "rise",
    "rivalry",
    "romance",
    "rule",
    "sanctions",
    "shift",
    "siege",
    "slump",
    "stature",
    "stint",
    "strikes",
    "study",
    "test",
    "testing",
    "tests",
    "therapy",
    "tour",
    "tradition",
    "treaty",
    "trial",
    "trip",
    "unemployment",
    "voyage",
    "warfare",
    "work",
)
HANNA_YEARS_BY_CENTURY: dict[int, tuple[int, int, tuple[int, ...]]] = {
    11: (10, 88, (11, 13, 14, 15, 16, 17, 18, *range(20, 30), *range(51, 60))),
    12: (2, 98, (80,)),
    13: (10, 98, ()),
    14: (2, 98, (40,)),
    15: (10, 98, ()),
    16: (2, 98, ()),
    17: (2, 98, ()),
}
HANNA_YEARS = tuple(
    (century, yy) for century, (first, last, missing) in HANNA_YEARS_BY_CENTURY.items() for yy in range(first, last + 1) if yy not in missing
)


def ioi(params: dict[str, Scalar], rng: random.Random) -> list[Row]:
    vocabulary = IOI_VERSIONS[str(params["version"])]
    order = str(params["order"])
    templates = {"abba": vocabulary.abba, "baba": vocabulary.baba}.get(order, vocabulary.baba + vocabulary.abba)
    rows = []
    for _ in range(int(params["n"])):
        io, subject = rng.sample(vocabulary.names, 2)
        values: dict[str, Value] = {
            "io": io,
            "s1": subject,
            "s2": subject,
            "place": rng.choice(IOI_PLACES),
            "object": rng.choice(IOI_OBJECTS),
            "answer": io,
            "wrong": subject,
        }
        rows.append((rng.choice(templates), values))
    return rows


def greater_than(params: dict[str, Scalar], rng: random.Random) -> list[Row]:
    published = params["version"] == "hanna2023"
    rows = []
    for _ in range(int(params["n"])):
        if published:  # uniform over the valid years, as the reference code's 10,000-prompt set
            century, year = rng.choice(HANNA_YEARS)
            noun = rng.choice(HANNA_NOUNS)
        else:
            year, century = rng.choice(GT_YEARS), rng.choice(GT_CENTURIES)
            noun = rng.choice(GT_NOUNS)
        rows.append((HANNA_TEMPLATE if published else GT_TEMPLATE, _greater_than_values(noun, str(century), year)))
    return rows


def _greater_than_values(noun: str, century: str, year: int) -> dict[str, Value]:
    return {
        "noun": noun,
        "xx": century,
        "yy": f"{year:02d}",
        "xx2": century,
        "answer": tuple(f"{y:02d}" for y in range(year + 1, 100)),
        "wrong": tuple(f"{y:02d}" for y in range(0, year + 1)),
    }


GENERATOR_FUNCTIONS: dict[str, Callable[[dict[str, Scalar], random.Random], list[Row]]] = {
    "ioi": ioi,
    "greater_than": greater_than,
}
