"""The files of a model folder, checked before anything reads them.

A local model folder arrives with the spec that names it, and a hub snapshot with whatever the
hub served, so their files are untrusted input like a data file. Before `check` tokenizes or the
engine loads, every file a load may read (config, tokenizer files, weight indexes, weights) must:

- be a regular file: a link to /dev/zero is read without end, a FIFO blocks the load;
- resolve inside the folder it may come from: the project root for a local folder (as data
  files), the repository's folder of the Hugging Face cache for a hub snapshot (whose files are
  links into its `blobs/`), the package for a shipped organism;
- stay within a size limit, and a tokenizer within a count of entries: the tokenizers library
  holds about 280 bytes per string of a tokenizer.json, so a 36 MB file of 3 million merges took
  1.6 GB; the entries are counted from the bytes, without building anything.

Weights have no size limit here: the memory estimate (compile/memory.py) weighs them against the
memory available before the load. `FolderState` records what was checked, so that a file changed
between this check and the load (which transformers reads by path) is refused afterwards.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from circuitlang.errors import ModelError, Span
from circuitlang.ir.models import ModelRef
from circuitlang.ir.paths import MAX_CONFIG_BYTES, read_confined

MAX_SMALL_FILE_BYTES = 16 << 20  # tokenizer_config.json, generation_config.json, weight indexes, chat templates
MAX_VOCABULARY_BYTES = 128 << 20  # tokenizer.json (Gemma 3's, the largest in common use: 33 MB), vocab.json, merges.txt
# Strings of a tokenizer.json or vocab.json, lines of a merges.txt, vocab.txt or .tiktoken file.
# Gemma 3's tokenizer.json holds about 1.3 million strings (262,144 tokens, 514,906 merges); at the
# limit the tokenizers library takes about 850 MB.
MAX_VOCABULARY_ENTRIES = 3_000_000

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".msgpack", ".h5", ".pt", ".pth")
READ_SUFFIXES = (".json", ".model", ".txt", ".tiktoken", ".jinja", *WEIGHT_SUFFIXES)
COUNTED_BY_STRINGS = ("tokenizer.json", "vocab.json")
COUNTED_BY_LINES = ("merges.txt", "vocab.txt")
VOCABULARY_FILES = (*COUNTED_BY_STRINGS, *COUNTED_BY_LINES, "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")

LIMIT_HINT = "a model folder holds regular files: config.json, the tokenizer's files, the weights"


@dataclass(frozen=True)
class FileLimit:
    max_bytes: int | None  # None: weights, weighed against memory by the estimate instead
    count: str | None = None  # "strings" or "lines": entries counted and bounded by MAX_VOCABULARY_ENTRIES


def file_limit(name: str) -> FileLimit | None:
    """The limit of a file a load may read, or None for a file no load reads (a README, a .py
    file: remote code is never run)."""
    if not name.endswith(READ_SUFFIXES):
        return None
    if name == "config.json":
        return FileLimit(MAX_CONFIG_BYTES)
    if name in COUNTED_BY_STRINGS:
        return FileLimit(MAX_VOCABULARY_BYTES, "strings")
    if name in COUNTED_BY_LINES or name.endswith(".tiktoken"):
        return FileLimit(MAX_VOCABULARY_BYTES, "lines")
    if name in VOCABULARY_FILES or name.endswith(".model"):
        return FileLimit(MAX_VOCABULARY_BYTES)
    if name.endswith(WEIGHT_SUFFIXES):
        return FileLimit(None)
    return FileLimit(MAX_SMALL_FILE_BYTES)


def count_entries(data: bytes, count: str) -> int:
    """Entries of a vocabulary file, counted from its bytes: the strings of a JSON file (at most
    half its quotes; escaped quotes only raise the count), or its lines."""
    return data.count(b'"') // 2 if count == "strings" else data.count(b"\n") + 1


@dataclass(frozen=True)
class FolderState:
    """Identity of each file checked (device, inode, size, modification time), to compare after
    the load."""

    folder: Path
    files: dict[str, tuple[int, int, int, int]]

    def changed(self) -> list[str]:
        """Names of the files that are no longer the ones checked."""
        now = {name: _identity(self.folder / name) for name in self.files}
        return [name for name, before in self.files.items() if now[name] != before]


def check_model_folder(folder: Path, allowed: Path, span: Span) -> FolderState:
    """Check every file of `folder` a load may read, as the module says; raise a ModelError that
    names the file and the limit."""
    files = {}
    for entry in _entries(folder, span):
        limit = file_limit(entry.name)
        if limit is None:
            continue
        identity = _check_file(entry, limit, allowed, span)
        if identity is not None:
            files[entry.name] = identity
    return FolderState(folder, files)


def read_vocabulary_file(path: Path, allowed: Path, span: Span) -> bytes:
    """The bytes of a tokenizer file, checked as `check_model_folder` checks it; the bytes read
    are the bytes checked, so `check` builds its tokenizer from them (`Tokenizer.from_str`)."""
    limit = file_limit(path.name) or FileLimit(MAX_VOCABULARY_BYTES, "strings")
    _check_place(path, allowed, span)
    return _read_counted(path, limit, allowed, span)


def read_config(folder: Path, allowed: Path) -> bytes:
    """The bytes of the folder's config.json: a regular file of at most MAX_CONFIG_BYTES, opened
    inside `allowed` (OSError otherwise, FileNotFoundError when there is none)."""
    return read_confined(folder / "config.json", allowed, MAX_CONFIG_BYTES, "config.json")


def model_files_root(model: ModelRef, folder: Path) -> Path:
    """Where the files of a model folder may resolve: the project root for a local folder (the
    folder itself when no root is known, as for a folder given to the Python API), the package
    folder for an organism, the repository's folder of the Hugging Face cache for a hub snapshot
    (`models--org--name/snapshots/REV/` links into `models--org--name/blobs/`)."""
    if model.source == "local":
        return Path(model.root) if model.root else folder
    if model.source == "hub" and folder.parent.name == "snapshots":
        return folder.parent.parent
    return folder


def _entries(folder: Path, span: Span) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except NotADirectoryError:
        return []
    except OSError as error:
        raise ModelError(f"cannot list the model folder {folder}: {error.strerror or error}", span, LIMIT_HINT) from None


def _check_file(entry: Path, limit: FileLimit, allowed: Path, span: Span) -> tuple[int, int, int, int] | None:
    try:
        info = os.stat(entry)
    except OSError:
        return None  # a dangling link: the load says what is missing
    _check_place(entry, allowed, span)
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{entry} is not a regular file (a device, a FIFO or a socket)", span, LIMIT_HINT)
    if limit.max_bytes is not None and info.st_size > limit.max_bytes:
        raise ModelError(
            f"{entry} has {info.st_size:,} bytes, more than the {limit.max_bytes:,} a model's {entry.name} may have",
            span,
            "this is not the file a Hugging Face model saves; save the model again (save_pretrained)",
        )
    if limit.count is not None:
        _read_counted(entry, limit, allowed, span)
    return _identity(entry)


def _check_place(path: Path, allowed: Path, span: Span) -> None:
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(Path(os.path.realpath(allowed))):
        raise ModelError(
            f"{path} is a link to {resolved}, outside {allowed}",
            span,
            "keep the model's files in its folder (copies, not links), or name a wider project root with --root DIR",
        )


def _read_counted(path: Path, limit: FileLimit, allowed: Path, span: Span) -> bytes:
    try:
        data = read_confined(path, allowed, limit.max_bytes or MAX_VOCABULARY_BYTES, path.name)
    except OSError as error:
        raise ModelError(f"cannot read {path}: {error.strerror or error}", span, LIMIT_HINT) from None
    entries = count_entries(data, limit.count) if limit.count else 0
    if entries > MAX_VOCABULARY_ENTRIES:
        raise ModelError(
            f"{path} holds about {entries:,} {limit.count}, more than the {MAX_VOCABULARY_ENTRIES:,} a tokenizer may have "
            "(the largest in common use, Gemma 3's, holds 1.3 million)",
            span,
            "this is not a tokenizer a model was trained with; save the model's own tokenizer (tokenizer.save_pretrained)",
        )
    return data


def _identity(path: Path) -> tuple[int, int, int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, -1, 0)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
