"""Output files and terminal output: written whole or not at all, and user text shown as written.

The atomic writer is the one writer of every file a command produces (report, spec, graph,
picture). A writer killed with SIGKILL runs no cleanup, so its temporary file is removed by the
next write; a replaced file keeps its permissions. Names a spec chooses (roles, paths) pass
through rich, which must not read them as markup or emoji codes.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from circuitlang.cli import main
from circuitlang.report.files import write_atomically
from tests.conftest import SPECS


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    write_atomically(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "new.json", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "report.json"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; import circuitlang.report.files as files\n"
                "files.os.replace = lambda *a: time.sleep(60)  # stop between writing and renaming\n"
                f"files.write_atomically(Path({str(target)!r}), 'partial')"
            ),
        ]
    )
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".report.json.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    [orphan] = tmp_path.glob(".report.json.*.tmp")
    assert f".report.json.{writer.pid}." in orphan.name and not target.exists()
    write_atomically(target, "whole")
    assert target.read_text() == "whole" and list(tmp_path.glob(".report.json.*")) == []


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    mine = tmp_path / f".report.json.{os.getpid()}.abc123.tmp"
    mine.write_text("being written")
    write_atomically(tmp_path / "report.json", "x")
    assert mine.exists()


def test_names_in_a_spec_are_shown_as_written_not_as_markup_or_emoji(tmp_path, capsys):
    text = (SPECS / "organism_incr_digits.circ").read_text()
    role = next(line for line in text.splitlines() if line.startswith("role "))
    name = role.split('"')[1]
    spec = tmp_path / ":x: [bold]spec.circ"
    spec.write_text(text.replace(f'"{name}"', '"mover :x: [red]not red"'))
    assert main(["check", "--no-tokenize", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"ok {spec}:" in out and "❌" not in out
    spec.write_text(spec.read_text().replace("ablate mean of corrupt", 'ablate mean of corrupt\nrole ":x:": 99.0'))
    assert main(["check", "--no-tokenize", str(spec)]) == 2
    out = capsys.readouterr().out
    lines = out.splitlines()
    source = next(i for i, line in enumerate(lines) if line.endswith('| role ":x:": 99.0'))
    assert lines[source + 1].index("^") == lines[source].index("99.0")  # the caret under the layer, not shifted
    assert "❌" not in out
    assert f"{spec}: 1 error(s)" in out


@pytest.mark.slow
def test_verify_tables_show_role_names_as_written(tmp_path):
    text = (SPECS / "organism_incr_digits.circ").read_text()
    role = next(line for line in text.splitlines() if line.startswith("role ")).split('"')[1]
    spec = tmp_path / "spec.circ"
    spec.write_text(text.replace(f'"{role}"', '"[bold]mover :x:"'))
    result = subprocess.run(
        [sys.executable, "-m", "circuitlang", "verify", str(spec), "--no-audit"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLUMNS": "250"},
    )
    assert result.returncode in (0, 1), result.stderr
    assert "[bold]mover :x:" in result.stdout and "❌" not in result.stdout


@pytest.mark.parametrize("kind", ["fifo", "link to a file", "link to stdout"])
def test_an_output_that_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path, capsys, kind):
    """Renaming a report over a FIFO, a device or a link would replace the node itself (as root,
    `-o /dev/null` would replace the system's); writing through a link writes where it points."""
    target = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "link to a file":
        (tmp_path / "elsewhere.json").write_text("kept")
        target.symlink_to(tmp_path / "elsewhere.json")
    else:
        target.symlink_to("/proc/self/fd/1")
    before = os.lstat(target)
    assert main(["verify", str(SPECS / "organism_incr_digits.circ"), "--format", "json", "-o", str(target)]) == 3
    err = capsys.readouterr().err
    assert "not a regular file" in err or "it is a link" in err
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    with pytest.raises(OSError, match="not a regular file|it is a link"):
        write_atomically(target, "x")
