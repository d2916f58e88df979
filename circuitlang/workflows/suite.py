"""Several specs verified as one suite: in this process one after another, or spread over a Ray
cluster (circuitlang.cluster) with the same function doing each spec's work.

`verify_spec` is a suite's unit of work: one spec, verified exactly as `circuitlang verify SPEC`
does it (the cached re-run first, else the model loaded and the plan run). What it computes goes
into a `DeferredCache`, which reads the user's result cache and keeps its own writes back: the
caller stores them once the spec's work is done (`SpecOutcome.store`). On a cluster a worker
killed part-way therefore leaves nothing in the cache, and its retry reads the cache as the first
attempt did: the same report, with nothing counted twice. A `ModelShelf` (engine.model_shelf)
holds the one model a process (or a Ray worker) has loaded, so the specs of a suite that share a
model load it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from circuitlang.data.datasets import Dataset
from circuitlang.engine.model_shelf import ModelShelf
from circuitlang.engine.result_cache import ResultCache
from circuitlang.errors import CircuitlangError, ModelError, flatten
from circuitlang.ir import models as ir
from circuitlang.results.report import Report

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest
    from circuitlang.cluster.ray_map import Event
    from circuitlang.engine.placement import Placement
    from circuitlang.engine.session import Session
    from circuitlang.workflows.verify import PromptSetsVerified

Progress = Callable[[str], None]


@dataclass(frozen=True)
class VerifyOptions:
    """What `verify` takes besides the spec, the same for every spec of a suite."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0
    audit: bool | None = None
    use_cache: bool = True
    placement: Placement | None = None
    refuse_too_big: bool = True  # the memory estimate's refusal, before the model loads


@dataclass(frozen=True)
class SpecWork:
    """One spec of a suite, checked and expanded by the caller: all a worker needs (no file is read
    again, so a worker on another machine needs only the model)."""

    index: int  # its place in the suite: results are gathered in this order
    path: str
    spec: ir.Spec
    datasets: tuple[Dataset, ...]


@dataclass
class PartOutcome:
    """Some prompt sets of a spec verified (`verify_prompt_sets`), or the errors that stopped them,
    with the cache entries the run computed, which the caller stores."""

    index: int  # the spec's place in the suite
    part: PromptSetsVerified | None = None
    errors: list[CircuitlangError] = field(default_factory=list)
    writes: list[tuple[bytes, np.ndarray]] = field(default_factory=list)
    records: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class SpecOutcome:
    """A spec's report, or the errors that stopped it, with the cache entries its run computed."""

    index: int
    path: str
    report: Report | None = None
    errors: list[CircuitlangError] = field(default_factory=list)
    writes: list[tuple[bytes, np.ndarray]] = field(default_factory=list)
    records: list[tuple[bytes, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, work: SpecWork, parts: list[PartOutcome]) -> SpecOutcome:
        """The spec's outcome from its parts: its report with the claims on every prompt set, or
        the errors of its first part that failed (a model that does not load fails them all)."""
        from circuitlang.workflows.verify import assemble_report

        outcome = cls(work.index, work.path)
        for part in parts:
            outcome.writes.extend(part.writes)
            outcome.records.extend(part.records)
        failed = next((part.errors for part in parts if part.errors), None)
        if failed is not None:
            outcome.errors = failed
        else:
            outcome.report = assemble_report(work.spec, [part.part for part in parts if part.part is not None])
        return outcome

    def store(self, cache: ResultCache | None) -> None:
        """Write what the run computed into the user's cache (once, by the one process that owns it)."""
        if cache is None:
            return
        for key, values in self.writes:
            cache.put(key, values)
        for key, payload in self.records:
            cache.put_record(key, payload)
        if cache.written_bytes:
            cache.trim()


class DeferredCache(ResultCache):
    """The user's result cache, read as it is, written nowhere until `SpecOutcome.store`."""

    def __init__(self, cache: ResultCache) -> None:
        super().__init__(cache.root, cache.limit_bytes, cache.secret)
        self.refused = cache.refused
        self.writes: list[tuple[bytes, np.ndarray]] = []
        self.records: list[tuple[bytes, bytes]] = []
        self._pending: dict[bytes, np.ndarray] = {}
        self._pending_records: dict[bytes, bytes] = {}

    def get(self, key: bytes, length: int) -> np.ndarray | None:
        pending = self._pending.get(key)
        return pending if pending is not None and len(pending) == length else super().get(key, length)

    def get_record(self, key: bytes) -> bytes | None:
        pending = self._pending_records.get(key)
        return pending if pending is not None else super().get_record(key)

    def put(self, key: bytes, values: np.ndarray) -> None:
        if not self.refused:
            self.writes.append((key, values))
            self._pending[key] = values

    def put_record(self, key: bytes, payload: bytes) -> None:
        if not self.refused:
            self.records.append((key, payload))
            self._pending_records[key] = payload

    def trim(self) -> Any:  # the owner trims once it has stored the writes
        return None


def verify_spec(
    work: SpecWork, options: VerifyOptions, cache: ResultCache | None, shelf: ModelShelf, progress: Progress | None = None
) -> SpecOutcome:
    """One spec's verification, as `circuitlang verify` runs it; a CircuitlangError is the outcome's."""
    return SpecOutcome.of(work, [verify_part(work, None, options, cache, shelf, progress)])


def verify_part(
    work: SpecWork,
    names: frozenset[str] | None,
    options: VerifyOptions,
    cache: ResultCache | None,
    shelf: ModelShelf,
    progress: Progress | None = None,
) -> PartOutcome:
    """The prompt sets `names` of a spec (None: all), as `verify` runs them: from the cache alone
    when it holds every array, else on the loaded model."""
    deferred = DeferredCache(cache) if cache is not None else None
    outcome = PartOutcome(work.index)
    try:
        outcome.part = _verified(work, names, options, deferred, shelf, progress)
    except CircuitlangError as error:
        outcome.errors = flatten([error])
    if deferred is not None:
        outcome.writes, outcome.records = deferred.writes, deferred.records
    return outcome


def _verified(
    work: SpecWork, names: frozenset[str] | None, options: VerifyOptions, cache: ResultCache | None, shelf: ModelShelf, progress: Progress | None
) -> PromptSetsVerified:
    from circuitlang.workflows.verify import verify_cached_prompt_sets, verify_prompt_sets

    spec, datasets = work.spec, work.datasets
    if options.refuse_too_big:
        _refuse_if_too_big(spec, datasets, options)
    if cache is not None:
        cached = verify_cached_prompt_sets(spec, datasets, cache, names, options.audit, _computed_on(options), options.dtype, options.threads)
        if cached is not None:
            return cached
    return verify_prompt_sets(open_with(spec, options, shelf, datasets, cache), names, progress, options.audit, cache)


def open_with(
    spec: ir.Spec, options: VerifyOptions, shelf: ModelShelf, datasets: tuple[Dataset, ...] | None = None, cache: ResultCache | None = None
) -> Session:
    """The spec's session, on the model the shelf holds (loaded there when it holds another)."""
    import torch

    from circuitlang.engine.session import open_session, set_threads

    session = open_session(
        spec,
        device=options.device,
        dtype=getattr(torch, options.dtype),
        datasets=datasets,
        cache=cache,
        placement=options.placement,
        loader=shelf.load,
    )
    set_threads(session, options.threads)
    return session


def _computed_on(options: VerifyOptions) -> str:
    """The device the result cache's keys name for these options (engine.models.placed_device)."""
    if options.placement is None:
        return options.device
    from circuitlang.engine.models import placed_device

    return placed_device(options.placement)


def _refuse_if_too_big(spec: ir.Spec, datasets: tuple[Dataset, ...], options: VerifyOptions) -> None:
    """The memory estimate's refusal (as `verify` says it before loading), on the machine that runs the spec."""
    from circuitlang.compile.memory import memory_refusal, spec_memory

    memory = spec_memory(spec, datasets, options.audit, _bytes_per_float(options.dtype))
    too_big = memory_refusal(memory, options.device, options.placement)
    if too_big:
        raise ModelError(too_big, spec.model.span)


def _bytes_per_float(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def verify_in_process(
    works: list[SpecWork], options: VerifyOptions, cache: ResultCache | None, progress: Progress | None = None
) -> list[SpecOutcome]:
    """The suite in this process, spec after spec (each one's cache entries stored before the next starts)."""
    shelf, outcomes = ModelShelf(), []
    for number, work in enumerate(works, 1):
        say = _prefixed(progress, f"spec {number} of {len(works)} ({work.path})")
        outcome = verify_spec(work, options, cache, shelf, say)
        outcome.store(cache)
        outcomes.append(outcome)
    return outcomes


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    return None if progress is None else (lambda line: progress(f"{prefix}: {line}"))


def verify_on_ray(
    works: list[SpecWork],
    options: VerifyOptions,
    cache: ResultCache | None,
    request: ClusterRequest,
    progress: Progress | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> list[SpecOutcome]:
    """The suite on a Ray cluster (circuitlang.cluster): each prompt set of each spec a task
    (`verify_part`) on workers that each hold one model; each spec's report assembled from its
    prompt sets, in the suite's order, and the cache entries stored here."""
    from circuitlang.cluster.ray_map import ray_map

    options = on_ray(options)
    items = [(work, names, options, cache) for work in works for names in _parts(work.spec)]
    parts = ray_map(
        _verify_item,
        items,
        request,
        model_key=lambda item: model_key(item[0].spec.model),
        cpus_per_worker=options.threads,
        gpus_per_worker=gpus_per_worker(options),
        progress=progress,
        on_event=on_event,
        describe=lambda item: item[0].path + (f" ({', '.join(sorted(item[1]))})" if item[1] else ""),
    )
    outcomes = [SpecOutcome.of(work, [part for part in parts if part.index == work.index]) for work in works]
    for outcome in outcomes:
        outcome.store(cache)
    return outcomes


def _parts(spec: ir.Spec) -> list[frozenset[str] | None]:
    """A task per prompt set; the whole spec when it has one."""
    if len(spec.prompt_sets) == 1:
        return [None]
    return [frozenset({prompt_set.name}) for prompt_set in spec.prompt_sets]


Item = tuple[SpecWork, frozenset[str] | None, VerifyOptions, ResultCache | None]


def _verify_item(item: Item, shelf: ModelShelf, say: Progress) -> PartOutcome:
    work, names, options, cache = item
    return verify_part(work, names, options, cache, shelf, say)


def on_ray(options: VerifyOptions) -> VerifyOptions:
    """The options a Ray worker runs with: `threads` CPU threads, 1 unless given, which is also the
    CPUs it asks Ray for. Ray sets a worker's OMP_NUM_THREADS to its CPUs, so torch's own default
    (this machine's cores) is not what a worker would get: the count is said, so that a model of
    10M parameters or more (which `verify` otherwise runs on torch's default) gets the same
    threads, the same cache keys and the same numbers on every worker (docs/scale.md)."""
    return replace(options, threads=options.threads or 1)


def gpus_per_worker(options: VerifyOptions) -> int:
    """GPUs a Ray worker takes: one with `--device cuda`; as many as `--max-memory` names with a
    device map (Ray numbers a worker's GPUs from 0, as the budgets do); none on the CPU."""
    if options.placement is not None:
        return len(options.placement.gpus())
    return 1 if options.device.startswith("cuda") else 0


def model_key(model: ir.ModelRef) -> str:
    return f"{model.source}:{model.path or model.hub_id or model.name}"
