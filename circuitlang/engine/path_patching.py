"""Path patching (Wang et al. 2022, appendix B): the effect of senders S on receivers R.

1. Run the clean prompts with every sender's output taken from the paired corrupt prompt and every
   other head frozen to its clean output; record the receivers' inputs (a head's q, k or v, an
   MLP's input, or the residual entering the unembedding for the `logits` receiver).
2. Rerun the clean prompts with only those receiver inputs replaced by the recorded ones.
The metric of the second run, per prompt, is the result; compared with the clean metric it measures
what flows from S to R along direct paths. MLPs are recomputed in step 1, as in the paper; with
`freeze_mlps=True` they are frozen too, which isolates the single edge S -> R (the quantity
TransformerLens calls direct path patching, and the effect `verify` reports for a declared edge).
A sender may be a head, an MLP or the embeddings.

Both runs equal the clean run before the first layer anything in them changes (the earliest sender
in step 1, the earliest receiver in step 2), so they start there from the cached clean residual;
step 1 stops once the last receiver's input is recorded.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from circuitlang.engine.ablation_source import ActivationCache
from circuitlang.engine.bind import BoundPromptSet, BoundTemplate
from circuitlang.engine.family import Family
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.readouts import Readout
from circuitlang.engine.variants import Receiver, Variant
from circuitlang.ir import models as ir


class _Recorded(Exception):
    """Raised on entering the layer after the last receiver: step 1 has what it needs."""


class PatchingEngine(Protocol):
    """What path patching and the patching sweeps use of an `Engine`: an `Engine` itself, or the
    wrapper of one with which `patch` counts the rows it runs."""

    @property
    def n_layers(self) -> int: ...

    @property
    def n_heads(self) -> int: ...

    @property
    def bound(self) -> BoundPromptSet: ...

    @property
    def model(self) -> LoadedModel: ...

    def run(self, variants: Sequence[Variant], readout: Readout, base: Variant | None = None) -> torch.Tensor: ...

    def forward_from(self, layer: int, residual: torch.Tensor, hooks: list) -> torch.Tensor: ...

    def clean_cache(self, template: BoundTemplate) -> ActivationCache: ...

    def corrupt_cache(self, template: BoundTemplate) -> ActivationCache: ...

    def logits_at(self, end_residual: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor: ...


def path_patch(
    engine: PatchingEngine, senders: Sequence[ir.Node], receivers: Sequence[Receiver], readout: Readout, freeze_mlps: bool = False
) -> torch.Tensor:
    """The metric per prompt (dataset order) after patching S -> R: float64 [n_prompts]."""
    return path_patch_each(engine, senders, [tuple(receivers)], readout, freeze_mlps)[0]


def path_patch_each(
    engine: PatchingEngine, senders: Sequence[ir.Node], groups: Sequence[Sequence[Receiver]], readout: Readout, freeze_mlps: bool = False
) -> list[torch.Tensor]:
    """Path patching of S into each group of receivers on its own, sharing step 1 (one recording
    run for all groups, then one replay per group): [n_prompts] per group, dataset order."""
    out = [torch.empty(engine.bound.n_prompts, dtype=torch.float64) for _ in groups]
    for template in engine.bound.templates:
        rows = torch.tensor(template.prompt_indices)
        recorded = _record(engine, template, senders, [r for group in groups for r in group], freeze_mlps)
        for values, group in zip(out, groups):
            values[rows] = _replay(engine, template, group, recorded, readout).double().cpu()
    return out


@torch.no_grad()
def _record(
    engine: PatchingEngine, template: BoundTemplate, senders: Sequence[ir.Node], receivers: Sequence[Receiver], freeze_mlps: bool
) -> dict[str, torch.Tensor]:
    """Step 1: the receivers' inputs with the senders patched from the corrupt run."""
    clean, corrupt = engine.clean_cache(template), engine.corrupt_cache(template)
    recorded: dict[str, torch.Tensor] = {}
    family = engine.model.family
    hooks = _sender_hooks(engine, clean, corrupt, senders, freeze_mlps) + _recorders(family, receivers, recorded)
    layers = [_layer(r.node, engine.n_layers) for r in receivers]
    if max(layers) + 1 < engine.n_layers:
        hooks.append((family.resid_pre(max(layers) + 1), _stop))
    if any(sender.kind == "embed" for sender in senders):
        # The embeddings as a sender: the first run starts from the corrupt prompt's embeddings
        # (every head, and with freeze_mlps every MLP, still frozen to its clean output).
        first, residual = 0, corrupt.resid_pre[0]
    else:  # every receiver's input must still be read: a sender after it leaves it clean
        first = min([*(_sender_layer(sender) for sender in senders), *layers, engine.n_layers - 1])
        residual = clean.resid_pre[first]
    try:
        engine.forward_from(first, residual, hooks)
    except _Recorded:
        pass
    return recorded


def _stop(activation: torch.Tensor, hook: object) -> None:
    raise _Recorded


def _sender_layer(node: ir.Node) -> int:
    """The layer a head or MLP sender writes in (the embeddings are handled apart; the logits send nothing)."""
    assert node.layer is not None, f"{node} is not a sender in a layer"
    return node.layer


def _layer(node: ir.Node, n_layers: int) -> int:
    """The layer whose run reads the node's input (the logits: after the last layer)."""
    assert node.kind != "embed", "the embeddings read nothing"
    return n_layers if node.kind == "logits" else node.layer


@torch.no_grad()
def _replay(
    engine: PatchingEngine, template: BoundTemplate, receivers: Sequence[Receiver], recorded: dict[str, torch.Tensor], readout: Readout
) -> torch.Tensor:
    """Step 2: the clean run with only these receivers' inputs replaced; the metric per row."""
    first = min(min(_layer(r.node, engine.n_layers) for r in receivers), engine.n_layers - 1)
    final = engine.forward_from(first, engine.clean_cache(template).resid_pre[first], _replayers(engine.model.family, receivers, recorded))
    rows = torch.arange(template.n_prompts)
    columns = readout.columns(template)
    logits = engine.logits_at(final[:, template.positions["end"]], None if columns is None else columns)
    return readout.reduce(template, logits, rows)


def _sender_hooks(
    engine: PatchingEngine, clean: ActivationCache, corrupt: ActivationCache, senders: Sequence[ir.Node], freeze_mlps: bool
) -> list:
    hooks, family = [], engine.model.family
    for layer in range(engine.n_layers):
        patched_heads = [s.head for s in senders if s.kind == "head" and s.layer == layer]
        hooks.append((family.activation("z", layer), _heads_from(clean.acts["z"][layer], corrupt.acts["z"][layer], patched_heads)))
        if any(s.kind == "mlp" and s.layer == layer for s in senders):
            hooks.append((family.activation("mlp_out", layer), _constant(corrupt.acts["mlp_out"][layer])))
        elif freeze_mlps:
            hooks.append((family.activation("mlp_out", layer), _constant(clean.acts["mlp_out"][layer])))
    return hooks


def _heads_from(clean_z: torch.Tensor, corrupt_z: torch.Tensor, patched: list[int]):
    """Every head frozen to its clean z, the patched ones to their corrupt z."""
    frozen = clean_z.clone()
    frozen[:, :, patched] = corrupt_z[:, :, patched]
    return _constant(frozen)


def _constant(value: torch.Tensor):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        return value.to(activation.device)

    return hook


def _recorders(family: Family, receivers: Sequence[Receiver], recorded: dict[str, torch.Tensor]) -> list:
    hooks = []
    for name in _receiver_hook_names(family, receivers):

        def record(activation: torch.Tensor, hook: object, name: str = name) -> torch.Tensor:
            recorded[name] = activation.clone()
            return activation

        hooks.append((name, record))
    return hooks


def _replayers(family: Family, receivers: Sequence[Receiver], recorded: dict[str, torch.Tensor]) -> list:
    hooks = []
    for receiver in receivers:
        if receiver.node.kind != "head":
            name = _input_hook(family, receiver.node)
            hooks.append((name, _constant(recorded[name])))
            continue
        for channel in receiver.channels:
            name = family.head_input(channel, receiver.node.layer)
            # with grouped-query attention a head's k and v are its group's: patching them patches
            # what every query head of the group reads (docs/engine.md, "Model families")
            index = receiver.node.head if channel == "q" else family.kv_head(receiver.node.head)
            hooks.append((name, _one_head(recorded[name], index)))
    return hooks


def _one_head(recorded: torch.Tensor, head: int):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        patched = activation.clone()
        patched[:, :, head] = recorded[:, :, head].to(activation.device)
        return patched

    return hook


def _input_hook(family: Family, node: ir.Node) -> str:
    """The hook on a single-input receiver's input (it changes only that input, not the residual)."""
    assert node.kind != "embed", "the embeddings read nothing"
    return family.final_residual if node.kind == "logits" else family.mlp_input(node.layer)


def _receiver_hook_names(family: Family, receivers: Sequence[Receiver]) -> list[str]:
    names = []
    for receiver in receivers:
        if receiver.node.kind != "head":
            names.append(_input_hook(family, receiver.node))
        else:
            names.extend(family.head_input(c, receiver.node.layer) for c in receiver.channels)
    return list(dict.fromkeys(names))
