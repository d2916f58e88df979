"""The engine against the slow reference (tests/reference_engine.py), and its invariants."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import circuitlang
from circuitlang.engine.variants import Variant, circuit_variant
from circuitlang.ir import models as ir
from circuitlang.organisms.tiny import build_random_gpt2
from tests.conftest import fast_cases
from tests.reference_engine import ablation_values, hand_forward, plan_for

WORDS = [str(i) for i in range(1, 25)] + ["then", "and", "after"]
# benchmarks/gpu.sh runs these tests on a GPU: the engine there, the slow reference on the CPU
DEVICE = os.environ.get("CIRCUITLANG_TEST_DEVICE", "cpu")

SPEC = """circuitlang 1
circuit tiny on "./tiny"
prompts digits {
  template "{s1} {s2} {s3} {s4}"
  template "{s1} then {s2} and {s3} after {s4}"
  for i in 1..8
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4; wrong = i + 3
  corrupt random { s1, s2, s3, s4 = random 1..20 }
}
metric %(metric)s
ablate %(ablate)s
role "mover": 2.1 q end k s2..s4
role "detector": 1.0, 0.3 q s2..s4, end
role "helper": 0.1
mlp 0 at s3, end
mlp 2
edge 0.1 -> 1.0 via k, v
edge mlp 0 -> 2.1 via q
edge 1.0 -> 2.1
edge 0.3 -> mlp 2
edge 2.1 -> logits
edge mlp 2 -> logits
edge embed -> 0.1
%(extra)s
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    build_random_gpt2(folder / "tiny", WORDS, n_layers=3, n_heads=4, d_model=32, seed=1)
    return folder


def open_spec(
    model_dir: Path, metric: str = "logit_diff(answer, wrong)", ablate: str = "mean of corrupt", extra: str = "", name: str = "spec.circ"
):
    path = model_dir / name
    path.write_text(SPEC % {"metric": metric, "ablate": ablate, "extra": extra})
    spec = circuitlang.load(path)
    return circuitlang.open_run(spec, device=DEVICE, batch_size=7)  # a small batch: chunks split a template's prompts


def variants_of(run) -> list[Variant]:
    circuit = run.spec.circuit
    detector = frozenset(ir.HeadNode(layer=1, head=h) for h in (0,))
    return [
        run.full_model(),
        run.empty(),
        run.circuit(),
        circuit_variant(circuit, use_edges=False, label="nodes only"),
        run.circuit(without=detector),
        run.full_model(without=frozenset({ir.HeadNode(layer=2, head=1), ir.MlpNode(layer=0)})),
    ]


def reference_metric(run, variants: list[Variant], kind: str, source: str) -> torch.Tensor:
    hf = run.model.bridge.original_model
    if DEVICE != "cpu":
        hf = copy.deepcopy(hf).to("cpu")
    bound = run.bound[run.spec.prompt_sets[0].name]
    cfg = run.model.bridge.cfg
    out = torch.empty(len(variants), bound.n_prompts, dtype=torch.float64)
    with torch.no_grad():
        for template in bound.templates:
            tokens = template.corrupt if source == "corrupt" else template.clean
            values = ablation_values(hf, tokens, kind)
            for row, prompt in enumerate(template.prompt_indices):
                abl = {k: v[row : row + 1] for k, v in values.items()} if kind == "resample" else values
                answer, wrong = template.answers["answer"][row][0], template.answers["wrong"][row][0]
                for number, variant in enumerate(variants):
                    plan = plan_for(variant, template.template, template.positions, template.seq_len, cfg.n_layers, cfg.n_heads, abl)
                    logits = hand_forward(hf, template.clean[row : row + 1], plan)["logits"][0, -1]
                    out[number, prompt] = float(logits[answer] - logits[wrong])
    return out


@pytest.mark.parametrize(
    "ablate, kind, source",
    fast_cases(
        [
            ("mean of corrupt", "mean", "corrupt"),
            ("resample", "resample", "corrupt"),
            ("zero", "zero", "clean"),
            ("mean of clean", "mean", "clean"),
        ],
        ("mean of corrupt",),
        unpack=True,
    ),
)
def test_engine_matches_reference(model_dir, ablate, kind, source):
    run = open_spec(model_dir, ablate=ablate, name=f"{kind}_{source}.circ")
    variants = variants_of(run)
    fast = run.metric(variants)
    slow = reference_metric(run, variants, kind, source)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=0), (fast - slow).abs().max()


@pytest.mark.slow
def test_the_bridges_own_forward_matches_reference(model_dir, monkeypatch):
    """Where the blocks cannot run one by one (rotary models), variants run through the bridge from
    their start layer, with no shortcut: forced here on GPT-2, the numbers are the reference's, from
    layer 0 and resuming the circuit's runs (with edges and without)."""
    monkeypatch.setattr("circuitlang.engine.forward.blocks_run_alone", lambda *args: False)
    run = open_spec(model_dir, name="bridge_path.circ")
    engine = run.session.engine()
    assert not engine.shortcuts.blocks_callable and not engine.shortcuts.heads_by_hand
    variants = variants_of(run)
    fast = run.metric(variants)
    assert torch.allclose(fast, reference_metric(run, variants, "mean", "corrupt"), atol=1e-5, rtol=0)
    for base in (run.circuit(), circuit_variant(run.spec.circuit, use_edges=False)):
        assert torch.allclose(engine.run(variants, engine.readout(), base=base), fast, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_declared_embed_edges_match_reference(model_dir):
    run = open_spec(model_dir, extra="set embed_edges = declared", name="embed.circ")
    variants = [run.circuit()]
    assert torch.allclose(run.metric(variants), reference_metric(run, variants, "mean", "corrupt"), atol=1e-5, rtol=0)


def test_invariants(model_dir):
    run = open_spec(model_dir)
    clean = run.metric([run.full_model()])
    # The full model as a circuit reproduces the clean model's metric.
    logits = run.model.bridge(run.bound["digits"].templates[0].clean)[:, -1]
    template = run.bound["digits"].templates[0]
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    direct = (logits.gather(1, answers[:, None]) - logits.gather(1, wrongs[:, None]))[:, 0].double()
    assert torch.allclose(clean[0, list(template.prompt_indices)], direct, atol=1e-5)
    # An ablation of nothing changes nothing: the circuit of every node everywhere, with no edges.
    everything = circuit_variant(
        ir.Circuit(
            nodes=tuple(
                ir.CircuitNode(node=node.node if hasattr(node, "node") else node, role="all", span=run.spec.circuit.nodes[0].span)
                for node in [ir.HeadNode(layer=layer, head=head) for layer in range(3) for head in range(4)]
                + [ir.MlpNode(layer=layer) for layer in range(3)]
            )
        ),
        use_edges=False,
    )
    assert torch.allclose(run.metric([everything]), clean, atol=1e-6)
    # Reruns are bit-identical.
    variants = variants_of(run)
    assert torch.equal(run.metric(variants), run.metric(variants))
    again = open_spec(model_dir, name="again.circ")
    assert torch.equal(again.metric(variants), run.metric(variants))


@pytest.mark.slow
def test_empty_circuit_equals_fully_ablated_run(model_dir):
    run = open_spec(model_dir, ablate="resample", name="resample_empty.circ")
    empty = run.metric([run.empty()])
    # Fully ablated by hand: every head and MLP replaced by its value on the corrupt prompt.
    assert torch.allclose(empty, reference_metric(run, [run.empty()], "resample", "corrupt"), atol=1e-5)


@pytest.mark.parametrize("metric", ["logprob(answer)", "accuracy(answer)", "kl"])
def test_probability_metrics_of_the_full_model(model_dir, metric):
    run = open_spec(model_dir, metric=metric, name=f"{metric[:4]}.circ")
    values = run.metric([run.full_model(), run.empty()])
    template = run.bound["digits"].templates[0]
    logits = run.model.bridge(template.clean.to(run.model.device))[:, -1].double().cpu()
    rows = list(template.prompt_indices)
    if metric == "kl":
        expected = torch.zeros(len(rows), dtype=torch.float64)
    else:
        answers = torch.tensor([a[0] for a in template.answers["answer"]])
        expected = {"logprob": logits.log_softmax(-1).gather(1, answers[:, None])[:, 0], "accuracy": (logits.argmax(-1) == answers).double()}[
            metric.split("(")[0]
        ]
    assert torch.allclose(values[0, rows], expected, atol=1e-5)
    if metric == "kl":
        assert bool((values[1] > 0).all())  # ablating everything moves the distribution


@pytest.mark.slow
@pytest.mark.parametrize("ablate", ["mean of corrupt", "resample"])
def test_starting_from_a_base_variant_changes_nothing(model_dir, ablate):
    run = open_spec(model_dir, ablate=ablate, name=f"base_{ablate[:4]}.circ")
    circuit = circuit_variant(run.spec.circuit, use_edges=False)
    sweep = [circuit] + [circuit_variant(run.spec.circuit, frozenset({m.node}), use_edges=False) for m in run.spec.circuit.nodes]
    engine = run.session.engine()
    from circuitlang.engine.readouts import readout_for

    readout = readout_for(engine.bound.metric, None)
    with_base = engine.run(sweep, readout, base=circuit)
    assert torch.allclose(with_base, engine.run(sweep, readout), atol=1e-6)
    assert torch.allclose(
        with_base,
        reference_metric(run, sweep, *{"mean of corrupt": ("mean", "corrupt"), "resample": ("resample", "corrupt")}[ablate]),
        atol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["", "set embed_edges = declared"])
def test_edge_variants_resuming_the_circuits_edge_run_change_nothing(model_dir, extra):
    """C\\K with declared edges starts from the edge-ablated run of C at K's first layer (its running
    total and senders' differences cached), instead of at layer 0: the numbers must not move."""
    run = open_spec(model_dir, extra=extra, name=f"edge_base{len(extra)}.circ")
    circuit = run.circuit()
    nodes = [m.node for m in run.spec.circuit.nodes]
    removals = [frozenset({node}) for node in nodes] + [frozenset(pair) for pair in zip(nodes, nodes[1:])]
    sweep = [circuit] + [run.session.circuit(without=removed) for removed in removals]
    # the same nodes with one edge fewer: the masks agree everywhere, only the edges tell them apart
    sweep += [replace(circuit, edges=tuple(e for e in circuit.edges if e != dropped)) for dropped in circuit.edges]
    engine = run.session.engine()
    from circuitlang.engine.readouts import readout_for

    readout = readout_for(engine.bound.metric, None)
    starts: list[int] = []
    forward_from = engine.forward_from
    engine.forward_from = lambda layer, residual, *rest: starts.append(layer) or forward_from(layer, residual, *rest)
    with_base = engine.run(sweep, readout, base=circuit)
    assert max(starts) > 0  # some variants did resume past layer 0
    starts.clear()
    from_zero = engine.run(sweep, readout)
    assert set(starts) == {0}
    assert torch.allclose(with_base, from_zero, atol=1e-6)
    assert torch.allclose(with_base, reference_metric(run, sweep, "mean", "corrupt"), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("ablate", ["mean of corrupt", "resample", "zero"])
def test_mlps_ablated_everywhere_are_not_computed_and_that_changes_nothing(model_dir, ablate, monkeypatch):
    """An MLP that every row of a batch ablates at every position gives its ablation value without
    running; the numbers equal the run that computes it and then replaces it."""
    run = open_spec(model_dir, ablate=ablate, name=f"skip_{ablate[:4]}.circ")
    variants = variants_of(run)
    engine = run.session.engine()
    skipped: list[int] = []
    constant_mlps = engine.shortcuts.constant_mlps
    monkeypatch.setattr(engine.shortcuts, "constant_mlps", lambda *args: skipped.extend(constant_mlps(*args)) or constant_mlps(*args))
    fast = run.metric(variants)
    assert 1 in skipped  # mlp 1 is in no circuit of variants_of: its variants skip it
    monkeypatch.setattr(engine.shortcuts, "constant_mlps", lambda *args: {})
    assert torch.allclose(fast, run.metric(variants), atol=1e-6)


@pytest.mark.slow
def test_edge_ablation_gives_the_same_bits_whatever_the_hash_seed(model_dir):
    """Receivers sum their declared senders' contributions in a fixed order: Python's set order
    follows string hashing, which changes from process to process, and so would the rounding."""
    import subprocess
    import sys

    open_spec(
        model_dir, extra="edge 0.1 -> 2.1\nedge 0.3 -> 2.1\nedge 0.1 -> logits\nedge 1.0 -> logits", name="seeded.circ"
    )  # receivers with three and four senders: their sums depend on the order
    script = (
        "import circuitlang, sys; run = circuitlang.open_run(circuitlang.load(sys.argv[1]), batch_size=7); "
        "print(run.metric([run.circuit()]).numpy().tobytes().hex())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(model_dir / "seeded.circ")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        ).stdout
        for seed in ("1", "2", "3", "4", "5", "6")
    }
    assert len(outputs) == 1


def test_every_metric_of_the_language_has_one_readout():
    from circuitlang.engine.readouts import READOUTS
    from circuitlang.ir.stdlib import METRICS

    assert list(READOUTS) == list(METRICS)
