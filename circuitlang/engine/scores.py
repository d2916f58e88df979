"""Scores of single nodes on the clean prompts, for role claims. Each returns one value per prompt
(dataset order), so the verifier can bootstrap it like any other number.

- attention mass: how much of a head's attention, from its query positions, lands on the key
  positions (summed over keys, averaged over queries);
- copy score: the share of slot tokens that the head's OV circuit maps to themselves: the token,
  written as an answer would be (with the prompt set's answer prefix, so "dog" at the start of a
  prompt counts as " dog"), is among the top-k logits of W_U(OV(LN(W_E[token])))
  (the seeds' and Wang et al.'s copy score);
- next score: the same, for the next member of the sequence: slot i's token -> slot i+1's token,
  the last slot's token -> the answer;
- direct logit: the node's output at `end`, scaled by the clean run's final LayerNorm and read
  along the metric's direction (answer minus wrong token, or the answer's unembedding).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from circuitlang.data.prompts import template_slots
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.models import embedding_matrix, execution_device, onloaded, unembedding
from circuitlang.engine.runner import Engine
from circuitlang.engine.variants import resolve
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import METRICS


def _per_prompt(engine: Engine, compute) -> torch.Tensor:
    out = torch.empty(engine.bound.n_prompts, dtype=torch.float64)
    for template in engine.bound.templates:
        out[torch.tensor(template.prompt_indices)] = compute(template).double().cpu()
    return out


@torch.no_grad()
def attention_mass(engine: Engine, head: ir.Node, queries: Sequence[ir.Position], keys: Sequence[ir.Position]) -> torch.Tensor:
    assert head.kind == "head"

    def compute(template: BoundTemplate) -> torch.Tensor:
        q = list(resolve(tuple(queries), template.template, template.positions, template.seq_len))
        k = list(resolve(tuple(keys), template.template, template.positions, template.seq_len))
        name = engine.model.family.pattern(head.layer)
        _, cache = engine.model.bridge.run_with_cache(template.clean.to(engine.model.device), names_filter=lambda n: n == name)
        pattern = cache[name][:, head.head]  # [n, query, key]
        return pattern[:, q][:, :, k].sum(-1).mean(-1)

    return _per_prompt(engine, compute)


@torch.no_grad()
def ov_scores(engine: Engine, head: ir.Node, kind: str, top_k: int) -> torch.Tensor:
    """Copy (kind="copy") or next (kind="next") score of a head, per prompt."""
    assert head.kind == "head"
    bridge, weights = engine.model.bridge, engine.model.attention
    value_head = engine.model.family.kv_head(head.head)  # with grouped keys: its group's
    ov = weights.W_V[head.layer, value_head] @ weights.W_O[head.layer, head.head]  # [D, D]
    ln1 = Family.attention_norm(bridge, head.layer)
    w_e, (w_u, _) = embedding_matrix(bridge), unembedding(bridge)

    as_answer = _answer_forms(engine)

    def compute(template: BoundTemplate) -> torch.Tensor:
        pairs = _token_pairs(template, kind)  # [n, m, 2]: (source token, token it should map to)
        pairs[..., 1] = as_answer(pairs[..., 1])
        embeddings = w_e[pairs[..., 0].to(w_e.device)]
        logits = (ln1(embeddings) @ ov) @ w_u
        top = logits.topk(top_k, dim=-1).indices
        hits = (top == pairs[..., 1:2].to(top.device)).any(-1)
        return hits.double().mean(-1)

    return _per_prompt(engine, compute)


def _answer_forms(engine: Engine):
    """Map token ids to the id of the same word written as an answer (answer prefix + stripped text)."""
    tokenizer, prefix = engine.model.tokenizer, engine.bound.answer_prefix
    cache: dict[int, int] = {}

    def one(token: int) -> int:
        if token not in cache:
            ids = tokenizer(prefix + tokenizer.decode([token]).strip(), add_special_tokens=False)["input_ids"]
            cache[token] = ids[0] if len(ids) == 1 else token
        return cache[token]

    def convert(tokens: torch.Tensor) -> torch.Tensor:
        return torch.tensor([one(int(t)) for t in tokens.flatten()], dtype=torch.long).view(tokens.shape)

    return convert


def _token_pairs(template: BoundTemplate, kind: str) -> torch.Tensor:
    slots = template_slots(template.template)
    tokens = torch.stack([template.clean[:, template.positions[s]] for s in slots], dim=1)  # [n, slots]
    if kind == "copy":
        return torch.stack([tokens, tokens], dim=-1)
    answers = template.answers.get("answer")
    if answers is None:
        follow = tokens[:, 1:]
        return torch.stack([tokens[:, :-1], follow], dim=-1)
    answer = torch.tensor([ids[0] for ids in answers], dtype=torch.long)[:, None]
    return torch.stack([tokens, torch.cat([tokens[:, 1:], answer], dim=1)], dim=-1)


@torch.no_grad()
def direct_logit(engine: Engine, node: ir.Node) -> torch.Tensor:
    """The node's direct effect on the metric's direction at `end`, per prompt."""
    bridge = engine.model.bridge

    def compute(template: BoundTemplate) -> torch.Tensor:
        clean = engine.clean_cache(template)
        end = template.positions["end"]
        if node.kind == "head":
            output = clean.acts["z"][node.layer][:, end, node.head] @ engine.model.attention.W_O[node.layer, node.head]
        else:
            assert node.kind == "mlp"
            output = clean.acts["mlp_out"][node.layer][:, end]
        final = clean.final_residual[:, end]
        centring = not rms_norm(bridge)  # LayerNorm subtracts the mean; RMSNorm does not
        if centring:
            final, output = final - final.mean(-1, keepdim=True), output - output.mean(-1, keepdim=True)
        scale = final.pow(2).mean(-1, keepdim=True).add(norm_eps(bridge)).sqrt()  # frozen at the clean run's
        direction = _metric_direction(engine, template)  # [n, D]
        weight = final_norm_weight(bridge, final.shape[-1]).to(output.device)
        return ((output / scale) * weight * direction.to(output.device)).sum(-1)

    return _per_prompt(engine, compute)


def norm_eps(bridge: Any) -> float:  # a TransformerBridge, as `LoadedModel.bridge`
    return float(getattr(bridge.cfg, "eps", 1e-5))


def rms_norm(bridge: Any) -> bool:
    return str(getattr(bridge.cfg, "normalization_type", "LN")).startswith("RMS")


def final_norm_weight(bridge: Any, d_model: int) -> torch.Tensor:
    """The final norm's per-dimension gain as it acts. For RMSNorm it is read off the norm itself
    (Gemma's norms multiply by 1 + weight, Llama's by weight): on a vector of ones the norm's
    output times sqrt(1 + eps) is the gain."""
    norm = Family.final_norm(bridge)
    if rms_norm(bridge):  # the unembedding's device and dtype, read without its values (offloaded, they wait on meta)
        dtype = next(Family.unembedding(bridge).parameters()).dtype
        ones = torch.ones(1, d_model, device=execution_device(Family.unembedding(bridge)), dtype=dtype)
        return norm(ones)[0] * (1.0 + norm_eps(bridge)) ** 0.5
    with onloaded(norm):
        weight = getattr(norm, "w", None)
        if isinstance(weight, torch.Tensor) and weight.is_meta:  # the bridge's alias of the weight accelerate offloaded
            weight = getattr(norm, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else torch.ones(d_model)


def _metric_direction(engine: Engine, template: BoundTemplate) -> torch.Tensor:
    """Unembedding direction of the metric: answer minus wrong (mean over token sets)."""
    w_u, _ = unembedding(engine.model.bridge)  # [D, vocab]
    metric = engine.bound.metric
    if not metric.args:
        raise ValueError("direct_logit needs a metric with an answer (kl has none)")

    def mean_column(field: str) -> torch.Tensor:
        return torch.stack([w_u[:, list(ids)].mean(-1) for ids in template.answers[field]])

    direction = mean_column(metric.args[0])
    if METRICS[metric.name].contrast:
        direction = direction - mean_column(metric.args[1])
    return direction
