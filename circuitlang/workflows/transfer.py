"""The transfer matrix: every spec's circuit on every spec's prompt sets, run by the engine.

For each spec B, one run (one loaded model, B's prompts bound once): F(M) and F(empty) of each of
B's prompt sets, then each circuit A on them, with B's metric and ablation and A's own edges and
`embed_edges`. A cell that cannot be computed (another model, a position B's templates lack)
carries the reason instead of a number; so do the columns of a spec whose model does not load.
Each circuit is its own engine call, exactly as `verify` evaluates a circuit, so the diagonal is
verify's faithfulness to the last bit. Progress counts prompt rows: every cell that can be computed
is known before the first model loads. On a Ray cluster (`compare --ray`) each spec's columns are
one task, `spec_columns` on a worker that holds the model: the same cells, gathered in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from circuitlang.engine.session import Session
from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.engine.variants import circuit_variant
from circuitlang.errors import DataError, ModelError
from circuitlang.ir import models as ir
from circuitlang.results.comparison import Transfer, TransferCell, TransferColumn
from circuitlang.verification.cross_spec import (
    column_label,
    labels,
    resamples_for,
    transfer_blocker,
    transfer_cell,
    transfer_column,
)
from circuitlang.verification.progress import Meter
from circuitlang.engine.model_shelf import ModelShelf
from circuitlang.workflows.suite import VerifyOptions, gpus_per_worker, model_key, on_ray, open_with

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest

OpenSession = Callable[[ir.Spec], Session]
Progress = Callable[[str], None]
Columns = list[tuple[TransferColumn, list[TransferCell]]]
# (specs, their expanded prompt sets, progress) -> each spec's columns: `transfer_on_ray` with its options
RaySpread = Callable[[list[ir.Spec], list[dict[str, Dataset]], Progress | None], list[Columns]]


def transfer_matrix(
    specs: list[ir.Spec], open_session: OpenSession, progress: Progress | None = None, on_ray: RaySpread | None = None
) -> Transfer:
    """`on_ray`: each spec's columns as a task on a Ray cluster (`transfer_on_ray`), else in turn here."""
    datasets = [{dataset.name: dataset for dataset in expand_all(spec)} for spec in specs]
    if on_ray is not None:
        per_spec = on_ray(specs, datasets, progress)
    else:
        say = Meter(sum(_rows(specs, index, datasets[index]) for index in range(len(specs))), progress or (lambda line: None))
        per_spec = [spec_columns(specs, index, datasets[index], open_session, say) for index in range(len(specs))]
    columns = [column for spec_columns_ in per_spec for column, _ in spec_columns_]
    by_column = [cells for spec_columns_ in per_spec for _, cells in spec_columns_]
    by_row = [[cells[row] for cells in by_column] for row in range(len(specs))]
    return Transfer(columns=columns, rows=by_row)


def spec_columns(specs: list[ir.Spec], index: int, datasets: dict[str, Dataset], open_session: OpenSession, say: Meter) -> Columns:
    """Spec `index`'s columns (one per prompt set: every circuit on it), on its model loaded once;
    a model that does not load gives columns whose cells say why."""
    names, spec = labels(specs), specs[index]
    say(f"loading {spec.model.name} for {names[index]}")
    try:
        session = open_session(spec)
    except ModelError as error:  # the other columns can still be computed; this one says why not
        say.recount(-_rows(specs, index, datasets))
        cells = [TransferCell(not_applicable=f"the model of {names[index]} did not load: {error.message}")] * len(specs)
        return [
            (TransferColumn(spec=index, prompt_set=prompt_set.name, label=column_label(names[index], spec, prompt_set.name)), cells)
            for prompt_set in spec.prompt_sets
        ]
    columns = []
    for prompt_set in spec.prompt_sets:
        say(f"{names[index]}: circuits on {prompt_set.name}")
        columns.append(_column(session, specs, index, datasets[prompt_set.name], names, say))
    return columns


def _rows(specs: list[ir.Spec], index: int, datasets: dict[str, Dataset]) -> int:
    """Prompt rows of spec `index`'s columns: F(M), F(empty) and each circuit that applies there."""
    return sum(
        len(dataset.clean) * (2 + sum(transfer_blocker(circuit, specs[index], name, dataset.templates) is None for circuit in specs))
        for name, dataset in datasets.items()
    )


def _column(
    session: Session, specs: list[ir.Spec], index: int, dataset: Dataset, names: list[str], meter: Meter
) -> tuple[TransferColumn, list[TransferCell]]:
    spec, prompt_set, templates = specs[index], dataset.name, dataset.templates
    engine = session.engine(prompt_set)
    readout = engine.readout()
    model = engine.run([session.full_model()], readout).numpy()[0]
    empty = engine.run([session.empty()], readout).numpy()[0]
    meter.advance(2 * engine.bound.n_prompts)
    resamples = resamples_for(spec, len(model))
    metric = engine.bound.metric
    metric_text = f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name
    column = transfer_column(index, column_label(names[index], spec, prompt_set), prompt_set, metric_text, model, empty, resamples)
    cells = []
    for circuit_spec in specs:
        blocker = transfer_blocker(circuit_spec, spec, prompt_set, templates)
        if blocker is not None:
            cells.append(TransferCell(not_applicable=blocker))
            continue
        variant = circuit_variant(circuit_spec.circuit, embed_edges=circuit_spec.settings.embed_edges)
        try:
            circuit = engine.run([variant], readout).numpy()[0]
        except DataError as error:  # e.g. an offset position that falls outside B's prompts
            cells.append(TransferCell(not_applicable=f"{circuit_spec.name}: {error.message}"))
            continue
        finally:
            meter.advance(engine.bound.n_prompts)
        if float(model.mean()) == 0.0:  # e.g. `metric kl`: the full model's value is exactly 0
            cells.append(TransferCell(not_applicable=f"F(M) = 0 on {prompt_set}: faithfulness F(C)/F(M) is undefined"))
            continue
        cells.append(transfer_cell(model, circuit, empty, resamples))
    return column, cells


def transfer_on_ray(request: ClusterRequest, options: VerifyOptions) -> RaySpread:
    """Each spec's columns as a task on the cluster of `request`, its model opened as `options` say."""

    def spread(specs: list[ir.Spec], datasets: list[dict[str, Dataset]], progress: Progress | None) -> list[Columns]:
        from circuitlang.cluster.ray_map import ray_map

        opened = on_ray(options)
        items = [(specs, index, datasets[index], opened) for index in range(len(specs))]
        return ray_map(
            _columns_item,
            items,
            request,
            model_key=lambda item: model_key(item[0][item[1]].model),
            cpus_per_worker=opened.threads,
            gpus_per_worker=gpus_per_worker(options),
            progress=progress,
            describe=lambda item: labels(item[0])[item[1]],
        )

    return spread


def _columns_item(item: tuple[list[ir.Spec], int, dict[str, Dataset], VerifyOptions], shelf: ModelShelf, say: Progress) -> Columns:
    specs, index, datasets, options = item

    def opened(spec: ir.Spec) -> Session:  # the prompts expanded on the driver: no data file is read on the worker
        return open_with(spec, options, shelf, tuple(datasets[prompt_set.name] for prompt_set in spec.prompt_sets))

    return spec_columns(specs, index, datasets, opened, Meter(_rows(specs, index, datasets), say))
