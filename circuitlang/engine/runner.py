"""The ablation engine: evaluate many circuit variants on a bound prompt set.

Work that does not depend on the variant is done once per template: the clean run's residual
stream at every layer and the ablation values (`AblationSource`). A variant then runs only from
the first layer its masks touch, starting from the cached clean residual (or from a base
variant's cached run, `trunks`); the forward stops before the unembedding and only the logits the
metric asks for are computed, at the one position it reads (`forward`). Each variant runs on its
own, its prompts in chunks of `batch_size`, so memory is bounded by the batch, not by the number
of variants, and a variant's numbers do not depend on the variants run with it. Within a chunk,
arithmetic whose result is known is left out (`shortcuts`): MLPs and attention layers that the
variant ablates everywhere give their ablation value, and MLPs whose output nothing reads but the
metric run at the end position only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from circuitlang.engine import forward
from circuitlang.engine.ablation_source import AblationSource, ActivationCache, collect
from circuitlang.engine.bind import BoundPromptSet, BoundTemplate
from circuitlang.engine.edges import EdgeHooks
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.readouts import Readout, readout_for
from circuitlang.engine.shortcuts import ShortcutPlanner, Shortcuts
from circuitlang.engine.trunks import Trunk, Trunks, resume_point
from circuitlang.engine.variants import Masks, Variant, masks_for
from circuitlang.ir import models as ir

# reduce(logits [rows, k], prompt rows [rows]) -> metric value per row
Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        self.trunks = Trunks(self)  # base runs, kept across calls (one per base)
        first = bound.templates[0]
        self._blocks_callable = forward.blocks_run_alone(model, self.clean_cache(first), first.n_prompts)
        self.shortcuts = ShortcutPlanner(model, self.ablation_source, self.clean_cache(first), first.n_prompts, self._blocks_callable)
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

    def masks(self, template: BoundTemplate, variant: Variant) -> Masks:
        return masks_for(variant, template.template, template.positions, template.seq_len, self.n_layers, self.n_heads)

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
    def _run_template(self, template: BoundTemplate, variants: Sequence[Variant], readout: Readout, base: Variant | None) -> torch.Tensor:
        """Each variant runs alone, its prompts in the chunks of `batch_size` the clean run and the
        base's run were made in: a variant's numbers are then the same bytes whichever variants
        are run with it (the result cache relies on it), since which shortcuts a chunk takes and
        the shapes its matrix products get (which can change their rounding) are its own."""
        trunks = [Trunk.clean(self.clean_cache(template))]
        if base is not None:
            trunks.append(self.trunks.of(template, base))
        columns = readout.columns(template)
        result = torch.empty(len(variants), template.n_prompts)
        for index, variant in enumerate(variants):
            masks = self.masks(template, variant)
            trunk, start = resume_point(variant, masks, trunks, self.n_layers)
            for chunk in forward.row_chunks(template.n_prompts, self.batch_size):
                r_idx = torch.tensor(chunk)
                residual = self._final_residual(template, variant, masks, r_idx, trunk, start)
                logits = self.logits_at(residual[:, template.positions["end"]], None if columns is None else columns[r_idx])
                result[index, r_idx] = readout.reduce(template, logits, r_idx).float().cpu()
        return result

    def _final_residual(
        self, template: BoundTemplate, variant: Variant, masks: Masks, r_idx: torch.Tensor, trunk: Trunk, start: int
    ) -> torch.Tensor:
        if start >= self.n_layers:
            return trunk.final[r_idx]
        v_idx = torch.zeros(len(r_idx), dtype=torch.long)
        row_masks = masks.for_rows(len(r_idx))
        source = self._sources[id(template)]
        edges = variant.edges is not None
        # Edge ablation reads the residual at every position (its running total), so only variants
        # without edges may leave the other positions unfinished.
        shortcuts = self.shortcuts.for_rows(template, row_masks, r_idx, start, plain=not edges)
        hooks = source.hooks(row_masks, r_idx, start, shortcuts.attention.keys())
        if edges:
            resume = trunk.edges.state(start, r_idx) if start > 0 and trunk.edges is not None else None
            hooks += EdgeHooks(self.model, [variant], v_idx, r_idx, template, source, row_masks, start, resume).hooks()
        return self.forward_from(start, trunk.resid_pre[start][r_idx], hooks, shortcuts)

    def forward_from(self, layer: int, residual: torch.Tensor, hooks: list, shortcuts: Shortcuts | None = None) -> torch.Tensor:
        """Run from the residual entering `layer` with `hooks`; return the residual entering ln_final
        (`forward.forward_from`; `shortcuts` only where the blocks run one by one)."""
        return forward.forward_from(self.model, layer, residual, hooks, self._blocks_callable, shortcuts)

    def logits_at(self, end_residual: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
        """Logits at the end position, for the requested token ids only (or all of them)."""
        return forward.logits_at(self.model, end_residual, columns)
