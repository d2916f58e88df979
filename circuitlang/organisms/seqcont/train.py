"""Train the seqcont organism from scratch, reproducibly from a seed.

    python -m circuitlang.organisms.seqcont.train --out DIR --steps N --seed S

writes a Hugging Face folder (config.json, model.safetensors, tokenizer.json, ...) plus
`training.json` (the arguments, the per-task held-out results, the time taken). The shipped weights
are `python -m circuitlang.organisms.seqcont.train --out circuitlang/organisms/seqcont/weights`
with the defaults below (see docs/organism.md).

Loss: every next-token prediction of the prompt (from BOS) plus the answer at the last position
(the soft target "uniform over the years after YY" for greater-than). Training on the whole
sequence teaches each successor at every position of a sequence, which is what lets held-out
starts work; the extra targets on unpredictable tokens (the first number, the names) only add a
constant to the loss.

Reproducibility: the initial weights come from `torch.manual_seed(seed)`, the data stream from
`random.Random(seed)` in a fixed order, dropout is off and torch runs on one thread with
deterministic algorithms, so a rerun with the same seed, torch version and machine type gives
bit-identical weights (tests/organisms/test_organism_training.py checks this on a short run).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from circuitlang.organisms.seqcont import WEIGHTS
from circuitlang.organisms.seqcont.tasks import Example, training_stream
from circuitlang.organisms.seqcont.tokenizer import build_tokenizer


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    seed: int = 0
    batch_size: int = 128
    n_layer: int = 4
    n_head: int = 8
    d_model: int = 128
    n_positions: int = 64
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.1
    log_every: int = 100
    eval_every: int = 1000  # 0: only at the end


def answer_token_ids(tokenizer, answers: tuple[str, ...]) -> tuple[int, ...]:
    """The one token of each answer (an error if an answer is not exactly one token)."""
    cache = tokenizer.__dict__.setdefault("_seqcont_answer_ids", {})
    if answers not in cache:
        ids = []
        for answer in answers:
            encoded = tokenizer(answer, add_special_tokens=False)["input_ids"]
            if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
                raise ValueError(f"answer {answer!r} is not one known token: {encoded}")
            ids.append(encoded[0])
        cache[answers] = tuple(ids)
    return cache[answers]


def encode(batch: list[Example], tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L] (BOS first), next-token labels [B, L] (-100 where none), the index
    of each row's last prompt token [B], and the answer distribution there [B, V]."""
    encoded = tokenizer([e.text for e in batch], add_special_tokens=False)["input_ids"]
    rows = [[tokenizer.bos_token_id] + list(r) for r in encoded]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    last = torch.tensor([len(r) - 1 for r in rows])
    target = torch.zeros(len(rows), len(tokenizer))
    for i, (row, example) in enumerate(zip(rows, batch)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row) - 1] = torch.tensor(row[1:])
        answer_ids = answer_token_ids(tokenizer, example.answers)
        target[i, list(answer_ids)] = 1.0 / len(answer_ids)
    return ids, labels, last, target


def loss_of(model, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    ids, labels, last, target = batch
    logits = model(ids).logits
    prompt = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    final = logits[torch.arange(len(last)), last].log_softmax(-1)
    answer = -(target * final).sum(-1).mean()
    return prompt + answer


def new_model(config: TrainConfig, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=config.n_positions,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(config.seed)
    return GPT2LMHeadModel(gpt_config)


def train(config: TrainConfig, out: Path | None = None, log=print):
    """Train and return (model, tokenizer); with `out`, save them there as a HF folder."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config, out, log)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def quiet_transformers() -> None:
    """Right padding is never attended to (causal attention), so transformers' padding warning is noise."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _train(config: TrainConfig, out: Path | None, log):
    tokenizer = build_tokenizer()
    model = new_model(config, len(tokenizer))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.98)
    )

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    stream = training_stream(config.seed, config.batch_size)
    started, running = time.perf_counter(), 0.0
    log(f"training {sum(p.numel() for p in model.parameters())} parameters for {config.steps} steps: {asdict(config)}")
    history = []
    for step in range(config.steps):
        model.train()
        loss = loss_of(model, encode(next(stream), tokenizer))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running += float(loss.detach())
        done = step + 1
        if config.log_every and done % config.log_every == 0:
            log(
                f"step {done:5d}  loss {running / config.log_every:.4f}  lr {scheduler.get_last_lr()[0]:.2e}  "
                f"{time.perf_counter() - started:7.1f}s"
            )
            history.append({"step": done, "loss": running / config.log_every})
            running = 0.0
        if config.eval_every and done % config.eval_every == 0 and done < config.steps:
            from circuitlang.organisms.seqcont.evaluate import evaluate, format_table

            log(format_table(evaluate(model.eval(), tokenizer, sets=("held_out",))))
    model.eval()
    seconds = time.perf_counter() - started
    log(f"trained in {seconds:.1f}s")
    if out is not None:
        save(model, tokenizer, out, config, seconds, history, log)
    return model, tokenizer


def save(model, tokenizer, out: Path, config: TrainConfig, seconds: float, history: list[dict], log=print) -> None:
    from circuitlang.organisms.seqcont.evaluate import evaluate, format_table

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    results = evaluate(model, tokenizer)
    log(format_table(results))
    meta = {
        "config": asdict(config),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": "python -m circuitlang.organisms.seqcont.train " + " ".join(sys.argv[1:]),
        "loss_history": history,
        "evaluation": results,
    }
    (out / "training.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    log(f"saved to {out}")


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m circuitlang.organisms.seqcont.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"output folder (default: {WEIGHTS})")
    for field, value in asdict(defaults).items():
        parser.add_argument("--" + field.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    config = TrainConfig(**{f: getattr(args, f) for f in asdict(defaults)})
    quiet_transformers()
    train(config, args.out, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
