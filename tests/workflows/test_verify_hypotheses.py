"""Hypotheses in `verify`: the shipped spec's claims hold, a wrong variable fails its claim, and
every number of the interchange table equals a computation by hand from the engine's per-pair
outputs (the pairs redrawn here with the documented rule)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import circuitlang as cl
from circuitlang.cli import main
from circuitlang.data.counterfactuals import HighLevelModel, draw_pairs, prompt_values
from circuitlang.errors import EXIT_CLAIM_FAILED, EXIT_OK, DataError
from tests.conftest import SPECS

SPEC = SPECS / "variables_digits.circ"
HYPOTHESIS = """hypothesis {
  next = s4 + d
  answer = next
  mlp 0, 1 at end carries next
}"""


@pytest.fixture(scope="module")
def report():
    return cl.verify(SPEC)


def test_the_shipped_hypothesis_holds(report) -> None:
    assert report.passed
    (prompt_set,) = report.prompt_sets
    carrier, variable = prompt_set.interchange
    assert carrier.target == "mlp 0, 1 at end carries next" and variable.target == "variable next"
    assert carrier.iia.value >= 0.9 and carrier.graded_iia.value >= 0.8
    assert carrier.pairs == prompt_set.prompts and carrier.without_source == 0
    assert {c.quantity for c in report.claims} == {"IIA", "graded IIA", "scrubbing recovered"}


def test_a_wrong_variable_gets_a_low_iia_and_fails_its_claim(tmp_path: Path) -> None:
    """`s1` also predicts each prompt's answer (s1 + 4d), but the MLPs at the end carry the next
    number, not s1: a source with the other direction moves the model to its own next number, not
    to s1(source) + 4 d(base). Half the pairs have the other direction."""
    wrong = HYPOTHESIS.replace("next = s4 + d\n  answer = next", "answer = s1 + 4 * d").replace("carries next", "carries s1")
    spec = tmp_path / "wrong.circ"
    spec.write_text(SPEC.read_text().replace(HYPOTHESIS, wrong).replace("expect next", "expect s1").replace("expect scrubbing >= 0.9\n", ""))
    report = cl.verify(spec)
    (score, _) = report.prompt_sets[0].interchange
    assert score.variable == "s1" and score.iia.value < 0.7
    assert not report.passed
    failed = [c for c in report.claims if not c.passed]
    assert failed and failed[0].quantity == "IIA"
    assert main(["verify", str(spec), "--format", "github", "-o", str(tmp_path / "out.txt")]) == EXIT_CLAIM_FAILED
    assert "s1 iia >= 0.9" in (tmp_path / "out.txt").read_text()


def test_a_hypothesis_that_does_not_reproduce_the_task_is_an_error(tmp_path: Path) -> None:
    spec = tmp_path / "typo.circ"
    spec.write_text(SPEC.read_text().replace("next = s4 + d", "next = s4 - d"))
    with pytest.raises(DataError, match="the hypothesis's answer is .* but the prompt set's answer is"):
        cl.verify(spec)


def test_every_number_equals_a_computation_by_hand(report) -> None:
    run = cl.open_run(cl.load(SPEC))
    (dataset,) = run.datasets
    pairs = draw_pairs(HighLevelModel.of(run.spec, "digits"), dataset, "next", run.spec.settings.seed)
    tokenizer = run.model.tokenizer
    correct, toward, clean = [], [], []
    for b, s, c, a in zip(pairs.base, pairs.source, pairs.counterfactual, pairs.answer):
        logits = _intervened(run, b, s)
        base = _intervened(run, b, b)
        c_id, a_id = (tokenizer.encode(" " + text, add_special_tokens=False)[0] for text in (c, a))
        correct.append(int(logits.argmax()) == c_id)
        toward.append(float(logits[c_id] - logits[a_id]))
        clean.append(float(base[a_id] - base[c_id]))
    (score, _) = report.prompt_sets[0].interchange
    assert score.iia.value == pytest.approx(np.mean(correct), abs=1e-12)
    assert score.graded_iia.value == pytest.approx(np.mean(toward) / np.mean(clean), rel=1e-4)


def _intervened(run, base: int, source: int) -> torch.Tensor:
    """The base's end logits with mlp 0 and 1's outputs at `end` taken from the source, by a full
    hooked forward of each prompt (one template: every prompt has the same positions)."""
    (template,) = run.session.bound["digits"].templates
    end = template.positions["end"]
    bridge = run.model.bridge
    _, cache = bridge.run_with_cache(template.clean[source : source + 1])
    hooks = [(f"blocks.{layer}.hook_mlp_out", _put(end, cache[f"blocks.{layer}.hook_mlp_out"][0, end])) for layer in (0, 1)]
    with torch.no_grad():
        return bridge.run_with_hooks(template.clean[base : base + 1], fwd_hooks=hooks)[0, end].double()


def _put(index: int, value: torch.Tensor):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        activation = activation.clone()
        activation[0, index] = value
        return activation

    return hook


def test_pairs_follow_the_documented_rule() -> None:
    """Every pair's source differs in the variable, changes the answer, and the counterfactual is
    the answer recomputed with the source's value; the draw is seeded."""
    spec = cl.load(SPEC)
    from circuitlang.data.datasets import expand_all

    (dataset,) = expand_all(spec)
    model = HighLevelModel.of(spec, "digits")
    pairs = draw_pairs(model, dataset, "next", seed=0)
    assert pairs == draw_pairs(model, dataset, "next", seed=0)
    assert pairs != draw_pairs(model, dataset, "next", seed=1)
    for b, s, c, a in zip(pairs.base, pairs.source, pairs.counterfactual, pairs.answer):
        base, source = prompt_values(dataset.clean[b]), prompt_values(dataset.clean[s])
        assert base["s4"] + base["d"] == int(a) and source["s4"] + source["d"] == int(c) != int(a)
        assert model.evaluate(dataset.clean[b], {"next": source["s4"] + source["d"]})[1] == c


@pytest.mark.slow
def test_json_and_every_format_carry_the_numbers(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["verify", str(SPEC), "--format", "json", "-o", str(out), "--no-cache"]) == EXIT_OK
    data = json.loads(out.read_text())
    entry = data["prompt_sets"][0]["interchange"][0]
    assert set(entry["iia"]) == {"value", "low", "high"} and entry["target"] == "mlp 0, 1 at end carries next"
    for fmt in ("markdown", "junit"):  # github writes lines for failures only: the wrong-variable test reads them
        path = tmp_path / f"report.{fmt}"
        assert main(["verify", str(SPEC), "--format", fmt, "-o", str(path)]) == EXIT_OK
        text = path.read_text()
        assert "graded IIA 0.9" in text and "scrubbing recovered 0.9" in text, fmt


def test_random_is_not_used_here() -> None:
    random.seed(0)  # the draw uses its own seeded generator, whatever the global state
    spec = cl.load(SPEC)
    from circuitlang.data.datasets import expand_all

    (dataset,) = expand_all(spec)
    first = draw_pairs(HighLevelModel.of(spec, "digits"), dataset, "next", seed=0)
    random.seed(1)
    assert draw_pairs(HighLevelModel.of(spec, "digits"), dataset, "next", seed=0) == first


def test_scrubbing_equals_a_computation_by_hand(report) -> None:
    """Each base re-run here with hooks: every head and MLP outside the circuit from the base's
    random prompt at every position, each carrier site from its agreeing prompt (the draws redone
    with the documented rule); the metric read with the base's answer and wrong tokens."""
    from circuitlang.data.counterfactuals import draw_scrub_sources

    run = cl.open_run(cl.load(SPEC))
    (dataset,) = run.datasets
    spec = run.spec
    sources = draw_scrub_sources(HighLevelModel.of(spec, "digits"), dataset, spec.settings.seed)
    (template,) = run.session.bound["digits"].templates
    end, bridge = template.positions["end"], run.model.bridge
    circuit = {str(member.node) for member in spec.circuit.nodes}
    caches = {}

    def cache_of(prompt: int):
        if prompt not in caches:
            caches[prompt] = bridge.run_with_cache(template.clean[prompt : prompt + 1])[1]
        return caches[prompt]

    scrubbed, model, random_ = [], [], []
    for b, r, agreeing in zip(sources.base, sources.random, sources.agreeing):
        hooks = []
        for layer in range(spec.shape.n_layers):
            outside_heads = [h for h in range(spec.shape.n_heads) if f"{layer}.{h}" not in circuit]
            hooks.append((f"blocks.{layer}.attn.hook_z", _heads_from(cache_of(r)[f"blocks.{layer}.attn.hook_z"][0], outside_heads)))
            if f"mlp {layer}" not in circuit:
                hooks.append((f"blocks.{layer}.hook_mlp_out", _whole(cache_of(r)[f"blocks.{layer}.hook_mlp_out"][0])))
        for layer, s in zip((0, 1), agreeing):  # the carrier's sites: mlp 0 and mlp 1 at end
            hooks.append((f"blocks.{layer}.hook_mlp_out", _put(end, cache_of(s)[f"blocks.{layer}.hook_mlp_out"][0, end])))
        answer, wrong = (template.answers[field][b][0] for field in ("answer", "wrong"))
        with torch.no_grad():
            logits = bridge.run_with_hooks(template.clean[b : b + 1], fwd_hooks=hooks)[0, end].double()
            clean = bridge(template.clean[b : b + 1])[0, end].double()
            other = bridge(template.clean[r : r + 1])[0, end].double()
        scrubbed.append(float(logits[answer] - logits[wrong]))
        model.append(float(clean[answer] - clean[wrong]))
        random_.append(float(other[answer] - other[wrong]))
    result = report.prompt_sets[0].scrubbing
    assert result.f_scrubbed.value == pytest.approx(np.mean(scrubbed), abs=1e-4)
    assert result.f_model.value == pytest.approx(np.mean(model), abs=1e-4)
    assert result.f_random.value == pytest.approx(np.mean(random_), abs=1e-4)
    expected = (np.mean(scrubbed) - np.mean(random_)) / (np.mean(model) - np.mean(random_))
    assert result.recovered.value == pytest.approx(expected, abs=1e-5)


def _heads_from(source_z: torch.Tensor, heads: list[int]):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        activation = activation.clone()
        activation[0, :, heads] = source_z[:, heads]
        return activation

    return hook


def _whole(value: torch.Tensor):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        return value.unsqueeze(0).clone()

    return hook


def test_scrubbing_claims_need_a_hypothesis(tmp_path: Path) -> None:
    from circuitlang.errors import SpecError

    spec = tmp_path / "none.circ"
    text = SPEC.read_text().replace(HYPOTHESIS, "")
    spec.write_text("\n".join(line for line in text.splitlines() if "iia" not in line))
    with pytest.raises(SpecError, match="causal scrubbing needs a hypothesis, and the spec has none"):
        cl.load(spec)


def test_an_identical_run_reads_the_interchange_and_scrubbing_arrays_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    from tests.engine.test_result_cache import Forwards, cache_use, run_verify, without_cache_fields

    spec = tmp_path / "variables.circ"
    spec.write_text(SPEC.read_text())
    cold = run_verify(spec, tmp_path / "cache", monkeypatch)
    forwards = Forwards(monkeypatch)
    warm = run_verify(spec, tmp_path / "cache", monkeypatch)
    assert cache_use(warm) == (sum(cache_use(cold)), 0), cache_use(cold)
    assert forwards.total == 0, forwards.counts
    assert without_cache_fields(warm) == without_cache_fields(cold)
    assert cold["prompt_sets"][0]["interchange"] and cold["prompt_sets"][0]["scrubbing"]


def test_carrier_positions_are_checked_in_every_template_and_against_the_prompts_length(tmp_path: Path) -> None:
    template = '  template "{s1} {s2} {s3} {s4}"\n'
    two_templates = SPEC.read_text().replace(template, template + '  template "{s2} {s3} {s4}"\n')
    spec = tmp_path / "missing.circ"
    spec.write_text(two_templates.replace("mlp 0, 1 at end carries next", "mlp 0, 1 at s1, end carries next"))
    with pytest.raises(DataError, match="position 's1' is not a slot of template #1"):
        cl.verify(spec)
    spec.write_text(SPEC.read_text().replace("mlp 0, 1 at end carries next", "mlp 0, 1 at bos-1 carries next"))
    with pytest.raises(DataError, match="position bos-1 falls outside"):
        cl.verify(spec)


def test_a_hypothesis_needs_a_metric_that_names_the_answer(tmp_path: Path) -> None:
    from circuitlang.errors import SpecError

    spec = tmp_path / "kl.circ"
    spec.write_text(SPEC.read_text().replace("metric logit_diff(answer, wrong)", "metric kl"))
    with pytest.raises(SpecError, match="needs an answer field, and the metric kl names none"):
        cl.load(spec)


def test_a_hypothesis_reads_the_specs_lists(tmp_path: Path) -> None:
    """`steps[0]` is the spec's list: the high-level model sees it as the prompt sets do."""
    from circuitlang.data.counterfactuals import check_answers
    from circuitlang.data.datasets import expand_all

    spec_path = tmp_path / "lists.circ"
    text = SPEC.read_text().replace("next = s4 + d", "next = s4 + d + steps[0]")
    spec_path.write_text(text.replace("prompts digits {", "list steps = [0, 1]\n\nprompts digits {"))
    spec = cl.load(spec_path)
    (dataset,) = expand_all(spec)
    check_answers(HighLevelModel.of(spec, "digits"), dataset, "answer")  # raises if the list were unknown
    wrong = HighLevelModel.of(spec.model_copy(update={"lists": ()}), "digits")
    with pytest.raises(DataError, match="unknown list 'steps'"):
        check_answers(wrong, dataset, "answer")


def test_a_node_in_two_carriers_takes_one_source_that_agrees_on_both(tmp_path: Path) -> None:
    from circuitlang.data.counterfactuals import draw_scrub_sources
    from circuitlang.data.datasets import expand_all

    spec_path = tmp_path / "two.circ"
    carrier = "  mlp 0, 1 at end carries next\n"
    spec_path.write_text(SPEC.read_text().replace(carrier, carrier + "  mlp 0 at end carries d\n"))
    spec = cl.load(spec_path)
    (dataset,) = expand_all(spec)
    sources = draw_scrub_sources(HighLevelModel.of(spec, "digits"), dataset, seed=0)
    assert [str(node) for node in sources.nodes] == ["mlp 0", "mlp 1"]
    mlp0 = sources.nodes[0]
    for i, b in enumerate(sources.base):
        s = sources.source_of(i, mlp0)
        base, source = prompt_values(dataset.clean[b]), prompt_values(dataset.clean[s])
        assert (source["s4"] + source["d"], source["d"]) == (base["s4"] + base["d"], base["d"])


def test_the_tidy_tables_carry_the_same_numbers(report) -> None:
    (carrier, _) = report.prompt_sets[0].interchange
    rows = report.table("interchange", kind="records")
    assert rows[0]["target"] == carrier.target and rows[0]["iia"] == carrier.iia.value and rows[0]["graded_iia_low"] == carrier.graded_iia.low
    (scrubbing,) = report.table("scrubbing", kind="records")
    assert scrubbing["recovered"] == report.prompt_sets[0].scrubbing.recovered.value
    from circuitlang.results.tidy import TABLE_SCHEMAS

    for name, found in (("interchange", rows[0]), ("scrubbing", scrubbing)):
        assert list(found) == [column for column, _ in TABLE_SCHEMAS[name]]
