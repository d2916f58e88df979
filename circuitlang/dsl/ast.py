"""The syntax tree of a `.circ` file: frozen dataclasses, each carrying its source span.

The AST is what the text *says*, before any meaning is checked: names are unresolved, head
references are as written, positions are slot names. `ir.lower` turns it into the IR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from circuitlang.errors import Span


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class IntLit:
    value: int
    span: Span


@dataclass(frozen=True)
class StrLit:
    value: str
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class Index:
    name: Ident
    index: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    function: Ident
    args: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class ListLit:
    items: tuple["Expr", ...]
    span: Span


BinOperator = Literal["+", "-", "*", "//", "%"]


@dataclass(frozen=True)
class BinOp:
    op: BinOperator
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Range:
    """`a..b`: the integers from a to b inclusive."""

    start: "Expr"
    stop: "Expr"
    span: Span


@dataclass(frozen=True)
class Random:
    """`random <expr> [distinct]`: a seeded draw from a range or list."""

    source: "Expr"
    distinct: bool
    span: Span


Expr = Union[IntLit, StrLit, Var, Index, Call, ListLit, BinOp, Neg, Range, Random]


# ---- numbers, nodes, positions -----------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A literal threshold or setting; `text` keeps the spelling for the printer."""

    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class HeadRef:
    layer: int
    head: int
    span: Span


@dataclass(frozen=True)
class LayerHeads:
    """`L.*`: every head of layer L."""

    layer: int
    span: Span


@dataclass(frozen=True)
class MlpRef:
    layer: int
    span: Span


@dataclass(frozen=True)
class LayerRange:
    """`a..b` in an MLP list: layers a to b inclusive."""

    start: int
    stop: int
    span: Span


@dataclass(frozen=True)
class Embed:
    span: Span


@dataclass(frozen=True)
class Logits:
    span: Span


@dataclass(frozen=True)
class RoleRef:
    name: str
    span: Span


@dataclass(frozen=True)
class VariableRef:
    """A name as the target of a claim: a variable of a hypothesis (`expect s3 iia >= 0.8`)."""

    name: str
    span: Span


@dataclass(frozen=True)
class PosRef:
    name: str
    offset: int
    span: Span


@dataclass(frozen=True)
class PosRange:
    start: PosRef
    stop: PosRef
    span: Span


Position = Union[PosRef, PosRange]
NodeRef = Union[HeadRef, MlpRef, Embed, Logits]
Target = Union[HeadRef, MlpRef, RoleRef, VariableRef]


@dataclass(frozen=True)
class PositionClause:
    kind: Ident  # q, k or at
    positions: tuple[Position, ...]
    span: Span


# ---- statements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    version: int
    span: Span


@dataclass(frozen=True)
class CircuitDecl:
    name: Ident
    model: StrLit
    span: Span


@dataclass(frozen=True)
class UseDecl:
    what: str  # "circuit", "prompts" or "list"
    name: Ident | None
    path: StrLit
    span: Span


@dataclass(frozen=True)
class ListDecl:
    name: Ident
    cyclic: bool
    items: ListLit
    span: Span


@dataclass(frozen=True)
class TemplateStmt:
    text: StrLit
    span: Span


@dataclass(frozen=True)
class Loop:
    var: Ident
    source: Expr
    span: Span


@dataclass(frozen=True)
class ForStmt:
    loops: tuple[Loop, ...]
    span: Span


@dataclass(frozen=True)
class AssignStmt:
    targets: tuple[Ident, ...]
    value: Expr
    span: Span


@dataclass(frozen=True)
class FromStmt:
    path: StrLit
    span: Span


@dataclass(frozen=True)
class KwArg:
    name: Ident
    value: Expr
    span: Span


@dataclass(frozen=True)
class GenerateStmt:
    generator: Ident
    kwargs: tuple[KwArg, ...]
    span: Span


@dataclass(frozen=True)
class CorruptDecl:
    kind: Ident
    args: tuple[Expr, ...] | None
    body: tuple[AssignStmt, ...] | None
    span: Span


@dataclass(frozen=True)
class MetricDecl:
    name: Ident
    args: tuple[Ident, ...] | None
    span: Span


@dataclass(frozen=True)
class AblateDecl:
    kind: Ident
    source: Ident | None
    span: Span


SettingValue = Union[IntLit, Number, StrLit, Var]


@dataclass(frozen=True)
class SetDecl:
    key: Ident
    value: SettingValue
    span: Span


PromptStmt = Union[TemplateStmt, ForStmt, AssignStmt, FromStmt, GenerateStmt, CorruptDecl, MetricDecl, SetDecl]


@dataclass(frozen=True)
class PromptsDecl:
    name: Ident | None
    body: tuple[PromptStmt, ...]
    span: Span


@dataclass(frozen=True)
class RoleDecl:
    name: StrLit
    members: tuple[Union[HeadRef, LayerHeads, MlpRef, LayerRange], ...]
    is_mlp: bool
    clauses: tuple[PositionClause, ...]
    span: Span


@dataclass(frozen=True)
class MlpDecl:
    layers: tuple[Union[MlpRef, LayerRange], ...]
    clauses: tuple[PositionClause, ...]
    span: Span


@dataclass(frozen=True)
class EdgeDecl:
    sender: NodeRef
    receiver: NodeRef
    channels: tuple[Ident, ...] | None
    span: Span


@dataclass(frozen=True)
class CarriesStmt:
    """`NODES [at POSITIONS] carries NAME` in a hypothesis block: NODES are heads, `mlp` layers, or
    a role's name (then `members` is empty and `role` is set)."""

    members: tuple[Union[HeadRef, LayerHeads, MlpRef, LayerRange], ...]
    is_mlp: bool
    role: StrLit | None
    clauses: tuple[PositionClause, ...]
    variable: Ident
    span: Span


HypothesisStmt = Union[AssignStmt, CarriesStmt]


@dataclass(frozen=True)
class HypothesisDecl:
    """`hypothesis [on SET] { ... }`: variables, the answer and the carriers of one prompt set."""

    on: Ident | None
    body: tuple[HypothesisStmt, ...]
    span: Span


@dataclass(frozen=True)
class ExpectMetric:
    metric: Ident
    on: Ident | None
    op: str
    threshold: Number
    span: Span


@dataclass(frozen=True)
class ExpectScore:
    target: Target
    score: Ident
    on: Ident | None
    op: str
    threshold: Number
    span: Span


@dataclass(frozen=True)
class ExpectAttends:
    target: Target
    queries: tuple[Position, ...]
    keys: tuple[Position, ...]
    on: Ident | None
    op: str
    threshold: Number
    span: Span


@dataclass(frozen=True)
class ExpectEdge:
    """`expect SENDER -> RECEIVER SCORE [on SET] OP NUMBER`: a claim about one declared edge."""

    sender: NodeRef
    receiver: NodeRef
    score: Ident
    on: Ident | None
    op: str
    threshold: Number
    span: Span


Item = Union[
    CircuitDecl,
    UseDecl,
    ListDecl,
    PromptsDecl,
    CorruptDecl,
    MetricDecl,
    AblateDecl,
    SetDecl,
    RoleDecl,
    MlpDecl,
    EdgeDecl,
    HypothesisDecl,
    ExpectMetric,
    ExpectScore,
    ExpectAttends,
    ExpectEdge,
]


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    line: int
    column: int


@dataclass(frozen=True)
class SpecFile:
    """One parsed file: header, top-level items in source order, and its comments."""

    path: str
    header: Header
    items: tuple[Item, ...]
    comments: tuple[Comment, ...]
