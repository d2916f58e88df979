"""A session: one spec bound to its model, the state every workflow runs on.

`open_session` loads the model, expands and binds every prompt set once; engines (one per prompt
set, with their caches of clean and ablation runs) are built on first use and kept, so the
workflows (`workflows.verify`, `.patch`, `.transfer`, `.discover`) share
the work of a session. The public Python API wraps it (`api.Run`). `Session.facts` is where the
loaded model's shape, identity and widths are read, for every workflow (offline, before any
weights are loaded, `check` and `plan` read them from ir.shapes instead).

`open_cached_session` opens a session without a model, from the facts of an earlier load of the
same files remembered in the result cache (engine.model_record): the prompts are bound with the
remembered tokenizer into numpy arrays, enough to make every key of the cache. Its `model` and
`engine` raise `NeedsModel`; a verify that asks for them is run again on a loaded session. This
module imports torch only where a model is loaded or run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from circuitlang.compile.memory import ModelSize, cpu_batch_size
from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.engine.bind import BoundPromptSet, bind, bind_arrays
from circuitlang.engine.family import circuit_problems
from circuitlang.engine.model_record import ModelFacts, facts_key, facts_of, folder_digest, recall, remember
from circuitlang.engine.variants import Variant, circuit_variant, empty_variant, full_model_variant
from circuitlang.errors import CircuitlangError, raise_if_any
from circuitlang.ir import models as ir

if TYPE_CHECKING:
    import torch

    from circuitlang.engine.models import LoadedModel
    from circuitlang.engine.placement import Placement
    from circuitlang.engine.result_cache import ResultCache
    from circuitlang.engine.runner import Engine

MAX_GPU_BATCH = 16384  # rows; beyond this a forward is long enough that larger batches gain nothing
SMALL_MODEL = 10_000_000  # parameters: below this, one CPU thread (set_threads)


class NeedsModel(Exception):
    """A session opened without a model was asked for it (an array the result cache lacks)."""


@dataclass
class Session:
    spec: ir.Spec
    facts: ModelFacts
    datasets: tuple[Dataset, ...]
    bound: dict[str, BoundPromptSet]
    batch_size: int
    loaded: LoadedModel | None = None  # None: opened from the result cache alone
    threads: int | None = None  # torch's CPU threads as set_threads set them; None: torch's own
    _engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def model(self) -> LoadedModel:
        if self.loaded is None:
            raise NeedsModel()
        return self.loaded

    def engine(self, prompt_set: str | None = None) -> Engine:
        from circuitlang.engine.runner import Engine

        name = prompt_set or self.spec.prompt_sets[0].name
        if name not in self._engines:
            self._engines[name] = Engine(self.model, self.bound[name], self.spec.ablation, self.batch_size)
        return self._engines[name]

    def circuit(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        return circuit_variant(self.spec.circuit, without, embed_edges=self.spec.settings.embed_edges)

    @property
    def shape(self) -> ir.ModelShape:
        return self.facts.shape

    def full_model(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        shape = self.shape
        return full_model_variant(shape.n_layers, shape.n_heads, without)

    def empty(self) -> Variant:
        return empty_variant()

    def cpu_threads(self) -> int:
        """The CPU threads torch runs this session's model on (a key of the result cache)."""
        if self.threads is not None:
            return self.threads
        import torch

        return torch.get_num_threads()


def open_session(
    spec: ir.Spec,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    batch_size: int | None = None,
    datasets: tuple[Dataset, ...] | None = None,
    cache: ResultCache | None = None,
    given: Any = None,
    tokenizer: Any = None,
    loader: Callable[..., LoadedModel] | None = None,
    placement: Placement | None = None,
) -> Session:
    """Load the model (or take `given`, a model object, engine.models.load_given_model), expand
    (unless `datasets`, the spec's prompt sets already expanded by `data.datasets.expand_all`, are
    given) and bind every prompt set. With a `cache`, the facts of a model loaded from a folder are
    remembered there for `open_cached_session`. `loader`: what loads the model, with
    `engine.models.load_model`'s arguments (a `workflows.suite.ModelShelf`'s `load` keeps one
    loaded for the next spec). `placement`: a device map for accelerate (engine.placement) in
    place of `device`; the facts are then remembered under the device the model's inputs go to,
    where its numbers are computed."""
    import torch

    from circuitlang.engine.models import load_given_model, load_model

    dtype = dtype or torch.float32
    if given is not None:
        model = load_given_model(spec.model, given, tokenizer)
        facts = facts_of(model)
    else:
        before = _digest(cache, spec.model)
        model = (loader or load_model)(spec.model, device, dtype, placement)
        facts = facts_of(model)
        if cache is not None and before is not None and _digest(cache, spec.model) == before:  # the files the load read
            where = device if placement is None else facts.device
            remember(cache, facts_key(spec.model, before, where, str(dtype).removeprefix("torch.")), facts)
    raise_if_any(circuit_problems(spec.circuit, model.family))  # before any number is computed
    datasets = expand_all(spec) if datasets is None else datasets
    bound = bind(spec, datasets, model.tokenizer, prepends_bos(spec, facts))
    chosen = batch_size or _batch_size(spec, facts, bound, _gpus_of(model))
    return Session(spec, facts, datasets, {b.name: b for b in bound}, chosen, loaded=model)


def _gpus_of(model: LoadedModel) -> tuple[int, ...]:
    """The GPUs a model placed by a device map runs on (none for a model on one device)."""
    placed = getattr(model.bridge.original_model, "hf_device_map", None) or {}
    indices = {str(device).removeprefix("cuda:") for device in placed.values()}
    return tuple(sorted(int(index) for index in indices if index.isdigit()))


def open_cached_session(
    spec: ir.Spec, datasets: tuple[Dataset, ...], cache: ResultCache, device: str = "cpu", dtype: str = "float32", threads: int = 0
) -> Session | None:
    """A session without a model, from the facts the result cache remembers of a load of the same
    files with the same settings; None when there are none (or on a GPU, whose batch size follows
    the memory left once the model is loaded). A spec error the facts show is left to a load."""
    if device != "cpu" or cache.refused:
        return None
    try:
        digest = folder_digest(cache, spec.model)
        facts = recall(cache, facts_key(spec.model, digest, device, dtype)) if digest is not None else None
        if facts is None or circuit_problems(spec.circuit, facts.family):
            return None
        from tokenizers import Tokenizer

        bound = bind_arrays(spec, datasets, Tokenizer.from_str(facts.tokenizer_json), facts.bos_token_id if prepends_bos(spec, facts) else None)
    except CircuitlangError:  # said as a load says it
        return None
    session = Session(spec, facts, datasets, {b.name: b for b in bound}, _batch_size(spec, facts, bound))
    session.threads = threads_for(facts, threads)
    return session


def _digest(cache: ResultCache | None, model: ir.ModelRef) -> str | None:
    return folder_digest(cache, model) if cache is not None and not cache.refused else None


def loaded_size(facts: ModelFacts) -> ModelSize:
    """The loaded model's dimensions, as compile.memory estimates with them offline."""
    return ModelSize.of(facts.shape, facts.family.d_model, facts.d_mlp, facts.d_vocab, facts.n_ctx, tied=False)


def _batch_size(spec: ir.Spec, facts: ModelFacts, bound: Sequence[BoundPromptSet], gpus: tuple[int, ...] = ()) -> int:
    """Rows per forward: `set batch_size`; on a GPU as many as a quarter of its free memory holds
    (a GPU is fast only with large batches; for a model a device map splits over `gpus`, the one
    with the least free memory, with a batch's activations counted for every layer: an upper
    bound, as each GPU holds those of its own layers); on the CPU as many as keep a batch's
    activations within the smallest prompt set's cached ones (`compile.memory.cpu_batch_size`),
    so that the peak follows the prompt set, not the variants."""
    if "batch_size" in spec.settings.model_fields_set:
        return spec.settings.batch_size
    size = loaded_size(facts)
    tokens = max(t.seq_len for prompt_set in bound for t in prompt_set.templates)
    if facts.device_type != "cuda":
        smallest = min(sum(t.n_prompts * t.seq_len for t in prompt_set.templates) for prompt_set in bound)
        return cpu_batch_size(size, smallest, tokens)
    import torch

    free = min(torch.cuda.mem_get_info(torch.device(device))[0] for device in ([f"cuda:{gpu}" for gpu in gpus] or [facts.device]))
    # a row's transient activations: the residual at every layer entry (the cached trunks), the
    # MLP's hidden layer and q, k, v, z of every head, with room for the hooks' copies
    itemsize = getattr(torch, facts.dtype).itemsize
    per_row = tokens * size.n_layers * (2 * size.d_model + 4 * size.d_model + size.d_mlp) * itemsize
    return int(min(max(free // 4 // per_row, spec.settings.batch_size), MAX_GPU_BATCH))


def prepends_bos(spec: ir.Spec, facts: ModelFacts) -> bool:
    """Whether prompts start with the BOS token: the spec's `set prepend_bos`, else the model's default."""
    setting = spec.settings.prepend_bos
    return facts.prepends_bos if setting == "model" else setting == "true"


def threads_for(facts: ModelFacts, threads: int = 0) -> int | None:
    """`threads` CPU threads; 0: one for models under 10M parameters on the CPU (measured: 8 s
    instead of 55 s for the organism on a busy 2-core machine), torch's default (None) otherwise."""
    if threads > 0:
        return threads
    return 1 if facts.n_parameters < SMALL_MODEL and facts.device_type == "cpu" else None


def set_threads(session: Session, threads: int = 0) -> None:
    """Run the session's model on `threads_for` CPU threads."""
    import torch

    session.threads = threads_for(session.facts, threads)
    if session.threads is not None:
        torch.set_num_threads(session.threads)
