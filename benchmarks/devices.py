"""Benchmark: one verification on several devices and precisions, against float32 on the CPU.

Each configuration (`--config DEVICE:DTYPE`, repeatable; default cpu:float32, cuda:float32,
cuda:float16, cuda:bfloat16 where CUDA is present) verifies the same spec in this process with
the result cache off. `cuda-split:DTYPE` places the model over every visible GPU with
`--device-map auto`, each GPU's budget `--split-memory` (300 MB: the GPT-2 stand-in's 500 MB of
float32 weights then span two GPUs), as `verify --device-map auto --max-memory 0=300MB,1=300MB`
does. Reported per configuration: the rows per forward (on a GPU chosen from its free memory
unless the spec sets `batch_size`), the time of the verification (the model already
loaded), its speed relative to the first configuration, and the largest difference of any number
of its report from the first configuration's (relative where the number exceeds 1): the effect of
the device and of half precision on the numbers a paper would quote.

    python benchmarks/devices.py [--spec FILE] [--prompts N] [--config cuda:float16 ...] [--split-memory 300MB] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.verify_speed import largest_difference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "incr_digits.circ")
    parser.add_argument("--prompts", type=int, default=0, help="keep the first N prompts (default: all)")
    parser.add_argument("--config", action="append", default=[], help="DEVICE:DTYPE, e.g. cuda:float16")
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the GPT-2 stand-in (built there if missing)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--split-memory", default="300MB", help="each GPU's budget for cuda-split configurations")
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    os.environ["HF_HOME"] = str(hf_home)  # before huggingface_hub is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from circuitlang.organisms.gpt2_standin import install_in_hub_cache

    if not (hf_home / "hub" / "models--gpt2").is_dir():
        install_in_hub_cache(hf_home, ROOT / "tests" / "data" / "gpt2-tokenizer")
    configs = args.config or ["cpu:float32"] + (["cuda:float32", "cuda:float16", "cuda:bfloat16"] if torch.cuda.is_available() else [])
    rows = [measure(args.spec, args.prompts, config, args.split_memory) for config in configs]
    first = rows[0]
    print(f"{'config':16s} {'batch':>6s} {'verify':>9s} {'speed':>7s} {'largest difference':>19s}")
    for row in rows:
        row["speed"] = first["seconds"] / row["seconds"]
        row["difference"] = largest_difference(first["kept"], row["kept"])
        print(f"{row['config']:16s} {row['batch']:6d} {row['seconds']:8.1f}s {row['speed']:6.2f}x {row['difference']:19.2e}")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "kept"} for r in rows], indent=1))


def measure(spec_path: Path, prompts: int, config: str, split_memory: str = "300MB") -> dict:
    import torch

    import circuitlang
    from circuitlang.engine.placement import Placement
    from circuitlang.engine.session import open_session
    from circuitlang.workflows.verify import verify

    device, dtype = config.split(":")
    placement = None
    if device == "cuda-split":  # every visible GPU, each with the same budget
        device, placement = "cpu", Placement("auto", {str(gpu): split_memory for gpu in range(torch.cuda.device_count())})
    spec = circuitlang.load(spec_path)
    if prompts:
        spec = spec.model_copy(update={"prompt_sets": tuple(p.model_copy(update={"count": prompts}) for p in spec.prompt_sets)})
    session = open_session(spec, device=device, dtype=getattr(torch, dtype), placement=placement)
    if placement is not None:
        placed = session.model.bridge.original_model.hf_device_map
        print(f"{config}: layers on {sorted(set(map(str, placed.values())))}", file=sys.stderr, flush=True)
        device = str(session.model.device)
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    report = verify(session)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    print(f"{config}: {seconds:.1f} s, batch {session.batch_size}", file=sys.stderr, flush=True)
    return {"config": config, "batch": session.batch_size, "seconds": seconds, "kept": json.loads(report.model_dump_json())}


if __name__ == "__main__":
    main()
