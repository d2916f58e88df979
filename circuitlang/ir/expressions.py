"""Lowering of expressions and templates: AST -> IR with names checked against a scope."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, Span, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import FUNCTIONS, POSITION_KEYWORDS
from circuitlang.ir.suggest import did_you_mean

_SLOT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Scope:
    """Names an expression may use: variables (loop vars, earlier assignments), and lists.
    `open_world` is set when a data file supplies columns we cannot see before expansion."""

    variables: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    open_world: bool = False


def lower_expr(expr: ast.Expr, scope: Scope, errors: list[CircuitlangError]) -> ir.Expr:
    """Translate one expression, appending an error for each unknown name or function."""
    match expr:
        case ast.IntLit(value, span):
            return ir.IntE(value=value, span=span)
        case ast.StrLit(value, span):
            return ir.StrE(value=value, span=span)
        case ast.Var(name, span):
            _check_var(name, span, scope, errors)
            return ir.VarE(name=name, span=span)
        case ast.Index(name, index, span):
            if name.name not in scope.lists:
                errors.append(_unknown_list(name, scope))
            return ir.IndexE(list_name=name.name, index=lower_expr(index, scope, errors), span=span)
        case ast.Call(function, args, span):
            _check_call(function, len(args), errors)
            return ir.CallE(function=function.name, args=tuple(lower_expr(a, scope, errors) for a in args), span=span)
        case ast.ListLit(items, span):
            return ir.ListE(items=tuple(lower_expr(i, scope, errors) for i in items), span=span)
        case ast.BinOp(op, left, right, span):
            return ir.BinE(op=op, left=lower_expr(left, scope, errors), right=lower_expr(right, scope, errors), span=span)
        case ast.Neg(operand, span):
            return ir.NegE(operand=lower_expr(operand, scope, errors), span=span)
        case ast.Range(start, stop, span):
            return ir.RangeE(start=lower_expr(start, scope, errors), stop=lower_expr(stop, scope, errors), span=span)
        case ast.Random(source, distinct, span):
            if distinct:
                errors.append(
                    SpecError(
                        "`distinct` draws several values at once, so it must be the whole right-hand side",
                        span,
                        "write e.g. a, b, c = random names distinct",
                    )
                )
            return ir.RandomE(source=lower_expr(source, scope, errors), distinct=False, span=span)
    raise TypeError(f"unhandled expression {expr!r}")  # grammar and AST are out of step


def lower_assigned(expr: ast.Expr, scope: Scope, errors: list[CircuitlangError]) -> ir.Expr:
    """The right-hand side of an assignment: the one place `random ... distinct` may stand."""
    if isinstance(expr, ast.Random) and expr.distinct:
        return ir.RandomE(source=lower_expr(expr.source, scope, errors), distinct=True, span=expr.span)
    return lower_expr(expr, scope, errors)


def _check_var(name: str, span: Span, scope: Scope, errors: list[CircuitlangError]) -> None:
    if name in scope.variables or name in scope.lists or scope.open_world:
        return
    known = sorted(scope.variables)
    errors.append(
        SpecError(
            f"unknown name '{name}'",
            span,
            did_you_mean(name, [*known, *scope.lists]) + f"names defined here: {', '.join(known)}"
            if known
            else did_you_mean(name, scope.lists) + "define it with a `for` loop or an assignment on an earlier line",
        )
    )


def _unknown_list(name: ast.Ident, scope: Scope) -> SpecError:
    known = ", ".join(sorted(scope.lists))
    return SpecError(
        f"unknown list '{name.name}'",
        name.span,
        did_you_mean(name.name, scope.lists) + f"declare it with `list {name.name} = [...]`; lists known here: {known}",
    )


def _check_call(function: ast.Ident, n_args: int, errors: list[CircuitlangError]) -> None:
    signature = FUNCTIONS.get(function.name)
    if signature is None:
        errors.append(
            SpecError(
                f"unknown function '{function.name}'",
                function.span,
                did_you_mean(function.name, FUNCTIONS) + f"functions: {', '.join(sorted(FUNCTIONS))}",
            )
        )
        return
    low, high, description = signature
    if not low <= n_args <= high:
        errors.append(SpecError(f"{function.name}() takes {low} argument(s), got {n_args}", function.span, description))


def lower_template(text: ast.StrLit) -> tuple[ir.Template, list[CircuitlangError]]:
    """Find `{slot}` placeholders; `{{` and `}}` are literal braces."""
    slots: list[str] = []
    errors: list[CircuitlangError] = []
    i, raw = 0, text.value
    while i < len(raw):
        char = raw[i]
        if raw.startswith(("{{", "}}"), i):
            i += 2
            continue
        if char == "}":
            errors.append(_template_error(text, i, "unmatched '}' in template", "write '}}' for a literal brace"))
        if char == "{":
            close = raw.find("}", i)
            name = raw[i + 1 : close] if close != -1 else ""
            if close == -1:
                errors.append(_template_error(text, i, "unclosed '{' in template", "close the slot with '}' or write '{{' for a literal brace"))
                break
            if not _SLOT_NAME.match(name):
                errors.append(_template_error(text, i, f"'{{{name}}}' is not a slot name", "slots are identifiers such as {s1} or {name}"))
            elif name in POSITION_KEYWORDS:
                errors.append(
                    _template_error(
                        text,
                        i,
                        f"'{{{name}}}' uses the reserved position name '{name}'",
                        "end and bos name the last and first tokens; rename the slot",
                    )
                )
            elif name in slots:
                errors.append(
                    _template_error(
                        text,
                        i,
                        f"slot '{{{name}}}' appears twice in the template",
                        "each slot names one position; use two slots with the same value",
                    )
                )
            else:
                slots.append(name)
            i = close
        i += 1
    if not slots and not errors:
        errors.append(SpecError("template has no slots", text.span, 'name the varying parts, e.g. template "{s1} {s2} {s3}"'))
    return ir.Template(text=raw, slots=tuple(slots), span=text.span), errors


def _template_error(text: ast.StrLit, offset: int, message: str, hint: str) -> SpecError:
    column = text.span.column + 1 + offset  # +1 for the opening quote
    span = Span(path=text.span.path, line=text.span.line, column=column, end_line=text.span.line, end_column=column + 1)
    return SpecError(message, span, hint)


def constant_value(expr: ast.Expr) -> ir.Value | None:
    """The value of a literal (or negated integer literal); None for anything computed."""
    match expr:
        case ast.IntLit(value, _) | ast.StrLit(value, _):
            return value
        case ast.Neg(ast.IntLit(value, _), _):
            return -value
    return None
