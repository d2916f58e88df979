"""Circuit variants and their masks: which (node, position) keeps its clean value.

A `Variant` is one circuit to evaluate (the spec's circuit, the circuit without some nodes, the
full model, the empty circuit...). For one template its `Masks` say, per layer, which head
outputs (`z`), which source positions of each head's keys/values, and which MLP outputs stay
clean; everything else takes its ablation value. Masks depend on the template only, because
binding guarantees every prompt of a template has the same positions. A `Receiver` is what a
path patch writes into. Variants and receivers are keys of the result cache as well, so this
module imports torch only where it makes masks: a verify answered from the cache never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from circuitlang.data.positions import expand_positions
from circuitlang.errors import DataError
from circuitlang.ir import models as ir

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class HeadKeep:
    layer: int
    head: int
    q: tuple[ir.Position, ...] | None = None  # None: every position
    k: tuple[ir.Position, ...] | None = None
    # Positions where the output is ablated although the head is kept: "the model minus this head
    # at s2" for activation patching, in every template, whatever tokens lie between named positions.
    ablated_at: tuple[ir.Position, ...] = ()


@dataclass(frozen=True)
class MlpKeep:
    layer: int
    at: tuple[ir.Position, ...] | None = None
    ablated_at: tuple[ir.Position, ...] = ()


@dataclass(frozen=True)
class Variant:
    """Nodes kept clean; every other head and MLP is ablated. With `edges`, circuit receivers see a
    sender's clean contribution only along a declared edge (see engine.edges)."""

    heads: tuple[HeadKeep, ...] = ()
    mlps: tuple[MlpKeep, ...] = ()
    edges: tuple[ir.Edge, ...] | None = None
    embed_edges: str = "all"
    label: str = ""

    def nodes(self) -> frozenset[ir.HeadNode | ir.MlpNode]:
        return frozenset([*(ir.HeadNode(layer=h.layer, head=h.head) for h in self.heads), *(ir.MlpNode(layer=m.layer) for m in self.mlps)])


def circuit_variant(
    circuit: ir.Circuit, without: frozenset[ir.Node] = frozenset(), use_edges: bool = True, embed_edges: str = "all", label: str = "circuit"
) -> Variant:
    """The spec's circuit minus `without`; edges to or from removed nodes disappear with them."""
    members = [m for m in circuit.nodes if m.node not in without]
    heads = tuple(HeadKeep(m.node.layer, m.node.head, m.q, m.k) for m in members if m.node.kind == "head")
    mlps = tuple(MlpKeep(m.node.layer, m.q) for m in members if m.node.kind == "mlp")
    edges = None
    if use_edges and circuit.edges:
        edges = tuple(e for e in circuit.edges if e.sender not in without and e.receiver not in without)
    return Variant(heads, mlps, edges, embed_edges, label)


def full_model_variant(n_layers: int, n_heads: int, without: frozenset[ir.Node] = frozenset(), label: str = "model") -> Variant:
    """Every head and MLP, clean at every position (minus `without`): the model itself."""
    heads = tuple(
        HeadKeep(layer, head) for layer in range(n_layers) for head in range(n_heads) if ir.HeadNode(layer=layer, head=head) not in without
    )
    mlps = tuple(MlpKeep(layer) for layer in range(n_layers) if ir.MlpNode(layer=layer) not in without)
    return Variant(heads, mlps, None, "all", label)


def empty_variant(label: str = "empty") -> Variant:
    return Variant(label=label)


@dataclass(frozen=True)
class Receiver:
    node: ir.Node  # a head, an MLP, or ir.LOGITS
    channels: tuple[str, ...] = ("q", "k", "v")  # only for head receivers


@dataclass(frozen=True)
class Masks:
    """Keep masks for one variant on one template (True = clean)."""

    z: torch.Tensor  # [L, P, H]: head output at (query) position
    kv: torch.Tensor  # [L, P, H]: head's key/value at source position
    mlp: torch.Tensor  # [L, P]

    def first_ablated_layer(self) -> int:
        """The earliest layer any mask touches: the run equals the clean run before it."""
        import torch

        touched = (~self.z).flatten(1).any(1) | (~self.kv).flatten(1).any(1) | (~self.mlp).any(1)
        layers = torch.nonzero(touched).flatten()
        return int(layers[0]) if layers.numel() else int(self.z.shape[0])

    def for_rows(self, n_rows: int) -> "Masks":
        """The masks of `n_rows` prompt rows of this one variant, stacked: [rows, ...] each."""
        import torch

        return Masks(torch.stack([self.z] * n_rows), torch.stack([self.kv] * n_rows), torch.stack([self.mlp] * n_rows))


def masks_for(variant: Variant, template: str, named: dict[str, int], n_tokens: int, n_layers: int, n_heads: int) -> Masks:
    import torch

    z = torch.zeros(n_layers, n_tokens, n_heads, dtype=torch.bool)
    kv = torch.ones(n_layers, n_tokens, n_heads, dtype=torch.bool)
    mlp = torch.zeros(n_layers, n_tokens, dtype=torch.bool)
    for h in variant.heads:
        z[h.layer, _where(h.q, template, named, n_tokens), h.head] = True
        z[h.layer, list(resolve(h.ablated_at, template, named, n_tokens)), h.head] = False
        if h.k is not None:
            kv[h.layer, :, h.head] = False
            kv[h.layer, list(resolve(h.k, template, named, n_tokens)), h.head] = True
    for m in variant.mlps:
        mlp[m.layer, _where(m.at, template, named, n_tokens)] = True
        mlp[m.layer, list(resolve(m.ablated_at, template, named, n_tokens))] = False
    return Masks(z, kv, mlp)


def _where(positions: tuple[ir.Position, ...] | None, template: str, named: dict[str, int], n_tokens: int) -> slice | list[int]:
    return slice(None) if positions is None else list(resolve(positions, template, named, n_tokens))


def resolve(positions: tuple[ir.Position, ...], template: str, named: dict[str, int], n_tokens: int) -> tuple[int, ...]:
    """Token indices of a position list in one template (ranges expanded, offsets applied)."""
    indices = []
    for name, offset in expand_positions(positions, template):
        index = named[name] + offset
        if not 0 <= index < n_tokens:
            raise DataError(
                f"position {name}{offset:+d} falls outside the prompts of template {template!r} ({n_tokens} tokens)",
                positions[0].span,
                "use a smaller offset",
            )
        indices.append(index)
    return tuple(sorted(set(indices)))
