"""Downloading a hub model's files, with a bound on a download that stops moving.

huggingface_hub's timeouts apply per request and per attempt, and it retries: a hub that answers
its API and then stalls the file transfer kept `verify` waiting for minutes. Here the download
runs in a daemon thread while the caller watches the repo's blob folder in the Hugging Face
cache: when no byte arrives for `CIRCUITLANG_DOWNLOAD_STALL_S` seconds (60 by default), it gives
up with a ModelError (exit 3) that says so. A slow download that keeps moving is never cut off.

Only the files a model load reads are fetched: the config, the tokenizer's files, and the weights
in one format (safetensors when the repo has them, else PyTorch's .bin), with their index.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from pathlib import Path

from circuitlang.errors import ModelError
from circuitlang.ir import models as ir

STALL_VARIABLE = "CIRCUITLANG_DOWNLOAD_STALL_S"
DEFAULT_STALL_S = 60.0
POLL_S = 0.5
CONFIG_AND_TOKENIZER = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.model",
    "*.tiktoken",
)


def download(repo: str, model: ir.ModelRef) -> str:
    """The local snapshot folder of `repo`, downloaded from the hub (`HF_ENDPOINT` honoured)."""
    from huggingface_hub import constants

    result: list[str] = []
    failure: list[BaseException] = []
    thread = threading.Thread(target=_fetch, args=(repo, result, failure), daemon=True)
    thread.start()
    blobs = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "blobs"
    stall = stall_seconds()
    size, moved = _bytes_in(blobs), time.monotonic()
    while thread.is_alive():
        thread.join(POLL_S)
        now_size = _bytes_in(blobs)
        if now_size != size:
            size, moved = now_size, time.monotonic()
        elif time.monotonic() - moved > stall:
            raise ModelError(
                f"the download of '{repo}' from {constants.ENDPOINT} stalled: no data for {stall:g} s ({size:,} bytes so far)",
                model.span,
                f"check the network or the hub's status and run again; {STALL_VARIABLE} sets how long to wait (default {DEFAULT_STALL_S:g} s)",
            )
    if failure:
        error = failure[0]
        raise ModelError(f"the download of '{repo}' failed: {type(error).__name__}: {error}", model.span, "check the network and run again")
    return result[0]


def _fetch(repo: str, result: list[str], failure: list[BaseException]) -> None:
    """One file after another in this (daemon) thread: snapshot_download's worker pool would be
    joined when the interpreter exits, so a stalled transfer would hold the process after the
    stall was reported."""
    from huggingface_hub import HfApi, hf_hub_download

    try:
        info = HfApi().model_info(repo)
        names = [sibling.rfilename for sibling in info.siblings or []]
        paths = [hf_hub_download(repo, name) for name in files_to_fetch(names)]  # "main": its ref is recorded for offline runs
        result.append(str(Path(paths[0]).parent))
    except BaseException as error:  # reported by the watching thread
        failure.append(error)


def files_to_fetch(names: list[str]) -> list[str]:
    """The repo's files a model load reads: config and tokenizer, and one format of weights."""
    safetensors = [n for n in names if n.endswith(".safetensors") or n == "model.safetensors.index.json"]
    weights = safetensors or [n for n in names if fnmatch.fnmatch(n, "pytorch_model*.bin") or n == "pytorch_model.bin.index.json"]
    tokenizer = [n for n in names if "/" not in n and any(fnmatch.fnmatch(n, pattern) for pattern in CONFIG_AND_TOKENIZER)]
    return sorted(set(tokenizer) | set(n for n in weights if "/" not in n))


def stall_seconds() -> float:
    try:
        value = float(os.environ.get(STALL_VARIABLE, DEFAULT_STALL_S))
    except ValueError:
        return DEFAULT_STALL_S
    return value if value > 0 else DEFAULT_STALL_S


def _bytes_in(folder: Path) -> int:
    """Bytes of every file in the blob folder, the partial ones (`*.incomplete`) included."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError:
        return 0
    return total
