"""Prompt rows from JSONL or CSV files: each row binds column names to values."""

from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path

from circuitlang.data.values import Value
from circuitlang.errors import DataError
from circuitlang.ir import models as ir
from circuitlang.ir.paths import read_confined


# Rows are read whole: bound the file first. 100,000 prompts (the default limit) of a few short
# cells each take a few MB; this leaves room for long texts without letting a file fill memory.
MAX_DATA_FILE_BYTES = 256 * 2**20


def read_rows(source: ir.FileSource) -> list[dict[str, Value]]:
    path = Path(source.path)
    try:
        size = path.stat().st_size
        if size > MAX_DATA_FILE_BYTES:
            raise DataError(
                f"{source.written} is {size:,} bytes, more than the {MAX_DATA_FILE_BYTES:,} a data file may hold (the data file size limit)",
                source.span,
                "split the rows across prompt sets, or keep the rows the spec uses",
            )
        data = read_confined(path, Path(source.root) if source.root else None, MAX_DATA_FILE_BYTES, "data file")
    except OSError as error:
        raise DataError(f"cannot read {source.written}: {error.strerror}", source.span, "paths are relative to the spec file's folder") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # as a spec's: Excel's "CSV UTF-8" starts with one, which would rename the first column
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{source.written} line {line}: byte 0x{data[error.start]:02x} is not UTF-8 text", source.span, "save the data file as UTF-8"
        ) from None
    return _jsonl_rows(text, source) if path.suffix.lower() == ".jsonl" else _csv_rows(text, source)


def _jsonl_rows(text: str, source: ir.FileSource) -> list[dict[str, Value]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{source.written} line {number}: not JSON ({error.msg})", source.span, "a .jsonl file holds one JSON object per line"
            ) from None
        except (ValueError, RecursionError):  # integers over 4300 digits; nesting past Python's stack
            raise DataError(
                f"{source.written} line {number}: a number too long or nesting too deep for a prompt row",
                source.span,
                'rows are flat objects like {"s1": 3, "answer": 7}',
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{source.written} line {number}: expected an object, got {type(row).__name__}",
                source.span,
                'write rows like {"s1": 3, "answer": 7}',
            )
        rows.append({key: _json_value(value, key, number, source) for key, value in row.items()})
    return rows


def _json_value(value: object, key: str, number: int, source: ir.FileSource) -> Value:
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise DataError(
        f"{source.written} line {number}: column '{key}' holds {json.dumps(value)}",
        source.span,
        "values are numbers, strings, or lists of them (for token sets)",
    )


def _csv_rows(text: str, source: ir.FileSource) -> list[dict[str, Value]]:
    rows = []
    reader = csv.DictReader(text.splitlines())
    try:
        for row in reader:
            rows.append(_csv_row(row, reader, source))
    except csv.Error as error:  # e.g. a cell over the csv module's field size limit
        raise DataError(
            f"{source.written} line {reader.line_num + 1}: {error}",
            source.span,  # the row being read
            "cells are slot values and answers: a few words each",
        ) from None
    return rows


def _csv_row(row: dict, reader: csv.DictReader, source: ir.FileSource) -> dict[str, Value]:
    if None in row or None in row.values():  # DictReader's marks for extra and missing cells
        raise DataError(
            f"{source.written} line {reader.line_num}: {len(reader.fieldnames or [])} columns in the "
            "header but a different number of cells here",
            source.span,
            "give every row one cell per header column",
        )
    return {key: _csv_value(cell) for key, cell in row.items()}


def _csv_value(cell: str) -> Value:
    """Integers stay integers only when that loses nothing: '01' stays text, '7' becomes 7."""
    try:
        number = int(cell)
    except ValueError:  # not an integer, or one over 4300 digits: text
        return cell
    return number if str(number) == cell else cell
