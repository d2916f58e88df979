"""Lowering of top-level `set key = value` lines into `Settings`."""

from __future__ import annotations

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import SPEC_SETTINGS

# Open intervals for numeric settings: a confidence of 95 is a percentage typed by mistake.
FLOAT_RANGES = {"confidence": (0.0, 1.0), "minimality_threshold": (-1e-12, float("inf"))}


def lower_settings(items: list[ast.Item], errors: list[CircuitlangError]) -> ir.Settings:
    values: dict[str, object] = {}
    for decl in (item for item in items if isinstance(item, ast.SetDecl)):
        key = decl.key.name
        if key not in SPEC_SETTINGS:
            errors.append(SpecError(f"unknown setting '{key}'", decl.key.span,
                                    f"settings: {', '.join(SPEC_SETTINGS)}"))
        elif key in values:
            errors.append(SpecError(f"'{key}' is set twice", decl.key.span, "keep one of the two lines"))
        else:
            value = _setting_value(key, decl.value, errors)
            if value is not None:
                values[key] = value
    return ir.Settings(**values)


def _setting_value(key: str, value: ast.SettingValue, errors: list[CircuitlangError]) -> object | None:
    expected = SPEC_SETTINGS[key]
    if isinstance(expected, tuple):
        word = value.name if isinstance(value, ast.Var) else None
        if word in expected:
            return word
        errors.append(SpecError(f"{key} is one of {', '.join(expected)}", value.span, f"set {key} = {expected[0]}"))
        return None
    raw = getattr(value, "value", None)
    if expected is float and isinstance(raw, (int, float)) and not isinstance(value, (ast.StrLit, ast.Var)):
        low, high = FLOAT_RANGES.get(key, (float("-inf"), float("inf")))
        if not low < raw < high:
            errors.append(SpecError(f"{key} must be between {low:g} and {high:g}", value.span,
                                    f"for example: set {key} = {ir.Settings().model_dump()[key]}"))
            return None
        return float(raw)
    if expected is int and isinstance(value, ast.IntLit):
        minimum = 1 if key in ("bootstrap", "batch_size", "top_k") else 0
        if raw < minimum:
            errors.append(SpecError(f"{key} must be {minimum} or more", value.span, f"for example: set {key} = {minimum}"))
            return None
        return raw
    errors.append(SpecError(f"{key} must be {'an integer' if expected is int else 'a number'}", value.span,
                            f"for example: set {key} = {ir.Settings().model_dump()[key]}"))
    return None
