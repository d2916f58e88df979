"""The Python API: load a spec, bind it to its model, evaluate circuit variants per prompt.

    import circuitlang
    spec = circuitlang.load("specs/incr_digits.circ")
    run = circuitlang.open_run(spec, device="cpu")
    values = run.metric([run.circuit(), run.full_model(), run.empty()])   # [3, n_prompts]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.engine.bind import BoundPromptSet, bind
from circuitlang.engine.models import LoadedModel, load_model
from circuitlang.engine.path_patching import Receiver
from circuitlang.engine.runner import Engine
from circuitlang.engine.variants import Variant, circuit_variant, empty_variant, full_model_variant
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec


def load(path: str | Path) -> ir.Spec:
    """Parse and validate a `.circ` file (no model needed)."""
    return load_spec(path)


@dataclass
class Run:
    """A spec bound to its loaded model; engines are built per prompt set on first use."""

    spec: ir.Spec
    model: LoadedModel
    datasets: tuple[Dataset, ...]
    bound: dict[str, BoundPromptSet]
    batch_size: int
    _engines: dict[str, Engine] = field(default_factory=dict)

    def engine(self, prompt_set: str | None = None) -> Engine:
        name = prompt_set or self.spec.prompt_sets[0].name
        if name not in self._engines:
            self._engines[name] = Engine(self.model, self.bound[name], self.spec.ablation, self.batch_size)
        return self._engines[name]

    def metric(self, variants: Sequence[Variant], prompt_set: str | None = None) -> torch.Tensor:
        """The metric of each variant on each prompt: float64 [n_variants, n_prompts]."""
        engine = self.engine(prompt_set)
        return engine.run(variants, engine.readout())

    def circuit(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        return circuit_variant(self.spec.circuit, without, embed_edges=self.spec.settings.embed_edges)

    def full_model(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        cfg = self.model.bridge.cfg
        return full_model_variant(cfg.n_layers, cfg.n_heads, without)

    def empty(self) -> Variant:
        return empty_variant()



def open_run(spec: ir.Spec, device: str = "cpu", dtype: torch.dtype = torch.float32,
             batch_size: int | None = None) -> Run:
    """Load the model, expand and bind every prompt set."""
    model = load_model(spec.model, device, dtype)
    datasets = expand_all(spec)
    bound = bind(spec, datasets, model.tokenizer, prepends_bos(spec, model))
    return Run(spec, model, datasets, {b.name: b for b in bound}, batch_size or spec.settings.batch_size)


def prepends_bos(spec: ir.Spec, model: LoadedModel) -> bool:
    """Whether prompts start with the BOS token: the spec's `set prepend_bos`, else the model's default."""
    setting = spec.settings.prepend_bos
    return model.prepends_bos if setting == "model" else setting == "true"


def path_patch(run: Run, senders: Sequence[ir.Node], receivers: Sequence[Receiver], prompt_set: str | None = None,
               freeze_mlps: bool = False) -> torch.Tensor:
    """Per prompt: the metric after patching senders -> receivers (see engine.path_patching)."""
    from circuitlang.engine.path_patching import path_patch as patch

    engine = run.engine(prompt_set)
    return patch(engine, senders, receivers, engine.readout(), freeze_mlps)
