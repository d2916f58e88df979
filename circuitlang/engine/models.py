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

import copy
import hashlib
import os
import re
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import torch

from circuitlang.engine.hub_download import download
from circuitlang.engine.family import Family
from circuitlang.engine.model_record import ModelIdentity
from circuitlang.engine.placement import Placement, PlacementError, check_device
from circuitlang.errors import ModelError, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.model_folder import FolderState, check_model_folder, model_files_root
from circuitlang.ir.shapes import model_shape, unknown_hub_hint

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Seconds the hub probe waits: long enough for a slow link, short enough that a machine whose
# network drops packets (no quick refusal) still fails within five seconds of the command starting.
PROBE_TIMEOUT_S = 2.0

HubAnswer = Literal["exists", "missing", "gated", "unreachable"]


@dataclass(frozen=True)
class LoadedModel:
    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    tokenizer: Any  # a HF PreTrainedTokenizerFast (offsets are needed to place slots)
    identity: ModelIdentity
    device: torch.device

    @property
    def prepends_bos(self) -> bool:
        return bool(self.bridge.cfg.default_prepend_bos)

    @cached_property
    def family(self) -> Family:
        return Family.of(self.bridge)

    @cached_property
    def attention(self) -> "AttentionWeights":
        """Every layer's attention weights, read from each block's own parameters."""
        return AttentionWeights(self.bridge)


class AttentionWeights:
    """Per layer and head, indexed as TransformerLens' stacked weights are: W_Q [L, H, D, dh],
    W_O [L, H, dh, D], W_K/W_V [L, H_kv, D, dh] (H_kv < H with grouped-query attention), biases
    [L, H or H_kv, dh]. `W_Q[layer]` is the block's own W_Q: a view of its parameters, no copy.
    (The bridge's stacked W_Q, W_K... copy every block's weights on each access: 113 MB for the
    four of GPT-2 small, more than one cached forward of a small prompt set.) Projections without
    a bias (Llama, Gemma) get zeros."""

    def __init__(self, bridge: Any) -> None:
        self.W_Q, self.W_K, self.W_V, self.W_O = (_PerLayer(bridge, name) for name in ("W_Q", "W_K", "W_V", "W_O"))
        self.b_Q, self.b_K, self.b_V = (
            _PerLayer(bridge, name, weight) for name, weight in (("b_Q", self.W_Q), ("b_K", self.W_K), ("b_V", self.W_V))
        )

    def input_weights(self, channel: str, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight [H, D, dh] and bias [H, dh] that make a layer's q, k or v from its input (k and
        v: one per key/value head)."""
        weight = {"q": self.W_Q, "k": self.W_K, "v": self.W_V}[channel]
        bias = {"q": self.b_Q, "k": self.b_K, "v": self.b_V}[channel]
        return weight[layer], bias[layer]


class _PerLayer:
    """One attention weight of every layer: `[layer]` or `[layer, head...]` reads the block's
    property (kept: a view costs nothing). `weight_of_bias`: for a bias, its weight, whose shape
    gives the zeros of a projection without one.

    A layer whose weights accelerate offloads (to host memory or disk: `Placement`) is read anew
    on each use, under `onloaded`, and not kept: kept, every layer's attention weights would stay
    in memory, which is what offloading is there to avoid; a read costs what the layer's next
    forward costs anyway (its weights brought in once more)."""

    def __init__(self, bridge: Any, name: str, weight_of_bias: "_PerLayer | None" = None) -> None:
        self._bridge, self._name, self._weight = bridge, name, weight_of_bias
        self._layers: dict[int, torch.Tensor] = {}

    def __getitem__(self, index: int | tuple) -> torch.Tensor:
        layer, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        tensor = self._layers.get(layer)
        if tensor is None:
            attention = Family.attention(Family.blocks(self._bridge)[layer])
            if offloaded(attention):
                with onloaded(attention):
                    tensor = self._read(layer)
            else:
                tensor = self._layers[layer] = self._read(layer)
        return tensor[rest] if rest else tensor

    def _read(self, layer: int) -> torch.Tensor:
        tensor = getattr(Family.attention(Family.blocks(self._bridge)[layer]), self._name, None)
        if tensor is None and self._weight is not None:  # a projection without a bias
            weight = self._weight[layer]
            return torch.zeros(weight.shape[0], weight.shape[2], dtype=weight.dtype, device=weight.device)
        if tensor is None:
            raise ValueError(f"the model's attention in layer {layer} has no {self._name}")
        return tensor.detach()


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A precision as torch names it: "float32", "float16", "bfloat16" (as `verify --dtype`), or a
    torch.dtype itself; the Python API takes either without importing torch."""
    if isinstance(dtype, torch.dtype):
        return dtype
    named = getattr(torch, str(dtype), None)
    if not isinstance(named, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch precision: write float32, float16 or bfloat16")
    return named


def load_model(model: ir.ModelRef, device: str = "cpu", dtype: torch.dtype = torch.float32, placement: Placement | None = None) -> LoadedModel:
    """Load the spec's model; raise `ModelError` with a way forward when that cannot be done.
    `placement`: a device map for accelerate (engine.placement), in place of `device`."""
    _check_device(device, model)
    _check_placement(device, placement, model)
    location = model.path or _hub_location(model)
    checked = _check_folder_files(location, model)
    _check_folder_has_a_tokenizer(location, model)
    try:
        bridge = _boot(location, device, dtype, placement)
        _check_unchanged(checked, model)
        _check_weights_match_config(location, model)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the loaders raise, the cause is the model's files
        _check_unchanged(checked, model)  # a file swapped during the load: say so, not what the load said of it
        # Missing or unreadable files, weights or a config.json that transformers cannot make sense
        # of (a truncated safetensors file, an inconsistent config): a model error (exit 3), named.
        raise ModelError(_load_failed_message(model, error), model.span, _load_failed_hint(model)) from error
    bridge.eval()
    tokenizer = bridge.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"the tokenizer of '{model.name}' is not a fast tokenizer",
            model.span,
            "circuitlang needs character offsets to place slots; save a tokenizer.json with the model",
        )
    return LoadedModel(bridge, tokenizer, _identity(model, bridge), torch.device(device) if placement is None else input_device(bridge))


def placed_device(placement: Placement) -> str:
    """Where a load with `placement` will compute, as far as it is known before the load (the
    device the result cache's keys name): `Placement.computed_on`."""
    return placement.computed_on()


def input_device(bridge: Any) -> torch.device:
    """Where a placed model's inputs go: the device its embedding runs on (accelerate's execution
    device for an offloaded embedding, whose parameters wait on the meta device)."""
    embedding = bridge.original_model.get_input_embeddings()
    for module in embedding.modules():
        hook = getattr(module, "_hf_hook", None)
        execution = getattr(hook, "execution_device", None)
        if execution is not None and torch.device(execution).type != "meta":
            return torch.device(execution)
    device = next(embedding.parameters()).device
    return torch.device("cpu") if device.type == "meta" else device


def _offload_hooked(module: torch.nn.Module) -> bool:
    """Whether accelerate keeps the module's own weights elsewhere between its forwards."""
    return bool(getattr(getattr(module, "_hf_hook", None), "offload", False))


def offloaded(module: torch.nn.Module) -> bool:
    """Whether some weight of the module (or of a module in it) is offloaded by accelerate: kept
    on the meta device between forwards, its values in host memory or on disk."""
    return any(_offload_hooked(m) for m in module.modules())


@contextmanager
def onloaded(*modules: torch.nn.Module) -> Iterator[None]:
    """The offloaded weights of `modules` and of every module in them on their execution device
    for the duration, so that code reading a weight directly (`attn.W_O`, `bridge.W_U`) reads its
    values; a tensor read inside stays valid after. Without offloading (every load without a
    placement, and a split over GPUs) it hooks nothing and costs a walk over the modules."""
    hooked = [m for module in modules for m in module.modules() if _offload_hooked(m)]
    if not hooked:
        yield
        return
    from accelerate.utils import align_module_device  # type: ignore[import-untyped]

    with ExitStack() as stack:
        for module in dict.fromkeys(hooked):
            stack.enter_context(align_module_device(module))
        yield


def execution_device(module: torch.nn.Module) -> torch.device:
    """The device a module computes on: its accelerate hook's, else its first parameter's."""
    for inner in module.modules():
        execution = getattr(getattr(inner, "_hf_hook", None), "execution_device", None)
        if execution is not None:
            return torch.device(execution)
    return next(module.parameters()).device


def unembedding(bridge: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_U [D, vocab] and b_U [vocab] (None where the bridge has none), read where accelerate
    offloads them too."""
    with onloaded(Family.unembedding(bridge)):
        return bridge.W_U, getattr(bridge, "b_U", None)


def embedding_matrix(bridge: Any) -> torch.Tensor:
    """W_E [vocab, D], read where accelerate offloads it too."""
    with onloaded(Family.embedding(bridge)):
        return bridge.W_E


def load_given_model(model: ir.ModelRef, given: Any, tokenizer: Any = None) -> LoadedModel:
    """A model object the caller loaded, run in place of the spec's files: a TransformerBridge, or
    a Hugging Face model (a `transformers` PreTrainedModel, fine-tuned or edited in a notebook),
    on its own device and in its own dtype. A Hugging Face model is copied, then wrapped by
    `boot_transformers(hf_model=...)`: the bridge rebuilds the modules it wraps in place, and the
    copy keeps the caller's object as it was and the weights hashed the weights that run. The
    tokenizer: `tokenizer`, else a bridge's own, else the one the spec's `on` clause names (its
    folder, or the hub's cache). The spec's model gives the shapes the object must have; its
    identity hashes the object's weights as they are now (`weights_hash`)."""
    bridge = given if _is_bridge(given) else _boot_given(model, given, tokenizer)
    tokenizer = tokenizer or bridge.tokenizer
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            "the model object has no fast tokenizer" if tokenizer is not None else "the model object has no tokenizer",
            model.span,
            "pass tokenizer= (a transformers PreTrainedTokenizerFast: circuitlang needs character offsets to place slots)",
        )
    _check_shape(model, Family.of(bridge))
    bridge.eval()
    device = torch.device(next(bridge.original_model.parameters()).device)
    cfg = bridge.cfg
    identity = ModelIdentity(model.name, "object", weights_hash(bridge.original_model), cfg.n_layers, cfg.n_heads, cfg.d_model)
    return LoadedModel(bridge, tokenizer, identity, device)


def _is_bridge(given: Any) -> bool:
    from transformer_lens.model_bridge import TransformerBridge

    return isinstance(given, TransformerBridge)


def _boot_given(model: ir.ModelRef, given: Any, tokenizer: Any) -> Any:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedModel

    if not isinstance(given, PreTrainedModel):
        raise TypeError(f"model= takes a transformers PreTrainedModel or a TransformerBridge, not {type(given).__name__}")
    parameter = next(given.parameters())
    given = copy.deepcopy(given)
    try:  # the tokenizer, when not given, is the spec's model's: its folder or hub name
        return TransformerBridge.boot_transformers(
            model.path or model.hub_id or model.name, hf_model=given, tokenizer=tokenizer, device=parameter.device, dtype=parameter.dtype
        )
    except Exception as error:  # noqa: BLE001 - an architecture TransformerLens lacks, a tokenizer not found
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelError(
            f"cannot run the given {type(given).__name__} as '{model.name}': {type(error).__name__}: {first_line}",
            model.span,
            "pass tokenizer= when the spec's model has none at hand, and a model of an architecture TransformerLens supports",
        ) from error


def _check_shape(model: ir.ModelRef, family: Family) -> None:
    """The spec's shapes (its `on` clause: the folder's config.json, or the hub's known shapes)
    against the given model's: a circuit's layers and heads mean nothing on another shape."""
    expected = model_shape(model)
    if expected is None or (expected.n_layers, expected.n_heads) == (family.n_layers, family.n_heads):
        return
    raise ModelError(
        f"the given model has {family.n_layers} layers of {family.n_heads} heads, but the spec's model '{model.name}' "
        f"has {expected.n_layers} layers of {expected.n_heads} heads (from {expected.origin})",
        model.span,
        "pass the model the spec's `on` clause names (or an edited copy of it), or change the `on` clause",
    )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def _check_folder_has_a_tokenizer(location: str, model: ir.ModelRef) -> None:
    """A folder without tokenizer files loads with whatever tokenizer transformers finds by the
    config's name (the cached `gpt2`'s, say): prompts would be split by another model's vocabulary."""
    folder = Path(location)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"the model folder {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
            model.span,
            "save the model's tokenizer into the folder (tokenizer.save_pretrained(folder))",
        )


def _check_folder_files(location: str, model: ir.ModelRef) -> FolderState | None:
    """Every file a load may read, checked before the load (ir/model_folder.py): regular files,
    inside the folder they may come from, within their limits."""
    folder = Path(location)
    if not folder.is_dir():
        return None
    return check_model_folder(folder, model_files_root(model, folder), model.span)


def _check_unchanged(state: FolderState | None, model: ir.ModelRef) -> None:
    """transformers reads the folder's files by path, after they were checked: a file replaced in
    between (by a link out of the folder, say) is refused, whatever the load made of it."""
    changed = state.changed() if state is not None else []
    if changed:
        raise ModelError(
            f"the model folder {state.folder if state else ''} changed while it was loaded: {', '.join(changed)}",
            model.span,
            "load from a folder nothing else writes to while circuitlang runs",
        )


def _hub_location(model: ir.ModelRef) -> str:
    """What `boot_transformers` gets for a hub model: a local snapshot folder, downloaded (or
    brought up to date) when the hub answers, with a bound on a download that stalls
    (engine.hub_download), else the cached one, found without network, so that nothing waits on a
    hub that cannot answer."""
    repo = model.hub_id or model.name
    if hub_offline():
        return _cached_snapshot(model, repo, "HF_HUB_OFFLINE is set")
    answer, detail = probe_hub(repo)
    if answer == "unreachable":
        return _cached_snapshot(model, repo, f"the hub cannot be reached ({detail})")
    if answer == "missing":  # the spec names nothing the hub has: the spec's to fix (exit 2)
        raise SpecError(
            f"the Hugging Face hub has no model '{repo}' ({detail})",
            model.span,
            unknown_hub_hint(repo) + "; a private repo needs a login (hf auth login, or HF_TOKEN)",
        )
    if answer == "gated":
        raise ModelError(
            f"'{repo}' is gated on the Hugging Face hub, and this machine has no access to it",
            model.span,
            "accept the model's licence on its hub page, then log in (hf auth login) or set HF_TOKEN",
        )
    return download(repo, model)


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
        raise ModelError(f"'{model.name}' is not in the local Hugging Face cache, and {reason}", model.span, _not_cached_hint(model)) from error


LAYER_KEY = re.compile(r"(?:^|\.)(?:h|layers|blocks|layer)\.(\d+)\.")  # the layer index in a weight's name


def _check_weights_match_config(location: str, model: ir.ModelRef) -> None:
    """transformers loads a folder whose config.json disagrees with its weights with a warning at
    most: tensors the config needs but the files lack run randomly initialised, tensors the files
    hold but the config has no place for are dropped. Either way every number would be silently
    wrong, so compare the tensors the config defines (the model built on the meta device: names
    and shapes, no memory) with the names and shapes in the weight files."""
    stored = _stored_shapes(location)
    if not stored:
        return
    skeleton = _skeleton(location)
    loaded = _as_loaded(skeleton, stored)
    if loaded is None:
        return
    prefix = skeleton.base_model_prefix + "."
    stored = {_without(prefix, name): shape for name, shape in loaded.items()}
    expected = {_without(prefix, name): tuple(t.shape) for name, t in skeleton.state_dict().items()}
    tied = {_without(prefix, name) for name in _tied_names(skeleton)}
    missing = sorted(set(expected) - set(stored) - tied)
    extra = sorted(name for name in set(stored) - set(expected) if not _ignored_on_load(skeleton, name))
    wrong = sorted(name for name in set(stored) & set(expected) if stored[name] != expected[name])
    if missing or extra or wrong:
        raise ModelError(
            _disagreement(expected, stored, missing, extra, wrong),
            model.span,
            "make config.json describe these weights (layers, heads, widths), or point at the weights this config was saved with",
        )


def _skeleton(location: str) -> PreTrainedModel:
    """The model config.json describes, on the meta device: every tensor's name and shape, no data."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(location))


def _as_loaded(skeleton: PreTrainedModel, stored: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]] | None:
    """The checkpoint's tensor names as transformers renames them when it loads them (GPT-NeoX's
    `embed_out` is `lm_head` since transformers 5). None when the model's conversions do more than
    rename (tensors merged or split on load): names cannot then be compared, and the check is skipped."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # transformers 4 renames nothing it does not also save that way
        return stored
    transforms = get_model_conversion_mapping(skeleton)
    if not all(isinstance(t, WeightRenaming) for t in transforms):
        return None
    renamed = {}
    for name, shape in stored.items():
        for transform in transforms:
            for source in transform.source_patterns:
                name = re.sub(source, transform.target_patterns[0], name)
        renamed[name] = shape
    return renamed


def _tied_names(skeleton: PreTrainedModel) -> set[str]:
    """Tensors a checkpoint may leave out because they share another's (tied embeddings)."""
    tied = getattr(skeleton, "all_tied_weights_keys", None) or getattr(skeleton, "_tied_weights_keys", None) or {}
    return set(tied)


def _stored_shapes(location: str) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    folder = Path(location) if Path(location).is_dir() else _downloaded_snapshot(location)
    files = sorted(folder.glob("*.safetensors")) if folder else []
    if folder and not files:
        return _pickled_shapes(sorted(folder.glob("pytorch_model*.bin")))

    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        with safe_open(str(file), "pt") as weights:
            shapes |= {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    return shapes


def _pickled_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Shapes in PyTorch checkpoints, read as transformers reads them: `weights_only`, so the file
    can hold tensors and nothing that runs code; mapped, not loaded."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        shapes |= {key: tuple(tensor.shape) for key, tensor in state.items() if isinstance(tensor, torch.Tensor)}
    return shapes


def _downloaded_snapshot(repo: str) -> Path | None:
    """The cache folder `boot_transformers` just downloaded `repo` into (no network)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001 - no folder to compare with: the check is skipped, as for other formats
        return None


def _without(prefix: str, name: str) -> str:
    """Checkpoints name tensors with or without the base model's prefix (`transformer.`)."""
    return name[len(prefix) :] if name.startswith(prefix) else name


def _ignored_on_load(skeleton: PreTrainedModel, name: str) -> bool:
    """Tensors the architecture drops on purpose (GPT-2's saved causal masks `attn.bias`)."""
    patterns = getattr(skeleton, "_keys_to_ignore_on_load_unexpected", None) or ()
    return any(re.search(pattern, name) for pattern in patterns)


def _disagreement(expected: dict, stored: dict, missing: list[str], extra: list[str], wrong: list[str]) -> str:
    config_layers = _layers(expected)
    stored_layers = _layers(stored)
    if config_layers != stored_layers and not wrong:  # the commonest case: a layer count edited by hand
        absent = sorted(config_layers - stored_layers)
        if absent:
            return (
                f"the model's config.json has {len(config_layers)} layers, but its weights hold none for layer(s) "
                f"{', '.join(map(str, absent))}: they would run with random weights"
            )
        return (
            f"the model's config.json has {len(config_layers)} layers, but its weights hold {len(stored_layers)}: "
            "the rest would be dropped without a word"
        )
    parts = [
        f"{len(missing)} tensor(s) the config needs are not in the weights (e.g. {missing[0]})" if missing else "",
        f"{len(extra)} tensor(s) in the weights have no place in the config (e.g. {extra[0]})" if extra else "",
        f"{len(wrong)} tensor(s) have another shape in the weights (e.g. {wrong[0]}: config {expected[wrong[0]]}, weights {stored[wrong[0]]})"
        if wrong
        else "",
    ]
    return "the model's config.json disagrees with its weights: " + "; ".join(p for p in parts if p)


def _layers(shapes: dict) -> set[int]:
    return {int(match.group(1)) for name in shapes if (match := LAYER_KEY.search(name))}


def _boot(location: str, device: str, dtype: torch.dtype, placement: Placement | None = None) -> Any:
    from transformer_lens.model_bridge import TransformerBridge  # heavy import, only when a model is needed
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its "Loading weights" bar on every load is noise in CI logs
    if placement is None:
        return TransformerBridge.boot_transformers(location, device=device, dtype=dtype)
    bridge = TransformerBridge.boot_transformers(location, dtype=dtype, **placement.boot_kwargs())
    if str(bridge.cfg.device) == "meta":  # the embedding's parameters wait on meta: it runs on its hook's device
        bridge.cfg.device = str(input_device(bridge))
    return bridge


def _check_placement(device: str, placement: Placement | None, model: ir.ModelRef) -> None:
    """A device map replaces `device`; the GPUs its budgets name must exist; an offload folder
    must be a folder (accelerate creates a missing one)."""
    if placement is None:
        return
    try:
        check_device(device, placement)
    except PlacementError as error:
        raise ModelError(str(error), model.span, "pass either a device or a device map") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [gpu for gpu in placement.gpus() if gpu >= count]
    if missing:
        raise ModelError(
            f"--max-memory names GPU {missing[0]}, but torch sees {count} CUDA device(s)",
            model.span,
            "name the GPUs this machine has (numbered from 0), or cpu and disk alone",
        )
    if placement.offload_dir is not None and Path(placement.offload_dir).exists() and not Path(placement.offload_dir).is_dir():
        raise ModelError(f"the offload folder {placement.offload_dir} is not a folder", model.span, "give --offload-dir a folder")


def _check_device(device: str, model: ir.ModelRef) -> None:
    try:
        torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device '{device}'", model.span, "use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"device '{device}' was asked for, but torch sees no CUDA device",
            model.span,
            "run with --device cpu, or on a machine with a GPU and a CUDA build of torch",
        )


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
    return (
        f"run once with network (and HF_HUB_OFFLINE unset) to download it into the cache, point the spec at a "
        f'local copy (circuit ... on "./models/{model.name}"), or use a shipped organism (on "organism:NAME")'
    )


def _identity(model: ir.ModelRef, bridge: Any) -> ModelIdentity:
    cfg = bridge.cfg
    return ModelIdentity(model.name, model.source, weights_hash(bridge.original_model), cfg.n_layers, cfg.n_heads, cfg.d_model)


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 over parameter names, shapes and bytes, in name order: the same weights give the
    same hash whatever the device, the placement or the file format. It keys the result cache, so
    it is computed from the tensors as loaded (what runs), never from file metadata.

    A name whose tensor is the very view an earlier name's is (tied embeddings, and the bridge's
    several names for each weight: GPT-2 small's state dict names its 555 MB three times) adds
    that earlier name instead of the bytes again: 0.6 s instead of 2 s for GPT-2 small. A weight
    accelerate offloads waits on the meta device (no data, no address): its names are told apart
    by the parameter object, the same for all of them as in a plain load, and its bytes are read
    from where accelerate keeps them, one module's weights at a time."""
    digest = hashlib.sha256()
    first_name: dict[object, str] = {}
    offloaded_values = _Offloaded(module)
    tied = _tied_weights(module)
    for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
        digest.update(f"{len(name)}:{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        keys: list[object] = [id(tensor)]  # the state dict holds every tensor: ids are not reused
        if not tensor.is_meta:
            keys.append((tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride()))
        elif (plain := name.replace("._original_component", "")) in tied:  # offloaded apart, one tensor when loaded
            keys.append(("tied", tied[plain]))
        earlier = next((first_name[key] for key in keys if key in first_name), None)
        if earlier is not None:
            digest.update(f"same as {len(earlier)}:{earlier}\n".encode())
            continue
        first_name.update((key, name) for key in keys)
        held: torch.Tensor = offloaded_values.value(name) if tensor.is_meta else tensor
        data = held.detach().to("cpu").contiguous()
        digest.update(b"bytes:")
        digest.update(data.reshape(-1).view(torch.uint8).numpy().data)  # the buffer itself: no copy
    return digest.hexdigest()


def parameter_count(module: torch.nn.Module) -> int:
    """The module's parameters, each counted once: a tied weight accelerate offloads as two meta
    parameters is one, as in a plain load."""
    tied = _tied_weights(module)
    seen: set[object] = set()
    total = 0
    for name, parameter in module.named_parameters():
        plain = name.replace("._original_component", "")
        key = ("tied", tied[plain]) if parameter.is_meta and plain in tied else id(parameter)
        if key not in seen:
            seen.add(key)
            total += parameter.numel()
    return total


def _tied_weights(module: torch.nn.Module) -> dict[str, str]:
    """Each tied weight's name (a tied one and the one it ties to) -> the name it ties to, as
    transformers records them ({"lm_head.weight": "transformer.wte.weight"}). accelerate offloads
    the two apart, as two meta parameters; a plain load holds one."""
    recorded = getattr(module, "all_tied_weights_keys", None) or getattr(module, "_tied_weights_keys", None)
    if not isinstance(recorded, dict):
        return {}
    pairs = {str(target): str(source) for target, source in recorded.items()}
    return pairs | {source: source for source in pairs.values()}


class _Offloaded:
    """Offloaded tensors' values, read through the accelerate hook of the module that owns them
    (or of the nearest module above it that has one). The values of the last module read are kept
    (a weight and its bias come one after the other in name order): each is read once."""

    def __init__(self, root: torch.nn.Module) -> None:
        self.root = root
        self.owner: str | None = None
        self.values: dict[str, torch.Tensor] = {}

    def value(self, name: str) -> torch.Tensor:
        parts = name.split(".")
        for cut in range(len(parts) - 1, -1, -1):
            path = ".".join(parts[:cut])
            owner = self.root.get_submodule(path)
            if _offload_hooked(owner):
                if path != self.owner:
                    self.owner, self.values = None, {}
                    with onloaded(owner):
                        self.values = {n: t.detach() for n, t in owner.state_dict(keep_vars=True).items()}
                    self.owner = path
                return self.values[".".join(parts[cut:])]
        raise ValueError(f"the weight {name} is on the meta device, and no accelerate hook holds its values")
