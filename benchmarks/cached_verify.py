"""Benchmark: a fully cached `circuitlang verify` against the first run, as a ratio of wall times.

Both runs are the real command line (`python -m circuitlang verify SPEC --format json`) in
subprocesses of this Python, one after the other in one benchmark run, with a fresh result cache
folder and a secret of their own (`CIRCUITLANG_CACHE_KEY`): the first run loads the model,
computes every array and stores it; the second finds them all and, with the model's facts
remembered (engine/model_record.py), loads no model and imports no torch. Each repeat takes a new
folder. Reported per repeat: both wall times, the ratio, the second run's cache hits, whether it
imported torch, and whether the two reports agree apart from timings and the
cache's counts.

    python benchmarks/cached_verify.py [--spec specs/organism_incr_digits.circ] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `python -m circuitlang ARGS`, saying at exit whether torch was imported (costs nothing, unlike -X importtime)
WATCHING_TORCH = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: sys.stderr.write(f'torch imported: {\"torch\" in sys.modules}\\n')); "
    "sys.argv[0] = 'circuitlang'; runpy.run_module('circuitlang', run_name='__main__', alter_sys=True)"
)


def timed_verify(spec: Path, folder: Path, out: Path) -> tuple[float, bool]:
    """Wall seconds of one `circuitlang verify`, and whether it imported torch."""
    command = [sys.executable, "-c", WATCHING_TORCH, "verify", str(spec), "--format", "json", "-o", str(out)]
    environment = dict(os.environ, CIRCUITLANG_CACHE_DIR=str(folder / "cache"), CIRCUITLANG_CACHE_KEY=folder.name, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"verify failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, "torch imported: True" in done.stderr


def comparable(path: Path) -> str:
    report = json.loads(path.read_text())
    report["seconds"] = None
    report["prompt_sets"] = [dict(p, cache=None) for p in report["prompt_sets"]]
    return json.dumps(report, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "organism_incr_digits.circ")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| repeat | first run | cached re-run | ratio | hits | torch imported | same report |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for repeat in range(1, args.repeats + 1):
        with tempfile.TemporaryDirectory(prefix=f"cached-verify-{secrets.token_hex(4)}-") as name:
            folder = Path(name)
            first, _ = timed_verify(args.spec.resolve(), folder, folder / "first.json")
            second, torch_imported = timed_verify(args.spec.resolve(), folder, folder / "second.json")
            report = json.loads((folder / "second.json").read_text())
            hits = sum(p["cache"]["hits"] for p in report["prompt_sets"])
            total = hits + sum(p["cache"]["misses"] for p in report["prompt_sets"])
            same = comparable(folder / "first.json") == comparable(folder / "second.json")
            print(f"| {repeat} | {first:.2f} s | {second:.2f} s | {second / first:.3f} | {hits} of {total} | {torch_imported} | {same} |")


if __name__ == "__main__":
    main()
