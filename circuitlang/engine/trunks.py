"""Runs whose residual stream is cached, so that variants resume them instead of starting over.

The clean run is one (its residual entering every layer is collected with the activations); a
base variant's run is another (`Trunks`): a minimality sweep of C minus one node runs C once, and
each variant starts at the first layer where it and C differ. An edge-ablated base also keeps its
running total and the stored senders' differences (`EdgeRun`), so that edge variants can resume it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from circuitlang.engine.ablation_source import ActivationCache
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.edges import EdgeHooks, EdgeState, edge_agreement, sender_layer
from circuitlang.engine.family import Family
from circuitlang.engine.forward import row_chunks
from circuitlang.engine.shortcuts import Shortcuts, mlps_read_at_end_only
from circuitlang.engine.variants import Masks, Variant

if TYPE_CHECKING:
    from circuitlang.engine.runner import Engine

MAX_CACHED_TRUNKS = 4  # base runs kept per engine: a verification uses one (the circuit's)


@dataclass(frozen=True)
class EdgeRun:
    """What an edge-ablated base run accumulated, over every prompt of a template."""

    base: Variant
    entering: tuple[torch.Tensor, ...]  # per layer: the running total entering it [n, P, D]
    diffs: dict[tuple, torch.Tensor]  # stored sender -> its difference [n, P, D]

    @classmethod
    def join(cls, base: Variant, chunks: list[EdgeHooks], n_layers: int) -> "EdgeRun":
        return cls(
            base,
            tuple(torch.cat([c.entering[layer] for c in chunks]) for layer in range(n_layers)),
            {key: torch.cat([c.diffs[key] for c in chunks]) for key in chunks[0].diffs},
        )

    def state(self, layer: int, rows: torch.Tensor) -> EdgeState:
        return EdgeState(self.entering[layer][rows], {key: diff[rows] for key, diff in self.diffs.items() if sender_layer(key) < layer})


@dataclass(frozen=True)
class Trunk:
    """A run whose residual stream is cached: the clean run (masks None) or a base variant's,
    edge-ablated (`edges`) when the base declares edges."""

    masks: Masks | None
    resid_pre: tuple[torch.Tensor, ...]  # per layer [n, P, D]
    final: torch.Tensor  # [n, P, D]
    edges: EdgeRun | None = None

    @classmethod
    def clean(cls, cache: ActivationCache) -> "Trunk":
        return cls(None, cache.resid_pre, cache.final_residual)

    def serves(self, variant: Variant) -> bool:
        """Edge variants resume only edge-ablated runs, the others only runs without edges."""
        return (variant.edges is not None) == (self.edges is not None)

    def agreement(self, masks: Masks, variant: Variant) -> int:
        """The first layer where a variant with `masks` computes something else than this run."""
        if self.masks is None:
            return masks.first_ablated_layer()
        differs = (
            (masks.z != self.masks.z).flatten(1).any(1) | (masks.kv != self.masks.kv).flatten(1).any(1) | (masks.mlp != self.masks.mlp).any(1)
        )
        layers = torch.nonzero(differs).flatten()
        n_layers = int(masks.z.shape[0])
        start = int(layers[0]) if layers.numel() else n_layers
        return start if self.edges is None else min(start, edge_agreement(variant, self.edges.base, n_layers))


def resume_point(variant: Variant, masks: Masks, trunks: list[Trunk], n_layers: int) -> tuple[Trunk, int]:
    """The cached run a variant resumes and the layer it starts at: the latest layer up to which
    a run that serves it agrees with it (the first on a tie; layer 0 when none serves it), but no
    later than its first MLP that runs at the end position only (`mlps_read_at_end_only`), which
    a cached run, kept at every position, computes otherwise. So the layers before the start are
    the ones the variant would compute alone, the same way, and resuming changes no number."""
    starts = [(trunk.agreement(masks, variant), t) for t, trunk in enumerate(trunks) if trunk.serves(variant)]
    start, best = max(starts, key=lambda pair: pair[0], default=(0, 0))
    if variant.edges is None:  # only runs without edges take end-only MLPs
        alone = mlps_read_at_end_only(masks.for_rows(1), masks.first_ablated_layer())
        start = min(start, min(alone, default=n_layers))
    return trunks[best], start


class Trunks:
    """The base runs of one engine, computed once per template and base (a verification's criteria
    all start from the circuit's run) and kept up to MAX_CACHED_TRUNKS, the oldest dropped first."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._runs: dict[tuple[int, Variant], Trunk] = {}

    def clear(self) -> None:
        self._runs.clear()

    def of(self, template: BoundTemplate, base: Variant) -> Trunk:
        key = (id(template), replace(base, label=""))
        if key not in self._runs:
            if len(self._runs) >= MAX_CACHED_TRUNKS:
                self._runs.pop(next(iter(self._runs)))
            self._runs[key] = self._run(template, base)
        return self._runs[key]

    def _run(self, template: BoundTemplate, base: Variant) -> Trunk:
        """Run `base` over every prompt, keeping the residual entering each layer; for an
        edge-ablated base also the running total entering each layer and the stored senders'
        differences, so that edge variants can resume from it."""
        engine = self._engine
        masks = engine.masks(template, base)
        start = masks.first_ablated_layer() if base.edges is None else 0
        clean = engine.clean_cache(template)
        # written chunk by chunk into tensors allocated once: joining chunks at the end would hold
        # every layer's residual twice at the run's peak
        layers: list[torch.Tensor | None] = [None] * engine.n_layers
        final: list[torch.Tensor | None] = [None]
        edge_runs: list[EdgeHooks] = []
        for chunk in row_chunks(template.n_prompts, engine.batch_size):
            r_idx = torch.tensor(chunk)
            hooks, shortcuts = self._chunk_hooks(template, base, masks, r_idx, start, layers, edge_runs)
            _write_rows(
                final,
                0,
                r_idx,
                template.n_prompts,
                engine.forward_from(start, clean.resid_pre[start][r_idx], hooks, shortcuts)
                if start < engine.n_layers
                else clean.final_residual[r_idx],
            )
        resid = tuple(clean.resid_pre[layer] if layer < start else _written(layers[layer]) for layer in range(engine.n_layers))
        edges = EdgeRun.join(base, edge_runs, engine.n_layers) if edge_runs else None
        return Trunk(masks, resid, _written(final[0]), edges)

    def _chunk_hooks(
        self,
        template: BoundTemplate,
        base: Variant,
        masks: Masks,
        r_idx: torch.Tensor,
        start: int,
        layers: list[torch.Tensor | None],
        edge_runs: list[EdgeHooks],
    ) -> tuple[list, Shortcuts]:
        """The hooks and shortcuts of one chunk of the base's run: the ablation's, the edges' (their
        state appended to `edge_runs`) and writers of the residual entering each layer into `layers`."""
        engine = self._engine
        source = engine.ablation_source(template)
        v_idx = torch.zeros(len(r_idx), dtype=torch.long)
        row_masks = masks.for_rows(len(r_idx))
        # each layer as a variant agreeing with the base up to it computes it alone (resuming
        # changes no number), at every position: variants resume at any later layer
        shortcuts = replace(engine.shortcuts.for_rows(template, row_masks, r_idx, start, plain=base.edges is None), end_only_mlps=frozenset())
        hooks = source.hooks(row_masks, r_idx, start, shortcuts.attention.keys())
        if base.edges is not None:
            edge_runs.append(EdgeHooks(engine.model, [base], v_idx, r_idx, template, source, row_masks, 0, keep_totals=True))
            hooks += edge_runs[-1].hooks()
        hooks += [(Family.resid_pre(layer), _row_writer(layers, layer, r_idx, template.n_prompts)) for layer in range(start, engine.n_layers)]
        return hooks, shortcuts


def _written(tensor: torch.Tensor | None) -> torch.Tensor:
    """A tensor of a base's run: every layer from `start` on, and the final residual, are written
    by the chunks' runs (a prompt set has prompts, so there is at least one chunk)."""
    assert tensor is not None, "a base's run wrote no rows"
    return tensor


def _write_rows(store: list[torch.Tensor | None], index: int, rows: torch.Tensor, n: int, activation: torch.Tensor) -> None:
    """Write a chunk's rows into `store[index]`, a tensor of `n` rows allocated at the first chunk."""
    target = store[index]
    if target is None:
        target = store[index] = activation.new_empty((n, *activation.shape[1:]))
    target[rows.to(activation.device)] = activation.detach()


def _row_writer(store: list[torch.Tensor | None], index: int, rows: torch.Tensor, n: int):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        _write_rows(store, index, rows, n, activation)
        return activation

    return hook
