"""Table cells as plain text: names written in a spec (roles, prompt sets, claims) are shown as
written, never read as rich markup (`[bold]`) or emoji codes (`:x:`)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text


def plain_cells(*cells: RenderableType) -> list[RenderableType]:
    return [Text(cell) if isinstance(cell, str) else cell for cell in cells]
