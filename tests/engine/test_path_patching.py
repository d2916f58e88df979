"""Path patching against TransformerLens 4's own patching functions, where both apply."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching

from circuitlang.api import path_patch
from circuitlang.engine.path_patching import Receiver
from circuitlang.ir import models as ir
from tests.engine.test_engine import model_dir, open_spec  # noqa: F401  (fixture)


def head(layer: int, index: int) -> ir.Node:
    return ir.HeadNode(layer=layer, head=index)


def tl_inputs(run):
    template = run.bound["digits"].templates[0]
    bridge = run.model.bridge
    _, clean_cache = bridge.run_with_cache(template.clean)
    _, corrupt_cache = bridge.run_with_cache(template.corrupt)
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])

    def mean_logit_diff(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, answers[:, None]) - last.gather(1, wrongs[:, None])).mean()

    return template, clean_cache, corrupt_cache, mean_logit_diff


def only_first_template(run) -> None:
    # TL's functions take one token tensor; compare on the first template's prompts.
    assert len(run.bound["digits"].templates) == 2


@pytest.mark.parametrize("channel", ["q", "k", "v"])
def test_single_edge_matches_tl_direct_path_patching(model_dir, channel):  # noqa: F811
    run = open_spec(model_dir, ablate="resample", name="pp.circ")
    template, clean_cache, corrupt_cache, metric = tl_inputs(run)
    # TL patches its "clean" cache into its "corrupted" run: pass our corrupt cache as its clean one.
    expected = patching.get_act_patch_direct_path(
        run.model.bridge, template.clean, corrupt_cache, clean_cache, metric, src_layer=0, src_head=2, component=channel, verbose=False
    )
    rows = list(template.prompt_indices)
    for layer, index in [(1, 0), (1, 3), (2, 1)]:
        ours = path_patch(run, [head(0, 2)], [Receiver(head(layer, index), (channel,))], freeze_mlps=True)
        assert ours[rows].mean().item() == pytest.approx(expected[layer, index].item(), abs=1e-5)


def test_last_layer_heads_to_logits_match_tl_activation_patching(model_dir):  # noqa: F811
    run = open_spec(model_dir, ablate="resample", name="pp2.circ")
    template, clean_cache, corrupt_cache, metric = tl_inputs(run)
    expected = patching.get_act_patch_attn_head_out_all_pos(run.model.bridge, template.clean, corrupt_cache, metric)
    rows = list(template.prompt_indices)
    logits = Receiver(ir.LOGITS)
    for index in range(4):
        ours = path_patch(run, [head(2, index)], [logits])
        assert ours[rows].mean().item() == pytest.approx(expected[2, index].item(), abs=1e-5)


def test_patching_nothing_gives_the_clean_metric_and_patching_changes_it(model_dir):  # noqa: F811
    run = open_spec(model_dir, ablate="resample", name="pp3.circ")
    clean = run.metric([run.full_model()])[0]
    logits = Receiver(ir.LOGITS)
    assert torch.allclose(path_patch(run, [], [logits]), clean, atol=1e-6)
    assert not torch.allclose(path_patch(run, [head(0, 1), head(1, 2)], [logits]), clean, atol=1e-4)
    # Receivers' inputs recorded in a run where only frozen heads differ from clean change nothing
    # (the engine's property; the public path_patch refuses a sender after its receiver).
    from circuitlang.engine.path_patching import path_patch as engine_path_patch

    engine = run.session.engine()
    assert torch.allclose(engine_path_patch(engine, [head(2, 0)], [Receiver(head(1, 1))], engine.readout()), clean, atol=1e-6)


def test_mlp_receiver_matches_a_hand_written_patch(model_dir):  # noqa: F811
    # S -> mlp 2 with MLPs frozen: only the MLP of layer 2 reads the residual with S's corrupt write
    # added; everything after it recomputes. Written out by hand with one hook.
    run = open_spec(model_dir, ablate="resample", name="pp4.circ")
    template = run.bound["digits"].templates[0]
    bridge = run.model.bridge
    sender = head(2, 1)
    _, clean = bridge.run_with_cache(template.clean)
    _, corrupt = bridge.run_with_cache(template.corrupt)
    # By hand: the MLP of layer 2 reads the residual with 2.1's corrupt write; nothing else changes.
    delta = (corrupt["blocks.2.attn.hook_z"][:, :, 1] - clean["blocks.2.attn.hook_z"][:, :, 1]) @ bridge.W_O[2, 1]

    def shifted_input(x, hook):
        return x + delta

    with bridge.hooks(fwd_hooks=[("blocks.2.ln2.hook_in", shifted_input)]):
        logits = bridge(template.clean)[:, -1]
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    expected = (logits.gather(1, answers[:, None]) - logits.gather(1, wrongs[:, None]))[:, 0].double()
    ours = path_patch(run, [sender], [Receiver(ir.MlpNode(layer=2))], freeze_mlps=True)
    assert torch.allclose(ours[list(template.prompt_indices)], expected, atol=1e-5)
