"""EAP-IG graph files: a mutated `graph.json` through `circuitlang import` (the whole command, on a
base spec) and through `curve`'s graph reading (`_graph_scores`, all that `curve` does with the
file before it loads the model: the fuzzer runs no model).

Seeds are the graphs `circuitlang export` writes for the shipped organism specs, in both formats
(eap-ig and eap-ig-legacy), with random scores; the mutations are fuzz/json_mutate.py's (types,
NaN and Infinity, integers of thousands of digits, nesting 100,000 deep, `{},{},...` by the
million, unknown node names, duplicated keys) and byte mutations. The base spec, a small one, is on the
organism (4 layers x 8 heads), GPT-2 (12 x 12: every organism graph is of another model) or a hub
model of unknown shape; `--max-edges` is sometimes small, so that the size checks are reached.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path
from typing import Callable

from fuzz import harness
from fuzz.corpus import SPECS
from fuzz.json_mutate import mutate_json
from fuzz.targets import CASE_FOLDER, Case, write_case

NAME = "graph"
COMMANDS = 2  # import, curve's graph reading
GRAPH_NAME, BASE_NAME, OUT_NAME = "graph.json", "base.circ", "out.circ"
SEED_SPECS = ("organism_incr_digits.circ", "organism_ioi.circ", "organism_greater_than.circ")
BASE_MODELS = ('"organism:seqcont"', '"organism:seqcont"', '"gpt2"', '"someorg/unknown-model"')
NODE_NAMES = (
    "input",
    "logits",
    "a0.h0",
    "a3.h7",
    "a4.h0",
    "a0.h8",
    "m0",
    "m3",
    "m4",
    "m-1",
    "a1.h1<q>",
    "a0.h0->m1",
    "input->a0.h0<q>",
    "m0->logits",
    "a3.h7->a0.h0<v>",
    "a0.h0->a1.h1<x>",
    "n_layers",
    "n_heads",
    "score",
    "in_graph",
    "cfg",
    "nodes",
    "edges",
    "n_pos",
    "d_model",
    "parallel_attn_mlp",
)
MAX_EDGES = (5_000_000, 5_000_000, 5_000_000, 1000, 10)
# A small base spec (its prompts are expanded twice a case: a shipped spec would take most of the time).
BASE = """circuitlang 1
circuit base on {model}
prompts p {{
  template "{{s1}} {{s2}}"
  for i in 1..3
  s1 = i; s2 = i + 1; answer = i + 2; wrong = i + 1
  corrupt repeat_last
}}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "r": 0.0, 0.2
{extra}expect faithfulness >= 0.5
"""


def prepare(folder: Path) -> None:
    write_case(folder / CASE_FOLDER, build(0, 0))
    from circuitlang.commands import curve  # noqa: F401 - its imports, before the budgets apply


def lay_out(folder: Path, case: Case) -> None:
    write_case(folder / CASE_FOLDER, case)


def build(seed: int, index: int) -> Case:
    rng = random.Random(f"{NAME}:{seed}:{index}")
    graph = _scored(rng, rng.choice(_seed_graphs()))
    data = mutate_json(rng, graph, NODE_NAMES) if rng.random() < 0.9 else _dumped(graph)
    extra = rng.choice(("", "", "mlp 1\n", "set embed_edges = declared\n", "set embed_edges = all\n"))
    base = BASE.format(model=rng.choice(BASE_MODELS), extra=extra)
    options = rng.choice(([], [], [f"--top={rng.choice((1, 5, 10**9))}"], [f"--threshold={rng.choice(('0', '0.5', 'nan', '-inf'))}"]))
    arguments = " ".join([*options, "--max-edges", str(rng.choice(MAX_EDGES))])
    return Case(NAME, {GRAPH_NAME: data, BASE_NAME: base.encode(), "arguments": arguments.encode()})


def run(folder: Path, case: Case, start_clock: Callable[[], None]) -> str:
    where = folder / CASE_FOLDER
    arguments = case.files["arguments"].decode().split()
    graph, base = where / GRAPH_NAME, where / BASE_NAME
    start_clock()
    imported = _import(graph, base, where / OUT_NAME, arguments)
    start_clock()
    read = _curve_read(graph, base, int(arguments[-1]))
    return "ok" if imported and read else "error"


def _import(graph: Path, base: Path, out: Path, arguments: list[str]) -> bool:
    """`circuitlang import`: exit 0, or 2 with a message that names the graph file or has a place."""
    code, _, err = harness.run_cli("import", str(graph), "--base", str(base), "-o", str(out), *arguments)
    if code and graph.name not in err and base.name not in err:
        raise harness.ContractBroken(f"import: an error that names neither the graph nor the base spec: {err[-300:]}")
    return code == 0


def _curve_read(graph: Path, base: Path, max_edges: int) -> bool:
    """`curve`'s reading of a graph file, before it loads a model: accepted, or refused with
    errors of exit code 2 that each name the file."""
    from circuitlang.commands.common import load_checked
    from circuitlang.commands.curve import _graph_scores
    from circuitlang.errors import EXIT_SPEC_ERROR, CircuitlangError, exit_code, flatten

    try:
        spec = load_checked(base, None)
    except CircuitlangError:
        return False  # the base spec's own errors: import has shown them
    try:
        _graph_scores(graph, max_edges, spec.shape)
    except CircuitlangError as error:
        if exit_code([error]) != EXIT_SPEC_ERROR:
            raise harness.ContractBroken(f"curve: exit code {exit_code([error])} for a graph file: {error}") from None
        for problem in flatten([error]):
            if GRAPH_NAME not in str(problem):
                raise harness.ContractBroken(f"curve: an error that does not name the graph file: {problem}") from None
        return False
    return True


@lru_cache(maxsize=1)
def _seed_graphs() -> tuple[dict, ...]:
    """The graphs `circuitlang export` writes for the seed specs, in both formats."""
    from circuitlang.ir.eap_ig import export_graph
    from circuitlang.ir.lower import load_spec

    specs = [load_spec(SPECS / name) for name in SEED_SPECS]
    return tuple(export_graph(spec, legacy=legacy) for spec in specs for legacy in (False, True))


def _scored(rng: random.Random, graph: dict) -> dict:
    """A copy with random scores (an exported graph scores every edge 0, and `curve` refuses that)."""
    edges = {name: dict(info, score=rng.gauss(0, 1) if rng.random() < 0.9 else 0.0) for name, info in graph["edges"].items()}
    return dict(graph, edges=edges)


def _dumped(graph: dict) -> bytes:
    import json

    return json.dumps(graph).encode()
