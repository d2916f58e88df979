"""Declared edges as claims: `verify` path-patches every declared edge.

On the micro model (circuit known by construction) a true edge has a clearly non-zero effect and a
declared false edge is marked not needed; on a random 3-layer model each reported effect equals a
two-pass path patch written out by hand with hooks on the bridge.
"""

from __future__ import annotations

import json

import pytest
import torch

import circuitlang
from circuitlang.engine.ablation_source import hook_name
from circuitlang.engine.readouts import single_ids
from circuitlang.report.render import to_github, to_junit, to_markdown
from circuitlang.api import verify
from tests.micro_model import WORDS, build_copy_model
from tests.engine.test_engine import SPEC as TINY_SPEC
from tests.engine.test_engine import model_dir  # noqa: F401  (fixture)
from tests.workflows.test_verify import SPEC as MICRO_SPEC

MICRO_CIRCUIT = 'role "copier": 0.0\nrole "useless": 0.2\nedge 0.0 -> logits\nedge 0.2 -> logits'


@pytest.fixture(scope="module")
def micro_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro-edges")
    build_copy_model(root / "micro")
    path = root / "edges.circ"
    path.write_text(MICRO_SPEC % {"words": json.dumps(WORDS), "metric": "logit_diff(answer, wrong)", "circuit": MICRO_CIRCUIT, "claims": ""})
    return verify(circuitlang.open_run(circuitlang.load(path)))


def test_a_true_edge_is_needed_and_a_false_one_is_not(micro_report):
    [prompt_set] = micro_report.prompt_sets
    true_edge, false_edge = prompt_set.edges
    assert (true_edge.edge, true_edge.line, false_edge.edge) == ("0.0 -> logits", 16, "0.2 -> logits")
    assert true_edge.needed and true_edge.effect.low > 0.2  # 0.0 carries half the copy (0.1 is its twin)
    assert not false_edge.needed and false_edge.effect.value == pytest.approx(0.0, abs=1e-6)  # W_O = 0
    assert prompt_set.patch_runs == 4


def test_the_left_out_backup_tops_the_audit(micro_report):
    """0.1 is 0.0's exact copy and the spec leaves it out: its edge into the logits is the blind spot."""
    [prompt_set] = micro_report.prompt_sets
    audit = prompt_set.audit
    assert audit.ran and audit.pairs == 3  # 0.1, 0.3 and mlp 0 into the logits (layer-0 heads cannot feed 0.0)
    top = audit.edges[0]
    assert (top.sender, top.receiver) == ("0.1", "logits") and top.effect.low > 0.2
    assert top.effect.value == pytest.approx(prompt_set.edges[0].effect.value, abs=1e-6)  # the twin's own effect
    assert all(e.effect.value == pytest.approx(0.0, abs=1e-6) for e in audit.edges[1:])
    assert audit.nodes[0].sender == "0.1" and audit.runs == 3 * 3  # per sender: record, replay, replay jointly


def test_edges_appear_in_every_output_format(micro_report):
    assert "edge 0.2 -&gt; logits: effect 0.000" in to_junit(micro_report) and "NOT NEEDED" in to_junit(micro_report)
    warnings = [line for line in to_github(micro_report).splitlines() if line.startswith("::warning")]
    assert len(warnings) == 1 and ",line=17," in warnings[0] and "0.2 -> logits" in warnings[0]
    assert "| 16 | 0.0 -> logits |" in to_markdown(micro_report)
    assert json.loads(micro_report.model_dump_json())["prompt_sets"][0]["edges"][1]["needed"] is False


def _constant(value: torch.Tensor):
    return lambda activation, hook: value


def _recorder(store: dict[str, torch.Tensor], name: str):
    return lambda activation, hook: store.__setitem__(name, activation.clone())


def _replayer(store: dict[str, torch.Tensor], name: str, head: int):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        patched = activation.clone()
        patched[:, :, head] = store[name][:, :, head]
        return patched

    return hook


def _two_pass_by_hand(run, sender: tuple[int, int], receiver: tuple[int, int], channels: tuple[str, ...]) -> torch.Tensor:
    """IOI appendix B on the bridge, direct path only: (1) clean run with the sender's z from the
    corrupt run and every other head's z and every MLP's output at their clean values, recording
    the receiver head's inputs; (2) clean run with only those inputs replaced. Metric per prompt."""
    bridge, n_layers = run.model.bridge, run.model.bridge.cfg.n_layers
    out = torch.empty(run.bound["digits"].n_prompts, dtype=torch.float64)
    for template in run.bound["digits"].templates:
        _, clean = bridge.run_with_cache(template.clean)
        _, corrupt = bridge.run_with_cache(template.corrupt)
        frozen = []
        for layer in range(n_layers):
            z_name, mlp_name = hook_name("z", layer), hook_name("mlp_out", layer)
            z = clean[z_name].clone()
            if layer == sender[0]:
                z[:, :, sender[1]] = corrupt[z_name][:, :, sender[1]]
            frozen += [(z_name, _constant(z)), (mlp_name, _constant(clean[mlp_name]))]
        names = [f"blocks.{receiver[0]}.attn.hook_{c}" for c in channels]
        recorded: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            bridge.run_with_hooks(template.clean, fwd_hooks=frozen + [(n, _recorder(recorded, n)) for n in names])
            logits = bridge.run_with_hooks(template.clean, fwd_hooks=[(n, _replayer(recorded, n, receiver[1])) for n in names])
        end = logits[:, template.positions["end"]]
        rows = torch.arange(template.n_prompts)
        diff = end[rows, single_ids(template, "answer")] - end[rows, single_ids(template, "wrong")]
        out[torch.tensor(template.prompt_indices)] = diff.double()
    return out


@pytest.mark.slow
def test_edge_effects_equal_a_hand_written_two_pass_path_patch(model_dir):  # noqa: F811
    path = model_dir / "edges.circ"
    path.write_text(
        TINY_SPEC
        % {
            "metric": "logit_diff(answer, wrong)",
            "ablate": "mean of corrupt",
            "extra": "set bootstrap = 50\nset completeness_samples = 2\nset minimality_samples = 1",
        }
    )
    run = circuitlang.open_run(circuitlang.load(path))
    report = verify(run)
    [prompt_set] = report.prompt_sets
    effects = {edge.edge: edge.effect.value for edge in prompt_set.edges}
    f_model = prompt_set.faithfulness.f_model.value
    for label, sender, receiver, channels in [
        ("0.1 -> 1.0 via k, v", (0, 1), (1, 0), ("k", "v")),
        ("1.0 -> 2.1", (1, 0), (2, 1), ("q", "k", "v")),
    ]:
        patched = _two_pass_by_hand(run, sender, receiver, channels).mean().item()
        assert effects[label] == pytest.approx((f_model - patched) / abs(f_model), abs=1e-5)
    assert len(effects) == len(run.spec.circuit.edges) and all(e.effect is not None for e in prompt_set.edges)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["organism_incr_digits.circ", "organism_months.circ"])
def test_the_plan_is_what_verify_executes(name):
    """Every step `plan` prints is executed with the printed count (the greedy search: at most it),
    and verify executes no step the plan did not print."""
    from circuitlang.compile.plan import compile_plan
    from circuitlang.data.datasets import expand_all
    from tests.conftest import SPECS

    spec = circuitlang.load(SPECS / name)
    plan = compile_plan(spec, expand_all(spec))
    report = verify(circuitlang.open_run(spec))
    for prompt_set in report.prompt_sets:
        planned = {s.id.split(":", 1)[1]: s for s in plan.steps if s.id.startswith(prompt_set.name + ":")}
        runs = {step: s for step, s in planned.items() if s.kind == "run"}
        assert set(prompt_set.steps) <= set(runs) and sum(prompt_set.steps.values()) == prompt_set.variants_evaluated
        for step, planned_step in runs.items():
            executed = prompt_set.steps.get(step, 0)
            assert executed == planned_step.variants if planned_step.exact else executed <= planned_step.variants, step
            assert planned_step.rows == planned_step.variants * prompt_set.prompts
        patches = {step: s for step, s in planned.items() if s.kind == "patch"}
        assert [f"patch {e.edge}" for e in prompt_set.edges] == list(patches)
        assert sum(s.rows for s in patches.values()) == prompt_set.patch_runs * prompt_set.prompts
        assert planned["audit"].rows == prompt_set.audit.runs * prompt_set.prompts
