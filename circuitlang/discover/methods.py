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
    needs_corruption: str  # why the method needs the corrupt prompts ("" when it does not)


METHODS: tuple[Method, ...] = (
    Method("prune", "search_by_pruning", "rows_of_pruning",
           "remove nodes one at a time while faithfulness stays at the target (forward, backward or both orders); "
           "--edges then finds the edges among them with ACDC", ""),
    Method("path-patching", "search_by_path_patching", "rows_of_path_patching",
           "iterative path patching from the logits backwards, keeping each receiver's strongest edges",
           "path patching patches from the corrupt prompts"),
    Method("acdc", "search_by_acdc", "rows_of_acdc",
           "ACDC: remove each edge whose removal changes the output less than a threshold, from the logits backwards",
           ""),
    Method("eap", "search_by_eap", "rows_of_eap",
           "edge attribution patching: score every edge from one forward and backward pass, keep the top edges "
           "(--top N, or the fewest that reach --target)", ""),
    Method("eap-ig", "search_by_eap_ig", "rows_of_eap_ig",
           "EAP with integrated gradients (--steps, default 5) from the corrupt inputs to the clean ones, then as eap",
           "EAP-IG integrates the gradient from the corrupt prompts' inputs to the clean ones"),
)
BY_NAME = {method.name: method for method in METHODS}
EAP_IG_STEPS = 5  # Hanna et al. (2024) found 5 integration steps enough for EAP-IG's ranking
MAX_STEPS = 1000
