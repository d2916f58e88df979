"""Per-task evaluation of the organism on held-out prompts (and on each task's whole distribution).

    python -m circuitlang.organisms.seqcont.evaluate [--model DIR] [--json]

Metrics, read at the last prompt token (BOS prepended, as circuitlang's engine does):

- accuracy: the top-1 next token over the whole vocabulary is the answer (greater-than: is a year
  after YY, i.e. a member of the answer set);
- logit_diff: logit(answer) - logit(wrong), the metric of specs/incr_*.circ and specs/ioi.circ
  (sequence tasks and IOI), its mean and minimum; top1_margin_min: the smallest gap between the
  answer's logit and the best other token's (positive iff every prompt is right);
- prob_diff (greater-than): p(year > YY) - p(year <= YY), summed over the two-digit year tokens
  with the softmax over the whole vocabulary, the metric of specs/greater_than.circ.

"held_out" is every prompt of `tasks.held_out` (never trained on); "all" is each task's whole
distribution (`tasks.every_prompt`), training prompts included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from circuitlang.organisms.seqcont import WEIGHTS
from circuitlang.organisms.seqcont.tasks import TASKS, Example, every_prompt, held_out

SETS = {"held_out": held_out, "all": every_prompt}


@torch.no_grad()
def last_logits(model, tokenizer, examples: list[Example], batch_size: int = 512) -> torch.Tensor:
    """Logits at the last prompt token of each example, [N, V] (float64)."""
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        encoded = tokenizer([e.text for e in chunk], add_special_tokens=False)["input_ids"]
        rows = [[tokenizer.bos_token_id] + list(r) for r in encoded]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)  # right padding: causal attention never sees it
        last = torch.tensor([len(r) - 1 for r in rows])
        out.append(model(ids).logits[torch.arange(len(rows)), last].double())
    return torch.cat(out)


def task_metrics(model, tokenizer, examples: list[Example]) -> dict[str, float]:
    from circuitlang.organisms.seqcont.train import answer_token_ids

    logits = last_logits(model, tokenizer, examples)
    top = logits.argmax(-1).tolist()
    answers = [answer_token_ids(tokenizer, e.answers) for e in examples]
    wrongs = [answer_token_ids(tokenizer, e.wrong) for e in examples]
    accuracy = sum(t in a for t, a in zip(top, answers)) / len(examples)
    result = {"n": len(examples), "accuracy": accuracy}
    if all(len(a) == 1 for a in answers):
        diff = torch.tensor([float(row[a[0]] - row[w[0]]) for row, a, w in zip(logits, answers, wrongs)])
        result["logit_diff"] = float(diff.mean())
        result["logit_diff_min"] = float(diff.min())
        others = logits.clone()
        index = torch.tensor([a[0] for a in answers])
        others[torch.arange(len(examples)), index] = -torch.inf
        margin = logits[torch.arange(len(examples)), index] - others.max(-1).values
        result["top1_margin_min"] = float(margin.min())  # answer logit - best other logit; > 0 iff top-1
    else:
        probs = logits.softmax(-1)
        diff = torch.tensor([float(p[list(a)].sum() - p[list(w)].sum()) for p, a, w in zip(probs, answers, wrongs)])
        result["prob_diff"] = float(diff.mean())
        result["prob_diff_min"] = float(diff.min())
        result["p_years"] = float(torch.tensor([float(p[list(a) + list(w)].sum()) for p, a, w in zip(probs, answers, wrongs)]).mean())
    return result


def evaluate(
    model, tokenizer, sets: tuple[str, ...] = ("held_out", "all"), tasks: tuple[str, ...] = TASKS, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """{set: {task: metrics}} for the given model (in eval mode)."""
    model.eval()
    return {name: {task: task_metrics(model, tokenizer, SETS[name](task, seed)) for task in tasks} for name in sets}


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for name, per_task in results.items():
        lines.append(f"{name}:")
        lines.append(f"  {'task':14s} {'n':>5s} {'top-1 acc':>9s}  metric (mean, min over prompts)")
        for task, m in per_task.items():
            metric = (
                f"prob_diff {m['prob_diff']:.3f} (min {m['prob_diff_min']:.3f})"
                if "prob_diff" in m
                else f"logit_diff {m['logit_diff']:.2f} (min {m['logit_diff_min']:.2f}), top-1 margin min {m['top1_margin_min']:.2f}"
            )
            lines.append(f"  {task:14s} {m['n']:5d} {m['accuracy']:9.4f}  {metric}")
    return "\n".join(lines)


def load(folder: Path):
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    return GPT2LMHeadModel.from_pretrained(folder).eval(), PreTrainedTokenizerFast.from_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m circuitlang.organisms.seqcont.evaluate", description="Per-task accuracy of the seqcont organism on held-out prompts."
    )
    parser.add_argument("--model", type=Path, default=WEIGHTS, help=f"HF folder (default: {WEIGHTS})")
    parser.add_argument("--sets", default="held_out,all", help="comma-separated: held_out, all")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from circuitlang.organisms.seqcont.train import quiet_transformers

    quiet_transformers()
    model, tokenizer = load(args.model)
    results = evaluate(model, tokenizer, tuple(args.sets.split(",")))
    print(json.dumps(results, indent=1) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
