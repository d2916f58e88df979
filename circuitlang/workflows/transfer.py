"""The transfer matrix: every spec's circuit on every spec's prompt sets, run by the engine.

For each spec B, one run (one loaded model, B's prompts bound once): F(M) and F(empty) of each of
B's prompt sets, then each circuit A on them, with B's metric and ablation and A's own edges and
`embed_edges`. A cell that cannot be computed (another model, a position B's templates lack)
carries the reason instead of a number; so do the columns of a spec whose model does not load.
Each circuit is its own engine call, exactly as `verify` evaluates a circuit, so the diagonal is
verify's faithfulness to the last bit. Progress counts prompt rows: every cell that can be computed
is known before the first model loads.
"""

from __future__ import annotations

from typing import Callable

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

OpenSession = Callable[[ir.Spec], Session]
Progress = Callable[[str], None]


def transfer_matrix(specs: list[ir.Spec], open_session: OpenSession, progress: Progress | None = None) -> Transfer:
    names = labels(specs)
    datasets = [{dataset.name: dataset for dataset in expand_all(spec)} for spec in specs]
    rows = [_rows(specs, index, datasets[index]) for index in range(len(specs))]
    say = Meter(sum(rows), progress or (lambda line: None))
    columns: list[TransferColumn] = []
    by_column: list[list[TransferCell]] = []
    for index, spec in enumerate(specs):
        say(f"loading {spec.model.name} for {names[index]}")
        try:
            session = open_session(spec)
        except ModelError as error:  # the other columns can still be computed; this one says why not
            say.recount(-rows[index])
            cells = [TransferCell(not_applicable=f"the model of {names[index]} did not load: {error.message}")]
            for prompt_set in spec.prompt_sets:
                columns.append(TransferColumn(spec=index, prompt_set=prompt_set.name, label=column_label(names[index], spec, prompt_set.name)))
                by_column.append(cells * len(specs))
            continue
        for prompt_set in spec.prompt_sets:
            say(f"{names[index]}: circuits on {prompt_set.name}")
            column, cells = _column(session, specs, index, datasets[index][prompt_set.name], names, say)
            columns.append(column)
            by_column.append(cells)
    by_row = [[cells[row] for cells in by_column] for row in range(len(specs))]
    return Transfer(columns=columns, rows=by_row)


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
