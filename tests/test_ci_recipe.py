"""The CI recipe: the GitHub Action's steps run as the script they are, and the pre-commit hooks'
entries run as pre-commit runs them (with the staged .circ files appended)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SPECS

BIN = str(Path(sys.executable).parent)  # the environment's `circuitlang` console script


def run_action(tmp_path: Path, specs: list[Path]) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": BIN + os.pathsep + os.environ["PATH"],
        "SPECS": " ".join(map(str, specs)),
        "REPORTS": str(tmp_path / "reports"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "outputs"),
        "VERIFY_ARGS": "--no-audit",
    }
    return subprocess.run(["bash", str(ROOT / "ci" / "action.sh")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)


def action_outputs(tmp_path: Path) -> dict[str, str]:
    """The step outputs as GitHub reads them from $GITHUB_OUTPUT (NAME=VALUE, or NAME<<END ... END)."""
    outputs, lines = {}, iter((tmp_path / "outputs").read_text().splitlines())
    for line in lines:
        if "<<" in line:
            name, end = line.split("<<")
            outputs[name] = "\n".join(iter(lambda: next(lines), end))
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


@pytest.mark.slow
def test_the_action_verifies_every_spec_into_junit_and_a_step_summary(tmp_path):
    """Two specs of the same file name in different folders: reports named by path, not overwritten."""
    for folder, name in (("a", "organism_incr_digits.circ"), ("b", "organism_months.circ")):
        (tmp_path / folder).mkdir()
        shutil.copy(SPECS / name, tmp_path / folder / "organism.circ")
    specs = [tmp_path / "a" / "organism.circ", tmp_path / "b" / "organism.circ", tmp_path / "a" / "organism.circ"]  # one twice
    result = run_action(tmp_path, specs)
    assert result.returncode == 0, result.stdout + result.stderr
    names = ("a__organism", "b__organism")
    assert "incr_digits" in (tmp_path / "reports" / "a__organism.md").read_text()
    assert "months" in (tmp_path / "reports" / "b__organism.md").read_text()
    outputs = action_outputs(tmp_path)
    assert (outputs["verdict"], outputs["exit-code"], outputs["reports"]) == ("passed", "0", str(tmp_path / "reports"))
    assert outputs["pages"].splitlines() == [str(tmp_path / "reports" / f"{name}.html") for name in names]
    assert outputs["junit"].splitlines() == [str(tmp_path / "reports" / f"{name}.xml") for name in names]
    for name in names:
        suite = ElementTree.parse(tmp_path / "reports" / f"{name}.xml").getroot()
        assert suite.get("failures") == "0" and int(suite.get("tests")) >= 1
        page = (tmp_path / "reports" / f"{name}.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and "all claims pass" in page
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("(all claims pass)") == 2  # the spec given twice is verified once
    assert all(f"`{tmp_path / 'reports' / name}.html`" in summary for name in names)  # the page, named
    assert "::error" not in result.stdout and "::notice" not in result.stdout  # quiet when all is well


@pytest.mark.slow
def test_the_action_reports_every_problem_and_exits_with_the_worst(tmp_path):
    good = Path(shutil.copy(SPECS / "organism_incr_digits.circ", tmp_path / "good.circ"))
    failing = tmp_path / "failing.circ"
    failing.write_text(good.read_text().replace("expect faithfulness >= 0.9", "expect faithfulness >= 0.99"))
    broken = tmp_path / "broken.circ"
    broken.write_text(good.read_text().replace("ablate mean of corrupt", "ablate mean of nothing"))
    result = run_action(tmp_path, [good, failing, broken])
    assert result.returncode == 2, result.stdout + result.stderr  # a spec error is worse than a failed claim
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert any(line.startswith(f"::error file={failing},line=") for line in errors)  # the failed claim, at its line
    assert any(line.startswith(f"::error file={broken},line=") for line in errors)  # the spec error, at its line
    assert ElementTree.parse(tmp_path / "reports" / "failing.xml").getroot().get("failures") == "1"
    assert ElementTree.parse(tmp_path / "reports" / "broken.xml").getroot().get("errors") == "1"
    assert "(not verified: exit 2)" in (tmp_path / "reports" / "broken.html").read_text()  # errors reach the page too
    assert ElementTree.parse(tmp_path / "reports" / "good.xml").getroot().get("failures") == "0"
    assert (action_outputs(tmp_path)["verdict"], action_outputs(tmp_path)["exit-code"]) == ("error", "2")


def test_the_action_runs_the_script_with_its_inputs():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    steps = action["runs"]["steps"]
    install = next(step["run"] for step in steps if "pip install" in step.get("run", ""))
    assert install.index("torch==2.13.0") < install.index("[engine]")  # CPU torch first
    [script] = [step for step in steps if "ci/action.sh" in step.get("run", "")]
    script_text = (ROOT / "ci" / "action.sh").read_text()
    for variable in script["env"]:
        assert f"${{{variable}" in script_text, f"the script ignores {variable}"
    assert {key.upper().replace("-", "_") for key in action["inputs"]} - {"PYTHON_VERSION"} == set(script["env"])
    for name, output in action["outputs"].items():  # each output is one the script writes
        assert output["value"] == f"${{{{ steps.{script['id']}.outputs.{name} }}}}"
        assert f'echo "{name}=' in script_text or f'echo "{name}<<' in script_text


@pytest.mark.slow
def test_the_pre_commit_hooks_check_and_format(tmp_path):
    hooks = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"circuitlang-check", "circuitlang-fmt"}
    env = os.environ | {"PATH": BIN + os.pathsep + os.environ["PATH"]}
    messy = tmp_path / "messy.circ"
    canonical = (SPECS / "organism_months.circ").read_text()
    messy.write_text(canonical.replace("ablate mean of corrupt", "ablate    mean of corrupt"))
    broken = tmp_path / "broken.circ"
    broken.write_text(canonical.replace("ablate mean of corrupt", "ablate mean of nothing"))

    def hook(name: str, *files: Path) -> subprocess.CompletedProcess:
        assert hooks[name]["language"] == "python" and hooks[name]["files"] == r"\.circ$"
        return subprocess.run([*shlex.split(hooks[name]["entry"]), *map(str, files)], env=env, capture_output=True, text=True, timeout=120)

    assert hook("circuitlang-check", messy).returncode == 0
    assert hook("circuitlang-check", broken).returncode == 2
    assert hook("circuitlang-fmt", messy).returncode == 0 and messy.read_text() == canonical
