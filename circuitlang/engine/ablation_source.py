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


class _ReachedFinalResidual(Exception):
    """Raised by the hook on ln_final's input: the forward stops before the unembedding."""


@torch.no_grad()
def collect(model: LoadedModel, tokens: torch.Tensor, batch_size: int, mean: bool = False) -> ActivationCache:
    """The activations the engine reuses, for every row of `tokens` ([n, P, ...] each), or with
    `mean` their mean over the rows ([1, P, ...]). Rows run `batch_size` at a time and each batch
    is written into tensors allocated once (or added into the means), so that no more than the
    result and one batch's activations are alive at once; the forward stops at ln_final's input,
    since no logits are needed (GPT-2's, vocabulary-wide, are larger than the whole cache)."""
    n_layers, n = model.bridge.cfg.n_layers, tokens.shape[0]
    names = [Family.resid_pre(layer) for layer in range(n_layers)] + [Family.final_residual]
    names += [hook_name(kind, layer) for kind in KINDS for layer in range(n_layers)]
    joined: dict[str, torch.Tensor] = {}
    for start in range(0, n, batch_size):
        for name, activation in _run_to_final_residual(model, tokens[start : start + batch_size], names).items():
            if mean:
                part = activation.sum(0, keepdim=True)
                joined[name] = joined[name] + part if name in joined else part
            else:
                if name not in joined:
                    joined[name] = activation.new_empty((n, *activation.shape[1:]))
                joined[name][start : start + activation.shape[0]] = activation
    if mean:
        joined = {name: total / n for name, total in joined.items()}
    return ActivationCache(
        resid_pre=tuple(joined[Family.resid_pre(layer)] for layer in range(n_layers)),
        final_residual=joined[Family.final_residual],
        acts={kind: tuple(joined[hook_name(kind, layer)] for layer in range(n_layers)) for kind in KINDS},
    )


def _run_to_final_residual(model: LoadedModel, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    recorded: dict[str, torch.Tensor] = {}

    def recorder(name: str):
        def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
            recorded[name] = activation.detach()
            if name == Family.final_residual:
                raise _ReachedFinalResidual
            return activation

        return hook

    with model.bridge.hooks(fwd_hooks=[(name, recorder(name)) for name in names]):
        try:
            model.bridge(tokens.to(model.device))
        except _ReachedFinalResidual:
            pass
    missing = [name for name in names if name not in recorded]
    if missing:  # an architecture whose hook points we do not know
        raise RuntimeError(f"the model's forward did not reach {', '.join(missing[:3])}")
    return recorded


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
        ablated keys, values and z included (shortcuts.Shortcuts)."""
        hooks = []
        for layer in range(start, masks.z.shape[1]):
            if layer not in attention_given:
                hooks += self._attention_hooks(masks, rows, layer)
            hooks.append((hook_name("mlp_out", layer), self._replace("mlp_out", layer, rows, masks.mlp[:, layer].unsqueeze(-1))))
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
