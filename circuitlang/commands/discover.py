"""Find a circuit for a spec's task and write it as a `.circ` file to edit and then `verify`.

Methods: `prune` (node pruning, forward-then-backward and backward-then-forward, both reported
with their intersection), `path-patching` (iterative path patching from the logits backwards, the
edge threshold a percentile of each receiver's score distribution), `acdc` (edge pruning with a
KL or metric threshold), `eap` and `eap-ig` (edge attribution from gradients, then the top edges by
|score|, every candidate evaluated exactly). Each searches for the smallest circuit whose faithfulness F(C)/F(M)
reaches --target on the spec's first prompt set (or --prompts), writes the circuit into a copy of
the spec (model, prompts, metric and ablation kept) with the scores as comments, and exits 1 when
the target was not reached.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.commands.common import (
    add_device_argument,
    load_checked,
    one_of,
    open_checked,
    placement_from_args,
    progress_display,
    unknown_value,
    why_unwritable,
)
from circuitlang.discover.methods import DEFAULT_IG_GRID, EAP_IG_STEPS, IG_GRID_HELP, IG_GRIDS, MAX_STEPS, METHODS, IGGrid
from circuitlang.commands.cluster_options import add_ray_arguments, ray_request
from circuitlang.errors import CircuitlangError, InputError, OutputError, Reported, UsageError, Verdict
from circuitlang.ir import models as ir

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
METHOD_NAMES = tuple(m.name for m in METHODS)
ORDERS = ("both", "fb", "bf", "forward", "backward")
SCORES = ("kl", "metric")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # "*": `discover --ray x.circ` reads the spec as --ray's address (commands.cluster_options); none at all is refused in run
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="SPEC",
        help="the spec: model, prompts, metric, ablation (its circuit is ignored); several: one search each, -o a folder",
    )
    parser.add_argument(
        "--method", choices=METHOD_NAMES, type=one_of(METHOD_NAMES), required=True, help="; ".join(f"{m.name}: {m.summary}" for m in METHODS)
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .circ file to write (several specs: a folder, one file each)")
    parser.add_argument("--target", type=float, default=0.9, help="faithfulness F(C)/F(M) to reach (default 0.9)")
    parser.add_argument("--prompts", help="the prompt set to search on (default: the first)")
    parser.add_argument(
        "--order",
        choices=ORDERS,
        type=one_of(ORDERS),
        default="both",
        help="prune: the pass order; `both` runs fb and bf and writes the smaller circuit",
    )
    parser.add_argument("--edges", action="store_true", help="prune: then find the edges among the kept nodes with ACDC (--score, --threshold)")
    parser.add_argument("--include-mlps", action="store_true", help="prune: prune MLPs too (default: keep every MLP)")
    parser.add_argument(
        "--percentile",
        type=float,
        help="path-patching: keep edges at or above this percentile of |score| into each receiver "
        "(default: the strictest of a schedule that reaches --target)",
    )
    parser.add_argument(
        "--min-effect",
        type=float,
        help="path-patching: ignore edges whose |score| is below this fraction of |F(M)| (noise floor; "
        "default: 0.01, then 0.003, then 0.001, each with every percentile, until the target is met)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="acdc: remove an edge when the score rises by less than this (default: the largest of a schedule that reaches --target)",
    )
    parser.add_argument(
        "--score",
        choices=SCORES,
        type=one_of(SCORES),
        default="kl",
        help="acdc: KL from the model's outputs, or the metric's drop as a fraction of |F(M)|",
    )
    parser.add_argument(
        "--top", type=int, metavar="N", help="eap, eap-ig: keep the N edges of largest |score| (default: the fewest that reach --target)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        help=f"eap-ig: integration steps from the corrupt inputs to the clean ones (default {EAP_IG_STEPS}, as Hanna et al. 2024)",
    )
    parser.add_argument("--ig-grid", choices=IG_GRIDS, type=one_of(IG_GRIDS), help=IG_GRID_HELP)
    parser.add_argument(
        "--positions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restrict each head to its role's query (q) and key (k) positions where faithfulness stays at the target (default: on)",
    )
    parser.add_argument("--name", help="the written circuit's name (default: the output file's stem)")
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=0)
    add_ray_arguments(parser, "a spec's search each")


def run(args: argparse.Namespace) -> Verdict:
    """PASSED when the written circuit reaches --target, FAILED when the smallest found does not."""
    cluster = ray_request(args)
    if not args.files:
        raise UsageError("discover: give the spec to search on (or several, with -o a folder)")
    if len(args.files) > 1 or cluster is not None:
        return _run_each(args, cluster)
    args.file = args.files[0]
    problem = _bad_option(args)
    if problem:
        raise UsageError(f"discover: {problem}")
    unwritable = why_unwritable(args.output)
    if unwritable:  # said before a search that can take minutes, not after it
        raise OutputError(f"{args.output}: cannot write the spec: {unwritable}")
    spec = load_checked(args.file, args.root)  # before torch is imported: a spec error costs no seconds
    names = [p.name for p in spec.prompt_sets]
    if args.prompts and args.prompts not in names:
        raise UsageError(f"{args.file}: no prompt set named {unknown_value(args.prompts, names)}")
    outcome = _search(spec, args)
    from circuitlang.report.files import write_atomically

    try:
        write_atomically(args.output, outcome.text)
    except OSError as error:
        raise OutputError(f"{args.output}: cannot write: {error.strerror}") from None
    for line in outcome.summary:
        print(line)
    print(f"wrote {args.output}")
    return Verdict.PASSED if outcome.reached else Verdict.FAILED


def _search(spec: ir.Spec, args: argparse.Namespace):  # -> search.Outcome; torch is imported only here
    """Load the model and search, with progress on stderr; a search refused for its spec -> InputError."""
    from circuitlang.workflows.discover import CannotSearch, discover

    options = _options(args, args.output)
    command = shlex.join(["circuitlang", *getattr(args, "argv", ["discover"])])
    try:
        with progress_display("discover") as say:
            return discover(open_checked(spec, args.device, args.threads, placement_from_args(args)), options, command, say)
    except CannotSearch as error:
        raise InputError(f"{args.file}: {error}") from None


def _options(args: argparse.Namespace, output: Path):  # -> workflows.discover.Options
    from circuitlang.workflows.discover import Options

    return Options(
        args.method,
        output,
        args.target,
        args.prompts,
        args.order,
        args.include_mlps,
        args.percentile,
        args.min_effect,
        args.threshold,
        args.score,
        args.positions,
        args.name or _name_from(output),
        args.edges,
        args.root,
        args.steps or EAP_IG_STEPS,
        args.top,
        IGGrid(args.ig_grid or DEFAULT_IG_GRID.value),
    )


def _run_each(args: argparse.Namespace, cluster: ClusterRequest | None) -> Verdict:
    """Several specs (or `--ray`): a search each, `-o` a folder taking `<spec path with __>.circ`
    (one spec with `--ray`: `-o` the file, as without). Every spec is searched; the exit code is
    the worst: an error's (2 or 3), else 1 when a search did not reach --target."""
    from circuitlang.commands.verify_suite import report_name
    from circuitlang.workflows.discover_suite import SearchWork, discover_each
    from circuitlang.workflows.suite import VerifyOptions

    several = len(args.files) > 1
    problem = _bad_option(args, several)
    if problem:
        raise UsageError(f"discover: {problem}")
    if several:
        try:
            args.output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{args.output}: cannot write the specs: {error.strerror or error}") from None
    elif unwritable := why_unwritable(args.output):  # said before a search that can take minutes
        raise OutputError(f"{args.output}: cannot write the spec: {unwritable}")
    command = shlex.join(["circuitlang", *getattr(args, "argv", ["discover"])])
    works = []
    for path in args.files:
        output = args.output / f"{report_name(path)}.circ" if several else args.output
        spec = load_checked(path, args.root)  # a spec error stops the command before any search, as with one spec
        names = [p.name for p in spec.prompt_sets]
        if args.prompts and args.prompts not in names:
            raise UsageError(f"{path}: no prompt set named {unknown_value(args.prompts, names)}")
        works.append(SearchWork(str(path), spec, _options(args, output), command))
    opened = VerifyOptions(args.device, threads=args.threads, placement=placement_from_args(args))
    with progress_display("discover") as say:
        outcomes = discover_each(works, opened, cluster, say)
    return _written(works, outcomes)


def _written(works: list, outcomes: list) -> Verdict:
    """Each found circuit written and summarized; the errors said after all of them (Reported)."""
    from circuitlang.cli import _say
    from circuitlang.report.files import write_atomically

    reached = True
    errors: list[CircuitlangError] = []
    for work, result in zip(works, outcomes):
        if result.refused:
            errors.append(InputError(f"{work.path}: {result.refused}"))
        errors.extend(result.errors)
        if result.outcome is None:
            continue
        try:
            write_atomically(work.options.output, result.outcome.text)
        except OSError as problem:
            errors.append(OutputError(f"{work.options.output}: cannot write: {problem.strerror}"))
            continue
        print(f"{work.path}:")
        for line in result.outcome.summary:
            print(f"  {line}")
        print(f"wrote {work.options.output}")
        reached = reached and result.outcome.reached
    if errors:
        for error in errors:
            _say(error)
        raise Reported(errors)
    return Verdict.PASSED if reached else Verdict.FAILED


def _bad_option(args: argparse.Namespace, several: bool = False) -> str | None:
    """What is wrong with the options, found before the model loads (a search can take minutes)."""
    if several and (args.output.suffix == ".circ" or args.output.is_file()):
        return f"{args.output}: with {len(args.files)} specs the output is a folder, one .circ file each"
    if not several and args.output.suffix != ".circ":
        return f"{args.output}: the output must be a .circ file"
    if not (math.isfinite(args.target) and 0 < args.target <= 10):
        return f"--target {args.target}: give a faithfulness such as 0.9"
    if args.percentile is not None and not 0 <= args.percentile <= 100:
        return f"--percentile {args.percentile}: a percentile lies in 0..100"
    for option in ("min_effect", "threshold"):
        value = getattr(args, option)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"--{option.replace('_', '-')} {value}: give a number >= 0"
    if args.top is not None and (args.top < 1 or args.method not in ("eap", "eap-ig")):
        return f"--top {args.top}: give a number of edges >= 1, with --method eap or eap-ig"
    if args.steps is not None and args.method != "eap-ig":
        return f"--steps {args.steps}: integration steps apply to --method eap-ig only"
    if args.ig_grid is not None and args.method != "eap-ig":
        return f"--ig-grid {args.ig_grid}: the integration grid applies to --method eap-ig only"
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        return f"--steps {args.steps}: give a number of integration steps in 1..{MAX_STEPS} (the literature uses 5 to 30)"
    if args.name and not IDENTIFIER.fullmatch(args.name):
        return f"--name {args.name!r}: a circuit name is letters, digits and _ and starts with a letter or _"
    return None


def _name_from(output: Path) -> str:
    """The output file's stem as a circuit name ("1-found" -> "c_1_found")."""
    name = re.sub(r"\W", "_", output.stem)
    return name if IDENTIFIER.fullmatch(name) else f"c_{name}"
