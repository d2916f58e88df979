"""The parent process: hands case numbers to worker processes, enforces a hard deadline (a worker
stuck where the alarm cannot reach is killed), counts outcomes and saves each distinct finding."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from fuzz.cases import build_case
from fuzz.worker import Budget, Outcome, serve

FINDING_KINDS = ("crash", "hang", "breach")
COMMANDS_PER_CASE = 3  # check, plan, fmt: each has the time budget
HARD_DEADLINE_SLACK = 30.0  # wall seconds past the CPU budget before the worker is killed from outside
WORKER_START_SECONDS = 60.0  # a worker's first answer may wait for its imports and data files


@dataclass
class Summary:
    seed: int
    jobs: int
    counts: Counter = field(default_factory=Counter)
    findings: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(self.counts[kind] for kind in FINDING_KINDS)

    def line(self) -> str:
        c, cases = self.counts, sum(self.counts.values())
        rate = cases / self.seconds if self.seconds else 0.0
        return (f"cases {cases}  ok {c['ok']}  errors {c['error']}  crashes {c['crash']}  hangs {c['hang']}  "
                f"budget breaches {c['breach']}  ({self.seconds:.1f} s, {rate:.1f} cases/s, seed {self.seed}, "
                f"{self.jobs} jobs)")


class _Worker:
    def __init__(self, seed: int, budget: Budget) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no torch from a test session
        self.folder = tempfile.mkdtemp(prefix="circuitlang-fuzz-")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, seed, self.folder, budget), daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.deadline = 0.0
        self.first = True

    def give(self, index: int, budget: Budget) -> None:
        self.index = index
        slack = WORKER_START_SECONDS if self.first else HARD_DEADLINE_SLACK
        self.deadline = time.monotonic() + COMMANDS_PER_CASE * budget.seconds + slack
        self.first = False
        self.conn.send(index)

    def stop(self, kill: bool = False) -> None:
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_fuzz(seed: int, cases: int, jobs: int, out: Path | None, budget: Budget, progress: bool = False) -> Summary:
    summary = Summary(seed, jobs)
    started = time.monotonic()
    workers = [_Worker(seed, budget) for _ in range(jobs)]
    next_index, done, last_report = 0, 0, started
    try:
        while done < cases:
            for worker in workers:
                if worker.index is None and next_index < cases:
                    worker.give(next_index, budget)
                    next_index += 1
            for i, outcome in _collect(workers):
                done += 1
                _record(summary, outcome, seed, out)
                workers[i] = _renewed(workers[i], outcome, seed, budget)
            if progress and time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                summary.seconds = last_report - started
                print(f"[{done}/{cases}] {summary.line()}", file=sys.stderr, flush=True)
    finally:
        for worker in workers:
            worker.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _renewed(worker: _Worker, outcome: Outcome, seed: int, budget: Budget) -> _Worker:
    """A timed-out or memory-starved interpreter is not trusted again; a dead one is replaced."""
    if outcome.kind in ("hang", "breach") or not worker.process.is_alive():
        worker.stop(kill=True)
        return _Worker(seed, budget)
    return worker


def _collect(workers: list[_Worker]) -> list[tuple[int, Outcome]]:
    busy = [w for w in workers if w.index is not None]
    timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
    ready = wait([w.conn for w in busy], timeout)
    results = []
    for i, worker in enumerate(workers):
        if worker.index is None:
            continue
        if worker.conn in ready:
            results.append((i, _answer(worker)))
        elif time.monotonic() > worker.deadline:
            results.append((i, Outcome(worker.index, "hang", "killed from outside (the alarm did not stop it)",
                                       "no answer by the hard deadline")))
        else:
            continue
        worker.index = None
    return results


def _answer(worker: _Worker) -> Outcome:
    try:
        return worker.conn.recv()
    except (EOFError, OSError):  # the worker died: a segfault, or the kernel's OOM killer
        worker.process.join(5)
        return Outcome(worker.index, "crash", f"worker died (exit code {worker.process.exitcode})", "")


def _record(summary: Summary, outcome: Outcome, seed: int, out: Path | None) -> None:
    summary.counts[outcome.kind] += 1
    if outcome.kind not in FINDING_KINDS or outcome.key in summary.findings:
        return
    summary.findings[outcome.key] = outcome
    print(f"{outcome.kind}: case {outcome.index}: {outcome.key}", file=sys.stderr, flush=True)
    if out is not None:
        save_finding(out, outcome, seed)


def save_finding(out: Path, outcome: Outcome, seed: int) -> Path:
    digest = hashlib.sha1(outcome.key.encode()).hexdigest()[:10]
    folder = out / f"{outcome.kind}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.circ").write_bytes(build_case(seed, outcome.index))
    (folder / "traceback.txt").write_text(
        f"{outcome.kind}: {outcome.key}\nseed {seed}, case {outcome.index}\n"
        f"replay: python -m fuzz --replay {folder / 'input.circ'}\n\n{outcome.detail}", encoding="utf-8")
    return folder
