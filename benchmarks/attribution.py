"""Benchmark: EAP and EAP-IG against ACDC on the same graph, in one run.

Each method runs in a subprocess of its own (so that its peak memory is its own), on the same
spec, prompts and graph (every head and MLP, edges into q, k, v, MLP inputs and the logits):

- ACDC: one pass at a fixed threshold (`--threshold`, on the metric's drop as a fraction of
  |F(M)|): one forward of every prompt per edge tried. On a model whose pass is out of reach
  (`--acdc-trials N`), N single-edge trials are timed and the pass is given as a range: ACDC tries
  every edge into a receiver that still reaches the logits, so a pass tries at least the logits'
  edges and at most every edge of the graph (on the organism it tried 122 of 1,418).
- EAP (one forward and backward pass) and EAP-IG (`--steps` of them, at the points of
  `--ig-grid`), then the exact evaluation of their top-k circuit, for k the number of edges ACDC
  kept (or 1% of the graph when ACDC's pass was not run): the faithfulness of circuits of equal
  size.

Reported per method: seconds (wall and CPU), passes over the prompts, peak resident memory above
the loaded model, edges, faithfulness F(C)/F(M). The time ratios are against ACDC in the same run.

With `--correlations`, instead: every edge's EAP and EAP-IG score against its exact effect
(F(M) minus F of the full graph without that edge, by edge ablation), as Spearman rank
correlations of the signed values and of their magnitudes, and the overlap of the top 1% and 10%.

    python benchmarks/attribution.py                      # the organism, full ACDC pass
    python benchmarks/attribution.py --model gpt2 --prompts 20 --acdc-trials 40 --hf-home /tmp/hf
    python benchmarks/attribution.py --correlations       # the organism, every edge
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"organism": ROOT / "specs" / "organism_incr_digits.circ", "gpt2": ROOT / "specs" / "incr_digits.circ"}
TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(SPECS), default="organism")
    parser.add_argument("--prompts", type=int, default=0, help="keep the first N prompts (default: all)")
    parser.add_argument("--threshold", type=float, default=0.01, help="ACDC's threshold (metric score)")
    parser.add_argument("--acdc-trials", type=int, default=0, help="time only this many ACDC trials (0: a full pass)")
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG's integration steps")
    parser.add_argument(
        "--ig-grid",
        choices=("left", "right"),
        default="left",
        help="EAP-IG's points: left, alpha = k/steps for k = 0..steps-1 (Hanna et al., MIB); right, k = 1..steps",
    )
    parser.add_argument("--hf-home", type=Path, help="a HF_HOME holding the GPT-2 stand-in (built there if missing)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--correlations", action="store_true", help="scores against exact single-edge ablation")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # the subprocess: one method
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hf_home = args.hf_home or Path(tempfile.mkdtemp(prefix="circuitlang-bench-hf-"))
    os.environ["HF_HOME"] = str(hf_home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.side:
        print(json.dumps(run_side(args)))
        return
    if args.correlations:
        correlations(args)
        return
    if args.model == "gpt2":
        from circuitlang.organisms.gpt2_standin import install_in_hub_cache

        if not (hf_home / "hub" / "models--gpt2").is_dir():
            install_in_hub_cache(hf_home, TOKENIZER)
    compare(args, hf_home)


def compare(args: argparse.Namespace, hf_home: Path) -> None:
    acdc = side(args, hf_home, "acdc", 0)
    size = acdc["edges"] or max(1, acdc["graph"] // 100)
    results = {"acdc": acdc, "eap": side(args, hf_home, "eap", size), "eap-ig": side(args, hf_home, "eap-ig", size)}
    print(
        f"model {args.model}, {acdc['prompts']} prompts, {acdc['graph']} edges in the graph, "
        f"{args.threads} thread(s); ACDC threshold {args.threshold} (metric)"
    )
    print(f"{'method':8} {'wall s':>9} {'CPU s':>9} {'x ACDC':>8} {'passes':>8} {'peak MB':>8} {'edges':>6} {'faithfulness':>12}")
    for name, r in results.items():
        if name == "acdc" and r.get("extrapolated"):
            print(_acdc_range(r, results))
            continue
        ratio = "-" if acdc.get("extrapolated") else f"{acdc['cpu'] / r['cpu']:.1f}"
        print(f"{name:8} {r['wall']:9.1f} {r['cpu']:9.1f} {ratio:>8} {r['passes']:8} {r['peak_mb']:8.0f} {r['edges']:6} {_faithfulness(r):>12}")


def _acdc_range(acdc: dict, results: dict) -> str:
    """ACDC's pass from its measured cost per trial: between the logits' edges and every edge."""
    low, high = acdc["per_trial_cpu"] * (acdc["logit_edges"] + 2), acdc["per_trial_cpu"] * acdc["passes"]
    ratios = {name: f"{low / r['cpu']:.0f}-{high / r['cpu']:.0f}" for name, r in results.items() if name != "acdc"}
    return (
        f"acdc     {acdc['per_trial_cpu']:.2f} CPU s per trial ({acdc['trials']} timed, peak {acdc['peak_mb']:.0f} MB); "
        f"a pass of {acdc['logit_edges'] + 2}-{acdc['passes']} trials: {low:.0f}-{high:.0f} CPU s; "
        f"x ACDC: eap {ratios['eap']}, eap-ig {ratios['eap-ig']}"
    )


def correlations(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    import circuitlang
    from circuitlang.discover.acdc import as_edges, full_graph
    from circuitlang.discover.attribution import edge_scores
    from circuitlang.discover.methods import IGGrid
    from circuitlang.discover.scoring import Scorer, variant_of
    from circuitlang.verification.statistics import rank_correlation

    torch.set_num_threads(args.threads)
    scorer = Scorer(circuitlang.open_run(_spec(args)).session)
    nodes, _, graph = full_graph(scorer, None)
    edges = sorted(graph, key=str)
    started = time.process_time()
    variants = [variant_of(nodes, as_edges(graph - {edge}), embed_edges=scorer.embed_edges) for edge in edges]
    exact = scorer.f_model - np.array(scorer.means(variants))
    print(
        f"model {args.model}, {scorer.engine.bound.n_prompts} prompts, {len(edges)} edges; exact effects in "
        f"{time.process_time() - started:.0f} CPU s"
    )
    print(f"{'method':8} {'rho':>7} {'rho |.|':>8} {'top 1%':>7} {'top 10%':>8}")
    for method in ("eap", "eap-ig"):
        scores = edge_scores(scorer, method, args.steps, IGGrid(args.ig_grid))
        estimate = np.array([scores[edge] for edge in edges])
        print(
            f"{method:8} {rank_correlation(estimate, exact):7.3f} {rank_correlation(abs(estimate), abs(exact)):8.3f} "
            f"{_overlap(estimate, exact, 0.01):7.2f} {_overlap(estimate, exact, 0.1):8.2f}"
        )


def _overlap(estimate, exact, fraction: float) -> float:
    """The share of the exact top edges (by |effect|) among the estimate's top, at this fraction."""
    import numpy as np

    k = max(1, int(fraction * len(exact)))
    top = set(np.argsort(-abs(estimate), kind="stable")[:k])
    return len(top & set(np.argsort(-abs(exact), kind="stable")[:k])) / k


def _spec(args: argparse.Namespace):
    import circuitlang

    spec = circuitlang.load(SPECS[args.model])
    if args.prompts:
        spec = spec.model_copy(update={"prompt_sets": tuple(p.model_copy(update={"count": args.prompts}) for p in spec.prompt_sets)})
    return spec


def _faithfulness(result: dict) -> str:
    value = result.get("faithfulness")
    return "-" if value is None else f"{value:.3f}"


def side(args: argparse.Namespace, hf_home: Path, method: str, size: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--side",
        method,
        "--size",
        str(size),
        "--model",
        args.model,
        "--prompts",
        str(args.prompts),
        "--threshold",
        str(args.threshold),
        "--acdc-trials",
        str(args.acdc_trials),
        "--steps",
        str(args.steps),
        "--ig-grid",
        args.ig_grid,
        "--hf-home",
        str(hf_home),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_side(args: argparse.Namespace) -> dict:
    import torch

    import circuitlang
    from circuitlang.discover.scoring import Scorer

    torch.set_num_threads(args.threads)
    scorer = Scorer(circuitlang.open_run(_spec(args)).session)
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_acdc(scorer, args) if args.side == "acdc" else run_attribution(scorer, args)
    result |= {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - loaded_kb) / 1024,
        "prompts": scorer.engine.bound.n_prompts,
    }
    return result


def run_acdc(scorer, args: argparse.Namespace) -> dict:
    from circuitlang.discover.acdc import acdc, as_edges, full_graph
    from circuitlang.discover.scoring import variant_of

    nodes, _, graph = full_graph(scorer, None)
    if not args.acdc_trials:
        found = acdc(scorer, args.threshold, "metric")
        return {
            "graph": len(graph),
            "edges": sum(len(e.channels or ("",)) for e in found.edges),
            "faithfulness": found.faithfulness,
            "passes": found.edges_tried + 2,
        }
    trials = sorted(graph, key=str)[: args.acdc_trials]  # single-edge removals, as ACDC's trials are
    started = time.process_time()
    scorer.means([variant_of(nodes, as_edges(graph - {edge}), embed_edges=scorer.embed_edges) for edge in trials])
    per_trial = (time.process_time() - started) / len(trials)
    return {
        "graph": len(graph),
        "edges": 0,
        "faithfulness": None,
        "passes": len(graph) + 2,
        "extrapolated": True,
        "per_trial_cpu": per_trial,
        "trials": len(trials),
        "logit_edges": sum(1 for edge in graph if edge[1].kind == "logits"),
    }


def run_attribution(scorer, args: argparse.Namespace) -> dict:
    from circuitlang.discover.attribution import edge_scores, select_top
    from circuitlang.discover.methods import IGGrid

    scores = edge_scores(scorer, args.side, args.steps, IGGrid(args.ig_grid))
    chosen = select_top(scorer, scores, args.size)
    return {
        "graph": len(scores),
        "edges": chosen.point.edges,
        "faithfulness": chosen.faithfulness,
        "passes": 1 if args.side == "eap" else args.steps,
    }


if __name__ == "__main__":
    main()
