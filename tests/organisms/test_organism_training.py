"""The seqcont organism: its tokenizer, its training script (smoke and reproducibility) and the
shipped weights (held-out accuracy, and loading through circuitlang as `organism:seqcont`)."""

from __future__ import annotations

import itertools
import json
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from circuitlang.ir.stdlib import MONTHS, NAMES, NUMBER_WORDS
from circuitlang.organisms.seqcont import WEIGHTS, tasks
from circuitlang.organisms.seqcont.tokenizer import (
    BOS,
    UNK,
    build_tokenizer,
    task_words,
)
from circuitlang.organisms.seqcont.train import TrainConfig, main, train

torch.set_num_threads(1)
TINY = {"batch_size": 12, "n_layer": 1, "n_head": 2, "d_model": 16, "n_positions": 32, "warmup": 2, "log_every": 0, "eval_every": 0}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def pieces(tokenizer, text: str) -> list[str]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode([i]) for i in ids]


# ---- tokenizer ----


def test_years_split_into_century_and_year(tokenizer):
    assert pieces(tokenizer, "1732") == ["17", "32"]
    assert pieces(tokenizer, " 1732") == [" 17", "32"]
    text = "The war lasted from the year 1732 to the year 17"
    assert pieces(tokenizer, text) == ["The", " war", " lasted", " from", " the", " year", " 17", "32", " to", " the", " year", " 17"]


def test_offsets_are_character_offsets_with_the_space_in_front(tokenizer):
    text = "Then, Mary and John went to the store. John gave a ring to"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [text[a:b] for a, b in encoded["offset_mapping"]]
    assert spans == ["Then", ",", " Mary", " and", " John", " went", " to", " the", " store", ".", " John", " gave", " a", " ring", " to"]
    encoded = tokenizer("12 13 1732", add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["offset_mapping"] == [(0, 2), (2, 5), (5, 8), (8, 10)]


def test_every_task_word_and_number_is_one_token_in_both_forms(tokenizer):
    words = [*task_words(), *MONTHS, *NAMES, *NUMBER_WORDS, *(w.capitalize() for w in NUMBER_WORDS)]
    words += [str(n) for n in range(10)] + [f"{n:02d}" for n in range(100)] + [str(n) for n in range(100)]
    for word in words:
        for form in (word, " " + word):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1 and ids[0] != tokenizer.unk_token_id, form
            assert tokenizer.decode(ids) == form
    assert tokenizer.convert_tokens_to_ids(BOS) == 0 == tokenizer.bos_token_id
    assert tokenizer(" Zebra", add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(UNK)]


def test_every_task_prompt_puts_each_slot_on_a_token_boundary(tokenizer):
    rng = random.Random(0)
    examples = [tasks.sample_training(task, rng) for task in tasks.TASKS for _ in range(50)]
    examples += [e for task in tasks.TASKS for e in tasks.held_out(task)[:50]]
    for example in examples:
        encoded = tokenizer(example.text, add_special_tokens=False, return_offsets_mapping=True)
        assert tokenizer.unk_token_id not in encoded["input_ids"], example.text
        ends = {end for _, end in encoded["offset_mapping"]}
        assert all(stop in ends for _, (_, stop) in example.slots), example.text


def test_tokenizer_survives_saving(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "The siege lasted from the year 1405 to the year 14"
    assert loaded(text, return_offsets_mapping=True)["offset_mapping"] == tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert loaded.bos_token_id == 0 and loaded.is_fast


# ---- data ----


def test_held_out_prompts_never_appear_in_training():
    held = {e.text for task in tasks.TASKS for e in tasks.held_out(task)}
    stream = tasks.training_stream(seed=0, batch_size=120)
    seen = [e for _ in range(30) for e in next(stream)]
    assert {e.task for e in seen} == set(tasks.TASKS)
    assert not held & {e.text for e in seen}
    assert all(not tasks.held_out_names(*e.label.split("/")) for e in seen if e.task == "ioi")


def test_every_held_out_sequence_ends_with_a_step_that_training_takes():
    rng = random.Random(0)
    for task, (make, starts) in tasks.SEQUENCE_TASKS.items():
        steps = set()
        for start in starts:
            if not tasks.held_out_start(task, start):
                example = make(start, rng)
                words = (example.text + example.answers[0]).lower().split()
                steps |= set(itertools.pairwise(words))
        for example in tasks.held_out(task):
            assert (example.text.lower().split()[-1], example.answers[0].strip().lower()) in steps, example.text


def test_formats_match_the_shipped_specs():
    rng = random.Random(0)
    assert tasks.incr_digits(12, rng).text == "12 13 14 15" and tasks.incr_digits(12, rng).answers == (" 16",)
    assert tasks.decr_digits(15, rng).text == "15 14 13 12" and tasks.decr_digits(15, rng).answers == (" 11",)
    assert tasks.months(10, rng).text == "November December January February"
    assert tasks.months(10, rng).answers == (" March",)
    assert tasks.number_words(1, rng).text == "One two three four" and tasks.number_words(1, rng).answers == (" five",)
    gt = tasks.greater_than("war", 17, 32)
    assert gt.text == "The war lasted from the year 1732 to the year 17" and gt.corrupt.endswith("year 1701 to the year 17")
    assert gt.answers == tuple(f"{y}" for y in range(33, 100)) and gt.wrong[0] == "00" and gt.wrong[-1] == "32"


# ---- training ----


def test_smoke_a_few_steps_train_save_and_load(tmp_path):
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    assert (
        main(
            [
                "--out",
                str(tmp_path / "m"),
                "--steps",
                "3",
                "--seed",
                "1",
                "--batch-size",
                "12",
                "--n-layer",
                "1",
                "--n-head",
                "2",
                "--d-model",
                "16",
                "--n-positions",
                "32",
                "--warmup",
                "2",
                "--log-every",
                "1",
                "--eval-every",
                "0",
            ]
        )
        == 0
    )
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training.json"):
        assert (tmp_path / "m" / name).is_file()
    model = GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path / "m")
    assert model.config.n_layer == 1 and len(loaded) == model.config.vocab_size
    meta = json.loads((tmp_path / "m" / "training.json").read_text())
    assert meta["config"]["steps"] == 3 and set(meta["evaluation"]["held_out"]) == set(tasks.TASKS)
    assert all(h["loss"] == h["loss"] for h in meta["loss_history"])  # finite, not NaN


def test_retraining_with_the_same_seed_gives_bit_identical_weights():
    deterministic = torch.are_deterministic_algorithms_enabled()
    first, _ = train(TrainConfig(steps=4, seed=3, **TINY), log=lambda _: None)
    second, _ = train(TrainConfig(steps=4, seed=3, **TINY), log=lambda _: None)
    other, _ = train(TrainConfig(steps=4, seed=4, **TINY), log=lambda _: None)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled() == deterministic


# ---- the shipped weights ----

shipped = pytest.mark.skipif(not (WEIGHTS / "model.safetensors").is_file(), reason="organism weights not built")


@shipped
def test_shipped_tokenizer_is_the_one_the_code_builds(tokenizer):
    saved = json.loads((WEIGHTS / "tokenizer.json").read_text())
    assert saved["model"]["vocab"] == tokenizer.get_vocab()
    assert json.loads((WEIGHTS / "config.json").read_text())["vocab_size"] == len(tokenizer)


@pytest.mark.slow
@shipped
def test_shipped_organism_meets_the_bar_on_held_out_prompts():
    from circuitlang.organisms.seqcont.evaluate import evaluate, load

    model, loaded = load(WEIGHTS)
    results = evaluate(model, loaded, sets=("held_out",))["held_out"]
    for task, metrics in results.items():
        assert metrics["accuracy"] >= 0.95, (task, metrics)
    assert results["greater_than"]["prob_diff"] >= 0.5


@shipped
@pytest.mark.slow
def test_specs_on_the_organism_bind_and_score_it(tmp_path):
    import circuitlang

    spec = tmp_path / "organism.circ"
    spec.write_text(
        'circuitlang 1\ncircuit c on "organism:seqcont"\n'
        'prompts digits {\n  template "{s1} {s2} {s3} {s4}"\n  for i in 1..95\n  s1 = i\n  s2 = i + 1\n'
        "  s3 = i + 2\n  s4 = i + 3\n  answer = i + 4\n  wrong = i + 3\n"
        "  corrupt random {\n    s1, s2, s3, s4 = random 1..99\n  }\n}\n"
        "prompts ioi {\n  generate ioi(n = 40)\n  corrupt abc\n}\n"
        'metric logit_diff(answer, wrong)\nablate mean of corrupt\nrole "r": 0.0 q end\n'
    )
    run = circuitlang.open_run(circuitlang.load(spec))
    assert run.model.prepends_bos and run.model.identity.n_layers == 4
    for prompt_set in ("digits", "ioi"):
        assert float(run.metric([run.full_model()], prompt_set).min()) > 0
    spec.write_text(
        'circuitlang 1\ncircuit g on "organism:seqcont"\n'
        "prompts years {\n  generate greater_than(n = 40)\n  corrupt 01\n}\n"
        'metric prob_diff(answer, wrong)\nablate mean of corrupt\nrole "r": 0.0 q end k yy\n'
    )
    run = circuitlang.open_run(circuitlang.load(spec))
    assert float(run.metric([run.full_model()]).mean()) > 0.5
