"""Benchmark: `verify specs/incr_digits.circ` at GPT-2 small's scale, against plain forwards.

The model is the GPT-2 stand-in (GPT-2 small's config and real tokenizer, random weights; see
circuitlang/organisms/gpt2_standin.py), installed in a Hugging Face cache as the hub model `gpt2`,
so the spec loads exactly as a researcher's run loads GPT-2. Measured in one run:

1. loading: `open_session` (model load, expansion, binding);
2. verification: `verify(run)`, the rows it put through the model (variants, the clean and corrupt
   runs, the declared edges' path patching and the audit when it runs, each x prompts), and rows
   per second;
3. the baseline: plain-torch full forwards of the same bound prompts through the same HF model
   (no hooks, full logits), timed on `--baseline-rows` rows and scaled to the verification's row
   count: what the rows would cost as full forwards. The ratio is verification time over that;
4. peak resident memory of the process.

    python benchmarks/gpt2_verify.py [--prompts N] [--hf-home DIR] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "incr_digits.circ"
TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=0, help="keep the first N prompts (default: all)")
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the stand-in (built there if missing)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--baseline-rows", type=int, default=256)
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    os.environ["HF_HOME"] = str(hf_home)  # before huggingface_hub is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    run_benchmark(hf_home, args.prompts, args.threads, args.baseline_rows)


def run_benchmark(hf_home: Path, prompts: int, threads: int, baseline_rows: int) -> None:
    import torch

    import circuitlang
    from circuitlang.engine.session import open_session
    from circuitlang.organisms.gpt2_standin import install_in_hub_cache
    from circuitlang.workflows.verify import verify

    if not (hf_home / "hub" / "models--gpt2").is_dir():
        install_in_hub_cache(hf_home, TOKENIZER)
    if threads:
        torch.set_num_threads(threads)
    spec = circuitlang.load(SPEC)
    if prompts:
        spec = spec.model_copy(update={"prompt_sets": tuple(p.model_copy(update={"count": prompts}) for p in spec.prompt_sets)})
    started = time.perf_counter()
    run = open_session(spec)
    loaded = time.perf_counter()
    report = verify(run)
    verified = time.perf_counter()
    rows = sum(_runs(p) * p.prompts for p in report.prompt_sets)
    per_row = plain_forward_seconds_per_row(run, baseline_rows)
    verify_s = verified - loaded
    print(
        f"threads {torch.get_num_threads()}, prompts {sum(p.prompts for p in report.prompt_sets)}, "
        f"claims {'pass' if report.passed else 'fail'} (random weights: the numbers mean nothing)"
    )
    print(f"load + bind        {loaded - started:8.1f} s")
    print(f"verify             {verify_s:8.1f} s   {rows} rows, {rows / verify_s:.1f} rows/s")
    print(f"plain forwards     {per_row * rows:8.1f} s   same rows at {1 / per_row:.1f} rows/s (measured on {baseline_rows} rows)")
    print(f"ratio              {verify_s / (per_row * rows):8.2f}   verify time / plain forwards of its rows")
    print(f"peak memory        {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:8.2f} GB (max RSS)")


def _runs(prompt_set) -> int:
    """Runs over the prompt set: the variants, the clean and corrupt runs, the declared edges' path
    patching and the audit's (when it ran)."""
    audit = prompt_set.audit.runs if prompt_set.audit is not None else 0
    return prompt_set.variants_evaluated + 2 + prompt_set.patch_runs + audit


def plain_forward_seconds_per_row(run, n_rows: int) -> float:
    """Seconds per prompt row of an un-hooked full forward of the HF model on the bound prompts."""
    import torch

    model = run.model.bridge.original_model
    batch = run.batch_size
    tokens = next(iter(run.bound.values())).templates[0].clean
    tokens = tokens.repeat((n_rows + len(tokens) - 1) // len(tokens), 1)[:n_rows]
    started = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, n_rows, batch):
            model(tokens[first : first + batch])
    return (time.perf_counter() - started) / n_rows


if __name__ == "__main__":
    sys.exit(main())
