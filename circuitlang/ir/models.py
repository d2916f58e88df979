"""The IR: what a spec means, as frozen pydantic models that keep their source spans.

Produced by `ir.lower` from the AST; consumed by `data` (prompt expansion), `compile` and the
engine. Names are resolved, heads are (layer, head) pairs checked against the model's shape,
position ranges are kept as written (they are expanded per template by `data`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from circuitlang.errors import Span
from circuitlang.ir.stdlib import LIMIT_SETTINGS


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- expressions ---------------------------------------------------------------------------


class IntE(Frozen):
    kind: Literal["int"] = "int"
    value: int
    span: Span


class StrE(Frozen):
    kind: Literal["str"] = "str"
    value: str
    span: Span


class VarE(Frozen):
    kind: Literal["var"] = "var"
    name: str
    span: Span


class IndexE(Frozen):
    kind: Literal["index"] = "index"
    list_name: str
    index: "Expr"
    span: Span


class CallE(Frozen):
    kind: Literal["call"] = "call"
    function: str
    args: tuple["Expr", ...]
    span: Span


class ListE(Frozen):
    kind: Literal["list"] = "list"
    items: tuple["Expr", ...]
    span: Span


class BinE(Frozen):
    kind: Literal["bin"] = "bin"
    op: Literal["+", "-", "*", "//", "%"]
    left: "Expr"
    right: "Expr"
    span: Span


class NegE(Frozen):
    kind: Literal["neg"] = "neg"
    operand: "Expr"
    span: Span


class RangeE(Frozen):
    kind: Literal["range"] = "range"
    start: "Expr"
    stop: "Expr"
    span: Span


class RandomE(Frozen):
    kind: Literal["random"] = "random"
    source: "Expr"
    distinct: bool
    span: Span


Expr = Annotated[
    Union[IntE, StrE, VarE, IndexE, CallE, ListE, BinE, NegE, RangeE, RandomE],
    Field(discriminator="kind"),
]

Value = Union[int, str]


def subexpressions(expr: Expr) -> Iterator[Expr]:
    """Every node of an expression, itself first (its depth is bounded by the parser's)."""
    yield expr
    children: tuple[Expr, ...] = ()
    match expr:
        case IndexE(index=index):
            children = (index,)
        case CallE(args=args) | ListE(items=args):
            children = args
        case BinE(left=left, right=right) | RangeE(start=left, stop=right):
            children = (left, right)
        case NegE(operand=operand) | RandomE(source=operand):
            children = (operand,)
    for child in children:
        yield from subexpressions(child)


# ---- model ---------------------------------------------------------------------------------


class ModelRef(Frozen):
    """Where the weights come from: a hub name, a local HF folder, or a shipped organism."""

    source: Literal["hub", "local", "organism"]
    name: str  # as written in the spec
    path: str | None = None  # resolved folder for local models and organisms
    # Hub models: the repo to load, the alias resolved as TransformerLens resolves it. Derived from
    # `name`, so it stays out of the canonical JSON (spec hashes and golden IR keep the name as written).
    hub_id: str | None = Field(default=None, exclude=True)
    # A local folder: the project root its files must resolve in (ir/model_folder.py); like hub_id,
    # out of the canonical JSON.
    root: str = Field(default="", exclude=True)
    span: Span


class ModelShape(Frozen):
    n_layers: int
    n_heads: int
    origin: str  # where the shape was read from, for messages
    # Key/value heads (fewer than n_heads under grouped-query attention; n_heads when not given) and
    # whether attention and MLP read the same residual (GPT-NeoX/Pythia, GPT-J). Both are read from
    # the same place as the counts, so like ModelRef.hub_id they stay out of the canonical JSON:
    # golden IR and spec hashes do not change with them.
    n_kv_heads: int = Field(default=0, exclude=True)  # never 0 once built: see below
    parallel_attn_mlp: bool = Field(default=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _kv_heads_default_to_heads(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("n_kv_heads") is None:
            return {**data, "n_kv_heads": data.get("n_heads")}
        return data


# ---- prompt sets ---------------------------------------------------------------------------


class NamedList(Frozen):
    name: str
    values: tuple[Value, ...]
    cyclic: bool
    span: Span
    # Where each value was written, so that a problem with one word (one the tokenizer does not
    # know) is reported at that word. Like ModelRef.hub_id, kept out of the canonical JSON.
    value_spans: tuple[Span, ...] = Field(default=(), exclude=True)


class Template(Frozen):
    text: str
    slots: tuple[str, ...]  # in order of appearance
    span: Span


class Loop(Frozen):
    var: str
    source: Expr
    span: Span


class Assignment(Frozen):
    targets: tuple[str, ...]
    value: Expr
    span: Span


class FileSource(Frozen):
    path: str  # resolved against the spec's folder
    written: str  # as written in the spec
    span: Span
    root: str = Field(default="", exclude=True)  # the project root the file was confined to; re-checked when it is opened


class Generator(Frozen):
    name: str
    params: tuple[tuple[str, Value], ...]
    span: Span


class Corruption(Frozen):
    kind: str
    args: tuple[Value, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    path: str | None = None
    span: Span
    root: str = Field(default="", exclude=True)  # as FileSource.root, for a corrupt file


class Metric(Frozen):
    name: str
    args: tuple[str, ...]
    arg_spans: tuple[Span, ...]
    span: Span


class PromptSet(Frozen):
    name: str
    templates: tuple[Template, ...] = ()
    loops: tuple[Loop, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    source: FileSource | None = None
    generator: Generator | None = None
    corruption: Corruption | None = None
    metric: Metric | None = None  # None: the spec's top-level metric
    answer_prefix: str = " "
    count: int | None = None  # keep the first `count` prompts
    span: Span


# ---- circuit --------------------------------------------------------------------------------


# A component: head `L.H`, `mlp L`, or the graph's ends `embed` and `logits`. Every kind keeps the
# fields kind, layer and head in that order, None where they do not apply, so a node's JSON (and
# with it spec hashes and golden IR) does not depend on its kind's class.


class HeadNode(Frozen):
    kind: Literal["head"] = "head"
    layer: int
    head: int

    def __str__(self) -> str:
        return f"{self.layer}.{self.head}"


class MlpNode(Frozen):
    kind: Literal["mlp"] = "mlp"
    layer: int
    head: None = None

    def __str__(self) -> str:
        return f"mlp {self.layer}"


class EmbedNode(Frozen):
    kind: Literal["embed"] = "embed"
    layer: None = None
    head: None = None

    def __str__(self) -> str:
        return self.kind


class LogitsNode(Frozen):
    kind: Literal["logits"] = "logits"
    layer: None = None
    head: None = None

    def __str__(self) -> str:
        return self.kind


Node = Annotated[Union[HeadNode, MlpNode, EmbedNode, LogitsNode], Field(discriminator="kind")]
NODE_TYPES = (HeadNode, MlpNode, EmbedNode, LogitsNode)  # for isinstance
EMBED: Node = EmbedNode()
LOGITS: Node = LogitsNode()


class PositionRef(Frozen):
    name: str  # a slot, `end` or `bos`
    offset: int = 0
    span: Span

    def __str__(self) -> str:
        return self.name + (f"{self.offset:+d}" if self.offset else "")


class PositionRange(Frozen):
    start: PositionRef
    stop: PositionRef
    span: Span

    def __str__(self) -> str:
        return f"{self.start}..{self.stop}"


Position = Union[PositionRef, PositionRange]


class CircuitNode(Frozen):
    """A node of the circuit with its role. For heads `q` are the positions where the head keeps
    its clean output and `k` the source positions it may read cleanly; for MLPs `q` holds the
    `at` positions. None means every position."""

    node: Node
    role: str
    q: tuple[Position, ...] | None = None
    k: tuple[Position, ...] | None = None
    span: Span


class Edge(Frozen):
    sender: Node
    receiver: Node
    channels: tuple[Literal["q", "k", "v"], ...]  # empty for MLP and logits receivers
    span: Span

    def __str__(self) -> str:
        """As in reports: `4.4 -> 9.1 via k, v`; `via` only when some channels are left out."""
        via = f" via {', '.join(self.channels)}" if 0 < len(self.channels) < 3 else ""
        return f"{self.sender} -> {self.receiver}{via}"


class Circuit(Frozen):
    nodes: tuple[CircuitNode, ...] = ()
    edges: tuple[Edge, ...] = ()

    def roles(self) -> dict[str, tuple[Node, ...]]:
        grouped: dict[str, list[Node]] = {}
        for member in self.nodes:
            grouped.setdefault(member.role, []).append(member.node)
        return {role: tuple(nodes) for role, nodes in grouped.items()}


# ---- hypotheses: what nodes carry (docs/language.md, "Hypotheses") ---------------------------------


class Variable(Frozen):
    """A named value of the high-level model: an expression over the prompt's slots and fields and
    the variables before it (`next = s4 + 1`)."""

    name: str
    value: Expr
    span: Span


class Site(Frozen):
    """One node at the positions where it carries a variable: a head's output (before W_O), an
    MLP's output, at each of those named positions."""

    node: Node
    positions: tuple[Position, ...]


class Carrier(Frozen):
    """`NODES [at POSITIONS] carries VARIABLE`: the nodes together carry the variable there. An
    interchange intervention sets every site's activation to the one it has on another prompt."""

    sites: tuple[Site, ...]
    variable: str  # a slot, a field, or a Variable of the hypothesis
    role: str | None  # set when written as a role's name
    text: str  # as a report names it: `"number mover" carries s4`, `0.0, 0.2 at end carries s3`
    span: Span

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(site.node for site in self.sites)


class Hypothesis(Frozen):
    """A high-level model of one prompt set: variables computed from each prompt, the answer as a
    function of them, and the nodes that carry them. A variable's value on a source prompt, put
    into the answer in place of the base prompt's, predicts the answer an interchange gives."""

    prompt_set: str
    variables: tuple[Variable, ...]
    answer: Expr
    carriers: tuple[Carrier, ...]
    span: Span

    def carriers_of(self, variable: str) -> tuple[Carrier, ...]:
        return tuple(carrier for carrier in self.carriers if carrier.variable == variable)

    @property
    def carried(self) -> tuple[str, ...]:
        """The variables some node carries, in the order first written."""
        return tuple(dict.fromkeys(carrier.variable for carrier in self.carriers))


class Ablation(Frozen):
    kind: Literal["mean", "resample", "zero"]
    source: Literal["corrupt", "clean"] | None
    span: Span


# ---- expectations ----------------------------------------------------------------------------


class MetricExpectation(Frozen):
    kind: Literal["metric"] = "metric"
    metric: str
    on: str | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    span: Span


class ScoreExpectation(Frozen):
    kind: Literal["score"] = "score"
    targets: tuple[Node, ...]
    role: str | None  # set when the claim was written about a role
    score: str
    on: str | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    span: Span


class AttendsExpectation(Frozen):
    kind: Literal["attends"] = "attends"
    targets: tuple[Node, ...]
    role: str | None
    queries: tuple[Position, ...]
    keys: tuple[Position, ...]
    on: str | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    span: Span


class EdgeExpectation(Frozen):
    """A claim about one declared edge (`expect 4.4 -> 9.1 effect >= 0.05`)."""

    kind: Literal["edge"] = "edge"
    sender: Node
    receiver: Node
    score: str
    on: str | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    span: Span


class InterchangeExpectation(Frozen):
    """A claim on an interchange score (`iia`, `graded_iia`) of one carrier (written as its role or
    its nodes) or of a variable (every carrier of it, intervened on together)."""

    kind: Literal["interchange"] = "interchange"
    carrier: int | None  # index into the hypothesis's carriers; None for a variable's claim
    variable: str
    score: Literal["iia", "graded_iia"]
    on: str | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    span: Span


Expectation = Annotated[
    Union[MetricExpectation, ScoreExpectation, AttendsExpectation, EdgeExpectation, InterchangeExpectation], Field(discriminator="kind")
]


class Settings(Frozen):
    seed: int = 0
    bootstrap: int = 1000
    confidence: float = 0.95
    minimality_threshold: float = 0.01
    completeness_samples: int = 20  # random K for completeness
    greedy_steps: int = 5  # size of the largest K the greedy completeness search builds
    minimality_samples: int = 5  # random K per node for minimality
    top_k: int = 5  # copy and next scores: is the token among the top k logits
    batch_size: int = 256
    embed_edges: Literal["all", "declared"] = "all"
    prepend_bos: Literal["model", "true", "false"] = "model"  # "model": as the model's TransformerLens config says
    # Limits a spec may raise (ir.stdlib.LIMITS says what each bounds).
    max_prompts: int = LIMIT_SETTINGS["max_prompts"]
    max_range: int = LIMIT_SETTINGS["max_range"]
    max_list: int = LIMIT_SETTINGS["max_list"]
    max_slots: int = LIMIT_SETTINGS["max_slots"]
    max_template: int = LIMIT_SETTINGS["max_template"]
    max_text: int = LIMIT_SETTINGS["max_text"]


class Spec(Frozen):
    version: int
    name: str
    path: str
    model: ModelRef
    shape: ModelShape | None  # None when the shape cannot be known offline
    lists: tuple[NamedList, ...]
    prompt_sets: tuple[PromptSet, ...]
    metric: Metric | None  # None when every prompt set names its own metric
    ablation: Ablation
    circuit: Circuit
    expectations: tuple[Expectation, ...]
    settings: Settings
    hypotheses: tuple[Hypothesis, ...] = ()  # at most one per prompt set

    @model_serializer(mode="wrap")
    def _hypotheses_only_when_written(self, handler: Any) -> Any:
        """A spec without hypotheses serializes as it did before they existed: its JSON, its hash
        and the result cache's keys stay what they were."""
        data = handler(self)
        if not self.hypotheses and isinstance(data, dict):
            data.pop("hypotheses", None)
        return data

    def hypothesis_for(self, prompt_set: str) -> Hypothesis | None:
        return next((h for h in self.hypotheses if h.prompt_set == prompt_set), None)

    def prompt_set(self, name: str) -> PromptSet:
        return next(p for p in self.prompt_sets if p.name == name)

    def metric_for(self, prompt_set: PromptSet) -> Metric:
        metric = prompt_set.metric or self.metric
        assert metric is not None, "lowering guarantees every prompt set has a metric"
        return metric

    def __repr__(self) -> str:  # the full pydantic dump runs to pages; this is what a notebook needs
        sets = ", ".join(p.name for p in self.prompt_sets)
        return (
            f"<Spec {self.name} on {self.model.name}: {len(self.circuit.nodes)} nodes, {len(self.circuit.edges)} "
            f"declared edges, prompt sets {sets}, {len(self.expectations)} claims; {self.path}>"
        )

    def _repr_markdown_(self) -> str:
        roles = "; ".join(f"**{role}**: {', '.join(map(str, nodes))}" for role, nodes in self.circuit.roles().items())
        return (
            f"**{self.name}** on `{self.model.name}` ({self.path}): {roles}; "
            f"{len(self.circuit.edges)} declared edges; prompt sets {', '.join(p.name for p in self.prompt_sets)}; "
            f"{len(self.expectations)} claims"
        )

    def canonical_json(self, spans: bool = False) -> str:
        """The IR as sorted JSON; without spans two specs that mean the same compare equal."""
        data = self.model_dump(mode="json")
        return json.dumps(data if spans else _without_spans(data), indent=2, sort_keys=True)


def _without_spans(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_spans(v) for k, v in data.items() if k != "span" and not k.endswith("_spans")}
    if isinstance(data, list):
        return [_without_spans(v) for v in data]
    return data


for _model in (IndexE, CallE, ListE, BinE, NegE, RangeE, RandomE, Loop, Assignment):
    _model.model_rebuild()
