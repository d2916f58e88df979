"""`patch`: activation and path patching sweeps on one prompt set, engine results -> PatchReport.

The workflow behind `circuitlang patch`, as `workflows.verify` is behind `verify`: it runs the
sweeps the engine implements (`engine.sweeps`) and assembles the result model
(`results.patch_report`) that the command draws and writes. Nothing here prints or exits; what cannot
be patched raises `CannotPatch` with the reason. Progress counts prompt rows through the model:
every sweep's grid (heads, positions, senders into receivers) is known before the first runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from circuitlang.compile.plan import PATCH_RUNS_PER_EDGE
from circuitlang.engine import sweeps
from circuitlang.engine.path_patching import PatchingEngine, Receiver
from circuitlang.engine.readouts import Readout
from circuitlang.engine.runner import Engine
from circuitlang.engine.session import Session
from circuitlang.ir import models as ir
from circuitlang.results.patch_report import PatchContext, PatchMatrix, PatchReport
from circuitlang.verification.progress import Meter

if TYPE_CHECKING:
    import torch

Progress = Callable[[str], None]
SweepRun = Callable[[PatchingEngine, sweeps.Baseline], sweeps.SweepResult]
BASELINE_VARIANTS = 2  # the full model and the empty circuit
BATCHES_PER_PIECE = 4  # a sweep's variants go to the engine in pieces of about this many batches


class CannotPatch(Exception):
    """The sweep asked for cannot run on this spec; the message says why and what to do."""


@dataclass(frozen=True)
class PatchRequest:
    prompt_set: str
    kinds: tuple[str, ...]  # heads, heads-by-position, mlps, path (the command's --kind)
    receivers: tuple[Receiver, ...] = ()  # for "path"
    all_positions: bool = False  # every token index instead of the named positions
    senders: tuple[str, ...] = ("heads",)  # for "path": each layer's heads, its MLP, or both (commands.patch.SENDER_KINDS)


@dataclass(frozen=True)
class Sweep:
    description: str
    rows: int  # prompt rows it puts through the model
    run: SweepRun


def patch(session: Session, request: PatchRequest, progress: Progress | None = None) -> PatchReport:
    engine = session.engine(request.prompt_set)
    check_receivers([r.node for r in request.receivers], engine.n_layers, engine.n_heads, session.spec.model.name)
    readout = engine.readout()
    jobs = _jobs(engine, readout, request)
    meter = Meter(BASELINE_VARIANTS * engine.bound.n_prompts + sum(job.rows for job in jobs), progress or (lambda line: None))
    metered = _MeteredEngine(engine, meter)
    meter("the full model and the empty circuit")
    base = sweeps.baseline(metered, readout)
    results = []
    for number, job in enumerate(jobs, 1):
        meter(f"sweep {number}/{len(jobs)}: {job.description}")
        results.append(job.run(metered, base))
    return PatchReport(_context(session, request, base, engine), tuple(_matrix(r) for r in results))


def check_path_patching_possible(spec: ir.Spec, prompt_set: str) -> None:
    """Path patching patches each sender from the paired corrupt prompt: the set needs one."""
    chosen = spec.prompt_set(prompt_set)
    if chosen.corruption is None and chosen.generator is None:
        raise CannotPatch(_no_corruption(prompt_set))


def check_receivers(receivers: Sequence[ir.Node], n_layers: int, n_heads: int, model: str) -> None:
    for node in receivers:
        if node.layer is not None and not 0 <= node.layer < n_layers:
            raise CannotPatch(f"--receiver {node}: layer {node.layer} does not exist: {model} has layers 0-{n_layers - 1}")
        if node.head is not None and not 0 <= node.head < n_heads:
            raise CannotPatch(f"--receiver {node}: head {node.head} does not exist: {model} has heads 0-{n_heads - 1}")


def _jobs(engine: Engine, readout, request: PatchRequest) -> list[Sweep]:
    kinds = set(request.kinds)
    columns = _columns(engine, request.all_positions) if {"heads-by-position", "mlps"} & kinds else ()
    layers, heads, prompts = engine.n_layers, engine.n_heads, engine.bound.n_prompts
    jobs: list[Sweep] = []
    if "heads" in kinds:
        jobs.append(Sweep("heads", layers * heads * prompts, lambda e, base: sweeps.head_sweep(e, readout, base)))
    if "heads-by-position" in kinds:  # each position, then every position at once
        jobs.append(
            Sweep(
                "heads by position",
                layers * heads * (len(columns) + 1) * prompts,
                lambda e, base: sweeps.head_position_sweep(e, readout, base, columns),
            )
        )
    if "mlps" in kinds:
        jobs.append(
            Sweep(
                "MLPs by position", layers * (len(columns) + 1) * prompts, lambda e, base: sweeps.mlp_position_sweep(e, readout, base, columns)
            )
        )
    for receiver in request.receivers if "path" in kinds else ():
        senders = sweeps.path_sweep_senders(receiver, layers, heads, request.senders)
        jobs.append(
            Sweep(
                f"path patching into {sweeps.receiver_label(receiver)}",
                senders * PATCH_RUNS_PER_EDGE * prompts,
                _path_job(readout, receiver, request.senders),
            )
        )
    return jobs


def _path_job(readout: Readout, receiver: Receiver, senders: tuple[str, ...]) -> SweepRun:
    return lambda engine, base: _path(engine, readout, base, receiver, senders)


class _MeteredEngine:
    """The engine as the sweeps see it, telling the meter of every row it runs. A sweep's variants
    go in pieces, so the line moves within a sweep (a variant's values do not depend on the
    variants it runs with); each forward of path patching counts its prompts."""

    def __init__(self, engine: Engine, meter: Meter) -> None:
        self._engine, self._meter = engine, meter

    def __getattr__(self, name: str) -> Any:  # everything but run and forward_from is the engine's own
        return getattr(self._engine, name)

    def run(self, variants: Sequence, readout, base=None) -> torch.Tensor:
        import torch  # at a module's top only in engine/ (README, Layout)

        prompts = self._engine.bound.n_prompts
        size = max(1, BATCHES_PER_PIECE * self._engine.batch_size // prompts)
        pieces = []
        for start in range(0, len(variants), size):
            pieces.append(self._engine.run(variants[start : start + size], readout, base))
            self._meter.advance(len(pieces[-1]) * prompts)
        return torch.cat(pieces) if pieces else self._engine.run(variants, readout, base)

    def forward_from(self, layer: int, residual: torch.Tensor, hooks: list) -> torch.Tensor:
        out = self._engine.forward_from(layer, residual, hooks)
        self._meter.advance(len(residual))
        return out


def _columns(engine: Engine, all_positions: bool):
    if not all_positions:
        return sweeps.named_columns(engine)
    try:
        return sweeps.token_columns(engine)
    except ValueError as error:
        raise CannotPatch(f"--all-positions: {error}; sweep the named positions instead (leave out --all-positions)") from None


def _path(engine: PatchingEngine, readout: Readout, base: sweeps.Baseline, receiver: Receiver, senders: tuple[str, ...]) -> sweeps.SweepResult:
    if any(t.corrupt is None for t in engine.bound.templates):
        raise CannotPatch(_no_corruption(engine.bound.name))
    return sweeps.path_sweep(engine, readout, base, receiver, senders)


def _no_corruption(prompt_set: str) -> str:
    return (
        f"prompt set '{prompt_set}' has no corruption: path patching patches each sender from the paired "
        "corrupt prompt; add a `corrupt` block to the prompt set"
    )


def _context(session: Session, request: PatchRequest, base, engine: Engine) -> PatchContext:
    spec = session.spec
    metric = spec.metric_for(spec.prompt_set(request.prompt_set))
    shared = {name for column in sweeps.named_columns(engine) for name in column.names}
    every = {name for template in engine.bound.templates for name in template.positions}
    ablation = spec.ablation.kind + (f" of {spec.ablation.source}" if spec.ablation.source else "")
    return PatchContext(
        spec.path,
        spec.name,
        spec.model.name,
        request.prompt_set,
        engine.bound.n_prompts,
        f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name,
        metric.name,
        ablation,
        float(base.model.mean()),
        float(base.empty.mean()),
        "token index" if request.all_positions else "named",
        tuple(sorted(every - shared)),
    )


def _matrix(result: sweeps.SweepResult) -> PatchMatrix:
    return PatchMatrix(
        result.kind,
        result.rows,
        result.columns,
        result.examples,
        result.delta().numpy(),
        result.stderr().numpy(),
        result.normalized().numpy(),
        result.receiver,
    )
