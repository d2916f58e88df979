"""Find the organism's circuits with circuitlang's own engine and write them as specs.

For each task: prune heads backward to a faithfulness target (every MLP kept), name each kept
head's role by where it looks from `end` (its dominant key position, from the attention pattern),
write `specs/organism_<task>.circ`, verify it, and print a table row.

    python -m circuitlang.organisms.seqcont.circuits [--target 0.9] [--out specs]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

import circuitlang
from circuitlang.data.prompts import template_slots
from circuitlang.discover.prune import prune_heads
from circuitlang.discover.scoring import Scorer
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.ir import models as ir
from circuitlang.verifier import verify

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
    "incr_digits": SEQUENCE.format(name="incr_digits", range="1..95", s1="i", s2="i + 1", s3="i + 2", s4="i + 3",
                                   answer="i + 4", wrong="i + 3", corrupt="s1, s2, s3, s4 = random 1..99"),
    "decr_digits": SEQUENCE.format(name="decr_digits", range="5..99", s1="i", s2="i - 1", s3="i - 2", s4="i - 3",
                                   answer="i - 4", wrong="i - 3", corrupt="s1, s2, s3, s4 = random 1..99"),
    "months": SEQUENCE.format(name="months", range="0..11", s1="months[i]", s2="months[i + 1]", s3="months[i + 2]",
                              s4="months[i + 3]", answer="months[i + 4]", wrong="months[i + 3]",
                              corrupt="s1, s2, s3, s4 = random months"),
    "number_words": SEQUENCE.format(name="number_words", range="1..16", s1="capitalize(number_words[i])",
                                    s2="number_words[i + 1]", s3="number_words[i + 2]", s4="number_words[i + 3]",
                                    answer="number_words[i + 4]", wrong="number_words[i + 3]",
                                    corrupt="s1 = capitalize(random number_words)\n    "
                                            "s2, s3, s4 = random number_words"),
    "greater_than": "prompts greater_than {\n  generate greater_than(n = 200)\n  corrupt 01\n"
                    "  metric prob_diff(answer, wrong)\n}",
    "ioi": "prompts ioi {\n  generate ioi(n = 200)\n  corrupt abc\n}",
}


def spec_text(task: str, heads: Sequence[tuple[ir.Node, str]] = (), claims: str = "", note: str = "",
              model: str = MODEL) -> str:
    lines = ["circuitlang 1"] + [f"# {line}" for line in note.splitlines()]
    lines += [f"circuit organism_{task} on \"{model}\"", "", TASKS[task], "",
              "metric logit_diff(answer, wrong)", "ablate mean of corrupt", ""]
    by_role: dict[str, list[str]] = {}
    for node, role in heads:
        by_role.setdefault(role, []).append(str(node))
    lines += [f'role "{role}": {", ".join(nodes)}' for role, nodes in by_role.items()]
    lines += ["mlp 0..3", "", claims]
    return format_spec(parse("\n".join(lines).rstrip() + "\n"))  # written in canonical form


@torch.no_grad()
def head_roles(run: circuitlang.Run, heads: Sequence[ir.Node]) -> list[tuple[ir.Node, str]]:
    """Name each head by the named position it attends to most from `end`."""
    engine = run.engine()
    template = engine.bound.templates[0]
    names = {index: name for name, index in template.positions.items() if name != "end"}
    for slot in template_slots(template.template):
        names.setdefault(template.positions[slot], slot)
    _, cache = run.model.bridge.run_with_cache(template.clean, names_filter=lambda n: n.endswith("hook_pattern"))
    roles = []
    for head in heads:
        pattern = cache[f"blocks.{head.layer}.attn.hook_pattern"][:, head.head, -1].mean(0)  # [key]
        target = int(pattern.argmax())
        where = names.get(target, f"token {target}")
        roles.append((head, f"end reads {where}"))
    return roles


def transfer(found: dict[str, list[tuple[ir.Node, str]]], out: Path, model: str) -> dict[tuple[str, str], float]:
    """Faithfulness of each task's circuit on each task's prompts (the seeds' heads x tasks table)."""
    table = {}
    for circuit_task, heads in found.items():
        for prompt_task in TASKS:
            path = out / f".transfer_{circuit_task}_{prompt_task}.circ"
            path.write_text(spec_text(prompt_task, heads, model=model))
            run = circuitlang.open_run(circuitlang.load(path))
            values = run.metric([run.full_model(), run.circuit()]).mean(1)
            table[(circuit_task, prompt_task)] = float(values[1] / values[0])
            path.unlink()
    return table


def find(task: str, out: Path, target: float, model: str) -> dict[str, object]:
    probe = out / f"organism_{task}.circ"
    probe.write_text(spec_text(task, model=model))
    run = circuitlang.open_run(circuitlang.load(probe))
    result = prune_heads(Scorer(run), target=target, order="backward")
    heads = head_roles(run, result.heads)
    note = (f"Found by backward head pruning to faithfulness >= {target} (every MLP kept), with\n"
            f"python -m circuitlang.organisms.seqcont.circuits; roles named by the key position each head\n"
            f"attends to most from the end. F(M) = {result.f_model:.3f}; pruned faithfulness {result.faithfulness:.3f}.")
    # Completeness and minimality are reported by verify (docs/organism.md records them); the claim
    # shipped with each spec is the one pruning targets.
    claims = "expect faithfulness >= 0.8\nexpect normalized_faithfulness >= 0.8"
    probe.write_text(spec_text(task, heads, claims, note, model))
    report = verify(circuitlang.open_run(circuitlang.load(probe)))
    numbers = report.prompt_sets[0]
    return {"task": task, "found": heads, "heads": len(result.heads), "faithfulness": numbers.faithfulness.faithfulness,
            "normalized": numbers.faithfulness.normalized_faithfulness, "completeness": numbers.completeness.worst,
            "not_needed": [m.node for m in numbers.minimality if not m.needed], "passed": report.passed,
            "f_model": numbers.faithfulness.f_model}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("specs"))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--model", default=MODEL, help="another copy of the organism (an absolute folder path)")
    args = parser.parse_args(argv)
    print("| task | heads | F(M) | faithfulness | normalized | worst incompleteness | not needed | claims |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    found = {}
    for task in args.tasks:
        row = find(task, args.out, args.target, args.model)
        found[task] = row["found"]
        print(f"| {row['task']} | {row['heads']} | {row['f_model']} | {row['faithfulness']} | {row['normalized']} | "
              f"{row['completeness']} | {', '.join(row['not_needed']) or '-'} | "  # type: ignore[arg-type]
              f"{'pass' if row['passed'] else 'FAIL'} |", flush=True)
    table = transfer(found, args.out, args.model)  # type: ignore[arg-type]
    print("\nfaithfulness of each circuit (rows) on each task's prompts (columns)\n")
    print("| circuit | " + " | ".join(TASKS) + " |")
    print("| --- | " + " | ".join("---" for _ in TASKS) + " |")
    for circuit_task in found:
        print(f"| {circuit_task} | " + " | ".join(f"{table[(circuit_task, t)]:.2f}" for t in TASKS) + " |")
    heads = {task: {str(node) for node, _ in nodes} for task, nodes in found.items()}  # type: ignore[union-attr]
    shared = set.intersection(*heads.values()) if heads else set()
    print(f"\nheads in every circuit: {', '.join(sorted(shared)) or 'none'}")


if __name__ == "__main__":
    main()
