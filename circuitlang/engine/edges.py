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

from circuitlang.engine.ablation_source import AblationSource
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


@dataclass(frozen=True)
class EdgeState:
    """What an edge-ablated run has accumulated before some layer, per prompt row: the running
    total and the stored senders' differences. A variant that agrees with a cached edge-ablated
    run below that layer resumes from it there instead of running from layer 0."""

    total: torch.Tensor  # [rows, P, D]
    diffs: dict[_Key, torch.Tensor]  # sender key -> [rows, P, D]


def declared_edges(variant: Variant) -> dict[tuple, set[_Key]]:
    """(receiver key, channel) -> senders with a declared edge into it."""
    declared: dict[tuple, set[_Key]] = {}
    for edge in variant.edges or ():
        if edge.sender.kind == "embed" and variant.embed_edges == "all":
            continue  # the embeddings reach every receiver anyway
        for channel in edge.channels or ("in",):
            declared.setdefault((_key(edge.receiver), channel), set()).add(_key(edge.sender))
    return declared


def sender_layer(sender: _Key) -> int:
    """The layer whose run writes the sender's difference (-1: the embeddings, before layer 0)."""
    return -1 if sender[0] == "embed" else sender[1]


def edge_agreement(variant: Variant, base: Variant, n_layers: int) -> int:
    """The first layer where edge ablation of `variant` can read anything `base`'s does not:
    a receiver with other declared senders, a node kept in one and not the other, or a sender
    whose difference `base` does not store. Layers before it can be taken from base's run.
    The logits count as the last layer (they are read after it)."""
    if (variant.edges is None) != (base.edges is None) or variant.embed_edges != base.embed_edges:
        return 0
    mine, theirs = declared_edges(variant), declared_edges(base)
    layer = n_layers
    for receiver, channel in mine.keys() | theirs.keys():
        if mine.get((receiver, channel), set()) != theirs.get((receiver, channel), set()):
            layer = min(layer, n_layers - 1 if receiver[0] == "logits" else receiver[1])
    stored = set().union(*theirs.values())
    for sender in set().union(*mine.values()) - stored:
        layer = min(layer, max(sender_layer(sender), 0))
    for node in variant.nodes() ^ base.nodes():
        layer = min(layer, node.layer)
    return layer


def _in_circuit(kept: frozenset[ir.Node], receiver: _Key) -> bool:
    if receiver[0] == "logits":
        return True
    node = ir.HeadNode(layer=receiver[1], head=receiver[2]) if receiver[0] == "head" else ir.MlpNode(layer=receiver[1])
    return node in kept


def _fold_order(sender: _Key) -> tuple[int, int, int]:
    return (sender_layer(sender), 1 if sender[0] == "mlp" else 0, sender[2] if sender[0] == "head" else 0)


def _on(rows: torch.Tensor | slice, like: torch.Tensor) -> torch.Tensor | slice:
    return rows if isinstance(rows, slice) else rows.to(like.device)


def _sliced(rows: torch.Tensor) -> torch.Tensor | slice:
    """Contiguous rows as a slice: slicing avoids a copy per sender."""
    if int(rows[-1] - rows[0]) + 1 == rows.numel():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _declared_into(group: _RowGroup, receivers: Sequence[_Key], channel: str) -> list[_Key]:
    """The senders declared into any of `receivers` that the row group's circuit keeps, in a fixed
    order: a set's order follows string hashing, which changes from run to run, and so would the
    float rounding of their sum. Several receivers: the query heads of one key/value group, whose
    k and v inputs are one (the spec is checked to declare the same senders into each)."""
    senders: set[_Key] = set()
    for receiver in receivers:
        if _in_circuit(group.kept, receiver):
            senders |= group.declared.get((receiver, channel), set())
    return sorted(senders)


class EdgeHooks:
    """Hooks for one chunk of rows; rows of variants without edges are left untouched."""

    def __init__(
        self,
        model: LoadedModel,
        variants: Sequence[Variant],
        v_idx: torch.Tensor,
        rows: torch.Tensor,
        template: BoundTemplate,
        source: AblationSource,
        masks: Masks,
        start: int,
        resume: EdgeState | None = None,
        keep_totals: bool = False,
    ) -> None:
        self.bridge = model.bridge
        self.family = model.family
        self.weights = model.attention
        self.rows = rows
        self.source = source
        self.masks = masks
        self.n_layers = model.bridge.cfg.n_layers
        self.row_variants = [variants[int(v)] for v in v_idx]
        self.active = torch.tensor([v.edges is not None for v in self.row_variants])
        if start != 0 and bool(self.active.any()) and resume is None:
            raise ValueError("edge variants run from layer 0 or resume a cached edge run")  # the runner guarantees this
        self.start = start
        self.groups = self._groups(v_idx)
        self.stored_senders = {s for group in self.groups for senders in group.declared.values() for s in senders}
        self.readers = self._reader_layers()
        self.total: torch.Tensor | None = None if resume is None else resume.total
        self.diffs: dict[_Key, torch.Tensor] = {} if resume is None else dict(resume.diffs)
        # the senders declared into the logits are added, layer by layer, into one sum per row
        # group (index into self.groups) instead of all being held to the end (`_fold_before`)
        self.logits_kept: dict[int, torch.Tensor] = {}
        self.to_fold: set[_Key] = set(self.diffs)
        # layer -> the running total entering it: every layer's when the run is cached
        # (`keep_totals`), else only the current layer's (a parallel MLP reads it), so that a
        # batch holds a few [rows, P, D] tensors, not two per layer
        self.keep_totals = keep_totals
        self.entering: dict[int, torch.Tensor] = {}
        self.resid: torch.Tensor | None = None  # the residual entering the current layer

    def _groups(self, v_idx: torch.Tensor) -> list[_RowGroup]:
        """The chunk's rows of each edge variant: they share declared edges, so they are handled together."""
        groups = []
        for v in torch.unique(v_idx).tolist():
            variant = self.row_variants[int(torch.nonzero(v_idx == v)[0])]
            if variant.edges is not None:
                rows = _sliced(torch.nonzero(v_idx == v).flatten())
                groups.append(_RowGroup(rows, variant.nodes(), declared_edges(variant)))
        return groups

    def _reader_layers(self) -> dict[_Key, set[int]]:
        """Sender -> the layers whose receivers other than the logits read its difference."""
        readers: dict[_Key, set[int]] = {}
        for group in self.groups:
            for (receiver, _), senders in group.declared.items():
                for sender in senders:
                    layers = readers.setdefault(sender, set())
                    if receiver[0] != "logits":
                        layers.add(receiver[1])
        return readers

    def _keep(self, sender: _Key, diff: torch.Tensor) -> None:
        """Hold a sender's difference for the receivers that read it, until `_fold_before` has
        added it to the logits' sums and `_forget_read` has seen its last other reader pass."""
        if self.keep_totals or sender in self.readers:
            self.diffs[sender] = diff
            self.to_fold.add(sender)

    def _fold_before(self, layer: int) -> None:
        """Add the held differences of senders before `layer` into the logits' sum of each row
        group that declares them into the logits, in one order whatever the batch or the layer
        a run resumes at (the embeddings, then by layer, heads before the MLP), so that a
        variant's numbers do not depend on the variants it shares a batch with."""
        for sender in sorted((s for s in self.to_fold if sender_layer(s) < layer), key=_fold_order):
            self.to_fold.discard(sender)
            diff = self.diffs[sender]
            for index, group in enumerate(self.groups):
                if sender in group.declared.get((("logits",), "in"), ()):
                    part = diff[_on(group.rows, diff)]
                    self.logits_kept[index] = self.logits_kept[index] + part if index in self.logits_kept else part

    def _forget_read(self, layer: int) -> None:
        """In a batch (not a cached run), drop the differences folded into the logits' sums that
        no other receiver from `layer` on reads: a batch holds the differences still to be read,
        not one per declared sender."""
        self._fold_before(layer)
        for sender in [s for s in self.diffs if s not in self.to_fold and max(self.readers.get(s, set()), default=-1) < layer]:
            del self.diffs[sender]

    def hooks(self) -> list:
        family = self.family
        hooks: list = [(family.resid_pre(0), self._start_total)] if self.start == 0 else []
        for layer in range(self.start, self.n_layers):
            for channel in ("q", "k", "v"):
                hooks.append((family.head_input(channel, layer), self._head_input(layer, channel)))
            hooks.append((family.resid_pre(layer), self._remember_resid(layer)))
            hooks.append((family.activation("z", layer), self._add_heads(layer)))
            hooks.append((family.mlp_input(layer), self._mlp_input(layer)))
            hooks.append((family.activation("mlp_out", layer), self._add_mlp(layer)))
        hooks.append((family.final_residual, self._logits_input))
        return hooks

    def _total(self) -> torch.Tensor:
        """The running total: set before any layer's hooks, by `_start_total` at layer 0 or from the
        resumed state (the constructor refuses an edge run that would start elsewhere without one)."""
        assert self.total is not None, "edge hooks run from layer 0 or resume a cached edge run"
        return self.total

    def _entering_resid(self) -> torch.Tensor:
        """The residual entering the current layer: its resid_pre hook fires before its receivers' hooks."""
        assert self.resid is not None, "a layer's receivers are read after its resid_pre hook"
        return self.resid

    # ---- accumulate what the circuit adds over full ablation
    def _start_total(self, resid: torch.Tensor, hook: object) -> torch.Tensor:
        embed_diff = resid - self._embed_value(resid)
        declared_mode = torch.tensor([v.embed_edges == "declared" for v in self.row_variants], device=resid.device)
        self.total = torch.where(declared_mode.view(-1, 1, 1) & self.active.view(-1, 1, 1).to(resid.device), embed_diff, torch.zeros_like(resid))
        self._keep(("embed",), embed_diff)
        return resid

    def _embed_value(self, resid: torch.Tensor) -> torch.Tensor:
        return self.source.embed_value(self.rows).to(resid.device)

    def _remember_resid(self, layer: int):
        def hook(resid: torch.Tensor, hook: object) -> torch.Tensor:
            self.resid = resid
            if self.keep_totals:
                self._fold_before(layer)
            else:
                self.entering.clear()
                self._forget_read(layer)
            self.entering[layer] = self._total()
            return resid

        return hook

    def _add_heads(self, layer: int):
        w_out = self.weights.W_O[layer]  # [H, dh, D]
        stored = [head for head in range(w_out.shape[0]) if ("head", layer, head) in self.stored_senders]

        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:
            diff_z = z - self.source.value("z", layer, self.rows).to(z.device)
            for head in stored:  # one head's contribution only where an edge needs it
                self._keep(("head", layer, head), diff_z[:, :, head] @ w_out[head])
            self.total = self._total() + torch.einsum("rphe,hed->rpd", diff_z, w_out)
            return z

        return hook

    def _add_mlp(self, layer: int):
        def hook(out: torch.Tensor, hook: object) -> torch.Tensor:
            diff = out - self.source.value("mlp_out", layer, self.rows).to(out.device)
            if ("mlp", layer) in self.stored_senders:
                self._keep(("mlp", layer), diff)
            self.total = self._total() + diff
            return out

        return hook

    # ---- receivers read the residual without undeclared senders
    def _removed(self, receivers: Sequence[_Key], channel: str, like: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor | None:
        """Per row: the contributions the receiver must not see (zero for rows without edges);
        None when the receiver is in no row's circuit (it reads the residual as it is). `total`:
        what the receiver's input holds of the circuit's additions (default: all written so far)."""
        reading = [(index, group) for index, group in enumerate(self.groups) if any(_in_circuit(group.kept, r) for r in receivers)]
        if not reading:
            return None
        total = self._total() if total is None else total
        removed = torch.zeros_like(like)
        for index, group in reading:
            rows = _on(group.rows, like)
            if receivers == [("logits",)]:  # summed layer by layer (`_fold_before`)
                kept = self.logits_kept.get(index, torch.zeros_like(like[rows]))
            else:
                kept = sum((self.diffs[s][rows] for s in _declared_into(group, receivers, channel)), torch.zeros_like(like[rows]))
            removed[rows] = total[rows] - kept
        return removed

    def _head_input(self, layer: int, channel: str):
        """q of each head, or k and v of each key/value head (one per group of query heads with
        grouped-query attention), recomputed from the residual without the undeclared senders."""
        weight, bias = self.weights.input_weights(channel, layer)
        ln1 = self.family.attention_norm(self.bridge, layer)
        family = self.family

        def hook(vectors: torch.Tensor, hook: object) -> torch.Tensor:
            resid = self._entering_resid()
            out = vectors.clone()
            for index in range(vectors.shape[2]):
                heads = [index] if channel == "q" else list(family.group(index))
                removed = self._removed([("head", layer, head) for head in heads], channel, resid)
                if removed is None:
                    continue
                rows = removed.flatten(1).abs().sum(1) > 0
                if bool(rows.any()):
                    recomputed = ln1(resid[rows] - removed[rows]) @ weight[index] + bias[index]
                    if channel != "q":  # keys/values outside the heads' k positions stay ablated
                        kv = self.masks.kv[rows.to(self.masks.kv.device), layer][..., heads].all(-1)
                        recomputed = torch.where(kv.unsqueeze(-1).to(recomputed.device), recomputed, vectors[rows, :, index])
                    out[rows, :, index] = recomputed
            return out

        return hook

    def _mlp_input(self, layer: int):
        normalized = self.family.mlp_reads_normalized
        ln1 = self.family.attention_norm(self.bridge, layer)

        def hook(value: torch.Tensor, hook: object) -> torch.Tensor:
            # with parallel attention and MLP the MLP reads the residual entering its layer, which
            # holds none of the layer's heads' additions
            entering = self.entering[layer] if self.family.parallel_attn_mlp else None
            resid = self._entering_resid() if normalized else value
            removed = self._removed([("mlp", layer)], "in", resid, entering)
            if removed is None:
                return value
            # a norm shared with attention (GPT-J, Phi): the MLP's input is reached after it
            return ln1(resid - removed) if normalized else resid - removed

        return hook

    def _logits_input(self, resid: torch.Tensor, hook: object) -> torch.Tensor:
        if self.keep_totals:
            self._fold_before(self.n_layers)
        else:
            self._forget_read(self.n_layers)
        removed = self._removed([("logits",)], "in", resid)
        return resid if removed is None else resid - removed
