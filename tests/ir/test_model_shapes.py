"""Model shapes known offline: the table of hub models by family, and config.json of each family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitlang.errors import ModelError, SpecError
from circuitlang.ir.lower import load_spec
from circuitlang.ir.shapes import KNOWN_HUB_SHAPES, SHAPES_FILE

ROOT = Path(__file__).resolve().parents[2]
BODY = 'prompts { template "{a}"; a = 1; answer = 2; wrong = 3 }\nmetric logit_diff(answer, wrong)\nablate zero\n'
FAMILIES = json.loads((ROOT / "circuitlang" / "ir" / SHAPES_FILE).read_text(encoding="utf-8"))["families"]
# Names of the same weights' architecture: fine-tunes and the deduplicated-data runs.
VARIANT_SUFFIXES = ("-Instruct", "-it", "-deduped")


def _spec(write_spec, model: str, circuit: str):
    return load_spec(write_spec(f'circuitlang 1\ncircuit c on "{model}"\n' + BODY + circuit))


# ---- hub models: check accepts the last head and rejects the one past it ------------------------


@pytest.mark.parametrize(
    "model, layers, heads",
    [
        ("gpt2-small", 12, 12),
        ("distilgpt2", 6, 12),
        ("pythia-14m", 6, 4),
        ("pythia-1.3b", 24, 16),
        ("EleutherAI/pythia-12b-deduped", 36, 40),
        ("gpt-j", 28, 16),
        ("meta-llama/Llama-3.2-1B-Instruct", 16, 32),
        ("meta-llama/Llama-3.1-8B", 32, 32),
        ("qwen2.5-0.5b", 24, 14),
        ("Qwen/Qwen2.5-7B-Instruct", 28, 28),
        ("gemma-2-2b", 26, 8),
        ("google/gemma-2-9b-it", 42, 16),
        ("mistral-7b", 32, 32),
    ],
)
def test_last_head_checks_and_the_one_past_it_does_not(write_spec, model, layers, heads):
    last = f"{layers - 1}.{heads - 1}"
    spec = _spec(write_spec, model, f'role "r": {last}\n')
    assert (spec.shape.n_layers, spec.shape.n_heads) == (layers, heads)
    assert [str(member.node) for member in spec.circuit.nodes] == [last]
    with pytest.raises(SpecError, match=rf"head {layers - 1}\.{heads} does not exist: layers have heads 0-{heads - 1}"):
        _spec(write_spec, model, f'role "r": {layers - 1}.{heads}\n')
    with pytest.raises(SpecError) as caught:
        _spec(write_spec, model, f'role "r": {layers}.0\n')
    assert caught.value.message == f"layer {layers} does not exist: {spec.shape.origin} has layers 0-{layers - 1}"


@pytest.mark.parametrize(
    "model, kv_heads, parallel",
    [
        ("gpt2", 12, False),
        ("EleutherAI/pythia-70m", 8, True),
        ("pythia-6.9b-deduped", 32, True),
        ("EleutherAI/gpt-j-6B", 16, True),
        ("meta-llama/Llama-3.2-3B", 8, False),
        ("qwen2.5-1.5b-instruct", 2, False),
        ("Qwen/Qwen2.5-3B", 2, False),
        ("gemma-2-9b", 8, False),
    ],
)
def test_hub_shapes_carry_kv_heads_and_parallel_blocks(write_spec, model, kv_heads, parallel):
    shape = _spec(write_spec, model, "").shape
    assert (shape.n_kv_heads, shape.parallel_attn_mlp) == (kv_heads, parallel)


def test_every_table_entry_is_a_consistent_shape():
    for name, shape in KNOWN_HUB_SHAPES.items():
        assert shape.n_layers > 0 and shape.n_heads > 0, name
        assert shape.n_kv_heads > 0 and shape.n_heads % shape.n_kv_heads == 0, name


def test_fine_tunes_and_deduped_runs_share_their_base_models_shape():
    for name, shape in KNOWN_HUB_SHAPES.items():
        for suffix in VARIANT_SUFFIXES:
            if name.endswith(suffix):
                assert KNOWN_HUB_SHAPES[name.removesuffix(suffix)] == shape, name


def test_the_language_reference_lists_every_family_and_size():
    reference = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        assert f"| {family['family']}" in reference
        for name, (layers, heads, _) in family["models"].items():
            assert f"{layers} × {heads}" in reference, name


# ---- config.json of each family -----------------------------------------------------------------


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768}, (12, 12, 12, False)),
        ({"model_type": "gpt_neox", "num_hidden_layers": 6, "num_attention_heads": 8, "use_parallel_residual": True}, (6, 8, 8, True)),
        ({"model_type": "gpt_neox", "num_hidden_layers": 6, "num_attention_heads": 8}, (6, 8, 8, True)),
        ({"model_type": "gpt_neox", "num_hidden_layers": 6, "num_attention_heads": 8, "use_parallel_residual": False}, (6, 8, 8, False)),
        ({"model_type": "gptj", "n_layer": 28, "n_head": 16, "n_embd": 4096, "rotary_dim": 64}, (28, 16, 16, True)),
        ({"model_type": "llama", "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8}, (16, 32, 8, False)),
        ({"model_type": "qwen2", "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2}, (24, 14, 2, False)),
        ({"model_type": "gemma2", "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4}, (26, 8, 4, False)),
        ({"model_type": "mistral", "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8}, (32, 32, 8, False)),
        ({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": None}, (2, 4, 4, False)),
        ({"model_type": "gpt_bigcode", "n_layer": 2, "n_head": 4, "multi_query": True}, (2, 4, 1, False)),
        (
            {
                "model_type": "gemma3",
                "vision_config": {"num_hidden_layers": 27, "num_attention_heads": 16},
                "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4},
            },
            (26, 8, 4, False),
        ),
    ],
)
def test_config_json_of_each_family_is_read(write_spec, tmp_path, config, expected):
    shape = _spec(write_spec, _model_folder(tmp_path, config), "").shape
    assert (shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.parallel_attn_mlp) == expected
    assert shape.origin == str(tmp_path / "model" / "config.json")


def test_local_model_checks_heads_against_its_config(write_spec, tmp_path):
    model = _model_folder(tmp_path, {"model_type": "qwen2", "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2})
    assert [str(m.node) for m in _spec(write_spec, model, 'role "r": 1.5\n').circuit.nodes] == ["1.5"]
    with pytest.raises(SpecError, match=r"head 1\.6 does not exist: layers have heads 0-5"):
        _spec(write_spec, model, 'role "r": 1.6\n')


def test_kv_heads_that_do_not_divide_the_heads_are_an_error(write_spec, tmp_path):
    model = _model_folder(tmp_path, {"num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 4})
    with pytest.raises(ModelError) as caught:
        _spec(write_spec, model, "")
    assert caught.value.message.endswith("config.json gives 4 key/value heads for 6 heads")


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "mystery", "d_model": 64},
        {"model_type": "mystery", "text_config": {"hidden_size": 64}},
    ],
)
def test_config_without_layer_counts_is_the_error_it_always_was(write_spec, tmp_path, config):
    with pytest.raises(ModelError) as caught:
        _spec(write_spec, _model_folder(tmp_path, config), "")
    assert caught.value.message == f"{tmp_path / 'model' / 'config.json'} names no layer/head counts"
    assert caught.value.hint == "expected n_layer/n_head or num_hidden_layers/num_attention_heads"


@pytest.mark.parametrize(
    "layers, heads",
    [(2**63 - 1, 8), (4, 2**63), (0, 8), (-1, 8), (4, 0), (1_001, 1), (1, 1_001), (1_000, 101), (10**4300 - 1, 8)],
)
def test_config_counts_no_model_has_are_a_model_error(write_spec, tmp_path, layers, heads):
    """Found by fuzzing model folders (docs/fuzzing.md): n_layer 2^63 - 1 or n_head 2^63 made
    `plan` run out of memory (it enumerates every head), and 0 or negative counts gave layer
    ranges like 0--1."""
    model = _model_folder(tmp_path, {"model_type": "gpt2", "n_layer": layers, "n_head": heads})
    with pytest.raises(ModelError) as caught:
        _spec(write_spec, model, "")
    assert "heads: no model has that shape" in caught.value.message and len(caught.value.message) < 300
    assert caught.value.hint == "a config.json may give 1 to 1,000 layers of 1 to 1,000 heads, at most 100,000 heads in all"


def test_config_counts_at_the_bounds_are_read(write_spec, tmp_path):
    for layers, heads in ((1_000, 100), (100, 1_000), (1, 1)):
        shape = _spec(write_spec, _model_folder(tmp_path, {"model_type": "gpt2", "n_layer": layers, "n_head": heads}), "").shape
        assert (shape.n_layers, shape.n_heads) == (layers, heads)


def _model_folder(tmp_path: Path, config: dict[str, object]) -> str:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return "./model"
