"""Write a spec's circuit as another tool's file.

    circuitlang export spec.circ --to eap-ig -o graph.json

`eap-ig` is the graph JSON of EAP-IG (github.com/hannamw/EAP-IG), which its `Graph.from_json`
loads: every node and edge of the model, `in_graph` marking the circuit's, every score 0.0.
`eap-ig-legacy` is the format of EAP-IG before its `src/` layout. Token positions have no EAP-IG
equivalent; they are dropped with a warning. See docs/interop.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from circuitlang.commands.common import load_checked
from circuitlang.errors import OutputError
from circuitlang.ir.eap_ig import export_graph, export_warnings

FORMATS = ("eap-ig", "eap-ig-legacy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the spec whose circuit to export")
    parser.add_argument(
        "--to",
        choices=FORMATS,
        default="eap-ig",
        help="eap-ig (default): EAP-IG's src/eap Graph.to_json format; eap-ig-legacy: its format "
        "before the src/ layout (nodes as bare booleans)",
    )
    parser.add_argument("-o", "--output", type=Path, help="write the file here (default: stdout)")


def run(args: argparse.Namespace) -> None:
    """Raises the spec's errors, a ModelError when the model's shape is unknown offline, or a
    SpecError for an edge EAP-IG lacks."""
    spec = load_checked(args.file, args.root)
    data = export_graph(spec, legacy=args.to == "eap-ig-legacy")
    for warning in export_warnings(spec):
        print(f"warning: {warning}", file=sys.stderr)
    text = json.dumps(data)
    if args.output is None:
        sys.stdout.write(text + "\n")
        return
    from circuitlang.report.files import write_atomically

    try:
        write_atomically(args.output, text)
    except OSError as error:
        raise OutputError(f"{args.output}: cannot write: {error.strerror}") from None
    print(f"wrote {args.output}: {_summary(data)}")


def _summary(data: dict) -> str:
    """Nodes (heads and MLPs) and graph edges in_graph, in the words `draw` and `compare` use."""
    chosen = {name for name, v in data["nodes"].items() if (v["in_graph"] if isinstance(v, dict) else v)}
    nodes = [name for name in data["nodes"] if name not in ("input", "logits")]
    ends = " and ".join(name for name in ("input", "logits") if name in chosen)
    besides = f", besides {ends}" if ends else ""
    edges = sum(e["in_graph"] for e in data["edges"].values())
    return (
        f"in the graph: {len(chosen & set(nodes))} of {len(nodes)} nodes (heads and MLPs{besides}) and "
        f"{edges} of {len(data['edges'])} graph edges"
    )
