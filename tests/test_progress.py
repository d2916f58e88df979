"""Progress: rows done against the plan's total, an ETA, and lines in CI logs without a terminal."""

from __future__ import annotations

import itertools

from circuitlang.cli import main
from circuitlang.verification.progress import EverySoOften, Meter, duration
from tests.conftest import SPECS


def test_the_meter_reports_the_fraction_and_the_time_left():
    now = iter([0.0, 10.0, 30.0])
    lines: list[str] = []
    meter = Meter(1000, lines.append, clock=lambda: next(now))
    meter("digits: 40 variants of the circuit")
    meter.advance(250)  # a quarter in 30 s: 90 s left
    assert lines[0] == "digits: 40 variants of the circuit: 0% of 1,000 rows, 10s elapsed"
    assert lines[1] == "digits: 40 variants of the circuit: 25% of 1,000 rows, 30s elapsed, about 1m30s left"


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0, 59.4, 61, 3600 + 120)] == ["0s", "59s", "1m01s", "1h02m"]


def test_lines_are_passed_on_at_most_once_per_interval():
    ticks = itertools.count(0.0, 10.0)  # 0, 10, 20, ... seconds
    passed: list[str] = []
    every = EverySoOften(passed.append, interval=30.0, clock=lambda: next(ticks))
    for number in range(7):
        every(f"line {number}")
    assert passed == ["line 2", "line 5"]


def test_verify_without_a_terminal_prints_progress_lines_with_rows_and_the_plan_total(monkeypatch, capsys):
    import circuitlang.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.0)
    assert main(["verify", str(SPECS / "organism_incr_digits.circ"), "--no-audit", "--format", "json"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("verify: ")]
    assert lines and all(" rows, " in line and " elapsed" in line for line in lines)
    assert any("left" in line for line in lines)
    from circuitlang.compile.plan import compile_plan
    from circuitlang.data.datasets import expand_all
    from circuitlang.ir.lower import load_spec

    spec = load_spec(SPECS / "organism_incr_digits.circ")
    plan = compile_plan(spec, expand_all(spec), False)
    total, exact = sum(s.rows for s in plan.steps), sum(s.rows for s in plan.steps if s.exact)
    percent = int(lines[-1].split(": ")[-1].split("%")[0])
    assert f"of {total:,} rows" in lines[-1]  # the total is the plan's
    assert exact * 100 // total <= percent <= 100  # every exactly planned row was counted; the greedy search at most
