"""docs/tutorial.md runs as written: its files are written, its commands run in an empty folder with
the exit codes it states, the output it shows is what they print, and its Python runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.doc_blocks import blocks, run_python_blocks

TUTORIAL = ROOT / "docs" / "tutorial.md"
ELIDED = "…"


def steps(markdown: Path) -> list[tuple[int, str, str]]:
    """(line, language, body) of every fenced block, in document order."""
    found = [(line, language, body) for language in ("circ", "console", "python") for line, body in blocks(markdown, language)]
    return sorted(found)


def file_name_before(markdown: Path, line: int) -> str:
    """A file block is announced by a line "`NAME`:" just before its fence."""
    previous = [text for text in markdown.read_text().splitlines()[: line - 1] if text.strip()][-1]
    match = re.fullmatch(r"`([\w.-]+)`:", previous.strip())
    assert match, f"{markdown.name}:{line}: a circ block must follow a line naming its file (`name.circ`:)"
    return match.group(1)


def commands(body: str) -> list[tuple[str, int, list[str]]]:
    """(command, expected exit code, shown output lines) of a console block."""
    parsed: list[tuple[str, int, list[str]]] = []
    for text in body.splitlines():
        if text.startswith("$ "):
            command, _, code = text[2:].partition("  # exits ")
            parsed.append((command, int(code or 0), []))
        elif text.strip() and text.strip() != ELIDED:
            parsed[-1][2].append(text)
    return parsed


def squeeze(text: str) -> str:
    return " ".join(text.split())


def run_command(command: str, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def check_command(command: str, code: int, shown: list[str], folder: Path, line: int) -> None:
    result = run_command(command, folder)
    printed = result.stdout + result.stderr
    where = f"tutorial.md:{line}: `{command}`"
    assert result.returncode == code, f"{where} exited {result.returncode}, the tutorial says {code}\n{printed}"
    assert "Traceback" not in printed, f"{where} printed a traceback\n{printed}"
    actual = squeeze(printed)
    for expected in shown:
        assert squeeze(expected) in actual, f"{where} did not print: {expected}\n{printed}"


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    kinds = [language for _, language, _ in steps(TUTORIAL)]
    assert kinds.count("console") >= 6 and "python" in kinds and "circ" in kinds
    for line, language, body in steps(TUTORIAL):
        if language == "circ":
            (tmp_path / file_name_before(TUTORIAL, line)).write_text(body)
        elif language == "console":
            for command, code, shown in commands(body):
                check_command(command, code, shown, tmp_path, line)
        else:
            python_only = tmp_path / "_block.md"
            python_only.write_text("\n" * (line - 1) + f"```python\n{body}```\n")
            run_python_blocks(python_only, namespace)
    assert namespace["report"].passed
    drawn = (tmp_path / "counting_down.svg").read_text()
    shown = (ROOT / "docs" / "pictures" / "tutorial_counting_down.svg").read_text()
    for node in ("0.0", "0.2", "mlp 0", "mlp 3", "logits"):  # the picture in the docs is this circuit's
        assert node in drawn and node in shown


def test_console_blocks_parse_exit_codes_and_output():
    parsed = commands("$ circuitlang check a.circ  # exits 2\nerror line\n…\n$ ls\n")
    assert parsed == [("circuitlang check a.circ", 2, ["error line"]), ("ls", 0, [])]
