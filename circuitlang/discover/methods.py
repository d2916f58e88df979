"""The discovery methods, one record each: the command line's choices and help and the docs read
this list (`workflows.discover` holds each method's functions by its name); and EAP-IG's integration
grids (light: no torch, so `--help` stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Method:
    name: str  # as written after --method
    summary: str  # one line for --help and the docs
    needs_corruption: str  # why the method needs the corrupt prompts ("" when it does not)


METHODS: tuple[Method, ...] = (
    Method(
        "prune",
        "remove nodes one at a time while faithfulness stays at the target (forward, backward or both orders); "
        "--edges then finds the edges among them with ACDC",
        "",
    ),
    Method(
        "path-patching",
        "iterative path patching from the logits backwards, keeping each receiver's strongest edges",
        "path patching patches from the corrupt prompts",
    ),
    Method("acdc", "ACDC: remove each edge whose removal changes the output less than a threshold, from the logits backwards", ""),
    Method(
        "eap",
        "edge attribution patching: score every edge from one forward and backward pass, keep the top edges "
        "(--top N, or the fewest that reach --target)",
        "",
    ),
    Method(
        "eap-ig",
        "EAP with integrated gradients (--steps, default 5; --ig-grid, default left, as Hanna et al. and MIB) "
        "from the corrupt inputs to the clean ones, then as eap",
        "EAP-IG integrates the gradient from the corrupt prompts' inputs to the clean ones",
    ),
)
BY_NAME = {method.name: method for method in METHODS}
EAP_IG_STEPS = 5  # Hanna et al. (2024) found 5 integration steps enough for EAP-IG's ranking
MAX_STEPS = 1000


class IGGrid(Enum):
    """Where EAP-IG takes its gradients on the line from the corrupt inputs (alpha = 0) to the
    clean ones (alpha = 1): the points of a Riemann sum with `steps` intervals."""

    LEFT = "left"  # alpha = k/steps, k = 0..steps-1: Hanna et al.'s EAP-IG code, which MIB runs
    RIGHT = "right"  # alpha = k/steps, k = 1..steps: ends at the clean input, so one step is EAP

    @property
    def first(self) -> int:
        """The first k of alpha = k/steps: 0 takes a gradient at the corrupt inputs themselves."""
        return 0 if self is IGGrid.LEFT else 1

    def alphas(self, steps: int) -> tuple[float, ...]:
        return tuple(k / steps for k in range(self.first, self.first + steps))

    def formula(self, steps: int) -> str:
        """The grid as the header of a found spec writes it: "alpha = k/5, k = 0..4"."""
        return f"alpha = k/{steps}, k = {self.first}..{self.first + steps - 1}"


IG_GRIDS = tuple(grid.value for grid in IGGrid)
DEFAULT_IG_GRID = IGGrid.LEFT  # the reference implementation's, so that scores compare with MIB's
IG_GRID_HELP = (
    "eap-ig: where on the line from the corrupt inputs (alpha = 0) to the clean ones (1) the gradients are "
    "taken: left, alpha = k/steps for k = 0..steps-1, as Hanna et al.'s code and MIB; right, k = 1..steps, "
    f"so that --steps 1 is EAP (default {DEFAULT_IG_GRID.value})"
)


def attribution_label(method: str, steps: int, grid: IGGrid) -> str:
    """How outputs name an attribution run: "eap", or "eap-ig (5 steps, left grid)"."""
    return f"{method} ({steps} steps, {grid.value} grid)" if method == "eap-ig" else method
