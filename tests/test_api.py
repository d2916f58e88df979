"""The Python API refuses wrong input instead of giving a silently wrong number."""

from __future__ import annotations

import pytest
import torch

import circuitlang
from circuitlang.api import path_patch
from circuitlang.ir import models as ir
from tests.conftest import SPECS


@pytest.fixture(scope="module")
def run():
    return circuitlang.open_run(circuitlang.load(SPECS / "organism_incr_digits.circ"))


def test_nodes_given_as_text_mean_what_they_say(run):
    member = next(m.node for m in run.spec.circuit.nodes if m.node.kind == "head")
    as_text = run.metric([run.circuit(without={str(member)})])
    assert torch.equal(as_text, run.metric([run.circuit(without={member})]))
    assert not torch.equal(as_text, run.metric([run.circuit()]))  # the string was not ignored
    assert run.nodes(["mlp 0", "mlp1", " 1.2 ", "logits"]) == [ir.MlpNode(layer=0), ir.MlpNode(layer=1), ir.HeadNode(layer=1, head=2), ir.LOGITS]


@pytest.mark.parametrize(
    "written, message",
    [
        ("0,0", "'0,0' is not a node: write L.H (a head), mlp L, embed or logits"),
        ("9.0", "'9.0': layer 9 does not exist: the model has layers 0-3"),
        ("0.9", "'0.9': head 9 does not exist: layers have heads 0-"),
        ("mlp 4", "'mlp 4': layer 4 does not exist"),
    ],
)
def test_a_node_the_model_lacks_is_an_error(run, written, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        run.circuit(without={written})
    with pytest.raises(ValueError):
        run.full_model(without=[written])


def test_path_patching_against_the_residual_order_is_an_error(run):
    with pytest.raises(ValueError, match="3.0 cannot send to 0.0: path patching runs from earlier nodes to later ones"):
        path_patch(run, ["3.0"], ["0.0"])
    with pytest.raises(ValueError, match="cannot send to mlp 1"):
        path_patch(run, ["mlp 2"], ["mlp 1"])


def test_path_patching_with_text_equals_with_objects(run):
    from circuitlang.engine.path_patching import Receiver

    by_text = path_patch(run, ["0.0", "mlp 0"], ["logits"])
    by_object = path_patch(run, [ir.HeadNode(layer=0, head=0), ir.MlpNode(layer=0)], [Receiver(ir.LOGITS, ())])
    assert torch.equal(by_text, by_object)


def test_open_run_chooses_threads_as_the_command_line_does(run):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        circuitlang.open_run(run.spec)
        assert torch.get_num_threads() == 1  # the organism is a small model: one thread, as `verify` uses
        circuitlang.open_run(run.spec, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_spec_and_a_report_show_themselves_briefly_and_in_notebooks(run):
    from circuitlang.api import verify
    from circuitlang.report.render import to_markdown

    spec_text = repr(run.spec)
    assert spec_text.startswith("<Spec organism_incr_digits on organism:seqcont: 7 nodes, 13 declared edges") and len(spec_text) < 300
    assert "**end reads s3 (q end)**: 0.0, 0.2" in run.spec._repr_markdown_()
    report = verify(run, audit=False)
    assert repr(report).startswith("<Report organism_incr_digits: all claims pass; incr_digits: faithfulness 0.9")
    assert report._repr_markdown_() == to_markdown(report)


@pytest.mark.slow
def test_the_precision_is_named_or_a_torch_dtype(run):
    """`dtype` as the command line writes it ("float32") or as torch does: the same model, the same
    numbers; a name that is no precision is a ValueError, before the model loads."""
    named = circuitlang.open_run(run.spec, dtype="float64")
    given = circuitlang.open_run(run.spec, dtype=torch.float64)
    assert named.model.bridge.cfg.dtype == given.model.bridge.cfg.dtype == torch.float64
    assert torch.equal(named.metric([named.circuit()]), given.metric([given.circuit()]))
    assert run.model.bridge.cfg.dtype == torch.float32  # the default
    with pytest.raises(ValueError, match="dtype 'float33' is not a torch precision"):
        circuitlang.open_run(run.spec, dtype="float33")


# ---- a model object of the caller's ---------------------------------------------------------------


def organism_model():
    """The shipped organism, loaded by transformers as a notebook would load it."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(circuitlang.load(SPECS / "organism_incr_digits.circ").model.path)


def test_a_model_object_runs_as_the_spec_model(run):
    mine = circuitlang.open_run(run.spec, model=organism_model())
    assert mine.model.identity.source == "object" and mine.model.identity.weights_sha256 == run.model.identity.weights_sha256
    assert torch.allclose(mine.metric([mine.circuit(), mine.empty()]), run.metric([run.circuit(), run.empty()]))


def test_a_bridge_runs_as_it_is(run):
    mine = circuitlang.open_run(run.spec, model=run.model.bridge)
    assert mine.model.bridge is run.model.bridge and mine.model.tokenizer is run.model.tokenizer


def test_a_model_of_another_shape_is_a_model_error(run):
    from transformers import GPT2Config, GPT2LMHeadModel

    from circuitlang.errors import ModelError

    other = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=run.model.tokenizer.vocab_size, n_positions=32))
    with pytest.raises(ModelError, match=r"has 2 layers of 4 heads, but the spec's model 'organism:seqcont' has 4 layers of 8 heads"):
        circuitlang.open_run(run.spec, model=other)
    with pytest.raises(TypeError, match="PreTrainedModel or a TransformerBridge"):
        circuitlang.open_run(run.spec, model=object())


@pytest.mark.slow
def test_an_edited_weight_changes_the_key_and_the_numbers_and_the_same_weights_reuse_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITLANG_CACHE_DIR", str(tmp_path / "cache"))
    spec = circuitlang.load(SPECS / "organism_incr_digits.circ")
    model = organism_model()
    first = circuitlang.verify(spec, model=model, cache=True, audit=False)
    again = circuitlang.verify(spec, model=model, cache=True, audit=False)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    edited = circuitlang.verify(spec, model=model, cache=True, audit=False)
    (used_first,), (used_again,), (used_edited,) = ([p.cache for p in r.prompt_sets] for r in (first, again, edited))
    assert used_first.hits == 0 and (used_again.hits, used_again.misses) == (used_first.misses, 0)
    assert used_edited.hits == 0 and used_edited.misses == used_first.misses
    assert edited.model["weights_sha256"] != first.model["weights_sha256"]
    assert edited.prompt_sets[0].faithfulness.f_model.value != first.prompt_sets[0].faithfulness.f_model.value


def test_verify_refuses_a_run_whose_weights_changed_since_it_opened(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITLANG_CACHE_DIR", str(tmp_path / "cache"))
    spec = circuitlang.load(SPECS / "organism_incr_digits.circ")
    model = organism_model()
    mine = circuitlang.open_run(spec, model=model)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0  # the caller's object: the run holds a copy
    assert mine.model.identity.weights_sha256 == circuitlang.open_run(spec).model.identity.weights_sha256
    with torch.no_grad():
        mine.model.bridge.original_model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="weights changed since open_run"):
        circuitlang.verify(mine, cache=True)
