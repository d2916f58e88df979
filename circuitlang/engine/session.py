"""A session: one spec bound to its loaded model, the state every workflow runs on.

`open_session` loads the model, expands and binds every prompt set once; engines (one per prompt
set, with their caches of clean and ablation runs) are built on first use and kept, so the
workflows (`workflows.verify`, `.patch`, `.transfer`, `.discover`) share
the work of a session. The public Python API wraps it (`api.Run`). `loaded_shape` is where the
loaded model's layer and head counts are read, for every workflow (offline, before any weights
are loaded, `check` and `plan` read them from ir.shapes instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from circuitlang.compile.memory import ModelSize, cpu_batch_size
from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.engine.bind import BoundPromptSet, bind
from circuitlang.engine.family import circuit_problems
from circuitlang.engine.models import LoadedModel, load_model
from circuitlang.engine.runner import Engine
from circuitlang.engine.variants import Variant, circuit_variant, empty_variant, full_model_variant
from circuitlang.errors import raise_if_any
from circuitlang.ir import models as ir

MAX_GPU_BATCH = 16384  # rows; beyond this a forward is long enough that larger batches gain nothing


@dataclass
class Session:
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

    def circuit(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        return circuit_variant(self.spec.circuit, without, embed_edges=self.spec.settings.embed_edges)

    @property
    def shape(self) -> ir.ModelShape:
        return loaded_shape(self.model)

    def full_model(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        shape = self.shape
        return full_model_variant(shape.n_layers, shape.n_heads, without)

    def empty(self) -> Variant:
        return empty_variant()


def open_session(
    spec: ir.Spec,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    datasets: tuple[Dataset, ...] | None = None,
) -> Session:
    """Load the model, expand (unless `datasets`, the spec's prompt sets already expanded by
    `data.datasets.expand_all`, are given) and bind every prompt set."""
    model = load_model(spec.model, device, dtype)
    raise_if_any(circuit_problems(spec.circuit, model.family))  # before any number is computed
    datasets = expand_all(spec) if datasets is None else datasets
    bound = bind(spec, datasets, model.tokenizer, prepends_bos(spec, model))
    return Session(spec, model, datasets, {b.name: b for b in bound}, batch_size or _batch_size(spec, model, bound))


def loaded_shape(model: LoadedModel) -> ir.ModelShape:
    """The loaded model's shape, with the fields `check` reads offline (heads: query heads)."""
    family = model.family
    return ir.ModelShape(
        n_layers=family.n_layers,
        n_heads=family.n_heads,
        n_kv_heads=family.n_kv_heads,
        parallel_attn_mlp=family.parallel_attn_mlp,
        origin="the loaded model",
    )


def loaded_size(model: LoadedModel) -> ModelSize:
    """The loaded model's dimensions, as compile.memory estimates with them offline."""
    cfg = model.bridge.cfg
    return ModelSize.of(loaded_shape(model), cfg.d_model, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx, tied=False)


def _batch_size(spec: ir.Spec, model: LoadedModel, bound: Sequence[BoundPromptSet]) -> int:
    """Rows per forward: `set batch_size`; on a GPU as many as a quarter of its free memory holds
    (a GPU is fast only with large batches); on the CPU as many as keep a batch's activations
    within the smallest prompt set's cached ones (`compile.memory.cpu_batch_size`), so that the
    peak follows the prompt set, not the variants."""
    if "batch_size" in spec.settings.model_fields_set:
        return spec.settings.batch_size
    size = loaded_size(model)
    tokens = max(t.seq_len for prompt_set in bound for t in prompt_set.templates)
    if model.device.type != "cuda":
        smallest = min(sum(t.n_prompts * t.seq_len for t in prompt_set.templates) for prompt_set in bound)
        return cpu_batch_size(size, smallest, tokens)
    free, _ = torch.cuda.mem_get_info(model.device)
    # a row's transient activations: the residual at every layer entry (the cached trunks), the
    # MLP's hidden layer and q, k, v, z of every head, with room for the hooks' copies
    per_row = tokens * size.n_layers * (2 * size.d_model + 4 * size.d_model + size.d_mlp) * model.bridge.cfg.dtype.itemsize
    return int(min(max(free // 4 // per_row, spec.settings.batch_size), MAX_GPU_BATCH))


def prepends_bos(spec: ir.Spec, model: LoadedModel) -> bool:
    """Whether prompts start with the BOS token: the spec's `set prepend_bos`, else the model's default."""
    setting = spec.settings.prepend_bos
    return model.prepends_bos if setting == "model" else setting == "true"


def set_threads(session: Session, threads: int = 0) -> None:
    """`threads` CPU threads for torch; 0: one for models under 10M parameters on the CPU (measured:
    8 s instead of 55 s for the organism on a busy 2-core machine), torch's default otherwise."""
    parameters = sum(p.numel() for p in session.model.bridge.original_model.parameters())
    if threads > 0:
        torch.set_num_threads(threads)
    elif parameters < 10_000_000 and session.model.device.type == "cpu":
        torch.set_num_threads(1)
