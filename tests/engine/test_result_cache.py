"""The result cache of `verify`: an identical re-run evaluates nothing, an edit evaluates only what
changed and gives the numbers a run without the cache gives, and the store on disk stays sound
(corrupt entries, concurrent writers, the size bound)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from circuitlang.cli import main
from circuitlang.engine.result_cache import CACHE_DIR_VARIABLE, FORMAT_VERSION, ResultCache, encode
from tests.conftest import ROOT, SPECS, fast_cases

ORGANISM = SPECS / "organism_incr_digits.circ"
WEIGHTS = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights"


# ---- helpers ---------------------------------------------------------------------------------------


class Forwards:
    """Counts what puts prompts through the model: engines built, variant runs, and forwards."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from circuitlang.engine.runner import Engine

        self.counts = {"engines": 0, "run": 0, "forward_from": 0}
        for name, method in (("engines", "__init__"), ("run", "run"), ("forward_from", "forward_from")):
            monkeypatch.setattr(Engine, method, self._counting(name, getattr(Engine, method)))

    def _counting(self, name: str, original):
        def counted(*args, **kwargs):
            self.counts[name] += 1
            return original(*args, **kwargs)

        return counted

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def run_verify(spec: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> dict:
    """`circuitlang verify` in this process with the cache in `cache_dir`; the JSON report."""
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(cache_dir))
    out = spec.with_name(f"{spec.stem}-{len(list(spec.parent.glob('*.json')))}.json")
    assert main(["verify", str(spec), "--format", "json", "-o", str(out), *extra]) in (0, 1)
    return json.loads(out.read_text())


def without_cache_fields(report: dict) -> str:
    """The report as bytes, less what may differ between two runs of the same spec: wall time and
    the cache's own counts."""
    report = dict(report, seconds=None)
    report["prompt_sets"] = [dict(p, cache=None) for p in report["prompt_sets"]]
    return json.dumps(report, sort_keys=True)


def prompt_sets_of(report: dict) -> str:
    return json.dumps([dict(p, cache=None) for p in report["prompt_sets"]], sort_keys=True)


def cache_use(report: dict) -> tuple[int, int]:
    return (sum(p["cache"]["hits"] for p in report["prompt_sets"]), sum(p["cache"]["misses"] for p in report["prompt_sets"]))


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.f64"))


def light_spec(folder: Path, model: str = "organism:seqcont") -> Path:
    """The organism's digit circuit with few sampled subsets and a short bootstrap: quick to verify."""
    text = ORGANISM.read_text().replace('on "organism:seqcont"', f'on "{model}"')
    path = folder / "light.circ"
    path.write_text(text + "\nset completeness_samples = 2\nset minimality_samples = 1\nset greedy_steps = 1\nset bootstrap = 100\n")
    return path


CSV_ROWS = "s1,s2,s3,s4,answer,wrong\n3,4,5,6,7,6\n10,11,12,13,14,13\n21,22,23,24,25,24\n"


def few_prompts_spec(folder: Path, kind: str) -> Path:
    """The organism's digit circuit on a few prompts, light settings, quick to verify: `small`
    (6 prompts of a loop, its mean ablation), `csv` (3 prompts read from a CSV file, `ablate zero`,
    no corruption) or `edges` (`small` with the declared edges, path-patched); only `edges` keeps
    the edge lines."""
    text = light_spec(folder).read_text().replace("for i in 1..95", "for i in 1..6")
    if kind == "csv":
        (folder / "rows.csv").write_text(CSV_ROWS)
        text = re.sub(r"  for i in .*?\n  }\n}\n", '  from "rows.csv"\n}\n', text, count=1, flags=re.S)
        text = text.replace("ablate mean of corrupt", "ablate zero")
    if kind != "edges":
        text = re.sub(r"^edge .*\n", "", text, flags=re.M)
    path = folder / f"{kind}.circ"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple[Path, dict, Path]:
    """A cache filled by one verify of the shipped organism spec (the audit included), its report,
    and the copy of the spec it verified."""
    folder = tmp_path_factory.mktemp("warm")
    spec = folder / ORGANISM.name
    shutil.copyfile(ORGANISM, spec)
    with pytest.MonkeyPatch.context() as monkeypatch:
        report = run_verify(spec, folder / "cache", monkeypatch)
    assert report["prompt_sets"][0]["audit"]["ran"]
    return folder / "cache", report, spec


def copy_of(warm_cache: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(warm_cache, copy)
    return copy


# ---- verify with the cache -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_first_run_misses_everything_and_stores_it(warm):
    cache_dir, report, _ = warm
    hits, misses = cache_use(report)
    assert hits == 0 and misses > 0 and report["prompt_sets"][0]["cache"]["enabled"]
    assert len(entries(cache_dir)) == misses


@pytest.mark.slow
def test_an_identical_run_reads_everything_and_evaluates_nothing(warm, tmp_path, monkeypatch):
    cache_dir, cold, spec = warm
    forwards = Forwards(monkeypatch)
    again = run_verify(spec, copy_of(cache_dir, tmp_path), monkeypatch)
    assert cache_use(again) == (cache_use(cold)[1], 0)
    assert forwards.total == 0, forwards.counts
    assert without_cache_fields(again) == without_cache_fields(cold)


@pytest.mark.slow
def test_editing_a_claim_threshold_or_the_bootstrap_evaluates_nothing(warm, tmp_path, monkeypatch):
    cache_dir, cold, _ = warm
    copy = copy_of(cache_dir, tmp_path)
    spec = tmp_path / ORGANISM.name
    spec.write_text(ORGANISM.read_text().replace("expect faithfulness >= 0.9", "expect faithfulness >= 0.95"))
    forwards = Forwards(monkeypatch)
    edited = run_verify(spec, copy, monkeypatch)
    assert cache_use(edited)[1] == 0 and forwards.total == 0
    assert edited["claims"][0]["threshold"] == 0.95
    assert prompt_sets_of(edited) == prompt_sets_of(cold)
    spec.write_text(ORGANISM.read_text() + "set bootstrap = 300\n")
    resampled = run_verify(spec, copy, monkeypatch)
    assert cache_use(resampled)[1] == 0 and forwards.total == 0


@pytest.mark.slow
def test_removing_a_node_evaluates_only_what_changed_and_gives_the_uncached_numbers(warm, tmp_path, monkeypatch):
    cache_dir, cold, _ = warm
    text = ORGANISM.read_text().replace(": 0.0, 0.2 q end", ": 0.0 q end").replace("edge 0.2 -> mlp 0", "")
    spec = tmp_path / ORGANISM.name
    spec.write_text(text)
    cached = run_verify(spec, copy_of(cache_dir, tmp_path), monkeypatch)
    assert [row["node"] for row in cached["prompt_sets"][0]["minimality"]] == ["0.0", "0.4", "mlp 0", "mlp 1", "mlp 2", "mlp 3"]
    hits, misses = cache_use(cached)
    assert hits > 0 and misses > 0
    assert misses < cache_use(cold)[1]
    fresh = run_verify(spec, tmp_path / "unused", monkeypatch, "--no-cache")
    assert without_cache_fields(cached) == without_cache_fields(fresh)


@pytest.mark.parametrize("kind", fast_cases(["small", "csv", "edges"], ("small",)))
def test_a_report_from_the_cache_wholly_or_in_part_is_the_uncached_report(kind, tmp_path, monkeypatch):
    """Byte for byte. In part, the variants left to compute are run without those the cache had
    (other batch companions, batches of other sizes): none of that may reach a number."""
    spec = few_prompts_spec(tmp_path, kind)
    fresh = run_verify(spec, tmp_path / "unused", monkeypatch, "--no-audit", "--no-cache")
    edited = tmp_path / "edited.circ"  # the circuit without 0.2: its variants are part of the spec's
    edited.write_text(spec.read_text().replace(": 0.0, 0.2 q end", ": 0.0 q end").replace("edge 0.2 -> mlp 0", ""))
    run_verify(edited, tmp_path / "cache", monkeypatch, "--no-audit")
    partly = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    wholly = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    assert min(cache_use(partly)) > 0 and cache_use(wholly)[1] == 0
    assert without_cache_fields(partly) == without_cache_fields(fresh)
    assert without_cache_fields(wholly) == without_cache_fields(fresh)


@pytest.mark.slow
def test_the_rows_a_forward_takes_are_keyed_where_they_split_a_template(tmp_path, monkeypatch):
    """A batch size that splits the 6 prompts into other chunks (whose means and matrix shapes can
    round differently) reads nothing; one that leaves them one chunk reads everything."""
    spec = few_prompts_spec(tmp_path, "small")
    text = spec.read_text()
    cold = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    spec.write_text(text + "set batch_size = 100\n")
    assert cache_use(run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")) == (cache_use(cold)[1], 0)
    spec.write_text(text + "set batch_size = 4\n")
    split = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    assert cache_use(split) == (0, cache_use(cold)[1])
    fresh = run_verify(spec, tmp_path / "unused", monkeypatch, "--no-audit", "--no-cache")
    assert without_cache_fields(split) == without_cache_fields(fresh)


@pytest.mark.slow
def test_a_corrupt_entry_is_a_miss_and_is_repaired(warm, tmp_path, monkeypatch):
    cache_dir, cold, spec = warm
    copy = copy_of(cache_dir, tmp_path)
    flipped, truncated = entries(copy)[:2]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:20])
    repaired = run_verify(spec, copy, monkeypatch)
    assert cache_use(repaired)[1] == 2
    assert without_cache_fields(repaired) == without_cache_fields(cold)
    assert cache_use(run_verify(spec, copy, monkeypatch))[1] == 0


@pytest.mark.slow
def test_other_weights_under_the_same_name_miss(tmp_path, monkeypatch):
    """Two folders named alike in their specs: the same weights share every entry, weights that
    differ in one number share none."""
    import safetensors.numpy

    cache_dir = tmp_path / "cache"
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        shutil.copytree(WEIGHTS, folder / "model")
    cold = run_verify(light_spec(first, "./model"), cache_dir, monkeypatch, "--no-audit")
    same = run_verify(light_spec(second, "./model"), cache_dir, monkeypatch, "--no-audit")
    assert cache_use(same) == (cache_use(cold)[1], 0)

    weights = second / "model" / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(weights))
    name = next(n for n in sorted(tensors) if n.endswith("ln_f.bias"))
    tensors[name] = tensors[name].copy()
    tensors[name][0] += 1e-3
    safetensors.numpy.save_file(tensors, str(weights), metadata={"format": "pt"})
    perturbed = run_verify(light_spec(second, "./model"), cache_dir, monkeypatch, "--no-audit")
    assert cache_use(perturbed) == (0, cache_use(cold)[1])


@pytest.mark.slow
def test_edited_engine_code_misses(tmp_path, monkeypatch):
    from circuitlang.engine import result_cache

    spec = light_spec(tmp_path)
    cold = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    monkeypatch.setattr(result_cache, "_CODE_DIGEST", "the engine as edited")
    edited = run_verify(spec, tmp_path / "cache", monkeypatch, "--no-audit")
    assert cache_use(edited) == (0, cache_use(cold)[1])


@pytest.mark.slow
def test_no_cache_neither_reads_nor_writes(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    report = run_verify(light_spec(tmp_path), cache_dir, monkeypatch, "--no-audit", "--no-cache")
    assert not cache_dir.exists()
    [prompt_set] = report["prompt_sets"]
    assert prompt_set["cache"]["enabled"] is False and prompt_set["cache"]["hits"] == 0


@pytest.mark.slow
def test_the_table_says_how_much_came_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path / "cache"))
    spec = light_spec(tmp_path)
    main(["verify", str(spec), "--no-audit"])
    main(["verify", str(spec), "--no-audit"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "result cache" in line]
    assert len(lines) == 2 and "0 of" in lines[0] and " 0 computed" in lines[1]


def test_old_reports_without_the_field_still_validate():
    from circuitlang.results.report import PromptSetReport

    fields = {"name", "prompts", "metric", "faithfulness", "completeness", "minimality", "node_scores", "variants_evaluated"}
    assert "cache" not in {n for n, f in PromptSetReport.model_fields.items() if f.is_required()}
    assert fields <= {n for n, f in PromptSetReport.model_fields.items() if f.is_required()}


# ---- the store -------------------------------------------------------------------------------------


def key(number: int) -> bytes:
    return hashlib.sha256(str(number).encode()).digest()


def test_an_entry_round_trips_and_a_wrong_length_is_a_miss(tmp_path):
    cache = ResultCache(tmp_path)
    values = np.linspace(-1, 1, 7)
    cache.put(key(1), values)
    assert np.array_equal(cache.get(key(1), 7), values)
    assert cache.get(key(1), 8) is None and cache.get(key(2), 7) is None


def test_entries_are_written_by_the_one_atomic_writer_and_stay_private(tmp_path):
    """The cache writes with report.files' atomic writer (temporary file, then rename), its entries
    and ledger readable by their owner only, whatever the umask."""
    import circuitlang.engine.result_cache as result_cache
    from circuitlang.report.files import write_then_rename

    assert result_cache.write_then_rename is write_then_rename
    umask = os.umask(0o022)
    try:
        cache = ResultCache(tmp_path)
        cache.put(key(1), np.ones(3))
        cache.trim()
    finally:
        os.umask(umask)
    written = [cache.path_of(key(1)), tmp_path / f"v{FORMAT_VERSION}" / "usage"]
    assert [oct(os.stat(path).st_mode & 0o777) for path in written] == [oct(0o600)] * 2
    assert not list(tmp_path.rglob(".*.tmp"))


def test_an_entry_filed_under_another_key_is_a_miss(tmp_path):
    cache = ResultCache(tmp_path)
    cache.put(key(1), np.ones(3))
    cache.path_of(key(2)).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache.path_of(key(1)), cache.path_of(key(2)))
    assert cache.get(key(2), 3) is None


def test_the_encoding_keeps_types_and_boundaries_apart():
    assert len({encode(v) for v in [1, 1.0, True, "1", b"1", (1,), None, ("a", "b"), ("ab",), ("a", "", "b")]}) == 10
    assert encode((1, 2)) == encode([1, 2])  # a sequence is a sequence
    assert encode({"b": 1, "a": 2}) == encode({"a": 2, "b": 1})
    assert encode(np.zeros(2, np.int64)) != encode(np.zeros(2, np.int32))
    assert encode(np.zeros((2, 1))) != encode(np.zeros((1, 2)))
    with pytest.raises(TypeError):
        encode(object())


def test_the_size_bound_evicts_the_least_recently_used(tmp_path):
    cache = ResultCache(tmp_path, limit_bytes=1)
    cache.put(key(0), np.zeros(100))
    one_entry = cache.usage()
    cache = ResultCache(tmp_path, limit_bytes=int(5.5 * one_entry))
    for number in range(1, 10):
        cache.put(key(number), np.full(100, float(number)))
    for number in range(10):
        os.utime(cache.path_of(key(number)), (1_000_000 + number, 1_000_000 + number))
    assert cache.get(key(0), 100) is not None  # read now: the most recently used
    cache.trim()
    assert cache.usage() <= 5.5 * one_entry
    assert cache.get(key(0), 100) is not None and cache.get(key(9), 100) is not None
    assert cache.get(key(1), 100) is None


def test_a_trim_under_the_limit_reads_the_ledger_instead_of_listing_the_folder(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path)
    cache.put(key(1), np.ones(3))
    cache.trim()  # no ledger yet: the folder is listed once, and its size recorded
    monkeypatch.setattr(ResultCache, "_entries", lambda self: pytest.fail("the folder was listed"))
    cache.put(key(2), np.ones(3))
    cache.trim()
    assert cache.get(key(1), 3) is not None and cache.get(key(2), 3) is not None


def test_the_limit_is_read_from_the_environment(monkeypatch):
    from circuitlang.engine.result_cache import DEFAULT_LIMIT_BYTES, LIMIT_VARIABLE, limit_from_environment

    for text, limit in [
        ("2G", 2 << 30),
        ("500M", 500 << 20),
        ("1234", 1234),
        ("64 KiB", 64 << 10),
        ("lots", DEFAULT_LIMIT_BYTES),
        ("", DEFAULT_LIMIT_BYTES),
    ]:
        monkeypatch.setenv(LIMIT_VARIABLE, text)
        assert limit_from_environment() == limit, text


CONCURRENT_WRITER = """
import hashlib
import sys
import numpy as np
from pathlib import Path
from circuitlang.engine.result_cache import ResultCache

def key(number):
    return hashlib.sha256(str(number).encode()).digest()

cache = ResultCache(Path(sys.argv[1]), limit_bytes=int(sys.argv[2]))
wrong = 0
for _ in range(3):
    for number in range(300):
        got = cache.get(key(number), 50)
        wrong += got is not None and not np.array_equal(got, np.arange(50.0) + number)
        cache.put(key(number), np.arange(50.0) + number)
    cache.trim()
print(wrong)
"""


@pytest.mark.slow
def test_two_processes_writing_one_cache_do_not_corrupt_it(tmp_path):
    """Both write the same entries, read them and evict (the bound holds about 100 of 300):
    a read gives the right values or nothing, and every entry left reads back whole."""
    probe = ResultCache(tmp_path / "probe")
    probe.put(key(0), np.zeros(50))
    limit = 100 * probe.usage()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path / "cache"), str(limit)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err[-2000:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["0", "0"]
    cache = ResultCache(tmp_path / "cache")
    left = [number for number in range(300) if cache.get(key(number), 50) is not None]
    assert left and all(np.array_equal(cache.get(key(n), 50), np.arange(50.0) + n) for n in left)
    assert len(entries(tmp_path / "cache")) == len(left)
    assert not list((tmp_path / "cache").rglob(".*.tmp"))  # no temporary file left behind


def test_the_cache_lives_where_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path / "here"))
    assert ResultCache.from_environment().root == tmp_path / "here"
    monkeypatch.delenv(CACHE_DIR_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ResultCache.from_environment().root == tmp_path / "xdg" / "circuitlang"


def test_the_test_session_never_writes_to_the_home_cache():
    assert os.environ[CACHE_DIR_VARIABLE] and not Path(os.environ[CACHE_DIR_VARIABLE]).is_relative_to(Path.home() / ".cache")
