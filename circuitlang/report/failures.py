"""A verification that could not run, in every report format.

A spec, data or model error under `verify --format junit -o report.xml` must reach the JUnit
uploader, and one under `--format github` must become an annotation at its line: CI reads those
outputs, not stderr. Each format says the same: which file, where, what, and the exit code's
meaning. Light (no numpy, no torch): spec errors are found before the engine is imported.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

from circuitlang.errors import CircuitlangError, render_diagnostic


def failure_json(spec_path: str, errors: list[CircuitlangError], exit_code: int) -> str:
    return (
        json.dumps(
            {"schema_version": 1, "spec_path": spec_path, "passed": False, "exit_code": exit_code, "errors": [e.to_dict() for e in errors]},
            indent=2,
        )
        + "\n"
    )


def failure_junit(spec_path: str, errors: list[CircuitlangError], exit_code: int) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name={quoteattr("circuitlang " + spec_path)} tests="1" failures="0" errors="1" time="0">',
        f'  <testcase classname={quoteattr(spec_path)} name="verify">',
        f'    <error message={quoteattr(_first_line(errors))} type="exit {exit_code}">{escape(chr(10).join(map(str, errors)))}</error>',
        "  </testcase>",
        "</testsuite>",
    ]
    return "\n".join(lines) + "\n"


def failure_github(spec_path: str, errors: list[CircuitlangError], exit_code: int) -> str:
    lines = []
    for error in errors:
        where = f"file={error.span.path},line={error.span.line},col={error.span.column}" if error.span else f"file={spec_path}"
        message = error.message + (f" ({error.hint})" if error.hint else "")
        lines.append(f"::error {where},title=circuitlang {error.stage} error::{_escaped(message)}")
    return "\n".join(lines) + "\n"


def failure_markdown(spec_path: str, errors: list[CircuitlangError], exit_code: int) -> str:
    lines = [f"## circuitlang: {spec_path} (not verified: exit {exit_code})", ""]
    lines += [f"- `{e.span or spec_path}` {e.stage} error: {e.message}" + (f" — {e.hint}" if e.hint else "") for e in errors]
    return "\n".join(lines) + "\n"


def failure_html(spec_path: str, errors: list[CircuitlangError], exit_code: int) -> str:
    """The HTML report's page for a run that could not verify: the Markdown note's heading, and each
    error as a compiler shows it (its source line and caret), escaped like every text of the page."""
    from circuitlang.report.html_page import element, page

    title = f"circuitlang: {spec_path} (not verified: exit {exit_code})"
    items = [
        element("li", [element("code", str(e.span or spec_path)), f" {e.stage} error: {e.message}", element("pre", render_diagnostic(e))])
        for e in errors
    ]
    return page(title, [element("header", element("h1", title)), element("ul", items, class_="errors", id="errors")])


def _first_line(errors: list[CircuitlangError]) -> str:
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return str(errors[0]) + more if errors else "verification failed"


def _escaped(message: str) -> str:
    return message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


FAILURE_FORMATS = {"json": failure_json, "junit": failure_junit, "github": failure_github, "markdown": failure_markdown, "html": failure_html}
