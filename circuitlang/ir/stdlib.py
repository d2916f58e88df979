"""The language's vocabulary: built-in lists, metrics, corruptions, generators, claims, settings.

Each table is the single place a name is declared; lowering checks specs against it and the
later stages implement each entry (a new metric is one implementation plus one line here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Single-token first names in GPT-2's vocabulary, as used by Wang et al. for IOI.
NAMES = (
    "Mary",
    "John",
    "Alice",
    "Bob",
    "Tom",
    "James",
    "Dan",
    "Sid",
    "Martin",
    "Amy",
    "Kate",
    "Jane",
    "Paul",
    "Anne",
    "Mark",
    "Lisa",
    "Jack",
    "Sarah",
    "David",
    "Emma",
    "Michael",
    "Rachel",
)


@dataclass(frozen=True)
class BuiltinList:
    values: tuple[int | str, ...]
    cyclic: bool
    description: str


BUILTIN_LISTS: dict[str, BuiltinList] = {
    "months": BuiltinList(MONTHS, True, "January..December; indices wrap around"),
    "weekdays": BuiltinList(WEEKDAYS, True, "Monday..Sunday; indices wrap around"),
    "number_words": BuiltinList(NUMBER_WORDS, False, "zero..twenty; index i is the word for i"),
    "letters": BuiltinList(LETTERS, False, "A..Z"),
    "names": BuiltinList(NAMES, False, "single-token first names (IOI)"),
}

# Functions usable in expressions: name -> (min args, max args, description).
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "pad": (2, 2, "pad(x, width): x as text, left-padded with zeros; maps over lists"),
    "str": (1, 1, "str(x): x as text; maps over lists"),
    "len": (1, 1, "len(list): number of items"),
    "upper": (1, 1, "upper(s): upper-case text; maps over lists"),
    "lower": (1, 1, "lower(s): lower-case text; maps over lists"),
    "capitalize": (1, 1, "capitalize(s): first letter upper-case; maps over lists"),
}


@dataclass(frozen=True)
class MetricKind:
    """One metric, declared once: the language checks its arity here, reports take its unit, and
    the engine implements `name` (engine/readouts.py, tested to cover every entry)."""

    arity: int  # answer-field arguments
    unit: str  # what a difference in it is measured in (heatmap colour bars, reports)
    contrast: bool  # a difference between its two fields (its unembedding direction is answer - wrong)
    description: str


METRICS: dict[str, MetricKind] = {
    "logit_diff": MetricKind(2, "logits", True, "logit[answer] - logit[wrong]"),
    "prob_diff": MetricKind(2, "probability", True, "p(answer set) - p(wrong set)"),
    "logprob": MetricKind(1, "nats", False, "log p(answer)"),
    "accuracy": MetricKind(1, "fraction of prompts", False, "1 when the answer is the top token"),
    "kl": MetricKind(0, "nats", False, "KL(clean || run) of the next-token distributions"),
}


@dataclass(frozen=True)
class CorruptionKind:
    n_args: int  # positional arguments in (...)
    needs_body: bool
    description: str
    requires: tuple[str, ...] = ()  # slots the template must have


CORRUPTIONS: dict[str, CorruptionKind] = {
    "random": CorruptionKind(0, True, "redraw the slots assigned in the body"),
    "repeat_last": CorruptionKind(0, False, "the last slot repeats the slot before it (1 2 3 4 -> 1 2 3 3)"),
    "repeat_all": CorruptionKind(0, False, "every slot repeats the first slot (1 2 3 4 -> 1 1 1 1)"),
    "swap": CorruptionKind(2, False, "swap(a, b): exchange the values of slots a and b"),
    "file": CorruptionKind(1, False, 'file("path.jsonl"): corrupt rows paired by order with the clean rows'),
    "abc": CorruptionKind(0, False, "IOI: io, s1, s2 replaced by three fresh distinct names", ("io", "s1", "s2")),
    "01": CorruptionKind(0, False, "greater-than: the start year's last two digits become 01", ("yy",)),
}


@dataclass(frozen=True)
class GeneratorSignature:
    params: dict[str, int | str]  # name -> default (its type is the parameter's type)
    slots: tuple[str, ...]  # named positions its templates provide
    fields: tuple[str, ...]  # answer fields it provides
    corruptions: tuple[str, ...]  # corruptions that make sense for it
    answer_prefix: str
    description: str
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # allowed values of text params


GENERATORS: dict[str, GeneratorSignature] = {
    "ioi": GeneratorSignature(
        params={"n": 64, "order": "mixed", "version": "compact"},
        slots=("io", "s1", "s2", "place", "object"),
        fields=("answer", "wrong"),
        corruptions=("abc", "random", "swap", "file"),
        answer_prefix=" ",
        description="Wang et al.'s IOI templates: answer the indirect object (io), wrong the subject",
        choices={"order": ("mixed", "abba", "baba"), "version": ("compact", "wang2022")},
    ),
    "greater_than": GeneratorSignature(
        params={"n": 64, "version": "compact"},
        slots=("noun", "xx", "yy", "xx2"),
        fields=("answer", "wrong"),
        corruptions=("01", "random", "file"),
        answer_prefix="",
        description="Hanna et al.: 'The {noun} lasted from the year {xx}{yy} to the year {xx2}' (xx2 = xx); "
        "answer = years after yy, wrong = years up to yy",
        choices={"version": ("compact", "hanna2023")},
    ),
}

METRIC_CLAIMS = (
    "faithfulness",
    "normalized_faithfulness",
    "completeness",
    "completeness_mean",
    "minimality",
    "f_model",
    "f_circuit",
    "f_empty",
    "edge_effect",
    "scrubbing",  # causal scrubbing's fraction of the metric recovered (needs a hypothesis)
)
# Claims about one node (or every node of a role).
SCORE_CLAIMS = ("copy_score", "next_score", "direct_logit", "minimality")
# Claims about one declared edge.
EDGE_CLAIMS = ("effect",)
# Claims about a hypothesis's carrier (a role, a head, an MLP) or variable: interchange scores.
InterchangeScore = Literal["iia", "graded_iia"]
INTERCHANGE_CLAIMS: tuple[InterchangeScore, ...] = ("iia", "graded_iia")

POSITION_KEYWORDS = ("end", "bos")
CHANNELS = ("q", "k", "v")

# Spec-wide settings (set key = value) and per-prompt-set settings.
SPEC_SETTINGS = {
    "seed": int,
    "bootstrap": int,
    "confidence": float,
    "minimality_threshold": float,
    "completeness_samples": int,
    "greedy_steps": int,
    "minimality_samples": int,
    "top_k": int,
    "batch_size": int,
    "embed_edges": ("all", "declared"),
    "prepend_bos": ("model", "true", "false"),
    "max_prompts": int,
    "max_range": int,
    "max_list": int,
    "max_slots": int,
    "max_template": int,
    "max_text": int,
}
PROMPT_SETTINGS = {"answer_prefix": str, "count": int}


@dataclass(frozen=True)
class Limit:
    """One bound on the work a spec can ask for (a spec from a pull request must not exhaust the
    machine). Each is checked where the construct is, before the work is allocated."""

    what: str  # the limit's name in messages and docs
    default: int
    bounds: str  # what is counted
    setting: str | None  # `set NAME = N` raises it; None: fixed, it protects the parser itself


# The one table of limits (docs/language.md "Limits" prints it). Several rows share a setting:
# they bound the same quantity reached by different constructs. More prompts than the default do
# not fit a verification on a laptop anyway, and longer text is not a prompt's slot.
LIMITS: dict[str, Limit] = {
    limit.what: limit
    for limit in (
        Limit("prompts per set", 100_000, "clean prompts one prompt set builds (templates x file rows x loop values)", "max_prompts"),
        Limit(
            "loop product",
            100_000,
            "combinations of a block's `for` loops, enumerated lazily up to `set count` (and loop values gone through: at most loops x this)",
            "max_prompts",
        ),
        Limit("generated prompts", 100_000, "`n` of `generate NAME(n = ...)`, after `set count`", "max_prompts"),
        Limit(
            "range length",
            100_000,
            "values of one `a..b` used as a value (`random a..b`, `len`); a loop's range is enumerated lazily and bounded by the loop product",
            "max_range",
        ),
        Limit("list length", 10_000, "items of one `list` declaration or `[...]` literal", "max_list"),
        Limit("slots per template", 100, "`{slot}`s in one template", "max_slots"),
        Limit("template length", 10_000, "characters of one template", "max_template"),
        Limit("string literal length", 1_000, "characters of one string literal outside a template", "max_text"),
        Limit("text value length", 1_000, "characters of text an expression builds (`+` of two strings)", "max_text"),
        Limit("pad width", 1_000, "the width `pad(x, width)` pads to", "max_text"),
        Limit("expression depth", 200, "nesting of the syntax tree (the parser recurses)", None),
        Limit("integer digits", 4_300, "digits of an integer literal or of an arithmetic result (Python's int-to-text limit)", None),
    )
}
# The settings that raise limits, with their defaults (ir.Settings takes its defaults from here).
LIMIT_SETTINGS: dict[str, int] = {limit.setting: limit.default for limit in LIMITS.values() if limit.setting}
MAX_PROMPTS = LIMIT_SETTINGS["max_prompts"]
MAX_TEXT = LIMIT_SETTINGS["max_text"]
MAX_INT_DIGITS = LIMITS["integer digits"].default
