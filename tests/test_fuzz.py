"""The front end under fuzzing (docs/fuzzing.md): a seeded run through the fuzzer's own harness
(worker processes, memory limit, CPU-time alarm, sandboxed case folder), and property tests of
the parser and the formatter on generated and arbitrary text."""

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
from fuzz.runner import run_fuzz
from fuzz.vocabulary import TOKENS
from fuzz.worker import DEFAULT_MEMORY, DEFAULT_SECONDS, Budget, Sandbox

CI_SEED, CI_CASES = 20261129, 4000
BUDGET = Budget(seconds=DEFAULT_SECONDS, memory_bytes=DEFAULT_MEMORY)


@pytest.mark.slow
def test_a_seeded_run_ends_without_crash_hang_or_budget_breach(tmp_path):
    summary = run_fuzz(CI_SEED, CI_CASES, jobs=2, out=tmp_path, budget=BUDGET)
    assert sum(summary.counts.values()) == CI_CASES
    assert summary.counts["ok"] > 0 and summary.counts["error"] > 0  # both ends of the front end are reached
    assert not summary.failed, f"{summary.line()}; findings saved in {tmp_path}: {list(summary.findings)}"


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
