"""Model loading through TransformerLens 4 (`TransformerBridge.boot_transformers`).

A spec's model is a shipped organism, a local HF folder, or a hub name. A hub name is looked up in
the local Hugging Face cache only (no network) unless `CIRCUITLANG_ALLOW_DOWNLOAD=1` is set, so a
machine without network fails at once with a message saying how to point circuitlang at local
weights, instead of retrying for a minute. Every loaded model records its identity: the name and a
hash of its weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from circuitlang.errors import ModelError
from circuitlang.ir import models as ir

ALLOW_DOWNLOAD_VARIABLE = "CIRCUITLANG_ALLOW_DOWNLOAD"


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    source: str
    weights_sha256: str
    n_layers: int
    n_heads: int
    d_model: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LoadedModel:
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any  # a HF PreTrainedTokenizerFast (offsets are needed to place slots)
    identity: ModelIdentity
    device: torch.device

    @property
    def prepends_bos(self) -> bool:
        return bool(self.bridge.cfg.default_prepend_bos)


def load_model(model: ir.ModelRef, device: str = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load the spec's model; raise `ModelError` with a way forward when that cannot be done."""
    _check_device(device, model)
    location = model.path or _hub_location(model)
    try:
        bridge = _boot(location, device, dtype)
    except OSError as error:
        raise ModelError(_not_found_message(model), model.span, _not_found_hint(model)) from error
    bridge.eval()
    tokenizer = bridge.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"the tokenizer of '{model.name}' is not a fast tokenizer", model.span,
                         "circuitlang needs character offsets to place slots; save a tokenizer.json with the model")
    return LoadedModel(bridge, tokenizer, _identity(model, bridge), torch.device(device))


def _hub_location(model: ir.ModelRef) -> str:
    """The cached snapshot folder of a hub model, found without touching the network; the bare
    name (which lets transformers download) only when downloads are allowed."""
    if os.environ.get(ALLOW_DOWNLOAD_VARIABLE) == "1":
        return model.name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(model.name, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        raise ModelError(_not_found_message(model), model.span, _not_found_hint(model)) from error


def _boot(location: str, device: str, dtype: torch.dtype) -> Any:
    from transformer_lens.model_bridge import TransformerBridge  # heavy import, only when a model is needed

    return TransformerBridge.boot_transformers(location, device=device, dtype=dtype)


def _check_device(device: str, model: ir.ModelRef) -> None:
    try:
        torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device '{device}'", model.span, "use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' was asked for, but torch sees no CUDA device", model.span,
                         "run with --device cpu, or on a machine with a GPU and a CUDA build of torch")


def _not_found_message(model: ir.ModelRef) -> str:
    if model.source == "hub":
        return f"'{model.name}' is not in the local Hugging Face cache, and circuitlang does not download by default"
    return f"cannot load the model in {model.path}"


def _not_found_hint(model: ir.ModelRef) -> str:
    if model.source == "hub":
        return (f'point the spec at a local copy (circuit ... on "./models/{model.name}"), use a shipped '
                f'organism (on "organism:NAME"), or allow the download once with {ALLOW_DOWNLOAD_VARIABLE}=1')
    return "the folder needs config.json, the weights and a tokenizer (tokenizer.json) in Hugging Face format"


def _identity(model: ir.ModelRef, bridge: Any) -> ModelIdentity:
    cfg = bridge.cfg
    return ModelIdentity(model.name, model.source, weights_hash(bridge.original_model), cfg.n_layers, cfg.n_heads,
                         cfg.d_model)


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 over parameter names, shapes and bytes, in name order: the same weights give the
    same hash whatever the device or file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
