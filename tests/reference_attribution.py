"""A slow, obvious EAP-IG, written from the formula of Hanna et al.'s reference code (the
`get_scores_eap_ig` that MIB's circuit track runs), independently of circuitlang's engine.

For each prompt and each k of the grid, the token-and-position embeddings are set to

    corrupt + (k / steps) * (clean - corrupt)

and a hand-written GPT-2 forward runs from there, one prompt at a time. Every receiver (each head's
q, k and v input, each MLP's input, the final residual) reads its own copy of the residual, whose
gradient autograd keeps. The score of sender s -> receiver r adds

    sum over positions of (out_s(clean) - out_s(corrupt)) . d logit_diff / d input_r

with out_s from plain runs of the clean and corrupt prompts (patching: `ablate resample`), and is
averaged over prompts and steps. Hanna et al. accumulate (corrupt - clean) . d loss with the loss
MIB attributes with, minus the logit difference: the same number.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from circuitlang.ir import models as ir

EMBED, LOGITS = ir.EMBED, ir.LOGITS
Receiver = tuple[ir.Node, str]  # a head with its channel q, k or v; an MLP or the logits with ""


def eap_ig_scores(hf_model, prompts: Iterable[tuple], ks: Iterable[int], steps: int) -> dict[tuple, float]:
    """Every edge's score, averaged over `prompts` (clean [1, P], corrupt [1, P], readout position,
    answer id, wrong id) and over the grid alpha = k / steps for k in `ks`."""
    totals: dict[tuple, float] = {}
    prompts, ks = list(prompts), list(ks)
    for clean, corrupt, position, answer, wrong in prompts:
        clean_out = _forward(hf_model, _embed(hf_model, clean), {})[1]
        corrupt_out = _forward(hf_model, _embed(hf_model, corrupt), {})[1]
        for k in ks:
            alpha = k / steps
            start = _embed(hf_model, corrupt) + alpha * (_embed(hf_model, clean) - _embed(hf_model, corrupt))
            inputs: dict[Receiver, tuple[torch.Tensor, list[ir.Node]]] = {}
            logits = _forward(hf_model, start, inputs)[0]
            (logits[0, position, answer] - logits[0, position, wrong]).backward()
            for (receiver, channel), (copy, senders) in inputs.items():
                for sender in senders:
                    difference = (clean_out[sender] - corrupt_out[sender]).detach()
                    key = (sender, receiver, channel)
                    totals[key] = totals.get(key, 0.0) + float((difference * copy.grad).sum())
    return {key: value / (len(prompts) * len(ks)) for key, value in totals.items()}


def _embed(hf_model, tokens: torch.Tensor) -> torch.Tensor:
    transformer = hf_model.transformer
    return transformer.wte(tokens) + transformer.wpe(torch.arange(tokens.shape[1]))


def _forward(hf_model, start: torch.Tensor, inputs: dict) -> tuple[torch.Tensor, dict[ir.Node, torch.Tensor]]:
    """Logits and each sender's output from the residual `start` entering layer 0. Each receiver's
    input copy goes into `inputs` with the senders written before it reads."""
    start = start.detach().requires_grad_(True)
    outputs: dict[ir.Node, torch.Tensor] = {EMBED: start}
    residual = start
    for layer, block in enumerate(hf_model.transformer.h):
        written = [_head(hf_model, block, layer, h, residual, inputs, list(outputs)) for h in range(_n_heads(hf_model))]
        for h, out in enumerate(written):  # every head of a layer reads the residual before any writes
            outputs[ir.HeadNode(layer=layer, head=h)] = out
        residual = residual + sum(written) + block.attn.c_proj.bias
        mlp = ir.MlpNode(layer=layer)
        outputs[mlp] = block.mlp(block.ln_2(_receiver_input(residual, (mlp, ""), inputs, list(outputs))))
        residual = residual + outputs[mlp]
    final = _receiver_input(residual, (LOGITS, ""), inputs, list(outputs))
    return hf_model.lm_head(hf_model.transformer.ln_f(final)), outputs


def _head(hf_model, block, layer: int, h: int, residual: torch.Tensor, inputs: dict, senders: list[ir.Node]) -> torch.Tensor:
    """Head h's output z W_O (without W_O's bias), each of q, k and v from its own input copy."""
    d_model, d_head = residual.shape[-1], residual.shape[-1] // _n_heads(hf_model)
    node = ir.HeadNode(layer=layer, head=h)
    vectors = []
    for index, channel in enumerate("qkv"):
        x = block.ln_1(_receiver_input(residual, (node, channel), inputs, senders))
        columns = slice(index * d_model + h * d_head, index * d_model + (h + 1) * d_head)
        vectors.append(x @ block.attn.c_attn.weight[:, columns] + block.attn.c_attn.bias[columns])
    q, k, v = vectors
    scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
    causal = torch.ones(scores.shape[-1], scores.shape[-1], dtype=torch.bool).tril()
    z = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
    return z @ block.attn.c_proj.weight[h * d_head : (h + 1) * d_head]


def _receiver_input(residual: torch.Tensor, receiver: Receiver, inputs: dict, senders: list[ir.Node]) -> torch.Tensor:
    copy = residual.clone()
    copy.retain_grad()
    inputs[receiver] = (copy, senders)
    return copy


def _n_heads(hf_model) -> int:
    return hf_model.config.n_head
