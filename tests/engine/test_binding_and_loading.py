"""Binding prompts to a tokenizer, and loading models offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import circuitlang
from circuitlang.errors import DataError, ModelError, SpecErrors
from circuitlang.organisms.tiny import build_random_gpt2

WORDS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "Mary", "John", "gave", "to", "it"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bind")
    build_random_gpt2(root / "tiny", WORDS, n_layers=2, n_heads=2, d_model=16)
    return root


def spec_at(folder: Path, body: str, name: str = "s.circ"):
    path = folder / name
    path.write_text('circuitlang 1\ncircuit t on "./tiny"\n' + body + "\nmetric logit_diff(answer, wrong)\nablate zero\n")
    return circuitlang.load(path)


def test_positions_come_from_the_template_with_bos(folder):
    spec = spec_at(folder, 'prompts p { template "{a} {b} {c} {d}"; a = 1; b = 2; c = 3; d = 3; answer = 4; wrong = 3 }')
    run = circuitlang.open_run(spec)
    (template,) = run.bound["p"].templates
    assert template.positions == {"bos": 0, "end": 4, "a": 1, "b": 2, "c": 3, "d": 4}
    assert template.clean[0, 3] == template.clean[0, 4]  # the repeated number: two tokens, two positions


def test_multi_token_answer_is_an_error_naming_the_prompt(folder):
    spec = spec_at(
        folder, 'prompts p { template "{a} {b}"; for i in 1..2; a = i; b = i + 1; answer = "Mary John"; wrong = 1 }', name="multi.circ"
    )
    with pytest.raises(DataError, match=r"prompt #0 of p \(i=1\): answer ' Mary John' \(answer\) is 2 tokens"):
        circuitlang.open_run(spec)


def test_prompts_of_one_template_with_different_lengths_are_an_error(folder):
    spec = spec_at(
        folder,
        'list who = ["Mary", "Mary John"]\nprompts p { template "{a} gave it"; for i in 1..2; a = who[i - 1]; answer = 1; wrong = 2 }',
        name="len.circ",
    )
    with pytest.raises(
        DataError,
        match=r"prompt #1 of p \(i=2\): 'Mary John gave it' is 5 tokens, but prompt #0 "
        r"of p \(i=1\) \('Mary gave it'\) of the same template is 4",
    ):
        circuitlang.open_run(spec)


def test_corrupt_prompt_that_moves_a_slot_is_an_error(folder):
    spec = spec_at(
        folder,
        'prompts p { template "{a} {b} to"; a = "Mary John"; b = "gave"; answer = 1; wrong = 2\ncorrupt random { a = "Mary"; b = "gave it" } }',
        name="move.circ",
    )
    with pytest.raises(
        DataError,
        match=r"corrupt prompt #0 of p: slot 'a' is token 1 in 'Mary gave it to', "
        r"but token 2 in 'Mary John gave to'",
    ):
        circuitlang.open_run(spec)


def test_several_prompt_sets_report_all_binding_errors(folder):
    spec = spec_at(
        folder,
        'prompts p { template "{a}"; a = 1; answer = "1 2"; wrong = 1 }\nprompts q { template "{a}"; a = 1; answer = "2 3"; wrong = 1 }',
        name="two.circ",
    )
    with pytest.raises(SpecErrors) as caught:
        circuitlang.open_run(spec)
    assert len(caught.value.errors) == 2


def test_identity_records_name_and_weights_hash(folder, tmp_path):
    spec = spec_at(folder, 'prompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }', name="id.circ")
    first, second = circuitlang.open_run(spec), circuitlang.open_run(spec)
    assert first.model.identity == second.model.identity
    assert first.model.identity.name == "./tiny" and len(first.model.identity.weights_sha256) == 64
    build_random_gpt2(tmp_path / "tiny", WORDS, n_layers=2, n_heads=2, d_model=16, seed=5)
    other = tmp_path / "id.circ"
    other.write_text((folder / "id.circ").read_text())
    assert circuitlang.open_run(circuitlang.load(other)).model.identity.weights_sha256 != first.model.identity.weights_sha256


def test_hub_model_offline_fails_fast_with_a_way_forward(folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at load time too, not only when huggingface_hub is imported
    path = folder / "hub.circ"  # distilgpt2: a hub model the tests' Hugging Face cache never holds
    path.write_text(
        'circuitlang 1\ncircuit t on "distilgpt2"\nprompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }\n'
        "metric logit_diff(answer, wrong)\nablate zero\n"
    )
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        circuitlang.open_run(circuitlang.load(path))
    assert time.monotonic() - started < 5
    assert "'distilgpt2' is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set" in caught.value.message
    assert 'on "./models/distilgpt2"' in caught.value.hint and "run once with network" in caught.value.hint
    assert caught.value.span is not None and caught.value.span.line == 2


def test_cuda_without_a_gpu_is_a_clear_error(folder):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = spec_at(folder, 'prompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }', name="cuda.circ")
    with pytest.raises(ModelError, match="torch sees no CUDA device"):
        circuitlang.open_run(spec, device="cuda")


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_a_model_file_that_is_not_a_regular_file_is_refused_before_loading(tmp_path, kind):
    """tokenizer.json as a FIFO would block the load forever; as a link to /dev/zero it would be
    read until memory runs out."""
    import os

    build_random_gpt2(tmp_path / "tiny", WORDS, n_layers=2, n_heads=2, d_model=16)
    tokenizer = tmp_path / "tiny" / "tokenizer.json"
    tokenizer.unlink()
    if kind == "fifo":
        os.mkfifo(tokenizer)
    else:
        tokenizer.symlink_to("/dev/zero")
    spec = spec_at(tmp_path, 'prompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }', name="fifo.circ")
    why = "tokenizer.json is not a regular file" if kind == "fifo" else "tokenizer.json is a link to /dev/zero, outside"
    with pytest.raises(ModelError, match=why):
        circuitlang.open_run(spec)
