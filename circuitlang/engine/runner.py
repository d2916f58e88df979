"""The ablation engine: evaluate many circuit variants on a bound prompt set.

Work that does not depend on the variant is done once per template: the clean run's residual
stream at every layer and the ablation values (`AblationSource`). A variant then runs only from
the first layer its masks touch, starting from the cached clean residual (or from a base
variant's cached run); the forward stops before the unembedding and only the logits the metric
asks for are computed, at the one position it reads. Each variant runs on its own, its prompts in
chunks of `batch_size`, so memory is bounded by the batch, not by the number of variants, and a
variant's numbers do not depend on the variants run with it. Within a chunk, arithmetic whose
result is known is left out (`Shortcuts`): MLPs and attention layers that the variant ablates
everywhere give their ablation value, and MLPs whose output nothing reads but the metric run at
the end position only.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch

from circuitlang.engine.ablation_source import AblationSource, ActivationCache, collect
from circuitlang.engine.bind import BoundPromptSet, BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.edges import EdgeHooks, EdgeState, edge_agreement, sender_layer
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.readouts import Readout, readout_for
from circuitlang.engine.variants import Masks, Variant, masks_for
from circuitlang.ir import models as ir

MAX_HEAD_WEIGHTS = 1  # kept-head weight sets held per layer (up to 4.7 MB each for GPT-2 small: 6 heads)
MAX_CACHED_TRUNKS = 4  # base runs kept per engine: a verification uses one (the circuit's)
# reduce(logits [rows, k], prompt rows [rows]) -> metric value per row
Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _AblatedAttention:
    """An attention layer every head of which gives its ablation value at every position."""

    z: torch.Tensor  # [1 or rows, P, H, dh]
    output: Callable[[], torch.Tensor]  # what the layer then writes: [1 or rows, P, D]

    def write(self, attention: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        batch, positions = hidden.shape[:2]
        if attention.o.hook_in._forward_hooks:  # the hook point of hook_z: edge ablation reads z
            z = self.z.to(hidden.device, hidden.dtype).expand(batch, positions, -1, -1)
            return attention.o(z.reshape(batch, positions, -1).contiguous())
        return self.output().to(hidden.device, hidden.dtype).expand(batch, positions, -1)


@dataclass(frozen=True)
class _KeptHeads:
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
    attention: dict[int, _AblatedAttention | _KeptHeads] = field(default_factory=dict)
    end_only_mlps: frozenset[int] = frozenset()
    end: int = -1


class _StopBeforeUnembed(Exception):
    def __init__(self, residual: torch.Tensor) -> None:
        super().__init__("stop")
        self.residual = residual


class Engine:
    """Runs variants of one prompt set under one ablation."""

    def __init__(self, model: LoadedModel, bound: BoundPromptSet, ablation: ir.Ablation, batch_size: int = 64) -> None:
        self.model = model
        self.bound = bound
        self.ablation = ablation
        self.batch_size = batch_size
        cfg = model.bridge.cfg
        self.n_layers, self.n_heads = cfg.n_layers, cfg.n_heads
        self._clean = {id(t): collect(model, t.clean, self.batch_size) for t in bound.templates}
        self._corrupt: dict[int, ActivationCache] = {}
        self._trunks: dict[tuple[int, Variant], _Trunk] = {}  # base runs, kept across calls (one per base)
        self._attention_outputs: dict[tuple, torch.Tensor] = {}  # (template, layer, heads) -> ablated heads' output
        # the kept heads' weights per (layer, heads), most recently used last: a batch needs one entry
        # per layer, and completeness draws many head sets, so older entries go (MAX_HEAD_WEIGHTS)
        self._head_weights: OrderedDict[tuple[int, tuple[int, ...]], tuple[torch.Tensor, ...]] = OrderedDict()
        self._blocks_callable = self._blocks_run_alone()
        self._heads_by_hand = self._blocks_callable and self._hand_attention_agrees()
        self._sources = {id(t): self._build_source(t) for t in bound.templates}

    def _build_source(self, template: BoundTemplate) -> AblationSource:
        clean = self._clean[id(template)]
        if self.ablation.kind == "zero" or self.ablation.source == "clean":
            return AblationSource.build(self.ablation, clean, None)
        if self.ablation.kind == "resample":  # the values are the corrupt activations themselves
            return AblationSource.build(self.ablation, clean, self.corrupt_cache(template))
        # A mean needs only the means: the corrupt activations (as large as the clean cache) are
        # summed batch by batch, and collected whole only if path patching or attribution asks.
        means = collect(self.model, self._corrupt_tokens(template), self.batch_size, mean=True)
        return AblationSource.build(self.ablation, clean, means)

    def clean_cache(self, template: BoundTemplate) -> ActivationCache:
        return self._clean[id(template)]

    def ablation_source(self, template: BoundTemplate) -> AblationSource:
        """The ablation values of the template's prompts (every ablated activation's value)."""
        return self._sources[id(template)]

    def clean_logits(self, template: BoundTemplate) -> torch.Tensor:
        """The clean run's full logits at the end position: [n, vocab] (KL and token-set readouts)."""
        return self.logits_at(self.clean_cache(template).final_residual[:, template.positions["end"]], None)

    def readout(self, metric: ir.Metric | None = None) -> Readout:
        """How a variant's end-position logits become the metric per prompt: the prompt set's metric
        unless another (e.g. KL) is asked for. The one place a readout is built."""
        return readout_for(metric or self.bound.metric, self.clean_logits)

    def corrupt_cache(self, template: BoundTemplate) -> ActivationCache:
        """Activations of the corrupt prompts (for path patching), computed on first use."""
        if id(template) not in self._corrupt:
            self._corrupt[id(template)] = collect(self.model, self._corrupt_tokens(template), self.batch_size)
        return self._corrupt[id(template)]

    def _corrupt_tokens(self, template: BoundTemplate) -> torch.Tensor:
        if template.corrupt is None:
            raise ValueError(f"prompt set '{self.bound.name}' has no corruption to patch from")
        return template.corrupt

    def run(self, variants: Sequence[Variant], readout: Readout, base: Variant | None = None) -> torch.Tensor:
        """Metric value per variant and prompt: [n_variants, n_prompts] (prompts in dataset order).

        `base` is a variant many of `variants` agree with up to some layer (the circuit, for a
        minimality sweep of C minus one node): it is run once with its residual stream cached, and
        each variant starts from it at the first layer where the two differ."""
        why = self.model.family.why_no_edges()
        if why and any(v.edges is not None for v in variants):  # specs are refused earlier, with the edge's line
            raise ValueError(f"edge ablation is not defined on this model: {why}")
        out = torch.empty(len(variants), self.bound.n_prompts, dtype=torch.float64)
        for template in self.bound.templates:
            rows = torch.tensor(template.prompt_indices)
            values = self._run_template(template, variants, readout, base)
            out[:, rows] = values.to(torch.float64)
        return out

    @torch.no_grad()
    def _run_template(self, template: BoundTemplate, variants: Sequence[Variant], readout: Readout,
                      base: Variant | None) -> torch.Tensor:
        """Each variant runs alone, its prompts in the chunks of `batch_size` the clean run and the
        base's run were made in: a variant's numbers are then the same bytes whichever variants
        are run with it (the result cache relies on it), since which shortcuts a chunk takes and
        the shapes its matrix products get (which can change their rounding) are its own."""
        clean = self._clean[id(template)]
        trunks = [_Trunk(None, clean.resid_pre, clean.final_residual)]
        if base is not None:
            trunks.append(self._cached_trunk(template, base))
        columns = readout.columns(template)
        result = torch.empty(len(variants), template.n_prompts)
        for index, variant in enumerate(variants):
            masks = self._masks(template, variant)
            trunk, start = _resume_point(variant, masks, trunks, self.n_layers)
            for chunk in _chunks(list(range(template.n_prompts)), self.batch_size):
                r_idx = torch.tensor(chunk)
                residual = self._final_residual(template, variant, masks, r_idx, trunk, start)
                logits = self.logits_at(residual[:, template.positions["end"]], None if columns is None else columns[r_idx])
                result[index, r_idx] = readout.reduce(template, logits, r_idx).float().cpu()
        return result

    def _masks(self, template: BoundTemplate, variant: Variant) -> Masks:
        return masks_for(variant, template.template, template.positions, template.seq_len, self.n_layers,
                         self.n_heads)

    def _cached_trunk(self, template: BoundTemplate, base: Variant) -> "_Trunk":
        """The base's run, computed once per template and base: a verification's criteria all
        start from the circuit's run."""
        key = (id(template), replace(base, label=""))
        if key not in self._trunks:
            if len(self._trunks) >= MAX_CACHED_TRUNKS:
                self._trunks.pop(next(iter(self._trunks)))
            self._trunks[key] = self._trunk(template, base)
        return self._trunks[key]

    def _trunk(self, template: BoundTemplate, base: Variant) -> "_Trunk":
        """Run `base` over every prompt, keeping the residual entering each layer; for an
        edge-ablated base also the running total entering each layer and the stored senders'
        differences, so that edge variants can resume from it."""
        masks = self._masks(template, base)
        start = masks.first_ablated_layer() if base.edges is None else 0
        clean = self._clean[id(template)]
        source = self._sources[id(template)]
        # written chunk by chunk into tensors allocated once: joining chunks at the end would hold
        # every layer's residual twice at the run's peak
        layers: list[torch.Tensor | None] = [None] * self.n_layers
        final: list[torch.Tensor | None] = [None]
        edge_runs = []
        for chunk in _chunks(list(range(template.n_prompts)), self.batch_size):
            r_idx = torch.tensor(chunk)
            v_idx = torch.zeros(len(chunk), dtype=torch.long)
            row_masks = _stack_rows([masks], v_idx)
            # each layer as a variant agreeing with the base up to it computes it alone (resuming
            # changes no number), at every position: variants resume at any later layer
            shortcuts = replace(self._shortcuts(template, row_masks, r_idx, start, plain=base.edges is None),
                                end_only_mlps=frozenset())
            hooks = source.hooks(row_masks, r_idx, start, shortcuts.attention.keys())
            if base.edges is not None:
                edge_runs.append(EdgeHooks(self.model, [base], v_idx, r_idx, template, source, row_masks, 0,
                                            keep_totals=True))
                hooks += edge_runs[-1].hooks()
            hooks += [(Family.resid_pre(layer), _row_writer(layers, layer, r_idx, template.n_prompts))
                      for layer in range(start, self.n_layers)]
            _write_rows(final, 0, r_idx, template.n_prompts,
                        self.forward_from(start, clean.resid_pre[start][r_idx], hooks, shortcuts)
                        if start < self.n_layers else clean.final_residual[r_idx])
        resid = tuple(clean.resid_pre[layer] if layer < start else layers[layer] for layer in range(self.n_layers))
        return _Trunk(masks, resid, final[0], _EdgeRun.join(base, edge_runs, self.n_layers) if edge_runs else None)

    def _final_residual(self, template: BoundTemplate, variant: Variant, masks: Masks, r_idx: torch.Tensor,
                        trunk: "_Trunk", start: int) -> torch.Tensor:
        if start >= self.n_layers:
            return trunk.final[r_idx]
        v_idx = torch.zeros(len(r_idx), dtype=torch.long)
        row_masks = _stack_rows([masks], v_idx)
        source = self._sources[id(template)]
        edges = variant.edges is not None
        # Edge ablation reads the residual at every position (its running total), so only variants
        # without edges may leave the other positions unfinished.
        shortcuts = self._shortcuts(template, row_masks, r_idx, start, plain=not edges)
        hooks = source.hooks(row_masks, r_idx, start, shortcuts.attention.keys())
        if edges:
            resume = trunk.edges.state(start, r_idx) if start > 0 and trunk.edges is not None else None
            hooks += EdgeHooks(self.model, [variant], v_idx, r_idx, template, source, row_masks, start, resume).hooks()
        return self.forward_from(start, trunk.resid_pre[start][r_idx], hooks, shortcuts)

    def _shortcuts(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor, start: int,
                   plain: bool) -> Shortcuts:
        """What a run of these rows from `start` can leave out. `plain`: the only hooks are the
        ablation source's and only the metric reads the final residual, at the end position."""
        if not self._blocks_callable:
            return Shortcuts()
        mlps = self._constant_mlps(template, row_masks, r_idx, start)
        attention: dict[int, _AblatedAttention | _KeptHeads] = {}
        attention |= self._constant_attention(template, row_masks, r_idx, start)
        if not plain:
            return Shortcuts(mlps, attention)
        for layer in range(start, self.n_layers):
            kept = None if layer in attention else self._kept_heads(template, row_masks, r_idx, layer)
            if kept is not None:
                attention[layer] = kept
        end_only_mlps = _mlps_read_at_end_only(row_masks, start) - mlps.keys()
        return Shortcuts(mlps, attention, frozenset(end_only_mlps), template.positions["end"])

    def _kept_heads(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor,
                    layer: int) -> _KeptHeads | None:
        """The layer's attention for the heads some row keeps, when they are at most half of the
        layer's heads (a circuit keeps one or two per layer; then the model's own attention costs
        many times more)."""
        heads = torch.nonzero(row_masks.z[:, layer].flatten(0, 1).any(0)).flatten().tolist()
        if not self._heads_by_hand or 2 * len(heads) > self.n_heads:
            return None
        source, device = self._sources[id(template)], self.model.device
        weights, bias, w_out = self._weights_of(layer, tuple(heads))
        return _KeptHeads(
            weights, bias, w_out, lambda: self._attention_output(template, layer, r_idx, tuple(heads)),
            keep_kv=row_masks.kv[:, layer][:, :, heads].unsqueeze(-1).to(device),
            keep_z=row_masks.z[:, layer][:, :, heads].unsqueeze(-1).to(device),
            ablated={kind: source.value(kind, layer, r_idx)[:, :, heads].to(device) for kind in ("k", "v", "z")},
            scale=self.model.bridge.cfg.d_head ** -0.5)

    def _weights_of(self, layer: int, heads: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
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
            self._head_weights[(layer, heads)] = (qkv.permute(2, 0, 1, 3).reshape(d_model, -1).contiguous(),
                                                  bias.reshape(-1), weights.W_O[layer][index].reshape(-1, d_model))
        return self._head_weights[(layer, heads)]

    def _hand_attention_agrees(self) -> bool:
        """Whether attention computed by hand (`_KeptHeads`: causal softmax of q.k / sqrt(dh))
        gives each layer's output as the model computes it, on two clean prompts: true for
        GPT-2; a model whose attention differs (scaling, local windows) never uses it."""
        template = self.bound.templates[0]
        clean = self._clean[id(template)]
        rows = torch.arange(min(2, template.n_prompts))
        every = tuple(range(self.n_heads))
        try:
            with torch.no_grad():
                for layer, block in enumerate(self.model.bridge.blocks):
                    if not self._layer_by_hand_agrees(layer, block, clean, rows, every):
                        return False
        except Exception:  # an attention the hand computation cannot even express
            return False
        return True

    def _layer_by_hand_agrees(self, layer: int, block: torch.nn.Module, clean: ActivationCache,
                              rows: torch.Tensor, every: tuple[int, ...]) -> bool:
        device = self.model.device
        z = clean.acts["z"][layer][rows].to(device)
        keep = torch.ones(*z.shape[:3], 1, dtype=torch.bool, device=device)
        projection = block.attn.o.original_component
        bias = projection(torch.zeros_like(z.flatten(-2)))
        hand = _KeptHeads(*self._weights_of(layer, every), lambda: bias, keep, keep, {"k": z, "v": z, "z": z},
                          self.model.bridge.cfg.d_head ** -0.5)
        # every head's weights (8 MB a layer for GPT-2 small) are not kept: runs use a few heads'
        self._head_weights.pop((layer, every))
        mine = hand.write(block.attn, block.ln1(clean.resid_pre[layer][rows].to(device)))
        theirs = projection(z.flatten(-2))
        return bool(torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max())))

    def _constant_attention(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor,
                            start: int) -> dict[int, _AblatedAttention]:
        """Layer -> an attention layer whose every head every row ablates at every position: its
        z is the ablation value, so its queries, keys, values and pattern need not be computed."""
        source = self._sources[id(template)]
        return {layer: _AblatedAttention(source.value("z", layer, r_idx),
                                         lambda layer=layer: self._attention_output(template, layer, r_idx))
                for layer in range(start, self.n_layers) if not bool(row_masks.z[:, layer].any())}

    def _attention_output(self, template: BoundTemplate, layer: int, rows: torch.Tensor,
                          left_out: tuple[int, ...] = ()) -> torch.Tensor:
        """What the layer's heads, but those `left_out`, write at their ablation value: the sum over
        heads of the ablation value of z times W_O, plus b_O. Computed once per template and layer
        when the value is shared by every prompt (mean, zero); per row for resampling."""
        source = self._sources[id(template)]
        key = (id(template), layer, left_out)
        if key in self._attention_outputs:
            return self._attention_outputs[key]
        z = source.value("z", layer, rows).to(self.model.device)
        if left_out:
            z = z.clone()
            z[:, :, list(left_out)] = 0
        output = self.model.bridge.blocks[layer].attn.o.original_component(z.flatten(-2))
        if not source.per_prompt:
            self._attention_outputs[key] = output
        return output

    def _constant_mlps(self, template: BoundTemplate, row_masks: Masks, r_idx: torch.Tensor,
                       start: int) -> dict[int, torch.Tensor]:
        """Layer -> the output of an MLP that every row ablates at every position: its ablation
        value, known without running it (in a circuit's variants most MLPs are such)."""
        if not self._blocks_callable:
            return {}
        source = self._sources[id(template)]
        return {layer: source.value("mlp_out", layer, r_idx) for layer in range(start, self.n_layers)
                if not bool(row_masks.mlp[:, layer].any())}

    def forward_from(self, layer: int, residual: torch.Tensor, hooks: list,
                     shortcuts: Shortcuts | None = None) -> torch.Tensor:
        """Run from the residual entering `layer` with `hooks`; return the residual entering ln_final.
        `shortcuts`: arithmetic to leave out (only when the blocks run one by one); the hooks on
        what it replaces still fire where it has a value (an MLP's output, z)."""
        bridge = self.model.bridge
        residual = residual.to(self.model.device)
        with bridge.hooks(fwd_hooks=hooks):
            if self._blocks_callable:
                return self._through_blocks(layer, residual, shortcuts or Shortcuts())
            return self._through_bridge(layer, residual)

    def _through_blocks(self, layer: int, residual: torch.Tensor, shortcuts: Shortcuts | None = None) -> torch.Tensor:
        """Only the blocks from `layer` on run (the bridge's start_at_layer runs them all)."""
        shortcuts = shortcuts or Shortcuts()
        for index, block in enumerate(self.model.bridge.blocks[layer:], start=layer):
            end = shortcuts.end if index in shortcuts.end_only_mlps else None
            with _attention_replaced(block, shortcuts.attention.get(index)), \
                    _mlp_replaced(block, shortcuts.mlps.get(index)), _mlp_at(block, end):
                out = block(residual)
            residual = out[0] if isinstance(out, tuple) else out
        # The hook point on ln_final's input still fires: receivers of the logits (edge ablation,
        # path patching) read the residual there.
        return self.model.bridge.ln_final.hook_in(residual)

    def _through_bridge(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        def stop(tensor: torch.Tensor, hook: object) -> None:
            raise _StopBeforeUnembed(tensor)

        try:
            with self.model.bridge.hooks(fwd_hooks=[(Family.final_residual, stop)]):
                self.model.bridge(residual, start_at_layer=layer)
        except _StopBeforeUnembed as stopped:
            return stopped.residual
        raise RuntimeError("the model finished without reaching ln_final")  # an architecture we do not know

    def _blocks_run_alone(self) -> bool:
        """Whether calling the blocks one by one reproduces the model (true for GPT-2-style
        models; others, e.g. with rotary embeddings passed from the top, use the bridge)."""
        if self.model.family.rotary:  # the bridge passes the rotation to each block from the top
            return False
        template = self.bound.templates[0]
        clean = self._clean[id(template)]
        rows = torch.arange(min(2, template.n_prompts))
        try:
            with torch.no_grad():
                alone = self._through_blocks(0, clean.resid_pre[0][rows].to(self.model.device))
        except Exception:  # any failure means: not callable alone; the bridge path is always right
            return False
        return bool(torch.allclose(alone.cpu(), clean.final_residual[rows].cpu(), atol=1e-5, rtol=1e-5))

    def logits_at(self, end_residual: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
        """Logits at the end position, for the requested token ids only (or all of them)."""
        bridge = self.model.bridge
        normalized = bridge.ln_final(end_residual)
        bias = getattr(bridge, "b_U", None)
        if columns is None:
            return _soft_capped(normalized @ bridge.W_U + (bias if bias is not None else 0), bridge.cfg)
        columns = columns.to(normalized.device)
        weights = bridge.W_U.T[columns]  # [rows, k, d_model]
        logits = torch.einsum("rd,rkd->rk", normalized, weights)
        return _soft_capped(logits + (bias[columns] if bias is not None else 0), bridge.cfg)


def _soft_capped(logits: torch.Tensor, cfg: object) -> torch.Tensor:
    """The model's own cap on its logits (Gemma 2: cap * tanh(logits / cap)); none when cap <= 0."""
    cap = float(getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0)
    return cap * torch.tanh(logits / cap) if cap > 0 else logits


@dataclass(frozen=True)
class _EdgeRun:
    """What an edge-ablated base run accumulated, over every prompt of a template."""

    base: Variant
    entering: tuple[torch.Tensor, ...]  # per layer: the running total entering it [n, P, D]
    diffs: dict[tuple, torch.Tensor]  # stored sender -> its difference [n, P, D]

    @classmethod
    def join(cls, base: Variant, chunks: list[EdgeHooks], n_layers: int) -> "_EdgeRun":
        return cls(base, tuple(torch.cat([c.entering[layer] for c in chunks]) for layer in range(n_layers)),
                   {key: torch.cat([c.diffs[key] for c in chunks]) for key in chunks[0].diffs})

    def state(self, layer: int, rows: torch.Tensor) -> EdgeState:
        return EdgeState(self.entering[layer][rows],
                         {key: diff[rows] for key, diff in self.diffs.items() if sender_layer(key) < layer})


@dataclass(frozen=True)
class _Trunk:
    """A run whose residual stream is cached: the clean run (masks None) or a base variant's,
    edge-ablated (`edges`) when the base declares edges."""

    masks: Masks | None
    resid_pre: tuple[torch.Tensor, ...]  # per layer [n, P, D]
    final: torch.Tensor  # [n, P, D]
    edges: _EdgeRun | None = None

    def serves(self, variant: Variant) -> bool:
        """Edge variants resume only edge-ablated runs, the others only runs without edges."""
        return (variant.edges is not None) == (self.edges is not None)

    def agreement(self, masks: Masks, variant: Variant) -> int:
        """The first layer where a variant with `masks` computes something else than this run."""
        if self.masks is None:
            return masks.first_ablated_layer()
        differs = (masks.z != self.masks.z).flatten(1).any(1) | (masks.kv != self.masks.kv).flatten(1).any(1) \
            | (masks.mlp != self.masks.mlp).any(1)
        layers = torch.nonzero(differs).flatten()
        n_layers = int(masks.z.shape[0])
        start = int(layers[0]) if layers.numel() else n_layers
        return start if self.edges is None else min(start, edge_agreement(variant, self.edges.base, n_layers))


def _resume_point(variant: Variant, masks: Masks, trunks: list[_Trunk], n_layers: int) -> tuple[_Trunk, int]:
    """The cached run a variant resumes and the layer it starts at: the latest layer up to which
    a run that serves it agrees with it (the first on a tie; layer 0 when none serves it), but no
    later than its first MLP that runs at the end position only (`_mlps_read_at_end_only`), which
    a cached run, kept at every position, computes otherwise. So the layers before the start are
    the ones the variant would compute alone, the same way, and resuming changes no number."""
    starts = [(trunk.agreement(masks, variant), t) for t, trunk in enumerate(trunks) if trunk.serves(variant)]
    start, best = max(starts, key=lambda pair: pair[0], default=(0, 0))
    if variant.edges is None:  # only runs without edges take end-only MLPs
        alone = _mlps_read_at_end_only(_stack_rows([masks], torch.zeros(1, dtype=torch.long)), masks.first_ablated_layer())
        start = min(start, min(alone, default=n_layers))
    return trunks[best], start


@contextmanager
def _mlp_replaced(block: torch.nn.Module, output: torch.Tensor | None) -> Iterator[None]:
    """The block's MLP gives `output` (broadcast over the batch) instead of computing it. Only
    the wrapped module's computation is replaced: the bridge's hooks around it still fire."""
    if output is None:
        yield
        return
    module = block.mlp.original_component

    def constant(hidden: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return output.to(hidden.device, hidden.dtype).expand(hidden.shape).contiguous()

    module.forward = constant
    try:
        yield
    finally:
        del module.forward


@contextmanager
def _attention_replaced(block: torch.nn.Module, replacement: _AblatedAttention | _KeptHeads | None) -> Iterator[None]:
    """The block's attention is written by `replacement` instead of the model's computation of
    every head. An ablated layer's hooks on z still see z when any is registered (edge ablation
    reads it); the output is then projected from what they leave, as the model does."""
    if replacement is None:
        yield
        return
    attention = block.attn

    def given(hidden: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, None]:
        return attention.hook_out(attention.hook_hidden_states(replacement.write(attention, hidden))), None

    # set on the bridge itself: its __setattr__ would pass the name on to the wrapped module
    object.__setattr__(attention, "forward", given)
    try:
        yield
    finally:
        object.__delattr__(attention, "forward")


@contextmanager
def _mlp_at(block: torch.nn.Module, end: int | None) -> Iterator[None]:
    """The block's MLP runs at position `end` only; it writes zeros elsewhere, where nothing reads
    its output (the hooks on it, which replace ablated positions, still see every position)."""
    if end is None:
        yield
        return
    module = block.mlp.original_component
    compute = module.forward

    def at_end(hidden: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = torch.zeros_like(hidden)
        out[:, end] = compute(hidden[:, end:end + 1], *args, **kwargs)[:, 0]
        return out

    module.forward = at_end
    try:
        yield
    finally:
        del module.forward


def _mlps_read_at_end_only(row_masks: Masks, start: int) -> set[int]:
    """Layers from `start` on whose MLP output reaches the final residual only at its own position:
    no later layer runs attention for any row (every later head is ablated everywhere)."""
    runs_attention = row_masks.z.transpose(0, 1).flatten(1).any(1)  # [L]
    later = torch.nonzero(runs_attention).flatten()
    first = max(start, int(later[-1]) if later.numel() else 0)
    return set(range(first, int(runs_attention.shape[0])))


def _write_rows(store: list[torch.Tensor | None], index: int, rows: torch.Tensor, n: int,
                activation: torch.Tensor) -> None:
    """Write a chunk's rows into `store[index]`, a tensor of `n` rows allocated at the first chunk."""
    if store[index] is None:
        store[index] = activation.new_empty((n, *activation.shape[1:]))
    store[index][rows.to(activation.device)] = activation.detach()


def _row_writer(store: list[torch.Tensor | None], index: int, rows: torch.Tensor, n: int):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        _write_rows(store, index, rows, n, activation)
        return activation
    return hook


def _stack_rows(masks: list[Masks], v_idx: torch.Tensor) -> Masks:
    """Per-row masks: row i gets the masks of variant v_idx[i]."""
    chosen = [masks[int(v)] for v in v_idx]
    return Masks(torch.stack([m.z for m in chosen]), torch.stack([m.kv for m in chosen]),
                 torch.stack([m.mlp for m in chosen]))


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
