"""Activations collected once per template, and the ablation values computed from them.

`collect` runs the model over token rows and keeps what the engine reuses: the residual stream
entering every layer (to start variants late), the final residual, and every head's z, key and
value and every MLP's output (ablation values, edge contributions). `AblationSource` turns one such
cache into the value an ablated (node, position) takes: the mean over the template's corrupt (or
clean) prompts at that position, the paired corrupt prompt's value, or zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import torch

from circuitlang.engine.family import Family
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.variants import Masks
from circuitlang.ir import models as ir

KINDS = ("z", "k", "v", "mlp_out")


@dataclass(frozen=True)
class ActivationCache:
    resid_pre: tuple[torch.Tensor, ...]  # per layer [n, P, D]
    final_residual: torch.Tensor  # [n, P, D], entering ln_final
    acts: dict[str, tuple[torch.Tensor, ...]]  # kind -> per layer; z/k/v [n, P, H, dh], mlp_out [n, P, D]


hook_name = Family.activation  # (kind, layer) -> the hook point of that activation


@torch.no_grad()
def collect(model: LoadedModel, tokens: torch.Tensor, batch_size: int) -> ActivationCache:
    n_layers = model.bridge.cfg.n_layers
    names = [Family.resid_pre(layer) for layer in range(n_layers)] + [Family.final_residual]
    names += [hook_name(kind, layer) for kind in KINDS for layer in range(n_layers)]
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for start in range(0, tokens.shape[0], batch_size):
        _, cache = model.bridge.run_with_cache(tokens[start:start + batch_size].to(model.device),
                                               names_filter=lambda name: name in parts)
        for name in names:
            parts[name].append(cache[name].detach())
    joined = {name: torch.cat(chunks) for name, chunks in parts.items()}
    return ActivationCache(
        resid_pre=tuple(joined[Family.resid_pre(layer)] for layer in range(n_layers)),
        final_residual=joined[Family.final_residual],
        acts={kind: tuple(joined[hook_name(kind, layer)] for layer in range(n_layers)) for kind in KINDS},
    )


def per_kv_head(keep: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    """Keep masks [..., H] of query heads -> [..., H_kv] of the key/value heads they read: with
    grouped-query attention a key is clean where every query head of its group keeps it (the
    spec is checked so that the circuit's heads of a group agree; heads outside it keep all)."""
    if keep.shape[-1] == n_kv_heads:
        return keep
    return keep.unflatten(-1, (n_kv_heads, keep.shape[-1] // n_kv_heads)).all(-1)


@dataclass(frozen=True)
class AblationSource:
    """Ablation values per kind and layer, either one row shared by all prompts (mean, zero) or
    one row per prompt (resample)."""

    values: dict[str, tuple[torch.Tensor, ...]]
    per_prompt: bool

    @classmethod
    def build(cls, ablation: ir.Ablation, clean: ActivationCache, corrupt: ActivationCache | None) -> "AblationSource":
        """Values from the clean cache (`mean of clean`, and the shapes for `zero`) or the corrupt one."""
        if ablation.kind == "zero":
            values = {k: tuple(torch.zeros_like(t[:1]) for t in clean.acts[k]) for k in KINDS}
            return cls(values | {"embed": (torch.zeros_like(clean.resid_pre[0][:1]),)}, False)
        cache = clean if ablation.source == "clean" else corrupt
        if cache is None:
            raise ValueError("a corrupt ablation needs the corrupt prompts' activations")
        # The embeddings' ablation value is only used by edge ablation with `embed_edges = declared`.
        acts = dict(cache.acts) | {"embed": (cache.resid_pre[0],)}
        if ablation.kind == "resample":
            return cls(acts, True)
        return cls({k: tuple(t.mean(0, keepdim=True) for t in layers) for k, layers in acts.items()}, False)

    def value(self, kind: str, layer: int, rows: torch.Tensor) -> torch.Tensor:
        """The ablation value for the given prompt rows: [rows or 1, P, ...]."""
        tensor = self.values[kind][layer]
        return tensor[rows] if self.per_prompt else tensor

    def embed_value(self, rows: torch.Tensor) -> torch.Tensor:
        return self.value("embed", 0, rows)

    def hooks(self, masks: Masks, rows: torch.Tensor, start: int, attention_given: Collection[int] = ()) -> list:
        """Forward hooks replacing every masked-out activation from layer `start` on. Layers in
        `attention_given` get no attention hooks: the runner writes their attention itself, the
        ablated keys, values and z included (runner.Shortcuts)."""
        hooks = []
        for layer in range(start, masks.z.shape[1]):
            if layer not in attention_given:
                hooks += self._attention_hooks(masks, rows, layer)
            hooks.append((hook_name("mlp_out", layer),
                          self._replace("mlp_out", layer, rows, masks.mlp[:, layer].unsqueeze(-1))))
        return hooks

    def _attention_hooks(self, masks: Masks, rows: torch.Tensor, layer: int) -> list:
        hooks = []
        keep_kv = per_kv_head(masks.kv[:, layer], self.values["k"][layer].shape[2])
        if not bool(keep_kv.all()):
            for kind in ("k", "v"):
                hooks.append((hook_name(kind, layer), self._replace(kind, layer, rows, keep_kv.unsqueeze(-1))))
        hooks.append((hook_name("z", layer), self._replace("z", layer, rows, masks.z[:, layer].unsqueeze(-1))))
        return hooks

    def _replace(self, kind: str, layer: int, rows: torch.Tensor, keep: torch.Tensor):
        ablated = self.value(kind, layer, rows)

        def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
            return torch.where(keep.to(activation.device), activation, ablated.to(activation.device))
        return hook
