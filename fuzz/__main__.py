"""`python -m fuzz --seed 1 --cases 100000 --jobs 2 [--target spec|data|graph|model|cache|all]`: see
docs/fuzzing.md."""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from fuzz.runner import load_finding, run_fuzz
from fuzz.targets import TARGET_NAMES
from fuzz.worker import DEFAULT_MEMORY, DEFAULT_SECONDS, Budget, Outcome, replay


def main(argv: list[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    budget = Budget(args.seconds, args.memory_mb * 2**20)
    if args.replay:
        return _replay(args.replay, budget)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so the workers are stopped
    out = args.out or Path(tempfile.mkdtemp(prefix=f"circuitlang-fuzz-findings-{args.seed}-"))
    summary = run_fuzz(args.seed, args.cases, args.jobs, out, budget, progress=not args.quiet, names=args.target)
    print(summary.line())
    if args.target != ("spec",):
        print(summary.table())
    if summary.findings:
        print(f"{len(summary.findings)} distinct finding(s) saved in {out}")
    return 1 if summary.failed else 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, help="folder for findings (default: a new folder under the temp dir)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="time budget per case")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY // 2**20, help="address space per worker")
    parser.add_argument(
        "--target",
        type=_target_names,
        default=("spec",),
        help="what to fuzz, comma-separated: spec (the default), data, graph, model, cache, or all; the cases are split among them",
    )
    parser.add_argument("--replay", type=Path, help="run one saved finding (its folder, or a spec file) in a fresh worker and print the outcome")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _target_names(text: str) -> tuple[str, ...]:
    names = TARGET_NAMES if text == "all" else tuple(dict.fromkeys(text.split(",")))
    unknown = [name for name in names if name not in TARGET_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown target {', '.join(unknown)}: give {', '.join(TARGET_NAMES)} or all")
    return names


def _replay(path: Path, budget: Budget) -> int:
    """Run a saved finding in a fresh worker folder, under the same budgets."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    folder = tempfile.mkdtemp(prefix="circuitlang-fuzz-replay-")
    process = context.Process(target=replay, args=(child, load_finding(path), folder, budget))
    process.start()
    child.close()
    try:
        outcome = parent.recv()
    except EOFError:
        process.join()
        outcome = Outcome(-1, "crash", f"worker died (exit code {process.exitcode})", "")
    finally:
        process.join()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{outcome.kind}: {outcome.key}\n{outcome.detail}".rstrip() if outcome.key else outcome.kind)
    return 1 if outcome.kind in ("crash", "hang", "breach") else 0


if __name__ == "__main__":
    sys.exit(main())
