"""Lowering of `role`, `mlp` and `edge` lines into the IR circuit, checked against the model's
shape and against the named positions every prompt set provides."""

from __future__ import annotations

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, Span, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.prompt_sets import slot_names
from circuitlang.ir.stdlib import CHANNELS, POSITION_KEYWORDS
from circuitlang.ir.suggest import did_you_mean

# Past any transformer's depth: with the model's shape unknown, larger layer numbers are refused
# (a range of them would otherwise enumerate billions of nodes).
MAX_LAYER_WITHOUT_SHAPE = 1_000
HEAD_CLAUSES = ("q", "k")
MLP_CLAUSES = ("at",)


def lower_circuit(
    items: list[ast.Item], shape: ir.ModelShape | None, model: ir.ModelRef, prompt_sets: tuple[ir.PromptSet, ...], errors: list[CircuitlangError]
) -> ir.Circuit:
    checker = _PositionChecker(prompt_sets, errors)
    nodes: dict[ir.Node, ir.CircuitNode] = {}
    roles: dict[str, Span] = {}
    for item in items:
        if isinstance(item, ast.RoleDecl):
            _check_new_role(item, roles, errors)
            _add_members(item.name.value, item.members, item.clauses, item.is_mlp, shape, model, checker, nodes, errors)
        elif isinstance(item, ast.MlpDecl):
            _add_members("mlp", item.layers, item.clauses, True, shape, model, checker, nodes, errors)
    edges = _edges([i for i in items if isinstance(i, ast.EdgeDecl)], nodes, errors)
    return ir.Circuit(nodes=tuple(nodes.values()), edges=edges)


def _check_new_role(role: ast.RoleDecl, roles: dict[str, Span], errors: list[CircuitlangError]) -> None:
    name = role.name.value
    if not name.strip():
        errors.append(SpecError("a role needs a name", role.name.span, 'e.g. role "name mover": 9.9'))
    if name in roles:
        errors.append(
            SpecError(
                f'role "{name}" is declared twice (first at {where(roles[name], role.span)})',
                role.name.span,
                "list all of a role's nodes on one line",
            )
        )
    if name == "mlp":
        errors.append(SpecError('"mlp" is the role of bare `mlp` lines', role.name.span, "choose another role name"))
    roles.setdefault(name, role.span)


def _add_members(
    role: str,
    members: tuple,
    clauses: tuple[ast.PositionClause, ...],
    is_mlp: bool,
    shape: ir.ModelShape | None,
    model: ir.ModelRef,
    checker: "_PositionChecker",
    nodes: dict[ir.Node, ir.CircuitNode],
    errors: list[CircuitlangError],
) -> None:
    q, k = _clauses(clauses, is_mlp, checker, errors)
    for member in members:
        for node, span in expand_member(member, shape, model, errors):
            if node in nodes:
                first = nodes[node]
                errors.append(
                    SpecError(
                        f'{node} is already in the circuit as "{first.role}" (at {where(first.span, span)})',
                        span,
                        "a node has one role; remove one of the two",
                    )
                )
                continue
            nodes[node] = ir.CircuitNode(node=node, role=role, q=q, k=k, span=span)


def expand_member(member: object, shape: ir.ModelShape | None, model: ir.ModelRef, errors: list[CircuitlangError]) -> list[tuple[ir.Node, Span]]:
    """The nodes one member of a node list names (`9.1`, `3.*`, an MLP layer, `a..b`), each with
    the span it was written at; a layer or head the model lacks is an error and names none."""
    match member:
        case ast.HeadRef(layer, head, span):
            ok = check_layer(layer, span, shape, model, errors) and _check_head(layer, head, span, shape, errors)
            return [(ir.HeadNode(layer=layer, head=head), span)] if ok else []
        case ast.LayerHeads(layer, span):
            if shape is None and not model.name:  # the model line itself failed; that error says why
                return []
            if shape is None:
                errors.append(
                    SpecError(
                        f"{layer}.* needs the model's head count, unknown for '{model.name}'",
                        span,
                        "list the heads explicitly, or use a model with a known shape",
                    )
                )
                return []
            ok = check_layer(layer, span, shape, model, errors)
            return [(ir.HeadNode(layer=layer, head=h), span) for h in range(shape.n_heads)] if ok else []
        case ast.MlpRef(layer, span):
            ok = check_layer(layer, span, shape, model, errors)
            return [(ir.MlpNode(layer=layer), span)] if ok else []
        case ast.LayerRange(start, stop, span):
            if start > stop:
                errors.append(
                    SpecError(f"empty layer range {start}..{stop}", span, f"ranges count upwards and include both ends: {stop}..{start}")
                )
                return []
            ok = check_layer(start, span, shape, model, errors) and check_layer(stop, span, shape, model, errors)
            return [(ir.MlpNode(layer=layer), span) for layer in range(start, stop + 1)] if ok else []
    raise TypeError(f"unhandled circuit member {member!r}")


def where(first: Span, here: Span) -> str:
    """`line N` for a place in the same file, else the full `path:line:column`."""
    return f"line {first.line}" if first.path == here.path else str(first)


def check_layer(layer: int, span: Span, shape: ir.ModelShape | None, model: ir.ModelRef, errors: list[CircuitlangError]) -> bool:
    if shape is None:
        return _plausible_layer(layer, span, model, errors)
    if layer < shape.n_layers:
        return True
    errors.append(
        SpecError(
            f"layer {layer} does not exist: {model.name} has layers 0-{shape.n_layers - 1}", span, "check the layer number against the model"
        )
    )
    return False


def _plausible_layer(layer: int, span: Span, model: ir.ModelRef, errors: list[CircuitlangError]) -> bool:
    if layer < MAX_LAYER_WITHOUT_SHAPE:
        return True
    shown = str(layer) if layer < 10**30 else f"{str(layer)[:12]}... ({len(str(layer))} digits)"
    errors.append(
        SpecError(
            f"layer {shown} is deeper than any model: the shape of '{model.name}' is not known "
            f"offline, and layers from {MAX_LAYER_WITHOUT_SHAPE} on are refused",
            span,
            "check the layer number against the model",
        )
    )
    return False


def _check_head(layer: int, head: int, span: Span, shape: ir.ModelShape | None, errors: list[CircuitlangError]) -> bool:
    if shape is None or head < shape.n_heads:
        return True
    errors.append(
        SpecError(
            f"head {layer}.{head} does not exist: layers have heads 0-{shape.n_heads - 1}",
            span,
            f"heads are written LAYER.HEAD, e.g. {layer}.{shape.n_heads - 1}",
        )
    )
    return False


def _clauses(
    clauses: tuple[ast.PositionClause, ...], is_mlp: bool, checker: "_PositionChecker", errors: list[CircuitlangError]
) -> tuple[tuple[ir.Position, ...] | None, tuple[ir.Position, ...] | None]:
    allowed = MLP_CLAUSES if is_mlp else HEAD_CLAUSES
    found: dict[str, tuple[ir.Position, ...]] = {}
    for clause in clauses:
        kind = clause.kind.name
        if kind not in allowed:
            what = "an MLP" if is_mlp else "a head"
            errors.append(
                SpecError(
                    f"'{kind}' is not a position clause for {what}",
                    clause.kind.span,
                    "heads take `q POSITIONS` and `k POSITIONS`; MLPs take `at POSITIONS`",
                )
            )
        elif kind in found:
            errors.append(SpecError(f"'{kind}' is given twice", clause.kind.span, f"list every position after one {kind}"))
        else:
            found[kind] = tuple(checker.lower(p) for p in clause.positions)
    return found.get("q", found.get("at")), found.get("k")


class _PositionChecker:
    """Lowers positions and checks each name exists in every prompt set's templates."""

    def __init__(self, prompt_sets: tuple[ir.PromptSet, ...], errors: list[CircuitlangError]) -> None:
        self.prompt_sets = prompt_sets
        self.errors = errors

    def lower(self, position: ast.Position) -> ir.Position:
        if isinstance(position, ast.PosRange):
            if position.start.offset or position.stop.offset:
                self.errors.append(
                    SpecError(
                        "a range runs between slot names; offsets are not allowed in it",
                        position.span,
                        "list offset positions separately: s1..s3, s3+1",
                    )
                )
            start, stop = self._ref(position.start), self._ref(position.stop)
            self._check_order(position)
            return ir.PositionRange(start=start, stop=stop, span=position.span)
        return self._ref(position)

    def _ref(self, ref: ast.PosRef) -> ir.PositionRef:
        if ref.name not in POSITION_KEYWORDS:
            for prompt_set in self.prompt_sets:
                slots = slot_names(prompt_set)
                if ref.name not in slots:
                    self.errors.append(
                        SpecError(
                            f"position '{ref.name}' is not a slot of prompt set '{prompt_set.name}'",
                            ref.span,
                            did_you_mean(ref.name, (*slots, *POSITION_KEYWORDS)) + f"positions there: {', '.join((*slots, *POSITION_KEYWORDS))}",
                        )
                    )
        return ir.PositionRef(name=ref.name, offset=ref.offset, span=ref.span)

    def _check_order(self, position: ast.PosRange) -> None:
        start, stop = position.start.name, position.stop.name
        if start in POSITION_KEYWORDS or stop in POSITION_KEYWORDS:
            self.errors.append(
                SpecError(
                    f"a range runs between slots; '{start}..{stop}' uses end or bos", position.span, "list end or bos separately: s1..s4, end"
                )
            )
        # Whether the range runs forwards depends on each template's slot order: `data` checks
        # that per template once the prompt sets are expanded.


def _edges(decls: list[ast.EdgeDecl], nodes: dict[ir.Node, ir.CircuitNode], errors: list[CircuitlangError]) -> tuple[ir.Edge, ...]:
    edges: dict[tuple[ir.Node, ir.Node], ir.Edge] = {}
    for decl in decls:
        edge = _edge(decl, nodes, errors)
        if edge is None:
            continue
        key = (edge.sender, edge.receiver)
        if key in edges:
            errors.append(
                SpecError(f"edge {edge.sender} -> {edge.receiver} is declared twice", decl.span, "list every channel on one line: via q, k, v")
            )
            continue
        edges[key] = edge
    return tuple(edges.values())


def endpoint(ref: ast.NodeRef) -> ir.Node:
    """The node an edge end (or an edge claim's end) names."""
    match ref:
        case ast.HeadRef(layer, head, _):
            return ir.HeadNode(layer=layer, head=head)
        case ast.MlpRef(layer, _):
            return ir.MlpNode(layer=layer)
        case ast.Embed():
            return ir.EMBED
    return ir.LOGITS


def _edge(decl: ast.EdgeDecl, nodes: dict[ir.Node, ir.CircuitNode], errors: list[CircuitlangError]) -> ir.Edge | None:
    sender, receiver = endpoint(decl.sender), endpoint(decl.receiver)
    problems = len(errors)
    for node, ref in ((sender, decl.sender), (receiver, decl.receiver)):
        if node.kind in ("head", "mlp") and node not in nodes:
            errors.append(SpecError(f"edge endpoint {node} is not in the circuit", ref.span, f"add {node} to a role (or an `mlp` line)"))
    if sender.kind == "logits" or receiver.kind == "embed":
        errors.append(
            SpecError("edges run from embed towards logits", decl.span, "write the sender first: edge embed -> 0.1, edge 9.1 -> logits")
        )
    elif sender == receiver:
        errors.append(SpecError(f"edge {sender} -> {receiver} connects {sender} to itself", decl.span, "an edge joins two different nodes"))
    elif sender.kind == receiver.kind == "head" and sender.layer == receiver.layer:
        errors.append(
            SpecError(
                f"edge {sender} -> {receiver} joins two heads of layer {sender.layer}, which run in parallel",
                decl.span,
                "a head's output reaches heads of later layers only",
            )
        )
    elif not runs_forward(sender, receiver):
        errors.append(
            SpecError(
                f"edge {sender} -> {receiver} runs backwards: {sender} cannot write into {receiver}",
                decl.span,
                "each layer runs its heads, then its MLP: a head in layer L feeds mlp L and later layers; mlp L feeds layer L+1 on",
            )
        )
    channels = _channels(decl, receiver, errors)
    if len(errors) > problems or channels is None:
        return None
    return ir.Edge(sender=sender, receiver=receiver, channels=channels, span=decl.span)


def runs_forward(sender: ir.Node, receiver: ir.Node) -> bool:
    """Residual-stream order: embed, then per layer the attention heads, then the MLP."""

    def order(node: ir.Node) -> tuple[int, int, int]:  # integers: a layer number may exceed any float
        if node.kind == "embed":
            return (0, 0, 0)
        if node.kind == "logits":
            return (2, 0, 0)
        return (1, node.layer, 1 if node.kind == "mlp" else 0)

    return order(sender) < order(receiver)


def _channels(decl: ast.EdgeDecl, receiver: ir.Node, errors: list[CircuitlangError]) -> tuple | None:
    if receiver.kind != "head":
        if decl.channels:
            errors.append(SpecError(f"{receiver} has one input; `via` is only for head receivers", decl.channels[0].span, "drop the via clause"))
            return None
        return ()
    if decl.channels is None:
        return CHANNELS
    seen: set[str] = set()
    for channel in decl.channels:
        if channel.name not in CHANNELS:
            errors.append(SpecError(f"unknown channel '{channel.name}'", channel.span, "channels are q, k and v"))
            return None
        if channel.name in seen:
            errors.append(SpecError(f"channel '{channel.name}' is listed twice", channel.span, "list each of q, k, v at most once"))
            return None
        seen.add(channel.name)
    return tuple(c for c in CHANNELS if c in {ch.name for ch in decl.channels})
