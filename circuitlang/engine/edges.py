"""Edge ablation: each circuit receiver sees a sender's clean contribution only along a declared edge.

The residual stream is a sum of contributions. In an ablated run, sender s writes `out_s`, where
its ablated value would have written `abl_s`; the difference `out_s - abl_s` is what the circuit
adds over full ablation (zero for ablated nodes). A receiver r (a head's q, k or v input, an MLP's
input, the logits) reads the residual minus the differences of every sender that has no declared
edge into it:  input_r = resid - (running_total - sum over declared senders s of diff_s).
The running total is accumulated layer by layer as the forward goes, so only the differences of
senders that appear on declared edges are stored. The embeddings count as a sender only with
`set embed_edges = declared`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from circuitlang.engine.ablation_source import AblationSource, hook_name
from circuitlang.engine.bind import BoundTemplate
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.variants import Masks, Variant
from circuitlang.ir import models as ir

_Key = tuple  # ("head", layer, head) | ("mlp", layer) | ("embed",)


def _key(node: ir.Node) -> _Key:
    if node.kind == "head":
        return ("head", node.layer, node.head)
    if node.kind == "mlp":
        return ("mlp", node.layer)
    return (node.kind,)


@dataclass(frozen=True)
class _RowGroup:
    rows: torch.Tensor | slice  # the chunk's rows of one edge variant
    kept: frozenset[ir.Node]  # the variant's nodes
    declared: dict[tuple, set[_Key]]  # (receiver key, channel) -> senders with a declared edge into it


def _in_circuit(kept: frozenset[ir.Node], receiver: _Key) -> bool:
    if receiver[0] == "logits":
        return True
    node = ir.Node(kind="head", layer=receiver[1], head=receiver[2]) if receiver[0] == "head" \
        else ir.Node(kind="mlp", layer=receiver[1])
    return node in kept


class EdgeHooks:
    """Hooks for one chunk of rows; rows of variants without edges are left untouched."""

    def __init__(self, model: LoadedModel, variants: Sequence[Variant], v_idx: torch.Tensor, rows: torch.Tensor,
                 template: BoundTemplate, source: AblationSource, masks: Masks, start: int) -> None:
        self.bridge = model.bridge
        self.rows = rows
        self.source = source
        self.masks = masks
        self.n_layers = model.bridge.cfg.n_layers
        self.row_variants = [variants[int(v)] for v in v_idx]
        self.active = torch.tensor([v.edges is not None for v in self.row_variants])
        if start != 0 and bool(self.active.any()):
            raise ValueError("edge variants run from layer 0")  # the runner guarantees this
        self.groups = self._groups(v_idx)
        self.stored_senders = {s for group in self.groups for senders in group.declared.values() for s in senders}
        self.total: torch.Tensor | None = None
        self.diffs: dict[_Key, torch.Tensor] = {}

    def _groups(self, v_idx: torch.Tensor) -> list[_RowGroup]:
        """The chunk's rows of each edge variant: they share declared edges, so they are handled together."""
        groups = []
        for v in torch.unique(v_idx).tolist():
            variant = self.row_variants[int(torch.nonzero(v_idx == v)[0])]
            if variant.edges is not None:
                rows = torch.nonzero(v_idx == v).flatten()
                if int(rows[-1] - rows[0]) + 1 == rows.numel():  # contiguous: slicing avoids a copy per sender
                    rows = slice(int(rows[0]), int(rows[-1]) + 1)
                groups.append(_RowGroup(rows, variant.nodes(), self._declared(variant)))
        return groups

    @staticmethod
    def _declared(variant: Variant) -> dict[tuple, set[_Key]]:
        """(receiver key, channel) -> senders with a declared edge into it."""
        declared: dict[tuple, set[_Key]] = {}
        for edge in variant.edges or ():
            if edge.sender.kind == "embed" and variant.embed_edges == "all":
                continue  # the embeddings reach every receiver anyway
            for channel in edge.channels or ("in",):
                declared.setdefault((_key(edge.receiver), channel), set()).add(_key(edge.sender))
        return declared

    def hooks(self) -> list:
        hooks: list = [("blocks.0.hook_resid_pre", self._start_total)]
        for layer in range(self.n_layers):
            for channel in ("q", "k", "v"):
                hooks.append((f"blocks.{layer}.attn.hook_{channel}", self._head_input(layer, channel)))
            hooks.append((f"blocks.{layer}.hook_resid_pre", self._remember_resid(layer)))
            hooks.append((hook_name("z", layer), self._add_heads(layer)))
            hooks.append((f"blocks.{layer}.ln2.hook_in", self._mlp_input(layer)))
            hooks.append((hook_name("mlp_out", layer), self._add_mlp(layer)))
        hooks.append(("ln_final.hook_in", self._logits_input))
        return hooks

    # ---- accumulate what the circuit adds over full ablation
    def _start_total(self, resid: torch.Tensor, hook: object) -> torch.Tensor:
        embed_diff = resid - self._embed_value(resid)
        declared_mode = torch.tensor([v.embed_edges == "declared" for v in self.row_variants], device=resid.device)
        self.total = torch.where(declared_mode.view(-1, 1, 1) & self.active.view(-1, 1, 1).to(resid.device),
                                 embed_diff, torch.zeros_like(resid))
        self.diffs[("embed",)] = embed_diff
        return resid

    def _embed_value(self, resid: torch.Tensor) -> torch.Tensor:
        return self.source.embed_value(self.rows).to(resid.device)

    def _remember_resid(self, layer: int):
        def hook(resid: torch.Tensor, hook: object) -> torch.Tensor:
            self.diffs[("resid_pre", layer)] = resid
            return resid
        return hook

    def _add_heads(self, layer: int):
        w_out = self.bridge.W_O[layer]  # [H, dh, D]

        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:
            diff_z = z - self.source.value("z", layer, self.rows).to(z.device)
            per_head = torch.einsum("rphe,hed->rphd", diff_z, w_out)
            for head in range(z.shape[2]):
                if ("head", layer, head) in self.stored_senders:
                    self.diffs[("head", layer, head)] = per_head[:, :, head]
            self.total = self.total + per_head.sum(2)  # type: ignore[operator]
            return z
        return hook

    def _add_mlp(self, layer: int):
        def hook(out: torch.Tensor, hook: object) -> torch.Tensor:
            diff = out - self.source.value("mlp_out", layer, self.rows).to(out.device)
            if ("mlp", layer) in self.stored_senders:
                self.diffs[("mlp", layer)] = diff
            self.total = self.total + diff  # type: ignore[operator]
            return out
        return hook

    # ---- receivers read the residual without undeclared senders
    def _removed(self, receiver: _Key, channel: str, like: torch.Tensor) -> torch.Tensor:
        """Per row: the contributions the receiver must not see (zero for rows without edges)."""
        removed = torch.zeros_like(like)
        for group in self.groups:
            if not _in_circuit(group.kept, receiver):
                continue
            rows = group.rows if isinstance(group.rows, slice) else group.rows.to(like.device)
            kept = sum((self.diffs[s][rows] for s in group.declared.get((receiver, channel), ())),
                       torch.zeros_like(like[rows]))
            removed[rows] = self.total[rows] - kept  # type: ignore[index]
        return removed

    def _head_input(self, layer: int, channel: str):
        weight = {"q": self.bridge.W_Q, "k": self.bridge.W_K, "v": self.bridge.W_V}[channel][layer]
        bias = {"q": self.bridge.b_Q, "k": self.bridge.b_K, "v": self.bridge.b_V}[channel][layer]
        ln1 = self.bridge.blocks[layer].ln1

        def hook(vectors: torch.Tensor, hook: object) -> torch.Tensor:
            resid = self.diffs[("resid_pre", layer)]
            out = vectors.clone()
            for head in range(vectors.shape[2]):
                removed = self._removed(("head", layer, head), channel, resid)
                rows = removed.flatten(1).abs().sum(1) > 0
                if bool(rows.any()):
                    recomputed = ln1(resid[rows] - removed[rows]) @ weight[head] + bias[head]
                    if channel != "q":  # keys/values outside the head's k positions stay ablated
                        keep = self.masks.kv[rows.to(self.masks.kv.device), layer, :, head].unsqueeze(-1).to(recomputed.device)
                        recomputed = torch.where(keep, recomputed, vectors[rows, :, head])
                    out[rows, :, head] = recomputed
            return out
        return hook

    def _mlp_input(self, layer: int):
        def hook(resid_mid: torch.Tensor, hook: object) -> torch.Tensor:
            return resid_mid - self._removed(("mlp", layer), "in", resid_mid)
        return hook

    def _logits_input(self, resid: torch.Tensor, hook: object) -> torch.Tensor:
        return resid - self._removed(("logits",), "in", resid)
