"""The command line: `circuitlang check|fmt|plan|verify|...`. The CLI layer is this module and
`circuitlang/commands/` (one module per further command); only they print, and only `run` exits.

Exit codes: 0 ok, 1 a claim failed (verify) or a file is not formatted (fmt --check),
2 spec or usage error, 3 model or runtime error. `check` and `fmt` never import torch.
A command never chooses its exit code: it returns a `Verdict` (or nothing) or raises a
`CircuitlangError`, and `main` turns either into the code with `_exit_status`, the one map.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, TypedDict, Union

from rich.console import Console
from rich.markup import escape

from circuitlang import __version__
from circuitlang.commands.usage import SuggestingParser
from circuitlang.commands.cluster_options import add_ray_arguments, ray_request
from circuitlang.commands.common import (
    add_device_argument,
    add_root_argument,
    placement_from_args,
    progress_display,
    set_threads,
    why_unwritable,
)
from circuitlang.compile.memory import memory_refusal, spec_memory
from circuitlang.compile.plan import compile_plan
from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.data.tokenization import check_tokenization
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.engine.placement import Placement
from circuitlang.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_CLAIM_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME_ERROR,
    CircuitlangError,
    CommandError,
    MissingExtra,
    ModelError,
    OutputError,
    Reported,
    UsageError,
    Verdict,
    exit_code,
    flatten,
    render_diagnostic,
)
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec
from circuitlang.ir.structure import structure_warnings
from circuitlang.ir.uses import read_spec_text

DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2}  # verify --dtype: bytes per number
MAX_SHOWN_ERRORS = 20
AUDIT_HELP = (
    "path-patch from every node outside the circuit into it and the logits, and list the strongest "
    "missing edges and nodes (default: only when it costs no more than the rest of the verification)"
)
# The light install (`pip install circuitlang`) runs check, fmt and plan; the rest need an extra.
EXTRA_OF_MODULE = {
    "numpy": "engine",
    "torch": "engine",
    "transformer_lens": "engine",
    "transformers": "engine",
    "matplotlib": "pictures",
    "pygraphviz": "pictures",
    "ray": "cluster",
}

# Commands kept in their own modules (circuitlang/commands/NAME.py): each defines
# add_arguments(parser) and run(args) -> Verdict | None (raising CircuitlangError), and imports
# torch or plotting libraries only inside run, so that `check` and `fmt` stay light.
MODULE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("discover", "find a circuit (node pruning, iterative path patching, ACDC) and write it as a .circ"),
    ("draw", "draw circuits as layered diagrams (svg, png, pdf, dot), without a model"),
    ("patch", "activation and path patching sweeps: heatmaps, JSON and CSV"),
    ("attention", "attention patterns of chosen heads, over a prompt set or one prompt: pictures and CSV"),
    ("lens", "the logit lens and each node's direct contribution to the metric: heatmaps and CSV"),
    ("export", "write a circuit as another tool's file (EAP-IG graph JSON)"),
    ("import", "read a circuit from another tool's file (EAP-IG graph JSON) into a .circ spec"),
    ("compare", "overlap of circuits' nodes and edges, and each circuit's faithfulness on the others' prompts"),
    ("curve", "faithfulness curve of scored edges (an EAP-IG graph file, EAP, EAP-IG) and its areas, as MIB"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code. An error that ends the command is said here, on
    stderr, unless the command has shown it already (`Reported`)."""
    try:
        return _exit_status(_run_command(argv))
    except CircuitlangError as error:
        _say(error)
        return _exit_status(error)


def _exit_status(ending: Verdict | None | CircuitlangError) -> int:
    """The one map from how a command ended to its exit code: 0 when it did its work or every claim
    held, 1 when a claim failed (a verdict, not an error), 2 or 3 for an error (errors.exit_code)."""
    if isinstance(ending, CircuitlangError):
        return exit_code([ending])
    return EXIT_CLAIM_FAILED if ending is Verdict.FAILED else EXIT_OK


def _run_command(argv: Sequence[str] | None) -> Verdict | None:
    parser = _argument_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed a usage error, or --help or --version
        if exit_request.code:
            raise Reported([UsageError("argparse has printed the usage error")]) from None
        return None
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for files that record the command that wrote them
    try:
        return args.run(args)
    except ModuleNotFoundError as missing:
        extra = EXTRA_OF_MODULE.get((missing.name or "").split(".")[0])
        if extra is None:
            raise
        raise MissingExtra(
            f"error: `circuitlang {args.command}` needs {missing.name}, which is not installed\n"
            f"  hint: pip install 'circuitlang[{extra}]' (install torch==2.13.0 first for the CPU "
            "build; see README)"
        ) from None


def _say(error: CircuitlangError) -> None:
    """An error on stderr: a command's own line as it is, others as diagnostics with their source line."""
    if isinstance(error, Reported):
        return
    if isinstance(error, CommandError):
        print(error.message, file=sys.stderr)
        return
    for problem in flatten([error]):
        print(render_diagnostic(problem), file=sys.stderr)


def _argument_parser() -> argparse.ArgumentParser:
    parser = SuggestingParser(prog="circuitlang", description="Declare circuits; check them against models.")
    parser.add_argument("--version", action="version", version=f"circuitlang {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="parse and validate specs without running a model")
    check.add_argument("files", nargs="+", type=Path)
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument(
        "--no-tokenize", action="store_true", help="do not tokenize the prompts, even when the model's tokenizer is available offline"
    )
    check.set_defaults(run=_check)
    fmt = commands.add_parser("fmt", help="print specs in canonical form")
    fmt.add_argument("files", nargs="+", type=Path)
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if a file is not in canonical form")
    fmt.set_defaults(run=_fmt)
    verify = commands.add_parser("verify", help="run the experiments and check the specs' claims")
    # "*": `verify --ray x.circ` reads the spec as --ray's address (commands.cluster_options); none at all is refused in _verify
    verify.add_argument("files", nargs="*", type=Path, metavar="SPEC", help="one spec, or several verified as a suite")
    add_device_argument(verify)
    verify.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="the model's precision (default float32); float16 and bfloat16 halve the memory and "
        "speed up GPUs, and move the numbers slightly (docs/verify.md, Precision)",
    )
    verify.add_argument("--format", choices=REPORT_FORMATS, default="table")
    verify.add_argument("-o", "--output", type=Path, help="write the report here (atomically) instead of stdout")
    verify.add_argument(
        "--write",
        action="append",
        default=[],
        type=_output_request,
        metavar="FORMAT=PATH",
        help="also write the report in FORMAT to PATH (- for stdout), e.g. junit=report.xml or "
        "markdown=$GITHUB_STEP_SUMMARY; repeat for several. Errors reach every output",
    )
    verify.add_argument(
        "--look",
        action="store_true",
        help="html: add each prompt set's logit lens, direct contributions and the circuit heads' attention patterns "
        "(loads the model even when the result cache holds every array)",
    )
    verify.add_argument(
        "--notices", action="store_true", help="github format: a ::notice for each passed claim too (by default only failures, warnings)"
    )
    verify.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (default: 1 for models under 10M parameters, whose many "
        "small operations only wait on each other across threads; torch's default otherwise)",
    )
    verify.add_argument("--audit", action=argparse.BooleanOptionalAction, default=None, help=AUDIT_HELP)
    verify.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the result cache ($CIRCUITLANG_CACHE_DIR, else ~/.cache/circuitlang)"
    )
    add_ray_arguments(verify, "a prompt set of a spec each")
    verify.set_defaults(run=_verify)
    plan = commands.add_parser("plan", help="show the steps verify will run, without loading a model")
    plan.add_argument("file", type=Path)
    plan.add_argument("--audit", action=argparse.BooleanOptionalAction, default=None, help=AUDIT_HELP)
    plan.set_defaults(run=_plan)
    for spec_reader in (check, verify, plan):
        add_root_argument(spec_reader)
    for name, help_text in MODULE_COMMANDS:
        module = importlib.import_module(f"circuitlang.commands.{name}")
        command = commands.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        add_root_argument(command)
        command.set_defaults(run=module.run)
    return parser


# ---- check ---------------------------------------------------------------------------------


class PromptSetSummary(TypedDict):
    name: str
    prompts: int
    templates: int
    corruption: str
    metric: str
    example: str


class CheckSummary(TypedDict):
    circuit: str
    model: str
    shape: dict[str, object] | None
    nodes: int
    roles: dict[str, list[str]]
    edges: list[str]
    prompt_sets: list[PromptSetSummary]
    ablation: str
    expectations: int


class CheckFailed(TypedDict):
    path: str
    ok: Literal[False]
    errors: list[dict[str, object]]
    rendered: list[str]


class CheckPassed(TypedDict):
    path: str
    ok: Literal[True]
    errors: list[dict[str, object]]
    warnings: list[str]
    tokenizer: str | None
    notes: list[str]
    summary: CheckSummary


CheckResult = Union[CheckFailed, CheckPassed]  # one file's entry in `check --format json`


def _check(args: argparse.Namespace) -> None:
    """Every file's result, valid or not. The invalid files' errors are in the results, so they are
    raised as Reported: the exit code is 3 when a model folder could not be read, else 2."""
    checked = [_check_one(path, args.root, tokenize=not args.no_tokenize) for path in args.files]
    results = [result for result, _ in checked]
    if args.format == "json":
        print(json.dumps({"files": results}, indent=2))
    else:
        console = Console(emoji=False, highlight=False, soft_wrap=True)
        for result in results:
            _print_check_result(console, result)
    errors = [error for _, found in checked for error in found]
    if errors:
        raise Reported(errors)


def _check_one(path: Path, root: Path | None, tokenize: bool) -> tuple[CheckResult, list[CircuitlangError]]:
    """The file's result, and its errors (none when it is valid)."""
    try:
        spec = load_spec(path, root)
        datasets = expand_all(spec)
        tokenizer = check_tokenization(spec, datasets) if tokenize else None
    except CircuitlangError as error:
        errors = flatten([error])
        return {
            "path": str(path),
            "ok": False,
            "errors": [e.to_dict() for e in errors],
            "rendered": [render_diagnostic(e) for e in errors],
        }, errors
    return {
        "path": str(path),
        "ok": True,
        "errors": [],
        "warnings": _warnings(spec),
        "tokenizer": str(tokenizer) if tokenizer else None,
        "notes": _notes(spec, tokenize, tokenizer),
        "summary": _summary(spec, datasets),
    }, []


def _notes(spec: ir.Spec, tokenize: bool, tokenizer: Path | None) -> list[str]:
    if tokenize and tokenizer is None:
        return [
            f"{spec.path}: no tokenizer for '{spec.model.name}' is available offline; prompts were not "
            "tokenized (verify tokenizes them when the model loads)"
        ]
    return []


def _warnings(spec: ir.Spec) -> list[str]:
    warnings = [str(w) for w in structure_warnings(spec)]
    if spec.shape is None:
        warnings.append(
            f"{spec.path}: the shape of '{spec.model.name}' is not known offline; layer and head "
            "numbers were not checked (they are checked when the model loads)"
        )
    return warnings


def _summary(spec: ir.Spec, datasets: tuple[Dataset, ...]) -> CheckSummary:
    roles = spec.circuit.roles()
    return {
        "circuit": spec.name,
        "model": spec.model.name,
        "shape": spec.shape.model_dump() if spec.shape else None,
        "nodes": len(spec.circuit.nodes),
        "roles": {role: [str(n) for n in nodes] for role, nodes in roles.items()},
        "edges": [f"{e.sender} -> {e.receiver}" + (f" via {','.join(e.channels)}" if e.channels else "") for e in spec.circuit.edges],
        "prompt_sets": [
            {
                "name": d.name,
                "prompts": len(d.clean),
                "templates": len(d.templates),
                "corruption": _corruption_text(spec.prompt_set(d.name)),
                "metric": _metric_text(spec.metric_for(spec.prompt_set(d.name))),
                "example": d.clean[0].text,
            }
            for d in datasets
        ],
        "ablation": spec.ablation.kind + (f" of {spec.ablation.source}" if spec.ablation.source else ""),
        "expectations": len(spec.expectations),
    }


def _corruption_text(prompt_set: ir.PromptSet) -> str:
    return prompt_set.corruption.kind if prompt_set.corruption else "none"


def _metric_text(metric: ir.Metric) -> str:
    return f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name


def _print_check_result(console: Console, result: CheckResult) -> None:
    if not result["ok"]:
        rendered = result["rendered"]
        for text in rendered[:MAX_SHOWN_ERRORS]:
            console.print(text, markup=False)
            console.print()
        if len(rendered) > MAX_SHOWN_ERRORS:
            console.print(f"... and {len(rendered) - MAX_SHOWN_ERRORS} more")
        console.print(f"[red]{escape(str(result['path']))}: {len(rendered)} error(s)[/red]")
        return
    summary = result["summary"]
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", markup=True)
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False)
    sets = ", ".join(f"{p['name']} ({p['prompts']} prompts, corrupt {p['corruption']}, {p['metric']})" for p in summary["prompt_sets"])
    line = (
        f"{result['path']}: circuit {summary['circuit']} on {summary['model']}: "
        f"{summary['nodes']} nodes in {len(summary['roles'])} roles, "
        f"{len(summary['edges'])} declared edges, {summary['expectations']} expectations; "
        f"prompts: {sets}; ablate {summary['ablation']}"
    )
    console.print(f"[green]ok[/green] {escape(line)}", markup=True, highlight=False)


# ---- verify --------------------------------------------------------------------------------


REPORT_FORMATS = ("table", "json", "junit", "github", "markdown", "html")


@dataclass(frozen=True)
class Output:
    format: str  # one of REPORT_FORMATS
    path: Path | None  # None: stdout


def _output_request(text: str) -> Output:
    """`FORMAT=PATH` of `verify --write`."""
    format_, separator, path = text.partition("=")
    if not separator or format_ not in REPORT_FORMATS[1:] or not path:
        raise argparse.ArgumentTypeError(f"expected FORMAT=PATH with FORMAT one of {', '.join(REPORT_FORMATS[1:])}")
    return Output(format_, None if path == "-" else Path(path))


def _verify(args: argparse.Namespace) -> Verdict:
    """PASSED when every claim holds, FAILED when one does not; errors are raised, and those found
    once the outputs are known reach every output too (Reported). Several specs, or `--ray`: a suite
    (commands.verify_suite)."""
    from circuitlang.commands.verify_suite import verify_suite

    cluster = ray_request(args)
    if not args.files:
        raise UsageError("verify: give the spec to verify (or several: verify specs/*.circ)")
    if len(args.files) > 1 or cluster is not None:
        return verify_suite(args, cluster)
    args.file = args.files[0]
    outputs = [Output(args.format, args.output), *args.write]
    if sum(o.path is None and o.format != "table" for o in outputs) + (args.format == "table") > 1:
        raise UsageError("verify: one output at most can go to stdout (give the others a path)")
    if args.look and not any(o.format == "html" for o in outputs):
        raise UsageError("verify --look: the readings go on the HTML page; add --format html or --write html=PATH")
    unwritable = next((f"{o.path}: cannot write the report: {why}" for o in outputs if (why := why_unwritable(o.path))), "")
    if unwritable:  # said before the run, not after it
        raise OutputError(unwritable)
    try:
        spec = load_spec(args.file, args.root)
        datasets = expand_all(spec)  # once: the memory estimate and the run read the same prompts
        memory = spec_memory(spec, datasets, args.audit, DTYPES[args.dtype])
        # The HTML page lists the spec as verified: read now, not after a run it may change during.
        source = read_spec_text(args.file) if any(o.format == "html" for o in outputs) else ""
    except CircuitlangError as error:
        raise _not_verified(str(args.file), error, outputs) from None
    placement = placement_from_args(args)
    too_big = memory_refusal(memory, args.device, placement)
    if too_big:  # said before the model loads, not by the kernel's OOM killer an hour later
        print(too_big, file=sys.stderr)
        refusal = ModelError(too_big, spec.model.span)
        _write_failures(str(args.file), [refusal], outputs)
        raise Reported([refusal])
    try:
        report, looks = _run_verification(
            spec, datasets, args.device, args.threads, args.audit, not args.no_cache, args.dtype, args.look, placement
        )
    except CircuitlangError as error:
        # Binding errors (a prompt the tokenizer splits differently) are the spec's to fix (2).
        raise _not_verified(str(args.file), error, outputs) from None
    lost = [problem for output in outputs if (problem := _emitted(report, output, args.notices, spec, source, looks))]
    if lost:  # the run finished: its verdict is shown even though a file is lost
        _print_verdict(report, Console(emoji=False, stderr=True, highlight=False, soft_wrap=True))
        raise Reported(lost)
    return Verdict.PASSED if report.passed else Verdict.FAILED


def _emitted(report, output: Output, notices: bool, spec: ir.Spec, source: str, looks: tuple = ()) -> OutputError | None:
    """Write the report to one output; an output that cannot be written is said at once and
    returned, and the other outputs are still written."""
    try:
        _emit_report(report, output, notices, spec, source, looks)
    except OSError as error:
        problem = OutputError(f"{output.path}: cannot write the report: {error.strerror or error}")
        _say(problem)
        return problem
    return None


def _not_verified(spec_path: str, error: CircuitlangError, outputs: list[Output]) -> Reported:
    """Errors on stderr, and in every requested format (CI reads JUnit files and annotations)."""
    errors = flatten([error])
    for problem in errors:
        print(render_diagnostic(problem), file=sys.stderr)
    _write_failures(spec_path, errors, outputs)
    return Reported(errors)


def _write_failures(spec_path: str, errors: list[CircuitlangError], outputs: list[Output]) -> None:
    """The errors in every output, each with the exit code the command will end with (errors.exit_code)."""
    from circuitlang.report.failures import FAILURE_FORMATS
    from circuitlang.report.files import write_atomically

    code = exit_code(errors)
    for output in outputs:
        format_ = "json" if output.format == "table" else output.format  # table -o: the JSON report
        if output.format == "table" and output.path is None:
            continue  # stderr said it
        text = FAILURE_FORMATS[format_](spec_path, errors, code)
        try:
            write_atomically(output.path, text) if output.path else sys.stdout.write(text)
        except OSError as error:
            print(f"{output.path}: cannot write the report: {error.strerror or error}", file=sys.stderr)


def _run_verification(
    spec: ir.Spec,
    datasets: tuple[Dataset, ...],
    device: str,
    threads: int,
    audit: bool | None,
    use_cache: bool = True,
    dtype: str = "float32",
    look: bool = False,
    placement: Placement | None = None,
) -> tuple:  # (Report, its Looks); torch only here, and only when the result cache lacks something or --look reads the model
    from circuitlang.engine.result_cache import ResultCache
    from circuitlang.workflows.verify import verify, verify_cached

    cache = ResultCache.from_environment() if use_cache else None
    computed_on = device if placement is None else _placed_device(placement)  # the device the cache keys name
    cached = verify_cached(spec, datasets, cache, audit, computed_on, dtype, threads) if cache is not None and not look else None
    if cached is not None:  # every array was in the cache: no model loaded
        return cached, ()
    import torch

    from circuitlang.engine.session import open_session

    with progress_display("verify") as say:
        session = open_session(spec, device=device, dtype=getattr(torch, dtype), datasets=datasets, cache=cache, placement=placement)
        set_threads(session, threads)
        report = verify(session, say, audit, cache)
        if not look:
            return report, ()
        from circuitlang.workflows.look import look as read_looks

        say("look: the logit lens and attention patterns")
        return report, read_looks(session)


def _placed_device(placement: Placement) -> str:
    from circuitlang.engine.models import placed_device  # torch: only for a run with a device map

    return placed_device(placement)


def _emit_report(report, output: Output, notices: bool, spec: ir.Spec, source: str, looks: tuple = ()) -> None:
    from circuitlang.report.files import write_atomically
    from circuitlang.report.render import TEXT_FORMATS, tables, to_github

    if output.format == "table":
        if output.path:
            write_atomically(output.path, TEXT_FORMATS["json"](report))
        console = Console(emoji=False, highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
        for table in tables(report):
            console.print(table)
        _print_verdict(report, console)
        return
    if output.format == "html":  # the one view that draws the circuit and lists the source: it takes the spec too
        from circuitlang.report.html import to_html

        text = to_html(report, spec, source, looks)
    else:
        text = to_github(report, notices) if output.format == "github" else TEXT_FORMATS[output.format](report)
    if output.path:
        write_atomically(output.path, text)
    else:
        sys.stdout.write(text)


def _print_verdict(report, console: Console) -> None:
    from circuitlang.report.render import claim_message

    for prompt_set in report.prompt_sets:
        for warning in prompt_set.warnings:
            console.print(f"[yellow]warning: {escape(f'{report.spec_path}: {prompt_set.name}: {warning}')}[/yellow]")
    for claim in report.claims:
        if not claim.passed:
            console.print(f"[red]{escape(f'{report.spec_path}:{claim.line}: {claim_message(claim)}')}[/red]")
    verdict = "[green]all claims pass[/green]" if report.passed else "[bold red]claims failed[/bold red]"
    console.print(f"{verdict} ({report.seconds:.1f} s)")


# ---- plan ----------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> None:
    """The steps and the memory estimate on stdout, or the spec's errors there in their place (Reported)."""
    try:
        spec = load_spec(args.file, args.root)
        datasets = expand_all(spec)
        plan = compile_plan(spec, datasets, args.audit)
    except CircuitlangError as error:
        for problem in flatten([error]):
            print(render_diagnostic(problem))
        raise Reported([error]) from None
    print(plan.render())
    memory = spec_memory(spec, datasets, args.audit)
    print(memory.render() if memory else "memory: not estimated (the model's dimensions are not known offline)")


# ---- fmt -----------------------------------------------------------------------------------


def _fmt(args: argparse.Namespace) -> Verdict:
    """Each file printed, rewritten (-w) or compared (--check: FAILED when one is not canonical).
    The first file that does not parse ends the command; a file that cannot be rewritten does not
    stop the others, and the command then ends with their OutputErrors (Reported)."""
    canonical = True
    unwritten: list[OutputError] = []
    for path in args.files:
        text, formatted = _text_and_canonical_form(path)
        if args.check:
            canonical &= _is_canonical(path, text, formatted)
        elif args.write:
            unwritten += _rewritten(path, text, formatted)
        else:
            sys.stdout.write(formatted)
    if unwritten:
        raise Reported(unwritten)
    return Verdict.PASSED if canonical else Verdict.FAILED


def _text_and_canonical_form(path: Path) -> tuple[str, str]:
    """The file's text (a byte-order mark kept, so that --check flags it) and its canonical form;
    errors on stderr, with the text as read, then Reported."""
    text = ""
    try:
        text = read_spec_text(path)  # as check reads it: a byte-order mark is dropped
        formatted = format_spec(parse(text, str(path)))
    except CircuitlangError as error:
        for problem in flatten([error]):
            print(render_diagnostic(problem, text or None), file=sys.stderr)
        raise Reported([error]) from None
    if path.read_bytes().startswith(codecs.BOM_UTF8):
        text = "\ufeff" + text  # the canonical form has no byte-order mark: --check flags it, -w drops it
    return text, formatted


def _is_canonical(path: Path, text: str, formatted: str) -> bool:
    """Whether the file is in canonical form; when it is not, --check says so on stderr."""
    if formatted != text:
        print(f"{path}: not in canonical form (run circuitlang fmt -w {path})", file=sys.stderr)
        return False
    return True


def _rewritten(path: Path, text: str, formatted: str) -> list[OutputError]:
    """Rewrite the file in canonical form; the error, said at once, when it cannot be written."""
    if formatted == text:
        return []
    from circuitlang.report.files import write_atomically

    try:
        write_atomically(path, formatted)
    except OSError as error:
        problem = OutputError(f"{path}: cannot write: {error.strerror or error}")
        _say(problem)
        return [problem]
    return []


def run() -> None:
    """Console-script entry point. An unexpected exception is a bug, reported with its traceback,
    but it exits 3 (a runtime error): exit 1 means a claim failed, and CI must not read a crash so."""
    try:
        code = main()
    except BrokenPipeError:  # the reader went away (`| head`): end as a process killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # Ctrl-C: one line, not a torch traceback; output files are written whole or not at all
        print("\ncircuitlang: interrupted", file=sys.stderr)
        _exit_now(EXIT_INTERRUPTED)
    except Exception:  # noqa: BLE001 - the last line of defence for the exit code's meaning
        traceback.print_exc()
        print("circuitlang: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        code = EXIT_RUNTIME_ERROR
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's shutdown. An interrupt that lands while Python 3.11 runs
    code through `exec` (dataclasses are built so, during imports) leaves a flag that makes the
    shutdown kill the process with SIGINT after all, whatever it printed and returned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the flush short
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader gone as well: nothing more can be said
            pass
    os._exit(code)
