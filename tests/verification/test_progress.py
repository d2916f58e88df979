"""Progress: rows done against the plan's total, an ETA, and lines in CI logs without a terminal."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

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
    import circuitlang.commands.common as common

    monkeypatch.setattr(common, "PROGRESS_INTERVAL_S", 0.0)
    # --no-cache: a run the cache answers whole loads no model and has no rows to count
    assert main(["verify", str(SPECS / "organism_incr_digits.circ"), "--no-audit", "--no-cache", "--format", "json"]) == 0
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


def test_a_part_counted_at_its_most_gives_back_what_it_did_not_need():
    now = iter([0.0, 10.0, 20.0, 30.0])
    lines: list[str] = []
    meter = Meter(1000, lines.append, clock=lambda: next(now))
    with meter.part(800) as search:  # a greedy search, counted at its most
        meter.advance(100)
        search.left(200)  # it has learnt that at most 200 rows remain: the total is 1000 - 800 + 300
        meter.advance(100)
    meter.advance(200)  # the search ended after 200 of its 800 rows: the total is 400
    assert [line.split(": ", 1)[1] for line in lines] == [
        "10% of 1,000 rows, 10s elapsed, about 1m30s left",
        "40% of 500 rows, 20s elapsed, about 30s left",
        "100% of 400 rows, 30s elapsed",
    ]


def test_a_part_inside_another_leaves_the_total_equal_to_the_work_done():
    meter = Meter(150, lambda line: None)
    with meter.part(100):
        with meter.part(60) as inner:
            meter.advance(10)
            inner.left(0)
        meter.advance(20)
    meter.advance(50)
    assert meter.total == meter.done == 80


# ---- the commands, through the console entry point, without a terminal ----------------------------


def _run_command(argv: list[str], monkeypatch, capsys) -> tuple[int, list[str], str, str]:
    """Run `circuitlang ARGV` as the console script does, with a progress line for every update."""
    import sys

    import circuitlang.commands.common as common
    from circuitlang.cli import run

    monkeypatch.setattr(common, "PROGRESS_INTERVAL_S", 0.0)
    monkeypatch.setattr(sys, "argv", ["circuitlang", *argv])
    with pytest.raises(SystemExit) as exit_:
        run()
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith(f"{argv[0]}: ") and "% of " in line]
    return int(exit_.value.code), lines, captured.out, captured.err


PROGRESS_LINE = re.compile(r": (\d+)% of ([\d,]+) rows, \S+ elapsed(, about \S+ left)?$")


def _percentages(lines: list[str]) -> list[int]:
    """Each line's percentage, after checking that every line reads as a progress line should."""
    matches = [PROGRESS_LINE.search(line) for line in lines]
    assert lines and all(matches), lines
    return [int(match[1]) for match in matches if match]


def _check_progress(lines: list[str], out: str, err: str) -> None:
    percentages = _percentages(lines)
    assert any(" left" in line for line in lines)  # an ETA once the first rows are done
    assert percentages[-1] == 100
    finished = percentages.index(100)  # the work is counted at its most: 100% comes only at the end
    assert all(p == 100 for p in percentages[finished:]), percentages
    assert "% of " not in out and " elapsed" not in out  # stdout carries only the results
    assert "it/s" not in err and "Loading" not in err  # no third-party progress bars


@pytest.mark.slow
def test_patch_without_a_terminal_prints_progress_over_its_senders_and_receivers(tmp_path, monkeypatch, capsys):
    spec = SPECS / "organism_incr_digits.circ"
    code, lines, out, err = _run_command(
        ["patch", str(spec), "-o", str(tmp_path), "--kind", "heads", "--receiver", "logits", "--image", "svg"], monkeypatch, capsys
    )
    assert code == 0
    _check_progress(lines, out, err)
    n_layers, n_heads, n_prompts = 4, 8, 95
    rows = (2 + n_layers * n_heads + n_layers * n_heads * 2) * n_prompts  # baselines, heads, heads into the logits
    assert all(f"of {rows:,} rows" in line for line in lines)  # known before the first sweep
    assert len(lines) > 4  # within the sweeps, not only between them


def test_compare_without_a_terminal_prints_progress_over_specs_and_models(monkeypatch, capsys):
    specs = [str(SPECS / f"{name}.circ") for name in ("organism_incr_digits", "organism_months")]
    code, lines, out, err = _run_command(["compare", *specs, "--format", "json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["transfer"]
    _check_progress(lines, out, err)
    assert len({PROGRESS_LINE.search(line)[2] for line in lines}) == 1  # the total is known before the first model


@pytest.mark.slow
def test_discover_without_a_terminal_prints_progress_with_an_estimate(tmp_path, monkeypatch, capsys):
    spec = SPECS / "organism_incr_digits.circ"
    code, lines, out, err = _run_command(
        ["discover", str(spec), "--method", "prune", "--order", "backward", "-o", str(tmp_path / "found.circ")], monkeypatch, capsys
    )
    assert code == 0 and "wrote" in out
    _check_progress(lines, out, err)


@pytest.fixture(scope="module")
def micro_spec(tmp_path_factory) -> Path:
    from tests.micro_model import WORDS, build_copy_model

    root = tmp_path_factory.mktemp("progress_micro")
    build_copy_model(root / "micro")
    path = root / "copy.circ"
    path.write_text(f"""circuitlang 1
circuit copy on "./micro"
list animals = {json.dumps(WORDS)}
prompts copy {{
  template "{{s1}} {{s2}} {{s3}}"
  for i in 1..12
  s1, s2, s3 = random animals distinct
  answer = s1
  wrong = s3
  corrupt random {{ s1, s2, s3 = random animals distinct }}
}}
metric logit_diff(answer, wrong)
ablate mean of corrupt
""")
    return path


@pytest.mark.parametrize(
    "method", [["prune"], ["prune", "--edges", "--include-mlps"], ["path-patching"], ["acdc"], ["acdc", "--score", "metric"]]
)
def test_every_discovery_method_counts_its_work_at_its_most(micro_spec, tmp_path, monkeypatch, capsys, method):
    code, lines, out, err = _run_command(
        ["discover", str(micro_spec), "--method", *method, "-o", str(tmp_path / "found.circ")], monkeypatch, capsys
    )
    assert code == 0
    percentages = _percentages(lines)
    assert percentages[-1] == 100
    assert all(p == 100 for p in percentages[percentages.index(100) :]), percentages
