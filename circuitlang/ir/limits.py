"""Limits (the table is `ir.stdlib.LIMITS`): the error every limit raises, and the checks of sizes
that are known once the spec is lowered (templates, literals, lists).

Sizes only expansion knows (prompts, ranges, text built by expressions) are checked in `data`,
as each value is made, with the same `limit_error`. Settings are lowered last, so these checks
run after them, on the lowered prompt sets and lists.
"""

from __future__ import annotations

from typing import Iterator

from circuitlang.errors import LimitError, Span
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import LIMITS


def limit_value(name: str, settings: ir.Settings) -> int:
    """The limit in force: its setting's value in this spec, or its fixed value."""
    limit = LIMITS[name]
    return getattr(settings, limit.setting) if limit.setting else limit.default


def limit_error(name: str, found: str, settings: ir.Settings, span: Span | None, advice: str = "") -> LimitError:
    """`found` says what the spec asks for, with `{limit}` where the limit's value goes ("the range
    1..200000 has 200000 values, more than {limit}"); the message names the limit, the hint says how
    to stay under it (`advice`) or to raise it."""
    limit = LIMITS[name]
    # replace, not format: `found` quotes the user's text, which may hold braces
    message = f"{found.replace('{limit}', f'{limit_value(name, settings):,}')} (the {limit.what} limit)"
    if limit.setting is None:
        return LimitError(message, span, f"{advice}; this limit cannot be raised" if advice else "this limit cannot be raised")
    raise_it = f"raise it with `set {limit.setting} = N`"
    return LimitError(message, span, f"{advice}, or {raise_it}" if advice else raise_it)


def static_limit_errors(lists: tuple[ir.NamedList, ...], prompt_sets: tuple[ir.PromptSet, ...], settings: ir.Settings) -> list[LimitError]:
    errors = [_list_error(len(named.values), named.span, settings) for named in lists if len(named.values) > settings.max_list]
    errors += [
        _literal_error(value, named.span, settings)
        for named in lists
        for value in named.values
        if isinstance(value, str) and len(value) > settings.max_text
    ]
    for prompt_set in prompt_sets:
        if len(prompt_set.answer_prefix) > settings.max_text:  # the setting's own span is not kept
            errors.append(_literal_error(prompt_set.answer_prefix, prompt_set.span, settings))
        errors.extend(_template_errors(prompt_set.templates, settings))
        errors.extend(_expression_errors(prompt_set, settings))
    return errors


def _template_errors(templates: tuple[ir.Template, ...], settings: ir.Settings) -> Iterator[LimitError]:
    for template in templates:
        if len(template.text) > settings.max_template:
            yield limit_error(
                "template length",
                f"this template has {len(template.text):,} characters, more than {{limit}}",
                settings,
                template.span,
                "split the text across slots",
            )
        if len(template.slots) > settings.max_slots:
            yield limit_error(
                "slots per template", f"this template has {len(template.slots):,} slots, more than {{limit}}", settings, template.span
            )


def _expression_errors(prompt_set: ir.PromptSet, settings: ir.Settings) -> Iterator[LimitError]:
    assignments = prompt_set.assignments + (prompt_set.corruption.assignments if prompt_set.corruption else ())
    roots = [loop.source for loop in prompt_set.loops] + [assignment.value for assignment in assignments]
    for expr in (node for root in roots for node in ir.subexpressions(root)):
        if isinstance(expr, ir.StrE) and len(expr.value) > settings.max_text:
            yield _literal_error(expr.value, expr.span, settings)
        elif isinstance(expr, ir.ListE) and len(expr.items) > settings.max_list:
            yield _list_error(len(expr.items), expr.span, settings)


def _list_error(size: int, span: Span, settings: ir.Settings) -> LimitError:
    return limit_error(
        "list length", f"this list has {size:,} items, more than {{limit}}", settings, span, "read long lists from a data file with `from`"
    )


def _literal_error(value: str, span: Span, settings: ir.Settings) -> LimitError:
    return limit_error("string literal length", f"this string has {len(value):,} characters, more than {{limit}}", settings, span)
