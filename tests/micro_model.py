"""A micro transformer whose circuit is known by construction (weights set by hand).

Task: "{s1} {s2} {s3}" -> s1 (copy the first word). One layer, four heads, no MLP effect:
- 0.0 attends from `end` to `s1` (positional query/key) and copies the word there (OV = identity
  on the word dimensions): the circuit's main path;
- 0.1 is an exact copy of 0.0: a redundant backup path;
- 0.2 and 0.3 attend and read values, but their W_O is zero: useless heads;
- the MLP's weights are zero, so it writes nothing.
Word k's embedding is the unit vector on dimension k (with or without a leading space); positions
use dimensions 10-13; the unembedding reads the word dimensions back for the spaced words.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "yak"]
D_MODEL, N_HEADS = 48, 4
D_HEAD = D_MODEL // N_HEADS
POSITION_DIM, BOS_DIM = 10, 14


def build_copy_model(folder: Path, copy_scale: float = 1.0, attention_scale: float = 3.0) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    from circuitlang.organisms.tiny import word_tokenizer

    tokenizer = word_tokenizer(WORDS)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=8,
        n_embd=D_MODEL,
        n_layer=1,
        n_head=N_HEADS,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        _embeddings(model, tokenizer)
        _heads(model.transformer.h[0], copy_scale, attention_scale)
        for norm in (model.transformer.h[0].ln_1, model.transformer.h[0].ln_2, model.transformer.ln_f):
            norm.weight.fill_(1.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _embeddings(model, tokenizer) -> None:
    wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
    wte[0, BOS_DIM] = 1.0
    for k, word in enumerate(WORDS):
        for form in (word, "Ġ" + word):
            wte[tokenizer.convert_tokens_to_ids(form), k] = 1.0
    for position in range(4):
        wpe[position, POSITION_DIM + position] = 1.0
    # Untied unembedding: only the spaced form of word k (the form answers take) reads dimension k.
    for k, word in enumerate(WORDS):
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("Ġ" + word), k] = 1.0


def _heads(block, copy_scale: float, attention_scale: float) -> None:
    w_qkv, w_o = block.attn.c_attn.weight, block.attn.c_proj.weight  # [D, 3D], [D, D]
    for head in range(N_HEADS):
        q_cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
        k_cols = slice(D_MODEL + head * D_HEAD, D_MODEL + (head + 1) * D_HEAD)
        v_cols = slice(2 * D_MODEL + head * D_HEAD, 2 * D_MODEL + (head + 1) * D_HEAD)
        # query at the last position (3), key at s1 (position 1): attend end -> s1
        w_qkv[POSITION_DIM + 3, q_cols.start] = attention_scale
        w_qkv[POSITION_DIM + 1, k_cols.start] = attention_scale
        for k in range(len(WORDS)):
            w_qkv[k, v_cols.start + k] = 1.0
            if head in (0, 1):  # 0.0 and its backup 0.1 write the word back; 0.2 and 0.3 write nothing
                w_o[head * D_HEAD + k, k] = copy_scale
