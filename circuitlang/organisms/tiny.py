"""Small GPT-2-architecture models and word-level tokenizers built in code (no downloads).

Used by the tests (random weights, hand-checkable sizes), the benchmarks (GPT-2-small shapes) and
the organism's training script. A model is written as a normal Hugging Face folder, so it loads
through the same path as any local model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

BOS = "<|endoftext|>"
PUNCTUATION = (".", ",", "!", "?", ":", ";")


def word_tokenizer(words: Iterable[str]):  # -> transformers.PreTrainedTokenizerFast
    """A GPT-2-style word-level tokenizer: each word is one token, with or without a leading space
    (GPT-2's byte-level pre-tokenizer, so offsets and spacing behave as in GPT-2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0}
    for word in dict.fromkeys([*words, *PUNCTUATION]):
        for form in (word, "Ġ" + word):
            vocab.setdefault(form, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=BOS))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS, unk_token=BOS)


def build_random_gpt2(
    folder: Path,
    words: Iterable[str],
    n_layers: int = 2,
    n_heads: int = 4,
    d_model: int = 32,
    n_positions: int = 64,
    seed: int = 0,
    vocab_size: int | None = None,
) -> Path:
    """Write a randomly initialised GPT-2 with a word-level tokenizer to `folder`.

    `vocab_size` pads the embedding beyond the tokenizer's words (to reach GPT-2 small's 50257
    for FLOP-faithful benchmarks); the extra rows are never produced by the tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer(words)
    config = GPT2Config(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        n_positions=n_positions,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
