"""The front end under fuzzing (docs/fuzzing.md): seeded runs through the fuzzer's own harness
(worker processes, memory limit, CPU-time alarm, sandboxed case folder) of the spec target and of
the data-file, graph-file, model-folder and cache-entry targets, and property tests of the parser
and the formatter on generated and arbitrary text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.errors import CircuitlangError, flatten
from fuzz.cases import build_case
from fuzz.corpus import seeds
from fuzz.generate import generate_spec
from fuzz.mutate import mutate
from fuzz.runner import load_finding, run_fuzz, save_finding
from fuzz.targets import TARGET_NAMES, build, target
from fuzz.vocabulary import TOKENS
from fuzz.worker import DEFAULT_MEMORY, DEFAULT_SECONDS, Budget, Outcome, Sandbox

CI_SEED, CI_CASES = 20261129, 4000
OTHER_TARGETS, CASES_PER_OTHER_TARGET = ("data", "graph", "model", "cache"), 200
BUDGET = Budget(seconds=DEFAULT_SECONDS, memory_bytes=DEFAULT_MEMORY)


@pytest.mark.slow
def test_a_seeded_run_ends_without_crash_hang_or_budget_breach(tmp_path):
    summary = run_fuzz(CI_SEED, CI_CASES, jobs=2, out=tmp_path, budget=BUDGET)
    assert sum(summary.counts.values()) == CI_CASES
    assert summary.counts["ok"] > 0 and summary.counts["error"] > 0  # both ends of the front end are reached
    assert not summary.failed, f"{summary.line()}; findings saved in {tmp_path}: {list(summary.findings)}"


@pytest.mark.slow
def test_seeded_runs_of_data_graph_model_and_cache_targets_end_without_crash_hang_or_breach(tmp_path):
    """A short run of each target past the spec (about 25 s on 2 cores): every target both accepts
    and refuses some of its inputs, so each reaches its readers' checks and their success."""
    cases = CASES_PER_OTHER_TARGET * len(OTHER_TARGETS)
    summary = run_fuzz(CI_SEED, cases, jobs=2, out=tmp_path, budget=BUDGET, names=OTHER_TARGETS)
    assert not summary.failed, f"{summary.line()}; findings saved in {tmp_path}: {list(summary.findings)}"
    for name in OTHER_TARGETS:
        counts = summary.by_target[name]
        assert sum(counts.values()) == CASES_PER_OTHER_TARGET
        assert counts["ok"] > 0 and counts["error"] > 0, f"{name}: {dict(counts)}"


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_a_targets_first_cases_pass_its_harness_in_this_process(tmp_path, monkeypatch, name):
    """Each target's first cases without workers or budgets: a change that breaks a target fails
    here in seconds."""
    monkeypatch.setenv("CIRCUITLANG_CACHE_KEY", "set by the cache target's prepare")  # restored after the test
    monkeypatch.delenv("CIRCUITLANG_CACHE_DIR", raising=False)
    module = target(name)
    module.prepare(tmp_path)
    outcomes = set()
    for index in range(4):
        case = build(name, CI_SEED, index)
        module.lay_out(tmp_path, case)
        outcomes.add(module.run(tmp_path, case, lambda: None))
    assert outcomes <= {"ok", "error"}


def test_a_saved_finding_replays_as_the_same_case(tmp_path):
    """A finding's folder holds the case's files and where it came from; --replay reads it back."""
    for name in ("data", "cache", "spec"):
        folder = save_finding(tmp_path, Outcome(5, "crash", f"{name} key", "traceback", name), CI_SEED)
        assert load_finding(folder) == build(name, CI_SEED, 5)
    assert load_finding(folder / "input.circ") == build("spec", CI_SEED, 5)


def test_the_seeded_runs_first_cases_pass_the_harness_in_this_process(tmp_path):
    """The fast loop's share of the seeded run: its first cases through the same harness, without
    worker processes or budgets, so that a change that breaks the harness fails here in seconds
    (in the run above every case would crash and restart its worker)."""
    from fuzz.harness import run_spec

    outcomes = []
    for index in range(10):
        path = tmp_path / f"case-{index}.circ"
        path.write_bytes(build_case(CI_SEED, index))
        outcomes.append(run_spec(path))
    assert set(outcomes) == {"ok", "error"}  # both ends of the front end are reached


def test_a_case_is_the_same_for_the_same_seed_and_number():
    assert build_case(7, 123) == build_case(7, 123)
    assert len({build_case(7, i) for i in range(20)}) == 20
    for name in TARGET_NAMES:
        assert build(name, 7, 123) == build(name, 7, 123)
        assert build(name, 7, 123) != build(name, 7, 124)


def test_the_sandbox_refuses_and_records_reads_outside_the_case_folder(tmp_path):
    sandbox = Sandbox(tmp_path)
    sandbox.active = True
    sandbox.audit("open", (str(tmp_path / "inside.txt"), "r", 0))
    with pytest.raises(PermissionError):
        sandbox.audit("open", ("/etc/hostname", "r", 0))
    assert sandbox.escapes == ["/etc/hostname"]


def _parse_or_located_error(text: str) -> object:
    """Parse `text`; a refusal must be a CircuitlangError whose every member has a span."""
    try:
        return parse(text, "fuzz.circ")
    except CircuitlangError as error:
        assert all(problem.span is not None for problem in flatten([error]))
        return None


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@FAST
@given(st.randoms(use_true_random=False))
def test_fmt_is_a_fixed_point_on_generated_specs(rng: random.Random):
    spec = _parse_or_located_error(generate_spec(rng))
    if spec is None:  # the generator sometimes shuffles statements above the header
        return
    formatted = format_spec(spec)
    assert format_spec(parse(formatted, "fuzz.circ")) == formatted


@pytest.mark.slow
@FAST
@given(st.randoms(use_true_random=False), st.sampled_from(seeds()))
def test_fmt_is_a_fixed_point_on_mutated_seeds(rng: random.Random, seed):
    data = mutate(rng, seed.data, [s.data for s in seeds()[:20]])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return
    spec = _parse_or_located_error(text)
    if spec is not None:
        formatted = format_spec(spec)
        assert format_spec(parse(formatted, "fuzz.circ")) == formatted


@FAST
@given(st.text())
def test_parse_refuses_arbitrary_text_only_with_located_errors(text: str):
    _parse_or_located_error(text)


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.sampled_from([" ", "", "\n"]))
def test_parse_refuses_token_soup_only_with_located_errors(tokens: list[str], joiner: str):
    _parse_or_located_error("circuitlang 1\n" + joiner.join(tokens))


def test_the_seeds_include_shipped_specs_error_catalogue_and_docs():
    names = [seed.name for seed in seeds()]
    assert any(n.startswith("specs/") for n in names) and any(n.startswith("tests/errors/") for n in names)
    assert any(n.startswith("docs/language.md#") for n in names)
    assert all(Path(__file__).parent.parent.joinpath(n).exists() for n in names if n.startswith("specs/"))
