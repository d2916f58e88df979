"""Where each head reads from on the clean prompts: attention between named positions, raw and
weighted by the size of what each key writes, `attention(q, k) * |v_k W_O|` (Kobayashi et al.
2020), which `discover.roles` names heads by.
"""

from __future__ import annotations

import torch

from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.runner import Engine


@torch.no_grad()
def attention_between(engine: Engine, names: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, averaged over every prompt of the engine's set: attention [head, query, key]
    between the named positions `names`, and the same weighted by |v_k W_O|."""
    totals = [torch.zeros(2, engine.n_heads, len(names), len(names)) for _ in range(engine.n_layers)]
    n = 0
    for template in engine.bound.templates:
        index = torch.tensor([template.positions[name] for name in names])
        for layer, (pattern, moved) in enumerate(zip(*_attention(engine, template))):
            picked = torch.stack([pattern, moved])[:, :, :, index][:, :, :, :, index]  # [2, n, head, q, k]
            totals[layer] += picked.sum(1).cpu()
        n += template.n_prompts
    return [t[0] / n for t in totals], [t[1] / n for t in totals]


def _attention(engine: Engine, template: BoundTemplate) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: attention [n, head, query, key], and attention weighted by |v_k W_O|."""
    model = engine.model
    family = model.family
    wanted = {name for layer in range(engine.n_layers) for name in (family.pattern(layer), family.head_input("v", layer))}
    _, cache = model.bridge.run_with_cache(template.clean.to(model.device), names_filter=lambda n: n in wanted)
    heads_kv = [family.kv_head(h) for h in range(family.n_heads)]  # each query head reads its group's values
    patterns, moved = [], []
    for layer in range(engine.n_layers):
        pattern = cache[family.pattern(layer)]
        values = cache[family.head_input("v", layer)][:, :, heads_kv]  # [n, key, head, d_head]
        written = torch.einsum("nkhd,hde->nkhe", values, model.attention.W_O[layer]).norm(dim=-1)  # [n, key, head]
        patterns.append(pattern)
        moved.append(pattern * written.permute(0, 2, 1)[:, :, None, :])
    return patterns, moved
