"""What a loaded model gives the result cache's keys and the report, remembered so that a verify
whose every array is cached answers without loading the model.

`ModelFacts` is all that the keys (`engine.result_cache`) and the Report read from a loaded
model: its identity (with the SHA-256 of its weights as loaded), config, tokenizer, dtype, device,
family (shape and layout) and widths. After a model loads from a folder (a local model or a
shipped organism), its facts are stored in the result cache under the content of the folder's
files (`folder_digest`), the spec's name for the model and the load's settings; a later run with
the same files finds them there without importing torch.

The digest reads each file's bytes once: a file's SHA-256 is remembered with its fingerprint
(device, inode, size, and modification and change times in nanoseconds), and the file is hashed
again whenever the fingerprint differs. The change time cannot be set by a program (a write, a
`touch -d` or a rename moves it), so new bytes under an old modification time are noticed too. A
hash is not remembered while its file's times are within `RACY_S` of the clock (file times tick
coarsely: a file rewritten in the same tick keeps its fingerprint), as git does with its index.

Both records (a folder's hashes, a load's facts) are authenticated as the cache's entries are
(docs/verify.md, "Trust"): one written without the user's secret is not read, so a forged
fingerprint or facts record can only cost a load, never lend one model's arrays to another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitlang.engine.family import Family
from circuitlang.engine.result_cache import FORMAT_VERSION, ResultCache, code_digest, encode, versions
from circuitlang.ir import models as ir
from circuitlang.ir.model_folder import check_model_folder, model_files_root

if TYPE_CHECKING:
    from circuitlang.engine.models import LoadedModel

RACY_S = 2.0  # a file whose times are this close to now may still change within the same tick
_READ_BYTES = 1 << 20

Fingerprint = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


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
class ModelFacts:
    """A loaded model as the result cache's keys and the Report see it (no tensors)."""

    identity: ModelIdentity
    family: Family
    config_json: str  # its config without the folder it was read from, keys sorted
    tokenizer_json: str  # the loaded tokenizer's `tokenizers` serialisation: what binding encodes with
    bos_token_id: int | None
    prepends_bos: bool
    weights_dtype: str  # the parameters' dtype as torch names it ("torch.float32")
    dtype: str  # the bridge's, as the report shows it ("float32")
    device: str  # "cpu", "cuda:0"
    device_name: str | None  # a GPU's name (another GPU may round differently)
    d_mlp: int
    d_vocab: int
    n_ctx: int
    n_parameters: int

    @property
    def shape(self) -> ir.ModelShape:
        """The loaded model's shape, with the fields `check` reads offline (heads: query heads)."""
        family = self.family
        return ir.ModelShape(
            n_layers=family.n_layers,
            n_heads=family.n_heads,
            n_kv_heads=family.n_kv_heads,
            parallel_attn_mlp=family.parallel_attn_mlp,
            origin="the loaded model",
        )

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelFacts:
        fields = json.loads(text)
        return cls(**{**fields, "identity": ModelIdentity(**fields["identity"]), "family": Family(**fields["family"])})


def facts_of(model: LoadedModel) -> ModelFacts:
    import torch

    from circuitlang.engine.models import parameter_count

    bridge, original = model.bridge, model.bridge.original_model
    config = {k: v for k, v in original.config.to_dict().items() if k != "_name_or_path"}
    return ModelFacts(
        identity=model.identity,
        family=model.family,
        config_json=json.dumps(config, sort_keys=True, default=str),
        tokenizer_json=model.tokenizer.backend_tokenizer.to_str(),
        bos_token_id=model.tokenizer.bos_token_id,
        prepends_bos=model.prepends_bos,
        weights_dtype=str(next(original.parameters()).dtype),
        dtype=str(bridge.cfg.dtype).removeprefix("torch."),
        device=str(model.device),
        device_name=torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        d_mlp=bridge.cfg.d_mlp,
        d_vocab=bridge.cfg.d_vocab,
        n_ctx=bridge.cfg.n_ctx,
        n_parameters=parameter_count(original),
    )


# ---- the facts of a load, by the content of the folder it read ----------------------------------


def facts_key(model: ir.ModelRef, digest: str, device: str, dtype: str) -> bytes:
    """What a load's facts depend on: the folder's content, the spec's name for the model, the
    load's device and dtype, and the code that loads (versions, and circuitlang's engine)."""
    return hashlib.sha256(
        encode(("model facts", FORMAT_VERSION, versions(), code_digest(), digest, model.name, model.source, device, dtype))
    ).digest()


def recall(cache: ResultCache, key: bytes) -> ModelFacts | None:
    data = cache.get_record(key)
    if data is None:
        return None
    try:
        return ModelFacts.from_json(data.decode())
    except (ValueError, TypeError, KeyError):  # a record of another layout (an older circuitlang): a miss
        return None


def remember(cache: ResultCache, key: bytes, facts: ModelFacts) -> None:
    cache.put_record(key, facts.to_json().encode())


# ---- a folder's content, hashed once per version of each file ------------------------------------


def folder_digest(cache: ResultCache, model: ir.ModelRef) -> str | None:
    """The SHA-256 of the names and contents of every file a load of the model's folder may read
    (ir.model_folder, checked as a load checks them), or None without a folder (a hub model) or
    when a file changed while it was read. Raises the ModelError a load would raise."""
    if model.path is None:
        return None
    folder = Path(model.path)
    names = sorted(check_model_folder(folder, model_files_root(model, folder), model.span).files)
    remembered = _remembered(cache, folder)
    hashes: dict[str, str] = {}
    keep: dict[str, tuple[Fingerprint, str]] = {}
    for name in names:
        fingerprint = fingerprint_of(folder / name)
        known = remembered.get(name)
        if known is not None and fingerprint is not None and known[0] == fingerprint:
            hashes[name] = known[1]
        else:
            digest = _file_sha256(folder / name)
            if fingerprint is None or digest is None or fingerprint_of(folder / name) != fingerprint:
                return None  # changed while it was read
            hashes[name] = digest
        if not _racy(fingerprint):
            keep[name] = (fingerprint, hashes[name])
    if keep != remembered:
        cache.put_record(_hashes_key(folder), json.dumps({"folder": str(folder.resolve()), "files": keep}).encode())
    return hashlib.sha256(encode(sorted(hashes.items()))).hexdigest()


def fingerprint_of(path: Path) -> Fingerprint | None:
    try:
        stat = os.stat(path)  # a hub snapshot's files are links into its blobs: the blob's
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _racy(fingerprint: Fingerprint) -> bool:
    return time.time_ns() - max(fingerprint[3], fingerprint[4]) < RACY_S * 1e9


def _remembered(cache: ResultCache, folder: Path) -> dict[str, tuple[Fingerprint, str]]:
    """name -> (fingerprint, SHA-256), as an authenticated record of this very folder holds them."""
    data = cache.get_record(_hashes_key(folder))
    try:
        record: dict[str, Any] = json.loads(data.decode()) if data is not None else {}
        if record.get("folder") != str(folder.resolve()):
            return {}
        return {name: (tuple(fingerprint), digest) for name, (fingerprint, digest) in record["files"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def _hashes_key(folder: Path) -> bytes:
    return hashlib.sha256(encode(("file hashes", FORMAT_VERSION, str(folder.resolve())))).digest()


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while block := file.read(_READ_BYTES):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
