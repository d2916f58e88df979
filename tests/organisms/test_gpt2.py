"""GPT-2 for real: the shipped GPT-2 specs on a stand-in with GPT-2's shapes and real tokenizer.

The stand-in (random weights) sits in the session's Hugging Face cache as the hub model `gpt2`,
so `on "gpt2"` goes through the loading code a researcher's run takes. Its numbers mean nothing;
what is tested is that every spec binds exactly as GPT-2 tokenizes, and that verification runs at
12 layers x 12 heads x 50,257 tokens to a finite number for every quantity and claim.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

import circuitlang
from circuitlang.data.datasets import expand_all
from circuitlang.ir import models as ir
from tests.conftest import GPT2_TOKENIZER_FILES, SPECS, fast_cases

GPT2_SPECS = sorted(p.name for p in SPECS.glob("*.circ") if circuitlang.load(p).model.name == "gpt2")
FEW_PROMPTS = 3


def test_the_shipped_tokenizer_files_are_openai_gpt2s():
    expected = {
        "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    }
    for name, digest in expected.items():
        assert hashlib.sha256((GPT2_TOKENIZER_FILES / name).read_bytes()).hexdigest() == digest
    assert "MIT License" in (GPT2_TOKENIZER_FILES / "README.md").read_text()


def test_gpt2_specs_are_the_four_published_ones():
    assert GPT2_SPECS == ["greater_than.circ", "incr_digits.circ", "incr_tasks.circ", "ioi.circ"]


@pytest.mark.slow
def test_gpt2_loads_from_the_hub_cache_with_gpt2s_shapes_and_tokens(gpt2_hub):
    run = circuitlang.open_run(circuitlang.load(SPECS / "incr_digits.circ"))
    cfg = run.model.bridge.cfg
    assert (run.model.identity.source, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_vocab) == ("hub", 12, 12, 768, 50257)
    assert run.model.tokenizer("When Mary and John went to the store", add_special_tokens=False)["input_ids"] == [
        2215,
        5335,
        290,
        1757,
        1816,
        284,
        262,
        3650,
    ]  # as OpenAI's tokenizer gives (the files' README)
    assert run.model.prepends_bos and run.model.tokenizer.bos_token_id == 50256


@pytest.mark.parametrize("name", fast_cases(GPT2_SPECS, ("incr_digits.circ",)))
def test_every_prompt_of_every_gpt2_spec_binds(gpt2_hub, name):
    spec = circuitlang.load(SPECS / name)
    run = circuitlang.open_run(spec)
    with_bos = spec.settings.prepend_bos != "false"  # ioi.circ: the reference code has no BOS
    for dataset in run.datasets:
        bound = run.bound[dataset.name]
        assert bound.n_prompts == len(dataset.clean)
        for template in bound.templates:
            assert template.clean[:, 0].eq(50256).all() == with_bos  # BOS, as TransformerLens prepends it
            assert template.positions["end"] == template.seq_len - 1


@pytest.mark.slow
@pytest.mark.parametrize("name", GPT2_SPECS)
def test_check_and_the_engine_tokenize_alike(gpt2_hub, name):
    """`check` reads tokenizer.json with `tokenizers`; the engine calls the loaded HF tokenizer."""
    from tokenizers import Tokenizer

    spec = circuitlang.load(SPECS / name)
    light = Tokenizer.from_file(str(gpt2_hub / "tokenizer.json"))
    run = circuitlang.open_run(spec)
    for dataset in expand_all(spec):
        for prompt in (*dataset.clean, *dataset.corrupt):
            full = run.model.tokenizer(prompt.text, add_special_tokens=False, return_offsets_mapping=True)
            encoding = light.encode(prompt.text, add_special_tokens=False)
            assert (list(full["input_ids"]), [tuple(o) for o in full["offset_mapping"]]) == (
                encoding.ids,
                [tuple(o) for o in encoding.offsets],
            ), prompt.label


@pytest.mark.slow
@pytest.mark.parametrize("name", GPT2_SPECS)
def test_every_gpt2_spec_verifies_end_to_end(gpt2_hub, name):
    from circuitlang.api import verify

    spec = _few_prompts(circuitlang.load(SPECS / name))
    report = verify(circuitlang.open_run(spec))
    assert [p.prompts for p in report.prompt_sets] == [FEW_PROMPTS] * len(spec.prompt_sets)
    assert {c.line for c in report.claims} == {e.span.line for e in spec.expectations} != set()  # each claim evaluated
    assert all(claim.value is not None for claim in report.claims), [c.claim for c in report.claims if c.value is None]
    assert all(math.isfinite(number) for number in _numbers(report.model_dump()))
    assert report.model["n_layers"] == 12 and report.model["source"] == "hub"


def _few_prompts(spec: ir.Spec) -> ir.Spec:
    """The spec on its first few prompts, with fewer completeness and minimality samples: every
    step of verification still runs, at a cost CI affords."""
    sets = tuple(p.model_copy(update={"count": FEW_PROMPTS}) for p in spec.prompt_sets)
    settings = spec.settings.model_copy(update={"completeness_samples": 2, "greedy_steps": 1, "minimality_samples": 1, "bootstrap": 50})
    return spec.model_copy(update={"prompt_sets": sets, "settings": settings})


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers(item)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


@pytest.mark.slow
def test_stand_in_is_rebuilt_identically(tmp_path: Path):
    """Same seed, same weights: numbers from the stand-in are reproducible run to run."""
    pytest.importorskip("transformers")
    from safetensors.torch import load_file

    from circuitlang.organisms.gpt2_standin import build_gpt2_standin

    first = load_file(build_gpt2_standin(tmp_path / "a", GPT2_TOKENIZER_FILES) / "model.safetensors")
    second = load_file(build_gpt2_standin(tmp_path / "b", GPT2_TOKENIZER_FILES) / "model.safetensors")
    assert first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)
