"""Reports as tidy tables: one row per observation, one column per variable.

A number with a confidence interval becomes three columns (`faithfulness`, `faithfulness_low`,
`faithfulness_high`), so a table filters, sorts and plots without unpacking objects. Every table
names its prompt set in a column, so the tables of several prompt sets (or several reports)
concatenate. The table is a pandas DataFrame when pandas is installed and a numpy structured
array otherwise; `kind=` chooses explicitly ("pandas", "numpy", or "records": a list of dicts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from circuitlang.results.estimate import Estimate

if TYPE_CHECKING:
    from circuitlang.results.patch_report import PatchReport
    from circuitlang.results.report import PromptSetReport, Report

Row = dict[str, Any]
KINDS = ("auto", "pandas", "numpy", "records")


def estimate_columns(name: str, estimate: Estimate | None) -> Row:
    """`name`, `name_low`, `name_high`; NaN where the number was not computed."""
    if estimate is None:
        return {name: np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan}
    return {name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high}


# ---- the Report's tables, one function per table ---------------------------------------------------


def _faithfulness(report: PromptSetReport) -> list[Row]:
    numbers = report.faithfulness
    row: Row = {"prompt_set": report.name, "prompts": report.prompts, "metric": report.metric}
    for name in ("f_model", "f_circuit", "f_empty", "faithfulness", "normalized_faithfulness"):
        row |= estimate_columns(name, getattr(numbers, name))
    return [row]


def _completeness(report: PromptSetReport) -> list[Row]:
    return [
        {
            "prompt_set": report.name,
            "source": subset.source,
            "removed": " ".join(subset.nodes),
            "size": len(subset.nodes),
            **estimate_columns("incompleteness", subset.score),
        }
        for subset in report.completeness.sets
    ]


def _minimality(report: PromptSetReport) -> list[Row]:
    return [
        {
            "prompt_set": report.name,
            "node": row.node,
            "role": row.role,
            **estimate_columns("minimality", row.score),
            "worst_set": " ".join(row.worst_set),
            "needed": row.needed,
        }
        for row in report.minimality
    ]


def _edges(report: PromptSetReport) -> list[Row]:
    return [
        {
            "prompt_set": report.name,
            "edge": edge.edge,
            "line": edge.line,
            **estimate_columns("effect", edge.effect),
            "needed": edge.needed,
            "note": edge.note,
        }
        for edge in report.edges
    ]


def _audit(report: PromptSetReport) -> list[Row]:
    if report.audit is None:
        return []
    return [
        {
            "prompt_set": report.name,
            "scope": scope,
            "sender": missing.sender,
            "receiver": missing.receiver,
            **estimate_columns("effect", missing.effect),
        }
        for scope, found in (("edge", report.audit.edges), ("node", report.audit.nodes))
        for missing in found
    ]


def _node_scores(report: PromptSetReport) -> list[Row]:
    return [
        {
            "prompt_set": report.name,
            "node": row.node,
            "role": row.role,
            **estimate_columns("direct_logit", row.direct_logit),
            **estimate_columns("copy_score", row.copy_score),
            **estimate_columns("next_score", row.next_score),
        }
        for row in report.node_scores
    ]


def _interchange(report: PromptSetReport) -> list[Row]:
    return [
        {
            "prompt_set": report.name,
            "target": score.target,
            "variable": score.variable,
            "nodes": " ".join(score.nodes),
            "pairs": score.pairs,
            **estimate_columns("iia", score.iia),
            **estimate_columns("graded_iia", score.graded_iia),
            **estimate_columns("baseline_iia", score.baseline_iia),
        }
        for score in report.interchange
    ]


def _scrubbing(report: PromptSetReport) -> list[Row]:
    scrubbing = report.scrubbing
    if scrubbing is None:
        return []
    row: Row = {"prompt_set": report.name, "prompts": scrubbing.prompts, "sites": scrubbing.sites}
    for name in ("f_model", "f_scrubbed", "f_random", "recovered"):
        row |= estimate_columns(name, getattr(scrubbing, name))
    return [row]


# ---- the columns of each table, so that a table with no rows still has them -------------------------


def _estimate(name: str) -> list[tuple[str, type]]:
    return [(name, float), (f"{name}_low", float), (f"{name}_high", float)]


def _estimates(*names: str) -> list[tuple[str, type]]:
    return [column for name in names for column in _estimate(name)]


Schema = list[tuple[str, type]]
TABLE_SCHEMAS: dict[str, Schema] = {
    "claims": [
        ("prompt_set", str),
        ("line", int),
        ("claim", str),
        ("target", str),
        ("quantity", str),
        *_estimate("value"),
        ("op", str),
        ("threshold", float),
        ("passed", bool),
        ("margin", float),
        ("note", str),
    ],
    "faithfulness": [
        ("prompt_set", str),
        ("prompts", int),
        ("metric", str),
        *_estimates("f_model", "f_circuit", "f_empty", "faithfulness", "normalized_faithfulness"),
    ],
    "completeness": [("prompt_set", str), ("source", str), ("removed", str), ("size", int), *_estimate("incompleteness")],
    "minimality": [("prompt_set", str), ("node", str), ("role", str), *_estimate("minimality"), ("worst_set", str), ("needed", bool)],
    "edges": [("prompt_set", str), ("edge", str), ("line", int), *_estimate("effect"), ("needed", bool), ("note", str)],
    "audit": [("prompt_set", str), ("scope", str), ("sender", str), ("receiver", str), *_estimate("effect")],
    "node_scores": [("prompt_set", str), ("node", str), ("role", str), *_estimates("direct_logit", "copy_score", "next_score")],
    "interchange": [
        ("prompt_set", str),
        ("target", str),
        ("variable", str),
        ("nodes", str),
        ("pairs", int),
        *_estimates("iia", "graded_iia", "baseline_iia"),
    ],
    "scrubbing": [("prompt_set", str), ("prompts", int), ("sites", int), *_estimates("f_model", "f_scrubbed", "f_random", "recovered")],
    "patch": [
        ("sweep", str),
        ("kind", str),
        ("node", str),
        ("position", str),
        ("row", str),
        ("column", str),
        ("delta", float),
        ("stderr", float),
        ("normalized", float),
    ],
}


PER_PROMPT_SET: dict[str, Callable[[PromptSetReport], list[Row]]] = {
    "faithfulness": _faithfulness,
    "completeness": _completeness,
    "minimality": _minimality,
    "edges": _edges,
    "audit": _audit,
    "node_scores": _node_scores,
    "interchange": _interchange,
    "scrubbing": _scrubbing,
}
REPORT_TABLES = ("claims", *PER_PROMPT_SET)


def _claims(report: Report) -> list[Row]:
    return [
        {
            "prompt_set": claim.prompt_set,
            "line": claim.line,
            "claim": claim.claim,
            "target": claim.target,
            "quantity": claim.quantity,
            **estimate_columns("value", claim.value),
            "op": claim.op,
            "threshold": claim.threshold,
            "passed": claim.passed,
            "margin": np.nan if claim.margin is None else claim.margin,
            "note": claim.note,
        }
        for claim in report.claims
    ]


def report_rows(report: Report, table: str) -> list[Row]:
    if table == "claims":
        return _claims(report)
    if table not in PER_PROMPT_SET:
        raise ValueError(f"no table {table!r}: a report has the tables {', '.join(REPORT_TABLES)}")
    return [row for prompt_set in report.prompt_sets for row in PER_PROMPT_SET[table](prompt_set)]


def patch_rows(report: PatchReport) -> list[Row]:
    """Every cell of every sweep: its node and position, the matrix's row and column, in the
    metric's units and normalized."""
    rows = []
    for matrix in report.matrices:
        for i, sender in enumerate(matrix.rows):
            for j, column in enumerate(matrix.columns):
                node, position = matrix.node_and_position(sender, column)
                rows.append(
                    {
                        "sweep": matrix.name,
                        "kind": matrix.kind,
                        "node": node,  # as a spec writes it: "0.2", not ("layer 0", "head 2")
                        "position": position,
                        "row": sender,
                        "column": column,
                        "delta": float(matrix.delta[i, j]),
                        "stderr": float(matrix.stderr[i, j]),
                        "normalized": float(matrix.normalized[i, j]),
                    }
                )
    return rows


# ---- rows -> a table ---------------------------------------------------------------------------------


def tidy(rows: list[Row], kind: str = "auto", schema: Schema | None = None) -> Any:
    """The rows as a table of `kind`. `schema` (a table's columns and types) gives a table with no
    rows its columns: a report whose audit did not run still has an audit table to filter."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "records":
        return rows
    if kind in ("auto", "pandas"):
        try:
            import pandas
        except ImportError:
            if kind == "pandas":
                raise ImportError("kind='pandas' needs pandas: pip install pandas") from None
        else:
            if not rows and schema:
                return pandas.DataFrame({name: pandas.Series(dtype=_EMPTY_DTYPES[kind_]) for name, kind_ in schema})
            return pandas.DataFrame.from_records(rows, columns=_columns(rows, schema) or None)
    return structured(rows, schema)


_EMPTY_DTYPES: dict[type, Any] = {str: object, int: np.int64, float: np.float64, bool: bool}


def structured(rows: list[Row], schema: Schema | None = None) -> np.ndarray:
    """A numpy structured array: floats, ints and bools keep their dtype, text is unicode."""
    if not rows and schema:
        return np.array([], dtype=[(name, "U1" if kind is str else _EMPTY_DTYPES[kind]) for name, kind in schema])
    columns = _columns(rows, schema)
    dtype = [(name, _dtype(row[name] for row in rows)) for name in columns]
    return np.array([tuple(row[name] for name in columns) for row in rows], dtype=dtype)


def _columns(rows: list[Row], schema: Schema | None = None) -> list[str]:
    if schema:
        return [name for name, _ in schema]
    return list(rows[0]) if rows else []


def _dtype(values: Iterable[Any]) -> Any:
    values = list(values)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return bool
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.int64
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return np.float64
    return f"U{max((len(str(v)) for v in values), default=1) or 1}"
