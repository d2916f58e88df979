"""Draw circuits as layered diagrams laid out by Graphviz dot, from the specs alone (no model is
loaded). Heads are ellipses and MLPs boxes, coloured by role; edges are the spec's `edge` lines,
labelled with their channels. Several specs give one diagram of their union, with shared nodes
marked and edges coloured per spec. The format follows the extension of -o: .svg, .png, .pdf,
or .dot (the graph source)."""

from __future__ import annotations

import argparse
from pathlib import Path

from circuitlang.commands.common import load_checked
from circuitlang.errors import MissingExtra, OutputError, UsageError
from circuitlang.report.diagram import build_diagram
from circuitlang.report.draw_graphviz import FORMATS, picture_format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="one or more .circ files (on models of one shape)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=f"the picture to write (atomically); its extension picks the format: {', '.join(FORMATS)}",
    )


def run(args: argparse.Namespace) -> None:
    """Raises the specs' errors, or the diagram's (specs on models of different shapes)."""
    if picture_format(args.output) is None:
        raise UsageError(
            f"{args.output}: unknown picture format '{args.output.suffix}'; name the output with one of: {', '.join('.' + f for f in FORMATS)}"
        )
    diagram = build_diagram([load_checked(path, args.root) for path in args.files])
    try:
        from circuitlang.report.draw_graphviz import render

        render(diagram, args.output)
    except ImportError:
        raise MissingExtra("drawing needs pygraphviz: pip install 'circuitlang[pictures]'") from None
    except OSError as error:
        raise OutputError(f"{args.output}: cannot write: {error.strerror}") from None
    print(f"wrote {args.output}: {diagram.title}: {diagram.caption}")
