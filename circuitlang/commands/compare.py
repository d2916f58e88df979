"""Compare circuits: shared nodes and edges, and how each circuit does on the others' tasks.

    circuitlang compare a.circ b.circ ... [--no-transfer] [--format table|json|markdown] [-o FILE]

Overlap: a nodes x specs table (each cell the node's role there; under it each spec's nodes,
declared edges and graph edges), the Jaccard index of node sets and of graph-edge sets (EAP-IG's
edges, one per q/k/v channel) for each pair, and the nodes every spec shares. Transfer: the faithfulness
F(C)/F(M) and normalized faithfulness of each spec's circuit on each spec's prompt sets, with that
spec's metric and ablation (one model load per spec). A cell is "n/a" with its reason when the
circuit names a position those prompts lack or the specs are on different models.
A spec whose model does not load gets n/a columns and the exit code 3, after the output.
`--no-transfer` shows the overlap only and loads no model. `--ray` computes each spec's columns on
a Ray cluster (docs/scale.md). See docs/compare.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from circuitlang.commands.cluster_options import add_ray_arguments, ray_request
from circuitlang.commands.common import add_device_argument, load_checked, placement_from_args, progress_display, set_threads
from circuitlang.errors import ModelError, OutputError, Reported, UsageError
from circuitlang.ir import models as ir

if TYPE_CHECKING:  # numpy and torch are imported only when the command runs (the light install has neither)
    from circuitlang.cluster.connect import ClusterRequest
    from circuitlang.engine.session import Session
    from circuitlang.results.comparison import Comparison, Transfer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="the specs to compare (two or more)")
    parser.add_argument("--no-transfer", action="store_true", help="overlap only: run no model")
    parser.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    parser.add_argument("-o", "--output", type=Path, help="write the comparison here instead of stdout (with --format table: its JSON)")
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: as verify: 1 for models under 10M parameters)")
    add_ray_arguments(parser, "a spec's transfer columns each")


def run(args: argparse.Namespace) -> None:
    """Raises the specs' errors, a DataError from binding (a prompt the tokenizer splits differently),
    and after the output a Reported ModelError when a spec's model did not load."""
    from circuitlang.results.comparison import Comparison
    from circuitlang.verification.cross_spec import overlap

    cluster = ray_request(args)
    if len(args.files) < 2:
        raise UsageError("compare needs two or more specs")
    if cluster is not None and args.no_transfer:
        raise UsageError("compare --ray --no-transfer: the overlap runs no model; drop --ray")
    specs = [load_checked(path, args.root) for path in args.files]
    summaries, shared = overlap(specs)
    transfer = None if args.no_transfer else _transfer(specs, args, cluster)
    try:
        _emit(Comparison(specs=summaries, overlap=shared, transfer=transfer), args)
    except OSError as error:
        raise OutputError(f"{args.output}: cannot write: {error.strerror}") from None
    unloaded = [column for column in transfer.columns if column.f_model is None] if transfer is not None else []
    if unloaded:  # the output says why in each n/a cell
        raise Reported([ModelError(f"{column.label}: the model did not load") for column in unloaded])


def _transfer(specs: list[ir.Spec], args: argparse.Namespace, cluster: ClusterRequest | None) -> Transfer:
    from circuitlang.engine.session import open_session
    from circuitlang.workflows.suite import VerifyOptions
    from circuitlang.workflows.transfer import transfer_matrix, transfer_on_ray

    def opened(spec: ir.Spec) -> "Session":
        session = open_session(spec, device=args.device, placement=placement_from_args(args))  # a ModelError: n/a cells; a DataError exits 2
        set_threads(session, args.threads)
        return session

    options = VerifyOptions(args.device, threads=args.threads, placement=placement_from_args(args))
    on_ray = None if cluster is None else transfer_on_ray(cluster, options)
    with progress_display("compare") as say:
        return transfer_matrix(specs, opened, say, on_ray)


def _emit(comparison: Comparison, args: argparse.Namespace) -> None:
    from circuitlang.report.comparison_tables import tables, to_json, to_markdown
    from circuitlang.report.files import write_atomically

    if args.format == "table":
        if args.output:
            write_atomically(args.output, to_json(comparison))
        console = Console(emoji=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
        for item in tables(comparison):
            console.print(item, markup=False) if isinstance(item, str) else console.print(item)
        return
    text = to_json(comparison) if args.format == "json" else to_markdown(comparison)
    if args.output:
        write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
