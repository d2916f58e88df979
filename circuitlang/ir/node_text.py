"""Nodes written as text, as a spec writes them: `9.1`, `mlp 3` (or `mlp3`), `embed`, `logits`.

For the command line (`patch --receiver`) and the Python API, which take nodes as strings.
"""

from __future__ import annotations

import re

from circuitlang.ir import models as ir

NODE_FORMS = "L.H (a head), mlp L, embed or logits"
_HEAD = re.compile(r"(\d+)\.(\d+)")
_MLP = re.compile(r"mlp\s*(\d+)")


def parse_node(text: str) -> ir.Node | None:
    """The node `text` names, or None when it names none."""
    cleaned = text.strip().lower()
    if cleaned == "embed":
        return ir.EMBED
    if cleaned == "logits":
        return ir.LOGITS
    if match := _MLP.fullmatch(cleaned):
        return ir.MlpNode(layer=int(match[1]))
    if match := _HEAD.fullmatch(cleaned):
        return ir.HeadNode(layer=int(match[1]), head=int(match[2]))
    return None
