"""Attention patterns of chosen heads on the clean prompts: one picture per head and a tidy table.

The mean pattern over the prompt set (every token with one template, the spec's named positions
with several), or with --prompt I one prompt's (its index in the set, from 0, as in
`prompt #3 of digits`), over its every token. Positions are labelled by the spec's names (`s4`,
`end`) and an example token. Writes to OUTDIR attention_L.H.png (or _promptI) per head and
attention.csv (one row per head, query and key); prints where the last position attends most.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from circuitlang.commands.common import load_checked, open_checked, placement_from_args, progress_display
from circuitlang.commands.lens import add_reading_arguments, check_plotting, check_positions, in_fresh_folder, prompt_set_of
from circuitlang.data.datasets import expand_all
from circuitlang.errors import OutputError, UsageError
from circuitlang.ir import models as ir
from circuitlang.ir.node_text import parse_node

if TYPE_CHECKING:  # torch is imported only when the command runs
    from circuitlang.results.lens import AttentionResult

HEAD_FORM = "a head as layer.head, e.g. 0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heads", nargs="+", required=True, metavar="L.H", help="the heads to show, e.g. --heads 0.0 0.2")
    parser.add_argument(
        "--prompt",
        type=_prompt_index,
        metavar="I",
        help="one prompt's pattern (its index in the prompt set, from 0) instead of the mean over the set",
    )
    add_reading_arguments(parser, "folder for one picture per head and attention.csv (created if missing)")


def _prompt_index(text: str) -> int:
    """An argparse type: a prompt's index in its set, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more (prompts are numbered from 0)")
    return value


def run(args: argparse.Namespace) -> None:
    in_fresh_folder(args.output, lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    from circuitlang.workflows.attention import AttentionRequest, attention, check_heads, check_prompt
    from circuitlang.workflows.lens import CannotRead

    started = time.perf_counter()
    try:
        spec = load_checked(args.file, args.root)
        prompt_set = prompt_set_of(spec, args.prompt_set)
        request = AttentionRequest(prompt_set, tuple(dict.fromkeys(_head(text) for text in args.heads)), args.prompt, args.positions)
        try:  # what can be checked before the model loads
            if spec.shape is not None:
                check_heads(request.heads, spec.shape.n_layers, spec.shape.n_heads, spec.model.name)
            if args.prompt is not None:
                check_prompt(args.prompt, _count(spec, prompt_set), prompt_set)
            else:
                check_positions(spec, prompt_set, args.positions)
        except CannotRead as error:
            raise UsageError(f"error: {args.file}: {error}") from None
        check_plotting()
        args.output.mkdir(parents=True, exist_ok=True)
        with progress_display("attention") as say:
            session = open_checked(spec, args.device, args.threads, placement_from_args(args))
            say("reading attention")
            try:
                result = attention(session, request)
            except CannotRead as error:
                raise UsageError(f"error: {args.file}: {error}") from None
            say("drawing")
            written = _write(result, args.output, args.image)
    except OSError as error:
        raise OutputError(f"error: cannot write to {args.output}: {error.strerror or error}") from None
    _print_summary(result, written, args.output, time.perf_counter() - started)


def _head(text: str) -> tuple[int, int]:
    node = parse_node(text)
    if node is None or node.kind != "head":
        raise UsageError(f"error: --heads {text!r}: attention patterns are per head: expected {HEAD_FORM}")
    return int(node.layer), int(node.head)


def _count(spec: ir.Spec, prompt_set: str) -> int:
    return next(len(d.clean) for d in expand_all(spec) if d.name == prompt_set)


def _write(result: "AttentionResult", out: Path, image: str) -> list[Path]:
    from circuitlang.report.attention_plot import attention_picture
    from circuitlang.report.files import write_atomically
    from circuitlang.report.lens_files import table_csv
    from circuitlang.results.lens import attention_rows

    suffix = "" if result.prompt is None else f"_prompt{result.prompt}"
    files = {out / f"attention_{p.head}{suffix}.{image}": attention_picture(result, p.head, image) for p in result.patterns}
    files[out / f"attention{suffix}.csv"] = table_csv(attention_rows(result))
    for path, content in files.items():
        write_atomically(path, content)
    return list(files)


def _print_summary(result: "AttentionResult", written: list[Path], out: Path, seconds: float) -> None:
    from circuitlang.report.lens_files import attention_summary

    console = Console(emoji=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    console.print(attention_summary(result))
    console.print(f"wrote {len(written)} files to {out} ({seconds:.1f} s)", markup=False)
