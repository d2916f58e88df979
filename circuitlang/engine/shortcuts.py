"""Arithmetic a run leaves out because its result is known or never read (`Shortcuts`).

Within a chunk of rows: an attention layer that every row ablates everywhere writes its ablation
value (`AblatedAttention`); the heads some row keeps, when they are few, are computed by hand and
the others give their ablation value (`KeptHeads`); an MLP that every row ablates everywhere gives
its ablation value; an MLP whose output nothing reads but the metric runs at the end position
only. A `ShortcutPlanner` decides, chunk by chunk, which of these a run may take; `Shortcuts.applied`
puts them into a block while it runs. Each gives the numbers of the run that computes everything
(tests/engine/test_engine_shortcuts.py).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

import torch

from circuitlang.engine.ablation_source import AblationSource, ActivationCache
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.variants import Masks

MAX_HEAD_WEIGHTS = 1  # kept-head weight sets held per layer (up to 4.7 MB each for GPT-2 small: 6 heads)
HeadWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # W_Q, W_K, W_V side by side; their biases; W_O


@dataclass(frozen=True)
class AblatedAttention:
    """An attention layer every head of which gives its ablation value at every position."""

    z: torch.Tensor  # [1 or rows, P, H, dh]
    output: Callable[[], torch.Tensor]  # what the layer then writes: [1 or rows, P, D]

    def write(self, attention: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        batch, positions = hidden.shape[:2]
        if Family.z_is_hooked(attention):  # edge ablation reads z
            z = self.z.to(hidden.device, hidden.dtype).expand(batch, positions, -1, -1)
            return Family.project_z(attention, z.reshape(batch, positions, -1).contiguous())
        return self.output().to(hidden.device, hidden.dtype).expand(batch, positions, -1)


@dataclass(frozen=True)
class KeptHeads:
    """An attention layer computed by hand for the n heads some row keeps; every other head gives
    its ablation value. Keys, values and z are ablated where the rows' masks say, as the ablation
    source's hooks would do (the runner leaves those hooks out for this layer)."""

    weights: torch.Tensor  # [D, 3 * n * dh]: the kept heads' W_Q, W_K and W_V side by side
    bias: torch.Tensor  # [3 * n * dh]
    w_out: torch.Tensor  # [n * dh, D]
    others: Callable[[], torch.Tensor]  # what the other heads write, plus b_O: [1 or rows, P, D]
    keep_kv: torch.Tensor  # [rows, P, n, 1]
    keep_z: torch.Tensor  # [rows, P, n, 1]
    ablated: dict[str, torch.Tensor]  # "k", "v", "z" of the kept heads: [1 or rows, P, n, dh]
    scale: float

    def write(self, attention: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        batch, positions, width = hidden.shape
        qkv = torch.addmm(self.bias, hidden.reshape(-1, width), self.weights)
        q, k, v = qkv.view(batch, positions, 3, self.keep_z.shape[2], -1).unbind(2)
        k = torch.where(self.keep_kv, k, self.ablated["k"])
        v = torch.where(self.keep_kv, v, self.ablated["v"])
        z = torch.where(self.keep_z, _causal_attention(q, k, v, self.scale), self.ablated["z"])
        return self.others() + z.flatten(-2) @ self.w_out


def _causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """z [B, P, n, dh] of causal softmax attention from q, k, v [B, P, n, dh]."""
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * scale
    later = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool, device=q.device).triu(1)
    pattern = scores.masked_fill(later, torch.finfo(scores.dtype).min).softmax(-1)
    return torch.einsum("bhqk,bkhe->bqhe", pattern, v)


@dataclass(frozen=True)
class Shortcuts:
    """Arithmetic a run leaves out because its result is known or unread: layer -> an MLP's
    output; layer -> an attention layer written without computing its ablated heads; and the
    layers whose MLP runs at the `end` position only (nothing after them reads the others)."""

    mlps: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, AblatedAttention | KeptHeads] = field(default_factory=dict)
    end_only_mlps: frozenset[int] = frozenset()
    end: int = -1

    @contextmanager
    def applied(self, block: torch.nn.Module, layer: int) -> Iterator[None]:
        """The block, layer `layer` of the model, computes what these shortcuts leave out their way
        while it runs; the hooks on what they replace still fire (an MLP's output, z)."""
        end = self.end if layer in self.end_only_mlps else None
        with _attention_replaced(block, self.attention.get(layer)), _mlp_replaced(block, self.mlps.get(layer)), _mlp_at(block, end):
            yield


def mlps_read_at_end_only(row_masks: Masks, start: int) -> set[int]:
    """Layers from `start` on whose MLP output reaches the final residual only at its own position:
    no later layer runs attention for any row (every later head is ablated everywhere)."""
    runs_attention = row_masks.z.transpose(0, 1).flatten(1).any(1)  # [L]
    later = torch.nonzero(runs_attention).flatten()
    first = max(start, int(later[-1]) if later.numel() else 0)
    return set(range(first, int(runs_attention.shape[0])))


class ShortcutPlanner:
    """Which shortcuts a run of some rows of one prompt set may take. Whether the blocks run one by
    one (`blocks_callable`, else none is taken) and whether attention by hand agrees with the
    model's are settled once; the ablated heads' outputs and the kept heads' weights are cached."""

    def __init__(
        self,
        model: LoadedModel,
        ablation_source: Callable[[BoundTemplate], AblationSource],
        clean: ActivationCache,
        n_prompts: int,
        blocks_callable: bool,
    ) -> None:
        self.model = model
        self.n_layers, self.n_heads = model.bridge.cfg.n_layers, model.bridge.cfg.n_heads
        self._source = ablation_source
        self.blocks_callable = blocks_callable
        self._attention_outputs: dict[tuple, torch.Tensor] = {}  # (template, layer, heads) -> ablated heads' output
        # the kept heads' weights per (layer, heads), most recently used last: a batch needs one entry
        # per layer, and completeness draws many head sets, so older entries go (MAX_HEAD_WEIGHTS)
        self._head_weights: OrderedDict[tuple[int, tuple[int, ...]], HeadWeights] = OrderedDict()
        self.heads_by_hand = blocks_callable and self._hand_attention_agrees(clean, n_prompts)

    def for_rows(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor, start: int, plain: bool) -> Shortcuts:
        """What a run of these rows from `start` can leave out. `plain`: the only hooks are the
        ablation source's and only the metric reads the final residual, at the end position."""
        if not self.blocks_callable:
            return Shortcuts()
        mlps = self.constant_mlps(template, row_masks, r_idx, start)
        attention: dict[int, AblatedAttention | KeptHeads] = {}
        attention |= self._constant_attention(template, row_masks, r_idx, start)
        if not plain:
            return Shortcuts(mlps, attention)
        for layer in range(start, self.n_layers):
            kept = None if layer in attention else self._kept_heads(template, row_masks, r_idx, layer)
            if kept is not None:
                attention[layer] = kept
        end_only_mlps = mlps_read_at_end_only(row_masks, start) - mlps.keys()
        return Shortcuts(mlps, attention, frozenset(end_only_mlps), template.positions["end"])

    def constant_mlps(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor, start: int) -> dict[int, torch.Tensor]:
        """Layer -> the output of an MLP that every row ablates at every position: its ablation
        value, known without running it (in a circuit's variants most MLPs are such)."""
        if not self.blocks_callable:
            return {}
        source = self._source(template)
        return {layer: source.value("mlp_out", layer, r_idx) for layer in range(start, self.n_layers) if not bool(row_masks.mlp[:, layer].any())}

    def _constant_attention(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor, start: int) -> dict[int, AblatedAttention]:
        """Layer -> an attention layer whose every head every row ablates at every position: its
        z is the ablation value, so its queries, keys, values and pattern need not be computed."""
        source = self._source(template)
        return {
            layer: AblatedAttention(source.value("z", layer, r_idx), partial(self._attention_output, template, layer, r_idx))
            for layer in range(start, self.n_layers)
            if not bool(row_masks.z[:, layer].any())
        }

    def _attention_output(self, template: BoundTemplate, layer: int, rows: torch.Tensor, left_out: tuple[int, ...] = ()) -> torch.Tensor:
        """What the layer's heads, but those `left_out`, write at their ablation value: the sum over
        heads of the ablation value of z times W_O, plus b_O. Computed once per template and layer
        when the value is shared by every prompt (mean, zero); per row for resampling."""
        source = self._source(template)
        key = (id(template), layer, left_out)
        if key in self._attention_outputs:
            return self._attention_outputs[key]
        z = source.value("z", layer, rows).to(self.model.device)
        if left_out:
            z = z.clone()
            z[:, :, list(left_out)] = 0
        output = Family.output_projection(self.model.bridge, layer)(z.flatten(-2))
        if not source.per_prompt:
            self._attention_outputs[key] = output
        return output

    def _kept_heads(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor, layer: int) -> KeptHeads | None:
        """The layer's attention for the heads some row keeps, when they are at most half of the
        layer's heads (a circuit keeps one or two per layer; then the model's own attention costs
        many times more)."""
        heads = torch.nonzero(row_masks.z[:, layer].flatten(0, 1).any(0)).flatten().tolist()
        if not self.heads_by_hand or 2 * len(heads) > self.n_heads:
            return None
        source, device = self._source(template), self.model.device
        weights, bias, w_out = self._weights_of(layer, tuple(heads))
        return KeptHeads(
            weights,
            bias,
            w_out,
            partial(self._attention_output, template, layer, r_idx, tuple(heads)),
            keep_kv=row_masks.kv[:, layer][:, :, heads].unsqueeze(-1).to(device),
            keep_z=row_masks.z[:, layer][:, :, heads].unsqueeze(-1).to(device),
            ablated={kind: source.value(kind, layer, r_idx)[:, :, heads].to(device) for kind in ("k", "v", "z")},
            scale=self.model.bridge.cfg.d_head**-0.5,
        )

    def _weights_of(self, layer: int, heads: tuple[int, ...]) -> HeadWeights:
        """The heads' W_Q, W_K, W_V as one [D, 3 * n * dh] matrix, their biases, and their W_O rows."""
        if (layer, heads) in self._head_weights:
            self._head_weights.move_to_end((layer, heads))
        else:
            while len(self._head_weights) >= MAX_HEAD_WEIGHTS * self.n_layers:
                self._head_weights.popitem(last=False)
            weights, index = self.model.attention, list(heads)
            qkv = torch.stack([weights.W_Q[layer][index], weights.W_K[layer][index], weights.W_V[layer][index]])
            bias = torch.stack([weights.b_Q[layer][index], weights.b_K[layer][index], weights.b_V[layer][index]])
            d_model = qkv.shape[2]
            self._head_weights[(layer, heads)] = (
                qkv.permute(2, 0, 1, 3).reshape(d_model, -1).contiguous(),
                bias.reshape(-1),
                weights.W_O[layer][index].reshape(-1, d_model),
            )
        return self._head_weights[(layer, heads)]

    def _hand_attention_agrees(self, clean: ActivationCache, n_prompts: int) -> bool:
        """Whether attention computed by hand (`KeptHeads`: causal softmax of q.k / sqrt(dh))
        gives each layer's output as the model computes it, on two clean prompts: true for
        GPT-2; a model whose attention differs (scaling, local windows) never uses it."""
        rows = torch.arange(min(2, n_prompts))
        every = tuple(range(self.n_heads))
        try:
            with torch.no_grad():
                for layer in range(self.n_layers):
                    if not self._layer_by_hand_agrees(layer, clean, rows, every):
                        return False
        except Exception:  # an attention the hand computation cannot even express
            return False
        return True

    def _layer_by_hand_agrees(self, layer: int, clean: ActivationCache, rows: torch.Tensor, every: tuple[int, ...]) -> bool:
        device, bridge = self.model.device, self.model.bridge
        z = clean.acts["z"][layer][rows].to(device)
        keep = torch.ones(*z.shape[:3], 1, dtype=torch.bool, device=device)
        projection = Family.output_projection(bridge, layer)
        bias = projection(torch.zeros_like(z.flatten(-2)))
        weights, biases, w_out = self._weights_of(layer, every)
        hand = KeptHeads(weights, biases, w_out, lambda: bias, keep, keep, {"k": z, "v": z, "z": z}, bridge.cfg.d_head**-0.5)
        # every head's weights (8 MB a layer for GPT-2 small) are not kept: runs use a few heads'
        self._head_weights.pop((layer, every))
        attention = Family.attention(Family.blocks(bridge)[layer])
        mine = hand.write(attention, Family.attention_norm(bridge, layer)(clean.resid_pre[layer][rows].to(device)))
        theirs = projection(z.flatten(-2))
        return bool(torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max())))


@contextmanager
def _mlp_replaced(block: torch.nn.Module, output: torch.Tensor | None) -> Iterator[None]:
    """The block's MLP gives `output` (broadcast over the batch) instead of computing it. Only
    the wrapped module's computation is replaced: the bridge's hooks around it still fire."""
    if output is None:
        yield
        return
    module = Family.mlp_computation(block)
    previous = module.__dict__.get("forward")  # accelerate's hook wraps the forward of an instance it places

    def constant(hidden: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return output.to(hidden.device, hidden.dtype).expand(hidden.shape).contiguous()

    module.forward = constant
    try:
        yield
    finally:
        _restore_forward(module, previous)


@contextmanager
def _attention_replaced(block: torch.nn.Module, replacement: AblatedAttention | KeptHeads | None) -> Iterator[None]:
    """The block's attention is written by `replacement` instead of the model's computation of
    every head. An ablated layer's hooks on z still see z when any is registered (edge ablation
    reads it); the output is then projected from what they leave, as the model does."""
    if replacement is None:
        yield
        return
    attention = Family.attention(block)

    def given(hidden: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, None]:
        return Family.attention_written(attention, replacement.write(attention, hidden)), None

    # set on the bridge itself: its __setattr__ would pass the name on to the wrapped module
    previous = attention.__dict__.get("forward")
    object.__setattr__(attention, "forward", given)
    try:
        yield
    finally:
        _restore_forward(attention, previous)


@contextmanager
def _mlp_at(block: torch.nn.Module, end: int | None) -> Iterator[None]:
    """The block's MLP runs at position `end` only; it writes zeros elsewhere, where nothing reads
    its output (the hooks on it, which replace ablated positions, still see every position)."""
    if end is None:
        yield
        return
    module = Family.mlp_computation(block)
    compute = module.forward
    previous = module.__dict__.get("forward")

    def at_end(hidden: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = torch.zeros_like(hidden)
        out[:, end] = compute(hidden[:, end : end + 1], *args, **kwargs)[:, 0]
        return out

    module.forward = at_end
    try:
        yield
    finally:
        _restore_forward(module, previous)


def _restore_forward(module: torch.nn.Module, previous: object) -> None:
    """The module's forward as it was: its class's, or the one set on the instance before (where
    accelerate places a module's weights, its hook is such a forward and must stay)."""
    if previous is None:
        object.__delattr__(module, "forward")
    else:
        object.__setattr__(module, "forward", previous)
