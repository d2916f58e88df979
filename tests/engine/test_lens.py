"""Attention patterns, the logit lens and direct contributions (engine/attention_patterns.py,
engine/lens.py) against slow, obvious references: the shipped organism's weights loaded into a
plain Hugging Face GPT-2 (eager attention, its own hidden states and hooks), one prompt at a time;
and a random two-template model for the named positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import circuitlang
from circuitlang.engine import lens as engine_lens
from circuitlang.organisms.tiny import build_random_gpt2
from tests.conftest import ROOT, SPECS

WEIGHTS = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights"
HEADS = ["0.0", "0.2", "0.4", "3.1"]


@pytest.fixture(scope="module")
def run():
    return circuitlang.open_run(circuitlang.load(SPECS / "organism_incr_digits.circ"))


@pytest.fixture(scope="module")
def reference(run):
    """Per prompt (dataset order), from a plain GPT2LMHeadModel: attentions, hidden states, the
    residual entering ln_f, each layer's merged z (c_proj's input) and MLP output, the logits."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(WEIGHTS, attn_implementation="eager").eval()
    (template,) = run.bound["incr_digits"].templates
    prompts: dict[int, dict] = {}
    for row, index in enumerate(template.prompt_indices):
        prompts[index] = _reference_run(hf, template.clean[row : row + 1])
        prompts[index]["answer"] = template.answers["answer"][row][0]
        prompts[index]["wrong"] = template.answers["wrong"][row][0]
    return hf, [prompts[i] for i in range(len(prompts))], template.positions


@torch.no_grad()
def _reference_run(hf, tokens: torch.Tensor) -> dict:
    seen: dict[str, torch.Tensor] = {}
    handles = [hf.transformer.ln_f.register_forward_pre_hook(lambda m, args: seen.__setitem__("final", args[0][0]))]
    for layer, block in enumerate(hf.transformer.h):
        handles.append(block.attn.c_proj.register_forward_pre_hook(lambda m, args, layer=layer: seen.__setitem__(f"z{layer}", args[0][0])))
        handles.append(block.mlp.register_forward_hook(lambda m, args, out, layer=layer: seen.__setitem__(f"mlp{layer}", out[0])))
    out = hf(tokens, output_attentions=True, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    return {"attentions": [a[0] for a in out.attentions], "hidden": [h[0] for h in out.hidden_states], "logits": out.logits[0], **seen}


# ---- attention --------------------------------------------------------------------------------


def test_the_mean_pattern_is_the_mean_of_each_prompts_attention(run, reference):
    _, prompts, _ = reference
    result = circuitlang.attention(run, heads=HEADS)
    assert result.positions == ("bos", "s1", "s2", "s3", "s4 / end") and result.position_kind == "tokens"
    assert result.examples[1:] == ("1", " 2", " 3", " 4")  # the first prompt, "1 2 3 4"
    for head in HEADS:
        layer, index = (int(part) for part in head.split("."))
        expected = torch.stack([p["attentions"][layer][index] for p in prompts]).double().mean(0).numpy()
        np.testing.assert_allclose(result.pattern(head).pattern, expected, atol=1e-6)
        assert np.allclose(result.pattern(head).pattern.sum(-1), 1.0, atol=1e-5)  # every token: rows are distributions
    table = result.table()
    assert len(table) == len(HEADS) * 5 * 5 and set(table["prompt"]) == {-1}


def test_one_prompts_pattern_is_that_prompts_attention(run, reference):
    _, prompts, _ = reference
    result = circuitlang.attention(run, heads=["0.4"], prompt=7)
    assert result.prompt == 7 and result.prompt_text == "8 9 10 11" and "prompt #7" in result.described
    assert result.examples[1:] == ("8", " 9", " 10", " 11")
    np.testing.assert_allclose(result.pattern("0.4").pattern, prompts[7]["attentions"][0][4].double().numpy(), atol=1e-6)


def test_wrong_heads_and_prompts_are_value_errors(run):
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        circuitlang.attention(run, heads=["9.1"])
    with pytest.raises(ValueError, match="head 8 does not exist"):
        circuitlang.attention(run, heads=["1.8"])
    with pytest.raises(ValueError, match="attention patterns are per head"):
        circuitlang.attention(run, heads=["mlp 0"])
    with pytest.raises(ValueError, match="has 95 prompts, numbered 0-94"):
        circuitlang.attention(run, heads=["0.0"], prompt=95)
    with pytest.raises(ValueError, match="no prompt set 'nope'"):
        circuitlang.lens(run, prompt_set="nope")


# ---- the logit lens ---------------------------------------------------------------------------


def test_the_lens_after_each_layer_is_the_unembedded_hidden_state(run, reference):
    """Stage s reads hidden_states[s] through ln_f and lm_head; the last stage is the model's own
    logits (Hugging Face's last hidden state has ln_f applied already)."""
    hf, prompts, positions = reference
    result = circuitlang.lens(run)
    n_layers = len(hf.transformer.h)
    assert result.stages == ("embed", *(f"layer {i}" for i in range(n_layers)))
    columns = [positions[label.split(" / ")[0]] for label in result.positions]
    expected = np.zeros((n_layers + 1, len(columns)))
    with torch.no_grad():
        for p in prompts:
            for stage in range(n_layers + 1):
                logits = p["logits"] if stage == n_layers else hf.lm_head(hf.transformer.ln_f(p["hidden"][stage]))
                expected[stage] += (logits[columns, p["answer"]] - logits[columns, p["wrong"]]).double().numpy()
    np.testing.assert_allclose(result.lens, expected / len(prompts), atol=1e-4)
    f_model = float(run.metric([run.full_model()]).mean())
    assert abs(result.lens[-1, result.readout] - f_model) < 1e-5  # the model's own metric on the clean run


def test_the_direct_contributions_add_up_to_the_metric_for_every_prompt(run):
    engine = run.session.engine("incr_digits")
    read = engine_lens.columns(engine.bound, run.model.tokenizer, every_token=True)
    pieces = engine_lens.direct_contributions(engine, read)  # [n, pieces, positions]
    lens = engine_lens.logit_lens(engine, read)  # the last stage: the model's logit difference at each position
    assert pieces.shape[1] == 1 + 4 * (8 + 2) + 1
    torch.testing.assert_close(pieces.sum(1), lens[:, -1], atol=1e-4, rtol=0)
    end = read.index(next(c for c in read if "end" in c.names))
    torch.testing.assert_close(pieces[:, :, end].sum(1), run.metric([run.full_model()])[0], atol=1e-4, rtol=0)


def test_each_pieces_direct_contribution_matches_a_slow_reference(run, reference):
    """Each head's z_h W_O[h], each MLP's output, the embeddings, b_O and ln_f's bias, read along
    W_U[answer] - W_U[wrong] through ln_f with its scale from the clean run, at `end`."""
    hf, prompts, positions = reference
    result = circuitlang.lens(run)
    end, d_head = positions["end"], hf.config.n_embd // hf.config.n_head
    ln_f, w_u = hf.transformer.ln_f, hf.lm_head.weight  # [vocab, D]
    expected = {piece: 0.0 for piece in result.pieces}
    with torch.no_grad():
        for p in prompts:
            final = p["final"][end]
            scale = ((final - final.mean()) ** 2).mean().add(ln_f.eps).sqrt()
            direction = w_u[p["answer"]] - w_u[p["wrong"]]

            read = _frozen_reader(scale, ln_f.weight, direction)

            expected["embed"] += read(p["hidden"][0][end])
            for layer, block in enumerate(hf.transformer.h):
                weight = block.attn.c_proj.weight  # Conv1D: [in, out]
                for head in range(hf.config.n_head):
                    rows = slice(head * d_head, (head + 1) * d_head)
                    expected[f"{layer}.{head}"] += read(p[f"z{layer}"][end, rows] @ weight[rows])
                expected[f"attn bias {layer}"] += read(block.attn.c_proj.bias)
                expected[f"mlp {layer}"] += read(p[f"mlp{layer}"][end])
            expected["bias"] += float((ln_f.bias * direction).sum())
    column = result.readout
    got = {piece: float(result.direct[i, column]) for i, piece in enumerate(result.pieces)}
    for piece in result.pieces:
        assert got[piece] == pytest.approx(expected[piece] / len(prompts), abs=1e-5), piece
    assert result.direction == "logit[answer] − logit[wrong]"
    assert result.head_grid()[3, 8] == pytest.approx(got["mlp 3"])


def _frozen_reader(scale: torch.Tensor, weight: torch.Tensor, direction: torch.Tensor):
    """A piece through ln_f with the clean scale (no bias), along the metric's direction."""

    def read(part: torch.Tensor) -> float:
        return float((((part - part.mean()) / scale) * weight * direction).sum())

    return read


# ---- named positions: several templates -------------------------------------------------------

TINY_WORDS = [str(i) for i in range(1, 25)] + ["then", "and", "after"]
TINY = """circuitlang 1
circuit tiny on "./tiny"
prompts digits {
  template "{s1} {s2} {s3} {s4}"
  template "{s1} then {s2} and {s3} after {s4}"
  for i in 1..6
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4; wrong = i + 3
  corrupt random { s1, s2, s3, s4 = random 1..20 }
}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "mover": 1.1
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lens_tiny")
    build_random_gpt2(root / "tiny", TINY_WORDS, n_layers=2, n_heads=2, d_model=16, seed=3)
    (root / "tiny.circ").write_text(TINY)
    return root / "tiny.circ"


def test_named_positions_average_over_templates_of_different_lengths(tiny):
    run = circuitlang.open_run(circuitlang.load(tiny))
    result = circuitlang.attention(run, heads=["1.1"])
    assert result.position_kind == "named" and result.positions == ("bos", "s1", "s2", "s3", "s4 / end")
    expected = np.zeros((5, 5))
    for template in run.bound["digits"].templates:
        index = [template.positions[name] for name in ("bos", "s1", "s2", "s3", "s4")]
        _, cache = run.model.bridge.run_with_cache(template.clean, names_filter=lambda name: name == "blocks.1.attn.hook_pattern")
        expected += cache["blocks.1.attn.hook_pattern"][:, 1][:, index][:, :, index].double().sum(0).numpy()
    np.testing.assert_allclose(result.pattern("1.1").pattern, expected / run.bound["digits"].n_prompts, atol=1e-6)
    with pytest.raises(ValueError, match="has 2 templates"):
        circuitlang.attention(run, heads=["1.1"], positions="tokens")
    one = circuitlang.attention(run, heads=["1.1"], prompt=7)  # one prompt: its every token, whatever its template
    assert len(one.positions) == len(one.prompt_text.split()) + 1
    lens = circuitlang.lens(run)
    assert lens.positions == result.positions and lens.table("lens").shape[0] == 3 * 5
    assert lens.direct is not None
    np.testing.assert_allclose(lens.direct.sum(0), lens.lens[-1], atol=1e-4)
