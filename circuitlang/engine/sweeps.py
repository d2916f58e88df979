"""Activation and path patching sweeps: one number per (node, position) or per (sender, receiver).

Takes an `Engine` (a bound prompt set under the spec's ablation) and its metric `Readout`; gives
`SweepResult`s holding, per cell and per prompt, the metric of one patched run, next to the clean
metric F(M) and the everything-ablated metric F(∅) of the same prompts.

- Activation patching: the full model with one node ablated (the spec's `ablate`: mean of corrupt,
  resample or zero, exactly as node ablation defines it) at one position, or at every position;
  everything else clean. Each cell is a `Variant`, so the whole sweep is one batched `Engine.run`.
- Positions are named (slots, `bos`, `end`), so a column means the same thing in every template
  of a prompt set and averaging over prompts is well defined; names that fall on the same token
  in every template (`s4` and `end` in "{s1} {s2} {s3} {s4}") share one column. With one template,
  `token_columns` sweeps every token index instead (`bos+i`: `bos` is always token 0).
- Path patching: for each head as the sender, `path_patch` into one receiver (from the paired
  corrupt prompt, see engine.path_patching). Heads that cannot reach the receiver directly (the
  receiver's layer and later) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.path_patching import PatchingEngine, Receiver, path_patch
from circuitlang.engine.readouts import Readout
from circuitlang.engine.runner import Engine
from circuitlang.engine.variants import HeadKeep, MlpKeep, Variant, empty_variant, full_model_variant
from circuitlang.errors import Span
from circuitlang.ir import models as ir

ALL_POSITIONS = "all"  # the label of the column that ablates a node at every position
_SWEEP_SPAN = Span(path="<patching sweep>", line=1, column=1, end_line=1, end_column=1)


@dataclass(frozen=True)
class PositionColumn:
    names: tuple[str, ...]  # the named positions on this token in every template ("s4", "end")
    position: ir.PositionRef  # what the column ablates
    example: str  # the token there in the first prompt

    @property
    def label(self) -> str:
        return " / ".join(self.names)


@dataclass(frozen=True)
class Baseline:
    model: torch.Tensor  # [n_prompts] F(M) per prompt: the clean run
    empty: torch.Tensor  # [n_prompts] F(∅) per prompt: every node ablated


@dataclass(frozen=True)
class SweepResult:
    kind: str  # heads | heads_by_position | mlps_by_position | path
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    examples: tuple[str, ...]  # one per column: an example token, or ""
    patched: torch.Tensor  # [rows, columns, n_prompts] float64; NaN where the cell does not apply
    baseline: Baseline
    receiver: str | None = None

    def delta(self) -> torch.Tensor:
        """Mean over prompts of F(patched) - F(M), in the metric's units: [rows, columns]."""
        return (self.patched - self.baseline.model).mean(-1)

    def stderr(self) -> torch.Tensor:
        """Standard error of that mean over prompts."""
        n = self.patched.shape[-1]
        if n < 2:
            return torch.zeros(self.patched.shape[:2], dtype=torch.float64)
        return (self.patched - self.baseline.model).std(-1) / n**0.5

    def normalized(self) -> torch.Tensor:
        """(F(patched) - F(M)) / (F(M) - F(∅)): -1 is "as bad as ablating everything"."""
        scale = float(self.baseline.model.mean() - self.baseline.empty.mean())
        if abs(scale) < 1e-12:
            return torch.full(self.patched.shape[:2], float("nan"), dtype=torch.float64)
        return self.delta() / scale


def baseline(engine: PatchingEngine, readout: Readout) -> Baseline:
    values = engine.run([full_model_variant(engine.n_layers, engine.n_heads), empty_variant()], readout)
    return Baseline(values[0], values[1])


# ---- positions -------------------------------------------------------------------------------


def named_columns(engine: Engine) -> tuple[PositionColumn, ...]:
    """Named positions present in every template, in the first template's token order; names on
    the same token in every template share a column."""
    templates = engine.bound.templates
    shared = [name for name in _name_order(templates[0]) if all(name in t.positions for t in templates)]
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in shared:
        groups.setdefault(tuple(t.positions[name] for t in templates), []).append(name)
    ordered = sorted(groups.items(), key=lambda item: item[0][0])
    return tuple(PositionColumn(tuple(names), _ref(names[0]), _example(engine, templates[0], indices[0])) for indices, names in ordered)


def token_columns(engine: Engine) -> tuple[PositionColumn, ...]:
    """Every token index of a one-template prompt set, as `bos+i`."""
    templates = engine.bound.templates
    if len(templates) != 1:
        raise ValueError(f"prompt set '{engine.bound.name}' has {len(templates)} templates; a token index means a different token in each")
    (template,) = templates
    names_at: dict[int, list[str]] = {}
    for name in _name_order(template):
        names_at.setdefault(template.positions[name], []).append(name)
    return tuple(
        PositionColumn(tuple(names_at.get(i, [f"#{i}"])), _ref("bos", i), _example(engine, template, i)) for i in range(template.seq_len)
    )


def _name_order(template: BoundTemplate) -> list[str]:
    slots = [name for name in template.positions if name not in ("bos", "end")]
    return ["bos", *sorted(slots, key=lambda s: template.positions[s]), "end"]


def _ref(name: str, offset: int = 0) -> ir.PositionRef:
    return ir.PositionRef(name=name, offset=offset, span=_SWEEP_SPAN)


def _example(engine: Engine, template: BoundTemplate, index: int) -> str:
    return str(engine.model.tokenizer.decode([int(template.clean[0, index])]))


# ---- activation patching ------------------------------------------------------------------------


def model_without(
    n_layers: int, n_heads: int, head: tuple[int, int] | None = None, mlp: int | None = None, at: ir.Position | None = None
) -> Variant:
    """The full model with one head (or MLP) ablated at `at`, or at every position when `at` is None."""
    ablated_at = () if at is None else (at,)
    heads = tuple(
        HeadKeep(layer, index, ablated_at=ablated_at if (layer, index) == head else ())
        for layer in range(n_layers)
        for index in range(n_heads)
        if at is not None or (layer, index) != head
    )
    mlps = tuple(MlpKeep(layer, ablated_at=ablated_at if layer == mlp else ()) for layer in range(n_layers) if at is not None or layer != mlp)
    return Variant(heads, mlps, None, "all", "patch")


def head_sweep(engine: PatchingEngine, readout: Readout, base: Baseline) -> SweepResult:
    """Layer x head: each head ablated at every position."""
    L, H = engine.n_layers, engine.n_heads
    values = engine.run([model_without(L, H, head=(layer, h)) for layer in range(L) for h in range(H)], readout)
    return SweepResult(
        "heads", tuple(f"layer {layer}" for layer in range(L)), tuple(f"head {h}" for h in range(H)), ("",) * H, values.reshape(L, H, -1), base
    )


def head_position_sweep(engine: PatchingEngine, readout: Readout, base: Baseline, columns: Sequence[PositionColumn]) -> SweepResult:
    """Head x position: each head ablated at one position; the last column at every position."""
    L, H = engine.n_layers, engine.n_heads
    heads = [(layer, h) for layer in range(L) for h in range(H)]
    variants = [model_without(L, H, head=head, at=column.position) for head in heads for column in columns]
    variants += [model_without(L, H, head=head) for head in heads]
    return _by_position("heads_by_position", tuple(f"{layer}.{h}" for layer, h in heads), engine.run(variants, readout), columns, base)


def mlp_position_sweep(engine: PatchingEngine, readout: Readout, base: Baseline, columns: Sequence[PositionColumn]) -> SweepResult:
    """MLP x position: each MLP ablated at one position; the last column at every position."""
    L, H = engine.n_layers, engine.n_heads
    variants = [model_without(L, H, mlp=layer, at=column.position) for layer in range(L) for column in columns]
    variants += [model_without(L, H, mlp=layer) for layer in range(L)]
    return _by_position("mlps_by_position", tuple(f"mlp {layer}" for layer in range(L)), engine.run(variants, readout), columns, base)


def _by_position(kind: str, rows: tuple[str, ...], values: torch.Tensor, columns: Sequence[PositionColumn], base: Baseline) -> SweepResult:
    """Reassemble [rows * columns + rows, prompts] (per position, then every position) into a matrix."""
    n_rows, n_columns = len(rows), len(columns)
    per_position = values[: n_rows * n_columns].reshape(n_rows, n_columns, -1)
    everywhere = values[n_rows * n_columns :].reshape(n_rows, 1, -1)
    return SweepResult(
        kind,
        rows,
        (*(c.label for c in columns), ALL_POSITIONS),
        (*(c.example for c in columns), ""),
        torch.cat([per_position, everywhere], dim=1),
        base,
    )


# ---- path patching -------------------------------------------------------------------------------


def receiver_label(receiver: Receiver) -> str:
    if receiver.node.kind != "head":
        return str(receiver.node)
    return f"{receiver.node} ({', '.join(receiver.channels)})"


def senders_reach(receiver: Receiver, n_layers: int) -> int:
    """Heads in layers below this one write into the receiver's input."""
    if receiver.node.kind == "logits":
        return n_layers
    assert receiver.node.kind != "embed", "the embeddings read nothing"
    layer = int(receiver.node.layer)
    return layer + 1 if receiver.node.kind == "mlp" else layer  # an MLP reads after its layer's heads


def mlp_senders_reach(receiver: Receiver, n_layers: int) -> int:
    """MLPs in layers below the receiver's write into its input (an MLP reads after its own
    layer's heads, but its own layer's MLP is itself); into the logits, every MLP."""
    if receiver.node.kind == "logits":
        return n_layers
    assert receiver.node.layer is not None, "the embeddings read nothing"
    return receiver.node.layer


def path_sweep(engine: PatchingEngine, readout: Readout, base: Baseline, receiver: Receiver, senders: Sequence[str] = ("heads",)) -> SweepResult:
    """Layer x sender: the metric after path patching one sender alone into `receiver`. The
    senders are each layer's heads (columns "head H"), its MLP (column "mlp"), or both."""
    L, H = engine.n_layers, engine.n_heads
    heads = H if "heads" in senders else 0
    columns = tuple(f"head {h}" for h in range(heads)) + (("mlp",) if "mlps" in senders else ())
    patched = torch.full((L, len(columns), engine.bound.n_prompts), float("nan"), dtype=torch.float64)
    for layer in range(senders_reach(receiver, L)):
        for h in range(heads):
            patched[layer, h] = path_patch(engine, [ir.HeadNode(layer=layer, head=h)], [receiver], readout)
    if "mlps" in senders:
        for layer in range(mlp_senders_reach(receiver, L)):
            patched[layer, heads] = path_patch(engine, [ir.MlpNode(layer=layer)], [receiver], readout)
    return SweepResult(
        "path",
        tuple(f"layer {layer}" for layer in range(L)),
        columns,
        ("",) * len(columns),
        patched,
        base,
        receiver_label(receiver),
    )


def path_sweep_senders(receiver: Receiver, n_layers: int, n_heads: int, senders: Sequence[str]) -> int:
    """How many senders a path sweep patches: its cost, for the progress line."""
    heads = senders_reach(receiver, n_layers) * n_heads if "heads" in senders else 0
    return heads + (mlp_senders_reach(receiver, n_layers) if "mlps" in senders else 0)
