"""Progress of a long run: prompt rows through the model against a total counted before it ran, with an ETA.

`plan` counts the prompt rows each step of `verify` runs (compile.plan); the verifier reports rows
as it runs them, so the fraction done and the time left come from the same numbers `plan` prints.
`discover`, `patch` and `compare` count theirs the same way. Searches that may stop early (the
greedy completeness search, pruning, ACDC) are counted at their most, so the ETA errs long; a
`Part` gives back what such a search did not need as soon as it knows.
"""

from __future__ import annotations

import time
from typing import Callable

Say = Callable[[str], None]
SETTLING_FRACTION = 0.02  # no time-left estimate before this much is done: the first rows include warm-up


class Meter:
    """Called with a stage's message, or told rows are done; says a progress line each time."""

    def __init__(self, total_rows: int, say: Say, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.say, self.clock = total_rows, say, clock
        self.done, self.stage, self.started = 0, "", clock()
        self.open_parts: list[Part] = []

    def __call__(self, stage: str) -> None:
        self.stage = stage
        self.say(self.line())

    def advance(self, rows: int) -> None:
        self.done += rows
        self.say(self.line())

    def recount(self, rows: int) -> None:
        """Add rows to the total, or take them off (work found to be needed, or counted and not needed)."""
        self.total += rows
        for part in self.open_parts:  # their counts include this change
            part.counted += rows

    def part(self, counted: int) -> Part:
        """A part of the work, already in the total as `counted` rows; use it as a context manager."""
        return Part(self, counted)

    def line(self) -> str:
        fraction = min(self.done / max(self.total, 1), 1.0)
        elapsed = self.clock() - self.started
        left = f", about {duration(elapsed * (1 - fraction) / fraction)} left" if fraction >= SETTLING_FRACTION and fraction < 1 else ""
        return f"{self.stage}: {fraction:.0%} of {self.total:,} rows, {duration(elapsed)} elapsed{left}"


class Part:
    """Work counted in the total before it ran, at its most (a search that may stop early). `left`
    tightens the count as the search learns how far it goes, and at its end the total keeps only
    the rows it used: the fraction jumps forward rather than the ETA staying long."""

    def __init__(self, meter: Meter, counted: int) -> None:
        self.meter, self.counted, self.start = meter, counted, meter.done

    def left(self, rows: int) -> None:
        """At most `rows` rows of this part remain."""
        needed = self.meter.done - self.start + rows
        self.meter.recount(needed - self.counted)
        self.counted = needed  # also when it is not open

    def __enter__(self) -> Part:
        self.start = self.meter.done
        self.meter.open_parts.append(self)
        return self

    def __exit__(self, *exception: object) -> None:
        self.left(0)
        self.meter.open_parts.remove(self)


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
