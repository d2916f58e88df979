"""The results of `circuitlang attention` and `circuitlang lens`: attention patterns of chosen
heads, the logit lens and the direct contributions to the metric, with their tidy tables.

Computed in workflows/attention.py and workflows/lens.py (from engine/attention_patterns.py and
engine/lens.py); drawn in report/attention_plot.py and report/lens_plot.py. Positions are labelled
by the spec's names (`s4`, `end`; names on one token share a label, `s4 / end`), or `#i` for a
token index no name marks, each with an example token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitlang.ir.stdlib import METRICS
from circuitlang.results.tidy import Row, tidy

POSITION_KINDS = ("tokens", "named")  # every token index (one template), or the named positions
MEAN_PROMPT = -1  # the `prompt` column of a pattern averaged over the prompt set


@dataclass(frozen=True)
class ReadContext:
    """What was read: shown in every title."""

    spec_path: str
    circuit: str
    model: str
    prompt_set: str
    n_prompts: int
    metric: str  # as written, e.g. logit_diff(answer, wrong)
    metric_name: str

    @property
    def unit(self) -> str:
        kind = METRICS.get(self.metric_name)
        return kind.unit if kind else "metric units"


@dataclass(frozen=True)
class AttentionPattern:
    head: str  # "1.0"
    pattern: np.ndarray  # [query, key]: attention from a query position to a key position


@dataclass(frozen=True)
class AttentionResult:
    """Patterns of some heads, between the same positions: the mean over the prompt set, or
    (`prompt` given) one prompt's."""

    context: ReadContext
    positions: tuple[str, ...]  # labels, query and key alike
    examples: tuple[str, ...]  # a token per position (the first prompt's, or the prompt's)
    position_kind: str  # "tokens" or "named"
    prompt: int | None  # the prompt's index in the set (0-based, as `prompt #3`), None for the mean
    prompt_text: str  # the prompt read, or the first prompt of the set (whose tokens label positions)
    patterns: tuple[AttentionPattern, ...]

    def pattern(self, head: str) -> AttentionPattern:
        for found in self.patterns:
            if found.head == head:
                return found
        raise KeyError(f"no pattern of head {head}: this result has {', '.join(p.head for p in self.patterns)}")

    @property
    def described(self) -> str:
        """Which prompts the patterns are over, in words."""
        if self.prompt is not None:
            return f"prompt #{self.prompt}: {self.prompt_text!r}"
        return f"mean over {self.context.n_prompts} prompts"

    def table(self, kind: str = "auto"):
        """One row per head, query and key position: the attention (a tidy table)."""
        return tidy(attention_rows(self), kind)


@dataclass(frozen=True)
class LensResult:
    """The logit lens (stage x position) and the direct contributions (piece x position): the
    mean over the prompt set and its standard error."""

    context: ReadContext
    positions: tuple[str, ...]
    examples: tuple[str, ...]
    position_kind: str
    stages: tuple[str, ...]  # "embed", "layer 0", ...: the residual stream after them
    lens: np.ndarray  # [stages, positions], metric units
    lens_stderr: np.ndarray
    n_layers: int
    n_heads: int
    pieces: tuple[str, ...]  # "embed", "0.0" ... "attn bias 0", "mlp 0", ..., "bias"
    direct: np.ndarray | None  # [pieces, positions] along `direction`; None when not defined
    direct_stderr: np.ndarray | None
    direction: str  # what the contributions are read along, e.g. logit[answer] − logit[wrong]
    direct_note: str  # why the contributions were not computed, or ""

    @property
    def readout(self) -> int:
        """The column of the metric's readout position, `end`."""
        return next(i for i, label in enumerate(self.positions) if "end" in label.split(" / "))

    def head_grid(self, position: int | None = None) -> np.ndarray:
        """Direct contributions at a position (default: `end`) as layer x (heads, then the MLP):
        [n_layers, n_heads + 1]; NaN when they were not computed."""
        column = self.readout if position is None else position
        grid = np.full((self.n_layers, self.n_heads + 1), np.nan)
        if self.direct is None:
            return grid
        at = {piece: i for i, piece in enumerate(self.pieces)}
        for layer in range(self.n_layers):
            names = [f"{layer}.{head}" for head in range(self.n_heads)] + [f"mlp {layer}"]
            grid[layer] = [self.direct[at[name], column] for name in names]
        return grid

    def table(self, name: str = "lens", kind: str = "auto"):
        """`lens`: one row per stage and position; `direct`: one row per piece and position."""
        if name == "lens":
            return tidy(lens_rows(self), kind)
        if name == "direct":
            return tidy(direct_rows(self), kind)
        raise ValueError(f"no table {name!r}: a lens result has the tables lens, direct")


def attention_rows(result: AttentionResult) -> list[Row]:
    rows = []
    for found in result.patterns:
        layer, head = (int(part) for part in found.head.split("."))
        for q, (query, query_token) in enumerate(zip(result.positions, result.examples)):
            for k, (key, key_token) in enumerate(zip(result.positions, result.examples)):
                rows.append(
                    {
                        "prompt_set": result.context.prompt_set,
                        "prompt": MEAN_PROMPT if result.prompt is None else result.prompt,
                        "head": found.head,
                        "layer": layer,
                        "head_index": head,
                        "query": query,
                        "query_token": query_token,
                        "key": key,
                        "key_token": key_token,
                        "attention": float(found.pattern[q, k]),
                    }
                )
    return rows


def lens_rows(result: LensResult) -> list[Row]:
    return [
        {
            "prompt_set": result.context.prompt_set,
            "stage": stage,
            "layers": s,  # layers applied before the read: 0 for the embeddings
            "position": position,
            "token": token,
            "metric": result.context.metric_name,
            "value": float(result.lens[s, p]),
            "stderr": float(result.lens_stderr[s, p]),
        }
        for s, stage in enumerate(result.stages)
        for p, (position, token) in enumerate(zip(result.positions, result.examples))
    ]


def direct_rows(result: LensResult) -> list[Row]:
    if result.direct is None or result.direct_stderr is None:
        return []
    return [
        {
            "prompt_set": result.context.prompt_set,
            "piece": piece,
            "kind": piece_kind(piece),
            "layer": piece_layer(piece),
            "position": position,
            "token": token,
            "direct": float(result.direct[i, p]),
            "stderr": float(result.direct_stderr[i, p]),
        }
        for i, piece in enumerate(result.pieces)
        for p, (position, token) in enumerate(zip(result.positions, result.examples))
    ]


def piece_kind(piece: str) -> str:
    """embed, head, attn_bias, mlp or bias."""
    if piece in ("embed", "bias"):
        return piece
    if piece.startswith("attn bias"):
        return "attn_bias"
    return "mlp" if piece.startswith("mlp") else "head"


def piece_layer(piece: str) -> int:
    """The layer of a head, attention bias or MLP; -1 for the embeddings and the final bias."""
    if piece in ("embed", "bias"):
        return -1
    return int(piece.split(".")[0]) if piece_kind(piece) == "head" else int(piece.rsplit(" ", 1)[1])


@dataclass(frozen=True)
class Look:
    """One prompt set's readings for the HTML page (verify --look, workflows/look.py)."""

    prompt_set: str
    attention: AttentionResult | None  # None without heads in the circuit, or with `note`
    lens: LensResult | None
    note: str = ""  # why a reading is missing
