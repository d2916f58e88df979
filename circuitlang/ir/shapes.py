"""Model references and shapes, resolved without weights or network.

`on "gpt2"` is a hub name; `on "./models/x"` (a string starting with `.`, `/` or `~`) is a local
HF-format folder, relative to the spec file; `on "organism:NAME"` is a model shipped inside
circuitlang. A hub name is resolved as TransformerLens resolves it (`gpt2-small` is `gpt2`, see
`ir.hub`); a bare name TransformerLens does not know is an error, while `org/name` may be any
repo. Layer/head bounds come from a table of known hub models (`hub_shapes.json`, next to this
module), or from the folder's `config.json`, so `circuitlang check` works offline. The shape also
carries the key/value head count and whether attention and MLP read the same residual, which the
engine needs and which differ between families (GPT-2, GPT-NeoX/Pythia, GPT-J, Llama, Qwen2, Gemma 2).
"""

from __future__ import annotations

import difflib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from circuitlang.errors import ModelError, Span, SpecError
from circuitlang.ir.hub import nearest_hub_names, official_hub_name
from circuitlang.ir.models import ModelRef, ModelShape
from circuitlang.ir.model_folder import model_files_root, read_config
from circuitlang.ir.paths import confined, is_dir, is_file

ORGANISM_PREFIX = "organism:"
ORGANISM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

SHAPES_FILE = "hub_shapes.json"

# Where each family's config.json keeps its counts, the first key present winning: GPT-2 and GPT-J
# write n_layer/n_head; GPT-NeoX, Llama, Qwen2, Gemma and Mistral num_hidden_layers/num_attention_heads,
# and those with grouped-query attention num_key_value_heads (absent: one key/value head per head).
LAYER_KEYS = ("n_layer", "num_hidden_layers")
HEAD_KEYS = ("n_head", "num_attention_heads")
KV_HEAD_KEYS = ("num_key_value_heads",)
# Families whose blocks add attention and MLP outputs read from one residual, without a config field
# saying so (GPT-NeoX says it with `use_parallel_residual`, true when absent).
PARALLEL_MODEL_TYPES = ("gptj", "codegen", "phi")
# The counts a config.json may give. The largest models in use have about 130 layers of 128 heads
# (16,000 heads); `plan` and `check` enumerate every head, and a config.json of 2^63 heads made
# them run out of memory (found by fuzzing model folders, docs/fuzzing.md): 100,000 heads plan in
# seconds.
MAX_CONFIG_LAYERS, MAX_CONFIG_HEADS, MAX_CONFIG_ALL_HEADS = 1_000, 1_000, 100_000


class HubShape(NamedTuple):
    n_layers: int
    n_heads: int
    n_kv_heads: int
    parallel_attn_mlp: bool


def _known_hub_shapes() -> dict[str, HubShape]:
    """Hub models whose shape is known without downloading anything, keyed by TransformerLens's
    official names (aliases resolve to these first) and by Hugging Face repo ids it does not list."""
    text = resources.files("circuitlang.ir").joinpath(SHAPES_FILE).read_text(encoding="utf-8")
    return {
        name: _hub_shape(counts, family["parallel_attn_mlp"])
        for family in json.loads(text)["families"]
        for name, counts in family["models"].items()
    }


def _hub_shape(counts: list[int], parallel_attn_mlp: bool) -> HubShape:
    n_layers, n_heads, n_kv_heads = counts  # as SHAPES_FILE writes them
    return HubShape(n_layers, n_heads, n_kv_heads, parallel_attn_mlp)


KNOWN_HUB_SHAPES: dict[str, HubShape] = _known_hub_shapes()


def organisms_root() -> Path:
    return Path(str(resources.files("circuitlang.organisms")))


def shipped_organisms() -> list[str]:
    root = organisms_root()
    return sorted(p.parent.parent.name for p in root.glob("*/weights/config.json"))  # NAME/weights/config.json


def resolve_model(written: str, root: Path, span: Span) -> ModelRef:
    """Classify the `on "..."` string and resolve local and shipped models to a folder. A name that
    resolves to nothing is the spec's to fix (a SpecError, exit 2); a model that is there but cannot
    be read is a ModelError (exit 3)."""
    if written.startswith(ORGANISM_PREFIX):
        name = written[len(ORGANISM_PREFIX) :]
        folder = organisms_root() / name / "weights"
        if not ORGANISM_NAME.fullmatch(name) or not is_file(folder / "config.json"):  # a name, never a path
            shipped = shipped_organisms()
            nearest = difflib.get_close_matches(name, shipped, n=1)
            guess = f"did you mean '{ORGANISM_PREFIX}{nearest[0]}'? " if nearest else ""
            raise SpecError(
                f"no shipped organism named '{name}'", span, f"{guess}shipped organisms: {', '.join(shipped) or 'none are built yet'}"
            )
        return ModelRef(source="organism", name=written, path=str(folder), span=span)
    if written.startswith((".", "/", "~")):
        folder = confined(written, span, root, "model folder")
        if not is_dir(folder):
            raise SpecError(
                f"model folder '{written}' does not exist (looked in {folder})",
                span,
                "paths are relative to the spec file; point at a folder with config.json",
            )
        return ModelRef(source="local", name=written, path=str(folder), root=str(root), span=span)
    return ModelRef(source="hub", name=written, hub_id=_hub_id(written, span), span=span)


def _hub_id(written: str, span: Span) -> str:
    """The repo a hub name loads. An `org/name` TransformerLens does not list is taken as written
    (any repo of a supported architecture loads); a bare unknown name is almost always a typo."""
    official = official_hub_name(written)
    if official is not None:
        return official
    if "/" in written:
        return written
    raise SpecError(f"'{written}' is not a model name TransformerLens knows", span, unknown_hub_hint(written))


def unknown_hub_hint(written: str) -> str:
    """A did-you-mean hint for a hub name that names no model."""
    nearest = nearest_hub_names(written)
    guess = f"did you mean {' or '.join(repr(name) for name in nearest)}? " if nearest else ""
    return f'{guess}use a name from TransformerLens\'s model table or a full Hugging Face repo id (on "org/name"); local folders start with "./"'


def model_shape(model: ModelRef) -> ModelShape | None:
    """Layers and heads of the model, or None for a hub model this table does not know."""
    if model.path is not None:
        folder = Path(model.path)
        return _shape_from_config(folder, model_files_root(model, folder), model.span)
    known = KNOWN_HUB_SHAPES.get(model.hub_id or model.name)
    return ModelShape(origin=model.name, **known._asdict()) if known else None


def _shape_from_config(folder: Path, allowed: Path, span: Span) -> ModelShape:
    config_path = folder / "config.json"
    fields = _language_model_fields(_read_config(folder, allowed, span))
    layers, heads = _count(fields, LAYER_KEYS), _count(fields, HEAD_KEYS)
    if layers is None or heads is None:
        raise ModelError(f"{config_path} names no layer/head counts", span, "expected n_layer/n_head or num_hidden_layers/num_attention_heads")
    if not (1 <= layers <= MAX_CONFIG_LAYERS and 1 <= heads <= MAX_CONFIG_HEADS and layers * heads <= MAX_CONFIG_ALL_HEADS):
        shown = [str(n) if abs(n) < 10**12 else f"{str(n)[:12]}... ({len(str(abs(n)))} digits)" for n in (layers, heads)]
        raise ModelError(
            f"{config_path} gives {shown[0]} layers of {shown[1]} heads: no model has that shape",
            span,
            f"a config.json may give 1 to {MAX_CONFIG_LAYERS:,} layers of 1 to {MAX_CONFIG_HEADS:,} heads, "
            f"at most {MAX_CONFIG_ALL_HEADS:,} heads in all",
        )
    return ModelShape(
        n_layers=layers,
        n_heads=heads,
        origin=str(config_path),
        n_kv_heads=_kv_heads(fields, heads, config_path, span),
        parallel_attn_mlp=_reads_one_residual(fields),
    )


def _read_config(folder: Path, allowed: Path, span: Span) -> dict[str, Any]:
    config_path = folder / "config.json"
    try:
        config = json.loads(read_config(folder, allowed).decode("utf-8"))
    except FileNotFoundError:  # the spec names a folder that holds no model: the spec's to fix (exit 2)
        raise SpecError(
            f"{config_path.parent} is not a model folder: it has no config.json",
            span,
            "point `on` at a Hugging Face model folder (config.json, tokenizer, weights)",
        ) from None
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not JSON, not UTF-8, numbers too long
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ModelError(f"cannot read the model's {config_path}: {why}", span, "a local model folder needs a valid HF config.json") from None
    if not isinstance(config, dict):
        raise ModelError(
            f"{config_path} is a JSON {type(config).__name__}, not an object", span, "a Hugging Face config.json is one JSON object ({...})"
        )
    return config


def _language_model_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The config's fields, with those of a nested `text_config` on top: multimodal configs
    (Gemma 3, LLaVA) keep the language model's counts there."""
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def _count(fields: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    value = next((fields[key] for key in keys if fields.get(key) is not None), None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kv_heads(fields: dict[str, Any], heads: int, config_path: Path, span: Span) -> int:
    if fields.get("model_type") == "gpt_bigcode" and fields.get("multi_query", True):
        return 1  # multi-query attention: one key/value head, and no field that counts it
    kv_heads = _count(fields, KV_HEAD_KEYS)
    if kv_heads is None:
        return heads
    if kv_heads <= 0 or heads % kv_heads:
        raise ModelError(
            f"{config_path} gives {kv_heads} key/value heads for {heads} heads", span, "num_key_value_heads must divide num_attention_heads"
        )
    return kv_heads


def _reads_one_residual(fields: dict[str, Any]) -> bool:
    model_type = fields.get("model_type")
    parallel = fields.get("use_parallel_residual", model_type == "gpt_neox")
    return parallel is True or model_type in PARALLEL_MODEL_TYPES
