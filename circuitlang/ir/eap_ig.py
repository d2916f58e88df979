"""EAP-IG's graph of a model, its names, and the export of a circuit as an EAP-IG graph file.

EAP-IG (github.com/hannamw/EAP-IG, `Graph.to_json` / `Graph.from_json`) sees a transformer as a
graph. Nodes: `input` (the embeddings), `aL.hH` (head H of layer L), `mL` (MLP L), `logits`.
Edges: `S->R<c>` into a head's q, k or v input (c is the channel), `S->R` into an MLP or the
logits. A node feeds every later node of the residual stream: layer L's heads read what came
before layer L; MLP L also reads layer L's heads unless attention and MLP run in parallel
(`parallel_attn_mlp`); the logits read everything, `input` included. A file lists every node and
every edge of the model, each with `in_graph` (and edges with a `score`).

Takes an `ir.Spec`; gives the dictionary EAP-IG's `Graph.from_json` loads. Pure Python: no torch.
The reverse direction is `ir.eap_ig_import`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from circuitlang.errors import ModelError, SpecError
from circuitlang.ir import models as ir

INPUT = ir.EMBED
LOGITS = ir.LOGITS
CHANNELS = ("q", "k", "v")

EdgeKey = tuple[ir.Node, ir.Node, str | None]  # sender, receiver, channel (None into MLPs and logits)

# d_model and parallel attention/MLP of hub models whose shape ir.shapes knows offline.
KNOWN_HUB_GRAPHS: dict[str, tuple[int, bool]] = {
    "gpt2": (768, False),
    "gpt2-small": (768, False),
    "openai-community/gpt2": (768, False),
    "gpt2-medium": (1024, False),
    "openai-community/gpt2-medium": (1024, False),
    "gpt2-large": (1280, False),
    "openai-community/gpt2-large": (1280, False),
    "gpt2-xl": (1600, False),
    "openai-community/gpt2-xl": (1600, False),
    "distilgpt2": (768, False),
    "distilbert/distilgpt2": (768, False),
    "EleutherAI/pythia-70m": (512, True),
    "EleutherAI/pythia-160m": (768, True),
    "EleutherAI/pythia-410m": (1024, True),
}
_PARALLEL_MODEL_TYPES = ("gptj", "codegen", "phi")


@dataclass(frozen=True)
class GraphConfig:
    """EAP-IG's `cfg` block: what it needs to rebuild the model's graph."""

    n_layers: int
    n_heads: int
    parallel_attn_mlp: bool = False
    d_model: int | None = None  # needed by EAP-IG's loader, not by the graph's structure

    def as_cfg(self) -> dict[str, object]:
        cfg: dict[str, object] = {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel_attn_mlp": self.parallel_attn_mlp}
        if self.d_model is not None:
            cfg["d_model"] = self.d_model
        return cfg


# ---- names -----------------------------------------------------------------------------------

_NODE = re.compile(r"^(?:a(\d+)\.h(\d+)|m(\d+)|input|logits)$")
_EDGE = re.compile(r"^(.+?)->(.+?)(?:<(.*)>)?$")


def node_name(node: ir.Node) -> str:
    if node.kind == "head":
        return f"a{node.layer}.h{node.head}"
    if node.kind == "mlp":
        return f"m{node.layer}"
    return "input" if node.kind == "embed" else "logits"


def edge_name(edge: EdgeKey) -> str:
    sender, receiver, channel = edge
    return f"{node_name(sender)}->{node_name(receiver)}" + (f"<{channel}>" if channel else "")


def parse_node(name: str) -> ir.Node | None:
    """`a9.h9` -> head 9.9, `m3` -> mlp 3, `input` -> embed, `logits`; None for anything else."""
    match = _NODE.match(name)
    if match is None:
        return None
    if match.group(1) is not None:
        return ir.HeadNode(layer=int(match.group(1)), head=int(match.group(2)))
    if match.group(3) is not None:
        return ir.MlpNode(layer=int(match.group(3)))
    return INPUT if name == "input" else LOGITS


def parse_edge(name: str) -> EdgeKey:
    """`a0.h1->a2.h3<q>` -> (0.1, 2.3, "q"); ValueError saying what is wrong with the name."""
    match = _EDGE.match(name)
    if match is None:
        raise ValueError("an edge is named SENDER->RECEIVER, with <q>, <k> or <v> after a head receiver")
    sender, receiver = parse_node(match.group(1)), parse_node(match.group(2))
    channel = match.group(3)
    for part, node in ((match.group(1), sender), (match.group(2), receiver)):
        if node is None:
            raise ValueError(f"'{part}' is not an EAP-IG node name (input, aL.hH, mL, logits)")
    assert sender is not None and receiver is not None
    if receiver.kind == "head" and channel not in CHANNELS:
        raise ValueError(f"an edge into the head {node_name(receiver)} needs a channel <q>, <k> or <v>")
    if receiver.kind != "head" and channel is not None:
        raise ValueError(f"an edge into {node_name(receiver)} has no channel; drop <{channel}>")
    return sender, receiver, channel


# ---- the model's graph -------------------------------------------------------------------------


def feeds(sender: ir.Node, receiver: ir.Node, parallel_attn_mlp: bool) -> bool:
    """Whether EAP-IG's graph has an edge sender -> receiver (residual-stream order)."""
    if sender.kind == "logits" or receiver.kind == "embed":
        return False
    if sender.kind == "embed" or receiver.kind == "logits":
        return True
    if receiver.kind == "head":
        return sender.layer < receiver.layer
    same_layer_head = sender.kind == "head" and sender.layer == receiver.layer and not parallel_attn_mlp
    return sender.layer < receiver.layer or same_layer_head


def model_edge_count(config: GraphConfig) -> int:
    """How many edges `model_edges` yields, computed without building them (an import checks a
    file's claimed model size before allocating its graph)."""
    heads, total = config.n_heads, 1 + config.n_layers * (config.n_heads + 1)  # logits read every node
    for layer in range(config.n_layers):
        earlier = 1 + layer * (heads + 1)  # the input, and every head and MLP of earlier layers
        total += heads * len(CHANNELS) * earlier + earlier + (0 if config.parallel_attn_mlp else heads)
    return total


def model_nodes(config: GraphConfig) -> list[ir.Node]:
    """Every node, in EAP-IG's order: input, then per layer its heads and its MLP, then logits."""
    nodes = [INPUT]
    for layer in range(config.n_layers):
        nodes += [ir.HeadNode(layer=layer, head=h) for h in range(config.n_heads)]
        nodes.append(ir.MlpNode(layer=layer))
    return nodes + [LOGITS]


def model_edges(config: GraphConfig) -> Iterator[EdgeKey]:
    """Every edge of the model's graph, grouped by receiver layer as EAP-IG lists them."""
    nodes = model_nodes(config)
    for layer in range(config.n_layers):
        heads = [n for n in nodes if n.kind == "head" and n.layer == layer]
        for sender in nodes:
            if feeds(sender, heads[0], config.parallel_attn_mlp):
                yield from ((sender, head, channel) for head in heads for channel in CHANNELS)
        mlp = ir.MlpNode(layer=layer)
        yield from ((sender, mlp, None) for sender in nodes if feeds(sender, mlp, config.parallel_attn_mlp))
    yield from ((sender, LOGITS, None) for sender in nodes if feeds(sender, LOGITS, config.parallel_attn_mlp))


def node_circuit_edges(nodes: set[ir.Node], config: GraphConfig) -> set[EdgeKey]:
    """A circuit of nodes without declared edges: every kept node reads the embeddings and every
    earlier kept node, and every kept node and the embeddings reach the logits."""
    senders, receivers = nodes | {INPUT}, nodes | {LOGITS}
    return {e for e in model_edges(config) if e[0] in senders and e[1] in receivers}


def circuit_edges(circuit: ir.Circuit, embed_edges: str, config: GraphConfig) -> set[EdgeKey]:
    """The edges a circuit keeps, under circuitlang's semantics (docs/engine.md)."""
    nodes = {member.node for member in circuit.nodes}
    if not circuit.edges:
        return node_circuit_edges(nodes, config)
    kept: set[EdgeKey] = set()
    for edge in circuit.edges:
        if not feeds(edge.sender, edge.receiver, config.parallel_attn_mlp):
            raise SpecError(
                f"edge {edge.sender} -> {edge.receiver} does not exist in EAP-IG's graph of this model: "
                "its attention and MLP read the same residual stream (parallel_attn_mlp)",
                edge.span,
                f"remove the edge, or send from an earlier layer than {edge.receiver}",
            )
        kept.update((edge.sender, edge.receiver, c) for c in (edge.channels or (None,)))
    if embed_edges == "all":  # the embeddings reach every receiver of the circuit
        kept.update(e for e in model_edges(config) if e[0] == INPUT and (e[1] in nodes or e[1] == LOGITS))
    return kept


def kept_graph_edges(spec: ir.Spec) -> set[EdgeKey]:
    """The spec's "graph edges": the edges of EAP-IG's graph its circuit keeps (one per q, k, v
    channel into a head; the embeddings' edges included), exactly those `export` marks in_graph.
    `draw`, `compare` and `export` count these, and `check`, `draw` and `verify` count declared
    edges (`edge` lines) beside them (docs/decisions.md, "Counts and names")."""
    return circuit_edges(spec.circuit, spec.settings.embed_edges, counting_config(spec))


def counting_config(spec: ir.Spec) -> GraphConfig:
    """`graph_config`, or for a hub model of a shape unknown offline the smallest model holding
    the nodes named (a circuit keeps the same edges in any larger one)."""
    try:
        return graph_config(spec)
    except ModelError:
        nodes = [m.node for m in spec.circuit.nodes]
        return GraphConfig(1 + max((n.layer or 0 for n in nodes), default=0), 1 + max((n.head or 0 for n in nodes), default=0))


# ---- configuration of a spec's model -------------------------------------------------------------


def graph_config(spec: ir.Spec) -> GraphConfig:
    """The spec's model as EAP-IG describes it, read offline (config.json or a table of hub models)."""
    if spec.shape is None:
        raise ModelError(
            f"the layer and head counts of '{spec.model.name}' are not known offline",
            spec.model.span,
            "point the spec at a local model folder (with config.json) to export it",
        )
    d_model, parallel = _model_details(spec.model)
    return GraphConfig(spec.shape.n_layers, spec.shape.n_heads, parallel or spec.shape.parallel_attn_mlp, d_model)


def _model_details(model: ir.ModelRef) -> tuple[int | None, bool]:
    if model.path is None:
        return KNOWN_HUB_GRAPHS.get(model.hub_id or model.name, (None, False))
    try:
        config = json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, False  # the shape was read from this file, so this does not happen in practice
    d_model = next((config[k] for k in ("n_embd", "hidden_size", "d_model") if isinstance(config.get(k), int)), None)
    model_type = config.get("model_type")
    parallel = config.get("use_parallel_residual", model_type == "gpt_neox") or model_type in _PARALLEL_MODEL_TYPES
    return d_model, bool(parallel)


# ---- export --------------------------------------------------------------------------------------


def export_graph(spec: ir.Spec, legacy: bool = False, config: GraphConfig | None = None) -> dict[str, object]:
    """The EAP-IG graph file of the spec's circuit (see the module docstring and docs/interop.md).

    Every node and edge of the model is listed; `in_graph` marks the circuit's. circuitlang has no
    edge scores: every score is 0.0 (EAP-IG's loader needs a number). `legacy` writes the format of
    EAP-IG before its `src/` layout: nodes map to a bare bool, and `n_pos` is null.
    """
    config = config or graph_config(spec)
    if config.d_model is None and not legacy:
        raise ModelError(
            f"the width (d_model) of '{spec.model.name}' is not known offline",
            spec.model.span,
            "EAP-IG's loader needs it; point the spec at a local model folder with config.json",
        )
    kept = circuit_edges(spec.circuit, spec.settings.embed_edges, config)
    members = {member.node for member in spec.circuit.nodes}
    nodes = {}
    for node in model_nodes(config):
        in_graph = node in members or node == LOGITS or (node == INPUT and any(e[0] == INPUT for e in kept))
        nodes[node_name(node)] = in_graph if legacy else {"in_graph": in_graph}
    edges = {edge_name(e): {"score": 0.0, "in_graph": e in kept} for e in model_edges(config)}
    data: dict[str, object] = {"cfg": config.as_cfg(), "nodes": nodes, "edges": edges}
    if legacy:
        data["n_pos"] = None
    return data


def export_warnings(spec: ir.Spec) -> list[str]:
    """What the export cannot carry: positions (EAP-IG's graph has none)."""
    placed = [f"{member.node}{_positions(member)}" for member in spec.circuit.nodes if member.q is not None or member.k is not None]
    if not placed:
        return []
    return [
        f"{spec.path}: EAP-IG graphs have no token positions; dropped the positions of {len(placed)} node(s), "
        f"which the exported graph keeps at every position: {'; '.join(placed)}"
    ]


def _positions(member: ir.CircuitNode) -> str:
    first = "at" if member.node.kind == "mlp" else "q"
    text = f" {first} {', '.join(map(str, member.q))}" if member.q is not None else ""
    return text + (f" k {', '.join(map(str, member.k))}" if member.k is not None else "")
