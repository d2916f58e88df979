"""Benchmark: the organism specs as one suite, in one process against `--ray` on a local cluster.

Both sides are the real command in a fresh subprocess, the result cache off, in one run:

    circuitlang verify specs/organism_*.circ --no-cache --format json -o DIR
    circuitlang verify specs/organism_*.circ --no-cache --format json -o DIR --ray --workers 2

The `--ray` side includes starting and stopping its local Ray cluster; Ray's start-up is also
measured on its own (`ray.init`, the workers up and answering, `ray.shutdown`), so that the ratio
can be read with and without it. The reports of the two sides must be the same but for their
wall time, which the script checks before it prints a number.

    python benchmarks/ray_suite.py [--repeats 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "specs").glob("organism_*.circ"))

STARTUP = r"""
import logging, os, sys, time
started = time.perf_counter()
import ray
ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, object_store_memory=256 << 20)
@ray.remote(num_cpus=1)
class Worker:
    def pid(self):
        return os.getpid()
workers = [Worker.remote() for _ in range(int(sys.argv[1]))]
ray.get([w.pid.remote() for w in workers])
ready = time.perf_counter()
ray.shutdown()
print(ready - started, time.perf_counter() - started)
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=_environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a claim failed, which is a verdict, not a failure of the run
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def reports(folder: Path) -> dict[str, str]:
    """Each report's JSON, less its wall time."""
    return {path.name: json.dumps(dict(json.loads(path.read_text()), seconds=None), sort_keys=True) for path in sorted(folder.glob("*.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    verify = [sys.executable, "-m", "circuitlang", "verify", *SUITE, "--no-cache", "--format", "json"]
    rows = []
    for repeat in range(1, args.repeats + 1):
        with tempfile.TemporaryDirectory() as serial_dir, tempfile.TemporaryDirectory() as ray_dir:
            serial = timed([*verify, "-o", serial_dir])
            spread = timed([*verify, "-o", ray_dir, "--ray", "--workers", str(args.workers)])
            if reports(Path(serial_dir)) != reports(Path(ray_dir)) or len(reports(Path(serial_dir))) != len(SUITE):
                sys.exit("the reports of the two runs differ")
        startup = subprocess.run([sys.executable, "-c", STARTUP, str(args.workers)], env=_environment(), capture_output=True, text=True)
        if startup.returncode != 0:
            sys.exit(f"Ray's start-up failed:\n{startup.stderr[-3000:]}")
        ready, total = (float(x) for x in startup.stdout.split())
        rows.append((repeat, serial, spread, ready, total))
        print(
            f"repeat {repeat}: in one process {serial:.1f} s, --ray with {args.workers} workers {spread:.1f} s "
            f"(ratio {serial / spread:.2f}x); Ray start-up {ready:.1f} s to workers ready, {total:.1f} s with shutdown; "
            f"without it {serial / (spread - total):.2f}x",
            flush=True,
        )
    print(json.dumps({"specs": SUITE, "cpus": os.cpu_count(), "rows": rows}))


def _environment() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


if __name__ == "__main__":
    main()
