"""Mutations of a seed spec's bytes. Each case applies one to four of them, chosen by the case's
own random generator, so a case is reproduced from (seed, index) alone."""

from __future__ import annotations

import random
import re
from typing import Callable, Sequence

from fuzz.vocabulary import NUMBERS, TOKENS

Mutation = Callable[[random.Random, bytes, Sequence[bytes]], bytes]

# Characters that break naive text handling: combining marks, bidi controls, emoji, a zero-width
# joiner, a non-BMP letter, and byte sequences that are not UTF-8 (a lone surrogate, overlong
# forms, stray continuation bytes, 0xff).
UNICODE_SNIPPETS = (
    "\u0301",
    "\u0336\u0336",
    "\u202e",
    "\u200f",
    "\u2066",
    "\U0001f600",
    "\u200d",
    "\U0001d400",
    "\u00e9",
    "\u0130",
    "\ufeff",
    "\u2028",
    "\u0085",
    "\uff11",
    "\u0663",
)
BAD_BYTES = (b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\x80", b"\xff", b"\xfe", b"\xf4\x90\x80\x80", b"\xe2\x82")
HUGE_NUMBERS = (
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "1" + "0" * 308,
    "1" + "0" * 400,
    "9" * 4300,
    "9" * 4301,
    "9" * 20000,
    "0" * 5000 + "1",
)


def mutate(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(MUTATIONS)(rng, data, others)
    return data


def _position(rng: random.Random, data: bytes) -> int:
    return rng.randint(0, len(data))


def _insert(rng: random.Random, data: bytes, snippet: bytes) -> bytes:
    at = _position(rng, data)
    return data[:at] + snippet + data[at:]


def flip_bits(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def replace_byte(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]


def delete_span(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    at = _position(rng, data)
    return data[:at] + data[at + rng.choice((1, 1, 2, 5, 20, 200)) :]


def insert_token(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    token = rng.choice(TOKENS)
    return _insert(rng, data, f" {token} ".encode() if rng.random() < 0.5 else token.encode())


def replace_word(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    """Swap one word or number for a token of the language (keeps most of the line valid)."""
    words = list(re.finditer(rb"[A-Za-z_0-9.*]+", data))
    if not words:
        return data
    word = rng.choice(words)
    token = rng.choice(NUMBERS if word.group()[:1].isdigit() and rng.random() < 0.7 else TOKENS)
    return data[: word.start()] + token.encode() + data[word.end() :]


def huge_number(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    numbers = list(re.finditer(rb"[0-9]+", data))
    huge = rng.choice(HUGE_NUMBERS).encode()
    if not numbers:
        return _insert(rng, data, huge)
    number = rng.choice(numbers)
    return data[: number.start()] + huge + data[number.end() :]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def duplicate_line(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    lines[at:at] = [lines[at]] * rng.choice((1, 1, 2, 50))
    return b"\n".join(lines)


def delete_line(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def shuffle_lines(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    window = lines[start : start + rng.choice((2, 3, 8, len(lines)))]
    rng.shuffle(window)
    lines[start : start + len(window)] = window
    return b"\n".join(lines)


def splice_lines(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """Lines of another seed, inserted here (statements valid there, out of place here)."""
    donor = _lines(rng.choice(others))
    start = rng.randrange(len(donor))
    piece = donor[start : start + rng.choice((1, 1, 3, 10))]
    lines = _lines(data)
    at = rng.randint(0, len(lines))
    lines[at:at] = piece
    return b"\n".join(lines)


def unicode_text(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    snippet = rng.choice(UNICODE_SNIPPETS).encode() if rng.random() < 0.6 else rng.choice(BAD_BYTES)
    return _insert(rng, data, snippet * rng.choice((1, 1, 3, 100)))


def nul_byte(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    strings = list(re.finditer(rb'"[^"\n]*"', data))
    if strings and rng.random() < 0.6:  # inside a string: a path or a model name with a NUL in it
        found = rng.choice(strings)
        at = rng.randint(found.start() + 1, found.end() - 1)
        return data[:at] + b"\x00" + data[at:]
    return _insert(rng, data, b"\x00")


def deep_expression(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    """A long sum or deeply nested parentheses where an expression stands (after `= `), or a new
    assignment line: the parser and every recursive pass must refuse it, not overflow the stack."""
    size = rng.choice((50, 199, 200, 201, 400, 1000, 5000, 30000))
    shape = rng.randrange(4)
    if shape == 0:
        expr = " + ".join(["1"] * size)
    elif shape == 1:
        expr = "(" * size + "1" + ")" * size
    elif shape == 2:
        expr = "-" * size + "1"
    else:
        expr = "[" * size + "1" + "]" * size
    assignments = list(re.finditer(rb"= ", data))
    if assignments and rng.random() < 0.7:
        at = rng.choice(assignments).end()
        return data[:at] + expr.encode() + b" + " + data[at:]
    return _insert(rng, data, f"\n  x = {expr}\n".encode())


def long_line(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    size = rng.choice((1000, 10_000, 50_000))
    filler = rng.choice(
        (
            b"#" + b"x" * size,
            b'"' + b"{s1}" * (size // 4) + b'"',
            b"x" * size,
            b"s1, " * (size // 4),
            b"1.." * (size // 3),
            b'template "' + b"a" * size + b'"',
        )
    )
    return _insert(rng, data, filler)


def line_endings(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data.replace(b"\n", b"\r\n")
    if choice == 1:
        return data.replace(b"\n", b"\r")
    if choice == 2:
        return _insert(rng, data, b"\r")
    return _insert(rng, data, rng.choice((b"\x0b", b"\x0c", b"\t", b"\x1c")))


def byte_order_mark(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    mark = rng.choice((b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))
    return mark + data if rng.random() < 0.8 else _insert(rng, data, mark)


def truncate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    return data[: _position(rng, data)]


MUTATIONS: tuple[Mutation, ...] = (
    flip_bits,
    replace_byte,
    delete_span,
    insert_token,
    insert_token,
    replace_word,
    replace_word,
    replace_word,
    huge_number,
    duplicate_line,
    delete_line,
    shuffle_lines,
    splice_lines,
    splice_lines,
    unicode_text,
    nul_byte,
    deep_expression,
    long_line,
    line_endings,
    byte_order_mark,
    truncate,
)
