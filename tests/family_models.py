"""Tiny random models of each family TransformerBridge loads, built offline from configs.

Each is what a researcher's model of that family looks like to the engine, at toy size: GPT-2
(learned positions, LayerNorm, biases); GPT-NeoX/Pythia (parallel attention and MLP, partial
rotary); GPT-J and Phi (parallel attention and MLP behind one shared norm, partial rotary);
Llama and Mistral (grouped-query attention, RMSNorm, gated MLP, no biases); Qwen2 (grouped-query
attention with q/k/v biases); Gemma 2 (grouped-query attention, norms after attention and MLP,
logit soft-capping). All use GPT-2's real tokenizer (tests/data/gpt2-tokenizer), so that the same
spec binds on every family.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"
FAMILIES = ("gpt2", "neox", "gptj", "phi", "llama", "mistral", "qwen2", "gemma2")
GROUPED = ("llama", "mistral", "qwen2", "gemma2")  # 4 query heads over 2 key/value heads
SIZE = {"n_layers": 3, "n_heads": 4, "d_model": 64}
BOS = 50256


def _config(family: str, vocab: int):
    from transformers import Gemma2Config, GPT2Config, GPTJConfig, GPTNeoXConfig, LlamaConfig, MistralConfig, PhiConfig, Qwen2Config

    common = dict(
        vocab_size=vocab,
        hidden_size=SIZE["d_model"],
        num_hidden_layers=SIZE["n_layers"],
        num_attention_heads=SIZE["n_heads"],
        intermediate_size=128,
        max_position_embeddings=64,
        bos_token_id=BOS,
        eos_token_id=BOS,
    )
    if family == "gpt2":
        return GPT2Config(
            vocab_size=vocab,
            n_embd=SIZE["d_model"],
            n_layer=SIZE["n_layers"],
            n_head=SIZE["n_heads"],
            n_positions=64,
            bos_token_id=BOS,
            eos_token_id=BOS,
        )
    if family == "neox":
        return GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False)
    if family == "gptj":
        return GPTJConfig(
            vocab_size=vocab,
            n_embd=SIZE["d_model"],
            n_layer=SIZE["n_layers"],
            n_head=SIZE["n_heads"],
            rotary_dim=8,
            n_positions=64,
            bos_token_id=BOS,
            eos_token_id=BOS,
        )
    if family == "phi":
        return PhiConfig(**common)
    if family == "llama":
        return LlamaConfig(**common, num_key_value_heads=2)
    if family == "mistral":
        return MistralConfig(**common, num_key_value_heads=2)
    if family == "qwen2":
        return Qwen2Config(**common, num_key_value_heads=2)
    return Gemma2Config(**common, num_key_value_heads=2, head_dim=16, final_logit_softcapping=5.0, attn_logit_softcapping=10.0)


def build_family_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random `family` model with GPT-2's tokenizer into `folder`."""
    from transformers import AutoModelForCausalLM

    from circuitlang.organisms.gpt2_standin import gpt2_tokenizer

    tokenizer = gpt2_tokenizer(TOKENIZER)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tokenizer))).eval()
    with torch.no_grad():  # larger weights than the default init, so that ablations move the metric
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and "embed" not in name and "wte" not in name and "wpe" not in name:
                parameter.mul_(4.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copyfile(TOKENIZER / "encoder.json", folder / "vocab.json")  # what BPE tokenizer classes read
    shutil.copyfile(TOKENIZER / "vocab.bpe", folder / "merges.txt")
    return folder
