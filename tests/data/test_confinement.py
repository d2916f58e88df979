"""Files a spec names stay inside the project root: the spec's folder, or the folder `--root` names.

A spec from a pull request must not read `/etc/shadow`, nor echo a line of it in a diagnostic.
Every path kind is covered (data file, corrupt file, `use`, model folder) with every way out
(absolute path, `..`, a symlink), and `--root` is the one way to widen the root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.errors import SpecErrors
from circuitlang.ir.lower import load_spec
from tests.conftest import ROOT

SECRET = "TOPSECRET-4711"

SPEC = """circuitlang 1
circuit c on "{model}"
prompts {{
  from "{data}"
  template "{{a}}"
  answer = b
  wrong = a
}}
metric logit_diff(answer, wrong)
ablate zero
role "x": 0.1
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp/project holds specs; tmp/outside holds a secret that looks like prompt rows."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"a,b\n{SECRET},{SECRET}\n")
    (outside / "shared.circ").write_text('circuitlang 1\nlist pets = ["x"]\n')
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "rows.csv").write_text("a,b\n1,2\n")
    return folder


def write(project: Path, data: str = "rows.csv", model: str = "gpt2", name: str = "spec.circ", extra: str = "") -> Path:
    path = project / name
    path.write_text(SPEC.format(model=model, data=data) + extra)
    return path


def checked(capsys, *args: str) -> tuple[int, str]:
    code = main(["check", "--no-tokenize", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("written", ["../outside/secret.csv", "{tmp}/outside/secret.csv", "sub/../../outside/secret.csv"])
def test_a_data_file_outside_the_spec_folder_is_refused_without_echoing_it(project, capsys, written):
    spec = write(project, data=written.format(tmp=project.parent))
    for output in ("text", "json"):
        code, out = checked(capsys, "--format", output, str(spec))
        assert code == 2
        assert f"the data file '{written.format(tmp=project.parent)}' is outside the project root {project}" in out
        assert SECRET not in out
    code, out = checked(capsys, str(spec))
    assert f"{spec}:4:8: semantic error:" in out and "--root DIR" in out


def test_a_symlink_out_of_the_project_is_refused(project, capsys):
    (project / "innocent.csv").symlink_to(project.parent / "outside" / "secret.csv")
    code, out = checked(capsys, str(write(project, data="innocent.csv")))
    assert code == 2 and "the data file 'innocent.csv' is outside the project root" in out and SECRET not in out


def test_a_spec_given_as_a_link_keeps_the_root_where_it_was_given(project, capsys):
    """`project/top.circ -> ../outside/top.circ`: the root stays `project/`, so the spec cannot read
    the secret beside its target (following the link would have moved the root to `outside/`)."""
    outside = project.parent / "outside"
    target = write(outside, data="secret.csv", name="top.circ")
    (project / "top.circ").symlink_to(target)
    code, out = checked(capsys, str(project / "top.circ"))
    assert code == 2 and SECRET not in out
    assert f"is outside the project root {project}" in out or "no such file" in out.lower() or "not found" in out.lower()
    (project / "wide.circ").symlink_to(write(outside, data="../outside/secret.csv", name="wide.circ"))
    code, out = checked(capsys, str(project / "wide.circ"))
    assert code == 2 and f"the data file '../outside/secret.csv' is outside the project root {project}" in out


def test_a_corrupt_file_a_used_file_and_a_model_folder_outside_are_refused(project, capsys):
    (project.parent / "outside" / "model").mkdir()
    (project.parent / "outside" / "model" / "config.json").write_text('{"n_layer": 2, "n_head": 2}')
    spec = write(project, model="../outside/model", extra='use list pets from "../outside/shared.circ"\ncorrupt file("../outside/secret.csv")\n')
    code, out = checked(capsys, str(spec))
    assert code == 2 and SECRET not in out
    assert f"{spec}:2:14: semantic error: the model folder '../outside/model' is outside the project root" in out
    assert f"{spec}:12:20: semantic error: the used file '../outside/shared.circ' is outside the project root" in out
    assert f"{spec}:13:14: semantic error: the corrupt file '../outside/secret.csv' is outside the project root" in out


def test_root_widens_the_project_to_a_folder_the_user_names(project, capsys):
    (project.parent / "outside" / "more.csv").write_text("a,b\n3,4\n")
    spec = write(project, data="../outside/more.csv", extra='use list pets from "../outside/shared.circ"\n')
    assert checked(capsys, str(spec))[0] == 2
    code, out = checked(capsys, "--root", str(project.parent), str(spec))
    assert code == 0, out
    assert load_spec(spec, root=project.parent).prompt_sets[0].source.path == str(project.parent / "outside" / "more.csv")


def test_paths_inside_the_project_resolve_as_before(project, capsys):
    (project / "data").mkdir()
    (project / "data" / "rows.csv").write_text("a,b\n5,6\n")
    assert checked(capsys, str(write(project, data="data/../data/rows.csv")))[0] == 0
    assert checked(capsys, str(write(project, data=str(project / "rows.csv"))))[0] == 0  # absolute, but inside


def test_a_used_files_data_path_is_relative_to_that_file(project):
    """A prompts block taken with `use` reads its rows next to the file that declares it."""
    (project / "lib").mkdir()
    (project / "lib" / "rows.csv").write_text("a,b\n7,8\n")
    (project / "lib" / "prompts.circ").write_text(SPEC.format(model="gpt2", data="rows.csv").replace("prompts {", "prompts p {"))
    spec = project / "user.circ"
    spec.write_text(
        'circuitlang 1\ncircuit c on "gpt2"\nuse prompts p from "lib/prompts.circ"\n'
        'metric logit_diff(answer, wrong)\nablate zero\nrole "x": 0.1\n'
    )
    assert load_spec(spec).prompt_sets[0].source.path == str(project / "lib" / "rows.csv")


def test_every_command_that_reads_a_spec_takes_root():
    from circuitlang.cli import _argument_parser

    parser = _argument_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps no public list
    readers = {name for name, sub in commands.items() if any(a.dest == "root" for a in sub._actions)}
    assert readers == set(commands) - {"fmt"}  # fmt reads no file but the spec itself


def test_the_shipped_specs_stay_inside_their_folder():
    for spec in sorted((ROOT / "specs").glob("*.circ")):
        try:
            load_spec(spec)
        except SpecErrors as errors:
            pytest.fail(f"{spec}: {errors}")


def test_a_folder_swapped_for_a_link_after_the_check_is_caught_when_the_file_is_opened(project, monkeypatch, capsys):
    """The race: the path is checked, then a folder on it becomes a link out of the project before
    the read. Here the swap happens right after the check, every time; the opened file is checked
    again, so the secret is never read."""
    import shutil

    from circuitlang.ir import paths, prompt_sets

    (project / "sub").mkdir()
    (project / "sub" / "secret.csv").write_text("a,b\n1,2\n")
    real = paths.confined

    def check_then_swap(*args, **kwargs):
        checked_path = real(*args, **kwargs)
        if (project / "sub").is_dir() and not (project / "sub").is_symlink():
            shutil.rmtree(project / "sub")
            (project / "sub").symlink_to(project.parent / "outside", target_is_directory=True)
        return checked_path

    monkeypatch.setattr(prompt_sets, "confined", check_then_swap)
    code, out = checked(capsys, str(write(project, data="sub/secret.csv")))
    assert code == 2 and "outside the project root" in out and SECRET not in out


def test_a_used_file_is_checked_again_once_it_is_open(project, monkeypatch, capsys):
    """The same race for `use`: the folder holding the used file becomes a link out of the project
    right after the check."""
    import shutil

    from circuitlang.ir import uses

    (project / "lib").mkdir()
    (project / "lib" / "shared.circ").write_text('circuitlang 1\nlist pets = ["x"]\n')
    real = uses.confined

    def check_then_swap(*args, **kwargs):
        checked_path = real(*args, **kwargs)
        if (project / "lib").is_dir() and not (project / "lib").is_symlink():
            shutil.rmtree(project / "lib")
            (project / "lib").symlink_to(project.parent / "outside", target_is_directory=True)
        return checked_path

    monkeypatch.setattr(uses, "confined", check_then_swap)
    spec = write(project, extra='use list pets from "lib/shared.circ"\n')
    code, out = checked(capsys, str(spec))
    assert code == 2 and "outside the project root" in out
