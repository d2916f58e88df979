"""Benchmark: verify on the GPT-2 stand-in loaded plainly and with most of its weights on disk.

Each run is a fresh subprocess that verifies `specs/incr_digits.circ` (its first `--prompts`
prompts) through the Python API, the result cache off: once plainly, once placed as
`--device-map auto --max-memory cpu=300MB --offload-dir DIR` places it (accelerate keeps the
embeddings and the first blocks in memory and the later blocks on disk, and brings each in for
its forward). Reported per run: the wall time of the whole process (imports, load, verify), the
time of the load and of the verification, the peak resident set (VmHWM) after the load and at the
end, and at the end how much of the resident set is anonymous memory (tensors, Python) and how
much is file pages mapped into the process (RssFile: weights read from a memory-mapped file count
there while they stay mapped). The verification's CPU time is reported too: on a shared machine it
is the steadier number. The reports must be equal but for their timings.

    python benchmarks/offload.py [--prompts 20] [--max-memory cpu=300MB] [--threads 1]
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
SPEC = ROOT / "specs" / "incr_digits.circ"

CHILD = r"""
import json, os, time
started = time.perf_counter()
import torch
import circuitlang

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

torch.set_num_threads(int(os.environ["THREADS"]))
spec = circuitlang.load(os.environ["SPEC"])
prompts = int(os.environ["PROMPTS"])
if prompts:
    spec = spec.model_copy(update={"prompt_sets": tuple(p.model_copy(update={"count": prompts}) for p in spec.prompt_sets)})
placement = json.loads(os.environ["PLACEMENT"])
loading, loading_cpu = time.perf_counter(), time.process_time()
run = circuitlang.open_run(spec, threads=int(os.environ["THREADS"]), **placement)
loaded, loaded_cpu = time.perf_counter(), time.process_time()
after_load = {"peak": status("VmHWM"), "rss": status("VmRSS")}
report = circuitlang.verify(run)
done, done_cpu = time.perf_counter(), time.process_time()
kept = json.loads(report.model_dump_json())
kept.pop("seconds")
placed = getattr(run.model.bridge.original_model, "hf_device_map", None)
print(json.dumps({
    "report": kept,
    "placed": sorted(set(map(str, placed.values()))) if placed else [],
    "import_s": loading - started, "load_s": loaded - loading, "verify_s": done - loaded, "verify_cpu_s": done_cpu - loaded_cpu,
    "after_load": after_load,
    "peak": status("VmHWM"), "rss_anon": status("RssAnon"), "rss_file": status("RssFile"),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=20, help="keep the first N prompts (0: all 95)")
    parser.add_argument("--max-memory", default="cpu=300MB", help="the placed run's --max-memory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the GPT-2 stand-in (built there if missing)")
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    if not (hf_home / "hub" / "models--gpt2").is_dir():
        from circuitlang.organisms.gpt2_standin import install_in_hub_cache

        install_in_hub_cache(hf_home, ROOT / "tests" / "data" / "gpt2-tokenizer")
    with tempfile.TemporaryDirectory(prefix="circuitlang-offload-") as offload:
        plain = measure({}, args, hf_home)
        placed = measure({"device_map": "auto", "max_memory": args.max_memory, "offload_dir": offload}, args, hf_home)
        written = sum(f.stat().st_size for f in Path(offload).rglob("*") if f.is_file())
    print(f"GPT-2 stand-in, {args.prompts or 95} prompts, {args.threads} threads; placed: --device-map auto --max-memory {args.max_memory}")
    print(f"placed run's devices: {', '.join(placed['placed'])}; written to the offload folder: {written / 2**20:.0f} MB")
    print("| run | wall | load | verify | verify, CPU time | peak after load | peak | RssAnon at end | RssFile at end |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in (("plain", plain), ("placed", placed)):
        print(
            f"| {name} | {row['wall_s']:.1f} s | {row['load_s']:.1f} s | {row['verify_s']:.1f} s | {row['verify_cpu_s']:.1f} s | "
            f"{mb(row['after_load']['peak'])} | {mb(row['peak'])} | {mb(row['rss_anon'])} | {mb(row['rss_file'])} |"
        )
    print(
        f"placed / plain: wall {placed['wall_s'] / plain['wall_s']:.2f}x, verify {placed['verify_s'] / plain['verify_s']:.2f}x "
        f"(CPU time {placed['verify_cpu_s'] / plain['verify_cpu_s']:.2f}x), peak {placed['peak'] / plain['peak']:.2f}x"
    )
    same = placed["report"] == plain["report"]
    print("reports equal (timings aside):", "yes" if same else "NO")
    if not same:
        sys.exit(1)


def measure(placement: dict, args: argparse.Namespace, hf_home: Path) -> dict:
    env = {
        **os.environ,
        "SPEC": str(SPEC),
        "PROMPTS": str(args.prompts),
        "THREADS": str(args.threads),
        "PLACEMENT": json.dumps(placement),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"the run with {placement or 'no placement'} failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall_s": wall}


def mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


if __name__ == "__main__":
    main()
