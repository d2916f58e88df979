"""Independent work items run as Ray tasks on workers that each hold one model, gathered in order.

Ray does the scheduling, the retries and the transport. Each worker is a Ray actor with a
`ModelShelf` (engine.model_shelf): the items are handed out sorted by model, so a worker loads a model
once for all the items that use it. `ray.util.ActorPool` gives each item to an idle worker; a
`ray.util.queue.Queue` brings the workers' progress lines back while the driver waits. A worker
whose process dies is restarted by Ray and its unfinished item run again there (`max_restarts`,
`max_task_retries`); items write nothing themselves (their cache entries come back with their
result), so a retried item gives what the first attempt would have given. The results are put back
in the items' order, so the caller sees what a loop over the items would have given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from circuitlang.cluster.connect import ClusterRequest, connected
from circuitlang.errors import ClusterError
from circuitlang.verification.progress import duration

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3  # restarts of a worker whose process died, and retries of the item it was running
WAIT_S = 0.25  # how often the driver looks for progress lines while it waits for results
READY_TIMEOUT_S = 30.0  # how long workers may take to start (be placed on the cluster) before the run goes on without them
STARTED = "started"  # the line a worker sends as it begins an item (and again on a retry)
LINE_INTERVAL_S = 0.5  # a worker sends at most this many progress lines a second per item


@dataclass(frozen=True)
class Event:
    """A worker's word on an item: it started (`line == STARTED`), or a progress line."""

    index: int
    pid: int
    line: str


Work = Callable[[Any, Any, Callable[[str], None]], Any]  # (item, shelf, say) -> result


class Worker:
    """A Ray actor's body: the model it holds, kept from item to item."""

    def __init__(self) -> None:  # no arguments: Ray restarts an actor from them, and they could be gone by then
        from circuitlang.engine.model_shelf import ModelShelf

        self.shelf = ModelShelf()

    def ready(self) -> bool:
        return True

    def run(self, work: Work, item: Any, index: int, events: Any) -> tuple[int, Any]:
        pid = os.getpid()
        events.put(Event(index, pid, STARTED))
        last = [0.0]

        def say(line: str) -> None:
            now = time.monotonic()
            if now - last[0] >= LINE_INTERVAL_S:
                last[0] = now
                events.put(Event(index, pid, line))

        return index, work(item, self.shelf, say)


def ray_map(
    work: Work,
    items: Sequence[Any],
    request: ClusterRequest,
    model_key: Callable[[Any], str] = lambda item: "",
    cpus_per_worker: int = 1,
    gpus_per_worker: float = 0,
    progress: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    describe: Callable[[Any], str] = str,
) -> list[Any]:
    """`[work(item, shelf, say) for item in items]`, each on a Ray worker; the results in the items' order."""
    if not items:
        return []
    with connected(request) as ray:
        from ray.util.actor_pool import ActorPool
        from ray.util.queue import Queue

        events = Queue()
        workers: list[Any] = []
        try:
            wanted = min(len(items), request.workers or _slots(ray, cpus_per_worker, gpus_per_worker))
            workers = _started(ray, wanted, cpus_per_worker, gpus_per_worker, progress)
            pool = ActorPool(workers)
            for index in sorted(range(len(items)), key=lambda i: (model_key(items[i]), i)):
                pool.submit(lambda w, i: w.run.remote(work, items[i], i, events), index)
            return _gathered(ray, pool, events, items, describe, progress, on_event)
        finally:
            _stopped(ray, [*workers, events.actor])


def _started(ray: Any, wanted: int, cpus: int, gpus: float, progress: Callable[[str], None] | None) -> list[Any]:
    """The workers that start within READY_TIMEOUT_S (a cluster with fewer free CPUs or GPUs than
    asked for starts fewer); a ClusterError when none does."""
    actor = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES, num_cpus=cpus, num_gpus=gpus)(Worker)
    workers = [actor.remote() for _ in range(wanted)]
    pending = {worker.ready.remote(): worker for worker in workers}
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=READY_TIMEOUT_S)
    started = [pending[reference] for reference in ready]
    _stopped(ray, [worker for worker in workers if worker not in started])
    if not started:
        raise ClusterError(
            f"error: no Ray worker started within {READY_TIMEOUT_S:.0f} s: each asks for {cpus} CPU(s) and {gpus:g} GPU(s), "
            f"and the cluster has {_free(ray)} free\n  hint: use a cluster with free CPUs (or GPUs with --device cuda), or fewer --threads"
        )
    if len(started) < wanted and progress is not None:
        progress(f"{len(started)} of {wanted} workers started: the cluster has no room for more")
    return started


def _stopped(ray: Any, actors: list[Any]) -> None:
    """Kill the actors (the workers, the progress queue); a cluster already gone has nothing to kill."""
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001, S110 - stopping what may already be gone must not hide the run's own error
            pass


def _gathered(ray: Any, pool: Any, events: Any, items: Sequence[Any], describe: Callable[[Any], str], progress: Any, on_event: Any) -> list[Any]:
    results: dict[int, Any] = {}
    started, last_line = time.monotonic(), ""
    while pool.has_next():
        try:
            index, result = pool.get_next_unordered(timeout=WAIT_S)
        except TimeoutError:
            last_line = _drain(events, items, describe, on_event) or last_line
        except ray.exceptions.RayTaskError as error:  # the work itself raised: as it would have in this process
            raise error.cause if isinstance(error.cause, Exception) else error from None
        except ray.exceptions.RayError as error:  # a worker died more often than it may be restarted
            raise ClusterError(f"error: the Ray cluster lost the work: {type(error).__name__}: {_first_line(error)}") from None
        else:
            results[index] = result
        if progress is not None:
            progress(_line(len(results), len(items), time.monotonic() - started, last_line))
    _drain(events, items, describe, on_event)
    return [results[i] for i in range(len(items))]


def _drain(events: Any, items: Sequence[Any], describe: Callable[[Any], str], on_event: Any) -> str:
    """Hand the queued events on; the last progress line, with its item named."""
    line = ""
    while not events.empty():
        event = events.get_nowait()
        if on_event is not None:
            on_event(event)
        line = f"{describe(items[event.index])}: {event.line}"
    return line


def _line(done: int, total: int, elapsed: float, latest: str) -> str:
    left = f", about {duration(elapsed * (total - done) / done)} left" if 0 < done < total else ""
    return f"{done} of {total} done, {duration(elapsed)} elapsed{left}" + (f"; {latest}" if latest else "")


def _slots(ray: Any, cpus_per_worker: int, gpus_per_worker: float) -> int:
    """Workers the cluster has room for now: its free CPUs (and GPUs, when workers take them) over
    what one worker asks for; at least one, which `_started` gives up on when it cannot start."""
    free = ray.available_resources()
    slots = int(free.get("CPU", 0) // cpus_per_worker)
    if gpus_per_worker:
        slots = min(slots, int(free.get("GPU", 0) // gpus_per_worker))
    return max(1, slots)


def _free(ray: Any) -> str:
    free = ray.available_resources()
    return f"{free.get('CPU', 0):g} CPU(s) and {free.get('GPU', 0):g} GPU(s)"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
