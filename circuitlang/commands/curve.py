"""The faithfulness curve of scored edges, as MIB (Mueller et al. 2025) defines it.

    circuitlang curve spec.circ --graph scores.json [--rank abs|signed] [--json curve.json] [--plot curve.svg]
    circuitlang curve spec.circ --method eap eap-ig [--steps N] [--ig-grid left|right] [--plot curves.svg]

Edge scores come from EAP-IG graph files (`--graph`, EAP-IG's Graph.to_json; an edge a file does
not score scores 0) or from attribution methods run here (`--method eap|eap-ig`), one curve per
source, all on one plot. For each fraction of the graph's edges (0.1% ... 100%) the circuit of the
edges ranked first (by |score|, or with `--rank signed` by the signed score), pruned to those that
reach the logits, is evaluated with edge ablation on the spec's prompts; the table gives its normalized faithfulness
f = (m(C) - m(∅)) / (m(M) - m(∅)) and the areas CPR (under f) and CMD (between f and 1).
See docs/discover.md, "Faithfulness curves".
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.commands.common import (
    BYTES_PER_EDGE,
    add_device_argument,
    load_checked,
    one_of,
    open_checked,
    placement_from_args,
    positive_int,
    progress_display,
    graph_value_limit,
    read_graph_json,
    unknown_value,
    why_unwritable,
)
from circuitlang.errors import InputError, OutputError, UsageError
from circuitlang.ir import models as ir
from circuitlang.ir.eap_ig import GraphConfig
from circuitlang.discover.methods import DEFAULT_IG_GRID, EAP_IG_STEPS, IG_GRID_HELP, IG_GRIDS, MAX_STEPS, IGGrid, attribution_label
from circuitlang.discover.ranking import RANKINGS, Ranking
from circuitlang.report.curve_plot import IMAGE_FORMATS
from circuitlang.ir.eap_ig_import import MAX_GRAPH_EDGES, parse_graph

if TYPE_CHECKING:  # torch is imported only inside run
    from circuitlang.discover.curves import FaithfulnessCurve
    from circuitlang.discover.scoring import Scorer

METHODS = ("eap", "eap-ig")
# What the table's words count and mean: f is not verify's faithfulness F(C)/F(M), and the edges are
# the graph edges edge ablation can remove, not every graph edge `compare` counts (docs/discover.md).
CURVE_CAPTION = (
    "f = normalized faithfulness (m(C) - m(∅)) / (m(M) - m(∅)), m(∅): no edge kept (verify's "
    "faithfulness is F(C)/F(M)); edges: graph edges edge ablation can remove, one per q/k/v channel "
    "(with embed_edges = all the embeddings' edges are always kept and not counted)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the spec: model, prompts, metric and ablation (its circuit is ignored)")
    parser.add_argument(
        "--graph",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="GRAPH.json",
        help="take the edge scores from EAP-IG graph files (Graph.to_json); one curve each",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        type=one_of(METHODS),
        nargs="+",
        action="extend",
        default=[],
        help="score the edges here: eap (attribution patching) or eap-ig (with integrated "
        "gradients); one curve each, drawn on the same plot as the graphs'",
    )
    parser.add_argument("--steps", type=positive_int, metavar="N", help=f"eap-ig: integration steps (default {EAP_IG_STEPS})")
    parser.add_argument("--ig-grid", choices=IG_GRIDS, type=one_of(IG_GRIDS), help=IG_GRID_HELP)
    parser.add_argument(
        "--rank",
        choices=RANKINGS,
        type=one_of(RANKINGS),
        default=Ranking.ABSOLUTE.value,
        help="rank edges by |score| (abs, the default; MIB takes CMD this way) or by signed score, "
        "the largest first (signed; MIB takes CPR this way)",
    )
    parser.add_argument("--prompts", help="the prompt set to evaluate on (default: the first)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write the curve and its areas as JSON")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.svg",
        help="draw the normalized faithfulness f against the fraction of edges; the format follows the extension: "
        ".svg, .png or .pdf (these two need the pictures extra)",
    )
    parser.add_argument(
        "--max-edges",
        type=positive_int,
        default=MAX_GRAPH_EDGES,
        metavar="N",
        help=f"refuse graph files of models with more than N edges (default {MAX_GRAPH_EDGES:,})",
    )
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    problem = _bad_option(args)
    if problem:
        raise UsageError(f"curve: {problem}")
    for path in (args.json, args.plot):
        unwritable = why_unwritable(path)
        if unwritable:  # said before the model loads, not after the evaluation
            raise OutputError(f"{path}: cannot write: {unwritable}")
    spec = load_checked(args.file, args.root)  # before torch: a spec error costs no seconds
    prompts = _prompt_set(spec, args)
    graphs = [_graph_scores(path, args.max_edges, spec.shape) for path in args.graph]
    curves = _evaluate(spec, args, graphs)
    for result in curves:
        _print_curve(result, args)
    _write_outputs(curves, args, prompts)


def _bad_option(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, found before the model loads."""
    if not args.graph and not args.method:
        return "give the scores: --graph GRAPH.json (an EAP-IG graph file) or --method eap|eap-ig"
    if args.steps is not None and "eap-ig" not in args.method:
        return "--steps applies to --method eap-ig only"
    if args.ig_grid is not None and "eap-ig" not in args.method:
        return "--ig-grid applies to --method eap-ig only"
    if args.steps is not None and args.steps > MAX_STEPS:
        return f"--steps {args.steps}: give at most {MAX_STEPS} integration steps (the literature uses 5 to 30)"
    if args.plot is not None and args.plot.suffix.lower().lstrip(".") not in IMAGE_FORMATS:
        return f"--plot {args.plot}: the format follows the extension; give a file ending in {', '.join('.' + f for f in IMAGE_FORMATS)}"
    return None


def _prompt_set(spec: ir.Spec, args: argparse.Namespace) -> str:
    """The prompt set to evaluate on: --prompts, checked, or the spec's first."""
    names = [p.name for p in spec.prompt_sets]
    if args.prompts and args.prompts not in names:
        raise UsageError(f"{args.file}: no prompt set named {unknown_value(args.prompts, names)}")
    return args.prompts or names[0]


# ---- the scores ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphScores:
    """The scores of an EAP-IG graph file, keyed as circuitlang's edges (channel "" into MLPs and
    the logits), with the model shape the file states."""

    path: Path
    config: GraphConfig
    scores: dict[tuple[ir.Node, ir.Node, str], float]


def _graph_scores(path: Path, max_edges: int, shape: ir.ModelShape | None) -> GraphScores:
    """Read and check a graph file before the model loads; raises an InputError, or the parser's errors."""
    data = read_graph_json(path, max_edges * BYTES_PER_EDGE, graph_value_limit(shape, max_edges))
    parsed = parse_graph(data, str(path), shape, max_edges)
    if not any(parsed.edge_scores.values()):
        raise InputError(
            f"{path}: the graph has no edge scores (all are 0 or null), so it ranks no edge; write it "
            "from an attribution run (EAP-IG's attribute) or score the edges here with --method"
        )
    scores = {(s, r, c or ""): value for (s, r, c), value in parsed.edge_scores.items()}
    return GraphScores(path, parsed.config, scores)


def _check_shape(graph: GraphScores, scorer: "Scorer", spec_path: Path) -> None:
    """The graph's model against the loaded one, for specs whose shape is unknown before loading."""
    if (graph.config.n_layers, graph.config.n_heads) != (scorer.n_layers, scorer.n_heads):
        raise InputError(
            f"{graph.path}: the graph is of a model with {graph.config.n_layers} layers x "
            f"{graph.config.n_heads} heads, but {spec_path}'s model has {scorer.n_layers} x "
            f"{scorer.n_heads}; score the edges on the spec's model"
        )


def _method_scores(scorer: "Scorer", method: str, args: argparse.Namespace) -> dict:
    from circuitlang.discover.attribution import edge_scores

    return edge_scores(scorer, method, _steps(args), _ig_grid(args))


def _steps(args: argparse.Namespace) -> int:
    return args.steps or EAP_IG_STEPS


def _ig_grid(args: argparse.Namespace) -> IGGrid:
    return IGGrid(args.ig_grid or DEFAULT_IG_GRID.value)


# ---- evaluation and output ---------------------------------------------------------------------------


def _evaluate(spec: ir.Spec, args: argparse.Namespace, graphs: list[GraphScores]) -> list["FaithfulnessCurve"]:
    """Load the model once, score the edges by each method asked for, and evaluate every curve."""
    from circuitlang.discover.curves import curve
    from circuitlang.discover.scoring import Scorer

    with progress_display("curve") as say:
        session = open_checked(spec, args.device, args.threads, placement_from_args(args))
        say("the full model and the empty circuit")
        scorer = Scorer(session, args.prompts)
        _check_edge_graph(scorer, args.file)  # first: m(∅) below is a run of edges
        _check_defined(scorer, args.file)
        for graph in graphs:
            _check_shape(graph, scorer, args.file)
        sources = [(graph.path.name, graph.scores) for graph in graphs]
        _check_attributable(scorer, args)
        for method in args.method:
            say(f"scoring the edges with {method}")
            label = attribution_label(method, _steps(args), _ig_grid(args))
            sources.append((label, _method_scores(scorer, method, args)))
        curves = []
        for label, scores in sources:
            say(f"evaluating the circuits of {label}")
            curves.append(curve(scorer, scores, label=label, ranking=Ranking(args.rank)))
        return curves


def _check_defined(scorer: "Scorer", spec_path: Path) -> None:
    """f's zero is m(∅), the graph without edges (with `embed_edges = declared` it also loses the
    embeddings, so it is not verify's F(empty))."""
    from circuitlang.discover.curves import empty_graph

    (m_empty,) = scorer.means([empty_graph(scorer)])
    if scorer.f_model == m_empty:
        raise InputError(
            f"{spec_path}: the model and the graph without edges give the same mean metric "
            f"({m_empty:.4g}) on these prompts, so f = (m(C) - m(∅)) / (m(M) - m(∅)) is undefined; "
            "check the ablation"
        )


def _check_attributable(scorer: "Scorer", args: argparse.Namespace) -> None:
    from circuitlang.discover.attribution import why_not_attributable

    for method in args.method:
        why = why_not_attributable(scorer, method)
        if why:
            raise UsageError(f"{args.file}: --method {method}: {why}")


def _check_edge_graph(scorer: "Scorer", spec_path: Path) -> None:
    """A curve ranks and ablates edges of the full graph; some models have no such graph."""
    why = scorer.session.model.family.why_no_edge_graph()
    if why:
        raise InputError(f'{spec_path}: a faithfulness curve evaluates circuits of edges, but {why} (docs/engine.md, "Model families")')


def _print_curve(result: "FaithfulnessCurve", args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"faithfulness curve of {result.label} on {args.file.name} "
        f"({result.total_edges:,} edges ranked {result.ranking.by}; m(M) = {result.m_model:.4g}, "
        f"m(∅) = {result.m_empty:.4g})",
        title_justify="left",
        caption=CURVE_CAPTION,
        caption_justify="left",
    )
    for column in ("fraction", "k", "edges", "nodes", "m(C)", "normalized faithfulness f"):
        table.add_column(column, justify="right")
    for fraction, point in zip(result.fractions, result.points):
        table.add_row(
            f"{fraction:g}",
            f"{point.k:,}",
            f"{point.edges:,}",
            f"{point.nodes:,}",
            f"{point.metric:.4g}",
            f"{point.normalized_faithfulness:.4f}",
        )
    console = Console(emoji=False, highlight=False, soft_wrap=True)
    console.print(table)
    console.print(
        f"edges ranked {result.ranking.by}: CPR (area under f) {result.cpr:.4f}; CMD (area between f "
        f"and 1) {result.cmd:.4f}; over ln(fraction): CPR {result.cpr_log:.4f}, CMD {result.cmd_log:.4f}"
    )


def _write_outputs(curves: list["FaithfulnessCurve"], args: argparse.Namespace, prompts: str) -> None:
    """Write --json and --plot; the first that cannot be written raises an OutputError."""
    from circuitlang.report.files import write_atomically

    outputs: list[tuple[Path, str | bytes]] = []
    if args.json is not None:
        document = {"spec": str(args.file), "prompts": prompts, "curves": [c.to_json() for c in curves]}
        outputs.append((args.json, json.dumps(document, indent=2) + "\n"))
    if args.plot is not None:
        from circuitlang.report.curve_plot import faithfulness_image

        title = f"faithfulness curve: {args.file.name}, prompts {prompts}, edges ranked {Ranking(args.rank).by}"
        outputs.append((args.plot, faithfulness_image(curves, title, args.plot.suffix.lower().lstrip("."))))
    for path, text in outputs:
        try:
            write_atomically(path, text)
        except OSError as error:
            raise OutputError(f"{path}: cannot write: {error.strerror}") from None
        print(f"wrote {path}")
