"""The logit lens and the direct contributions to the metric, on the clean prompts.

Logit lens: the spec's metric read from the residual stream after the embeddings and after each
layer, through the final norm and the unembedding as the model reads its last one, at each
position (the last row at `end` is the model's own metric). Direct contributions: each head's,
each MLP's, the embeddings' and the biases' share of the final residual, read along the metric's
direction in the unembedding through the final norm with its scale frozen at the clean run (so
they add up exactly to the logit difference). Writes to OUTDIR lens.png (stage x position),
direct.png (layer x head at `end`, the MLPs beside), lens.csv and direct.csv (tidy tables).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rich.console import Console

from circuitlang.commands.common import (
    add_device_argument,
    load_checked,
    one_of,
    open_checked,
    placement_from_args,
    progress_display,
    unknown_value,
)
from circuitlang.data.datasets import expand_all
from circuitlang.errors import MissingExtra, OutputError, UsageError
from circuitlang.ir import models as ir

if TYPE_CHECKING:  # torch is imported only when the command runs
    from circuitlang.results.lens import LensResult

IMAGES = ("png", "svg")
POSITIONS = ("tokens", "named")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_reading_arguments(parser, "folder for lens and direct pictures and their CSV tables (created if missing)")


def add_reading_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """The file, the output folder and the options `lens` and `attention` share."""
    parser.add_argument("file", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help=output_help)
    parser.add_argument("--prompt-set", "--prompts", dest="prompt_set", metavar="SET", help="prompt set to read (default: the spec's first)")
    parser.add_argument(
        "--positions",
        choices=POSITIONS,
        type=one_of(POSITIONS),
        help="tokens: every token index (the default for a prompt set with one template); named: the spec's named positions "
        "(the default with several templates)",
    )
    parser.add_argument("--image", choices=IMAGES, type=one_of(IMAGES), default="png", help="picture format (default png)")
    add_device_argument(parser)
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (default: 1 for models under 10M parameters, torch's default otherwise)"
    )


def run(args: argparse.Namespace) -> None:
    in_fresh_folder(args.output, lambda: _run(args))


def in_fresh_folder(output: Path, work: Callable[[], None]) -> None:
    """Run `work`; a failed or interrupted run leaves no empty folder it made."""
    existed = output.exists()
    try:
        work()
    finally:
        if not existed and output.is_dir() and not any(output.iterdir()):
            output.rmdir()


def _run(args: argparse.Namespace) -> None:
    from circuitlang.workflows.lens import CannotRead, LensRequest, lens

    started = time.perf_counter()
    try:
        spec = load_checked(args.file, args.root)
        request = LensRequest(prompt_set_of(spec, args.prompt_set), args.positions)
        check_positions(spec, request.prompt_set, args.positions)
        check_plotting()
        args.output.mkdir(parents=True, exist_ok=True)  # before the model runs: fail fast
        with progress_display("lens") as say:
            session = open_checked(spec, args.device, args.threads, placement_from_args(args))
            say("reading the residual stream")
            try:
                result = lens(session, request)
            except CannotRead as error:
                raise UsageError(f"error: {args.file}: {error}") from None
            say("drawing")
            written = _write(result, args.output, args.image)
    except OSError as error:
        raise OutputError(f"error: cannot write to {args.output}: {error.strerror or error}") from None
    _print_summary(result, written, args.output, time.perf_counter() - started)


def prompt_set_of(spec: ir.Spec, name: str | None) -> str:
    names = [p.name for p in spec.prompt_sets]
    if name is None:
        return names[0]
    if name not in names:
        raise UsageError(f"error: {spec.path}: no prompt set {unknown_value(name, names)}")
    return name


def check_positions(spec: ir.Spec, prompt_set: str, positions: str | None) -> None:
    """Every token index over a set of several templates names no one token: said before loading."""
    templates = next(len(d.templates) for d in expand_all(spec) if d.name == prompt_set)
    if positions == "tokens" and templates > 1:
        raise UsageError(
            f"error: {spec.path}: --positions tokens: prompt set '{prompt_set}' has {templates} templates, so a token index "
            "means a different token in each: use --positions named, or --prompt I for one prompt's every token"
        )


def check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("error: drawing the pictures needs matplotlib: pip install 'circuitlang[pictures]'") from None


def _write(result: "LensResult", out: Path, image: str) -> list[Path]:
    from circuitlang.report.files import write_atomically
    from circuitlang.report.lens_files import table_csv
    from circuitlang.report.lens_plot import direct_picture, lens_picture
    from circuitlang.results.lens import direct_rows, lens_rows

    files = {out / f"lens.{image}": lens_picture(result, image), out / "lens.csv": table_csv(lens_rows(result))}
    if result.direct is not None:
        files |= {out / f"direct.{image}": direct_picture(result, image), out / "direct.csv": table_csv(direct_rows(result))}
    for path, content in files.items():
        write_atomically(path, content)
    return list(files)


def _print_summary(result: "LensResult", written: list[Path], out: Path, seconds: float) -> None:
    from circuitlang.report.lens_files import direct_summary, lens_summary

    console = Console(emoji=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    console.print(lens_summary(result))
    direct = direct_summary(result)
    if direct is not None:
        console.print(direct)
    else:
        console.print(f"no direct contributions: {result.direct_note}", markup=False)
    console.print(f"wrote {len(written)} files to {out} ({seconds:.1f} s)", markup=False)
