"""The parent process: hands case numbers to worker processes, enforces a hard deadline (a worker
stuck where the alarm cannot reach is killed), counts outcomes and saves each distinct finding."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from fuzz.targets import Case, build, target
from fuzz.worker import Budget, Outcome, serve

FINDING_KINDS = ("crash", "hang", "breach")
KINDS = ("ok", "error", *FINDING_KINDS)
HARD_DEADLINE_SLACK = 30.0  # wall seconds past the CPU budget before the worker is killed from outside
WORKER_START_SECONDS = 60.0  # a worker's first answer may wait for its imports and data files


@dataclass
class Summary:
    seed: int
    jobs: int
    counts: Counter = field(default_factory=Counter)
    by_target: dict[str, Counter] = field(default_factory=dict)
    findings: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(self.counts[kind] for kind in FINDING_KINDS)

    def line(self) -> str:
        c, cases = self.counts, sum(self.counts.values())
        rate = cases / self.seconds if self.seconds else 0.0
        return (
            f"cases {cases}  ok {c['ok']}  errors {c['error']}  crashes {c['crash']}  hangs {c['hang']}  "
            f"budget breaches {c['breach']}  ({self.seconds:.1f} s, {rate:.1f} cases/s, seed {self.seed}, "
            f"{self.jobs} jobs)"
        )

    def table(self) -> str:
        """Outcomes per target, as docs/fuzzing.md's tables show them."""
        rows = ["| target | cases | ok | errors | crashes | hangs | budget breaches |", "| --- " + "| ---: " * 6 + "|"]
        for name, c in self.by_target.items():
            rows.append(f"| {name} | {sum(c.values()):,} | " + " | ".join(f"{c[k]:,}" for k in KINDS) + " |")
        return "\n".join(rows)


class _Worker:
    def __init__(self, seed: int, budget: Budget, names: tuple[str, ...]) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no torch from a test session
        self.folder = tempfile.mkdtemp(prefix="circuitlang-fuzz-")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, seed, self.folder, budget, names), daemon=True)
        self.process.start()
        child.close()
        self.item: tuple[str, int] | None = None
        self.deadline = 0.0
        self.first = True

    @property
    def index(self) -> int | None:
        return None if self.item is None else self.item[1]

    def give(self, item: tuple[str, int], budget: Budget) -> None:
        self.item = item
        slack = WORKER_START_SECONDS if self.first else HARD_DEADLINE_SLACK
        self.deadline = time.monotonic() + target(item[0]).COMMANDS * budget.seconds + slack
        self.first = False
        self.conn.send(item)

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


def run_fuzz(
    seed: int, cases: int, jobs: int, out: Path | None, budget: Budget, progress: bool = False, names: tuple[str, ...] = ("spec",)
) -> Summary:
    """Run `cases` cases split round-robin among the targets `names`: the run's case i is case
    i // len(names) of target names[i % len(names)], so a target's case K is the same in any run."""
    summary = Summary(seed, jobs, by_target={name: Counter() for name in names})
    started = time.monotonic()
    workers = [_Worker(seed, budget, names) for _ in range(jobs)]
    next_index, done, last_report = 0, 0, started
    try:
        while done < cases:
            for worker in workers:
                if worker.item is None and next_index < cases:
                    worker.give((names[next_index % len(names)], next_index // len(names)), budget)
                    next_index += 1
            for i, outcome in _collect(workers):
                done += 1
                _record(summary, outcome, seed, out)
                workers[i] = _renewed(workers[i], outcome, seed, budget, names)
            if progress and time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                summary.seconds = last_report - started
                print(f"[{done}/{cases}] {summary.line()}", file=sys.stderr, flush=True)
    finally:
        for worker in workers:
            worker.stop()
    summary.seconds = time.monotonic() - started
    return summary


def _renewed(worker: _Worker, outcome: Outcome, seed: int, budget: Budget, names: tuple[str, ...]) -> _Worker:
    """A timed-out or memory-starved interpreter is not trusted again; a dead one is replaced."""
    if outcome.kind in ("hang", "breach") or not worker.process.is_alive():
        worker.stop(kill=True)
        return _Worker(seed, budget, names)
    return worker


def _collect(workers: list[_Worker]) -> list[tuple[int, Outcome]]:
    busy = [w for w in workers if w.item is not None]
    timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
    ready = wait([w.conn for w in busy], timeout)
    results = []
    for i, worker in enumerate(workers):
        if worker.item is None:
            continue
        if worker.conn in ready:
            results.append((i, _answer(worker)))
        elif time.monotonic() > worker.deadline:
            results.append(
                (
                    i,
                    Outcome(
                        worker.index,
                        "hang",
                        f"{worker.item[0]}: killed from outside (the alarm did not stop it)",
                        "no answer by the hard deadline",
                        worker.item[0],
                    ),
                )
            )
        else:
            continue
        worker.item = None
    return results


def _answer(worker: _Worker) -> Outcome:
    try:
        return worker.conn.recv()
    except (EOFError, OSError):  # the worker died: a segfault, or the kernel's OOM killer
        worker.process.join(5)
        name = worker.item[0]
        return Outcome(worker.index, "crash", f"{name}: worker died (exit code {worker.process.exitcode})", "", name)


def _record(summary: Summary, outcome: Outcome, seed: int, out: Path | None) -> None:
    summary.counts[outcome.kind] += 1
    summary.by_target[outcome.target][outcome.kind] += 1
    if outcome.kind not in FINDING_KINDS or outcome.key in summary.findings:
        return
    summary.findings[outcome.key] = outcome
    print(f"{outcome.kind}: {outcome.target} case {outcome.index}: {outcome.key}", file=sys.stderr, flush=True)
    if out is not None:
        save_finding(out, outcome, seed)


def save_finding(out: Path, outcome: Outcome, seed: int) -> Path:
    """OUT/KIND-HASH/: the case's files under case/, case.json (target, seed, number, the kinds of
    its special files), traceback.txt; a spec case's file also as input.circ."""
    digest = hashlib.sha1(outcome.key.encode()).hexdigest()[:10]
    folder = out / f"{outcome.kind}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    case = build(outcome.target, seed, outcome.index)
    for name, content in case.files.items():
        (folder / "case" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "case" / name).write_bytes(content)
    about = {"target": case.target, "seed": seed, "index": outcome.index, "kinds": case.kinds}
    (folder / "case.json").write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    if case.target == "spec":
        (folder / "input.circ").write_bytes(case.files["spec.circ"])
    (folder / "traceback.txt").write_text(
        f"{outcome.kind}: {outcome.key}\n{case.target} target, seed {seed}, case {outcome.index}\n"
        f"replay: python -m fuzz --replay {folder}\n\n{outcome.detail}",
        encoding="utf-8",
    )
    return folder


def load_finding(path: Path) -> Case:
    """The case a finding folder (or its case.json) holds, as saved (its files may have been edited
    by hand to shrink it); a lone file is a spec."""
    folder = path.parent if path.name == "case.json" else path
    if not (folder / "case.json").is_file():
        return Case("spec", {"spec.circ": path.read_bytes()})
    about = json.loads((folder / "case.json").read_text(encoding="utf-8"))
    files = {
        p.relative_to(folder / "case").as_posix(): p.read_bytes()
        for p in sorted((folder / "case").rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
    return Case(about["target"], files, about.get("kinds", {}))
