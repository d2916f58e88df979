"""Benchmark: interchange interventions at GPT-2 small's scale, against a naive hook loop.

The model is the GPT-2 stand-in (GPT-2 small's config and real tokenizer, random weights;
circuitlang/organisms/gpt2_standin.py) installed as the hub model `gpt2`; the prompts are
specs/ioi.circ's (14 templates, mixed order) with a hypothesis added: the name movers (9.9, 9.6,
10.0 at `end`) carry the indirect object, and the answer is it. Measured in one run, on the same
pairs (one per prompt, drawn as `verify` draws them):

1. circuitlang: `engine.interchange.interchange` on the session's engine (the clean run it reads
   the source activations from is timed on its own: `verify` has made it for the other steps);
2. the naive loop: per pair, the source through `run_with_cache`, then the base through
   `run_with_hooks` with one hook per site that writes the source's activation (the slow
   reference of tests/engine/test_interchange.py);
3. the ratio, naive over circuitlang, with and without the clean run; both sides' logits at the
   answer columns compared (they must agree to float error, or the timing means nothing).

    python benchmarks/interchange.py [--prompts N] [--hf-home DIR] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "ioi.circ"
TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"
HYPOTHESIS = """
hypothesis {
  answer = io
  "name mover" carries io
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=100, help="prompts (and pairs) of the IOI set")
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the stand-in (built there if missing)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    os.environ["HF_HOME"] = str(hf_home)  # before huggingface_hub is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    run_benchmark(hf_home, args.prompts, args.threads)


def run_benchmark(hf_home: Path, prompts: int, threads: int) -> None:
    import numpy as np
    import torch

    import circuitlang
    from circuitlang.data.counterfactuals import HighLevelModel, draw_pairs
    from circuitlang.engine.interchange import interchange
    from circuitlang.engine.session import open_session
    from circuitlang.organisms.gpt2_standin import install_in_hub_cache

    if not (hf_home / "hub" / "models--gpt2").is_dir():
        install_in_hub_cache(hf_home, TOKENIZER)
    if threads:
        torch.set_num_threads(threads)
    folder = Path(tempfile.mkdtemp(prefix="circuitlang-bench-spec-"))
    spec_path = folder / "ioi.circ"
    spec_path.write_text(SPEC.read_text().replace("n = 100,", f"n = {prompts},") + HYPOTHESIS)
    spec = circuitlang.load(spec_path)
    session = open_session(spec)
    name = spec.prompt_sets[0].name
    (dataset,) = session.datasets
    hypothesis = spec.hypotheses[0]
    pairs = draw_pairs(HighLevelModel.of(spec, name), dataset, "io", spec.settings.seed)
    sites = hypothesis.carriers[0].sites
    tokenizer = session.model.tokenizer
    columns = np.array([[tokenizer.encode(" " + c)[0], tokenizer.encode(" " + a)[0]] for c, a in zip(pairs.counterfactual, pairs.answer)])

    started = time.perf_counter()
    engine = session.engine(name)  # the clean run of every prompt, cached
    cached = time.perf_counter()
    fast = interchange(engine, [sites] * len(pairs), pairs.base, pairs.source, columns)
    done = time.perf_counter()
    naive = naive_loop(session, name, sites, pairs, columns)
    naive_done = time.perf_counter()

    difference = float(np.abs(fast.logits - naive).max())
    clean_s, fast_s, naive_s = cached - started, done - cached, naive_done - done
    print(f"threads {torch.get_num_threads()}, {len(pairs)} pairs, {len(sites)} head sites at end (random weights)")
    print(f"engine build             {clean_s:8.2f} s   (clean run and ablation means cached; shared with verify's other steps)")
    print(f"circuitlang interchange  {fast_s:8.2f} s")
    print(f"naive hook loop          {naive_s:8.2f} s")
    print(f"ratio naive / circuitlang {naive_s / fast_s:7.1f}   ({naive_s / (fast_s + clean_s):.1f} counting the clean run)")
    print(f"max |logit difference|   {difference:.2e}")
    if difference > 1e-3:
        raise SystemExit("the two disagree: the timing compares different computations")


def naive_loop(session, name: str, sites, pairs, columns):
    """Per pair: the source's activations from a cached forward, the base with one hook per site."""
    import numpy as np
    import torch

    bridge = session.model.bridge
    where = {p: (t, r) for t in session.bound[name].templates for r, p in enumerate(t.prompt_indices)}
    out = np.empty(columns.shape)
    with torch.no_grad():
        for i, (b, s) in enumerate(zip(pairs.base, pairs.source)):
            (base_t, base_r), (source_t, source_r) = where[b], where[s]
            _, cache = bridge.run_with_cache(source_t.clean[source_r : source_r + 1])
            hooks = []
            for site in sites:
                for position in site.positions:
                    hook_name = f"blocks.{site.node.layer}.attn.hook_z"
                    value = cache[hook_name][0, source_t.positions[position.name] + position.offset, site.node.head]
                    hooks.append((hook_name, _writer(base_t.positions[position.name] + position.offset, site.node.head, value)))
            logits = bridge.run_with_hooks(base_t.clean[base_r : base_r + 1], fwd_hooks=hooks)
            out[i] = logits[0, base_t.positions["end"], torch.as_tensor(columns[i])].double().numpy()
    return out


def _writer(index: int, head: int, value):
    def hook(activation, hook):
        activation = activation.clone()
        activation[0, index, head] = value
        return activation

    return hook


if __name__ == "__main__":
    main()
