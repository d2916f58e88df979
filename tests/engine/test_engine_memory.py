"""What the engine holds, and that holding less changes no number.

Verify's peak memory should follow the prompt set and the batch, not the model's weights copied
again, the corruption's activations kept for nothing, or one tensor per layer per batch
(benchmarks/README.md, "Peak memory"). Each test here fails on the engine that held them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlang.compile.memory import MAX_CPU_BATCH, MIN_CPU_BATCH, ModelSize, cpu_batch_size
from circuitlang.engine import edges as edges_module
from circuitlang.engine.ablation_source import KINDS, collect
from circuitlang.engine.family import Family
from circuitlang.ir import models as ir
from circuitlang.organisms.tiny import build_random_gpt2
from tests.engine.test_engine import WORDS, open_spec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_memory")
    build_random_gpt2(folder / "tiny", WORDS, n_layers=3, n_heads=4, d_model=32, seed=3)
    return folder


def _cached(run, template) -> dict[str, torch.Tensor]:
    """The activations `collect` keeps, from TransformerLens' own run_with_cache of every prompt."""
    bridge = run.model.bridge
    names = [Family.resid_pre(layer) for layer in range(bridge.cfg.n_layers)] + [Family.final_residual]
    names += [Family.activation(kind, layer) for kind in KINDS for layer in range(bridge.cfg.n_layers)]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(template.clean.to(run.model.device), names_filter=lambda name: name in names)
    return {name: cache[name] for name in names}


def _as_dict(run, cache) -> dict[str, torch.Tensor]:
    n_layers = run.model.bridge.cfg.n_layers
    out = {Family.resid_pre(layer): cache.resid_pre[layer] for layer in range(n_layers)}
    out[Family.final_residual] = cache.final_residual
    out |= {Family.activation(kind, layer): cache.acts[kind][layer] for kind in KINDS for layer in range(n_layers)}
    return out


def test_collect_in_batches_equals_run_with_cache_and_its_means_the_mean(model_dir):
    """Batches written into one tensor, the forward stopped before the unembedding, and the
    means summed batch by batch: the same activations as one run_with_cache of every prompt."""
    run = open_spec(model_dir)
    template = run.bound[run.spec.prompt_sets[0].name].templates[0]
    expected = _cached(run, template)
    batched = _as_dict(run, collect(run.model, template.clean, 3))
    means = _as_dict(run, collect(run.model, template.clean, 3, mean=True))
    for name, tensor in expected.items():
        torch.testing.assert_close(batched[name], tensor, rtol=1e-5, atol=1e-6)
        assert means[name].shape == (1, *tensor.shape[1:])
        torch.testing.assert_close(means[name], tensor.mean(0, keepdim=True), rtol=1e-5, atol=1e-6)


def test_a_mean_ablation_keeps_no_corrupt_activations_until_path_patching_asks(model_dir):
    run = open_spec(model_dir, ablate="mean of corrupt")
    engine = run.session.engine()
    assert engine._corrupt == {}  # the means only
    template = engine.bound.templates[0]
    corrupt = engine.corrupt_cache(template)  # path patching's: collected on first use, then kept
    assert corrupt.resid_pre[0].shape[0] == template.n_prompts and engine.corrupt_cache(template) is corrupt
    means = engine.ablation_source(template).values["z"][0]
    torch.testing.assert_close(means, corrupt.acts["z"][0].mean(0, keepdim=True), rtol=1e-5, atol=1e-6)


def test_resampling_keeps_the_corrupt_activations_it_reads(model_dir):
    engine = open_spec(model_dir, ablate="resample of corrupt").session.engine()
    template = engine.bound.templates[0]
    assert engine.ablation_source(template).values["z"][0] is engine.corrupt_cache(template).acts["z"][0]


def test_the_attention_weights_are_the_blocks_own_parameters_not_copies(model_dir):
    """The bridge's stacked W_Q... copy every block (113 MB for GPT-2 small's four); the engine
    reads each block's, which share the parameters' memory, and equal the stacked ones."""
    run = open_spec(model_dir)
    bridge, weights = run.model.bridge, run.model.attention
    storages = {p.untyped_storage().data_ptr() for p in bridge.original_model.parameters()}
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
        stacked = getattr(bridge, name)
        for layer in range(bridge.cfg.n_layers):
            mine = getattr(weights, name)[layer]
            assert mine.untyped_storage().data_ptr() in storages, (name, layer)
            assert not mine.requires_grad
            torch.testing.assert_close(mine, stacked[layer], rtol=0, atol=0)
        assert torch.equal(getattr(weights, name)[1, 2], stacked[1, 2])  # [layer, head] as on the stack


def test_an_edge_batch_holds_one_layers_running_total_unless_its_run_is_cached(model_dir, monkeypatch):
    """Edge hooks kept the running total and the residual entering every layer: two [rows, P, D]
    tensors per layer for each batch. Only a cached base run (which variants resume) needs them."""
    run = open_spec(model_dir)
    made: list[edges_module.EdgeHooks] = []
    original = edges_module.EdgeHooks.hooks

    def recorded(self):
        made.append(self)
        return original(self)

    monkeypatch.setattr(edges_module.EdgeHooks, "hooks", recorded)
    engine, session = run.session.engine(), run.session
    without = [frozenset({ir.HeadNode(layer=layer, head=head)}) for layer, head in ((2, 1), (0, 1))]
    engine.run([session.circuit(nodes) for nodes in without], engine.readout(), base=session.circuit())
    cached = [hooks for hooks in made if hooks.keep_totals]
    batches = [hooks for hooks in made if not hooks.keep_totals]
    assert cached and all(len(hooks.entering) == run.model.bridge.cfg.n_layers for hooks in cached)
    assert batches and all(len(hooks.entering) <= 1 for hooks in batches)
    assert all(key[0] != "resid_pre" for hooks in made for key in hooks.diffs)
    # a batch holds no sender's difference past its last reader: at the end, the logits' sums only
    for hooks in batches:
        assert not hooks.to_fold and not hooks.diffs and hooks.logits_kept
    assert all(("head", 2, 1) in hooks.diffs and ("mlp", 2) in hooks.diffs for hooks in cached)


def test_a_variants_numbers_do_not_depend_on_the_variants_it_shares_a_batch_with(model_dir):
    """Bit for bit: the result cache reuses a variant's array whatever it was computed beside.
    The logits' sums of the senders' differences are added in one order in every batch."""
    # 7 rows a batch, so variants share batches; five senders into the logits, whose sum's
    # rounding depends on the order they are added in
    more = "edge 1.0 -> logits\nedge 0.1 -> logits\nedge mlp 0 -> logits\nedge 0.3 -> logits"
    run = open_spec(model_dir, extra=more, name="many_into_logits.circ")
    engine, session = run.session.engine(), run.session
    variants = [session.circuit(frozenset({ir.HeadNode(layer=layer, head=head)})) for layer, head in ((2, 1), (0, 1), (1, 0), (0, 3))] + [
        session.circuit(),
        session.full_model(),
    ]
    together = engine.run(variants, engine.readout(), base=session.circuit())
    for index, variant in enumerate(variants):
        alone = engine.run([variant], engine.readout())
        assert torch.equal(alone[0], together[index]), variant.label


def test_the_cpu_batch_follows_the_prompt_set_within_its_bounds():
    gpt2 = ModelSize(n_layers=12, n_heads=12, d_model=768, d_mlp=3072, vocab=50257, n_ctx=1024, tied=True)
    sizes = [cpu_batch_size(gpt2, prompts * 6, 6) for prompts in (1, 20, 40, 60, 95, 1000)]
    assert sizes == sorted(sizes) and sizes[0] == MIN_CPU_BATCH and sizes[-1] == MAX_CPU_BATCH
    # between the bounds a batch's activations stay within the prompt set's cached ones
    prompts = 40
    rows = cpu_batch_size(gpt2, prompts * 6, 6)
    assert MIN_CPU_BATCH < rows < MAX_CPU_BATCH
    per_row = 6 * (12 * 768 + 2 * 3072 + 2 * 12 * 6)
    cached = prompts * 6 * (5 * 12 + 1) * 768
    assert rows * per_row <= cached < (rows + 1) * per_row


def test_the_session_takes_the_cpu_batch_unless_the_spec_sets_one(model_dir):
    run = open_spec(model_dir)  # batch_size=7 given by the caller
    assert run.session.batch_size == 7
    import circuitlang

    spec_path = model_dir / "spec.circ"
    default = circuitlang.open_run(circuitlang.load(spec_path))
    bound = default.session.bound[default.spec.prompt_sets[0].name]
    cfg = default.model.bridge.cfg
    size = ModelSize(cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx, tied=False)
    positions = sum(t.n_prompts * t.seq_len for t in bound.templates)
    assert default.session.batch_size == cpu_batch_size(size, positions, max(t.seq_len for t in bound.templates))
    spec_path.write_text(spec_path.read_text() + "set batch_size = 32\n")
    assert circuitlang.open_run(circuitlang.load(spec_path)).session.batch_size == 32
