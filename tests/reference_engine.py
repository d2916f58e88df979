"""A slow, obvious reference for the engine, written independently of it.

One forward per variant and per prompt, computed by hand from the model's weights (GPT-2
architecture): every head is computed on its own from an explicit sum of the contributions it is
allowed to see, and every ablated (node, position) is overwritten in a plain loop. Ablation values
are computed here too, from separate runs of the Hugging Face model. The engine must match this.
"""

from __future__ import annotations

import math

import torch

from circuitlang.engine.variants import Variant, resolve


def ablation_values(hf_model, tokens: torch.Tensor, kind: str) -> dict:
    """Per prompt (resample) or averaged (mean) z, k, v, mlp_out and embedding, by a hand forward."""
    runs = [hand_forward(hf_model, tokens[i : i + 1], None) for i in range(tokens.shape[0])]
    stacked = {key: torch.cat([run[key] for run in runs]) for key in runs[0] if key != "logits"}
    if kind == "mean":
        return {key: value.mean(0, keepdim=True) for key, value in stacked.items()}
    if kind == "zero":
        return {key: torch.zeros_like(value[:1]) for key, value in stacked.items()}
    return stacked


def hand_forward(hf_model, tokens: torch.Tensor, plan: dict | None) -> dict:
    """GPT-2 forward for a batch of one prompt. `plan` (or None for the clean run) holds the
    variant's keep sets, its declared edges and the ablation values for this prompt."""
    transformer = hf_model.transformer
    n_layers, n_heads = len(transformer.h), hf_model.config.n_head
    d_head = hf_model.config.n_embd // n_heads
    positions = torch.arange(tokens.shape[1])
    embed = transformer.wte(tokens) + transformer.wpe(positions)
    contributions = [("embed", embed, plan["abl"]["embed"][:, 0] if plan else embed)]
    record = {key: [] for key in ("z", "k", "v", "mlp_out")}
    record["embed"] = [embed]
    for layer in range(n_layers):
        block = transformer.h[layer]
        w_qkv, b_qkv = block.attn.c_attn.weight, block.attn.c_attn.bias  # Conv1D: x @ W + b, [D, 3D]
        w_o = block.attn.c_proj.weight  # [D, D], rows are head-major (h, dh)
        zs, ks, vs, written = [], [], [], []  # heads of one layer all read the residual before any writes
        for head in range(n_heads):
            vectors = []
            for index, channel in enumerate("qkv"):
                x = block.ln_1(_visible(contributions, ("head", layer, head), channel, plan))
                columns = slice(index * hf_model.config.n_embd + head * d_head, index * hf_model.config.n_embd + (head + 1) * d_head)
                vectors.append(x @ w_qkv[:, columns] + b_qkv[columns])
            q, k, v = vectors
            if plan:
                keep_kv = plan["keep_kv"][layer][head]
                for pos in range(tokens.shape[1]):
                    if pos not in keep_kv:
                        k[:, pos] = plan["abl"]["k"][:, layer][:, pos, head]
                        v[:, pos] = plan["abl"]["v"][:, layer][:, pos, head]
            scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
            causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril()
            scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
            z = scores.softmax(-1) @ v
            if plan:
                for pos in range(tokens.shape[1]):
                    if pos not in plan["keep_z"][layer][head]:
                        z[:, pos] = plan["abl"]["z"][:, layer][:, pos, head]
            zs.append(z), ks.append(k), vs.append(v)
            w_head = w_o[head * d_head : (head + 1) * d_head]
            ablated_z = plan["abl"]["z"][:, layer][:, :, head] if plan else z
            written.append((("head", layer, head), z @ w_head, ablated_z @ w_head))
        contributions.extend(written)
        contributions.append(("bias", block.attn.c_proj.bias, block.attn.c_proj.bias))
        mlp_out = block.mlp(block.ln_2(_visible(contributions, ("mlp", layer), "in", plan)))
        if plan:
            for pos in range(tokens.shape[1]):
                if pos not in plan["keep_mlp"][layer]:
                    mlp_out[:, pos] = plan["abl"]["mlp_out"][:, layer][:, pos]
        contributions.append((("mlp", layer), mlp_out, plan["abl"]["mlp_out"][:, layer] if plan else mlp_out))
        record["z"].append(torch.stack(zs, 2)), record["k"].append(torch.stack(ks, 2))
        record["v"].append(torch.stack(vs, 2)), record["mlp_out"].append(mlp_out)
    final = transformer.ln_f(_visible(contributions, ("logits",), "in", plan))
    out = {key: torch.stack(values, 1) for key, values in record.items()}
    out["logits"] = hf_model.lm_head(final)
    return out


def _visible(contributions: list, receiver: tuple, channel: str, plan: dict | None) -> torch.Tensor:
    """The receiver's input: each sender's real output if the receiver may see it, else its
    ablated value. Without edges (or outside the circuit) a receiver sees everything."""
    total = 0
    for sender, out, ablated in contributions:
        total = total + (out if _sees(sender, receiver, channel, plan) else ablated)
    return total


def _sees(sender, receiver: tuple, channel: str, plan: dict | None) -> bool:
    if plan is None or plan["edges"] is None or sender == "bias":
        return True
    if sender == "embed" and plan["embed_edges"] == "all":
        return True
    if receiver != ("logits",) and receiver not in plan["kept"]:
        return True
    return (sender, receiver, channel) in plan["edges"]


def edge_keys(variant: Variant) -> set | None:
    if variant.edges is None:
        return None
    keys = set()
    for edge in variant.edges:
        sender = _node_key(edge.sender)
        for channel in edge.channels or ("in",):
            keys.add((sender, _node_key(edge.receiver), channel))
    return keys


def _node_key(node) -> object:
    if node.kind == "head":
        return ("head", node.layer, node.head)
    if node.kind == "mlp":
        return ("mlp", node.layer)
    return "embed" if node.kind == "embed" else ("logits",)


def plan_for(variant: Variant, template: str, named: dict, n_tokens: int, n_layers: int, n_heads: int, abl: dict) -> dict:
    everything = set(range(n_tokens))
    keep_z = [[set() for _ in range(n_heads)] for _ in range(n_layers)]
    keep_kv = [[set(everything) for _ in range(n_heads)] for _ in range(n_layers)]
    keep_mlp = [set() for _ in range(n_layers)]
    for head in variant.heads:
        keep_z[head.layer][head.head] = set(everything if head.q is None else resolve(head.q, template, named, n_tokens))
        if head.k is not None:
            keep_kv[head.layer][head.head] = set(resolve(head.k, template, named, n_tokens))
    for mlp in variant.mlps:
        keep_mlp[mlp.layer] = set(everything if mlp.at is None else resolve(mlp.at, template, named, n_tokens))
    kept = {("head", h.layer, h.head) for h in variant.heads} | {("mlp", m.layer) for m in variant.mlps}
    return {
        "keep_z": keep_z,
        "keep_kv": keep_kv,
        "keep_mlp": keep_mlp,
        "abl": abl,
        "edges": edge_keys(variant),
        "kept": kept,
        "embed_edges": variant.embed_edges,
    }
