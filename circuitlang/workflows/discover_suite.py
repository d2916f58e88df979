"""`discover A.circ B.circ ... -o DIR [--ray]`: one search per spec, each written to its own file.

Each search is `workflows.discover.discover` on the spec's model, in this process one after
another or as a Ray task on a worker that holds the model (circuitlang.cluster); the outcomes come
back in the order of the specs. The written text is made where the search ran, from the spec's
file: on a cluster of several machines the specs must be at the same path on each (docs/scale.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from circuitlang.errors import CircuitlangError, flatten
from circuitlang.ir import models as ir
from circuitlang.engine.model_shelf import ModelShelf
from circuitlang.workflows.suite import VerifyOptions, gpus_per_worker, model_key, on_ray, open_with

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest
    from circuitlang.workflows.discover import Options, Outcome

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SearchWork:
    """One spec's search: the spec, its options (its own output file and circuit name), the command."""

    path: str
    spec: ir.Spec
    options: Options
    command: str


@dataclass
class SearchOutcome:
    """What a search found, or why it could not search (`refused`), or the errors that stopped it."""

    outcome: Outcome | None = None
    refused: str = ""
    errors: list[CircuitlangError] = field(default_factory=list)


def discover_each(
    works: list[SearchWork], opened: VerifyOptions, cluster: ClusterRequest | None, progress: Progress | None = None
) -> list[SearchOutcome]:
    """Each spec's search, in the order given: here, or on the Ray cluster `cluster`."""
    items = [(work, opened) for work in works]
    if cluster is None:
        shelf = ModelShelf()
        return [search_item(item, shelf, _prefixed(progress, item[0].path)) for item in items]
    from circuitlang.cluster.ray_map import ray_map

    spread = on_ray(opened)
    return ray_map(
        search_item,
        [(work, spread) for work in works],
        cluster,
        model_key=lambda item: model_key(item[0].spec.model),
        cpus_per_worker=spread.threads,
        gpus_per_worker=gpus_per_worker(opened),
        progress=progress,
        describe=lambda item: item[0].path,
    )


def _prefixed(progress: Progress | None, path: str) -> Progress:
    return (lambda line: None) if progress is None else (lambda line: progress(f"{path}: {line}"))


def search_item(item: tuple[SearchWork, VerifyOptions], shelf: ModelShelf, say: Progress) -> SearchOutcome:
    from circuitlang.workflows.discover import CannotSearch, discover

    work, opened = item
    try:
        return SearchOutcome(discover(open_with(work.spec, opened, shelf), work.options, work.command, say))
    except CannotSearch as error:
        return SearchOutcome(refused=str(error))
    except CircuitlangError as error:
        return SearchOutcome(errors=flatten([error]))
