"""Progress of a verification: rows through the model against the plan's total, with an ETA.

`plan` counts the prompt rows each step runs (compile.plan); the verifier reports rows as it runs
them, so the fraction done and the time left come from the same numbers `plan` prints. The
greedy completeness search is counted at its most, so the ETA errs long.
"""

from __future__ import annotations

import time
from typing import Callable

Say = Callable[[str], None]
SETTLING_FRACTION = 0.02  # no time-left estimate before this much is done: the first rows include warm-up


class Meter:
    """Called with a stage's message, or told rows are done; says a progress line each time."""

    def __init__(self, total_rows: int, say: Say, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.say, self.clock = max(total_rows, 1), say, clock
        self.done, self.stage, self.started = 0, "", clock()

    def __call__(self, stage: str) -> None:
        self.stage = stage
        self.say(self.line())

    def advance(self, rows: int) -> None:
        self.done += rows
        self.say(self.line())

    def line(self) -> str:
        fraction = min(self.done / self.total, 1.0)
        elapsed = self.clock() - self.started
        left = (f", about {duration(elapsed * (1 - fraction) / fraction)} left"
                if fraction >= SETTLING_FRACTION and fraction < 1 else "")
        return f"{self.stage}: {fraction:.0%} of {self.total:,} rows, {duration(elapsed)} elapsed{left}"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class EverySoOften:
    """Passes a line on at most once per `interval` seconds (progress in CI logs, without a terminal)."""

    def __init__(self, say: Say, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.say, self.interval, self.clock = say, interval, clock
        self.last = clock()

    def __call__(self, line: str) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.say(line)
