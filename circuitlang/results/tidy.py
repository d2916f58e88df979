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
    """Every cell of every sweep: sender (row) x column, in the metric's units and normalized."""
    rows = []
    for matrix in report.matrices:
        for i, sender in enumerate(matrix.rows):
            for j, column in enumerate(matrix.columns):
                rows.append(
                    {
                        "sweep": matrix.name,
                        "kind": matrix.kind,
                        "row": sender,
                        "column": column,
                        "delta": float(matrix.delta[i, j]),
                        "stderr": float(matrix.stderr[i, j]),
                        "normalized": float(matrix.normalized[i, j]),
                    }
                )
    return rows


# ---- rows -> a table ---------------------------------------------------------------------------------


def tidy(rows: list[Row], kind: str = "auto") -> Any:
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
            return pandas.DataFrame.from_records(rows, columns=_columns(rows) or None)
    return structured(rows)


def structured(rows: list[Row]) -> np.ndarray:
    """A numpy structured array: floats, ints and bools keep their dtype, text is unicode."""
    columns = _columns(rows)
    dtype = [(name, _dtype(row[name] for row in rows)) for name in columns]
    return np.array([tuple(row[name] for name in columns) for row in rows], dtype=dtype)


def _columns(rows: list[Row]) -> list[str]:
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
