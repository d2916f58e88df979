"""The result cache: the per-prompt arrays `verify` computes, kept on disk between runs.

Every number of a verification is computed from per-prompt arrays (float64 [n_prompts]): one per
circuit variant, per path-patching run, per node score. Each array is stored under the SHA-256 of
a canonical byte encoding (`encode`) of everything it depends on:

- the prompt set's context (`prompt_set_context`): the cache format, the versions of
  circuitlang, torch, transformers and TransformerLens, and the source of the code that computes
  the arrays (`engine/`, `workflows/verify.py`, `workflows/interchange.py`, `data/counterfactuals.py`); the model's name, source, config, the
  SHA-256 of its loaded weights (`ModelIdentity.weights_sha256`), its tokenizer, dtype and device;
  the bound prompts (clean and corrupt token ids, positions, answer token ids), the metric and
  the answer prefix; and the prompts a forward takes at once (each template's, up to the batch
  size: the engine runs every variant on its own in such chunks, so that nothing else in a
  batch changes its numbers, but the chunks' shapes and the ablation means summed chunk by
  chunk can change their rounding);
- the request: a variant (its kept heads and MLPs with their positions, its edges) with the
  ablation; or the senders and receivers of a path-patching run; or a node score with its
  arguments.

Nothing else enters a per-prompt array (the seed, the bootstrap and the claims act on the arrays
afterwards), so an edited claim reads everything from the cache and an edited circuit recomputes
only the variants that changed.

On disk: one file per array, `ROOT/v2/ab/abcd….f64`: a header (magic, format version, the key,
the count), the values, and an HMAC-SHA256 of both under a secret only the user holds (the trust
model, below). A reader checks all of it, so a torn, truncated, misfiled or forged entry is a
miss, never a wrong number; a writer writes a temporary file in the same
folder and renames it over the entry, so concurrent runs see an entry whole or not at all. No
pickle: an entry is numbers. The cache is bounded (`CIRCUITLANG_CACHE_LIMIT`, 1 GiB by default):
after a run that wrote to it, the least recently used entries go (a read refreshes an entry's
modification time) until it is back under 90% of its limit.

Trust model: an array decides a verdict, so the cache holds only arrays this user's own runs
wrote. Each entry carries an HMAC under a secret that never enters the cache folder:
`$CIRCUITLANG_CACHE_KEY` (a CI secret), else a key file in the user's config folder
(`$XDG_CONFIG_HOME/circuitlang/cache-key`, made on first use, readable by the user alone). Anyone
who can write the folder but lacks the secret (another user, a cache artifact restored from a
fork's run) can only cause misses. A cache folder that is not the user's own, or that others may
write, is not used at all, nor is a key file others may read; the report says why. Nothing in the
folder is followed if it is a link: entries are opened without following links, and eviction
lists and removes only regular files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import struct
import time
from importlib import metadata
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel

from circuitlang import __version__
from circuitlang.ir import models as ir
from circuitlang.report.files import write_then_rename

if TYPE_CHECKING:
    from circuitlang.engine.bind import BoundPromptSet
    from circuitlang.engine.model_record import ModelFacts
    from circuitlang.engine.variants import Receiver, Variant

FORMAT_VERSION = 2  # 2: entries authenticated (HMAC-SHA256); v1 folders are never read
CACHE_DIR_VARIABLE = "CIRCUITLANG_CACHE_DIR"
KEY_VARIABLE = "CIRCUITLANG_CACHE_KEY"
LIMIT_VARIABLE = "CIRCUITLANG_CACHE_LIMIT"
DEFAULT_LIMIT_BYTES = 1 << 30
TRIM_TO = 0.9  # evict below the limit, so that the next run's few new entries do not evict again
STALE_TEMPORARY_S = 3600.0  # a temporary file this old belongs to a run that died before its rename

_MAGIC = b"CLRC"
_RECORD_MAGIC = b"CLRR"  # a record (engine.model_record): authenticated bytes, not numbers
MAX_RECORD_BYTES = 256 << 20  # a model's facts hold its tokenizer (Gemma 3's: 33 MB)
_HEADER = struct.Struct("<4sI32sQ")  # magic, format version, key, count
_CHECKSUM_BYTES = 32
_TEMPORARY_PREFIX = "."  # the writer's temporary files, `.NAME.PID.XXXX.tmp`; entries are named by their key
PRIVATE = 0o600  # entries and the ledger are the user's own
_BLOCK = 4096  # a file takes whole blocks of the file system: what the ledger counts per entry
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


# ---- the store ---------------------------------------------------------------------------------


class ResultCache:
    """Arrays of float64 on disk under 32-byte keys; every failure to read is a miss, every
    failure to write is ignored (a full disk or a read-only cache costs time, never the run).
    `refused`: why the cache is not used (a folder others may write, a key others may read); a
    refused cache reads and writes nothing."""

    def __init__(self, root: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES, secret: bytes | None = None) -> None:
        self.root = Path(root)
        self.limit_bytes = limit_bytes
        self.written_bytes = 0  # on disk, written by this process since its last trim
        self.refused: str | None = None
        if secret is None:
            secret, self.refused = user_secret()
        self.secret = secret or b""
        self.refused = self.refused or untrusted_folder(self.root)

    @classmethod
    def from_environment(cls) -> "ResultCache":
        return cls(default_root(), limit_from_environment())

    def path_of(self, key: bytes) -> Path:
        name = key.hex()
        return self.root / f"v{FORMAT_VERSION}" / name[:2] / f"{name}.f64"

    def get(self, key: bytes, length: int) -> np.ndarray | None:
        if self.refused:
            return None
        path = self.path_of(key)
        data = _read_regular_file(path, _HEADER.size + 8 * length + _CHECKSUM_BYTES)
        values = None if data is None else _decoded(data, key, length, self.secret)
        if values is not None:
            _touch(path)
        return values

    def put(self, key: bytes, values: np.ndarray) -> None:
        if self.refused:
            return
        path = self.path_of(key)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = _encoded(key, values, self.secret)
            write_then_rename(path, data, PRIVATE)  # no fsync: a torn entry fails its checksum, a miss
        except OSError:
            return
        self.written_bytes += -(-len(data) // _BLOCK) * _BLOCK

    def get_record(self, key: bytes) -> bytes | None:
        """The payload of a record (`put_record`), checked as an entry is; else None."""
        if self.refused:
            return None
        path = self._record_path(key)
        data = _read_regular_file(path, None, limit=MAX_RECORD_BYTES)
        if data is None or len(data) < _HEADER.size + _CHECKSUM_BYTES:
            return None
        body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
        if not hmac.compare_digest(hmac.new(self.secret, body, hashlib.sha256).digest(), checksum):
            return None
        if _HEADER.unpack_from(body) != (_RECORD_MAGIC, FORMAT_VERSION, key, len(body) - _HEADER.size):
            return None
        _touch(path)
        return body[_HEADER.size :]

    def put_record(self, key: bytes, payload: bytes) -> None:
        """Store bytes under `key`, authenticated as entries are; a failure is ignored."""
        if self.refused:
            return
        path = self._record_path(key)
        body = _HEADER.pack(_RECORD_MAGIC, FORMAT_VERSION, key, len(payload)) + payload
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_then_rename(path, body + hmac.new(self.secret, body, hashlib.sha256).digest(), PRIVATE)
        except OSError:
            return
        self.written_bytes += -(-len(body) // _BLOCK) * _BLOCK

    def _record_path(self, key: bytes) -> Path:
        return self.root / f"v{FORMAT_VERSION}" / "records" / f"{key.hex()}.rec"

    def trim(self) -> None:
        """Evict the least recently used entries when the cache is over its limit. A ledger keeps
        the bytes on disk (each run that writes adds its own), so the folder is listed only when
        the ledger says the limit is reached, or cannot be read; two runs adding at once may lose
        one's bytes, which only puts the next listing off."""
        if self.refused:
            return
        recorded = self._recorded_usage()
        estimate = None if recorded is None else recorded + self.written_bytes
        self.written_bytes = 0
        if estimate is not None and estimate <= self.limit_bytes:
            self._record_usage(estimate)
            return
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        if total > self.limit_bytes:
            for _, size, path in entries:
                if total <= self.limit_bytes * TRIM_TO:
                    break
                _remove(path)
                total -= size
        self._record_usage(total)

    def usage(self) -> int:
        """Bytes the entries take on disk."""
        return sum(size for _, size, _ in self._entries())

    def _recorded_usage(self) -> int | None:
        data = _read_regular_file(self._ledger(), None, limit=64)
        try:
            return None if data is None else int(data.decode("ascii"))
        except ValueError:
            return None

    def _record_usage(self, total: int) -> None:
        try:
            write_then_rename(self._ledger(), str(total).encode("ascii"), PRIVATE)
        except OSError:
            pass

    def _ledger(self) -> Path:
        return self.root / f"v{FORMAT_VERSION}" / "usage"

    def _entries(self) -> list[tuple[float, int, str]]:
        """(last used, bytes on disk, path) of every entry; stale temporary files are removed."""
        found, now = [], time.time()
        for shard in _listing(self.root / f"v{FORMAT_VERSION}"):
            if not shard.is_dir(follow_symlinks=False):  # a link is never followed: eviction stays in the folder
                continue
            for entry in _listing(Path(shard.path)):
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                except OSError:  # evicted by another run meanwhile
                    continue
                if not entry.name.startswith(_TEMPORARY_PREFIX):
                    found.append((stat.st_mtime, max(stat.st_size, getattr(stat, "st_blocks", 0) * 512), entry.path))
                elif now - stat.st_mtime > STALE_TEMPORARY_S:
                    _remove(entry.path)
        return found


def default_root() -> Path:
    """`$CIRCUITLANG_CACHE_DIR`, else `$XDG_CACHE_HOME/circuitlang`, else `~/.cache/circuitlang`."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "circuitlang"


def limit_from_environment() -> int:
    """`$CIRCUITLANG_CACHE_LIMIT` in bytes, with an optional K, M, G or T (powers of 1024): `2G`.
    A value that cannot be read leaves the default: a typo costs disk, not the run."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", os.environ.get(LIMIT_VARIABLE, ""), flags=re.I)
    return int(match.group(1)) * _UNITS[match.group(2).upper()] if match else DEFAULT_LIMIT_BYTES


def _encoded(key: bytes, values: np.ndarray, secret: bytes) -> bytes:
    payload = np.ascontiguousarray(values, dtype="<f8").reshape(-1).tobytes()
    body = _HEADER.pack(_MAGIC, FORMAT_VERSION, key, len(payload) // 8) + payload
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def _decoded(data: bytes, key: bytes, length: int, secret: bytes) -> np.ndarray | None:
    """The values of an entry that is whole, filed under `key` and written with `secret`, else None."""
    if len(data) != _HEADER.size + 8 * length + _CHECKSUM_BYTES:
        return None
    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if not hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), checksum):
        return None
    if _HEADER.unpack_from(body) != (_MAGIC, FORMAT_VERSION, key, length):
        return None
    return np.frombuffer(body, dtype="<f8", offset=_HEADER.size).astype(np.float64)


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # last used: what eviction orders by (access times are often not kept)
    except OSError:
        pass


def _remove(path: str | Path) -> None:
    """Unlink a regular file; a link is unlinked itself by os.unlink, never what it points to."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_regular_file(path: Path, size: int | None, limit: int = 0) -> bytes | None:
    """The bytes of `path` if it is a regular file (not followed if it is a link) of exactly
    `size` bytes (or at most `limit`), else None: a link to /dev/zero or a huge file is a miss."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        stat = os.fstat(descriptor)
        if not S_ISREG(stat.st_mode) or (size is not None and stat.st_size != size) or (size is None and stat.st_size > limit):
            return None
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            return file.read((stat.st_size if size is None else size) + 1)  # one more: a file that grew is a miss
    except OSError:
        return None
    finally:
        os.close(descriptor)


# ---- trust ---------------------------------------------------------------------------------------


def user_secret() -> tuple[bytes | None, str | None]:
    """(the secret entries are authenticated with, None) or (None, why there is none)."""
    if os.environ.get(KEY_VARIABLE):
        return hashlib.sha256(os.environ[KEY_VARIABLE].encode()).digest(), None
    path = key_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(os.urandom(32))
    except FileExistsError:
        pass
    except OSError as error:
        return None, f"no key file at {path} ({error.strerror})"
    problem = _not_private(path, "key file")
    if problem:
        return None, problem
    data = _read_regular_file(path, 32)
    return (data, None) if data is not None else (None, f"the key file {path} is not 32 bytes: delete it to make a new one")


def key_path() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config") / "circuitlang" / "cache-key"


def untrusted_folder(root: Path) -> str | None:
    """Why the cache folder must not be used, or None: it must be this user's own directory (made
    private if missing), not a link, and writable by no one else."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # unwritable: every write fails quietly, every read misses
    for folder in (root, root / f"v{FORMAT_VERSION}"):
        if os.path.lexists(folder):
            problem = _not_private(folder, "cache folder", writable_only=True)
            if problem:
                return problem
    return None


def _not_private(path: Path, what: str, writable_only: bool = False) -> str | None:
    if not hasattr(os, "getuid"):
        return None  # no owners and modes to check (Windows): the folder's ACLs decide
    try:
        stat = os.lstat(path)
    except OSError as error:
        return f"the {what} {path} cannot be read ({error.strerror})"
    others = 0o022 if writable_only else 0o077
    if S_ISLNK(stat.st_mode):
        return f"the {what} {path} is a link"
    if stat.st_uid != os.getuid():
        return f"the {what} {path} belongs to another user"
    if stat.st_mode & others:
        return f"others may {'write' if writable_only else 'read or write'} the {what} {path} (chmod go-rwx)"
    return None


def _listing(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


# ---- keys --------------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """A canonical byte encoding: typed and length-prefixed (so no two values share one), with
    dicts and sets in sorted order, arrays as dtype, shape and little-endian bytes, and pydantic
    models and dataclasses as their type's name and fields (source spans left out: moving a line
    changes no number). Anything else is a TypeError: never a repr or an object id."""
    out = bytearray()
    _write(out, value)
    return bytes(out)


def _write(out: bytearray, value: Any) -> None:
    if value is None:
        out += b"N"
    elif isinstance(value, (bool, np.bool_)):
        out += b"T" if value else b"F"
    elif isinstance(value, (int, np.integer)):
        _tagged(out, b"i", str(int(value)).encode())
    elif isinstance(value, (float, np.floating)):
        out += b"f" + struct.pack("<d", float(value))
    elif isinstance(value, str):
        _tagged(out, b"s", value.encode())
    elif isinstance(value, bytes):
        _tagged(out, b"b", value)
    elif isinstance(value, (tuple, list)):
        out += b"l" + struct.pack("<Q", len(value))
        for item in value:
            _write(out, item)
    elif isinstance(value, (set, frozenset)):
        _sequence(out, b"e", sorted(encode(item) for item in value))
    elif isinstance(value, dict):
        _sequence(out, b"d", sorted(encode(k) + encode(v) for k, v in value.items()))
    elif isinstance(value, np.ndarray) and not value.dtype.hasobject:
        array = np.ascontiguousarray(value)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        _write(out, ("array", array.dtype.str, array.shape))
        _tagged(out, b"a", array.tobytes())
    elif isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields if name != "span" and not name.endswith("_spans")}
        _write(out, ("model", type(value).__name__, fields))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        _write(out, ("dataclass", type(value).__name__, fields))
    else:
        raise TypeError(f"no canonical encoding for {type(value).__name__}")


def _tagged(out: bytearray, tag: bytes, data: bytes) -> None:
    out += tag + struct.pack("<Q", len(data)) + data


def _sequence(out: bytearray, tag: bytes, encoded: list[bytes]) -> None:
    out += tag + struct.pack("<Q", len(encoded))
    for item in encoded:
        out += item


def prompt_set_context(model: "ModelFacts", threads: int, bound: "BoundPromptSet", batch_size: int) -> bytes:
    """The digest of what every array of one prompt set depends on besides its request, when its
    engine runs `batch_size` rows at a time on `threads` CPU threads."""
    return hashlib.sha256(
        encode(
            {
                "format": FORMAT_VERSION,
                "versions": versions(),
                "code": _CODE_DIGEST,
                "model": _model_part(model, threads),
                "prompts": _prompts_part(bound),
                "chunks": [min(batch_size, t.n_prompts) for t in bound.templates],
            }
        )
    ).digest()


def _code_digest() -> str:
    """The code that computes the arrays (the engine, and the verifier that asks it): an edited
    copy (an editable install, a patched release) may compute other numbers under one version."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    computing = [package / "workflows" / "verify.py", package / "workflows" / "interchange.py", package / "data" / "counterfactuals.py"]
    for path in [*sorted((package / "engine").glob("*.py")), *computing]:
        digest.update(encode((path.name, path.read_bytes())))
    return digest.hexdigest()


def code_digest() -> str:
    return _CODE_DIGEST


# Read when the engine is imported (the verifier imports it with the rest of the engine), not
# when the first key is made: a file edited during a run must not name the code that runs.
_CODE_DIGEST = _code_digest()


def versions() -> dict[str, str]:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"circuitlang": __version__} | {name: version(name) for name in ("torch", "transformers", "transformer-lens")}


def _model_part(model: "ModelFacts", threads: int) -> dict[str, Any]:
    """The model as it runs: the hash of its loaded weights (two weight sets never share one), its
    config without the folder it was read from, its tokenizer (the copy and next scores re-encode
    tokens), its dtype and device (engine.model_record: read from the loaded model, or remembered)."""
    # Another GPU, or the CPU's work split over another number of threads, may round differently.
    device: dict[str, Any] = {"type": model.device_type}
    if model.device_type == "cuda":
        device["name"] = model.device_name
    else:
        device["threads"] = threads
    return {
        "name": model.identity.name,
        "source": model.identity.source,
        "weights_sha256": model.identity.weights_sha256,
        "config": model.config_json,
        "tokenizer": hashlib.sha256(model.tokenizer_json.encode()).hexdigest(),
        "dtype": model.weights_dtype,
        "device": device,
    }


def _prompts_part(bound: "BoundPromptSet") -> dict[str, Any]:
    templates = [
        (t.template, t.prompt_indices, _token_ids(t.clean), None if t.corrupt is None else _token_ids(t.corrupt), t.positions, t.answers)
        for t in bound.templates
    ]
    return {"metric": (bound.metric.name, bound.metric.args), "answer_prefix": bound.answer_prefix, "templates": templates}


def _token_ids(ids: Any) -> np.ndarray:
    """Token ids as int64, from a tensor (bound for a model) or an array (bound without one)."""
    return np.asarray(ids.cpu() if hasattr(ids, "cpu") else ids, dtype=np.int64)


def variant_request(variant: "Variant", ablation: "ir.Ablation") -> tuple:
    """A variant as the engine runs it: its kept heads and MLPs with their positions (in any
    order), its edges (edge ablation reads them as a set), and the ablation (not its label)."""
    heads = sorted(encode((h.layer, h.head, _positions(h.q), _positions(h.k), _positions(h.ablated_at))) for h in variant.heads)
    mlps = sorted(encode((m.layer, _positions(m.at), _positions(m.ablated_at))) for m in variant.mlps)
    edges = None if variant.edges is None else sorted(encode((e.sender, e.receiver, sorted(e.channels))) for e in variant.edges)
    return (
        "variant",
        (ablation.kind, None if ablation.kind == "zero" else ablation.source),
        heads,
        mlps,
        edges,
        None if variant.edges is None else variant.embed_edges,
    )  # embed_edges matters only to edge ablation


def _positions(positions: "tuple[ir.Position, ...] | None") -> tuple | None:
    """Positions as plain tuples, (name, offset) or (name, offset, name, offset) for a range: the
    generic encoding of their models would do as well, at several times the cost per variant."""
    if positions is None:
        return None
    return tuple(
        (p.start.name, p.start.offset, p.stop.name, p.stop.offset) if isinstance(p, ir.PositionRange) else (p.name, p.offset) for p in positions
    )


def path_patch_request(senders: Sequence["ir.Node"], receivers: Sequence["Receiver"], freeze_mlps: bool) -> tuple:
    """A path-patching run: no ablation enters it, only the clean and corrupt prompts."""
    return (
        "path_patch",
        sorted(encode(s) for s in senders),
        freeze_mlps,
        sorted(encode((r.node, sorted(r.channels) if r.node.kind == "head" else ())) for r in receivers),
    )


def sites_request(sites: Sequence["ir.Site"]) -> tuple:
    """Interchange sites as the engine overwrites them: each node at its positions, in order."""
    return tuple((site.node.kind, site.node.layer, site.node.head, _positions(site.positions)) for site in sites)


def interchange_request(quantity: str, sites: Sequence[Sequence["ir.Site"]], base: Sequence[int], source: Sequence[int], tokens: Any) -> tuple:
    """One per-prompt array of interchange runs (`quantity`: correct, toward, clean, ...): every
    pair's sites, its base and source prompts, and the token ids it reads."""
    return ("interchange", quantity, tuple(sites_request(s) for s in sites), tuple(base), tuple(source), np.asarray(tokens).tolist())


def scrubbing_request(
    outside: Sequence["ir.Node"], sites: Sequence["ir.Site"], base: Sequence[int], random: Sequence[int], agreeing: Sequence[Sequence[int]]
) -> tuple:
    """A causal scrubbing run: the nodes resampled from each base's random prompt, the carrier
    sites, and each base's random and agreeing prompts."""
    nodes = sorted((node.kind, node.layer, node.head) for node in outside)
    return ("scrubbing", nodes, sites_request(sites), tuple(base), tuple(random), tuple(map(tuple, agreeing)))


class CachedArrays:
    """One prompt set's per-prompt arrays: read from the cache when they are there, else computed
    (and stored); counts both."""

    def __init__(self, cache: ResultCache | None, context: bytes, length: int) -> None:
        self.cache, self.context, self.length = cache, context, length
        self.hits = self.misses = 0

    @classmethod
    def open(cls, cache: ResultCache | None, model: "ModelFacts", threads: int, bound: "BoundPromptSet", batch_size: int) -> "CachedArrays":
        context = prompt_set_context(model, threads, bound, batch_size) if cache is not None else b""
        return cls(cache, context, bound.n_prompts)

    def many(self, requests: Sequence[Any], compute: Callable[[list[int]], Sequence[np.ndarray]]) -> list[np.ndarray]:
        """The array of each request; `compute(indices)` gives those of the requests not cached
        (a request made twice, as an audit sender's one receiver alone and "all at once", once)."""
        keys = [hashlib.sha256(self.context + encode(request)).digest() for request in requests]
        first: dict[bytes, int] = {}  # each key's first request, in the order of the requests
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        found = {key: values for key in first if (values := self._read(key)) is not None}
        missing = [key for key in first if key not in found]
        if missing:
            for key, values in zip(missing, compute([first[key] for key in missing]), strict=True):
                found[key] = np.asarray(values, dtype=np.float64)
                if self.cache is not None:
                    self.cache.put(key, found[key])
        self.hits += len(found) - len(missing)
        self.misses += len(missing)
        return [found[key] for key in keys]

    def one(self, request: Any, compute: Callable[[], np.ndarray]) -> np.ndarray:
        return self.many([request], lambda missing: [compute()])[0]

    def _read(self, key: bytes) -> np.ndarray | None:
        return None if self.cache is None else self.cache.get(key, self.length)
