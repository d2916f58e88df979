"""Read a circuit from another tool's file into a `.circ` spec.

    circuitlang import graph.json --base spec.circ -o out.circ [--top N | --threshold T]

The graph is an EAP-IG graph JSON (github.com/hannamw/EAP-IG, `Graph.to_json`). The written spec
keeps the base spec's model, prompts, metric, ablation and settings, and its metric claims
(faithfulness, completeness, minimality); its circuit is the graph's: heads in the role "imported
head", MLPs on a bare `mlp` line, and the graph's edges with EAP-IG's scores as comments (none
when the graph holds every edge among its nodes: that is a node circuit). `--top`/`--threshold`
select edges by |score| instead of the file's in_graph marks. See docs/interop.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from circuitlang.commands.common import BYTES_PER_EDGE, graph_value_limit, load_checked, positive_int, read_graph_json
from circuitlang.discover.write import FoundCircuit, write_spec
from circuitlang.dsl import ast
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import statement_text
from circuitlang.errors import OutputError
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig_import import MAX_GRAPH_EDGES, ImportedGraph, import_graph
from circuitlang.ir.lower import load_spec
from circuitlang.ir.paths import default_root
from circuitlang.ir.uses import read_spec_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", type=Path, help="the graph file (EAP-IG's Graph.to_json)")
    parser.add_argument(
        "--base", type=Path, required=True, help="the spec whose model, prompts, metric, ablation and metric claims the circuit goes into"
    )
    parser.add_argument("-o", "--output", type=Path, help="write the spec here (default: stdout)")
    parser.add_argument("--from", dest="source_format", choices=("eap-ig",), default="eap-ig")
    select = parser.add_mutually_exclusive_group()
    select.add_argument(
        "--top",
        type=positive_int,
        metavar="N",
        help="take the N edges with the largest |score| (then prune as EAP-IG does), ignoring the file's in_graph marks",
    )
    select.add_argument(
        "--threshold", type=float, metavar="T", help="take the edges with |score| >= T (then prune), ignoring the file's in_graph marks"
    )
    parser.add_argument("--name", help="the circuit's name (default: the base spec's)")
    parser.add_argument(
        "--max-edges",
        type=positive_int,
        default=MAX_GRAPH_EDGES,
        metavar="N",
        help=f"refuse graphs of models with more than N edges (default {MAX_GRAPH_EDGES:,}); "
        f"the file may be at most {BYTES_PER_EDGE} bytes per edge",
    )


def run(args: argparse.Namespace) -> None:
    """Raises the base spec's errors, the graph file's (InputError, or the importer's DataError), and
    the written spec's (a --name that is not a circuit name)."""
    base = load_checked(args.base, args.root)
    data = read_graph_json(args.graph, args.max_edges * BYTES_PER_EDGE, graph_value_limit(base.shape, args.max_edges))
    imported = import_graph(data, str(args.graph), base.shape, args.top, args.threshold, base.settings.embed_edges, args.max_edges)
    base_ast = parse(read_spec_text(args.base), str(args.base))
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    claims = _claims(base_ast, imported, base, args.graph)
    found = FoundCircuit(
        imported.circuit,
        header=_header(imported, args),
        claims=claims,
        node_notes={n: f"score {s:.4g}" for n, s in imported.node_scores.items()},
        edge_notes={pair: _score_note(scores) for pair, scores in imported.edge_scores.items()},
    )
    out = args.output or Path.cwd() / "imported.circ"
    text = write_spec(args.base, found, out, name=args.name, root=args.root)
    if args.output is None:
        sys.stdout.write(text)
        return
    try:
        _write_checked(args.output, text, imported, args.root or default_root(args.base))
    except OSError as error:
        raise OutputError(f"{args.output}: cannot write: {error.strerror}") from None


def _claims(base_ast: ast.SpecFile, imported: ImportedGraph, base: ir.Spec, graph: Path) -> tuple[str, ...]:
    """The base's metric claims, and the embedding setting the graph's edges need."""
    lines = [statement_text(item) for item in base_ast.items if isinstance(item, ast.ExpectMetric)]
    if imported.embed_edges == "declared" and base.settings.embed_edges == "all":
        if any(isinstance(i, ast.SetDecl) and i.key.name == "embed_edges" for i in base_ast.items):
            print(
                f"warning: {graph}: the graph leaves out some edges from the embeddings, but {base.path} sets "
                "embed_edges = all, which keeps them all; set embed_edges = declared there to keep only the "
                "graph's",
                file=sys.stderr,
            )
        else:
            lines.insert(0, "set embed_edges = declared")
    return tuple(lines)


def _header(imported: ImportedGraph, args: argparse.Namespace) -> tuple[str, ...]:
    config = imported.config
    heads = sum(m.node.kind == "head" for m in imported.circuit.nodes)
    mlps = len(imported.circuit.nodes) - heads
    how = f" --top {args.top}" if args.top else f" --threshold {args.threshold}" if args.threshold is not None else ""
    lines = [
        f"Imported from the EAP-IG graph {args.graph.name} ({config.n_layers} layers x {config.n_heads} heads): "
        f"{imported.selected} of {imported.total} graph edges, {heads} heads, {mlps} MLPs,",
        f"with circuitlang import {args.graph.name} --base {args.base.name}{how}.",
    ]
    if not imported.circuit.edges:
        lines.append("The graph holds every edge among these nodes: a node circuit, written without edges.")
    elif imported.edge_scores:
        lines.append("Edge comments: EAP-IG's scores (per channel q, k, v for edges into heads).")
    return tuple(lines)


def _score_note(scores: dict[str, float]) -> str:
    if list(scores) == [""]:
        return f"score {scores['']:.4g}"
    return "scores " + ", ".join(f"{channel} {value:.4g}" for channel, value in scores.items())


def _write_checked(path: Path, text: str, imported: ImportedGraph, root: Path) -> None:
    """Write the spec and load it back (raising its errors): what `verify` will read must be a valid spec."""
    from circuitlang.report.files import write_atomically

    write_atomically(path, text)
    load_spec(path, root)
    edges = len(imported.circuit.edges)
    print(f"wrote {path}: {len(imported.circuit.nodes)} nodes" + (f", {edges} declared edges" if edges else " (node circuit)"))
