"""Benchmark: edge-ablated evaluations as ACDC makes them, on the shipped organism's full graph.

ACDC evaluates the full graph of the organism (32 heads, 4 MLPs, 1,519 edges) minus one edge,
over and over. Each evaluation runs the edge-ablation hooks (engine/edges.py), where every
receiver subtracts the contributions of the senders it has no declared edge from. Two ways, in
one run, with the results checked equal:

1. circuitlang: the rows (prompts) of one variant share their declared edges, so each receiver's
   input is computed once per variant, on all its rows at once;
2. per-row baseline: the same subtraction written one prompt row at a time (the straightforward
   loop, which the engine used before), swapped in for the benchmark only.

    python benchmarks/edge_ablation.py [--variants 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import circuitlang  # noqa: E402
from circuitlang.discover.acdc import _incoming, as_edges  # noqa: E402
from circuitlang.discover.path_growth import LOGITS  # noqa: E402
from circuitlang.discover.scoring import Scorer, node_order, variant_of  # noqa: E402
from circuitlang.engine import edges  # noqa: E402
from circuitlang.engine.session import open_session  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "organism_incr_digits.circ"


def per_row_removed(self, receiver, channel, like):  # the baseline: one prompt row at a time
    removed = torch.zeros_like(like)
    for group in self.groups:
        if not edges._in_circuit(group.kept, receiver):
            continue
        rows = range(like.shape[0])[group.rows] if isinstance(group.rows, slice) else group.rows.tolist()
        for row in rows:
            kept = sum((self.diffs[s][row] for s in group.declared.get((receiver, channel), ())), torch.zeros_like(like[row]))
            removed[row] = self.total[row] - kept
    return removed


@contextmanager
def baseline():
    grouped = edges.EdgeHooks._removed
    edges.EdgeHooks._removed = per_row_removed
    try:
        yield
    finally:
        edges.EdgeHooks._removed = grouped


def timed(scorer: Scorer, variants: list, repeats: int) -> tuple[float, list[float]]:
    best, values = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        values = [scorer.means([v])[0] for v in variants]  # one at a time, as ACDC's sequential search does
        best = min(best, time.perf_counter() - start)
    return best, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    scorer = Scorer(open_session(circuitlang.load(SPEC)))
    nodes = sorted(scorer.heads() + scorer.mlps(), key=node_order)
    keys = sorted({k for r in nodes + [LOGITS] for k in _incoming(r, nodes)}, key=str)
    variants = [variant_of(nodes, as_edges(set(keys) - {key})) for key in keys[:: len(keys) // args.variants][: args.variants]]
    fast, fast_values = timed(scorer, variants, args.repeats)
    with baseline():
        slow, slow_values = timed(scorer, variants, args.repeats)
    difference = max(abs(a - b) for a, b in zip(fast_values, slow_values))
    print(f"{len(keys)} edges; {len(variants)} variants (full graph minus one edge), {scorer.engine.bound.n_prompts} prompts, one thread")
    print(f"circuitlang (rows grouped by variant): {fast:.2f} s ({fast / len(variants):.3f} s per variant)")
    print(f"per-row baseline:                      {slow:.2f} s ({slow / len(variants):.3f} s per variant), {slow / fast:.2f}x slower")
    print(f"largest difference in a variant's mean metric: {difference:.2e}")


if __name__ == "__main__":
    main()
