"""Model references and shapes, resolved offline."""

from __future__ import annotations

import json
import os

import pytest

from circuitlang.errors import SpecError, SpecErrors
from circuitlang.ir.lower import load_spec

BODY = 'prompts { template "{a}"; a = 1; answer = 2; wrong = 3 }\nmetric logit_diff(answer, wrong)\nablate zero\n'


def test_local_folder_shape_comes_from_config_json(write_spec, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"n_layer": 2, "n_head": 4}))
    spec = load_spec(write_spec('circuitlang 1\ncircuit c on "./tiny"\n' + BODY + 'role "r": 1.3, 0.*\n'))
    assert spec.model.source == "local" and (spec.shape.n_layers, spec.shape.n_heads) == (2, 4)
    assert [str(n.node) for n in spec.circuit.nodes] == ["1.3", "0.0", "0.1", "0.2", "0.3"]
    with pytest.raises(SpecError, match=r"head 1\.4 does not exist: layers have heads 0-3"):
        load_spec(write_spec('circuitlang 1\ncircuit c on "./tiny"\n' + BODY + 'role "r": 1.4\n'))


def test_hf_style_config_keys_are_read(write_spec, tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "num_attention_heads": 2}))
    spec = load_spec(write_spec('circuitlang 1\ncircuit c on "./llama"\n' + BODY))
    assert (spec.shape.n_layers, spec.shape.n_heads) == (3, 2)


@pytest.mark.parametrize("model, shape", [("gpt2", (12, 12)), ("gpt2-medium", (24, 16)), ("gpt2-xl", (48, 25))])
def test_known_hub_shapes(write_spec, model, shape):
    spec = load_spec(write_spec(f'circuitlang 1\ncircuit c on "{model}"\n' + BODY))
    assert spec.model.source == "hub" and (spec.shape.n_layers, spec.shape.n_heads) == shape


def test_unknown_hub_model_is_not_an_error_but_has_no_shape(write_spec):
    spec = load_spec(write_spec('circuitlang 1\ncircuit c on "someone/new-model"\n' + BODY + 'role "r": 40.3\n'))
    assert spec.shape is None and str(spec.circuit.nodes[0].node) == "40.3"


def test_every_bound_error_is_reported_at_once(write_spec):
    with pytest.raises(SpecErrors) as caught:
        load_spec(write_spec('circuitlang 1\ncircuit c on "gpt2"\n' + BODY + 'role "r": 12.0, 0.12, 3.3\nmlp 12\n'))
    assert [(e.span.line, e.span.column) for e in caught.value.errors] == [(6, 11), (6, 17), (7, 5)]


def test_a_misspelt_organism_names_the_nearest_shipped_one(write_spec):
    from circuitlang.errors import SpecError

    with pytest.raises(SpecError) as raised:  # the spec's to fix: exit 2
        load_spec(write_spec('circuitlang 1\ncircuit c on "organism:seqcnt"\n' + BODY + 'role "r": 0.1\n'))
    assert raised.value.hint == "did you mean 'organism:seqcont'? shipped organisms: seqcont"


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo", "too large"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_without_reading_it(write_spec, tmp_path, capsys, kind):
    """`config.json -> /dev/zero` was read until memory ran out; a FIFO blocks the read forever."""
    from circuitlang.cli import main
    from circuitlang.ir.paths import MAX_CONFIG_BYTES

    folder = tmp_path / "tiny"
    folder.mkdir()
    config = folder / "config.json"
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "too large":
        config.write_text('{"n_layer": 2, "n_head": 4, "pad": "' + "x" * MAX_CONFIG_BYTES + '"}')
    else:
        config.symlink_to("/dev/zero")
    spec = write_spec('circuitlang 1\ncircuit c on "./tiny"\n' + BODY)
    assert main(["check", "--no-tokenize", str(spec)]) == 3
    captured = capsys.readouterr()
    said = captured.out + captured.err
    why = {"fifo": "not a regular file", "too large": "more than the", "link to /dev/zero": "outside the project root"}[kind]
    assert "cannot read the model's" in said and why in said
    assert "Traceback" not in said
