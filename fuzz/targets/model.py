"""Local model folders: a spec `on "./model"` whose folder is a copy of the shipped organism's
(config.json, tokenizer.json and their small companions; no weights: neither command reads them)
with config.json or tokenizer.json mutated, through `check` WITH tokenization (so the tokenizer is
read, by the `tokenizers` library) and `plan` (which reads config.json for the model's shape).

A broken model folder may end in a model error (exit 3): it must still be a `CircuitlangError` with
a message, never a traceback. Mutations: fuzz/json_mutate.py's on either file (with the names of
their fields as keys), the tokenizer's model swapped for another type or its pre-tokenizer's
pattern replaced, byte mutations, and a file replaced by a folder, a FIFO, a link or a large
sparse file, or missing.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Callable

from fuzz import harness
from fuzz.corpus import ROOT, SPECS
from fuzz.json_mutate import mutate_json
from fuzz.targets import CASE_FOLDER, Case, write_case

NAME = "model"
COMMANDS = 2  # check (with tokenization), plan
SPEC_NAME = "spec.circ"
ORGANISM = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights"
FOLDER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")
SEED_SPECS = ("organism_incr_digits.circ", "organism_months.circ", "organism_number_words.circ", "organism_ioi.circ")
MODEL_NAMES = ('"./model"', '"model"', '"./model/"', '"./model/config.json"', '"./model/.."')
CONFIG_NAMES = (
    "n_layer",
    "n_head",
    "n_embd",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_size",
    "vocab_size",
    "n_positions",
    "model_type",
    "architectures",
    "head_dim",
    "n_inner",
)
TOKENIZER_NAMES = (
    "model",
    "type",
    "vocab",
    "merges",
    "unk_token",
    "added_tokens",
    "id",
    "content",
    "special",
    "pre_tokenizer",
    "normalizer",
    "decoder",
    "post_processor",
    "pretokenizers",
    "pattern",
    "Regex",
    "String",
    "behavior",
    "WordLevel",
    "BPE",
    "Unigram",
    "WordPiece",
    "ByteLevel",
    "Split",
    "Sequence",
    "continuing_subword_prefix",
    "byte_fallback",
    "dropout",
    "truncation",
    "padding",
)
PATTERNS = ("", "(", "(a+)+$", "\\", "[", "(?<=a)b", "\\p{L}+", ".*" * 50, "(" * 300 + ")" * 300, "\\x00", "\\s+(?!\\S)")
SPARSE_SIZES = (5 * 2**20, 50 * 2**20, 300 * 2**20)


def prepare(folder: Path) -> None:
    write_case(folder / CASE_FOLDER, build(0, 0))
    import tokenizers  # noqa: F401 - the library's import, before the budgets apply


def lay_out(folder: Path, case: Case) -> None:
    write_case(folder / CASE_FOLDER, case)


def run(folder: Path, case: Case, start_clock: Callable[[], None]) -> str:
    commands = (lambda path: harness.check(path, tokenize=True, model_errors=True), lambda path: harness.plan(path, model_errors=True))
    return harness.run_commands(folder / CASE_FOLDER / SPEC_NAME, commands, start_clock)


def build(seed: int, index: int) -> Case:
    rng = random.Random(f"{NAME}:{seed}:{index}")
    spec = (SPECS / rng.choice(SEED_SPECS)).read_text(encoding="utf-8")
    spec = spec.replace('"organism:seqcont"', rng.choice(MODEL_NAMES) if rng.random() < 0.2 else '"./model"', 1)
    files = {SPEC_NAME: spec.encode(), **{f"model/{name}": data for name, data in _folder().items()}}
    kinds: dict[str, str] = {}
    roll = rng.random()
    if roll < 0.4:
        files["model/config.json"] = mutate_json(rng, _json("config.json"), CONFIG_NAMES)
    elif roll < 0.8:
        files["model/tokenizer.json"] = mutate_json(rng, _tokenizer(rng), TOKENIZER_NAMES)
    elif roll < 0.9:
        files["model/tokenizer.json"] = _other_tokenizer(rng)
    else:
        name = f"model/{rng.choice(FOLDER_FILES[:2])}"
        del files[name]
        kinds[name] = rng.choice(
            ("dir", "fifo", "link:model/tokenizer_config.json", "link:model", "link:nowhere", f"sparse:{rng.choice(SPARSE_SIZES)}", "missing")
        )
        if kinds[name] == "missing":
            del kinds[name]
    return Case(NAME, files, kinds)


@lru_cache(maxsize=1)
def _folder() -> dict[str, bytes]:
    return {name: (ORGANISM / name).read_bytes() for name in FOLDER_FILES}


def _json(name: str) -> dict:
    return json.loads(_folder()[name])


def _tokenizer(rng: random.Random) -> dict:
    return _json("tokenizer.json") if rng.random() < 0.6 else json.loads(json.dumps(byte_level_bpe()))


@lru_cache(maxsize=1)
def byte_level_bpe() -> dict:
    """A byte-level BPE tokenizer.json laid out as GPT-2's (its byte alphabet, `Ġ` for a space),
    with merges that make one token of each number up to 99, month and number word (after a
    space or not): the organism's WordLevel tokenizer is the other seed."""
    alphabet = _byte_alphabet()
    words = [str(n) for n in range(100)] + [
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
        "one",
        "two",
    ]
    vocab = {symbol: i for i, symbol in enumerate(alphabet.values())}
    merges: list[list[str]] = []
    for word in [" " + w for w in words] + words:  # the spaced first: their merges rank before the bare words'
        text = "".join(alphabet[b] for b in word.encode())
        for end in range(2, len(text) + 1):
            if text[:end] not in vocab:
                merges.append([text[: end - 1], text[end - 1]])
                vocab[text[:end]] = len(vocab)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's map of bytes to printable characters (`bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in printable else next(extra)) for b in range(256)}


def _other_tokenizer(rng: random.Random) -> bytes:
    """The tokenizer with its model of another type (fields missing or left over), a pre-tokenizer
    pattern that is not a regular expression or one that backtracks, or settings that act when a
    text is encoded (truncation, padding, a post-processor, a normalizer, added tokens)."""
    tokenizer = _tokenizer(rng)
    shape = rng.randrange(3)
    if shape == 0 or "pretokenizers" not in tokenizer["pre_tokenizer"]:
        tokenizer["model"]["type"] = rng.choice(("BPE", "Unigram", "WordPiece", "WordLevel", "Nope", ""))
        if rng.random() < 0.5:
            tokenizer["model"]["merges"] = rng.choice(([], [["a", "b"]], ["a b"], [["\u0120", "1"]] * 100, None))
    elif shape == 1:
        split = tokenizer["pre_tokenizer"]["pretokenizers"][0]
        split["pattern"] = {rng.choice(("Regex", "String")): rng.choice(PATTERNS)}
    else:
        setting = rng.choice(tuple(ENCODING_SETTINGS))
        tokenizer[setting] = rng.choice(ENCODING_SETTINGS[setting])
    return json.dumps(tokenizer).encode()


def _added(token_id: int, content: str) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}


# Settings a tokenizer.json applies as it encodes, at their edges.
ENCODING_SETTINGS: dict[str, tuple] = {
    "truncation": tuple(
        {"direction": "Right", "max_length": n, "strategy": "LongestFirst", "stride": stride}
        for n, stride in ((0, 0), (1, 0), (1, 5), (2, 1), (2**32, 0))
    ),
    "padding": tuple(
        {"strategy": strategy, "direction": "Right", "pad_to_multiple_of": multiple, "pad_id": 0, "pad_type_id": 0, "pad_token": "x"}
        for strategy, multiple in (
            ("BatchLongest", None),
            ({"Fixed": 8}, None),
            ({"Fixed": 2**40}, None),
            ("BatchLongest", 2**40),
            ("BatchLongest", 0),
        )
    ),
    "post_processor": (
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "nope", "type_id": 0}}], "pair": [], "special_tokens": {}},
        {"type": "BertProcessing", "sep": ["[SEP]", 2**32 - 1], "cls": ["[CLS]", 0]},
        {"type": "RobertaProcessing", "sep": ["", 0], "cls": ["", 0], "trim_offsets": True, "add_prefix_space": True},
    ),
    "normalizer": (
        {"type": "Replace", "pattern": {"Regex": "("}, "content": "x"},
        {"type": "Prepend", "prepend": "\u2581" * 1000},
        {"type": "NFKC"},
        {"type": "Lowercase"},
        {"type": "Replace", "pattern": {"String": ""}, "content": "x"},
    ),
    "added_tokens": ([_added(2**32 - 1, "x")], [_added(0, "")], [_added(3, "1")], [_added(0, "a")] * 2),
}
