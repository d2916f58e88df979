"""Benchmark: the minimality sweep of a 20-head circuit (one variant per head, C minus that head;
the circuit keeps every MLP, as Wang et al.'s IOI circuit does)
on 64 prompts of a GPT-2-small-shaped model (random weights, GPT-2 small's shapes and FLOPs),
three ways, in one run, with the results checked equal:

1. circuitlang's engine (cached clean/corrupt activations, variants started from the circuit's
   cached run at the removed node's layer, only the two logits the metric reads);
2. a naive loop: one hooked full forward per variant (all positions, full logits);
3. TransformerLens 4's own patching function (`generic_activation_patch` over the 20 heads, on top
   of persistent hooks that ablate the circuit's complement).

Each way includes the one-time work it needs (the corrupt run for the mean-ablation values).

    python benchmarks/minimality_sweep.py [--prompts 64] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import circuitlang  # noqa: E402
from circuitlang.engine.readouts import readout_for, single_ids  # noqa: E402
from circuitlang.engine.session import Session, open_session  # noqa: E402
from circuitlang.engine.variants import circuit_variant  # noqa: E402
from circuitlang.ir.stdlib import NAMES  # noqa: E402
from circuitlang.organisms.tiny import build_random_gpt2  # noqa: E402

PLACES = ["store", "garden", "school", "office", "station", "house"]
OBJECTS = ["ring", "bone", "drink", "snack", "book", "ball"]
TEMPLATE_WORDS = ["When", "and", "went", "to", "the", "gave", "a"]

SPEC = """circuitlang 1
circuit sweep on "./gpt2_small_random"
list places = %(places)s
list objects = %(objects)s
prompts ioi {
  template "When {s1} and {io} went to the {place}, {s2} gave a {object} to"
  for i in 1..%(n)d
  io, s1 = random names distinct
  s2 = s1
  place = random places
  object = random objects
  answer = io
  wrong = s1
  corrupt abc
}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "name mover": 9.9, 9.6, 10.0 q end
role "backup name mover": 10.10, 10.6, 10.2, 10.1, 11.2, 9.7, 9.0, 11.9 q end
role "negative name mover": 10.7, 11.10 q end
role "s-inhibition": 7.3, 7.9, 8.6, 8.10 q end
role "induction": 5.5, 6.9 q s2
role "duplicate token": 3.0 q s2
mlp 0..11
set batch_size = %(n)d
"""


def build(folder: Path, n_prompts: int) -> Session:
    words = [*NAMES, *PLACES, *OBJECTS, *TEMPLATE_WORDS]
    if not (folder / "gpt2_small_random" / "config.json").exists():
        build_random_gpt2(folder / "gpt2_small_random", words, n_layers=12, n_heads=12, d_model=768, n_positions=1024, seed=0, vocab_size=50257)
    spec_path = folder / "sweep.circ"
    spec_path.write_text(SPEC % {"places": json.dumps(PLACES), "objects": json.dumps(OBJECTS), "n": n_prompts})
    return open_session(circuitlang.load(spec_path))


def heads(run: Session) -> list:
    return [member for member in run.spec.circuit.nodes if member.node.kind == "head"]


def sweep_variants(run: Session) -> list:
    return [circuit_variant(run.spec.circuit, frozenset({member.node}), label=str(member.node)) for member in heads(run)]


def with_circuitlang(run: Session) -> torch.Tensor:
    """Fresh engine (its clean and corrupt caches are part of the cost), then the sweep."""
    run._engines.clear()
    engine = run.engine()
    readout = readout_for(engine.bound.metric, None)
    return engine.run(sweep_variants(run), readout, base=circuit_variant(run.spec.circuit)).mean(1)


def _mean_z(run: Session, template) -> list[torch.Tensor]:
    bridge, n_layers = run.model.bridge, run.model.bridge.cfg.n_layers
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    _, cache = bridge.run_with_cache(template.corrupt, names_filter=lambda name: name in names)
    return [cache[name].mean(0, keepdim=True) for name in names]


def _keep_masks(run: Session, template, without) -> torch.Tensor:
    """[L, P, H] True where the circuit (minus `without`) keeps a head's output."""
    cfg = run.model.bridge.cfg
    keep = torch.zeros(cfg.n_layers, template.seq_len, cfg.n_heads, dtype=torch.bool)
    for member in heads(run):
        if member.node == without:
            continue
        positions = [template.positions[p.name] + p.offset for p in member.q]
        keep[member.node.layer, positions, member.node.head] = True
    return keep


def _logit_diff(template):
    answers, wrongs = single_ids(template, "answer"), single_ids(template, "wrong")

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return last.gather(1, answers[:, None])[:, 0] - last.gather(1, wrongs[:, None])[:, 0]

    return metric


@torch.no_grad()
def with_naive_loop(run: Session) -> torch.Tensor:
    """One hooked full forward per variant; every head ablated by its own hook."""
    (template,) = run.bound["ioi"].templates
    bridge, mean_z, metric = run.model.bridge, _mean_z(run, template), _logit_diff(template)
    results = []
    for member in heads(run):
        keep = _keep_masks(run, template, member.node)
        hooks = []
        for layer in range(bridge.cfg.n_layers):

            def ablate(z, hook, layer=layer):
                return torch.where(keep[layer][None, :, :, None], z, mean_z[layer])  # noqa: B023 (hooks run before `keep` changes)

            hooks.append((f"blocks.{layer}.attn.hook_z", ablate))
        logits = bridge.run_with_hooks(template.clean, fwd_hooks=hooks)
        results.append(metric(logits).mean())
    return torch.stack(results).double()


@torch.no_grad()
def with_tl_patching(run: Session) -> torch.Tensor:
    """TransformerLens' generic_activation_patch over the circuit's heads: each cell patches one
    head's z with its mean value, on top of persistent hooks that ablate the complement."""
    import pandas as pd
    from transformer_lens import patching
    from transformer_lens.ActivationCache import ActivationCache

    (template,) = run.bound["ioi"].templates
    bridge, mean_z = run.model.bridge, _mean_z(run, template)
    keep = _keep_masks(run, template, None)
    n = template.n_prompts
    source = ActivationCache({f"blocks.{layer}.attn.hook_z": z.expand(n, -1, -1, -1) for layer, z in enumerate(mean_z)}, bridge)
    for layer in range(bridge.cfg.n_layers):

        def ablate(z, hook, layer=layer):
            return torch.where(keep[layer][None, :, :, None], z, mean_z[layer])

        bridge.add_hook(f"blocks.{layer}.attn.hook_z", ablate)
    cells = pd.DataFrame([(m.node.layer, m.node.head) for m in heads(run)], columns=["layer", "head"])
    try:
        values = patching.generic_activation_patch(
            bridge,
            template.clean,
            source,
            lambda logits: _logit_diff(template)(logits).mean(),
            patching.layer_head_vector_patch_setter,
            "z",
            index_df=cells,
        )
    finally:
        bridge.reset_hooks()
    return values.double()


def timed(function, run: Session, repeats: int) -> tuple[float, torch.Tensor]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(run)
        best = min(best, time.perf_counter() - started)
    return best, result  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "circuitlang_bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    run = build(args.workdir, args.prompts)
    print(
        f"torch threads: {torch.get_num_threads()}; prompts: {args.prompts}; "
        f"tokens per prompt: {run.bound['ioi'].templates[0].seq_len}; variants: {len(heads(run))}"
    )
    ours_time, ours = timed(with_circuitlang, run, args.repeats)
    naive_time, naive = timed(with_naive_loop, run, args.repeats)
    tl_time, tl = timed(with_tl_patching, run, args.repeats)
    print(f"max |circuitlang - naive| = {(ours - naive).abs().max():.2e}; max |circuitlang - TL patching| = {(ours - tl).abs().max():.2e}")
    assert torch.allclose(ours, naive, atol=1e-4) and torch.allclose(ours, tl, atol=1e-4), "results differ"
    print(f"circuitlang      {ours_time:8.2f} s")
    print(f"naive loop       {naive_time:8.2f} s   ratio {naive_time / ours_time:5.2f}x")
    print(f"TL patching      {tl_time:8.2f} s   ratio {tl_time / ours_time:5.2f}x")


if __name__ == "__main__":
    main()
