"""Data files: a fixed spec whose prompts come `from` a JSONL or CSV file (and sometimes whose
corruption is `file(...)`), with that file mutated, through `check --no-tokenize` and `plan`.

The file starts as valid rows for the spec, then is broken: row by row as JSON (types, numeric
edges, duplicated keys, deep nesting), as CSV (broken quoting, missing and extra cells, a cell past
the csv module's field limit), byte by byte (NUL, bytes that are not UTF-8, byte-order marks,
truncation), in size (rows up to and past the prompt limit, a sparse file past the data-file size
limit) and in kind (a folder, a FIFO, a link, missing).
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Callable

from fuzz import harness
from fuzz.json_mutate import BYTE_MUTATIONS, mutate_json
from fuzz.targets import CASE_FOLDER, Case, write_case

NAME = "data"
COMMANDS = 2  # check --no-tokenize, plan
SPEC_NAME = "spec.circ"
COLUMNS = ("s1", "s2", "s3", "answer", "wrong")
MAX_PROMPTS = 100_000  # ir.stdlib's default limit: files of as many rows and one more
MAX_DATA_FILE_BYTES = 256 * 2**20  # circuitlang.data.files: a sparse file past it is refused unread
CSV_FIELD_LIMIT = 131_072  # the csv module's default field size limit
SPEC = """circuitlang 1
circuit c on "organism:seqcont"

prompts p {{
  template "{{s1}} {{s2}} {{s3}}"
  from "{clean}"
  {corrupt}
}}

metric {metric}
ablate mean of corrupt
"""
CORRUPTIONS = ('corrupt file("{other}")', "corrupt repeat_last", "corrupt random {{ s1 = random 1..99 }}", "")
METRICS = ("logit_diff(answer, wrong)", "logprob(answer)", "accuracy(answer)")


def prepare(folder: Path) -> None:
    write_case(folder / CASE_FOLDER, build(0, 0))


def lay_out(folder: Path, case: Case) -> None:
    write_case(folder / CASE_FOLDER, case)


def run(folder: Path, case: Case, start_clock: Callable[[], None]) -> str:
    return harness.run_commands(folder / CASE_FOLDER / SPEC_NAME, (harness.check, harness.plan), start_clock)


def build(seed: int, index: int) -> Case:
    rng = random.Random(f"{NAME}:{seed}:{index}")
    suffix = rng.choice((".jsonl", ".csv"))
    clean, other = f"data/rows{suffix}", f"data/corrupt{rng.choice(('.jsonl', '.csv'))}"
    corrupt = rng.choice(CORRUPTIONS).format(other=other)
    spec = SPEC.format(clean=clean, corrupt=corrupt, metric=rng.choice(METRICS))
    rows = _rows(rng, rng.choice((1, 3, 20, 95)))
    files = {SPEC_NAME: spec.encode(), clean: _serialized(rng, rows, clean), other: _serialized(rng, rows, other)}
    mutated = clean if "file(" not in corrupt or rng.random() < 0.7 else other
    kinds: dict[str, str] = {}
    if rng.random() < 0.05:
        kinds[mutated] = _odd_kind(rng, files, mutated)
    else:
        files[mutated] = _mutated(rng, rows, mutated)
    return Case(NAME, files, kinds)


def _rows(rng: random.Random, count: int) -> list[dict]:
    rows = []
    for _ in range(count):
        start = rng.randint(1, 90)
        row = {"s1": start, "s2": start + 1, "s3": start + 2, "answer": start + 3, "wrong": start + 2}
        if rng.random() < 0.1:
            row["answer"] = [start + 3, start + 4]  # a token set
        rows.append(row)
    return rows


def _serialized(rng: random.Random, rows: list[dict], name: str) -> bytes:
    if name.endswith(".jsonl"):
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=rng.choice(("\n", "\r\n")))
    writer.writerow(COLUMNS)
    writer.writerows([[_cell(row[c]) for c in COLUMNS] for row in rows])
    return out.getvalue().encode()


def _cell(value: object) -> str:
    return str(value) if not isinstance(value, list) else str(value[0])


def _mutated(rng: random.Random, rows: list[dict], name: str) -> bytes:
    roll = rng.random()
    if roll < 0.04:
        return _many_rows(rng, name)
    if roll < 0.5 and name.endswith(".jsonl"):
        return _mutated_jsonl(rng, rows)
    if roll < 0.5:
        return _mutated_csv(rng, _serialized(rng, rows, name))
    data = _serialized(rng, rows, name)
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(BYTE_MUTATIONS)(rng, data, ())
    return data


def _mutated_jsonl(rng: random.Random, rows: list[dict]) -> bytes:
    """One to three rows mutated as JSON documents (the rest stay valid)."""
    lines = [json.dumps(row).encode() for row in rows]
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(lines))
        lines[at] = mutate_json(rng, rows[at], COLUMNS, bytes_share=0.1).replace(b"\n", b"")
    return b"\n".join(lines) + rng.choice((b"\n", b""))


def _mutated_csv(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    at = rng.randrange(len(lines))
    shape = rng.randrange(6)
    if shape == 0:  # an opened quote that never closes, or one inside a cell
        lines[at] = lines[at].replace(b",", rng.choice((b',"', b'"', b',""', b'","')), 1)
    elif shape == 1:  # a cell past the field limit, quoted or not
        cell = b"x" * rng.choice((CSV_FIELD_LIMIT, CSV_FIELD_LIMIT + 1, 2_000_000))
        lines[at] = lines[at] + b"," + (b'"' + cell + b'"' if rng.random() < 0.5 else cell)
    elif shape == 2:  # a cell missing, or one too many
        lines[at] = lines[at].rsplit(b",", 1)[0] if rng.random() < 0.5 else lines[at] + b",9"
    elif shape == 3:  # the header changed: a column renamed, duplicated, or empty
        lines[0] = lines[0].replace(rng.choice(COLUMNS).encode(), rng.choice((b"", b"s1", b"answer", b"\xef\xbb\xbfs1")), 1)
    elif shape == 4:  # numbers of every size
        lines[at] = lines[at].replace(b",", b"," + rng.choice((b"9" * 4301, b"-0", b"007", b"1e5", b" 3", b"\x00")), 1)
    else:  # a quoted cell holding newlines and separators
        lines[at] = lines[at] + b',"a\nb,c""d"'
    return b"\n".join(lines)


def _many_rows(rng: random.Random, name: str) -> bytes:
    """Rows up to and past the prompt limit; each row is valid."""
    count = rng.choice((1000, MAX_PROMPTS, MAX_PROMPTS + 1, 3 * MAX_PROMPTS))
    values = [(k, k + 1, k + 2, k + 3, k + 2) for k in (i % 90 + 1 for i in range(count))]
    if name.endswith(".jsonl"):
        return b"".join(b'{"s1": %d, "s2": %d, "s3": %d, "answer": %d, "wrong": %d}\n' % row for row in values)
    return b"s1,s2,s3,answer,wrong\n" + b"".join(b"%d,%d,%d,%d,%d\n" % row for row in values)


def _odd_kind(rng: random.Random, files: dict[str, bytes], name: str) -> str:
    """The data file as something other than a regular file of a sensible size."""
    del files[name]
    return rng.choice(
        (
            "dir",
            "fifo",
            f"link:{SPEC_NAME}",
            "link:data",
            "link:missing.jsonl",
            f"sparse:{MAX_DATA_FILE_BYTES + 1}",
            f"sparse:{MAX_DATA_FILE_BYTES}",
            "sparse:100000000",
        )
    )
