"""`circuitlang verify A.circ B.circ ...` and `verify SPEC... --ray [ADDRESS]`: several specs as one suite.

Every spec is checked and expanded here first (a spec error is that spec's, and the others still
run), then verified in this process one after another or on a Ray cluster (workflows.suite), and
each spec's report goes to its own outputs, in the order the specs were given. With several specs
an output's path is a folder that takes one file per spec, named as the GitHub Action names them
(`specs/a/x.circ` -> `specs__a__x.json`); with one spec (`verify X.circ --ray`) paths are files, as
without `--ray`. The exit code is the worst: an error's (2 or 3), else 1 when a claim failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.errors import CircuitlangError, ClusterError, OutputError, Reported, UsageError, Verdict, flatten

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest
    from circuitlang.workflows.suite import SpecOutcome

EXTENSIONS = {"table": "json", "json": "json", "junit": "xml", "github": "txt", "markdown": "md", "html": "html"}


def verify_suite(args: argparse.Namespace, cluster: ClusterRequest | None) -> Verdict:
    """`cluster`: the Ray cluster to run the specs on (None: in this process, one after another)."""
    from circuitlang.cli import Output
    from circuitlang.commands.common import placement_from_args, progress_display
    from circuitlang.workflows.suite import SpecOutcome, VerifyOptions

    several = len(args.files) > 1
    outputs = [Output(args.format, args.output), *args.write]
    _check_outputs(args, outputs, several)
    works, failed = _checked_specs(args)
    options = VerifyOptions(args.device, args.dtype, args.threads, args.audit, not args.no_cache, placement_from_args(args))
    cache = _cache(options)
    sources = {work.index: _source(work.path, outputs) for work in works}  # as verified: read before the run, not after it
    try:
        with progress_display("verify") as say:
            outcomes = _run(works, options, cache, cluster, say)
    except ClusterError as error:  # every spec's outputs say so, as for an error of its own
        outcomes = {work.index: SpecOutcome(work.index, work.path, errors=[error]) for work in works}
    specs = {work.index: work.spec for work in works}
    errors: list[CircuitlangError] = []
    passed, said = True, set[int]()
    for index, path in enumerate(args.files):
        spec_outputs = [_for_spec(output, path, several) for output in outputs]
        if several and args.format == "table":
            print(f"\n== {path} ==", flush=True)
        outcome = outcomes.get(index)
        problems = failed.get(index) or (outcome.errors if outcome is not None else [])
        if problems or outcome is None or outcome.report is None:
            _report_errors(str(path), problems, spec_outputs, said)
            errors.extend(problems)
            continue
        errors.extend(_emitted(outcome, spec_outputs, args, specs[index], sources[index]))
        passed = passed and outcome.report.passed
    if errors:
        raise Reported(errors)
    return Verdict.PASSED if passed else Verdict.FAILED


def _check_outputs(args: argparse.Namespace, outputs: list, several: bool) -> None:
    from circuitlang.commands.common import why_unwritable

    if args.look and (several or args.ray is not None):
        raise UsageError("verify --look: one spec at a time, in this process (without --ray)")
    to_stdout = [o for o in outputs if o.path is None and o.format != "table"]
    if several and to_stdout:
        need = "needs a folder for one file per spec (-o DIR or --write FORMAT=DIR)"
        raise UsageError(f"verify with {len(args.files)} specs: --format {to_stdout[0].format} {need}")
    if len(to_stdout) + (args.format == "table") > 1:
        raise UsageError("verify: one output at most can go to stdout (give the others a path)")
    for output in outputs:
        if output.path is None:
            continue
        why = _why_not_a_folder(output.path) if several else why_unwritable(output.path)
        if why:
            raise OutputError(f"{output.path}: cannot write the reports: {why}")


def _why_not_a_folder(path: Path) -> str:
    if path.exists() and not path.is_dir():
        return "with several specs it must be a folder (one report per spec), and it is a file"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return error.strerror or str(error)
    return ""


def _checked_specs(args: argparse.Namespace) -> tuple[list, dict[int, list[CircuitlangError]]]:
    """Each spec loaded and expanded (SpecWork), or its errors by its place in the suite."""
    from circuitlang.data.datasets import expand_all
    from circuitlang.ir.lower import load_spec
    from circuitlang.workflows.suite import SpecWork

    works, failed = [], {}
    for index, path in enumerate(args.files):
        try:
            spec = load_spec(path, args.root)
            works.append(SpecWork(index, str(path), spec, expand_all(spec)))
        except CircuitlangError as error:
            failed[index] = flatten([error])
    return works, failed


def _cache(options):  # ResultCache | None
    from circuitlang.engine.result_cache import ResultCache

    return ResultCache.from_environment() if options.use_cache else None


def _run(works: list, options, cache, cluster: ClusterRequest | None, say) -> dict[int, SpecOutcome]:
    from circuitlang.workflows.suite import verify_in_process, verify_on_ray

    outcomes = verify_in_process(works, options, cache, say) if cluster is None else verify_on_ray(works, options, cache, cluster, say)
    return {outcome.index: outcome for outcome in outcomes}


def _for_spec(output, path: Path, several: bool):
    """The output of one spec: with several specs, its file in the output's folder."""
    from circuitlang.cli import Output

    if not several or output.path is None:
        return output
    return Output(output.format, output.path / f"{report_name(path)}.{EXTENSIONS[output.format]}")


def report_name(path: Path) -> str:
    """specs/a/x.circ -> specs__a__x (as ci/action.sh names reports); an absolute path inside the
    working folder is made relative, one outside it keeps its folders."""
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    text = str(path).lstrip("/").removesuffix(".circ")
    return text.replace("/", "__")


def _source(path: str, outputs: list) -> str:
    from circuitlang.ir.uses import read_spec_text

    if not any(o.format == "html" for o in outputs):
        return ""
    try:
        return read_spec_text(Path(path))
    except (CircuitlangError, OSError):
        return ""


def _report_errors(path: str, errors: list[CircuitlangError], outputs: list, said: set[int]) -> None:
    """The errors on stderr (once: a cluster's error is every spec's) and in the spec's outputs."""
    from circuitlang.cli import _say, _write_failures

    for problem in errors:
        if id(problem) not in said:
            said.add(id(problem))
            _say(problem)
    _write_failures(path, errors, outputs)


def _emitted(outcome: SpecOutcome, outputs: list, args: argparse.Namespace, spec, source: str) -> list[CircuitlangError]:
    from circuitlang.cli import _emitted as emitted

    assert outcome.report is not None
    return [problem for output in outputs if (problem := emitted(outcome.report, output, args.notices, spec, source))]
