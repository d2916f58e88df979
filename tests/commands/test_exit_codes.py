"""Exit codes CI can trust: 1 means a claim failed and nothing else does.

Every model, data and write failure the hostile-input review found runs here, through the
installed command in a subprocess (as CI runs it), and must end with its code and one clear line:
2 for what the spec or its data must fix, 3 for a model or a file that cannot be written, never a
traceback.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitlang.cli import main
from tests.conftest import ROOT, SPECS, fast_cases

ORGANISM = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights"
SPEC = SPECS / "organism_incr_digits.circ"


def _garbage(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\x93NUMPY not safetensors at all" * 100)


def _truncated(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])


def _config(**changes: object):
    def damage(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | changes))

    return damage


def _config_is_a_list(folder: Path) -> None:
    (folder / "config.json").write_text("[1, 2]")


def _pickled(folder: Path, config_layers: int | None = None) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    if config_layers is not None:
        _config(n_layer=config_layers)(folder)


class _RunsCode:
    """A pickle that runs a shell command when unpickled without `weights_only`."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def _malicious_pickle(folder: Path) -> None:
    import pickle

    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"h.0.ln_1.weight": _RunsCode()}))


def _no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


MODEL_FAILURES = [
    ("truncated weights", _truncated, 3, "cannot load the model in"),
    ("weights that are not safetensors", _garbage, 3, "cannot load the model in"),
    ("config is a list", _config_is_a_list, 3, "config.json is a JSON list, not an object"),
    (
        "config claims 6 layers, weights hold 4",
        _config(n_layer=6),
        3,
        "has 6 layers, but its weights hold none for layer(s) 4, 5: they would run with random weights",
    ),
    ("config with other widths", _config(n_embd=96), 3, "cannot load the model in"),
    ("pickle-only checkpoint whose config disagrees", lambda f: _pickled(f, 6), 3, "weights hold none for layer(s) 4, 5"),
    ("pickle that runs code", _malicious_pickle, 3, "cannot load the model in"),
    ("no tokenizer", _no_tokenizer, 3, "has no tokenizer (none of tokenizer.json"),
]


def circuitlang(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "circuitlang", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    "name, damage, code, message", fast_cases(MODEL_FAILURES, ("config is a list",), unpack=True), ids=[m[0] for m in MODEL_FAILURES]
)
def test_a_broken_model_folder_exits_with_its_code_and_one_clear_line(tmp_path, name, damage, code, message):
    """A model error is 3 whether it is found when the spec is read or when the weights load."""
    folder = shutil.copytree(ORGANISM, tmp_path / "model")
    damage(folder)
    spec = tmp_path / "spec.circ"
    spec.write_text(SPEC.read_text().replace('"organism:seqcont"', '"./model"'))
    result = circuitlang("verify", str(spec), cwd=tmp_path)
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{spec}:8:" in result.stderr  # at the `circuit ... on` line
    assert message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("command", ["check", "verify", "plan", "draw"])
def test_a_model_folder_that_cannot_be_read_is_exit_3_in_every_command(tmp_path, command, capsys):
    """`check` says "model error" as verify does, and exits with the code the README gives it."""
    folder = shutil.copytree(ORGANISM, tmp_path / "model")
    _config_is_a_list(folder)
    spec = tmp_path / "spec.circ"
    spec.write_text(SPEC.read_text().replace('"organism:seqcont"', '"./model"'))
    extra = ["-o", str(tmp_path / "c.svg")] if command == "draw" else []
    assert main([command, str(spec), *extra]) == 3
    said = "".join(capsys.readouterr())
    assert "model error" in said and "config.json is a JSON list" in said and "Traceback" not in said


@pytest.mark.parametrize(
    "on, message",
    [
        ("organism:nope", "no shipped organism named 'nope'"),
        ("./missing", "model folder './missing' does not exist"),
        ("./empty", "empty is not a model folder: it has no config.json"),
    ],
)
def test_a_model_name_that_resolves_to_nothing_is_the_specs_to_fix(tmp_path, on, message, capsys):
    """Exit 2, and the spec's other errors are reported with it."""
    (tmp_path / "empty").mkdir()
    spec = tmp_path / "spec.circ"
    spec.write_text(SPEC.read_text().replace('"organism:seqcont"', f'"{on}"') + "expect bogus_metric >= 1\n")
    for command in ("check", "verify"):
        assert main([command, str(spec)]) == 2
        said = "".join(capsys.readouterr())
        assert message in said and "unknown claim 'bogus_metric'" in said and "Traceback" not in said


DEVICE_COMMANDS = [
    ["verify", str(SPEC)],
    ["compare", str(SPEC)],
    ["patch", str(SPEC)],
    ["curve", str(SPEC)],
    ["discover", str(SPEC), "--method", "prune"],
    ["attention", str(SPEC), "--heads", "0.0", "-o", "out"],
    ["lens", str(SPEC), "-o", "out"],
]


@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:7"])
def test_a_device_this_machine_lacks_is_a_usage_error_at_the_option(device, capsys):
    import torch

    if (device == "cuda" and torch.cuda.is_available()) or (device == "cuda:7" and torch.cuda.device_count() > 7):
        pytest.skip("this machine has that GPU")
    for command in DEVICE_COMMANDS:
        assert main([*command, "--device", device]) == 2, command
        err = capsys.readouterr().err
        assert "argument --device" in err and f"'{device}'" in err and "model error" not in err, err


def test_the_exit_code_tables_say_what_the_code_does():
    """README and docs/ci.md give the same codes as circuitlang.errors, which every command uses."""
    from circuitlang import errors

    table = (ROOT / "docs" / "ci.md").read_text().split("## Exit codes")[1].split("##")[0]
    rows = {
        int(line.split("|")[1]): line.split("|")[2]
        for line in table.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip().isdigit()
    }
    assert errors.EXIT_CLAIM_FAILED == 1 and "claim failed" in rows[1]
    assert errors.EXIT_SPEC_ERROR == 2 and "command-line option" in rows[2]
    assert errors.EXIT_RUNTIME_ERROR == 3 and "model" in rows[3]
    readme = (ROOT / "README.md").read_text()
    assert "2 spec or usage error" in readme and "3 model or runtime error" in readme
    assert errors.exit_code([errors.ModelError("m", None), errors.DataError("d", None)]) == 3
    assert errors.exit_code([errors.DataError("d", None), errors.SpecError("s", None)]) == 2


def test_a_config_with_fewer_layers_than_its_weights_is_a_model_error(tmp_path):
    """(Through the loader: a spec naming layer 3 would already fail `check` against this config.)"""
    from circuitlang.engine.models import load_model
    from circuitlang.errors import ModelError
    from circuitlang.ir.lower import load_spec

    folder = shutil.copytree(ORGANISM, tmp_path / "model")
    _config(n_layer=3)(folder)
    model = load_spec(SPEC).model.model_copy(update={"path": str(folder), "source": "local"})
    with pytest.raises(ModelError, match="has 3 layers, but its weights hold 4: the rest would be dropped"):
        load_model(model)


@pytest.mark.slow
def test_a_pickle_only_checkpoint_that_agrees_with_its_config_loads(tmp_path):
    """transformers reads it with torch's weights-only unpickler: tensors, no code."""
    folder = shutil.copytree(ORGANISM, tmp_path / "model")
    _pickled(folder)
    spec = tmp_path / "spec.circ"
    spec.write_text(SPEC.read_text().replace('"organism:seqcont"', '"./model"'))
    result = circuitlang("plan", str(spec))
    assert result.returncode == 0, result.stderr
    from circuitlang.api import load, open_run

    run = open_run(load(spec))
    assert run.model.identity.n_layers == 4


def test_verify_refuses_an_output_it_cannot_write_before_the_run(tmp_path):
    result = circuitlang("verify", str(SPEC), "-o", str(tmp_path))  # a directory
    assert result.returncode == 3 and "cannot write the report: it is a directory" in result.stderr
    assert "Traceback" not in result.stderr and "loading" not in result.stderr


def test_a_report_lost_after_the_run_still_shows_the_verdict(tmp_path, monkeypatch, capsys):
    import circuitlang.report.files as files

    def refuse(path, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "write_atomically", refuse)
    assert main(["verify", str(SPEC), "--no-audit", "-o", str(tmp_path / "report.json")]) == 3
    err = capsys.readouterr().err
    assert "report.json: cannot write the report: No space left on device" in err
    assert "all claims pass" in err


@pytest.mark.slow
def test_discover_refuses_an_output_it_cannot_write_before_loading_torch(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    probe = (
        "import sys; from circuitlang.cli import main; "
        f"code = main(['discover', {str(SPEC)!r}, '--method', 'prune', '-o', {str(blocked / 'x.circ')!r}]); "
        "print('torch' in sys.modules); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "cannot write the spec" in result.stderr
    assert result.stdout.strip() == "False"


def test_discover_checks_the_spec_before_loading_torch(tmp_path):
    bad = tmp_path / "bad.circ"
    bad.write_text('circuitlang 1\ncircuit c on "gpt2"\nmetrik kl\n')
    probe = (
        "import sys; from circuitlang.cli import main; "
        f"code = main(['discover', {str(bad)!r}, '--method', 'prune', '-o', {str(tmp_path / 'x.circ')!r}]); "
        "print('torch' in sys.modules); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "syntax error" in result.stderr
    assert result.stdout.strip() == "False"


def test_fmt_write_failure_is_a_runtime_error_and_the_file_is_untouched(tmp_path, monkeypatch, capsys):
    import circuitlang.report.files as files

    spec = tmp_path / "messy.circ"
    messy = SPEC.read_text().replace("ablate mean of corrupt", "ablate   mean of corrupt")
    spec.write_text(messy)
    monkeypatch.setattr(files, "write_atomically", lambda path, content: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    assert main(["fmt", "-w", str(spec)]) == 3
    assert f"{spec}: cannot write: Permission denied" in capsys.readouterr().err
    assert spec.read_text() == messy


@pytest.mark.slow
def test_fmt_reads_a_spec_as_check_does(tmp_path, capsys):
    """A byte-order mark is dropped (check accepts it); a byte that is not UTF-8 is an error at its place."""
    canonical = subprocess.run([sys.executable, "-m", "circuitlang", "fmt", str(SPEC)], capture_output=True, text=True, check=True).stdout
    bom = tmp_path / "bom.circ"
    bom.write_bytes(b"\xef\xbb\xbf" + canonical.encode())
    assert main(["check", "--no-tokenize", str(bom)]) == 0
    capsys.readouterr()
    assert main(["fmt", str(bom)]) == 0 and capsys.readouterr().out == canonical
    assert main(["fmt", "--check", str(bom)]) == 1  # the canonical form has no byte-order mark
    assert main(["fmt", "-w", str(bom)]) == 0 and bom.read_bytes() == canonical.encode()
    assert main(["fmt", "--check", str(bom)]) == 0
    latin = tmp_path / "latin.circ"
    latin.write_bytes(canonical.replace("circuit ", "# caf\u00e9\ncircuit ", 1).encode("latin-1"))
    assert main(["fmt", str(latin)]) == 2
    err = capsys.readouterr().err
    assert f"{latin}:" in err and "byte 0xe9 is not UTF-8 text" in err and "Traceback" not in err


def test_import_of_a_graph_claiming_a_huge_model_is_refused_before_building_it(tmp_path, capsys):
    graph = tmp_path / "huge.json"
    graph.write_text(json.dumps({"cfg": {"n_layers": 400, "n_heads": 64}, "nodes": {}, "edges": {}}))
    base = tmp_path / "base.circ"
    base.write_text(SPEC.read_text().replace('"organism:seqcont"', '"some-org/unknown-model"'))
    assert main(["import", str(graph), "--base", str(base)]) == 2
    err = capsys.readouterr().err
    assert "400 layers x 64 heads, whose graph has more than 5,000,000 edges (the graph size limit)" in err
    assert "--max-edges" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"cfg": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nesting too deep"),  # within the value bound (18,480 here)
        (b'{"cfg": {"n_layers": ' + b"9" * 5000 + b"}}", "a number too long"),
        (b"\xff\xfe", "not JSON"),
        (json.dumps({"cfg": {"n_layers": -1, "n_heads": 2}, "nodes": {}, "edges": {}}).encode(), "positive integers"),
    ],
)
def test_a_hostile_graph_file_is_a_data_error(tmp_path, capsys, content, message):
    graph = tmp_path / "g.json"
    graph.write_bytes(content)
    assert main(["import", str(graph), "--base", str(SPECS / "organism_ioi.circ")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_graph_file_larger_than_the_limit_is_not_read(tmp_path, capsys):
    graph = tmp_path / "g.json"
    graph.write_text(" " * 2001)
    assert main(["import", str(graph), "--base", str(SPECS / "organism_ioi.circ"), "--max-edges", "10"]) == 2
    assert "2,001 bytes, more than the 2,000 the graph size limit allows" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.08, 0.3])
def test_ctrl_c_exits_130_with_one_line_and_leaves_no_empty_output_folder(tmp_path, delay):
    """At any moment of the model load, imports included: an interrupt inside code that Python
    runs through `exec` (dataclasses) once made the process die by SIGINT after printing its line."""
    out = tmp_path / "patched"
    process = subprocess.Popen(
        [sys.executable, "-m", "circuitlang", "patch", str(SPEC), "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not out.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the folder is made before the model loads: interrupt during the load
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "circuitlang: interrupted"
    assert not out.exists()


@pytest.mark.slow
def test_a_clean_run_writes_nothing_but_its_report():
    """No third-party progress bar ("Loading weights") on stderr: CI logs hold what circuitlang says."""
    result = circuitlang("verify", str(SPEC), "--no-audit", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"]
    assert all(line.startswith("verify: ") for line in result.stderr.splitlines())  # progress lines at most


def test_a_data_file_larger_than_the_limit_is_not_read(tmp_path, monkeypatch, capsys):
    import circuitlang.data.files as files

    monkeypatch.setattr(files, "MAX_DATA_FILE_BYTES", 100)
    (tmp_path / "rows.csv").write_text("s1,s2,answer,wrong\n" + "1,2,3,2\n" * 20)
    spec = tmp_path / "spec.circ"
    spec.write_text(
        'circuitlang 1\ncircuit c on "organism:seqcont"\nprompts p {\n  template "{s1} {s2}"\n'
        '  from "rows.csv"\n}\nmetric logit_diff(answer, wrong)\nablate zero\nrole "r": 0.0\n'
    )
    assert main(["check", "--no-tokenize", str(spec)]) == 2
    assert f"{spec}:5:3: data error: rows.csv is 179 bytes, more than the 100 a data file may hold" in capsys.readouterr().out


@pytest.mark.parametrize("args", fast_cases([["check", "--format", "json"], ["fmt"], ["plan"]], (["fmt"],)))
def test_a_reader_that_goes_away_ends_the_command_quietly(args):
    """`circuitlang check --format json spec | head`: the reader has gone before the first write.
    The command ends as a process killed by SIGPIPE does (141), without a BrokenPipe traceback."""
    process = subprocess.Popen([sys.executable, "-m", "circuitlang", *args, str(SPEC)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone: every write to stdout fails with EPIPE
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGPIPE
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
