"""Discovery: each method recovers the micro model's known circuit exactly, and on the shipped
organism a circuit found from a spec with no circuit is written as a `.circ` that passes `check`
unchanged and whose `verify` faithfulness meets the target."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

import circuitlang
from circuitlang.cli import main
from circuitlang.discover.acdc import KL_THRESHOLDS, acdc, search_threshold
from circuitlang.discover.path_growth import LOGITS, EdgeScores, grow, search_percentile
from circuitlang.discover.prune import compare_orders, prune_nodes
from circuitlang.discover.scoring import Scorer, head, variant_of
from circuitlang.engine.session import open_session
from tests.micro_model import WORDS, build_copy_model
from tests.workflows.test_verify import SPEC

KNOWN = {head(0, 0), head(0, 1)}  # the micro model's circuit: two copies of the copying head
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Scorer:
    root = tmp_path_factory.mktemp("micro")
    build_copy_model(root / "micro")
    path = root / "task.circ"
    path.write_text(SPEC % {"words": json.dumps(WORDS), "metric": "logit_diff(answer, wrong)", "circuit": "", "claims": ""})
    return Scorer(open_session(circuitlang.load(path)))


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


def _patched_by_hand(scorer: Scorer, head_index: int) -> float:
    """The direct effect of one layer-0 head on the logits, by hooks on the bridge: its output from
    the paired corrupt prompt, every other head and the MLP at their clean values."""
    import torch

    from circuitlang.engine.ablation_source import hook_name
    from circuitlang.engine.readouts import single_ids

    bridge = scorer.session.model.bridge
    [template] = scorer.engine.bound.templates
    _, clean = bridge.run_with_cache(template.clean)
    _, corrupt = bridge.run_with_cache(template.corrupt)
    z_name, mlp_name = hook_name("z", 0), hook_name("mlp_out", 0)

    def patch_z(z, hook):
        z = clean[z_name].clone()
        z[:, :, head_index] = corrupt[z_name][:, :, head_index]
        return z

    with torch.no_grad():
        logits = bridge.run_with_hooks(template.clean, fwd_hooks=[(z_name, patch_z), (mlp_name, lambda out, hook: clean[mlp_name])])
    end = logits[:, template.positions["end"]]
    rows = torch.arange(template.n_prompts)
    diff = end[rows, single_ids(template, "answer")] - end[rows, single_ids(template, "wrong")]
    return float(diff.double().mean()) - scorer.f_model


def test_path_patching_scores_equal_a_hand_hooked_direct_effect(micro: Scorer) -> None:
    scores = EdgeScores(micro)
    into_logits = scores.into(LOGITS, "")
    for index in range(4):
        assert into_logits[head(0, index)] == pytest.approx(_patched_by_hand(micro, index), abs=1e-5)
    assert abs(into_logits[head(0, 0)]) > 1.0  # the copying heads matter; the test would see a zero score
    useless = {n for n in into_logits if n not in KNOWN}
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
    every = {threshold: acdc(micro, threshold).faithfulness for threshold in KL_THRESHOLDS}  # the slow way
    assert best.threshold == max(t for t, f in every.items() if f >= 0.99)
    assert best.faithfulness == pytest.approx(every[best.threshold], abs=1e-12)


@pytest.mark.slow
def test_each_head_kept_by_pruning_is_needed_on_the_organism() -> None:
    """Checked independently of the pruning loop: removing any kept head drops below the target."""
    run = circuitlang.open_run(circuitlang.load(ROOT / "specs" / "organism_incr_digits.circ"))
    scorer = Scorer(run.session)
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


def _micro_spec(root: Path, name: str, body: str) -> Path:
    path = root / name
    path.write_text(f'circuitlang 1\ncircuit t on "./micro"\nlist animals = {json.dumps(WORDS)}\n{body}\n')
    return path


COPY = """prompts copy {
  template "{s1} {s2} {s3}"
  for i in 1..12
  s1, s2, s3 = random animals distinct
  answer = s1
  wrong = s3
  corrupt random { s1, s2, s3 = random animals distinct }
}"""


@pytest.fixture(scope="module")
def micro_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("micro_cli")
    build_copy_model(root / "micro")
    return root


@pytest.mark.slow
def test_a_spec_with_two_prompt_sets_gets_a_claim_and_positions_that_hold_where_it_was_searched(micro_root, capsys):
    other = (
        COPY.replace("prompts copy", "prompts other")
        .replace("{s1} {s2} {s3}", "{a} {b} {c}")
        .replace("s1", "a")
        .replace("s2", "b")
        .replace("s3", "c")
    )
    spec = _micro_spec(micro_root, "two.circ", f"{COPY}\n{other}\nmetric logit_diff(answer, wrong)\nablate mean of corrupt")
    out = micro_root / "two_found.circ"
    assert main(["discover", str(spec), "--method", "prune", "--include-mlps", "-o", str(out)]) == 0
    written = out.read_text()
    assert "expect faithfulness on copy >= 0.9" in written
    assert " q s" not in written and " k s" not in written  # s1..s3 are not positions of 'other'
    assert main(["check", str(out)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0


def test_templates_with_different_slots_name_roles_by_the_positions_they_share(micro_root):
    two_templates = COPY.replace('template "{s1} {s2} {s3}"', 'template "{s1} {s2} {s3}"\n  template "{s1} {x} {s3}"').replace(
        "s1, s2, s3 = random animals distinct", "s1, s2, s3 = random animals distinct\n  x = s2"
    )
    spec = _micro_spec(micro_root, "tpl.circ", f"{two_templates}\nmetric logit_diff(answer, wrong)\nablate mean of corrupt")
    out = micro_root / "tpl_found.circ"
    assert main(["discover", str(spec), "--method", "prune", "--include-mlps", "-o", str(out)]) == 0
    assert 'role "end reads s1' in out.read_text()


@pytest.mark.parametrize(
    "options, says",
    [
        (["--target", "nan"], "--target"),
        (["--percentile", "150"], "percentile lies in 0..100"),
        (["--name", "my circuit"], "a circuit name is"),
        (["-o", "x.txt"], "must be a .circ file"),
    ],
)
def test_bad_options_are_refused_before_the_model_loads(micro_root, capsys, options, says):
    spec = _micro_spec(micro_root, "opts.circ", f"{COPY}\nmetric logit_diff(answer, wrong)\nablate mean of corrupt")
    args = ["discover", str(spec), "--method", "path-patching", "-o", str(micro_root / "o.circ"), *options]
    assert main(args) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    "body, method, says",
    [
        (f"{COPY}\nmetric logprob(answer)\nablate mean of corrupt", "prune", "is not positive"),
        (
            COPY.replace("  corrupt random { s1, s2, s3 = random animals distinct }\n", "") + "\nmetric logit_diff(answer, wrong)\nablate zero",
            "path-patching",
            "has no corruption",
        ),
        (
            f"{COPY}\nmetric logit_diff(answer, wrong)\nablate mean of corrupt\nset embed_edges = declared",
            "path-patching",
            "embed_edges = declared",
        ),
    ],
)
def test_searches_that_would_mean_nothing_are_refused_with_the_reason(micro_root, capsys, body, method, says):
    spec = _micro_spec(micro_root, "refused.circ", body)
    out = micro_root / "refused_found.circ"
    assert main(["discover", str(spec), "--method", method, "-o", str(out)]) == 2
    assert says in capsys.readouterr().err and not out.exists()


def test_an_output_name_that_is_not_an_identifier_is_made_one(micro_root):
    spec = _micro_spec(micro_root, "digit.circ", f"{COPY}\nmetric logit_diff(answer, wrong)\nablate mean of corrupt")
    out = micro_root / "1-found.circ"
    assert main(["discover", str(spec), "--method", "prune", "-o", str(out)]) == 0
    assert "circuit c_1_found on" in out.read_text()
    assert "# Found by: circuitlang discover" in out.read_text() and "--method prune" in out.read_text()


def _acdc_by_the_book(scorer: Scorer, within: list, threshold: float) -> set:
    """ACDC as Conmy et al. write it, with nothing skipped: every edge of the graph among `within`
    tried, receivers from the logits backwards, senders from the latest; then nodes without a path
    to the logits dropped."""
    from circuitlang.discover.acdc import as_edges
    from circuitlang.discover.scoring import node_order

    order = sorted(within, key=node_order)
    channels = {"head": ("q", "k", "v")}
    edges = {
        (s, r, c)
        for r in order + [LOGITS]
        for s in order
        if s != r and (r == LOGITS or micro_precedes(s, r))
        for c in channels.get(r.kind, ("",))
    }

    def kl(candidate):
        return scorer.means([variant_of(order, as_edges(candidate))], scorer.kl_readout())[0]

    current = kl(edges)
    for receiver in reversed(order + [LOGITS]):
        for edge in sorted((e for e in edges if e[1] == receiver), key=lambda e: (node_order(e[0]), e[2]), reverse=True):
            value = kl(edges - {edge})
            if value - current < threshold:
                edges, current = edges - {edge}, value
    useful = {LOGITS}
    for _ in order:
        useful |= {s for s, r, _ in edges if r in useful}
    return {(s, r, c) for s, r, c in edges if s in useful}


def micro_precedes(sender, receiver) -> bool:
    return sender.layer < receiver.layer or (receiver.kind == "mlp" and sender.layer == receiver.layer and sender.kind == "head")


@pytest.mark.slow
def test_acdc_equals_the_plain_algorithm_on_part_of_the_organism() -> None:
    """The search skips receivers already cut off from the logits; the result must not change."""
    from circuitlang.discover.scoring import mlp

    scorer = Scorer(open_session(circuitlang.load(ROOT / "specs" / "organism_incr_digits.circ")))
    within = [head(0, 0), head(0, 2), head(0, 4), head(1, 0), mlp(0), mlp(1), mlp(2)]
    fast = acdc(scorer, 0.003, "kl", within=within)
    slow = _acdc_by_the_book(scorer, within, 0.003)
    assert slow and {(e.sender, e.receiver, c) for e in fast.edges for c in (e.channels or ("",))} == slow
    assert fast.edges_tried < sum(3 if r.kind == "head" else 1 for r in within) * len(within)


def test_each_method_is_one_record_the_cli_the_dispatch_and_the_docs_read() -> None:
    from circuitlang.commands import discover as command
    from circuitlang.workflows import discover as search
    from circuitlang.discover.methods import METHODS

    docs = (ROOT / "docs" / "discover.md").read_text()
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "method")
    assert list(choices) == [m.name for m in METHODS]
    assert list(search.SEARCHES) == list(search.ROW_COUNTS) == [m.name for m in METHODS]
    for method in METHODS:
        assert f"--method {method.name}" in docs
