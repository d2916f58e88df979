"""What every search needs: the model's nodes, and F of candidate circuits on one prompt set.

A `Scorer` wraps a run and a prompt set: F(M) and F(∅) once, then the mean metric (or mean KL to
the full model) of any list of variants, evaluated in one batched engine call, with a count of
variants evaluated so that searches can report their cost, and a meter told of every prompt row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from circuitlang.compile.plan import PATCH_RUNS_PER_EDGE
from circuitlang.engine.session import Session
from circuitlang.engine.readouts import Readout
from circuitlang.engine.runner import Engine
from circuitlang.verification.criteria import faithfulness_point
from circuitlang.engine.variants import HeadKeep, MlpKeep, Variant
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import feeds
from circuitlang.verification.progress import Meter

NO_SPAN = ir.Span(path="<discover>", line=1, column=1, end_line=1, end_column=1)  # for IR built by a search
KL = ir.Metric(name="kl", args=(), arg_spans=(), span=NO_SPAN)


def head(layer: int, index: int) -> ir.Node:
    return ir.HeadNode(layer=layer, head=index)


def mlp(layer: int) -> ir.Node:
    return ir.MlpNode(layer=layer)


def node_order(node: ir.Node) -> tuple[int, int, int]:
    """Computation order: a layer's heads, then its MLP; embed first, logits last."""
    if node.kind == "embed":
        return (-1, 0, 0)
    if node.kind == "logits":
        return (1 << 30, 0, 0)
    return (node.layer, 1 if node.kind == "mlp" else 0, node.head or 0)


def precedes(sender: ir.Node, receiver: ir.Node, parallel_attn_mlp: bool = False) -> bool:
    """Whether the sender writes to the residual stream before the receiver reads it: earlier
    layers, and a layer's heads before its MLP (unless attention and MLP run in parallel)."""
    return sender.kind != "embed" and feeds(sender, receiver, parallel_attn_mlp)


def variant_of(nodes: Sequence[ir.Node], edges: Sequence[ir.Edge] | None = None, label: str = "candidate", embed_edges: str = "all") -> Variant:
    """Nodes kept clean at every position (edge-restricted when `edges` is given)."""
    heads = tuple(HeadKeep(n.layer, n.head) for n in nodes if n.kind == "head")
    mlps = tuple(MlpKeep(n.layer) for n in nodes if n.kind == "mlp")
    return Variant(heads, mlps, None if edges is None else tuple(edges), embed_edges, label)


@dataclass
class Scorer:
    session: Session
    prompt_set: str | None = None
    evaluated: int = 0
    meter: Meter = field(default_factory=lambda: Meter(0, lambda line: None))  # discover's, when it shows progress
    engine: Engine = field(init=False)
    readout: Readout = field(init=False)
    f_model: float = field(init=False)
    f_empty: float = field(init=False)

    def __post_init__(self) -> None:
        self.engine = self.session.engine(self.prompt_set)
        self.readout = self.engine.readout()
        self.f_model, self.f_empty = self.means([self.session.full_model(), self.session.empty()])

    @property
    def n_layers(self) -> int:
        return int(self.session.model.bridge.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.session.model.bridge.cfg.n_heads)

    @property
    def parallel_attn_mlp(self) -> bool:
        return bool(getattr(self.session.model.bridge.cfg, "parallel_attn_mlp", False))

    def precedes(self, sender: ir.Node, receiver: ir.Node) -> bool:
        return precedes(sender, receiver, self.parallel_attn_mlp)

    @property
    def embed_edges(self) -> str:
        return self.session.spec.settings.embed_edges

    def heads(self) -> list[ir.Node]:
        return [head(layer, h) for layer in range(self.n_layers) for h in range(self.n_heads)]

    def mlps(self) -> list[ir.Node]:
        return [mlp(layer) for layer in range(self.n_layers)]

    def rows(self, variants: int) -> int:
        """Prompt rows through the model to evaluate this many variants."""
        return variants * self.engine.bound.n_prompts

    def patch_rows(self, patches: int) -> int:
        """Prompt rows through the model for this many path-patching runs."""
        return self.rows(PATCH_RUNS_PER_EDGE * patches)

    def means(self, variants: Sequence[Variant], readout: Readout | None = None) -> list[float]:
        """Mean over prompts of the metric (or of `readout`) for each variant."""
        self.evaluated += len(variants)
        values = self.engine.run(list(variants), readout or self.readout)
        self.meter.advance(self.rows(len(variants)))
        return [float(v) for v in values.mean(1)]

    def faithfulness(self, variants: Sequence[Variant]) -> list[float]:
        return [faithfulness_point(value, self.f_model) for value in self.means(variants)]

    def kl_readout(self) -> Readout:
        return self.engine.readout(KL)
