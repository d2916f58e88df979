"""Model loading through TransformerLens 4 (`TransformerBridge.boot_transformers`).

A spec's model is a shipped organism, a local HF folder, or a hub name. A hub name loads as in
TransformerLens: its official name (aliases resolved at check time, `ir.hub`) goes to
`boot_transformers`, which downloads into the Hugging Face cache or reuses it. Before that, one
short probe of the hub's API decides the way: offline (`HF_HUB_OFFLINE`) or with the hub out of
reach, the model loads from the cache or fails at once with a way forward, instead of retrying
for a minute; a repo the hub does not have fails with the nearest known names. Every loaded model
records its identity: the name and a hash of its weights.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from circuitlang.errors import ModelError
from circuitlang.ir import models as ir
from circuitlang.ir.shapes import unknown_hub_hint

# Seconds the hub probe waits: long enough for a slow link, short enough that a machine whose
# network drops packets (no quick refusal) still fails within five seconds of the command starting.
PROBE_TIMEOUT_S = 2.0

HubAnswer = Literal["exists", "missing", "gated", "unreachable"]


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
    except Exception as error:  # noqa: BLE001 - whatever the loaders raise, the cause is the model's files
        # Missing or unreadable files, weights or a config.json that transformers cannot make sense
        # of (a truncated safetensors file, an inconsistent config): a model error (exit 3), named.
        raise ModelError(_load_failed_message(model, error), model.span, _load_failed_hint(model)) from error
    bridge.eval()
    _check_every_layer_has_weights(location, bridge.cfg.n_layers, model)
    tokenizer = bridge.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"the tokenizer of '{model.name}' is not a fast tokenizer", model.span,
                         "circuitlang needs character offsets to place slots; save a tokenizer.json with the model")
    return LoadedModel(bridge, tokenizer, _identity(model, bridge), torch.device(device))


def _hub_location(model: ir.ModelRef) -> str:
    """What `boot_transformers` gets for a hub model: the repo id when the hub answers (it downloads
    or reuses the cache, as TransformerLens does), else the cached snapshot folder, found without
    network, so that nothing waits on a hub that cannot answer."""
    repo = model.hub_id or model.name
    if hub_offline():
        return _cached_snapshot(model, repo, "HF_HUB_OFFLINE is set")
    answer, detail = probe_hub(repo)
    if answer == "unreachable":
        return _cached_snapshot(model, repo, f"the hub cannot be reached ({detail})")
    if answer == "missing":
        raise ModelError(f"the Hugging Face hub has no model '{repo}' ({detail})", model.span, unknown_hub_hint(repo))
    if answer == "gated":
        raise ModelError(f"'{repo}' is gated on the Hugging Face hub, and this machine has no access to it", model.span,
                         "accept the model's licence on its hub page, then log in (hf auth login) or set HF_TOKEN")
    return repo


def hub_offline() -> bool:
    """Whether Hugging Face offline mode is on, as huggingface_hub read it at import or as the
    environment says now (a process may set it after importing huggingface_hub)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def probe_hub(repo: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[HubAnswer, str]:
    """One request to the hub's model API (`HF_ENDPOINT` honoured): does `repo` exist, and can this
    machine reach the hub at all? Returns the answer and a detail for messages. The request runs in
    a daemon thread joined with `timeout`, because the HTTP client's own timeouts apply per phase
    and per attempt (a silent server took 5 s with a 2 s timeout)."""
    from huggingface_hub import constants

    answers: list[tuple[HubAnswer, str]] = []
    thread = threading.Thread(target=lambda: answers.append(_ask_hub(repo, constants.ENDPOINT, timeout)), daemon=True)
    thread.start()
    thread.join(timeout)
    return answers[0] if answers else ("unreachable", f"{constants.ENDPOINT}: no answer within {timeout:g} s")


def _ask_hub(repo: str, endpoint: str, timeout: float) -> tuple[HubAnswer, str]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi(endpoint=endpoint).model_info(repo, timeout=timeout)
    except GatedRepoError:
        return "gated", endpoint
    except RepositoryNotFoundError:
        return "missing", f"{endpoint}/{repo}"
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "no status"
        return "unreachable", f"{endpoint} answered {status}"
    except Exception as error:  # any failure to get an answer (DNS, refused, timeout, proxy) means "no hub"
        return "unreachable", f"{endpoint}: {type(error).__name__}"
    return "exists", endpoint


def _cached_snapshot(model: ir.ModelRef, repo: str, reason: str) -> str:
    """The cached snapshot folder of `repo`, found without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        raise ModelError(f"'{model.name}' is not in the local Hugging Face cache, and {reason}", model.span,
                         _not_cached_hint(model)) from error


LAYER_KEY = re.compile(r"(?:^|\.)(?:h|layers|blocks|layer)\.(\d+)\.")  # the layer index in a weight's name


def _check_every_layer_has_weights(location: str, n_layers: int, model: ir.ModelRef) -> None:
    """A config.json that claims more layers than the weights hold loads without complaint, the extra
    layers randomly initialised: every number would be silently wrong. Compare the config's layer
    count with the layers named in the folder's safetensors files (other formats are not read)."""
    files = sorted(Path(location).glob("*.safetensors")) if Path(location).is_dir() else []
    if not files:
        return
    from safetensors import safe_open

    stored: set[int] = set()
    for file in files:
        with safe_open(str(file), "pt") as weights:
            stored |= {int(match.group(1)) for key in weights.keys() if (match := LAYER_KEY.search(key))}
    missing = sorted(set(range(n_layers)) - stored)
    if stored and missing:
        raise ModelError(f"the model's config.json has {n_layers} layers, but its weights hold none for layer(s) "
                         f"{', '.join(map(str, missing))}: they would run with random weights", model.span,
                         "fix num_hidden_layers / n_layer in config.json, or point at the complete weights")


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


def _load_failed_message(model: ir.ModelRef, error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    if model.source == "hub":
        return f"'{model.name}' could not be downloaded or loaded from the Hugging Face hub: {reason}"
    return f"cannot load the model in {model.path}: {reason}"


def _load_failed_hint(model: ir.ModelRef) -> str:
    if model.source == "hub":
        return _not_cached_hint(model)
    return "the folder needs config.json, the weights and a tokenizer (tokenizer.json) in Hugging Face format"


def _not_cached_hint(model: ir.ModelRef) -> str:
    return (f"run once with network (and HF_HUB_OFFLINE unset) to download it into the cache, point the spec at a "
            f'local copy (circuit ... on "./models/{model.name}"), or use a shipped organism (on "organism:NAME")')


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
