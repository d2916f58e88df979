"""The result cache's trust boundary (docs/verify.md, "Result cache", "Trust"): a verdict never
rests on bytes this user's runs did not write. Forged entries, entries written under another key,
a folder others may write, a key file others may read, and links planted in the folder."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from circuitlang.engine.result_cache import FORMAT_VERSION, KEY_VARIABLE, ResultCache, key_path
from tests.engine.test_result_cache import cache_use, few_prompts_spec, run_verify

KEY = hashlib.sha256(b"a request").digest()
HEADER = struct.Struct("<4sI32sQ")


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.f64"))


def forge(path: Path, value: float, checksum) -> None:
    """Rewrite an entry's values as `value`, the header kept, with `checksum(body)` appended."""
    data = path.read_bytes()
    count = HEADER.unpack_from(data)[3]
    body = data[: HEADER.size] + np.full(count, value, dtype="<f8").tobytes()
    path.write_bytes(body + checksum(body))


def failing_spec(tmp_path: Path) -> Path:
    """Six prompts of the organism's digit circuit with a claim it fails (faithfulness about 0.9)."""
    path = few_prompts_spec(tmp_path, "small")
    path.write_text(path.read_text() + "\nexpect faithfulness >= 0.99\n")
    return path


def test_a_forged_entry_is_a_miss_and_the_verdict_stands(tmp_path: Path, monkeypatch) -> None:
    """Every array set to one constant would make F(C) = F(M), faithfulness 1: the failing claim
    would pass. With a checksum anyone can compute (SHA-256), the entries are forged; with the
    cache's HMAC they are misses, computed again, and the claim still fails."""
    spec, cache_dir = failing_spec(tmp_path), tmp_path / "cache"
    cold = run_verify(spec, cache_dir, monkeypatch)
    assert not cold["passed"]
    for path in entries(cache_dir):
        forge(path, 3.0, lambda body: hashlib.sha256(body).digest())
    again = run_verify(spec, cache_dir, monkeypatch)
    assert not again["passed"] and cache_use(again) == (0, cache_use(cold)[1])
    assert again["prompt_sets"][0]["faithfulness"] == cold["prompt_sets"][0]["faithfulness"]


def test_entries_written_under_another_key_are_misses(tmp_path: Path, monkeypatch) -> None:
    """A cache restored from a run that did not hold the key (a fork's pull request in CI)."""
    spec, cache_dir = failing_spec(tmp_path), tmp_path / "cache"
    monkeypatch.setenv(KEY_VARIABLE, "the fork's own key")
    cold = run_verify(spec, cache_dir, monkeypatch)
    monkeypatch.setenv(KEY_VARIABLE, "the trusted run's secret")
    again = run_verify(spec, cache_dir, monkeypatch)
    assert cache_use(again) == (0, cache_use(cold)[1])
    assert cache_use(run_verify(spec, cache_dir, monkeypatch))[1] == 0  # rewritten under the secret: read back


def test_a_cache_folder_others_may_write_is_not_used(tmp_path: Path, monkeypatch) -> None:
    cache_dir = tmp_path / "shared"
    cache_dir.mkdir()
    cache_dir.chmod(0o777)
    report = run_verify(failing_spec(tmp_path), cache_dir, monkeypatch)
    use = report["prompt_sets"][0]["cache"]
    assert not use["enabled"] and "others may write the cache folder" in use["refused"]
    assert entries(cache_dir) == []


def test_the_key_file_is_made_private_and_one_others_may_read_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cache = ResultCache(tmp_path / "cache")
    assert cache.refused is None and os.stat(key_path()).st_mode & 0o777 == 0o600
    cache.put(KEY, np.arange(3.0))
    assert ResultCache(tmp_path / "cache").get(KEY, 3) is not None  # the same key file: the same secret
    key_path().chmod(0o644)
    refused = ResultCache(tmp_path / "cache")
    assert "key file" in (refused.refused or "") and refused.get(KEY, 3) is None


def test_an_entry_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    """A link to /dev/zero would be read until memory runs out; a link to a valid entry elsewhere
    is not this folder's entry either."""
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    path = cache.path_of(KEY)
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/zero")
    assert cache.get(KEY, 1 << 20) is None
    other = ResultCache(tmp_path / "other", secret=b"k" * 32)
    other.put(KEY, np.arange(4.0))
    path.unlink()
    path.symlink_to(other.path_of(KEY))
    assert cache.get(KEY, 4) is None


def test_eviction_never_follows_a_link(tmp_path: Path) -> None:
    """A link planted in the cache (`v2/zz -> elsewhere`) must not make trim() delete what lies behind it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    precious = elsewhere / ("ab" * 32 + ".f64")
    precious.write_bytes(b"x" * 10_000)
    cache = ResultCache(tmp_path / "cache", limit_bytes=1, secret=b"k" * 32)
    cache.put(KEY, np.arange(8.0))
    (tmp_path / "cache" / f"v{FORMAT_VERSION}" / "zz").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "cache" / f"v{FORMAT_VERSION}" / KEY.hex()[:2] / "link.f64").symlink_to(precious)
    cache.trim()
    assert precious.exists() and precious.stat().st_size == 10_000
    assert not cache.path_of(KEY).exists()  # the cache's own entry was evicted


@pytest.mark.parametrize("ledger", ["/dev/zero", "fifo"])
def test_a_ledger_that_is_not_a_file_is_ignored(tmp_path: Path, ledger: str) -> None:
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    cache.put(KEY, np.arange(2.0))
    path = tmp_path / "cache" / f"v{FORMAT_VERSION}" / "usage"
    if ledger == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(ledger)
    cache.trim()  # would block on the FIFO or read /dev/zero without end
    assert cache.get(KEY, 2) is not None
