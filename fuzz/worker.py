"""The worker process: runs cases of one or more targets under a memory limit (RLIMIT_AS) and a
CPU-time alarm per command, in a folder of its own that holds the files a case needs (copies of
the spec seeds' data files; the case folder of the other targets), reading nothing outside it."""

from __future__ import annotations

import os
import re
import resource
import signal
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Sequence

from fuzz import harness
from fuzz.targets import Case, build, target

QUOTED_OR_NUMBER = re.compile(r"'[^']*'|\"[^\"]*\"|[0-9]+")


class CaseTimeout(BaseException):
    """Raised by the alarm. A BaseException, so that no `except Exception` in the code under test
    can swallow it."""


@dataclass(frozen=True)
class Outcome:
    index: int
    kind: str  # ok | error | crash | hang | breach
    key: str  # what deduplicates findings: exception type and innermost frame
    detail: str  # the traceback, for findings
    target: str = "spec"


# The budgets admit the largest valid spec the limits allow: `generate greater_than(n = 100000)`
# with a corruption (200,000 prompts, each with a 100-token answer set) takes about 16 s of CPU
# and 1.3 GB resident in `check`.
DEFAULT_SECONDS = 40.0  # CPU seconds per command
DEFAULT_MEMORY = 3 * 2**30  # address space per worker


@dataclass(frozen=True)
class Budget:
    seconds: float
    memory_bytes: int


def serve(conn: Connection, seed: int, folder: str, budget: Budget, names: Sequence[str] = ("spec",)) -> None:
    """Entry point of a worker: answer (target, case number) with outcomes until told to stop (None)."""
    sandbox = _prepare(Path(folder), budget, names)
    while (item := conn.recv()) is not None:
        name, index = item
        conn.send(run_case(index, build(name, seed, index), sandbox, budget))


def _prepare(folder: Path, budget: Budget, names: Sequence[str]) -> Sandbox:
    os.environ.update(HOME=str(folder), HF_HOME=str(folder / "hf"), HF_HUB_OFFLINE="1")  # `~` stays inside
    harness.reuse_argument_parser()
    for name in names:
        target(name).prepare(folder)  # lays out its files, imports and warms up before the limits apply
    sandbox = Sandbox(folder)
    sys.addaudithook(sandbox.audit)
    resource.setrlimit(resource.RLIMIT_AS, (budget.memory_bytes, budget.memory_bytes))
    signal.signal(signal.SIGPROF, _alarm)  # CPU time: a busy machine does not make a case hang
    return sandbox


def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


class Sandbox:
    """Refuses (and records) any file opened or listed outside the case folder and the Python
    installation while a case runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.allowed = tuple(
            os.path.realpath(p) + os.sep
            for p in (folder, sys.prefix, sys.base_prefix, Path(__file__).parent, Path(__file__).parent.parent / "circuitlang")
        )
        self.active = False
        self.escapes: list[str] = []

    def audit(self, event: str, args: tuple) -> None:
        if not self.active or event not in ("open", "os.listdir", "os.scandir"):
            return
        path = args[0] if args else None
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        real = os.path.realpath(os.fsdecode(path))
        if not (real + os.sep).startswith(self.allowed) and real != os.devnull:
            self.escapes.append(real)
            raise PermissionError(f"fuzz sandbox: {real} is outside the case folder")


def run_case(index: int, case: Case, sandbox: Sandbox, budget: Budget) -> Outcome:
    module = target(case.target)
    module.lay_out(sandbox.folder, case)
    sandbox.escapes.clear()
    sandbox.active = True
    try:
        kind = module.run(sandbox.folder, case, lambda: signal.setitimer(signal.ITIMER_PROF, budget.seconds))
    except CaseTimeout as timeout:
        return _finding(index, case, "hang", timeout)
    except MemoryError as breach:
        return _finding(index, case, "breach", breach)
    except BaseException as crash:  # noqa: BLE001 - anything else is what the fuzzer looks for
        return _finding(index, case, "crash", crash)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        sandbox.active = False
    if sandbox.escapes:
        return Outcome(index, "crash", "read outside the case folder", "\n".join(sandbox.escapes), case.target)
    return Outcome(index, kind, "", "", case.target)


def _finding(index: int, case: Case, kind: str, exception: BaseException) -> Outcome:
    frames = [f for f in traceback.extract_tb(exception.__traceback__) if f.name != "_alarm"]
    where = f"{_short(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
    key = f"{case.target}: {type(exception).__name__} at {where}"
    if type(exception).__name__ == "ContractBroken":  # raised in one place for every broken rule: keep them apart
        key = f"{key}: {_without_particulars(str(exception))}"
    detail = "".join(traceback.format_exception(exception))
    return Outcome(index, kind, key, detail[-20_000:], case.target)


def _without_particulars(message: str) -> str:
    """The message with quoted text and numbers blanked, so one cause gives one key."""
    return QUOTED_OR_NUMBER.sub("_", message)[:160]


def _short(filename: str) -> str:
    marker = filename.rfind("circuitlang" + os.sep)
    return filename[marker:] if marker >= 0 else os.path.basename(filename)


def replay(conn: Connection, case: Case, folder: str, budget: Budget) -> None:
    """Run one given case as a run would run it (for `python -m fuzz --replay`)."""
    sandbox = _prepare(Path(folder), budget, (case.target,))
    conn.send(run_case(-1, case, sandbox, budget))
