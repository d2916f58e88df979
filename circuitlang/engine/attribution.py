"""Edge attribution: every edge's effect estimated from gradients (EAP and EAP-IG).

Removing the edge s -> r (see engine.edges) takes the sender's difference over its ablation
value, diff_s = out_s - abl_s, out of receiver r's input. To first order the metric then drops by

    score(s -> r) = sum over positions of  diff_s . dm/d(input_r)

averaged over prompts. The gradient is averaged over runs whose input embeddings lie at the points
`alphas` of the line from the corrupt prompts' embeddings (alpha = 0) to the clean ones' (alpha = 1):
EAP (Syed et al. 2023) takes it at the clean run, alphas = (1,); EAP-IG (Hanna et al. 2024) at the
points of a Riemann sum (discover.methods.IGGrid chooses which). The differences diff_s are always
the clean run's, under the spec's ablation, so a score estimates exactly what edge ablation (and
so `verify`) measures.

Each receiver gets its own gradient: it reads the residual plus an offset of its own, zero in
value, and one backward pass gives dm/d(offset) for every receiver. A head's q, k and v are three
receivers (its input through ln1 and W_Q, W_K or W_V, recomputed per head so that each head has
its own offset); an MLP's input and the logits' input are one each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from circuitlang.engine.ablation_source import AblationSource
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.readouts import Readout
from circuitlang.engine.runner import Engine
from circuitlang.ir import models as ir

CHANNELS = ("q", "k", "v")
LOGITS = ir.LOGITS
EMBED = ir.EMBED
EdgeKey = tuple[ir.Node, ir.Node, str]  # sender, receiver, channel ("" into MLPs and the logits)
# Offsets and their gradients, and ln1 applied per head, per row: 3 x [P, H, D] floats per layer
# and channel. Rows per backward pass are chosen so that these stay under this many bytes.
GRADIENT_BYTES = 2 << 30


@dataclass(frozen=True)
class Graph:
    """The model's nodes in computation order: the embeddings (a sender only with
    `embed_edges = declared`), then per layer its heads and its MLP."""

    n_layers: int
    n_heads: int
    parallel_attn_mlp: bool
    embed_is_sender: bool

    def senders(self) -> list[ir.Node]:
        first = [EMBED] if self.embed_is_sender else []
        return first + [node for layer in range(self.n_layers) for node in self._layer(layer)]

    def _layer(self, layer: int) -> list[ir.Node]:
        heads: list[ir.Node] = [ir.HeadNode(layer=layer, head=h) for h in range(self.n_heads)]
        return heads + [ir.MlpNode(layer=layer)]

    def senders_before(self, receiver: ir.Node) -> int:
        """How many of `senders()` write before `receiver` reads: senders come in computation
        order, so a receiver's senders are a prefix of them."""
        first = 1 if self.embed_is_sender else 0
        if receiver.kind == "logits":
            return first + self.n_layers * (self.n_heads + 1)
        assert receiver.kind != "embed", "the embeddings read nothing"
        before = first + receiver.layer * (self.n_heads + 1)
        reads_own_heads = receiver.kind == "mlp" and not self.parallel_attn_mlp
        return before + (self.n_heads if reads_own_heads else 0)

    def edges(self) -> Iterator[EdgeKey]:
        senders = self.senders()
        for layer in range(self.n_layers):
            for node in self._layer(layer):
                channels = CHANNELS if node.kind == "head" else ("",)
                for sender in senders[: self.senders_before(node)]:
                    yield from ((sender, node, channel) for channel in channels)
        yield from ((sender, LOGITS, "") for sender in senders)


@dataclass(frozen=True)
class Attribution:
    scores: dict[EdgeKey, float]  # estimated drop of the metric when the edge alone is removed
    alphas: tuple[float, ...]  # where on the line from the corrupt inputs to the clean ones gradients were taken
    rows_per_pass: int


class _Offsets:
    """A zero offset per receiver input, for one batch of rows: leaves of autograd."""

    def __init__(self, rows: int, positions: int, n_layers: int, n_heads: int, d_model: int, like: torch.Tensor) -> None:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=like.dtype, device=like.device, requires_grad=True)

        self.heads = {(layer, channel): zeros(rows, positions, n_heads, d_model) for layer in range(n_layers) for channel in CHANNELS}
        self.mlps = {layer: zeros(rows, positions, d_model) for layer in range(n_layers)}
        self.logits = zeros(rows, positions, d_model)

    def leaves(self) -> list[torch.Tensor]:
        return [*self.heads.values(), *self.mlps.values(), self.logits]


def edge_scores(engine: Engine, graph: Graph, alphas: Sequence[float]) -> Attribution:
    """Scores of every edge of `graph`, for the prompt set's metric under its ablation, averaged
    over its prompts and over gradients taken at each of `alphas` (EAP: (1.0,), the clean run)."""
    if engine.model.family.grouped:  # discovery refuses these models first, with the reason
        raise ValueError("edge attribution over grouped key/value heads is not implemented")
    if not alphas:
        raise ValueError("edge attribution needs at least one point to take the gradient at")
    readout = engine.readout()
    senders = graph.senders()
    total = torch.zeros(len(senders), graph.n_layers * (3 * graph.n_heads + 1) + 1, dtype=torch.float64)
    rows_per_pass = _rows_per_pass(engine)
    interpolates = any(alpha != 1.0 for alpha in alphas)  # only then are the corrupt inputs needed
    for template in engine.bound.templates:
        corrupt = engine.corrupt_cache(template).resid_pre[0] if interpolates else None
        for rows in _row_chunks(template.n_prompts, rows_per_pass):
            differences = _sender_differences(engine, template, graph, rows)
            for alpha in alphas:
                start = _interpolated_input(engine, template, corrupt, rows, alpha)
                gradients = _receiver_gradients(engine, template, readout, rows, start)
                total += _dot_products(graph, differences, gradients)
    scores = total / (engine.bound.n_prompts * len(alphas))
    return Attribution(_as_edge_scores(graph, scores), tuple(alphas), rows_per_pass)


def _rows_per_pass(engine: Engine) -> int:
    cfg = engine.model.bridge.cfg
    positions = max(t.seq_len for t in engine.bound.templates)
    per_row = 3 * len(CHANNELS) * cfg.n_layers * positions * cfg.n_heads * cfg.d_model * cfg.dtype.itemsize
    return max(1, min(engine.batch_size, GRADIENT_BYTES // per_row))


def _row_chunks(n: int, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, n, size):
        yield torch.arange(start, min(n, start + size))


def _interpolated_input(engine: Engine, template: BoundTemplate, corrupt: torch.Tensor | None, rows: torch.Tensor, alpha: float) -> torch.Tensor:
    """The residual entering layer 0: the point at `alpha` on the line from the corrupt prompts'
    embeddings (0) to the clean prompts' (1)."""
    clean = engine.clean_cache(template).resid_pre[0][rows]
    if alpha == 1.0:
        return clean
    if corrupt is None:
        raise ValueError(f"a gradient at alpha = {alpha} needs the corrupt prompts' embeddings")
    return corrupt[rows] + alpha * (clean - corrupt[rows])


def _source(engine: Engine, template: BoundTemplate) -> AblationSource:
    return engine.ablation_source(template)


@torch.no_grad()
def _sender_differences(engine: Engine, template: BoundTemplate, graph: Graph, rows: torch.Tensor) -> torch.Tensor:
    """[senders, rows, P, D]: what each sender adds to the residual over its ablation value, in
    the clean run (zero for the embeddings unless they are a sender)."""
    clean, source, w_out = engine.clean_cache(template), _source(engine, template), engine.model.attention.W_O
    device = engine.model.device
    parts = []
    if graph.embed_is_sender:
        parts.append((clean.resid_pre[0][rows].to(device) - source.embed_value(rows).to(device)).unsqueeze(0))
    for layer in range(graph.n_layers):
        z = clean.acts["z"][layer][rows].to(device) - source.value("z", layer, rows).to(device)
        parts.append(torch.einsum("rphe,hed->hrpd", z, w_out[layer]))
        mlp = clean.acts["mlp_out"][layer][rows].to(device) - source.value("mlp_out", layer, rows).to(device)
        parts.append(mlp.unsqueeze(0))
    return torch.cat(parts)


def _receiver_gradients(engine: Engine, template: BoundTemplate, readout: Readout, rows: torch.Tensor, start: torch.Tensor) -> _Offsets:
    """The gradient of the summed metric with respect to every receiver's input offset."""
    cfg = engine.model.bridge.cfg
    offsets = _Offsets(len(rows), template.seq_len, cfg.n_layers, cfg.n_heads, cfg.d_model, start.to(engine.model.device))
    with torch.enable_grad():
        metric = run_with_offsets(engine, template, readout, rows, start, offsets)
        metric.sum().backward()
    return offsets


def run_with_offsets(
    engine: Engine, template: BoundTemplate, readout: Readout, rows: torch.Tensor, start: torch.Tensor, offsets: _Offsets
) -> torch.Tensor:
    """The metric per row of a forward from `start` (the residual entering layer 0) in which every
    receiver reads its input plus its offset. With zero offsets this is the plain forward; with a
    receiver's offset set to minus a sender's difference, it is that edge removed (to check the
    gradients by finite differences)."""
    hooks = _offset_hooks(engine, offsets)
    final = engine.forward_from(0, start, hooks)
    columns = readout.columns(template)
    logits = engine.logits_at(final[:, template.positions["end"]], None if columns is None else columns[rows])
    return readout.reduce(template, logits, rows)


def _offset_hooks(engine: Engine, offsets: _Offsets) -> list:
    bridge, weights, family = engine.model.bridge, engine.model.attention, engine.model.family
    residual: dict[int, torch.Tensor] = {}

    def remember(layer: int):
        def hook(resid: torch.Tensor, hook: object) -> torch.Tensor:
            residual[layer] = resid
            return resid

        return hook

    def head_input(layer: int, channel: str):
        weight, bias = weights.input_weights(channel, layer)
        ln1 = family.attention_norm(bridge, layer)

        def hook(vectors: torch.Tensor, hook: object) -> torch.Tensor:
            # every head's own copy of the layer's input, so that each has a gradient of its own
            normalized = ln1(residual[layer].unsqueeze(2) + offsets.heads[(layer, channel)])
            return torch.einsum("rphd,hde->rphe", normalized, weight) + bias

        return hook

    def add(offset: torch.Tensor):
        return lambda resid, hook: resid + offset

    def mlp_input(layer: int):
        if not family.mlp_reads_normalized:
            return add(offsets.mlps[layer])
        ln1 = family.attention_norm(bridge, layer)  # a norm shared with attention: the input is reached after it
        return lambda normalized, hook: ln1(residual[layer] + offsets.mlps[layer])

    hooks: list = []
    for layer in range(bridge.cfg.n_layers):
        hooks.append((family.resid_pre(layer), remember(layer)))
        hooks += [(family.head_input(channel, layer), head_input(layer, channel)) for channel in CHANNELS]
        hooks.append((family.mlp_input(layer), mlp_input(layer)))
    hooks.append((family.final_residual, add(offsets.logits)))
    return hooks


@torch.no_grad()
def _dot_products(graph: Graph, differences: torch.Tensor, gradients: _Offsets) -> torch.Tensor:
    """[senders, receivers] sums over rows and positions of diff_s . gradient_r (receivers in the
    order of `_receivers`); zero where the sender does not precede the receiver."""
    out = torch.zeros(differences.shape[0], graph.n_layers * (3 * graph.n_heads + 1) + 1, dtype=torch.float64)
    column = 0
    for layer in range(graph.n_layers):
        count = graph.senders_before(ir.HeadNode(layer=layer, head=0))
        for channel in CHANNELS:
            grad = gradients.heads[(layer, channel)].grad
            block = torch.einsum("srpd,rphd->sh", differences[:count], grad)
            out[:count, column : column + graph.n_heads] = block.double().cpu()
            column += graph.n_heads
        count = graph.senders_before(ir.MlpNode(layer=layer))
        out[:count, column] = torch.einsum("srpd,rpd->s", differences[:count], gradients.mlps[layer].grad).double().cpu()
        column += 1
    out[:, column] = torch.einsum("srpd,rpd->s", differences, gradients.logits.grad).double().cpu()
    return out


def _receivers(graph: Graph) -> list[tuple[ir.Node, str]]:
    """Receivers with their channels, in the columns' order of `_dot_products`."""
    receivers: list[tuple[ir.Node, str]] = []
    for layer in range(graph.n_layers):
        for channel in CHANNELS:
            receivers += [(ir.HeadNode(layer=layer, head=h), channel) for h in range(graph.n_heads)]
        receivers.append((ir.MlpNode(layer=layer), ""))
    return receivers + [(LOGITS, "")]


def _as_edge_scores(graph: Graph, matrix: torch.Tensor) -> dict[EdgeKey, float]:
    senders = graph.senders()
    scores: dict[EdgeKey, float] = {}
    for column, (receiver, channel) in enumerate(_receivers(graph)):
        for row in range(graph.senders_before(receiver)):
            scores[(senders[row], receiver, channel)] = float(matrix[row, column])
    return scores
