"""Find the organism's circuits with circuitlang's own discovery and write them as specs.

For each task: write the task as a spec with no circuit, run `circuitlang discover` on it
(iterative path patching from the logits backwards to a faithfulness target, or for greater-than
node pruning then ACDC on the edges among the kept nodes; roles named and positions refined; see
docs/discover.md), write `specs/organism_<task>.circ`, verify it, and print
a table row. The transfer matrix is `circuitlang compare specs/organism_*.circ`.

    python -m circuitlang.organisms.seqcont.circuits [--target 0.9] [--out specs]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence, TypedDict

import circuitlang
from circuitlang.engine.session import open_session
from circuitlang.workflows.discover import Options, discover
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.results.estimate import Estimate
from circuitlang.workflows.verify import verify

MODEL = "organism:seqcont"

SEQUENCE = """prompts {name} {{
  template "{{s1}} {{s2}} {{s3}} {{s4}}"
  for i in {range}
  s1 = {s1}
  s2 = {s2}
  s3 = {s3}
  s4 = {s4}
  answer = {answer}
  wrong = {wrong}
  corrupt random {{
    {corrupt}
  }}
}}"""

TASKS = {
    "incr_digits": SEQUENCE.format(
        name="incr_digits",
        range="1..95",
        s1="i",
        s2="i + 1",
        s3="i + 2",
        s4="i + 3",
        answer="i + 4",
        wrong="i + 3",
        corrupt="s1, s2, s3, s4 = random 1..99",
    ),
    "decr_digits": SEQUENCE.format(
        name="decr_digits",
        range="5..99",
        s1="i",
        s2="i - 1",
        s3="i - 2",
        s4="i - 3",
        answer="i - 4",
        wrong="i - 3",
        corrupt="s1, s2, s3, s4 = random 1..99",
    ),
    "months": SEQUENCE.format(
        name="months",
        range="0..11",
        s1="months[i]",
        s2="months[i + 1]",
        s3="months[i + 2]",
        s4="months[i + 3]",
        answer="months[i + 4]",
        wrong="months[i + 3]",
        corrupt="s1, s2, s3, s4 = random months",
    ),
    "number_words": SEQUENCE.format(
        name="number_words",
        range="1..16",
        s1="capitalize(number_words[i])",
        s2="number_words[i + 1]",
        s3="number_words[i + 2]",
        s4="number_words[i + 3]",
        answer="number_words[i + 4]",
        wrong="number_words[i + 3]",
        corrupt="s1 = capitalize(random number_words)\n    s2, s3, s4 = random number_words",
    ),
    "greater_than": "prompts greater_than {\n  generate greater_than(n = 200)\n  corrupt 01\n  metric prob_diff(answer, wrong)\n}",
    "ioi": "prompts ioi {\n  generate ioi(n = 200)\n  corrupt abc\n}",
}


# Iterative path patching scores one edge at a time; the greater-than metric (a probability
# difference near 1) saturates, so no single edge moves it and the search finds nothing faithful.
# There heads are pruned (both orders) and ACDC then finds the edges among the kept nodes.
METHODS = {"greater_than": "prune"}


def spec_text(task: str, model: str = MODEL) -> str:
    """The task as a spec with no circuit: what discovery starts from."""
    lines = [
        "circuitlang 1",
        f'circuit organism_{task} on "{model}"',
        "",
        TASKS[task],
        "",
        "metric logit_diff(answer, wrong)",
        "ablate mean of corrupt",
    ]
    return format_spec(parse("\n".join(lines) + "\n"))


class CircuitRow(TypedDict):
    """One task's row of the table `main` prints."""

    task: str
    nodes: int
    edges: int
    heads: str
    f_model: Estimate
    faithfulness: Estimate
    normalized: Estimate
    completeness: Estimate
    not_needed: list[str]
    passed: bool


def find(task: str, out: Path, target: float, model: str) -> CircuitRow:
    path = out / f"organism_{task}.circ"
    path.write_text(spec_text(task, model))
    session = open_session(circuitlang.load(path))
    command = f"python -m circuitlang.organisms.seqcont.circuits --target {target}"
    options = Options(METHODS.get(task, "path-patching"), path, target, name=f"organism_{task}", edges=task in METHODS)
    outcome = discover(session, options, command)
    path.write_text(outcome.text)
    report = verify(open_session(circuitlang.load(path)))
    numbers = report.prompt_sets[0]
    spec = circuitlang.load(path)
    return {
        "task": task,
        "nodes": len(spec.circuit.nodes),
        "edges": len(spec.circuit.edges),
        "heads": ", ".join(str(m.node) for m in spec.circuit.nodes if m.node.kind == "head"),
        "f_model": numbers.faithfulness.f_model,
        "faithfulness": numbers.faithfulness.faithfulness,
        "normalized": numbers.faithfulness.normalized_faithfulness,
        "completeness": numbers.completeness.worst,
        "not_needed": [m.node for m in numbers.minimality if not m.needed],
        "passed": report.passed,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("specs"))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--model", default=MODEL, help="another copy of the organism (an absolute folder path)")
    args = parser.parse_args(argv)
    print("| task | heads | nodes | edges | F(M) | faithfulness | normalized | worst incompleteness | not needed | claims |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks:
        row = find(task, args.out, args.target, args.model)
        print(
            f"| {row['task']} | {row['heads']} | {row['nodes']} | {row['edges']} | {row['f_model']} | "
            f"{row['faithfulness']} | {row['normalized']} | {row['completeness']} | "
            f"{', '.join(row['not_needed']) or '-'} | {'pass' if row['passed'] else 'FAIL'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
