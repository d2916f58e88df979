"""Turn Lark's "unexpected token" into a sentence a researcher can act on."""

from __future__ import annotations

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

STATEMENTS = ("circuit", "use", "list", "prompts", "corrupt", "metric", "ablate", "role", "mlp", "edge", "expect", "set", "hypothesis")
PROMPT_STATEMENTS = ("template", "for", "from", "generate", "corrupt", "metric", "set", "NAME = ...")
HYPOTHESIS_STATEMENTS = ("NAME = ...", "answer = ...", "NODES [at POSITIONS] carries NAME")
CARRIER = 'a carrier is written NODES [at POSITIONS] carries NAME, e.g. 0.0, 0.2 at end carries s3 or "mover" carries s4'

_READABLE = {
    "NAME": "a name",
    "INT": "a whole number",
    "DECIMAL": "a head like 9.1 (or a decimal number)",
    "STRING": 'a "string"',
    "_NL": "end of line",
    "$END": "end of file",
    "LAYER_STAR": "L.* (all heads of layer L)",
    "COMPARATOR": "a comparison (>=, <=, >, <)",
    "DISTINCT": "distinct",
    "CYCLIC": "cyclic",
}


def hint_for_unexpected(error: UnexpectedInput, source: str, parser: Lark) -> tuple[str, str]:
    """(message, hint) for a Lark syntax error."""
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, source)
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, parser)
    return "unexpected end of file", "a block or statement is not finished; check for a missing '}'"


def _unexpected_character(error: UnexpectedCharacters, source: str) -> tuple[str, str]:
    char = error.char
    if char == '"':
        return "unterminated string", 'close the string with " on the same line'
    if char == ".":
        return "unexpected '.'", "numbers in prompts are whole numbers; decimals are for thresholds and settings"
    if char == "{":
        return "unexpected '{'", "only prompts and corrupt blocks open with '{'; template slots go inside strings"
    return f"unexpected character {char!r}", "remove it; comments start with #"


def _unexpected_token(error: UnexpectedToken, parser: Lark) -> tuple[str, str]:
    token, expected = error.token, set(error.expected)
    found = "end of file" if token.type == "$END" else "end of line" if token.type == "_NL" else repr(str(token))
    specific = _specific_hint(token.type, expected)
    if specific:
        return f"unexpected {found}", specific
    wanted = sorted(_describe(name, parser) for name in expected)
    message = f"unexpected {found}; expected {_join(wanted)}"
    return message, "see docs/language.md for the statement's form"


def _specific_hint(token_type: str, expected: set[str]) -> str | None:
    if token_type == "$END" and "RBRACE" in expected:
        return "a block is not closed: add the missing '}'"
    if "DECIMAL" in expected and "LAYER_STAR" in expected and token_type == "INT":
        return 'a head is written LAYER.HEAD, e.g. 9.1; for MLPs write role "name": mlp 9'
    if {"CIRCUIT", "PROMPTS", "ROLE"} <= expected:
        return f"a statement starts with one of: {', '.join(STATEMENTS)}"
    if {"TEMPLATE", "FOR", "GENERATE"} <= expected:
        return f"inside prompts {{ }} a line is one of: {', '.join(PROMPT_STATEMENTS)}"
    if {"LAYER_STAR", "STRING", "NAME"} <= expected:  # only a hypothesis block's lines start with any of these
        return f"inside hypothesis {{ }} a line is one of: {', '.join(HYPOTHESIS_STATEMENTS)}"
    if "CARRIES" in expected:
        return CARRIER
    if token_type == "ON" and "COMPARATOR" not in expected:
        return "`on SET` comes before the comparison: expect CLAIM on SET >= NUMBER"
    if "EQUAL" in expected and token_type not in ("EQUAL", "_NL"):
        return "an assignment is written NAME = EXPRESSION"
    if "CIRCUITLANG" in expected:
        return "a spec starts with the version header: circuitlang 1"
    if token_type == "DECIMAL" and "COMPARATOR" in expected:
        return "write the comparison before the number, e.g. expect faithfulness >= 0.8"
    return None


def _describe(terminal: str, parser: Lark) -> str:
    if terminal in _READABLE:
        return _READABLE[terminal]
    try:
        pattern = parser.get_terminal(terminal).pattern
    except KeyError:
        return terminal
    return repr(pattern.value) if pattern.type == "str" else terminal


def _join(words: list[str]) -> str:
    if len(words) > 6:
        return ", ".join(words[:6]) + f" or one of {len(words) - 6} more"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]
