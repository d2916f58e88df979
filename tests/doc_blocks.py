"""Fenced blocks of the documentation, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path


def blocks(markdown: Path, language: str) -> list[tuple[int, str]]:
    """(line of the opening fence, body) of every ```language block, in order."""
    text = markdown.read_text()
    found = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M):
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def run_python_blocks(markdown: Path, namespace: dict | None = None) -> dict:
    """Execute the Python blocks in order in one namespace, as a notebook would; a failure names
    the block's line in the document."""
    namespace = {} if namespace is None else namespace
    for line, body in blocks(markdown, "python"):
        # pad with blank lines so a traceback's line numbers are the document's
        code = compile("\n" * line + body, str(markdown), "exec")
        exec(code, namespace)  # noqa: S102 - the project's own documentation
    return namespace
