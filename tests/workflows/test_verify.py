"""`circuitlang verify` on a micro model whose circuit is known by construction
(tests/micro_model.py), and its numbers against the slow reference forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import circuitlang
from circuitlang.cli import main
from circuitlang.engine.variants import circuit_variant, full_model_variant
from circuitlang.ir import models as ir
from circuitlang.api import verify
from tests.micro_model import WORDS, build_copy_model
from tests.reference_engine import ablation_values, hand_forward, plan_for

SPEC = """circuitlang 1
circuit copy on "./micro"
list animals = %(words)s
prompts copy {
  template "{s1} {s2} {s3}"
  for i in 1..24
  s1, s2, s3 = random animals distinct
  answer = s1
  wrong = s3
  corrupt random { s1, s2, s3 = random animals distinct }
}
metric %(metric)s
ablate mean of corrupt
%(circuit)s
set bootstrap = 200
%(claims)s
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("micro")
    build_copy_model(root / "micro")
    return root


def write(folder: Path, name: str, circuit: str, claims: str = "", metric: str = "logit_diff(answer, wrong)") -> Path:
    path = folder / name
    path.write_text(SPEC % {"words": json.dumps(WORDS), "metric": metric, "circuit": circuit, "claims": claims})
    return path


def report_of(path: Path):
    return verify(circuitlang.open_run(circuitlang.load(path)))


def test_true_circuit_is_faithful_to_1e4_and_passes(folder, capsys):
    path = write(
        folder,
        "true.circ",
        'role "mover": 0.0, 0.1 q end k s1',
        "expect faithfulness >= 0.9999\nexpect faithfulness <= 1.0001\nexpect normalized_faithfulness >= 0.9999",
    )
    assert main(["verify", str(path)]) == 0
    report = report_of(path)
    assert report.prompt_sets[0].faithfulness.faithfulness.value == pytest.approx(1.0, abs=1e-4)
    assert report.passed


def test_missing_head_fails_faithfulness_and_says_by_how_much(folder, capsys):
    path = write(folder, "missing.circ", 'role "mover": 0.0 q end k s1', "expect faithfulness >= 0.9")
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    report = report_of(path)
    value = report.prompt_sets[0].faithfulness.faithfulness.value
    assert value < 0.9
    assert f"{path}:16: faithfulness >= 0.9 on copy: FAILED, measured faithfulness {value:.3f}" in out
    assert f"short by {0.9 - value:.3g}" in out


def test_useless_head_fails_minimality_for_exactly_that_head(folder):
    path = write(folder, "useless.circ", 'role "mover": 0.0, 0.1 q end k s1\nrole "idle": 0.2', "expect minimality >= 0.01")
    report = report_of(path)
    verdicts = {m.node: m.needed for m in report.prompt_sets[0].minimality}
    assert verdicts == {"0.0": True, "0.1": True, "0.2": False}
    (claim,) = report.claims
    assert not claim.passed and claim.target == "0.2" and claim.value.value == pytest.approx(0.0, abs=1e-9)


def test_redundant_backup_path_is_caught_by_completeness(folder):
    path = write(
        folder,
        "backup.circ",
        'role "mover": 0.0 q end k s1',
        "expect faithfulness >= 0.95\nexpect completeness <= 0.2",
        metric="accuracy(answer)",
    )
    report = report_of(path)
    faithfulness, completeness = report.claims
    assert faithfulness.passed and faithfulness.value.value == pytest.approx(1.0)
    assert not completeness.passed and completeness.value.value == pytest.approx(1.0)
    assert report.prompt_sets[0].completeness.worst_set.nodes == ["0.0"]


def test_numbers_agree_with_the_slow_reference(folder):
    path = write(
        folder,
        "reference.circ",
        'role "mover": 0.0 q end k s1\nrole "idle": 0.2, 0.3 q end',
        "set completeness_samples = 4\nset minimality_samples = 2\nset greedy_steps = 2",
    )
    run = circuitlang.open_run(circuitlang.load(path))
    report = verify(run)
    (template,) = run.bound["copy"].templates
    hf, abl = run.model.bridge.original_model, ablation_values(run.model.bridge.original_model, template.corrupt, "mean")

    memo: dict = {}

    def reference(variant) -> float:
        key = (variant.heads, variant.mlps)
        if key not in memo:
            memo[key] = _reference_metric(variant)
        return memo[key]

    def _reference_metric(variant) -> float:
        plan = plan_for(variant, template.template, template.positions, template.seq_len, 1, 4, abl)
        values = []
        with torch.no_grad():
            for row in range(template.n_prompts):
                logits = hand_forward(hf, template.clean[row : row + 1], plan)["logits"][0, -1]
                values.append(float(logits[template.answers["answer"][row][0]] - logits[template.answers["wrong"][row][0]]))
        return float(np.mean(values))

    def nodes(names: list[str]) -> frozenset:
        return frozenset(
            ir.MlpNode(layer=int(n.split()[1])) if n.startswith("mlp") else ir.HeadNode(layer=int(n.split(".")[0]), head=int(n.split(".")[1]))
            for n in names
        )

    f_model = reference(full_model_variant(1, 4))
    f_circuit = reference(circuit_variant(run.spec.circuit))
    numbers = report.prompt_sets[0]
    assert numbers.faithfulness.f_model.value == pytest.approx(f_model, abs=1e-5)
    assert numbers.faithfulness.f_circuit.value == pytest.approx(f_circuit, abs=1e-5)
    assert numbers.faithfulness.faithfulness.value == pytest.approx(f_circuit / f_model, abs=1e-5)
    for subset in numbers.completeness.sets:
        removed = nodes(subset.nodes)
        expected = abs(reference(circuit_variant(run.spec.circuit, removed)) - reference(full_model_variant(1, 4, removed))) / abs(f_model)
        assert subset.score.value == pytest.approx(expected, abs=1e-5)
    for node in numbers.minimality:
        k, v = nodes(node.worst_set), nodes([node.node])
        expected = abs(reference(circuit_variant(run.spec.circuit, k | v)) - reference(circuit_variant(run.spec.circuit, k))) / abs(f_model)
        assert node.score.value == pytest.approx(expected, abs=1e-5)


def test_report_formats(folder, tmp_path, capsys):
    path = write(
        folder,
        "formats.circ",
        'role "mover": 0.0, 0.1 q end k s1',
        "expect faithfulness >= 0.9\nexpect 0.0 attends end -> s1 >= 0.99\nexpect 0.0 copy_score >= 0.9",
    )
    output = tmp_path / "report.json"
    assert main(["verify", str(path), "--format", "json", "-o", str(output)]) == 0
    data = json.loads(output.read_text())
    assert data["schema_version"] == 1 and data["model"]["weights_sha256"] and len(data["spec_sha256"]) == 64
    assert data["prompt_sets"][0]["prompts"] == 24 and data["seed"] == 0
    assert all(claim["passed"] for claim in data["claims"])
    assert main(["verify", str(path), "--format", "junit"]) == 0
    assert '<testsuite name="circuitlang copy" tests="3" failures="0"' in capsys.readouterr().out
    assert main(["verify", str(path), "--format", "github", "--notices"]) == 0
    assert f"::notice file={path},line=16,title=circuitlang::faithfulness >= 0.9 on copy: passed" in capsys.readouterr().out
    assert main(["verify", str(path), "--format", "markdown"]) == 0
    assert "| faithfulness |" in capsys.readouterr().out


def test_spec_error_exits_2_and_model_error_exits_3(folder, tmp_path, capsys):
    bad = tmp_path / "bad.circ"
    bad.write_text('circuitlang 1\ncircuit x on "gpt2"\nmetrik kl\n')
    assert main(["verify", str(bad)]) == 2
    missing = tmp_path / "hub.circ"
    missing.write_text(
        'circuitlang 1\ncircuit x on "distilgpt2"\nprompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }\n'
        "metric logit_diff(answer, wrong)\nablate zero\n"
    )
    assert main(["verify", str(missing)]) == 3
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


@pytest.mark.slow
def test_a_full_model_metric_that_cannot_be_told_from_zero_is_said_and_fails_ratio_claims(tmp_path):
    """Half the prompts ask for the next number and half for the one before: F(M) averages near 0,
    and F(C)/F(M) would be any number at all."""
    from circuitlang.api import verify as verify_run
    from tests.conftest import SPECS

    text = (SPECS / "organism_incr_digits.circ").read_text()
    text = text.replace("  answer = i + 4\n  wrong = i + 3\n", "  answer = i + 3 + i % 2\n  wrong = i + 4 - i % 2\n")
    text += "expect f_model >= -100\nset bootstrap = 200\nset completeness_samples = 2\n"
    spec = tmp_path / "balanced.circ"
    spec.write_text(text)
    report = verify_run(circuitlang.open_run(circuitlang.load(spec)), audit=False)
    [prompt_set] = report.prompt_sets
    assert prompt_set.faithfulness.f_model.includes_zero()
    assert prompt_set.warnings and "includes 0" in prompt_set.warnings[0]
    by_claim = {claim.claim: claim for claim in report.claims}
    assert not by_claim["faithfulness >= 0.9"].passed
    assert by_claim["faithfulness >= 0.9"].note.startswith("not meaningful: F(M) =")
    assert by_claim["f_model >= -100"].passed  # not a ratio: still judged on its own
    from circuitlang.report.render import to_github, to_junit, to_markdown

    assert "::warning file=" in to_github(report) and "includes 0" in to_github(report)
    assert "warning: F(M)" in to_junit(report) and "**Warning:**" in to_markdown(report)


@pytest.mark.slow
def test_a_clear_full_model_metric_gives_no_warning():
    from circuitlang.api import verify as verify_run
    from tests.conftest import SPECS

    spec = circuitlang.load(SPECS / "organism_incr_digits.circ")
    spec = spec.model_copy(update={"settings": spec.settings.model_copy(update={"bootstrap": 200, "completeness_samples": 2})})
    report = verify_run(circuitlang.open_run(spec), audit=False)
    assert report.prompt_sets[0].warnings == [] and report.passed


def test_verify_runs_the_plans_steps_in_order_and_the_rows_it_counted(folder, monkeypatch):
    """The plan is what runs: every step kind has a runner, `verify` runs exactly the steps
    `compile_plan` gives (in order, none added or left out), and each runs the prompt rows the plan
    counts for it (the caches with the baselines, whose first run builds them; the greedy search
    at most its bound). Catches a step the verifier stops running, or work it does outside a step."""
    from circuitlang.workflows import verify as verifier
    from circuitlang.compile.plan import StepKind, compile_plan
    from circuitlang.compile.subsets import BASELINES, GREEDY
    from circuitlang.data.datasets import expand_all
    from circuitlang.engine.session import open_session

    assert set(verifier.STEP_RUNNERS) == set(StepKind)
    ran = []  # (step, prompt rows the progress meter advanced while it ran)

    def recording(runner):
        def run(verification, step):
            before = verification.say.done
            runner(verification, step)
            ran.append((step, verification.say.done - before))

        return run

    monkeypatch.setattr(verifier, "STEP_RUNNERS", {kind: recording(r) for kind, r in verifier.STEP_RUNNERS.items()})
    spec = circuitlang.load(
        write(
            folder,
            "planned.circ",
            'role "mover": 0.0, 0.1 q end k s1\nedge 0.0 -> logits\nedge 0.1 -> logits',
            "expect 0.1 attends end -> s1 >= 0.5",
        )
    )
    datasets = expand_all(spec)
    session = open_session(spec, datasets=datasets)
    assert session.datasets is datasets  # expanded once, by the caller
    report = verifier.verify(session, audit=True)
    plan = compile_plan(spec, datasets, True, session.shape)
    assert [step for step, _ in ran] == list(plan.steps)
    caches = sum(step.rows for step in plan.steps if step.kind is StepKind.CACHE)
    for step, advanced in ran:
        counted = step.rows + (caches if step.schedule_step == BASELINES else 0)
        if step.kind is StepKind.CACHE:
            assert advanced == 0, step.id  # counted with the baselines
        elif step.schedule_step == GREEDY:
            assert advanced <= counted, step.id  # variants evaluated before are not run again
        else:
            assert advanced == counted, step.id
    [prompt_set] = report.prompt_sets
    assert prompt_set.audit is not None and prompt_set.audit.ran and prompt_set.patch_runs == 4
    assert [claim.passed for claim in report.claims] == [True]
