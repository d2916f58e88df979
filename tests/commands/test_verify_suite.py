"""`circuitlang verify A.circ B.circ ...`: a suite in one process, each spec's report what `verify`
gives it alone; outputs in folders; the worst exit code; and `--ray`'s errors said before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.commands.verify_suite import report_name
from tests.conftest import ROOT
from tests.engine.test_result_cache import few_prompts_spec

BROKEN = 'circuitlang 1\ncircuit broken on "organism:seqcont"\nprompts p {\n  template "{x}"\n  x = "1"\n}\nmetric logit_diff(answer, wrong)\n'


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("suite")
    broken = folder / "broken.circ"
    broken.write_text(BROKEN)
    return [few_prompts_spec(folder, "small"), broken, few_prompts_spec(folder, "csv")]


def without_time(text: str) -> str:
    return json.dumps(dict(json.loads(text), seconds=None), sort_keys=True)


def test_each_spec_of_a_suite_gets_the_report_it_gets_alone(specs, tmp_path, capsys):
    small, broken, csv = specs
    out = tmp_path / "reports"
    assert main(["verify", str(small), str(broken), str(csv), "--no-cache", "--format", "json", "-o", str(out)]) == 2  # the broken spec's
    written = {path.name for path in out.iterdir()}
    assert written == {f"{report_name(path)}.json" for path in specs}
    failure = json.loads((out / f"{report_name(broken)}.json").read_text())
    assert failure["passed"] is False and failure["errors"], failure
    for path in (small, csv):
        alone = tmp_path / f"{path.stem}.json"
        assert main(["verify", str(path), "--no-cache", "--format", "json", "-o", str(alone)]) in (0, 1)
        assert without_time((out / f"{report_name(path)}.json").read_text()) == without_time(alone.read_text())
    assert "broken.circ" in capsys.readouterr().err


def test_a_suite_table_names_each_spec_and_exits_with_the_worst_verdict(specs, capsys):
    small, _, csv = specs
    code = main(["verify", str(small), str(csv), "--no-cache"])
    out = capsys.readouterr().out
    assert out.index(f"== {small} ==") < out.index(f"== {csv} ==")
    assert code == (0 if out.count("all claims pass") == 2 else 1)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "json"], "needs a folder for one file per spec"),
        (["--look", "--format", "html", "-o", "x"], "one spec at a time"),
    ],
)
def test_a_suite_refuses_outputs_it_cannot_write_per_spec(specs, extra, message, capsys):
    small, _, csv = specs
    assert main(["verify", str(small), str(csv), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_suite_output_must_be_a_folder(specs, tmp_path, capsys):
    small, _, csv = specs
    file = tmp_path / "report.json"
    file.write_text("{}")
    assert main(["verify", str(small), str(csv), "--format", "json", "-o", str(file)]) == 3
    assert "must be a folder" in capsys.readouterr().err


def test_workers_without_ray_is_a_usage_error(specs, capsys):
    assert main(["verify", str(specs[0]), "--workers", "2"]) == 2
    assert "add --ray" in capsys.readouterr().err


def test_report_names_follow_the_action(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report_name(Path("specs/a/x.circ")) == "specs__a__x"
    assert report_name(tmp_path / "specs" / "y.circ") == "specs__y"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", RAY_ADDRESS="")
    return subprocess.run([sys.executable, "-m", "circuitlang", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_an_unreachable_cluster_is_exit_3_at_once_with_a_way_forward():
    done = run_cli("verify", "specs/organism_incr_digits.circ", "--ray", "127.0.0.1:1")
    assert done.returncode == 3, done.stderr
    assert "the Ray cluster at 127.0.0.1:1 cannot be reached" in done.stderr and "ray start --head" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_spec_after_a_bare_ray_is_a_spec_not_an_address():
    from circuitlang.cli import _argument_parser
    from circuitlang.commands.cluster_options import ray_request

    args = _argument_parser().parse_args(["verify", "--ray", "specs/organism_incr_digits.circ"])
    request = ray_request(args)
    assert args.files == [Path("specs/organism_incr_digits.circ")] and request is not None and request.address is None


def test_a_suite_without_ray_never_imports_ray(specs, tmp_path):
    """The cluster extra is imported only when asked for."""
    code = (
        "import sys; from circuitlang.cli import main; "
        f"main(['verify', {str(specs[0])!r}, {str(specs[2])!r}, '--no-cache', '--format', 'json', '-o', {str(tmp_path)!r}]); "
        "print('ray' in sys.modules)"
    )
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_a_spec_after_ray_keeps_its_place_among_the_specs():
    from circuitlang.commands.cluster_options import _as_given

    argv = ["verify", "a.circ", "--ray", "b.circ", "c.circ"]
    assert _as_given([Path("b.circ"), Path("a.circ"), Path("c.circ")], argv) == [Path("a.circ"), Path("b.circ"), Path("c.circ")]


def test_compare_refuses_ray_with_no_transfer(specs, capsys):
    small, _, csv = specs
    assert main(["compare", str(small), str(csv), "--ray", "--no-transfer"]) == 2
    assert "drop --ray" in capsys.readouterr().err
