"""Writing files: the one place a file the user asked for is written, and the one atomic writer
(`write_then_rename`; the engine's result cache writes its entries with it too).

Light on purpose (standard library only: no numpy, no torch): `check`, `fmt`, `draw` and
`import` write files in the light install too, and the engine imports it without a cycle.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file. The
    one writer of every output file (reports, specs, graphs, pictures). An existing file keeps its
    permissions; a temporary file left by a writer that was killed (SIGKILL runs no cleanup) is
    removed by the next write to the same path."""
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
