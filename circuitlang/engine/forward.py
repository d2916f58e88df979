"""The hooked forward of some prompt rows: from the residual entering a layer to the residual
entering the final norm, and from there the logits the metric reads at the end position.

The blocks run one by one where that reproduces the model (`blocks_run_alone`): only the layers
from the start run, and `Shortcuts` can leave arithmetic out of them. Elsewhere (rotary positions,
passed to each block from the top) the bridge runs from the start layer and stops at the final
norm's input. Either way the unembedding is left out: the metric reads a few logits at one position.
"""

from __future__ import annotations

import torch

from circuitlang.engine.ablation_source import ActivationCache
from circuitlang.engine.family import Family
from circuitlang.engine.models import LoadedModel, unembedding
from circuitlang.engine.shortcuts import Shortcuts


class _StopBeforeUnembed(Exception):
    def __init__(self, residual: torch.Tensor) -> None:
        super().__init__("stop")
        self.residual = residual


def forward_from(
    model: LoadedModel, layer: int, residual: torch.Tensor, hooks: list, blocks_callable: bool, shortcuts: Shortcuts | None = None
) -> torch.Tensor:
    """Run from the residual entering `layer` with `hooks`; return the residual entering the final
    norm. `shortcuts`: arithmetic to leave out (only when the blocks run one by one); the hooks on
    what it replaces still fire where it has a value (an MLP's output, z)."""
    residual = residual.to(model.device)
    with model.bridge.hooks(fwd_hooks=hooks):
        if blocks_callable:
            return _through_blocks(model, layer, residual, shortcuts or Shortcuts())
        return _through_bridge(model, layer, residual)


def _through_blocks(model: LoadedModel, layer: int, residual: torch.Tensor, shortcuts: Shortcuts | None = None) -> torch.Tensor:
    """Only the blocks from `layer` on run (the bridge's start_at_layer runs them all)."""
    shortcuts = shortcuts or Shortcuts()
    for index, block in enumerate(Family.blocks(model.bridge)[layer:], start=layer):
        with shortcuts.applied(block, index):
            out = block(residual)
        residual = out[0] if isinstance(out, tuple) else out
    # The hook point on the final norm's input still fires: receivers of the logits (edge
    # ablation, path patching) read the residual there.
    return Family.at_final_residual(model.bridge, residual)


def _through_bridge(model: LoadedModel, layer: int, residual: torch.Tensor) -> torch.Tensor:
    def stop(tensor: torch.Tensor, hook: object) -> None:
        raise _StopBeforeUnembed(tensor)

    try:
        with model.bridge.hooks(fwd_hooks=[(Family.final_residual, stop)]):
            model.bridge(residual, start_at_layer=layer)
    except _StopBeforeUnembed as stopped:
        return stopped.residual
    raise RuntimeError("the model finished without reaching ln_final")  # an architecture we do not know


def blocks_run_alone(model: LoadedModel, clean: ActivationCache, n_prompts: int) -> bool:
    """Whether calling the blocks one by one reproduces the model on two of the clean prompts
    (true for GPT-2-style models; others, e.g. with rotary embeddings passed from the top, use
    the bridge)."""
    if model.family.rotary:  # the bridge passes the rotation to each block from the top
        return False
    rows = torch.arange(min(2, n_prompts))
    try:
        with torch.no_grad():
            alone = _through_blocks(model, 0, clean.resid_pre[0][rows].to(model.device))
    except Exception:  # any failure means: not callable alone; the bridge path is always right
        return False
    return bool(torch.allclose(alone.cpu(), clean.final_residual[rows].cpu(), atol=1e-5, rtol=1e-5))


def logits_at(model: LoadedModel, end_residual: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
    """Logits at the end position, for the requested token ids only (or all of them)."""
    bridge = model.bridge
    normalized = Family.final_norm(bridge)(end_residual)
    w_u, bias = unembedding(bridge)
    if columns is None:
        return _soft_capped(normalized @ w_u + (bias if bias is not None else 0), bridge.cfg)
    columns = columns.to(normalized.device)
    weights = w_u.T[columns]  # [rows, k, d_model]
    logits = torch.einsum("rd,rkd->rk", normalized, weights)
    return _soft_capped(logits + (bias[columns] if bias is not None else 0), bridge.cfg)


def _soft_capped(logits: torch.Tensor, cfg: object) -> torch.Tensor:
    """The model's own cap on its logits (Gemma 2: cap * tanh(logits / cap)); none when cap <= 0."""
    cap = float(getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0)
    return cap * torch.tanh(logits / cap) if cap > 0 else logits


def row_chunks(n_rows: int, size: int) -> list[list[int]]:
    """Row indices 0..n_rows-1 in chunks of `size`, in order: the chunks every run of a template
    is made in, so that a variant's numbers do not depend on what runs with it."""
    rows = list(range(n_rows))
    return [rows[i : i + size] for i in range(0, len(rows), size)]
