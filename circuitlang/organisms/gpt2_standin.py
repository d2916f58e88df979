"""A stand-in for GPT-2 small: its config, its real tokenizer, random weights.

GPT-2's weights cannot be downloaded where circuitlang is developed and tested, but its tokenizer
(`encoder.json`, `vocab.bpe`, shipped in `tests/data/gpt2-tokenizer/`) and its shapes can be had.
A model built from them binds every GPT-2 spec exactly as GPT-2 would (the same tokens, the same
positions, the same 12 layers x 12 heads x 50,257-token unembedding) and runs the whole pipeline at
full scale; only its numbers mean nothing.

`install_in_hub_cache` lays such a model out as the Hugging Face cache holds a downloaded hub
model (`HF_HOME/hub/models--gpt2/snapshots/<commit>/`), so that `on "gpt2"` loads it through the
real hub code path, offline.

    python -m circuitlang.organisms.gpt2_standin --tokenizer tests/data/gpt2-tokenizer --hf-home /tmp/hf
    HF_HOME=/tmp/hf HF_HUB_OFFLINE=1 circuitlang verify specs/incr_digits.circ
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BOS = "<|endoftext|>"
# The commit the stand-in's snapshot is filed under: any 40 hex digits do; this one says "fake".
STANDIN_COMMIT = "fa4e" * 10


def build_gpt2_standin(folder: Path, tokenizer_folder: Path, seed: int = 0) -> Path:
    """Write GPT-2 small's config, random weights and GPT-2's real tokenizer to `folder`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    # The hub's gpt2 holds the same two files under these names, next to a tokenizer.json.
    shutil.copyfile(tokenizer_folder / "encoder.json", folder / "vocab.json")
    shutil.copyfile(tokenizer_folder / "vocab.bpe", folder / "merges.txt")
    gpt2_tokenizer(tokenizer_folder).save_pretrained(folder)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # GPT2Config() is GPT-2 small: 12 x 12, d_model 768
    model.save_pretrained(folder)
    return folder


def gpt2_tokenizer(tokenizer_folder: Path) -> PreTrainedTokenizerFast:
    """GPT-2's byte-level BPE tokenizer from OpenAI's two files, as the hub's `gpt2` loads it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # transformers 5 gives the *TokenizerFast names only through its lazy module's fallback, which
    # its type information does not declare; transformers 4 defines the class itself.
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]

    bpe = Tokenizer(models.BPE.from_file(str(tokenizer_folder / "encoder.json"), str(tokenizer_folder / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return GPT2TokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=BOS, unk_token=BOS, model_max_length=1024)


def install_in_hub_cache(hf_home: Path, tokenizer_folder: Path, repo_id: str = "gpt2", seed: int = 0) -> Path:
    """Build the stand-in as the cached snapshot of hub model `repo_id` under `hf_home`; return
    the snapshot folder. Point `HF_HOME` at `hf_home` to load it as `on "gpt2"`."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = build_gpt2_standin(repo / "snapshots" / STANDIN_COMMIT, tokenizer_folder, seed)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(STANDIN_COMMIT, encoding="utf-8")
    return snapshot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with encoder.json and vocab.bpe")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--hf-home", type=Path, help="install as the cached hub model 'gpt2' under this HF_HOME")
    target.add_argument("--out", type=Path, help="write a plain model folder here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.hf_home:
        print(install_in_hub_cache(args.hf_home, args.tokenizer, seed=args.seed))
    else:
        print(build_gpt2_standin(args.out, args.tokenizer, args.seed))


if __name__ == "__main__":
    main()
