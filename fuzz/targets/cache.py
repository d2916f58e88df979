"""Result-cache entries: an entry written through `ResultCache.put`, then its file mutated or
replaced, then read through `ResultCache.get`; the cache is trimmed to nothing after.

The contract: a read of a mutated entry is a miss (None) or the very numbers written (bit for bit,
NaN included), never other numbers, never an exception; eviction removes nothing outside the cache
folder. The case (built from (seed, index) alone, knowing the worker's key, which it sets as
CIRCUITLANG_CACHE_KEY) holds the request and the mutated entry: bytes flipped, cut or added; header
fields changed, re-signed with the user's key or signed with another; another key's entry in its
place; a folder, a FIFO, a link to a valid entry, a sparse file of the entry's size, or nothing.
The ledger of the cache's usage is mutated as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import struct
from pathlib import Path
from typing import Callable

from fuzz.harness import ContractBroken
from fuzz.targets import CASE_FOLDER, Case, make_special, write_case

NAME = "cache"
COMMANDS = 1  # put, mutate, get, trim: one budget
KEY = "circuitlang-fuzz"  # the worker's $CIRCUITLANG_CACHE_KEY
REQUEST, ENTRY, LEDGER, CANARY = "request.json", "entry", "ledger", "canary"
CACHE = "cache"
LENGTHS = (0, 1, 7, 95, 1000)
SPECIAL_VALUES = (float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 1.7976931348623157e308)
ODD_KINDS = ("dir", "fifo", "link:other", "link:canary", "link:nowhere", "sparse:size", "sparse:1000000000", "missing")
LEDGERS = (b"", b"0", b"-1", b"9" * 63, b"9" * 65, b"1e9", b"\xff\x00", b"18446744073709551616", b" 12 ")


def prepare(folder: Path) -> None:
    os.environ["CIRCUITLANG_CACHE_KEY"] = KEY
    os.environ.pop("CIRCUITLANG_CACHE_DIR", None)
    lay_out(folder, build(0, 0))
    run(folder, build(0, 0), lambda: None)


def lay_out(folder: Path, case: Case) -> None:
    write_case(folder / CASE_FOLDER, Case(NAME, case.files))  # the odd kinds are made in the cache folder


def build(seed: int, index: int) -> Case:
    rng = random.Random(f"{NAME}:{seed}:{index}")
    key, other = rng.randbytes(32), rng.randbytes(32)
    values, other_values = _values(rng), _values(rng)
    length = len(values) // 8
    read_length = length if rng.random() < 0.8 else rng.choice((0, length + 1, max(length - 1, 0), 2**40, 2**61))
    request = {"key": key.hex(), "values": values.hex(), "read_length": read_length, "other": other.hex(), "other_values": other_values.hex()}
    files = {REQUEST: json.dumps(request).encode(), CANARY: b"outside the cache folder"}
    kinds: dict[str, str] = {}
    entry = _encoded(key, values, _secret(KEY))
    roll = rng.random()
    if roll < 0.08:
        files[ENTRY] = entry  # unchanged: the hit must give the numbers written
    elif roll < 0.85:
        files[ENTRY] = _mutated(rng, entry, key, other, other_values)
    else:
        kinds[ENTRY] = rng.choice(ODD_KINDS)
    if rng.random() < 0.3:
        files[LEDGER] = rng.choice(LEDGERS) if rng.random() < 0.8 else b"1" * 100
    return Case(NAME, files, kinds)


def _values(rng: random.Random) -> bytes:
    count = rng.choice(LENGTHS)
    numbers = [rng.choice(SPECIAL_VALUES) if rng.random() < 0.1 else rng.gauss(0, 10) for _ in range(count)]
    return struct.pack(f"<{count}d", *numbers)


# The entry format (circuitlang/engine/result_cache.py), written out here so that the fuzzer can
# change a header field and sign the result; `run` checks that `put` wrote exactly these bytes.
HEADER = struct.Struct("<4sI32sQ")


def _secret(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _encoded(key: bytes, values: bytes, secret: bytes, magic: bytes = b"CLRC", version: int = 2, count: int | None = None) -> bytes:
    body = HEADER.pack(magic, version, key, len(values) // 8 if count is None else count) + values
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def _mutated(rng: random.Random, entry: bytes, key: bytes, other: bytes, other_values: bytes) -> bytes:
    values = entry[HEADER.size : -32]
    shape = rng.randrange(8)
    if shape == 0:  # bits flipped anywhere: header, values or checksum
        data = bytearray(entry)
        for _ in range(rng.choice((1, 1, 2, 8))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if shape == 1:
        return entry[: rng.randrange(len(entry))]
    if shape == 2:
        return entry + rng.randbytes(rng.choice((1, 8, 32, 4096)))
    if shape == 3:  # a header field changed and the entry signed again with the user's key: still not this entry
        field = rng.choice(
            ({"magic": b"CLRD"}, {"version": rng.choice((1, 3, 2**32 - 1))}, {"count": rng.choice((len(values) // 8 + 1, 2**63, 2**64 - 1))})
        )
        return _encoded(key, values, _secret(KEY), **field)
    if shape == 4:  # other numbers, signed with another key: a forgery
        return _encoded(key, rng.randbytes(len(values)), _secret(rng.choice(("", "guess", KEY + " "))))
    if shape == 5:  # another key's entry, whole and signed: misfiled
        return _encoded(other, other_values, _secret(KEY))
    if shape == 6:
        return rng.randbytes(len(entry))
    return b""


def run(folder: Path, case: Case, start_clock: Callable[[], None]) -> str:
    from circuitlang.engine.result_cache import ResultCache

    where = folder / CASE_FOLDER
    request = json.loads(case.files[REQUEST])
    key, values, other = bytes.fromhex(request["key"]), bytes.fromhex(request["values"]), bytes.fromhex(request["other"])
    other_values = bytes.fromhex(request["other_values"])
    start_clock()
    cache = ResultCache(where / CACHE)
    if cache.refused:
        raise ContractBroken(f"cache: the fuzzer's cache folder was refused: {cache.refused}")
    _put(cache, other, other_values)
    _put(cache, key, values)
    _mutate_on_disk(cache, where, key, other, case)
    found = cache.get(key, request["read_length"])
    _require_same(found, values, "the mutated entry")
    _require_same(cache.get(other, len(other_values) // 8), other_values, "the other entry", miss_allowed=False)
    cache.limit_bytes = 0
    cache.trim()
    if not (where / CANARY).is_file():
        raise ContractBroken("cache: eviction removed a file outside the cache folder")
    return "error" if found is None else "ok"


def _put(cache, key: bytes, values: bytes) -> None:
    import numpy as np

    cache.put(key, np.frombuffer(values, dtype="<f8"))
    if cache.path_of(key).read_bytes() != _encoded(key, values, _secret(KEY)):
        raise ContractBroken("cache: put wrote an entry other than the format the fuzzer knows (update fuzz/targets/cache.py)")


def _mutate_on_disk(cache, where: Path, key: bytes, other: bytes, case: Case) -> None:
    """Put the case's entry (bytes or an odd kind of file) where the written entry is."""
    path = cache.path_of(key)
    path.unlink()
    kind = case.kinds.get(ENTRY)
    if kind is None:
        (where / ENTRY).rename(path)
    elif kind == "link:other":
        path.symlink_to(cache.path_of(other))
    elif kind == "sparse:size":  # zeros of the entry's size: only the checksum tells
        with open(path, "wb") as file:
            file.truncate(HEADER.size + len(bytes.fromhex(json.loads(case.files[REQUEST])["values"])) + 32)
    elif kind != "missing":
        make_special(where, path, kind)
    if LEDGER in case.files:
        (where / LEDGER).replace(path.parent.parent / "usage")


def _require_same(found, values: bytes, what: str, miss_allowed: bool = True) -> None:
    if found is None:
        if not miss_allowed:
            raise ContractBroken(f"cache: a read of {what} missed")
        return
    if found.astype("<f8").tobytes() != values:
        raise ContractBroken(f"cache: a read of {what} gave other numbers than were written")
