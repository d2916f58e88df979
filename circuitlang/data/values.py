"""The expression evaluator: IR expressions -> values, for one prompt at a time.

Values are ints, strings, or tuples of them (ranges, lists, token sets). Nothing here calls
Python's `eval`; each operator is implemented and checked explicitly, and every failure is a
`DataError` naming the prompt and pointing at the expression.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from circuitlang.errors import DataError, Span
from circuitlang.ir import models as ir
from circuitlang.ir.limits import limit_error
from circuitlang.ir.stdlib import MAX_INT_DIGITS

Scalar = Union[int, str]
Value = Union[Scalar, tuple[Scalar, ...]]


@dataclass(frozen=True)
class NamedValues:
    values: tuple[Scalar, ...]
    cyclic: bool


@dataclass
class Env:
    """What one prompt's expressions can see. `label` names the prompt in error messages."""

    variables: dict[str, Value]
    lists: Mapping[str, NamedValues]
    rng: random.Random
    label: str
    generator: Mapping[str, Value] = field(default_factory=dict)  # the parameters of a `generate` line
    settings: ir.Settings = field(default_factory=ir.Settings)  # the spec's limits


def evaluate(expr: ir.Expr, env: Env) -> Value:
    match expr:
        case ir.IntE(value=value) | ir.StrE(value=value):
            return value
        case ir.VarE(name=name, span=span):
            return _lookup(name, span, env)
        case ir.IndexE():
            return _index(expr, env)
        case ir.CallE(function=function, args=args, span=span):
            return _call(function, tuple(evaluate(a, env) for a in args), span, env)
        case ir.ListE(items=items):
            return tuple(_scalar(evaluate(i, env), i.span, env) for i in items)
        case ir.BinE(op=op, left=left, right=right, span=span):
            return _binary(op, evaluate(left, env), evaluate(right, env), span, env)
        case ir.NegE(operand=operand, span=span):
            return -_int(evaluate(operand, env), span, env)
        case ir.RangeE():
            return tuple(_bounded_range(expr, env))
        case ir.RandomE(source=source, span=span):
            # A range is drawn from without being made: choice() picks the same item from a range
            # as from its tuple, so `random 1..99` on every prompt costs one draw, not 99 values.
            pool = _bounded_range(source, env) if isinstance(source, ir.RangeE) else evaluate(source, env)
            return env.rng.choice(_pool(pool, span, env))
    raise TypeError(f"unhandled expression {expr!r}")


def range_values(expr: ir.RangeE, env: Env) -> range:
    """The values of `a..b`, not yet made: a loop enumerates them one by one, as far as it needs."""
    low = _int(evaluate(expr.start, env), expr.start.span, env)
    return range(low, _int(evaluate(expr.stop, env), expr.stop.span, env) + 1)


def _bounded_range(expr: ir.RangeE, env: Env) -> range:
    values = range_values(expr, env)
    if values.stop - values.start > env.settings.max_range:  # not len(): it overflows past 2**63
        raise limit_error(
            "range length",
            f"{env.label}: the range {values.start}..{values.stop - 1} has {values.stop - values.start} values, more than {{limit}}",
            env.settings,
            expr.span,
            "use a smaller range",
        )
    return values


def draw_distinct(expr: ir.RandomE, count: int, env: Env) -> list[Scalar]:
    """`a, b, c = random pool distinct`: `count` different values from the pool."""
    pool = _pool(evaluate(expr.source, env), expr.span, env)
    if len(set(pool)) < count:
        raise DataError(
            f"{env.label}: cannot draw {count} distinct values from {len(set(pool))}", expr.span, "widen the range or list, or drop `distinct`"
        )
    return env.rng.sample(sorted(set(pool), key=str), count)


def _pool(value: Value | range, span: Span, env: Env) -> tuple[Scalar, ...] | range:
    if not isinstance(value, (tuple, range)) or not value:
        shown = tuple(value) if isinstance(value, range) else value  # an empty range: ()
        raise DataError(f"{env.label}: `random` needs a non-empty range or list, got {shown!r}", span, "write e.g. random 1..99 or random names")
    return value


def _lookup(name: str, span: Span, env: Env) -> Value:
    if name in env.variables:
        return env.variables[name]
    if name in env.lists:
        return env.lists[name].values
    raise DataError(f"{env.label}: unknown name '{name}'", span, "a data file must provide this column, or assign it in the prompts block")


def _index(expr: ir.IndexE, env: Env) -> Scalar:
    named = env.lists.get(expr.list_name)
    if named is None:
        raise DataError(f"{env.label}: unknown list '{expr.list_name}'", expr.span, "declare it with `list`")
    position = _int(evaluate(expr.index, env), expr.index.span, env)
    size = len(named.values)
    if named.cyclic:
        return named.values[position % size]
    if not 0 <= position < size:
        raise DataError(
            f"{env.label}: index {position} is outside list '{expr.list_name}' (0-{size - 1})",
            expr.span,
            "declare the list `cyclic` to wrap around, or narrow the loop range",
        )
    return named.values[position]


def _binary(op: str, left: Value, right: Value, span: Span, env: Env) -> Value:
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > env.settings.max_text:  # `s = s + s` on every line doubles it
            raise limit_error(
                "text value length", f"{env.label}: this text has {len(left) + len(right):,} characters, more than {{limit}}", env.settings, span
            )
        return left + right
    a, b = _int(left, span, env), _int(right, span, env)
    if op in ("//", "%") and b == 0:
        raise DataError(f"{env.label}: division by zero", span, "check the right-hand side")
    operations: dict[str, Callable[[int, int], int]] = {
        "+": lambda x, y: x + y,
        "-": lambda x, y: x - y,
        "*": lambda x, y: x * y,
        "//": lambda x, y: x // y,
        "%": lambda x, y: x % y,
    }
    return _bounded(operations[op](a, b), span, env)


INT_BOUND = 10**MAX_INT_DIGITS  # an integer with more digits cannot even be printed into a prompt


def _bounded(value: int, span: Span, env: Env) -> int:
    """Refuse a result past the integer limit: `x = x * x` on every line squares it."""
    if -INT_BOUND < value < INT_BOUND:
        return value
    raise limit_error(
        "integer digits",
        f"{env.label}: this arithmetic makes a number of more than {{limit}} digits",
        env.settings,
        span,
        "numbers in a prompt are a few digits long",
    )


def _int(value: Value, span: Span, env: Env) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DataError(
        f"{env.label}: expected a number, got {value!r}",
        span,
        "arithmetic works on numbers; join text with + only between two strings, use str(x) to convert",
    )


def _scalar(value: Value, span: Span, env: Env) -> Scalar:
    if isinstance(value, tuple):
        raise DataError(f"{env.label}: lists cannot be nested", span, "flatten the list")
    return value


def _call(function: str, args: tuple[Value, ...], span: Span, env: Env) -> Value:
    if function == "len":
        if not isinstance(args[0], tuple):
            raise DataError(f"{env.label}: len() needs a list", span, "e.g. len(months)")
        return len(args[0])
    if function == "pad":
        width = _int(args[1], span, env)
        if width > env.settings.max_text:
            raise limit_error(
                "pad width",
                f"{env.label}: pad to {width} characters, more than {{limit}}",
                env.settings,
                span,
                "pad makes numbers of a few digits: pad(i, 2) gives 01, 02, ...",
            )
        return _map(args[0], lambda x: str(_int(x, span, env)).zfill(width))
    text_functions: dict[str, Callable[[str], str]] = {
        "str": str,
        "upper": str.upper,
        "lower": str.lower,
        "capitalize": lambda s: s[:1].upper() + s[1:],
    }
    return _map(args[0], lambda x: text_functions[function](str(x)))


def _map(value: Value, function: Callable[[Scalar], Scalar]) -> Value:
    return tuple(function(v) for v in value) if isinstance(value, tuple) else function(value)
