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
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rich.console import Console

from circuitlang.commands.common import (EXIT_OK, EXIT_RUNTIME_ERROR, EXIT_SPEC_ERROR, CommandFailed, load_checked,
                                         open_checked, print_errors)
from circuitlang.errors import CircuitlangError
from circuitlang.ir import models as ir

if TYPE_CHECKING:  # torch is imported only when the command runs
    from circuitlang.api import Run
    from circuitlang.engine.patching_sweeps import SweepResult
    from circuitlang.report.patching import PatchContext, PatchMatrix

KINDS = ("heads", "heads-by-position", "mlps", "path")
RECEIVER_FORMS = "logits, L.H (q, k and v), L.H:q or L.H:k,v, or mlpL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                        help="folder for the pictures, patching.json and the CSV files (created if missing)")
    parser.add_argument("--prompts", metavar="SET", help="prompt set to patch on (default: the spec's first)")
    parser.add_argument("--kind", action="append", choices=KINDS,
                        help="sweep to run; repeat for several (default: heads, heads-by-position, mlps, and path "
                             "when --receiver is given)")
    parser.add_argument("--receiver", action="append", default=[], metavar="R",
                        help=f"path patching receiver: {RECEIVER_FORMS}; repeat for several (default with "
                             "--kind path: logits)")
    parser.add_argument("--normalized", action="store_true",
                        help="colour the pictures by (F(patched) − F(M)) / (F(M) − F(∅)) instead of the metric change")
    parser.add_argument("--all-positions", action="store_true",
                        help="sweep every token index instead of the named positions (prompt sets with one template)")
    parser.add_argument("--image", choices=("png", "svg"), default="png", help="picture format (default png)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: 1 for models under 10M parameters, torch's default otherwise)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        spec = load_checked(args.file)
        prompt_set = _prompt_set(spec, args.prompts)
        kinds = _kinds(args.kind, args.receiver)
        receivers = list(dict.fromkeys(_parse_receiver(text)
                                       for text in (args.receiver or (["logits"] if "path" in kinds else []))))
        _check_before_loading(spec, prompt_set, kinds, receivers)
        _check_plotting()
        args.output.mkdir(parents=True, exist_ok=True)  # before the model runs: fail fast
        with Console(stderr=True).status("loading the model") as progress:
            run_ = open_checked(spec, args.device, args.threads)
            context, matrices = _sweep(run_, prompt_set, kinds, receivers, args.all_positions, progress.update)
            progress.update("drawing")
            written = _write(context, matrices, args, time.perf_counter() - started)
    except CommandFailed as failure:
        return failure.exit_code
    except CircuitlangError as error:  # found while running (the spec itself was checked above)
        print_errors(error)
        return EXIT_RUNTIME_ERROR
    except OSError as error:
        print(f"error: cannot write to {args.output}: {error.strerror or error}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    _print_summary(context, matrices, written, args.output, time.perf_counter() - started)
    return EXIT_OK


# ---- arguments -------------------------------------------------------------------------------


def _fail(message: str, code: int = EXIT_SPEC_ERROR) -> CommandFailed:
    print(f"error: {message}", file=sys.stderr)
    return CommandFailed(code)


def _prompt_set(spec: ir.Spec, name: str | None) -> str:
    names = [p.name for p in spec.prompt_sets]
    if name is None:
        return names[0]
    if name not in names:
        raise _fail(f"{spec.path}: no prompt set '{name}'; the spec has: {', '.join(names)}")
    return name


def _kinds(chosen: list[str] | None, receivers: list[str]) -> list[str]:
    if chosen:
        return list(dict.fromkeys(chosen + (["path"] if receivers else [])))
    return ["heads", "heads-by-position", "mlps"] + (["path"] if receivers else [])


def _parse_receiver(text: str) -> tuple[ir.Node, tuple[str, ...]]:
    """`logits`, `9.1`, `9.1:q`, `9.1:k,v`, `mlp3` (or `mlp 3`) -> (node, channels)."""
    cleaned = text.strip().lower()
    if cleaned == "logits":
        return ir.Node(kind="logits"), ()
    if match := re.fullmatch(r"mlp\s*(\d+)", cleaned):
        return ir.Node(kind="mlp", layer=int(match[1])), ()
    if match := re.fullmatch(r"(\d+)\.(\d+)(?::\s*([qkv](?:\s*,\s*[qkv])*))?", cleaned):
        named = {c.strip() for c in match[3].split(",")} if match[3] else {"q", "k", "v"}
        channels = tuple(c for c in ("q", "k", "v") if c in named)  # one order: 9.1:v,k is 9.1:k,v
        return ir.Node(kind="head", layer=int(match[1]), head=int(match[2])), channels
    raise _fail(f"--receiver {text!r}: expected {RECEIVER_FORMS}")


def _check_before_loading(spec: ir.Spec, prompt_set: str, kinds: list[str],
                          receivers: list[tuple[ir.Node, tuple[str, ...]]]) -> None:
    """What can be checked without the model: a sweep can take minutes after loading."""
    chosen = spec.prompt_set(prompt_set)
    if "path" in kinds and chosen.corruption is None and chosen.generator is None:
        raise _fail(f"prompt set '{prompt_set}' has no corruption: path patching patches each sender from the "
                    "paired corrupt prompt; add a `corrupt` block to the prompt set")
    if spec.shape is not None:
        _check_receivers(receivers, spec.shape.n_layers, spec.shape.n_heads, spec.model.name)


def _check_receivers(receivers: list[tuple[ir.Node, tuple[str, ...]]], n_layers: int, n_heads: int, model: str) -> None:
    for node, _ in receivers:
        if node.layer is not None and not 0 <= node.layer < n_layers:
            raise _fail(f"--receiver {node}: layer {node.layer} does not exist: {model} has layers 0-{n_layers - 1}")
        if node.head is not None and not 0 <= node.head < n_heads:
            raise _fail(f"--receiver {node}: head {node.head} does not exist: {model} has heads 0-{n_heads - 1}")


def _check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _fail("drawing the heatmaps needs matplotlib: pip install 'circuitlang[pictures]'",
                    EXIT_RUNTIME_ERROR) from None


# ---- sweeps ------------------------------------------------------------------------------------


def _sweep(run_: "Run", prompt_set: str, kinds: list[str], receivers: list, all_positions: bool,
           status: Callable[[str], None]) -> tuple["PatchContext", list["PatchMatrix"]]:
    from circuitlang.engine import patching_sweeps as sweeps
    from circuitlang.engine.path_patching import Receiver

    engine = run_.engine(prompt_set)
    _check_receivers(receivers, engine.n_layers, engine.n_heads, run_.spec.model.name)
    readout = engine.readout()
    base = sweeps.baseline(engine, readout)
    columns = _columns(engine, all_positions) if {"heads-by-position", "mlps"} & set(kinds) else ()
    jobs: list[tuple[str, Callable[[], "SweepResult"]]] = []
    if "heads" in kinds:
        jobs.append(("heads", lambda: sweeps.head_sweep(engine, readout, base)))
    if "heads-by-position" in kinds:
        jobs.append(("heads by position", lambda: sweeps.head_position_sweep(engine, readout, base, columns)))
    if "mlps" in kinds:
        jobs.append(("MLPs by position", lambda: sweeps.mlp_position_sweep(engine, readout, base, columns)))
    for node, channels in receivers if "path" in kinds else []:
        receiver = Receiver(node, channels) if node.kind == "head" else Receiver(node)
        jobs.append((f"path patching into {sweeps.receiver_label(receiver)}",
                     lambda receiver=receiver: _path(engine, readout, base, receiver)))
    results = []
    for number, (description, job) in enumerate(jobs, 1):
        status(f"sweep {number}/{len(jobs)}: {description}")
        results.append(job())
    return _context(run_, prompt_set, base, all_positions, engine), [_matrix(r) for r in results]


def _columns(engine, all_positions: bool):
    from circuitlang.engine import patching_sweeps as sweeps

    if not all_positions:
        return sweeps.named_columns(engine)
    try:
        return sweeps.token_columns(engine)
    except ValueError as error:
        raise _fail(f"--all-positions: {error}; sweep the named positions instead (leave out --all-positions)") from None


def _path(engine, readout, base, receiver) -> "SweepResult":
    from circuitlang.engine import patching_sweeps as sweeps

    if any(t.corrupt is None for t in engine.bound.templates):
        raise _fail(f"prompt set '{engine.bound.name}' has no corruption: path patching patches each sender from "
                    "the paired corrupt prompt; add a `corrupt` block to the prompt set")
    return sweeps.path_sweep(engine, readout, base, receiver)


def _context(run_: "Run", prompt_set: str, base, all_positions: bool, engine) -> "PatchContext":
    from circuitlang.engine import patching_sweeps as sweeps
    from circuitlang.report.patching import PatchContext

    spec = run_.spec
    metric = spec.metric_for(spec.prompt_set(prompt_set))
    shared = {name for column in sweeps.named_columns(engine) for name in column.names}
    every = {name for template in engine.bound.templates for name in template.positions}
    ablation = spec.ablation.kind + (f" of {spec.ablation.source}" if spec.ablation.source else "")
    return PatchContext(spec.path, spec.name, spec.model.name, prompt_set, engine.bound.n_prompts,
                        f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name, metric.name,
                        ablation, float(base.model.mean()), float(base.empty.mean()),
                        "token index" if all_positions else "named", tuple(sorted(every - shared)))


def _matrix(result: "SweepResult") -> "PatchMatrix":
    from circuitlang.report.patching import PatchMatrix

    return PatchMatrix(result.kind, result.rows, result.columns, result.examples, result.delta().numpy(),
                       result.stderr().numpy(), result.normalized().numpy(), result.receiver)


# ---- output ------------------------------------------------------------------------------------


def _write(context: "PatchContext", matrices: list["PatchMatrix"], args: argparse.Namespace, seconds: float) -> list[Path]:
    from circuitlang.report.heatmaps import draw_heatmap
    from circuitlang.report.patching import to_csv, to_json
    from circuitlang.report.files import write_atomically

    out: Path = args.output
    written = []
    for matrix in matrices:
        picture = out / f"{matrix.name}.{args.image}"
        draw_heatmap(matrix, context, picture, args.normalized)
        write_atomically(out / f"{matrix.name}.csv", to_csv(matrix, context))
        written += [picture, out / f"{matrix.name}.csv"]
    write_atomically(out / "patching.json", to_json(context, matrices, seconds))
    return written + [out / "patching.json"]


def _print_summary(context: "PatchContext", matrices: list["PatchMatrix"], written: list[Path], out: Path,
                   seconds: float) -> None:
    from circuitlang.report.patching import top_effects

    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    console.print(top_effects(context, matrices))
    if context.left_out_positions:
        console.print(f"[yellow]not in every template, so not swept:[/yellow] {', '.join(context.left_out_positions)}")
    console.print(f"wrote {len(written)} files to {out} ({seconds:.1f} s)")
