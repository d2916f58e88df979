"""A verify whose every array is in the result cache answers without the model: no load, no torch,
the same report; new bytes in the model's files are noticed, and a forged record only costs a load."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from circuitlang.engine import model_record
from circuitlang.engine.result_cache import CACHE_DIR_VARIABLE, ResultCache
from tests.conftest import ROOT
from tests.engine.test_result_cache import WEIGHTS, cache_use, few_prompts_spec, run_verify, without_cache_fields


class Loads:
    """Counts model loads (engine.models.load_model), or makes each one fail."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        from circuitlang.engine import models

        original, self.count = models.load_model, 0

        def load(*args, **kwargs):
            self.count += 1
            if fail:
                raise AssertionError("the model was loaded")
            return original(*args, **kwargs)

        monkeypatch.setattr(models, "load_model", load)


def local_spec(tmp_path: Path) -> Path:
    """`few_prompts_spec` on a copy of the organism's folder, `on "./model"`."""
    shutil.copytree(WEIGHTS, tmp_path / "model")
    spec = few_prompts_spec(tmp_path, "small")
    spec.write_text(spec.read_text().replace('on "organism:seqcont"', 'on "./model"'))
    return spec


def rewrite_in_place(path: Path) -> None:
    """New bytes in the weights file, the same size, the modification time put back: only the
    change time (which no program can set) tells."""
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor's data
    with open(path, "r+b") as file:
        file.write(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns


@pytest.mark.slow
def test_a_fully_cached_verify_loads_no_model_and_gives_the_same_report(tmp_path, monkeypatch):
    spec = few_prompts_spec(tmp_path, "small")
    cold = run_verify(spec, tmp_path / "cache", monkeypatch)
    Loads(monkeypatch, fail=True)
    warm = run_verify(spec, tmp_path / "cache", monkeypatch)
    assert cache_use(warm) == (cache_use(cold)[1], 0)
    assert without_cache_fields(warm) == without_cache_fields(cold)  # byte for byte, but for timings and the cache's counts


@pytest.mark.slow
def test_a_fully_cached_verify_imports_no_torch(tmp_path):
    spec = few_prompts_spec(tmp_path, "small")
    environment = dict(os.environ, **{CACHE_DIR_VARIABLE: str(tmp_path / "cache")})
    program = (
        "import sys; from circuitlang.cli import main; "
        f"code = main(['verify', {str(spec)!r}, '--format', 'json', '-o', {str(tmp_path / 'out.json')!r}]); "
        "print(code, sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))"
    )
    runs = [subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=environment, cwd=ROOT) for _ in range(2)]
    code = runs[0].stdout.split()[0]  # 1: this light spec fails a claim
    assert code in ("0", "1") and runs[0].stdout.split()[-1] != "[]", runs[0].stderr  # the first run loads the model
    assert runs[1].stdout.strip() == f"{code} []", runs[1].stderr


@pytest.mark.slow
def test_new_bytes_in_the_weights_are_noticed_and_the_model_loaded(tmp_path, monkeypatch):
    spec = local_spec(tmp_path)
    cold = run_verify(spec, tmp_path / "cache", monkeypatch)
    loads = Loads(monkeypatch)
    assert cache_use(run_verify(spec, tmp_path / "cache", monkeypatch)) == (cache_use(cold)[1], 0) and loads.count == 0
    rewrite_in_place(tmp_path / "model" / "model.safetensors")
    edited = run_verify(spec, tmp_path / "cache", monkeypatch)
    assert loads.count == 1 and cache_use(edited) == (0, cache_use(cold)[1])
    assert edited["model"]["weights_sha256"] != cold["model"]["weights_sha256"]


@pytest.mark.slow
def test_a_hashes_record_forged_without_the_key_is_not_read(tmp_path, monkeypatch):
    """Whoever can write the cache folder but lacks the secret writes a record saying the edited
    weights file holds the old bytes: it is not read, and the run reports the edited weights. The
    same record under the user's secret would mislead: what keeps the old arrays out is the key."""
    spec = local_spec(tmp_path)
    cold = run_verify(spec, tmp_path / "cache", monkeypatch)
    import circuitlang

    model = circuitlang.load(spec).model
    old_hash = model_record._file_sha256(tmp_path / "model" / "model.safetensors")
    rewrite_in_place(tmp_path / "model" / "model.safetensors")
    edited = run_verify(spec, tmp_path / "cache", monkeypatch)
    assert edited["model"]["weights_sha256"] != cold["model"]["weights_sha256"]

    def forge(secret: bytes | None) -> dict:
        folder = tmp_path / "model"
        files = {
            name: [list(model_record.fingerprint_of(folder / name)), model_record._file_sha256(folder / name)] for name in os.listdir(folder)
        }
        files["model.safetensors"][1] = old_hash
        payload = json.dumps({"folder": str(folder.resolve()), "files": files}).encode()
        ResultCache(tmp_path / "cache", secret=secret).put_record(model_record._hashes_key(folder), payload)
        return run_verify(spec, tmp_path / "cache", monkeypatch)

    assert forge(b"not the user's secret")["model"]["weights_sha256"] == edited["model"]["weights_sha256"]
    assert forge(None)["model"]["weights_sha256"] == cold["model"]["weights_sha256"]  # the control: signed, it is believed
    assert model.path is not None


def test_a_folder_is_hashed_once_and_again_when_a_file_changes(tmp_path, monkeypatch):
    shutil.copytree(WEIGHTS, tmp_path / "model")
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    spec_text = few_prompts_spec(tmp_path, "small").read_text().replace('on "organism:seqcont"', 'on "./model"')
    (tmp_path / "model.circ").write_text(spec_text)
    import circuitlang

    model = circuitlang.load(tmp_path / "model.circ").model
    monkeypatch.setattr(model_record, "RACY_S", 0.0)  # files just copied are remembered
    hashed: list[str] = []
    original = model_record._file_sha256
    monkeypatch.setattr(model_record, "_file_sha256", lambda path: hashed.append(path.name) or original(path))
    first = model_record.folder_digest(cache, model)
    assert "model.safetensors" in hashed
    hashed.clear()
    assert model_record.folder_digest(cache, model) == first and hashed == []
    rewrite_in_place(tmp_path / "model" / "model.safetensors")
    assert model_record.folder_digest(cache, model) != first and hashed == ["model.safetensors"]


def test_a_file_written_just_now_is_hashed_again(tmp_path, monkeypatch):
    """File times tick coarsely: a hash of a file changed within the last tick is not remembered."""
    shutil.copytree(WEIGHTS, tmp_path / "model")
    (tmp_path / "model.circ").write_text(re.sub(r'on "[^"]+"', 'on "./model"', few_prompts_spec(tmp_path, "small").read_text(), count=1))
    import circuitlang

    model = circuitlang.load(tmp_path / "model.circ").model
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    hashed: list[str] = []
    original = model_record._file_sha256
    monkeypatch.setattr(model_record, "_file_sha256", lambda path: hashed.append(path.name) or original(path))
    model_record.folder_digest(cache, model)
    model_record.folder_digest(cache, model)
    assert hashed.count("model.safetensors") == 2


def test_the_facts_survive_their_record(tmp_path):
    from circuitlang.engine.family import Family

    family = Family("GPT2LMHeadModel", 4, 8, 8, 128, 16, False, False, False)
    identity = model_record.ModelIdentity("organism:seqcont", "organism", "ab" * 32, 4, 8, 128)
    facts = model_record.ModelFacts(identity, family, "{}", "{}", None, True, "torch.float32", "float32", "cpu", None, 512, 100, 64, 1000)
    cache = ResultCache(tmp_path / "cache", secret=b"k" * 32)
    model_record.remember(cache, b"\x01" * 32, facts)
    assert model_record.recall(cache, b"\x01" * 32) == facts
    assert model_record.recall(ResultCache(tmp_path / "cache", secret=b"j" * 32), b"\x01" * 32) is None
    assert json.loads(facts.to_json())["family"]["n_heads"] == 8
