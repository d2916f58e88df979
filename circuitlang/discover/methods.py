"""The discovery methods, one record each: the command line's choices and help, the dispatch in
`discover.search` and the docs read this list (light: no torch, so `--help` stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # as written after --method
    search: str  # the function of circuitlang.discover.search that runs it
    rows: str  # the function there that counts its prompt rows, at their most, before it runs (progress)
    summary: str  # one line for --help and the docs
    needs_corruption: bool  # path patching patches from the corrupt prompts


METHODS: tuple[Method, ...] = (
    Method("prune", "search_by_pruning", "rows_of_pruning",
           "remove nodes one at a time while faithfulness stays at the target (forward, backward or both orders); "
           "--edges then finds the edges among them with ACDC", False),
    Method("path-patching", "search_by_path_patching", "rows_of_path_patching",
           "iterative path patching from the logits backwards, keeping each receiver's strongest edges", True),
    Method("acdc", "search_by_acdc", "rows_of_acdc",
           "ACDC: remove each edge whose removal changes the output less than a threshold, from the logits backwards",
           False),
)
BY_NAME = {method.name: method for method in METHODS}
