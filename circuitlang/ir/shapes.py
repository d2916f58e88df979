"""Model references and shapes, resolved without weights or network.

`on "gpt2"` is a hub name; `on "./models/x"` (a string starting with `.`, `/` or `~`) is a local
HF-format folder, relative to the spec file; `on "organism:NAME"` is a model shipped inside
circuitlang. A hub name is resolved as TransformerLens resolves it (`gpt2-small` is `gpt2`, see
`ir.hub`); a bare name TransformerLens does not know is an error, while `org/name` may be any
repo. Layer/head bounds come from a small table of known hub models, or from the folder's
`config.json`, so `circuitlang check` works offline.
"""

from __future__ import annotations

import difflib
import json
import re
from importlib import resources
from pathlib import Path

from circuitlang.errors import ModelError, Span
from circuitlang.ir.hub import nearest_hub_names, official_hub_name
from circuitlang.ir.models import ModelRef, ModelShape
from circuitlang.ir.paths import confined, is_dir, is_file

ORGANISM_PREFIX = "organism:"
ORGANISM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

# (n_layers, n_heads) of hub models whose shape we know without downloading anything, keyed by
# TransformerLens's official names (aliases resolve to these first) and by Hugging Face's own
# names for the same repos, which TransformerLens does not list.
KNOWN_HUB_SHAPES: dict[str, tuple[int, int]] = {
    "gpt2": (12, 12),
    "openai-community/gpt2": (12, 12),
    "gpt2-medium": (24, 16),
    "openai-community/gpt2-medium": (24, 16),
    "gpt2-large": (36, 20),
    "openai-community/gpt2-large": (36, 20),
    "gpt2-xl": (48, 25),
    "openai-community/gpt2-xl": (48, 25),
    "distilgpt2": (6, 12),
    "distilbert/distilgpt2": (6, 12),
    "EleutherAI/pythia-70m": (6, 8),
    "EleutherAI/pythia-160m": (12, 12),
    "EleutherAI/pythia-410m": (24, 16),
}


def organisms_root() -> Path:
    return Path(str(resources.files("circuitlang.organisms")))


def shipped_organisms() -> list[str]:
    root = organisms_root()
    return sorted(p.parent.parent.name for p in root.glob("*/weights/config.json"))  # NAME/weights/config.json


def resolve_model(written: str, root: Path, span: Span) -> ModelRef:
    """Classify the `on "..."` string and resolve local and shipped models to a folder."""
    if written.startswith(ORGANISM_PREFIX):
        name = written[len(ORGANISM_PREFIX):]
        folder = organisms_root() / name / "weights"
        if not ORGANISM_NAME.fullmatch(name) or not is_file(folder / "config.json"):  # a name, never a path
            shipped = shipped_organisms()
            nearest = difflib.get_close_matches(name, shipped, n=1)
            guess = f"did you mean '{ORGANISM_PREFIX}{nearest[0]}'? " if nearest else ""
            raise ModelError(f"no shipped organism named '{name}'", span,
                             f"{guess}shipped organisms: {', '.join(shipped) or 'none are built yet'}")
        return ModelRef(source="organism", name=written, path=str(folder), span=span)
    if written.startswith((".", "/", "~")):
        folder = confined(written, span, root, "model folder")
        if not is_dir(folder):
            raise ModelError(f"model folder '{written}' does not exist (looked in {folder})", span,
                             "paths are relative to the spec file; point at a folder with config.json")
        return ModelRef(source="local", name=written, path=str(folder), span=span)
    return ModelRef(source="hub", name=written, hub_id=_hub_id(written, span), span=span)


def _hub_id(written: str, span: Span) -> str:
    """The repo a hub name loads. An `org/name` TransformerLens does not list is taken as written
    (any repo of a supported architecture loads); a bare unknown name is almost always a typo."""
    official = official_hub_name(written)
    if official is not None:
        return official
    if "/" in written:
        return written
    raise ModelError(f"'{written}' is not a model name TransformerLens knows", span, unknown_hub_hint(written))


def unknown_hub_hint(written: str) -> str:
    """A did-you-mean hint for a hub name that names no model."""
    nearest = nearest_hub_names(written)
    guess = f"did you mean {' or '.join(repr(name) for name in nearest)}? " if nearest else ""
    return (f"{guess}use a name from TransformerLens's model table or a full Hugging Face repo id "
            f'(on "org/name"); local folders start with "./"')


def model_shape(model: ModelRef) -> ModelShape | None:
    """Layers and heads of the model, or None for a hub model this table does not know."""
    if model.path is not None:
        return _shape_from_config(Path(model.path) / "config.json", model.span)
    known = KNOWN_HUB_SHAPES.get(model.hub_id or model.name)
    return ModelShape(n_layers=known[0], n_heads=known[1], origin=model.name) if known else None


def _shape_from_config(config_path: Path, span: Span) -> ModelShape:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, not UTF-8, numbers too long
        raise ModelError(f"cannot read the model's {config_path}: {error}", span,
                         "a local model folder needs a valid HF config.json") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} is a JSON {type(config).__name__}, not an object", span,
                         "a Hugging Face config.json is one JSON object ({...})")
    layers = config.get("n_layer", config.get("num_hidden_layers"))
    heads = config.get("n_head", config.get("num_attention_heads"))
    if not isinstance(layers, int) or not isinstance(heads, int):
        raise ModelError(f"{config_path} names no layer/head counts", span,
                         "expected n_layer/n_head or num_hidden_layers/num_attention_heads")
    return ModelShape(n_layers=layers, n_heads=heads, origin=str(config_path))
