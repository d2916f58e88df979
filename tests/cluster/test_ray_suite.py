"""A suite on a local Ray cluster gives the reports of the same suite run spec by spec in one process:
when every worker lives, when one is killed part-way through a spec, and with the result cache
shared. CI installs the extra (`circuitlang[test]` includes `circuitlang[cluster]`) and runs these
on a local cluster of 2 CPUs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import ray

from circuitlang.cluster.connect import ClusterRequest
from circuitlang.cluster.ray_map import STARTED, Event
from circuitlang.data.datasets import expand_all
from circuitlang.engine.result_cache import ResultCache
from circuitlang.ir.lower import load_spec
from circuitlang.workflows.suite import SpecWork, VerifyOptions, verify_in_process, verify_on_ray

from tests.conftest import ROOT
from tests.engine.test_result_cache import few_prompts_spec

pytestmark = pytest.mark.xdist_group("ray")  # one local cluster per test process: the tests share it


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 << 20)
    yield
    ray.shutdown()


def works(paths: list[Path]) -> list[SpecWork]:
    return [SpecWork(i, str(path), spec := load_spec(path), expand_all(spec)) for i, path in enumerate(paths)]


def without_time(outcome, cache_counts: bool = True) -> str:
    """The report less its wall time (and, with `cache_counts` False, the cache's own counts)."""
    assert outcome.errors == [], outcome.errors
    report = dict(json.loads(outcome.report.model_dump_json()), seconds=None)
    if not cache_counts:
        report["prompt_sets"] = [dict(p, cache=None) for p in report["prompt_sets"]]
    return json.dumps(report, sort_keys=True)


# A second prompt set for the organism's digit circuit, and a claim on each set that reads attention.
DECREASING = """
prompts decr_digits {
  template "{s1} {s2} {s3} {s4}"
  for i in 5..24
  s1 = i
  s2 = i - 1
  s3 = i - 2
  s4 = i - 3
  answer = i - 4
  wrong = i - 3
  corrupt random {
    s1, s2, s3, s4 = random 1..99
  }
}

expect 0.4 attends end -> s3 >= 0.1
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> list[Path]:
    """The organism's digit circuit as shipped (the first spec: long enough to be killed part-way),
    two quick variants of it (with declared edges; on prompts read from a CSV file), and the circuit
    on two prompt sets (a task each) with an attention claim on each."""
    folder = tmp_path_factory.mktemp("suite")
    two_sets = folder / "two_sets.circ"
    two_sets.write_text(few_prompts_spec(folder, "small").read_text() + DECREASING)
    return [ROOT / "specs" / "organism_incr_digits.circ", few_prompts_spec(folder, "edges"), few_prompts_spec(folder, "csv"), two_sets]


@pytest.fixture(scope="module")
def reference(suite):
    """The suite in this process, no result cache: what the cluster's runs must equal."""
    return verify_in_process(works(suite), VerifyOptions(use_cache=False), None)


@pytest.fixture(scope="module")
def in_process(reference):
    return [without_time(outcome) for outcome in reference]


def test_the_suite_on_ray_equals_the_suite_in_process(local_cluster, suite, in_process):
    outcomes = verify_on_ray(works(suite), VerifyOptions(use_cache=False), None, ClusterRequest(workers=2))
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [p.name for p in outcomes[3].report.prompt_sets] == ["incr_digits", "decr_digits"]
    assert sorted(c.prompt_set for c in outcomes[3].report.claims if "attends" in c.claim) == ["decr_digits", "incr_digits"]
    assert [without_time(o) for o in outcomes] == in_process


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_spec_run_again(local_cluster, suite, tmp_path):
    """The first worker to start the first spec is killed (SIGKILL) as soon as it says it started:
    Ray restarts it and runs the spec again. With a result cache each, the reports (the cache's
    counts too) and what the cache holds afterwards are those of the suite in one process: the
    killed attempt stored nothing and its retry read nothing of it. (Two specs that share no
    array: the shipped organism spec and the one on CSV prompts.)"""
    specs = [suite[0], suite[2]]
    alone = ResultCache(tmp_path / "alone", secret=b"k" * 32)
    expected = [without_time(o) for o in verify_in_process(works(specs), VerifyOptions(), alone)]
    starts: list[Event] = []

    def kill_the_first(event: Event) -> None:
        if event.index == 0 and event.line == STARTED:
            starts.append(event)
            if len(starts) == 1:
                os.kill(event.pid, signal.SIGKILL)

    spread = ResultCache(tmp_path / "spread", secret=b"k" * 32)
    outcomes = verify_on_ray(works(specs), VerifyOptions(), spread, ClusterRequest(workers=2), on_event=kill_the_first)
    assert len(starts) == 2 and starts[0].pid != starts[1].pid
    assert [without_time(o) for o in outcomes] == expected
    assert entries(spread) == entries(alone)


def entries(cache: ResultCache) -> dict[str, bytes]:
    """The cache's entries by name (the arrays; the records of the model's facts aside)."""
    return {path.name: path.read_bytes() for path in sorted(cache.root.rglob("*.f64"))}


@pytest.mark.slow
def test_the_workers_cache_entries_reach_the_shared_cache_once(local_cluster, suite, reference, tmp_path):
    """Workers read the user's cache and write nothing; this process stores what they computed. A
    second run on the cluster then computes nothing, and gives the same numbers."""
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    first = verify_on_ray(works(suite), VerifyOptions(), cache, ClusterRequest(workers=2))
    assert all(p.cache.misses > 0 for o in first for p in o.report.prompt_sets)
    again = verify_on_ray(works(suite), VerifyOptions(), cache, ClusterRequest(workers=2))
    assert all(p.cache.misses == 0 and p.cache.hits > 0 for o in again for p in o.report.prompt_sets)
    assert all(o.writes == [] for o in again)
    expected = [without_time(o, cache_counts=False) for o in reference]
    assert [without_time(o, cache_counts=False) for o in first] == expected
    assert [without_time(o, cache_counts=False) for o in again] == expected


def test_compare_on_ray_gives_the_transfer_matrix_of_one_process(local_cluster, suite, tmp_path):
    """`compare --ray`: each spec's columns a task; the same JSON as without."""
    from circuitlang.cli import main

    specs = [str(path) for path in suite[1:]]
    alone, spread = tmp_path / "alone.json", tmp_path / "spread.json"
    assert main(["compare", *specs, "--format", "json", "-o", str(alone)]) == 0
    assert main(["compare", *specs, "--format", "json", "-o", str(spread), "--ray", "--workers", "2"]) == 0
    assert json.loads(alone.read_text())["transfer"]["rows"]
    assert spread.read_text() == alone.read_text()


def test_discover_over_several_specs_on_ray_writes_what_one_process_writes(local_cluster, suite, tmp_path):
    """`discover A B --ray`: a search per spec; the same files (but the command in their header)."""
    from circuitlang.cli import main

    specs = [str(path) for path in suite[1:3]]
    search = ["--method", "prune", "--target", "0.8"]
    assert main(["discover", *specs, *search, "-o", str(tmp_path / "alone")]) in (0, 1)
    assert main(["discover", *specs, *search, "-o", str(tmp_path / "spread"), "--ray", "--workers", "2"]) in (0, 1)

    def written(folder: str) -> dict[str, str]:
        def without_command(text: str) -> str:
            return "".join(line for line in text.splitlines(True) if "Found by:" not in line)

        return {path.name: without_command(path.read_text()) for path in (tmp_path / folder).iterdir()}

    assert len(written("alone")) == 2 and written("spread") == written("alone")


def doubled(item: int, shelf, say) -> int:
    return 2 * item


@pytest.mark.slow
def test_more_workers_than_the_cluster_has_room_for_still_finish_the_work(local_cluster):
    """Three workers of one CPU asked of a cluster of 2 CPUs: two start, the third is given up
    after READY_TIMEOUT_S, and the work is done by the two (it used to wait forever)."""
    import sys

    import ray.cloudpickle

    from circuitlang.cluster.ray_map import ray_map

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)  # the workers need not import the tests
    lines: list[str] = []
    try:
        assert ray_map(doubled, [1, 2, 3, 4], ClusterRequest(workers=3), progress=lines.append) == [2, 4, 6, 8]
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
    assert "2 of 3 workers started: the cluster has no room for more" in lines
