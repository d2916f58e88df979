"""Text the tokenizer does not know, and where the spec wrote it.

A word outside a vocabulary-based tokenizer's vocabulary (WordLevel, WordPiece, SentencePiece's
Unigram, BPE without byte fallback) becomes its unknown token (`<|unk|>`, `[UNK]`, `<unk>`). The
prompt keeps its length and the answer stays one token, so no other check notices: the model would
be run, and the answer scored, on the unknown token instead of the word, and the numbers would look
plausible. A misspelt "Febuary" in a month list is the typical case. Tokenization therefore treats
any unknown token as an error, reported where the word was written: the list item or string literal
that holds it, else the line that assigns the slot or field. Byte-level BPE (GPT-2) and tokenizers
with byte fallback never produce an unknown token, so nothing changes for them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Sequence

from circuitlang.errors import Span
from circuitlang.ir import models as ir

Offsets = Sequence[tuple[int, int]]  # (start, end) character offsets of each token


def unknown_token_id(tokenizer: Any) -> int | None:
    """The id a `tokenizers.Tokenizer` gives text it does not know; None when it has no such token."""
    token = getattr(tokenizer.model, "unk_token", None)  # WordLevel, WordPiece, BPE
    if token:
        return tokenizer.token_to_id(token)
    if type(tokenizer.model).__name__ == "Unigram":  # SentencePiece: the id is only in its serialization
        unknown = json.loads(tokenizer.to_str()).get("model", {}).get("unk_id")
        return unknown if isinstance(unknown, int) else None
    return None


def unknown_spans(ids: Sequence[int], offsets: Offsets, unknown_id: int | None) -> list[tuple[int, int]]:
    """Character spans of the text that became the unknown token."""
    if unknown_id is None:
        return []
    return [offsets[i] for i, token in enumerate(ids) if token == unknown_id]


def slot_at(slot_spans: Iterable[tuple[str, tuple[int, int]]], start: int, end: int) -> str | None:
    """The slot whose text overlaps characters start..end of a prompt; None for the template's own text."""
    for slot, (slot_start, slot_end) in slot_spans:
        if slot_start < max(end, start + 1) and start < slot_end:
            return slot
    return None


def written_at(word: str, roots: Sequence[ir.Expr], prompt_set: ir.PromptSet, lists: Sequence[ir.NamedList]) -> Span | None:
    """Where the spec wrote `word`: a string literal or declared list item reachable from the
    expressions `roots` (through loop variables and earlier assignments), else, when there are
    such expressions, any declared list item equal to it; None when it came from elsewhere (a data
    file, a generator, a built-in list, arithmetic)."""
    declared = {named.name: named for named in lists}
    for expr in _reachable(roots, prompt_set):
        if isinstance(expr, ir.StrE) and expr.value == word:
            return expr.span
        named = _list_named(expr, declared)
        if named is not None and (span := _item_span(named, word)) is not None:
            return span
    if not roots:  # a data file's or a generator's word: an equal list item elsewhere is not where it came from
        return None
    return next((span for named in lists if (span := _item_span(named, word)) is not None), None)


def _reachable(roots: Sequence[ir.Expr], prompt_set: ir.PromptSet) -> Iterator[ir.Expr]:
    """Every node of `roots`, and of the loop sources and assignments their variables name."""
    pending, seen = list(roots), set()
    while pending:
        for expr in ir.subexpressions(pending.pop(0)):
            yield expr
            if isinstance(expr, ir.VarE) and expr.name not in seen:
                seen.add(expr.name)
                pending.extend(loop.source for loop in prompt_set.loops if loop.var == expr.name)
                pending.extend(a.value for a in prompt_set.assignments if expr.name in a.targets)


def _list_named(expr: ir.Expr, declared: dict[str, ir.NamedList]) -> ir.NamedList | None:
    name = expr.list_name if isinstance(expr, ir.IndexE) else expr.name if isinstance(expr, ir.VarE) else None
    return declared.get(name) if name is not None else None


def _item_span(named: ir.NamedList, word: str) -> Span | None:
    for value, span in zip(named.values, named.value_spans):
        if str(value) == word:
            return span
    return None
