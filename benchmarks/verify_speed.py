"""Benchmark: this engine against an earlier commit's, on the same verification, in one run.

The earlier commit's code (default: the engine before the speed work) is unpacked from git into a
temporary folder; each side verifies the same spec (the GPT-2 stand-in for `specs/incr_digits.circ`,
or any spec) in a subprocess of this Python, with the result cache off, alternating sides
`--repeats` times so that a busy machine slows both alike. Reported: the best wall time of each
side, its CPU time (steadier than wall time on a shared machine; use `--threads 1` there), the rows
times layers put through the model's blocks (the work itself, whatever the load), the ratios, and
the largest difference between any two numbers of the two reports (every estimate, every claim
value; relative to the number where it exceeds 1), which must stay under 1e-5. With
`--nodes-only` the spec's declared edges are dropped (a node circuit).

    python benchmarks/verify_speed.py [--baseline REF] [--prompts N] [--nodes-only] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "0dea4c4"  # main before the speed work (verify at 1.13x plain forwards, benchmarks/README.md)
TOLERANCE = 1e-5
IMPLAUSIBLE = 100.0  # no faithfulness, completeness, minimality or effect of a model doing its task is this large

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.environ["CODE"])
import torch
import circuitlang
from circuitlang.engine.session import open_session
from circuitlang.workflows.verify import verify

torch.set_num_threads(int(os.environ["THREADS"]))
spec = circuitlang.load(os.environ["SPEC"])
prompts = int(os.environ["PROMPTS"])
if prompts:
    spec = spec.model_copy(update={"prompt_sets": tuple(p.model_copy(update={"count": prompts}) for p in spec.prompt_sets)})
if os.environ["NODES_ONLY"] == "1":
    spec = spec.model_copy(update={"circuit": spec.circuit.model_copy(update={"edges": ()}), "expectations": ()})
from circuitlang.engine.runner import Engine
layer_rows = [0]  # rows x layers put through the model's blocks: the work, whatever the machine's load
forward_from = Engine.forward_from
def counted(self, layer, residual, *rest):
    layer_rows[0] += residual.shape[0] * (self.n_layers - layer)
    return forward_from(self, layer, residual, *rest)
Engine.forward_from = counted
session = open_session(spec)
started, cpu = time.perf_counter(), time.process_time()
report = verify(session)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "layer_rows": layer_rows[0],
                  "report": json.loads(report.model_dump_json())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"git commit to compare with (default {BASELINE})")
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "incr_digits.circ")
    parser.add_argument("--prompts", type=int, default=0, help="keep the first N prompts (default: all)")
    parser.add_argument("--nodes-only", action="store_true", help="drop the declared edges")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the GPT-2 stand-in (built there if missing)")
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    if not (hf_home / "hub" / "models--gpt2").is_dir():
        from circuitlang.organisms.gpt2_standin import install_in_hub_cache

        install_in_hub_cache(hf_home, ROOT / "tests" / "data" / "gpt2-tokenizer")
    with tempfile.TemporaryDirectory(prefix="circuitlang-baseline-") as folder:
        baseline = unpack(args.baseline, Path(folder))
        sides = {"baseline": baseline, "this": ROOT}
        best: dict[str, dict] = {}
        reports: dict[str, dict] = {}
        for _ in range(args.repeats):
            for side, code in sides.items():
                result = run_side(code, args, hf_home)
                reports[side] = result.pop("report")
                best[side] = min(best.get(side, result), result, key=lambda r: r["seconds"])
                print(f"{side:9s} {result['seconds']:8.1f} s wall, {result['cpu']:8.1f} s CPU, {result['layer_rows']:,} layer-rows", flush=True)
    difference = largest_difference(reports["baseline"], reports["this"])
    where = worst_number(reports["baseline"], reports["this"])
    print(f"the largest difference is at {where}: {numbers(reports['baseline'])[where]!r} against {numbers(reports['this'])[where]!r}")
    old, new = best["baseline"], best["this"]
    print(
        f"baseline ({args.baseline}) / this: wall {old['seconds'] / new['seconds']:.2f}x, "
        f"CPU {old['cpu'] / new['cpu']:.2f}x, layer-rows {old['layer_rows'] / new['layer_rows']:.2f}x; "
        f"largest difference in any number {difference:.2e}"
    )
    if difference > TOLERANCE:
        sys.exit(f"the reports differ by {difference:.2e} > {TOLERANCE}")


def unpack(commit: str, folder: Path) -> Path:
    archive = folder / "code.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit, "circuitlang"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_side(code: Path, args: argparse.Namespace, hf_home: Path) -> dict:
    env = {
        **os.environ,
        "CODE": str(code),
        "SPEC": str(args.spec.resolve()),
        "PROMPTS": str(args.prompts),
        "NODES_ONLY": "1" if args.nodes_only else "0",
        "THREADS": str(args.threads),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(code),
    }
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd=code)
    if done.returncode:
        sys.exit(f"{code}: failed after {time.perf_counter() - started:.0f} s\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def numbers(value: object, path: str = "") -> dict[str, float]:
    """Every float of a report, by its path (timing and cache bookkeeping left out)."""
    if isinstance(value, dict):
        return {
            k: v
            for key, item in value.items()
            if key not in ("seconds", "versions", "cache", "spec_path")
            for k, v in numbers(item, f"{path}.{key}").items()
        }
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    return {path: float(value)} if isinstance(value, float) else {}


def largest_difference(first: dict, second: dict) -> float:
    """The largest |a - b| / max(1, |a|) over the two reports' numbers (NaN equals NaN), leaving
    out numbers over IMPLAUSIBLE in size: a ratio whose denominator is near zero (F(M) of a model
    that does not do the task, as the stand-in's random weights do not) multiplies float32
    rounding by its size, and the report warns about it anyway."""
    a, b = numbers(first), numbers(second)
    if a.keys() != b.keys():
        sys.exit(f"the reports hold different numbers: {sorted(a.keys() ^ b.keys())[:5]}")
    return max((_difference(a[k], b[k]) for k in a if not abs(a[k]) > IMPLAUSIBLE), default=0.0)


def worst_number(first: dict, second: dict) -> str:
    """Where the two reports differ most, all numbers included."""
    a, b = numbers(first), numbers(second)
    return max(a, key=lambda k: _difference(a[k], b[k]))


def _difference(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b) / max(1.0, abs(a))


if __name__ == "__main__":
    main()
