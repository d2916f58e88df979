"""Turn Lark's "unexpected token" into a sentence a researcher can act on."""

from __future__ import annotations

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken


def hint_for_unexpected(error: UnexpectedInput, source: str, parser: Lark) -> tuple[str, str]:
    return "syntax error", "check the statement against docs/language.md"
