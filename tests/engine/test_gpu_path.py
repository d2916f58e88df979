"""The GPU path's choices, checked without a GPU (benchmarks/gpu.sh runs the engine on one)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from circuitlang.engine import session as session_module
from tests.conftest import SPECS

GIB = 2**30


def fake_model(device: str) -> SimpleNamespace:
    """GPT-2 small's facts as a load records them (engine.model_record.ModelFacts), on `device`."""
    from circuitlang.ir.models import ModelShape

    family = SimpleNamespace(n_layers=12, n_heads=12, n_kv_heads=12, parallel_attn_mlp=False, d_model=768)  # the shape's one source
    shape = ModelShape(n_layers=12, n_heads=12, origin="the loaded model")
    return SimpleNamespace(
        device=device, device_type=device.split(":")[0], dtype="float32", family=family, shape=shape, d_mlp=3072, d_vocab=50257, n_ctx=1024
    )


def bound_sets(tokens: int, prompts: int = 20) -> list:
    return [SimpleNamespace(templates=[SimpleNamespace(seq_len=tokens, n_prompts=prompts)])]


@pytest.fixture
def spec():
    import circuitlang

    return circuitlang.load(SPECS / "organism_incr_digits.circ")


def test_on_a_gpu_the_batch_follows_its_free_memory(spec, monkeypatch):
    per_row = 6 * 12 * (6 * 768 + 3072) * 4  # bytes of one row's transients, as the session counts them
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * GIB, 80 * GIB))
    assert session_module._batch_size(spec, fake_model("cuda"), bound_sets(6)) == 8 * GIB // 4 // per_row
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000 * GIB, 1000 * GIB))
    assert session_module._batch_size(spec, fake_model("cuda"), bound_sets(6)) == session_module.MAX_GPU_BATCH
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (GIB // 100, 80 * GIB))
    assert session_module._batch_size(spec, fake_model("cuda"), bound_sets(6)) == spec.settings.batch_size


def test_the_cpu_batch_ignores_the_gpu_and_a_set_batch_size_is_left_alone(spec, tmp_path, monkeypatch):
    import circuitlang
    from circuitlang.compile.memory import ModelSize, cpu_batch_size

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * GIB, 80 * GIB))
    gpt2 = ModelSize(12, 12, 768, 3072, 50257, 1024, tied=False)
    for prompts in (20, 40, 95):
        chosen = session_module._batch_size(spec, fake_model("cpu"), bound_sets(6, prompts))
        assert chosen == cpu_batch_size(gpt2, prompts * 6, 6)
    written = tmp_path / "batch.circ"
    written.write_text((SPECS / "organism_incr_digits.circ").read_text() + "set batch_size = 32\n")
    assert session_module._batch_size(circuitlang.load(written), fake_model("cuda"), bound_sets(6)) == 32


@pytest.mark.slow
def test_half_precision_halves_the_estimate_and_moves_the_numbers_only_slightly(capsys):
    import json

    from circuitlang.cli import main
    from circuitlang.compile.memory import spec_memory
    from circuitlang.data.datasets import expand_all
    from circuitlang.ir.lower import load_spec

    spec = load_spec(SPECS / "organism_incr_digits.circ")
    full, half = spec_memory(spec, expand_all(spec)), spec_memory(spec, expand_all(spec), bytes_per_float=2)
    assert (half.model, half.caches, half.largest_pass) == (full.model // 2, full.caches // 2, full.largest_pass // 2)
    reports = {}
    for dtype in ("float32", "float16"):
        assert main(["verify", str(SPECS / "organism_incr_digits.circ"), "--dtype", dtype, "--no-cache", "--no-audit", "--format", "json"]) == 0
        reports[dtype] = json.loads(capsys.readouterr().out)["prompt_sets"][0]
    single, halved = (reports[d]["faithfulness"]["faithfulness"]["value"] for d in ("float32", "float16"))
    assert single != halved and abs(single - halved) < 1e-3  # it ran in half precision, and stayed close
    assert reports["float16"]["faithfulness"]["f_model"]["value"] == pytest.approx(
        reports["float32"]["faithfulness"]["f_model"]["value"], rel=1e-3
    )
