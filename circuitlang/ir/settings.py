"""Lowering of top-level `set key = value` lines into `Settings`."""

from __future__ import annotations

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import LIMIT_SETTINGS, SPEC_SETTINGS

# Integer settings reach torch and numpy (seeds, sizes, sample counts) as 64-bit integers, and
# the plan's memory estimate as floats: larger values are refused where they are written.
MAX_INT_SETTING = 2**63 - 1
# Random subsets drawn when the plan is made (completeness: that many; minimality: that many per
# circuit node), each one a further run of every prompt through the model.
SAMPLE_MAXIMA = {"completeness_samples": 1_000, "minimality_samples": 100}
# Open intervals for numeric settings: a confidence of 95 is a percentage typed by mistake.
FLOAT_RANGES = {"confidence": (0.0, 1.0), "minimality_threshold": (-1e-12, float("inf"))}


def lower_settings(items: list[ast.Item], errors: list[CircuitlangError]) -> ir.Settings:
    values: dict[str, str | float] = {}
    for decl in (item for item in items if isinstance(item, ast.SetDecl)):
        key = decl.key.name
        if key not in SPEC_SETTINGS:
            errors.append(SpecError(f"unknown setting '{key}'", decl.key.span, f"settings: {', '.join(SPEC_SETTINGS)}"))
        elif key in values:
            errors.append(SpecError(f"'{key}' is set twice", decl.key.span, "keep one of the two lines"))
        else:
            value = _setting_value(key, decl.value, errors)
            if value is not None:
                values[key] = value
    return ir.Settings.model_validate(values)  # the values were checked above, key by key


def _setting_value(key: str, value: ast.SettingValue, errors: list[CircuitlangError]) -> str | float | None:
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
            errors.append(
                SpecError(
                    f"{key} must be between {low:g} and {high:g}", value.span, f"for example: set {key} = {ir.Settings().model_dump()[key]}"
                )
            )
            return None
        return float(raw)
    if expected is int and isinstance(value, ast.IntLit):
        return _int_setting(key, value, errors)
    errors.append(
        SpecError(
            f"{key} must be {'an integer' if expected is int else 'a number'}",
            value.span,
            f"for example: set {key} = {ir.Settings().model_dump()[key]}",
        )
    )
    return None


def _int_setting(key: str, value: ast.IntLit, errors: list[CircuitlangError]) -> int | None:
    minimum = 1 if key in ("bootstrap", "batch_size", "top_k") or key in LIMIT_SETTINGS else 0
    if value.value < minimum:
        errors.append(SpecError(f"{key} must be {minimum} or more", value.span, f"for example: set {key} = {minimum}"))
        return None
    maximum = SAMPLE_MAXIMA.get(key, MAX_INT_SETTING)
    if value.value > maximum:
        shown = "2**63 - 1" if maximum == MAX_INT_SETTING else f"{maximum:,}"
        errors.append(SpecError(f"{key} must be at most {shown}", value.span, f"for example: set {key} = {ir.Settings().model_dump()[key]}"))
        return None
    return value.value
