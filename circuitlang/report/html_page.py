"""Markup for the HTML report's pages (report/html.py, and the failure page of report/failures.py):
escaping by construction and the page around a body. Light (standard library only), as
failures.py must be: an error page is written where the engine's extras are not installed.

Every text is escaped where it is placed unless it is `Html`, markup built from escaped parts;
the spec is untrusted input. The page's Content-Security-Policy forbids every fetch, and every
style or script but the page's own (html_theme.py, admitted by their hashes).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Iterable

from circuitlang.report.html_theme import SCRIPT, STYLE


class Html(str):
    """Markup built from escaped parts (by the functions here): placed as it is."""


def text(value: object) -> Html:
    """Any value as page text: escaped unless it is `Html` already."""
    return value if isinstance(value, Html) else Html(escape(str(value), quote=True))


def element(name: str, content: object = "", **attributes: object) -> Html:
    """`<name attributes>content</name>`; `class_` gives `class`, `data_edge` gives `data-edge`;
    a None or False attribute is left out. A list or tuple of contents is joined."""
    parts = [name]
    for key, value in attributes.items():
        if value is None or value is False:
            continue
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{text(value)}"')
    inner = "".join(map(text, content)) if isinstance(content, (list, tuple)) else text(content)
    return Html(f"<{' '.join(parts)}>{inner}</{name}>")


def table(columns: Iterable[str], rows: Iterable[Iterable[object]], caption: str = "", **attributes: object) -> Html:
    head = element("thead", element("tr", [element("th", column) for column in columns]))
    body = element("tbody", [row if isinstance(row, Html) else element("tr", [element("td", cell) for cell in row]) for row in rows])
    return element("table", [element("caption", caption) if caption else "", head, body], **attributes)


def page(title: str, body: Iterable[Html]) -> str:
    """The document: its Content-Security-Policy forbids every fetch and every style or script but
    the page's own, so that even a mistake in escaping could not run a spec's text as code."""
    policy = (
        f"default-src 'none'; style-src '{_digest(STYLE)}'; script-src '{_digest(SCRIPT)}'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    head = [
        Html('<meta charset="utf-8">'),
        Html(f'<meta http-equiv="Content-Security-Policy" content="{text(policy)}">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        element("title", title),
        Html(f"<style>{STYLE}</style>"),
    ]
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", *head, "</head>", "<body>", *body, f"<script>{SCRIPT}</script>"]
    lines += ["</body>", "</html>"]
    return "\n".join(lines) + "\n"


def _digest(content: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(content.encode("utf-8")).digest()).decode("ascii")
