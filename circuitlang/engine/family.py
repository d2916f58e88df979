"""What differs between model families, in one place: hook names, attention layout, what feeds what.

TransformerBridge (TransformerLens 4) gives every family it supports the same hook points (GPT-2,
GPT-NeoX/Pythia, Llama, Qwen2, Gemma 2 ... all have `blocks.L.attn.hook_z`), but the
architectures still differ in ways the engine's semantics depend on:

- grouped-query attention: `hook_k` and `hook_v` have `n_kv_heads` heads, each read by a group of
  `n_heads / n_kv_heads` query heads (Llama, Qwen2, Gemma 2);
- parallel attention and MLP: the MLP reads the residual entering its layer, not the one after
  the layer's heads (GPT-NeoX/Pythia, GPT-J, Phi); GPT-J and Phi also share one norm between the
  two, so the MLP's input can only be reached after that norm (`mlp.hook_in`);
- rotary positions: q and k are rotated after `hook_q`/`hook_k`, so an activation replaced there is
  rotated at its own position, as the clean one was (the blocks then cannot run alone: the bridge
  passes the rotation from the top);
- a norm on the attention output before it joins the residual stream (Gemma 2's
  `post_attention_layernorm`): the heads' outputs then do not add up in the residual stream, so a
  single head's contribution, and with it edge ablation, is undefined.

The engine, discovery and the attribution code ask a `Family` for hook names, for the bridge's
modules they reach into (blocks, norms, the attention's projection) and for these facts; no other
module spells a hook name or a module path. docs/engine.md, "Model families", gives the
semantics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from circuitlang.errors import DataError
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import feeds

ACTIVATION_KINDS = ("z", "k", "v", "mlp_out")
FINAL_RESIDUAL = "ln_final.hook_in"  # the residual entering the final norm: the logits' input


@dataclass(frozen=True)
class Family:
    architecture: str  # the Hugging Face architecture, e.g. "LlamaForCausalLM"
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    parallel_attn_mlp: bool
    rotary: bool
    attention_output_norm: bool
    shared_norm: bool = False  # attention and MLP read one norm's output (GPT-J, Phi): no ln2

    @classmethod
    def of(cls, bridge: Any) -> "Family":
        cfg = bridge.cfg
        return cls(
            architecture=_architecture(bridge),
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            n_kv_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
            d_model=cfg.d_model,
            d_head=cfg.d_head,
            parallel_attn_mlp=bool(getattr(cfg, "parallel_attn_mlp", False)),
            rotary=getattr(cfg, "positional_embedding_type", "standard") == "rotary",
            attention_output_norm=_has_attention_output_norm(bridge),
            shared_norm=not any(_has(block, "ln2") for block in bridge.blocks),
        )

    # ---- hook names -------------------------------------------------------------------------------

    @staticmethod
    def resid_pre(layer: int) -> str:
        return f"blocks.{layer}.hook_resid_pre"

    @staticmethod
    def head_input(channel: str, layer: int) -> str:
        """q, k or v of every head of a layer (k and v: of every key/value head), before rotary."""
        return f"blocks.{layer}.attn.hook_{channel}"

    @staticmethod
    def activation(kind: str, layer: int) -> str:
        """An activation the engine caches and ablates: z (every head's output before W_O), k, v, mlp_out."""
        return f"blocks.{layer}.hook_mlp_out" if kind == "mlp_out" else f"blocks.{layer}.attn.hook_{kind}"

    def mlp_input(self, layer: int) -> str:
        """The MLP's input: the residual its norm reads (after the layer's heads, or with parallel
        attention and MLP the one entering the layer); with a shared norm, that norm's output
        (`mlp_reads_normalized`)."""
        return f"blocks.{layer}.mlp.hook_in" if self.shared_norm else f"blocks.{layer}.ln2.hook_in"

    @property
    def mlp_reads_normalized(self) -> bool:
        """Whether `mlp_input` carries the norm's output (the residual must be normalized by the
        block's ln1 before it is put there) rather than the residual itself."""
        return self.shared_norm

    @staticmethod
    def pattern(layer: int) -> str:
        return f"blocks.{layer}.attn.hook_pattern"

    final_residual = FINAL_RESIDUAL

    # ---- modules: where the engine reaches into the bridge's blocks -------------------------------

    @staticmethod
    def blocks(bridge: Any) -> Sequence[Any]:
        """The transformer blocks, in order; each called on the residual entering it."""
        return bridge.blocks

    @staticmethod
    def attention(block: Any) -> Any:
        """A block's attention (the bridge module, with its hook points)."""
        return block.attn

    @staticmethod
    def mlp_computation(block: Any) -> Any:
        """The model's own MLP inside a block, without the bridge's hooks around it: replacing
        its `forward` changes what the MLP computes while those hooks still fire."""
        return block.mlp.original_component

    @staticmethod
    def attention_norm(bridge: Any, layer: int) -> Any:
        """The norm a layer's attention reads its input through (with a shared norm, the MLP too)."""
        return bridge.blocks[layer].ln1

    @staticmethod
    def output_projection(bridge: Any, layer: int) -> Any:
        """A layer's W_O and b_O as the model applies them to z [.., H * dh], no hook firing."""
        return bridge.blocks[layer].attn.o.original_component

    @staticmethod
    def project_z(attention: Any, z: Any) -> Any:
        """The attention's output from z [.., H * dh] through its projection, the hooks on z firing."""
        return attention.o(z)

    @staticmethod
    def z_is_hooked(attention: Any) -> bool:
        """Whether a hook is registered on the attention's z (the projection's input hook point)."""
        return bool(attention.o.hook_in._forward_hooks)  # the hook point keeps its hooks privately

    @staticmethod
    def attention_written(attention: Any, output: Any) -> Any:
        """What the attention writes after the bridge's hooks on its output have seen `output`."""
        return attention.hook_out(attention.hook_hidden_states(output))

    @staticmethod
    def final_norm(bridge: Any) -> Any:
        """The norm before the unembedding."""
        return bridge.ln_final

    @staticmethod
    def embedding(bridge: Any) -> Any:
        """The token embedding (W_E), as a module: what `engine.models.onloaded` brings in."""
        return bridge.embed

    @staticmethod
    def unembedding(bridge: Any) -> Any:
        """The unembedding (W_U, b_U), as a module."""
        return bridge.unembed

    @staticmethod
    def at_final_residual(bridge: Any, residual: Any) -> Any:
        """`residual` through the hook point on the final norm's input (`final_residual`), so that
        the hooks there fire when the blocks run one by one."""
        return bridge.ln_final.hook_in(residual)

    # ---- attention layout ---------------------------------------------------------------------------

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    @property
    def grouped(self) -> bool:
        return self.n_kv_heads != self.n_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head `head` reads (heads are grouped consecutively)."""
        return head // self.group_size

    def group(self, kv_head: int) -> range:
        """The query heads that read key/value head `kv_head`."""
        return range(kv_head * self.group_size, (kv_head + 1) * self.group_size)

    # ---- the graph ------------------------------------------------------------------------------------

    def feeds(self, sender: ir.Node, receiver: ir.Node) -> bool:
        """Whether the sender writes to the residual stream before the receiver reads it."""
        return feeds(sender, receiver, self.parallel_attn_mlp)

    def why_no_edges(self) -> str | None:
        """Why edge ablation cannot be exact on this model (None when it can)."""
        if self.attention_output_norm:
            return (
                f"{self.architecture} normalizes the sum of a layer's head outputs before it joins the residual "
                "stream, so one head's contribution is not defined and neither are edges from heads"
            )
        return None

    def why_no_edge_graph(self) -> str | None:
        """Why the full graph of edges that searches, attribution and curves rank (q, k and v apart
        for every query head) does not fit this model (None when it does)."""
        if self.why_no_edges():
            return self.why_no_edges()
        if self.grouped:
            return (
                f"{self.architecture} shares keys and values between groups of {self.group_size} query heads, "
                "while the graph has k and v edges per query head"
            )
        return None


def _architecture(bridge: Any) -> str:
    config = getattr(getattr(bridge, "original_model", None), "config", None)
    architectures = getattr(config, "architectures", None) or [type(getattr(bridge, "original_model", bridge)).__name__]
    return str(architectures[0])


def _has_attention_output_norm(bridge: Any) -> bool:
    """Gemma 2's blocks carry `ln1_post` (post_attention_layernorm) between attention and residual."""
    return any(_has(block, "ln1_post") for block in bridge.blocks)


def _has(block: Any, name: str) -> bool:
    try:
        return getattr(block, name) is not None
    except (AttributeError, KeyError):  # the bridge's blocks raise either for a missing submodule
        return False


def circuit_problems(circuit: ir.Circuit, family: Family) -> list[DataError]:
    """What a circuit asks that this model cannot give it: edges where heads do not add into the
    residual stream, an edge into an MLP that does not read its sender, and on a grouped-query
    model, heads of one key/value group that disagree about the keys and values they share."""
    problems = _edge_problems(circuit, family)
    if family.grouped:
        problems += _group_problems(circuit, family)
    return problems


def _edge_problems(circuit: ir.Circuit, family: Family) -> list[DataError]:
    reason = family.why_no_edges()
    if reason and circuit.edges:
        return [
            DataError(
                f"edges cannot be evaluated on this model: {reason}",
                circuit.edges[0].span,
                "declare the circuit's nodes without edges (node ablation is exact on this model)",
            )
        ]
    return [
        DataError(
            f"{edge.receiver} does not read {edge.sender}: attention and MLP of one layer read the same "
            "residual stream in this model (parallel attention and MLP)",
            edge.span,
            "remove the edge; the MLP reads the heads of earlier layers",
        )
        for edge in circuit.edges
        if not family.feeds(edge.sender, edge.receiver)
    ]


def _group_problems(circuit: ir.Circuit, family: Family) -> list[DataError]:
    """Keys and values belong to a key/value head, which a group of query heads shares: `k`
    positions and k/v edges of the group's heads in the circuit must agree (docs/engine.md)."""
    problems: list[DataError] = []
    groups: dict[tuple[int, int], list[ir.CircuitNode]] = {}
    for member in circuit.nodes:
        if member.node.kind == "head":
            groups.setdefault((member.node.layer, family.kv_head(member.node.head)), []).append(member)
    for (layer, kv_head), members in groups.items():
        first = members[0]
        for other in members[1:]:
            if _positions_key(other.k) != _positions_key(first.k):
                problems.append(
                    _group_error(family, layer, kv_head, other, first, "`k` positions", "give every head of the group the same `k` positions")
                )
            for channel in ("k", "v"):
                if _senders(circuit, other.node, channel) != _senders(circuit, first.node, channel):
                    problems.append(
                        _group_error(
                            family,
                            layer,
                            kv_head,
                            other,
                            first,
                            f"senders into {channel}",
                            f"declare the same edges into the {channel} of every head of the group",
                        )
                    )
    return problems


def _group_error(family: Family, layer: int, kv_head: int, member: ir.CircuitNode, first: ir.CircuitNode, what: str, hint: str) -> DataError:
    heads = ", ".join(f"{layer}.{h}" for h in family.group(kv_head))
    return DataError(
        f"{member.node} and {first.node} read the same keys and values (key/value head {kv_head} of "
        f"layer {layer}, shared by {heads}), but their {what} differ",
        member.span,
        hint,
    )


def _positions_key(positions: tuple[ir.Position, ...] | None) -> tuple[str, ...] | None:
    return None if positions is None else tuple(sorted(str(p) for p in positions))


def _senders(circuit: ir.Circuit, receiver: ir.Node, channel: str) -> set[ir.Node]:
    return {edge.sender for edge in circuit.edges if edge.receiver == receiver and (channel in edge.channels or not edge.channels)}
