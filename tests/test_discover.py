"""Discovery: each method recovers the micro model's known circuit exactly, and on the shipped
organism a circuit found from a spec with no circuit is written as a `.circ` that passes `check`
unchanged and whose `verify` faithfulness meets the target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import circuitlang
from circuitlang.cli import main
from circuitlang.discover.acdc import KL_THRESHOLDS, acdc, search_threshold
from circuitlang.discover.path_patching import LOGITS, EdgeScores, grow, search_percentile
from circuitlang.discover.prune import compare_orders, prune_nodes
from circuitlang.discover.scoring import Scorer, head, variant_of
from tests.micro_model import WORDS, build_copy_model
from tests.test_verify import SPEC

KNOWN = {head(0, 0), head(0, 1)}  # the micro model's circuit: two copies of the copying head
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Scorer:
    root = tmp_path_factory.mktemp("micro")
    build_copy_model(root / "micro")
    path = root / "task.circ"
    path.write_text(SPEC % {"words": json.dumps(WORDS), "metric": "logit_diff(answer, wrong)", "circuit": "",
                            "claims": ""})
    return Scorer(circuitlang.open_run(circuitlang.load(path)))


@pytest.mark.parametrize("schedule", ["forward", "backward", "fb", "bf"])
def test_pruning_recovers_the_known_circuit_in_every_order(micro: Scorer, schedule: str) -> None:
    result = prune_nodes(micro, target=0.9, schedule=schedule, include_mlps=True)
    assert set(result.nodes) == KNOWN
    assert result.faithfulness == pytest.approx(1.0, abs=1e-4)


def test_both_orders_are_reported_with_their_intersection(micro: Scorer) -> None:
    comparison = compare_orders(micro, target=0.9, include_mlps=True)
    assert set(comparison.intersection) == set(comparison.union) == KNOWN
    assert comparison.jaccard == 1.0
    assert comparison.intersection_faithfulness == pytest.approx(1.0, abs=1e-4)


def test_iterative_path_patching_recovers_the_known_heads_and_their_edges(micro: Scorer) -> None:
    result = search_percentile(EdgeScores(micro), 0.9, (99.0, 50.0), (0.01 * abs(micro.f_model),))
    assert set(result.nodes) == KNOWN
    assert {(e.sender, e.receiver) for e in result.edges} == {(n, LOGITS) for n in KNOWN}
    assert result.faithfulness == pytest.approx(1.0, abs=1e-4)


def test_path_patching_scores_are_the_metric_change_of_one_patched_edge(micro: Scorer) -> None:
    scores = EdgeScores(micro)
    into_logits = scores.into(LOGITS, "")
    for sender, score in into_logits.items():
        patched = circuitlang.api.path_patch(micro.run, [sender], [circuitlang.api.Receiver(LOGITS, ())],
                                             freeze_mlps=True)
        assert score == pytest.approx(float(patched.mean()) - micro.f_model, abs=1e-9)
    useless = {n for n, s in into_logits.items() if n not in KNOWN}
    assert all(into_logits[n] == pytest.approx(0.0, abs=1e-6) for n in useless)  # W_O = 0 or no MLP weights
    nodes, _ = grow(scores, percentile=0.0, min_effect=0.0)
    assert set(nodes) == KNOWN  # even the loosest threshold never keeps an edge with no effect


@pytest.mark.parametrize("score", ["kl", "metric"])
def test_acdc_recovers_the_known_circuit(micro: Scorer, score: str) -> None:
    result = acdc(micro, 0.001 if score == "kl" else 0.01, score)
    assert set(result.nodes) == KNOWN
    assert {(e.sender, e.receiver) for e in result.edges} == {(n, LOGITS) for n in KNOWN}
    assert result.faithfulness == pytest.approx(1.0, abs=1e-4)


def test_acdc_within_pruned_nodes_finds_their_edges(micro: Scorer) -> None:
    within = [head(0, 0), head(0, 1), head(0, 2)]
    result = acdc(micro, 0.01, "metric", within=within)
    assert set(result.nodes) == KNOWN  # 0.2 writes nothing: its edges go, and so does it
    assert {(e.sender, e.receiver) for e in result.edges} == {(n, LOGITS) for n in KNOWN}


def test_acdc_threshold_search_takes_the_largest_threshold_that_reaches_the_target(micro: Scorer) -> None:
    best = search_threshold(micro, KL_THRESHOLDS, target=0.99)
    assert best.faithfulness >= 0.99
    larger = [r for r in best.tried if r.threshold > best.threshold]
    assert all(r.faithfulness < 0.99 for r in larger)


def test_each_head_kept_by_pruning_is_needed_on_the_organism() -> None:
    """Checked independently of the pruning loop: removing any kept head drops below the target."""
    run = circuitlang.open_run(circuitlang.load(ROOT / "specs" / "organism_incr_digits.circ"))
    scorer = Scorer(run)
    result = prune_nodes(scorer, target=0.9, schedule="fb")
    values = run.metric([run.full_model()] + [variant_of([n for n in result.nodes if n != h]) for h in result.heads])
    f_model, without_each = float(values[0].mean()), values[1:].mean(1)
    assert all(float(v) / f_model < 0.9 for v in without_each)
    assert result.faithfulness >= 0.9


NO_CIRCUIT = """circuitlang 1
# The digits task with no circuit yet: discovery writes one.
circuit digits on "organism:seqcont"

prompts incr_digits {
  template "{s1} {s2} {s3} {s4}"
  for i in 1..95
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4
  wrong = i + 3
  corrupt random {
    s1, s2, s3, s4 = random 1..99
  }
}

metric logit_diff(answer, wrong)
ablate mean of corrupt
"""


@pytest.mark.slow
def test_discovery_on_the_organism_writes_a_spec_that_checks_and_verifies(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "digits.circ"
    spec.write_text(NO_CIRCUIT)
    found = tmp_path / "found" / "digits_found.circ"
    assert main(["discover", str(spec), "--method", "path-patching", "--target", "0.9", "-o", str(found)]) == 0
    written = found.read_text()
    assert main(["check", str(found)]) == 0
    assert main(["fmt", "--check", str(found)]) == 0  # written in canonical form: passes unchanged
    assert re.search(r"^edge ", written, re.M) and re.search(r"^role ", written, re.M)
    capsys.readouterr()
    assert main(["verify", str(found), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    faithfulness = report["prompt_sets"][0]["faithfulness"]["faithfulness"]["value"]
    assert faithfulness >= 0.9
    assert f"faithfulness of this circuit {faithfulness:.4f}" in written  # the comment tells the truth


def test_discover_refuses_a_non_circ_output_and_an_unknown_prompt_set(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "digits.circ"
    spec.write_text(NO_CIRCUIT)
    assert main(["discover", str(spec), "--method", "prune", "-o", str(tmp_path / "x.txt")]) == 2
    assert main(["discover", str(spec), "--method", "prune", "--prompts", "nope", "-o", str(tmp_path / "x.circ")]) == 2
    assert "no prompt set named 'nope'" in capsys.readouterr().err
