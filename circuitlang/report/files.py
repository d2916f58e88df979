"""Writing files: the one place a file the user asked for is written, and the one atomic writer
(`write_then_rename`; the engine's result cache writes its entries with it too).

Light on purpose (standard library only: no numpy, no torch): `check`, `fmt`, `draw` and
`import` write files in the light install too, and the engine imports it without a cycle.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path


class NotARegularFile(OSError):
    """An output path that names something other than a regular file: a device, a FIFO, a socket,
    a folder, or a link. Renaming a file over it would replace the node itself (`-o /dev/null` as
    root would replace the system's), and writing through a link writes where it points; so such
    a target is refused, and the message says what to give instead."""


def special_target(path: Path) -> str:
    """Why `path` must not be written, or "" when it is missing or a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError:
        return ""  # the write itself will say what is wrong
    if stat.S_ISLNK(mode):
        return "it is a link; give the file it points to, or - for standard output"
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, a FIFO or a socket"
        return f"it is {kind}, not a regular file; give a file path, or - for standard output"
    return ""


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file. The
    one writer of every output file (reports, specs, graphs, pictures). An existing file keeps its
    permissions; a temporary file left by a writer that was killed (SIGKILL runs no cleanup) is
    removed by the next write to the same path. A target that is not a regular file is refused
    (`NotARegularFile`)."""
    why = special_target(path)
    if why:
        raise NotARegularFile(errno.EINVAL, why, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    write_then_rename(path, content.encode("utf-8") if isinstance(content, str) else content, _mode_for(path))


def write_then_rename(path: Path, data: bytes, mode: int) -> None:
    """The one atomic writer: `data` into a temporary file in `path`'s folder (which must exist),
    given the permissions `mode`, then renamed over `path`, so that a reader sees the old file or
    the new one, never half of one. `write_atomically` writes output files with it, the result
    cache its entries (without a listing of the folder per entry, which `_remove_orphans` makes:
    the cache removes stale temporary files when it lists its folders to evict)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or an ordinary file's (mkstemp makes files private)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _remove_orphans(path: Path) -> None:
    """Temporary files of `path` whose writing process no longer exists."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    for candidate in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match and not _alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process: leave its file alone
        return True
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
