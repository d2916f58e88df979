"""Draw circuits as layered diagrams laid out by Graphviz dot, from the specs alone (no model is
loaded). Heads are ellipses and MLPs boxes, coloured by role; edges are the spec's `edge` lines,
labelled with their channels. Several specs give one diagram of their union, with shared nodes
marked and edges coloured per spec. The format follows the extension of -o: .svg, .png, .pdf,
or .dot (the graph source)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from circuitlang.commands.common import EXIT_OK, EXIT_RUNTIME_ERROR, EXIT_SPEC_ERROR, CommandFailed, load_checked, \
    print_errors
from circuitlang.errors import CircuitlangError, exit_code
from circuitlang.report.diagram import build_diagram
from circuitlang.report.draw_graphviz import FORMATS, picture_format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="one or more .circ files (on models of one shape)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help=f"the picture to write (atomically); its extension picks the format: {', '.join(FORMATS)}")


def run(args: argparse.Namespace) -> int:
    if picture_format(args.output) is None:
        print(f"{args.output}: unknown picture format '{args.output.suffix}'; "
              f"name the output with one of: {', '.join('.' + f for f in FORMATS)}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    try:
        diagram = build_diagram([load_checked(path, args.root) for path in args.files])
    except CommandFailed as failure:
        return failure.exit_code
    except CircuitlangError as error:
        print_errors(error)
        return exit_code([error])
    try:
        from circuitlang.report.draw_graphviz import render

        render(diagram, args.output)
    except ImportError:
        print("drawing needs pygraphviz: pip install 'circuitlang[pictures]'", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    except OSError as error:
        print(f"{args.output}: cannot write: {error.strerror}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    print(f"wrote {args.output}: {diagram.title}: {diagram.caption}")
    return EXIT_OK
