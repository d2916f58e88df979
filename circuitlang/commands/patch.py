"""Activation patching and path patching sweeps: heatmaps and the numbers behind them.

Activation patching: for each head (each head and named position, each MLP and position) the
metric when only that node is ablated (the spec's `ablate`), everything else clean. Path patching
(`--receiver`): for each head as the sender, the metric when it is patched from the paired
corrupt prompt into the receiver only. Writes to OUTDIR one picture per sweep, patching.json (units,
definitions and every matrix) and one CSV per sweep; prints the ten largest effects. Effects are
F(patched) − F(M) in the metric's units; --normalized colours the pictures by
(F(patched) − F(M)) / (F(M) − F(∅)) instead (the JSON and CSV always hold both).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rich.console import Console
from rich.markup import escape

from circuitlang.commands.common import (
    add_device_argument,
    load_checked,
    one_of,
    open_checked,
    placement_from_args,
    progress_display,
    unknown_value,
)
from circuitlang.errors import InputError, MissingExtra, OutputError, UsageError
from circuitlang.ir import models as ir
from circuitlang.ir.node_text import parse_node

if TYPE_CHECKING:  # torch is imported only when the command runs
    from circuitlang.engine.session import Session
    from circuitlang.workflows.patch import PatchReport, PatchRequest

SENDER_KINDS = ("heads", "mlps")  # what a path sweep may patch as senders: each layer's heads, its MLP
KINDS = ("heads", "heads-by-position", "mlps", "path")  # the sweeps circuitlang.workflows.patch runs
IMAGES = ("png", "svg")
RECEIVER_FORMS = "logits, L.H (q, k and v), L.H:q or L.H:k,v, or mlpL"
CHANNELS = ("q", "k", "v")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUTDIR",
        help="folder for the pictures, patching.json and the CSV files (created if missing)",
    )
    parser.add_argument("--prompts", metavar="SET", help="prompt set to patch on (default: the spec's first)")
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        type=one_of(KINDS),
        help="sweep to run; repeat for several (default: heads, heads-by-position, mlps, and path when --receiver is given)",
    )
    parser.add_argument(
        "--receiver",
        action="append",
        default=[],
        metavar="R",
        help=f"path patching receiver: {RECEIVER_FORMS}; repeat for several (default with --kind path: logits)",
    )
    parser.add_argument(
        "--senders",
        action="append",
        choices=SENDER_KINDS,
        type=one_of(SENDER_KINDS),
        help="path patching senders: each layer's heads, its MLP, or both (repeat: --senders heads --senders mlps); default heads",
    )
    parser.add_argument(
        "--normalized", action="store_true", help="colour the pictures by (F(patched) − F(M)) / (F(M) − F(∅)) instead of the metric change"
    )
    parser.add_argument(
        "--all-positions", action="store_true", help="sweep every token index instead of the named positions (prompt sets with one template)"
    )
    parser.add_argument("--image", choices=IMAGES, type=one_of(IMAGES), default="png", help="picture format (default png)")
    add_device_argument(parser)
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (default: 1 for models under 10M parameters, torch's default otherwise)"
    )


def run(args: argparse.Namespace) -> None:
    existed = args.output.exists()
    try:
        _run(args)
    finally:  # a failed or interrupted run leaves no empty folder it made
        if not existed and args.output.is_dir() and not any(args.output.iterdir()):
            args.output.rmdir()


def _run(args: argparse.Namespace) -> None:
    """Raises the spec's errors, a UsageError or InputError for a sweep that cannot run, and an
    OutputError when OUTDIR cannot take the files. patch's own lines start with "error: "."""
    started = time.perf_counter()
    try:
        spec = load_checked(args.file, args.root)
        request = _request(spec, args)
        _check_before_loading(spec, request)
        _check_plotting()
        args.output.mkdir(parents=True, exist_ok=True)  # before the model runs: fail fast
        with progress_display("patch") as say:
            session = open_checked(spec, args.device, args.threads, placement_from_args(args))
            report = _patch(session, request, say)
            say("drawing")
            written = _write(report, args, time.perf_counter() - started)
    except OSError as error:
        raise OutputError(f"error: cannot write to {args.output}: {error.strerror or error}") from None
    _print_summary(report, written, args.output, time.perf_counter() - started)


# ---- arguments -------------------------------------------------------------------------------


def _request(spec: ir.Spec, args: argparse.Namespace) -> "PatchRequest":
    from circuitlang.engine.path_patching import Receiver
    from circuitlang.workflows.patch import PatchRequest

    kinds = _kinds(args.kind, args.receiver)
    written = args.receiver or (["logits"] if "path" in kinds else [])
    receivers = tuple(
        Receiver(node, channels) if node.kind == "head" else Receiver(node)
        for node, channels in dict.fromkeys(_parse_receiver(text, spec.shape) for text in written)
    )
    senders = tuple(dict.fromkeys(args.senders or ["heads"]))
    return PatchRequest(_prompt_set(spec, args.prompts), tuple(kinds), receivers, args.all_positions, senders)


def _prompt_set(spec: ir.Spec, name: str | None) -> str:
    names = [p.name for p in spec.prompt_sets]
    if name is None:
        return names[0]
    if name not in names:
        raise UsageError(f"error: {spec.path}: no prompt set {unknown_value(name, names)}")
    return name


def _kinds(chosen: list[str] | None, receivers: list[str]) -> list[str]:
    if chosen:
        return list(dict.fromkeys(chosen + (["path"] if receivers else [])))
    return ["heads", "heads-by-position", "mlps"] + (["path"] if receivers else [])


def _parse_receiver(text: str, shape: ir.ModelShape | None = None) -> tuple[ir.Node, tuple[str, ...]]:
    """`logits`, `9.1`, `9.1:q`, `9.1:k,v`, `mlp3` (or `mlp 3`) -> (node, channels)."""
    written, _, channel_text = text.partition(":")
    node = parse_node(written)
    named = {c.strip() for c in channel_text.lower().split(",")} if channel_text else set(CHANNELS)
    if node is None or node.kind == "embed":
        raise UsageError("error: --receiver " + unknown_value(text, _receiver_names(written, shape), RECEIVER_FORMS))
    if channel_text and (node.kind != "head" or not named <= set(CHANNELS)):
        meant = [f"{written}:{c}" for c in CHANNELS] if node.kind == "head" else [written.strip()]  # no channels
        raise UsageError("error: --receiver " + unknown_value(text, meant, RECEIVER_FORMS))
    if node.kind != "head":
        return node, ()
    return node, tuple(c for c in CHANNELS if c in named)  # one order: 9.1:v,k is 9.1:k,v


def _receiver_names(written: str, shape: ir.ModelShape | None) -> list[str]:
    """Receivers to suggest, written as `written` is (`mlp 3` or `mlp3`); heads only when the
    model's shape is known offline."""
    mlp = "mlp {}" if " " in written.strip() else "mlp{}"
    layers = range(shape.n_layers) if shape else ()
    heads = [f"{layer}.{head}" for layer in layers for head in range(shape.n_heads)] if shape else []
    return ["logits", *(mlp.format(layer) for layer in layers), *heads]


def _check_before_loading(spec: ir.Spec, request: "PatchRequest") -> None:
    """What can be checked without the model: a sweep can take minutes after loading."""
    from circuitlang.workflows.patch import CannotPatch, check_path_patching_possible, check_receivers

    try:
        if "path" in request.kinds:
            check_path_patching_possible(spec, request.prompt_set)
        if spec.shape is not None:
            check_receivers([r.node for r in request.receivers], spec.shape.n_layers, spec.shape.n_heads, spec.model.name)
    except CannotPatch as error:
        raise InputError(f"error: {error}") from None


def _check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("error: drawing the heatmaps needs matplotlib: pip install 'circuitlang[pictures]'") from None


# ---- the workflow --------------------------------------------------------------------------------


def _patch(session: "Session", request: "PatchRequest", status: Callable[[str], None]) -> "PatchReport":
    from circuitlang.workflows.patch import CannotPatch, patch

    try:
        return patch(session, request, status)
    except CannotPatch as error:
        raise InputError(f"error: {error}") from None


# ---- output ------------------------------------------------------------------------------------


def _write(report: "PatchReport", args: argparse.Namespace, seconds: float) -> list[Path]:
    from circuitlang.report.heatmaps import draw_heatmap
    from circuitlang.report.patch_files import to_csv, to_json
    from circuitlang.report.files import write_atomically

    out: Path = args.output
    written = []
    for matrix in report.matrices:
        picture = out / f"{matrix.name}.{args.image}"
        draw_heatmap(matrix, report.context, picture, args.normalized)
        write_atomically(out / f"{matrix.name}.csv", to_csv(matrix, report.context))
        written += [picture, out / f"{matrix.name}.csv"]
    write_atomically(out / "patching.json", to_json(report.context, list(report.matrices), seconds))
    return written + [out / "patching.json"]


def _print_summary(report: "PatchReport", written: list[Path], out: Path, seconds: float) -> None:
    from circuitlang.report.patch_files import top_effects

    console = Console(emoji=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    console.print(top_effects(report.context, list(report.matrices)))
    if report.context.left_out_positions:
        left_out = escape(", ".join(report.context.left_out_positions))
        console.print(f"[yellow]not in every template, so not swept:[/yellow] {left_out}")
    console.print(f"wrote {len(written)} files to {out} ({seconds:.1f} s)")
