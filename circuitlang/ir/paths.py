"""Paths written in a spec, confined to the project root.

Specs arrive from pull requests, so a path in one is untrusted: `from "/etc/shadow"` must not
put a line of that file into a diagnostic. Every path a spec names (data files, corrupt files,
`use` files, local model folders) is relative to the file that wrote it and must resolve,
symlinks followed, inside the root: the folder of the spec given on the command line, or the
folder named with `--root`. The check runs before the file is opened.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from circuitlang.errors import Span, SpecError

ROOT_HINT = "keep the files a spec names in its folder or below it, or name a wider project root with --root DIR"


def default_root(spec_path: str | Path) -> Path:
    """The root when none is named: the folder of the spec as given on the command line. A spec
    that is a link is not followed for this: `proj/top.circ -> ../outside/top.circ` keeps the root
    at `proj/`, so a link cannot widen what the spec may read."""
    return Path(os.path.abspath(spec_path)).parent


def confined(written: str, span: Span, root: Path, what: str) -> Path:
    """`written`, relative to the folder of the file at `span`, resolved and checked to lie in
    `root`; a `SpecError` at `span` otherwise. The error names the root, never file content."""
    base = Path(os.path.abspath(span.path)).parent  # the folder the file was named in, as for the root
    try:
        path = (base / Path(written).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as error:  # symlink loops, names the OS refuses
        raise SpecError(f"cannot resolve the {what} path '{written}': {error}", span, "check the path") from None
    if not path.is_relative_to(root.resolve()):
        raise SpecError(f"the {what} '{written}' is outside the project root {root}", span, ROOT_HINT)
    return path


def is_file(path: Path) -> bool:
    """`Path.is_file`, False where the OS refuses the name (too long, say) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


MAX_CONFIG_BYTES = 4 << 20  # a Hugging Face config.json is a few KB


class NotAReadableFile(OSError):
    """A file of a model folder that is not a regular file (a device, a FIFO: `/dev/zero` is read
    without end) or is larger than its limit."""


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of `path` (links followed, as the folder's own files may be links into a cache),
    refused unless it is a regular file of at most `limit` bytes; the size is checked before
    reading and the read stops after `limit`, so a file that grows cannot pass."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        return _read_open(descriptor, path, limit, what)
    finally:
        os.close(descriptor)


def read_confined(path: Path, root: Path | None, limit: int, what: str) -> bytes:
    """`read_regular`, and the file opened is checked to lie inside `root` once it is open: a
    folder swapped for a link between the confinement check and the read would otherwise let the
    read follow it out of the project (Linux names the opened file in /proc/self/fd; elsewhere the
    opened file must be the one the resolved path names now)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if root is not None and not _opened_inside(descriptor, path, root):
            why = f"the {what} opened is outside the project root {root} (a folder changed into a link)"
            raise NotAReadableFile(errno.EACCES, why, str(path))
        return _read_open(descriptor, path, limit, what)
    finally:
        os.close(descriptor)


def _opened_inside(descriptor: int, path: Path, root: Path) -> bool:
    proc = Path(f"/proc/self/fd/{descriptor}")
    if proc.parent.is_dir():
        return Path(os.path.realpath(proc)).is_relative_to(root.resolve())
    opened, named = os.fstat(descriptor), os.stat(path.resolve())
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino) and path.resolve().is_relative_to(root.resolve())


def _read_open(descriptor: int, path: Path, limit: int, what: str) -> bytes:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        raise NotAReadableFile(errno.EINVAL, f"the {what} is not a regular file (a device, a FIFO or a socket)", str(path))
    if info.st_size > limit:
        raise NotAReadableFile(errno.EFBIG, f"the {what} has {info.st_size:,} bytes, more than the {limit:,} allowed", str(path))
    with os.fdopen(descriptor, "rb", closefd=False) as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise NotAReadableFile(errno.EFBIG, f"the {what} grew past the {limit:,} bytes allowed", str(path))
    return data
