"""Import of an EAP-IG graph file (the JSON of `Graph.to_json`) as a circuitlang circuit.

Takes the loaded JSON, the file's name (for messages) and the model shape of the spec the circuit
will live in; gives an `ImportedGraph`: an `ir.Circuit` plus EAP-IG's scores. Both of EAP-IG's
formats load: nodes as `{"in_graph": bool, "score"?: float}` (the `src/eap` package) or as a bare
bool (earlier versions). Pure Python: no torch.

What is imported: the edges marked `in_graph` (or, with `top`/`threshold`, the edges with the
largest |score|, then EAP-IG's pruning of nodes that lost their inputs or outputs), and as nodes
every head and MLP those edges touch. A graph that holds every edge among its nodes is a node
circuit (circuitlang's meaning of a circuit without edges) and is imported without edge lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from circuitlang.errors import CircuitlangError, DataError, Span, raise_if_any
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import (
    INPUT,
    LOGITS,
    EdgeKey,
    GraphConfig,
    feeds,
    model_edge_count,
    model_edges,
    node_circuit_edges,
    node_name,
    parse_edge,
    parse_node,
)

HEAD_ROLE = "imported head"
MLP_ROLE = "mlp"  # the role of a bare `mlp` line
MAX_ERRORS = 12
# A graph file says its model's size (`cfg`); the graph is built from it, so an 82 KB file claiming
# 400 layers x 64 heads would ask for 14 GB. GPT-2 XL's graph has 4.5 million edges.
MAX_GRAPH_EDGES = 5_000_000


@dataclass(frozen=True)
class ImportedGraph:
    circuit: ir.Circuit
    edge_scores: dict[tuple[ir.Node, ir.Node], dict[str, float]]  # channel ("" into MLPs, logits) -> score
    node_scores: dict[ir.Node, float]
    embed_edges: Literal["all", "declared"]  # the setting the circuit's edges need
    config: GraphConfig
    selected: int  # edges of the file's graph taken into the circuit
    total: int  # edges of the model's graph
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Parsed:
    config: GraphConfig
    node_flags: dict[ir.Node, bool]
    node_scores: dict[ir.Node, float]
    edge_flags: dict[EdgeKey, bool | None]
    edge_scores: dict[EdgeKey, float]


def import_graph(
    data: Any,
    source: str,
    shape: ir.ModelShape | None,
    top: int | None = None,
    threshold: float | None = None,
    embed_edges: str = "all",
    max_edges: int = MAX_GRAPH_EDGES,
) -> ImportedGraph:
    """The circuit of an EAP-IG graph. `embed_edges` is the setting of the spec it goes into: with
    `all`, embedding edges are implied and written only when the graph leaves some out. A model
    whose graph has more than `max_edges` edges is refused before anything is built."""
    parsed = parse_graph(data, source, shape, max_edges)
    warnings: list[str] = []
    if top is not None or threshold is not None:
        edges = _select(parsed, source, top, threshold)
    else:
        edges = _in_graph(parsed, source, warnings)
    if not edges:
        warnings.append(f"{source}: no edge was selected (after pruning, as EAP-IG prunes); the circuit is empty")
    nodes: set[ir.Node] = {n for e in edges for n in e[:2] if n.kind in ("head", "mlp")}
    unconnected = sorted(node_name(n) for n, flag in parsed.node_flags.items() if flag and n.kind in ("head", "mlp") and n not in nodes)
    if unconnected:
        warnings.append(
            f"{source}: {len(unconnected)} node(s) marked in_graph have no edge in the graph and were "
            f"left out: {', '.join(unconnected[:10])}{' ...' if len(unconnected) > 10 else ''}"
        )
    circuit, needs = _circuit(nodes, edges, parsed.config, source, embed_edges)
    scores: dict[tuple[ir.Node, ir.Node], dict[str, float]] = {}
    scored = set(parsed.edge_scores) if any(parsed.edge_scores.values()) else set()  # all 0: nothing was scored
    for edge in sorted(edges & scored, key=_edge_order):
        scores.setdefault((edge[0], edge[1]), {})[edge[2] or ""] = parsed.edge_scores[edge]
    return ImportedGraph(
        circuit,
        scores,
        {n: s for n, s in parsed.node_scores.items() if n in nodes},
        needs,
        parsed.config,
        len(edges),
        len(parsed.edge_flags),
        tuple(warnings),
    )


# ---- reading and checking the file ------------------------------------------------------------------


def parse_graph(data: Any, source: str, shape: ir.ModelShape | None, max_edges: int) -> _Parsed:
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("cfg", "nodes", "edges")):
        raise DataError(
            f"{source}: not an EAP-IG graph file: expected a JSON object with 'cfg', 'nodes' and 'edges' objects",
            None,
            "write the file with EAP-IG's Graph.to_json",
        )
    if data.get("n_pos") is not None:
        raise DataError(
            f"{source}: a positional EAP-IG graph (n_pos = {data['n_pos']}) cannot be imported",
            None,
            "circuitlang imports graphs made with Graph.from_model, without positions",
        )
    config = _config(data["cfg"], source, shape)
    _check_size(config, source, max_edges)
    errors: list[CircuitlangError] = []
    node_flags, node_scores = _nodes(data["nodes"], source, config, errors)
    edge_flags, edge_scores = _edges(data["edges"], source, config, errors)
    if len(errors) > MAX_ERRORS:
        errors = errors[:MAX_ERRORS] + [DataError(f"{source}: ... and {len(errors) - MAX_ERRORS} more problems")]
    raise_if_any(errors)
    return _Parsed(config, node_flags, node_scores, edge_flags, edge_scores)


def _config(cfg: dict[str, Any], source: str, shape: ir.ModelShape | None) -> GraphConfig:
    layers, heads = cfg.get("n_layers"), cfg.get("n_heads")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (layers, heads)):
        raise DataError(
            f"{source}: 'cfg' needs positive integers 'n_layers' and 'n_heads' (found {_short(layers)}, {_short(heads)})",
            None,
            "EAP-IG writes both from the model's config",
        )
    if shape is not None and (layers, heads) != (shape.n_layers, shape.n_heads):
        raise DataError(
            f"{source}: the graph is of a model with {layers} layers x {heads} heads, but the base "
            f"spec's model has {shape.n_layers} x {shape.n_heads} (from {shape.origin})",
            None,
            "import the graph into a spec on the model it was computed on",
        )
    assert isinstance(layers, int) and isinstance(heads, int)  # checked above, in the message's terms
    d_model = cfg.get("d_model")
    return GraphConfig(layers, heads, bool(cfg.get("parallel_attn_mlp", False)), d_model if isinstance(d_model, int) else None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_size(config: GraphConfig, source: str, max_edges: int) -> None:
    # n_layers and n_heads have no bound of their own: bound the loop that counts first.
    if config.n_layers * config.n_heads > max_edges or model_edge_count(config) > max_edges:
        raise DataError(
            f"{source}: the graph is of a model with {config.n_layers:,} layers x {config.n_heads:,} "
            f"heads, whose graph has more than {max_edges:,} edges (the graph size limit)",
            None,
            "check the file's 'cfg'; for a model this large, raise the limit with --max-edges N",
        )


def _known_node(name: str, node: ir.Node | None, config: GraphConfig) -> str | None:
    """Why a node name does not fit the model, or None."""
    if node is None:
        return "is not an EAP-IG node name (input, aL.hH, mL, logits)"
    if node.layer is not None and node.layer >= config.n_layers:
        return f"names layer {node.layer}, but the model has layers 0-{config.n_layers - 1}"
    if node.head is not None and node.head >= config.n_heads:
        return f"names head {node.head}, but layers have heads 0-{config.n_heads - 1}"
    return None


def _nodes(
    entries: dict[str, Any], source: str, config: GraphConfig, errors: list[CircuitlangError]
) -> tuple[dict[ir.Node, bool], dict[ir.Node, float]]:
    flags: dict[ir.Node, bool] = {}
    scores: dict[ir.Node, float] = {}
    for name, value in entries.items():
        node = parse_node(name)
        problem = _known_node(name, node, config)
        flag = value.get("in_graph") if isinstance(value, dict) else value
        if problem is None and not isinstance(flag, bool):
            problem = f"has in_graph {flag!r}; expected true or false"
        if problem is not None:
            errors.append(DataError(f"{source}: node '{name}' {problem}", None, _FIX))
            continue
        assert node is not None and isinstance(flag, bool)  # a node that does not parse, or a flag that is not a bool, is a problem
        flags[node] = flag
        score = value.get("score") if isinstance(value, dict) else None
        if isinstance(score, (int, float)) and score == score:  # NaN marks an unscored node in EAP-IG
            as_float = _finite_score(score)
            if as_float is None:
                errors.append(DataError(f"{source}: node '{name}' has a score {_shown(score)} too large for a float", None, _FIX))
                continue
            scores[node] = as_float
    return flags, scores


def _edges(
    entries: dict[str, Any], source: str, config: GraphConfig, errors: list[CircuitlangError]
) -> tuple[dict[EdgeKey, bool | None], dict[EdgeKey, float]]:
    flags: dict[EdgeKey, bool | None] = {}
    scores: dict[EdgeKey, float] = {}
    for name, info in entries.items():
        problem, edge = _edge_problem(name, info, config)
        if problem is not None:
            errors.append(DataError(f"{source}: edge '{name}' {problem}", None, _FIX))
            continue
        assert edge is not None
        flags[edge] = info.get("in_graph")
        score = info.get("score")
        if score is not None and score == score:  # null or NaN: not scored
            as_float = _finite_score(score)
            if as_float is None:
                errors.append(DataError(f"{source}: edge '{name}' has a score {_shown(score)} too large for a float", None, _FIX))
                continue
            scores[edge] = as_float
    return flags, scores


def _finite_score(score: int | float) -> float | None:
    """A score as a float, or None when it is an integer beyond a float's range (JSON allows 400
    digits; float() would raise OverflowError)."""
    try:
        return float(score)
    except OverflowError:
        return None


def _shown(score: int | float) -> str:
    text = str(score)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def _edge_problem(name: str, info: Any, config: GraphConfig) -> tuple[str | None, EdgeKey | None]:
    try:
        edge = parse_edge(name)
    except ValueError as error:
        return f"is not an EAP-IG edge name: {error}", None
    for node in edge[:2]:
        problem = _known_node(node_name(node), node, config)
        if problem is not None:
            return f"{node_name(node)} {problem}", None
    if not feeds(edge[0], edge[1], config.parallel_attn_mlp):
        return (
            f"does not exist: {node_name(edge[0])} cannot write into {node_name(edge[1])} "
            "(edges run forward: embeddings, then per layer its heads, then its MLP, then the logits)"
        ), None
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("in_graph", False), bool)
        or not isinstance(info.get("score", 0.0), (int, float, type(None)))
        or isinstance(info.get("score"), bool)
    ):
        return f'has {info!r}; expected {{"score": number or null, "in_graph": true or false}}', None
    return None, edge


_FIX = "fix the name or value in the file, or write it again with EAP-IG's Graph.to_json"


# ---- which edges ------------------------------------------------------------------------------------------


def _in_graph(parsed: _Parsed, source: str, warnings: list[str]) -> set[EdgeKey]:
    flags = parsed.edge_flags
    if flags and all(flag is None for flag in flags.values()):
        raise DataError(
            f"{source}: no edge says whether it is in the graph (no 'in_graph')", None, "select edges by score: --top N or --threshold T"
        )
    edges = {edge for edge, flag in flags.items() if flag}
    if len(edges) == len(list(model_edges(parsed.config))):
        warnings.append(
            f"{source}: every edge of the model is in the graph, so the circuit is the whole model; "
            "if the graph was not pruned, select edges by score with --top N or --threshold T"
        )
    return edges


def _select(parsed: _Parsed, source: str, top: int | None, threshold: float | None) -> set[EdgeKey]:
    """EAP-IG's apply_topn / apply_threshold on |score| (absolute=True), then its prune."""
    if not any(parsed.edge_scores.values()):
        raise DataError(
            f"{source}: the graph has no edge scores (all are 0 or null), so --top/--threshold cannot select edges",
            None,
            "import the edges marked in_graph: leave out --top and --threshold",
        )
    ranked = sorted(parsed.edge_scores, key=lambda e: -abs(parsed.edge_scores[e]))  # stable: file order on ties
    if top is not None:
        chosen = ranked[:top]
    else:
        assert threshold is not None  # the command takes exactly one of --top and --threshold
        chosen = [e for e in ranked if abs(parsed.edge_scores[e]) >= threshold]
    return _prune(set(chosen))


def _prune(edges: set[EdgeKey]) -> set[EdgeKey]:
    """Repeatedly drop nodes without an incoming edge (the embeddings always have one) or without an
    outgoing edge (the logits always have one), and their edges; as EAP-IG's Graph.prune."""
    while True:
        senders = {e[0] for e in edges} | {LOGITS}
        receivers = {e[1] for e in edges} | {INPUT}
        kept = {e for e in edges if e[0] in receivers and e[1] in senders}
        if kept == edges:
            return kept
        edges = kept


# ---- the circuit ----------------------------------------------------------------------------------------


def _circuit(
    nodes: set[ir.Node], edges: set[EdgeKey], config: GraphConfig, source: str, embed_edges: str
) -> tuple[ir.Circuit, Literal["all", "declared"]]:
    span = Span(path=source, line=1, column=1, end_line=1, end_column=1)
    ordered = sorted(nodes, key=_node_order)
    members = tuple(ir.CircuitNode(node=n, role=HEAD_ROLE if n.kind == "head" else MLP_ROLE, span=span) for n in ordered)
    if edges == node_circuit_edges(nodes, config):
        return ir.Circuit(nodes=members), "all"
    implied = {e for e in node_circuit_edges(nodes, config) if e[0] == INPUT}
    needs: Literal["all", "declared"] = "all" if embed_edges == "all" and implied <= edges else "declared"
    declared = edges - implied if needs == "all" else edges
    grouped: dict[tuple[ir.Node, ir.Node], list[str]] = {}
    for sender, receiver, channel in sorted(declared, key=_edge_order):
        grouped.setdefault((sender, receiver), []).extend([channel] if channel else [])
    circuit_edges = tuple(
        ir.Edge(sender=s, receiver=r, channels=tuple(c), span=span)  # type: ignore[arg-type]
        for (s, r), c in grouped.items()
    )
    return ir.Circuit(nodes=members, edges=circuit_edges), needs


def _node_order(node: ir.Node) -> tuple[float, int, int]:
    if node.kind == "embed":
        return -1.0, 0, 0
    if node.kind == "logits":
        return float("inf"), 0, 0
    return float(node.layer), 1 if node.kind == "mlp" else 0, node.head or 0


def _edge_order(edge: EdgeKey) -> tuple:
    return _node_order(edge[1]), _node_order(edge[0]), "qkv".find(edge[2] or "")
