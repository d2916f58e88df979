"""The engine's shortcuts (engine.shortcuts) against the engine without them and the slow reference.

A shortcut leaves out arithmetic whose result is known or never read: an attention layer that
every row ablates writes its ablated output; the heads some row keeps, when they are few, are
computed by hand and the others give their ablation value; an MLP after which no attention reads
other positions runs at the end position only; an MLP that every row ablates gives its ablation
value. Each must give the numbers of the run that computes everything, to float32 rounding.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import circuitlang
from circuitlang.engine.runner import Engine
from circuitlang.engine.shortcuts import AblatedAttention, KeptHeads, ShortcutPlanner, Shortcuts
from circuitlang.engine.variants import HeadKeep, MlpKeep, Variant, circuit_variant
from circuitlang.ir import models as ir
from circuitlang.organisms.tiny import build_random_gpt2
from tests.conftest import SPECS
from tests.engine.test_engine import WORDS, open_spec, reference_metric

KINDS = ("ablated attention", "kept heads", "end-only MLPs", "constant MLPs")
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_shortcuts")
    build_random_gpt2(folder / "tiny", WORDS, n_layers=3, n_heads=4, d_model=32, seed=1)
    return folder


def _restricted(shortcuts: Shortcuts, kinds: tuple[str, ...]) -> Shortcuts:
    attention = {
        layer: given
        for layer, given in shortcuts.attention.items()
        if (isinstance(given, AblatedAttention) and "ablated attention" in kinds) or (isinstance(given, KeptHeads) and "kept heads" in kinds)
    }
    return Shortcuts(
        shortcuts.mlps if "constant MLPs" in kinds else {},
        attention,
        shortcuts.end_only_mlps if "end-only MLPs" in kinds else frozenset(),
        shortcuts.end,
    )


def use_only(monkeypatch, engine: Engine, kinds: tuple[str, ...], change=None) -> list[tuple[bool, Shortcuts]]:
    """Let the engine take only these kinds of shortcut (`change` may alter them); returns the
    (plain, shortcuts) of every run it then makes."""
    made = ShortcutPlanner.for_rows.__get__(engine.shortcuts)  # the planner's own, whatever an earlier call set
    used: list[tuple[bool, Shortcuts]] = []

    def restricted(template, row_masks, r_idx, start, plain):
        shortcuts = _restricted(made(template, row_masks, r_idx, start, plain=plain), kinds)
        shortcuts = change(shortcuts) if change else shortcuts
        used.append((plain, shortcuts))
        return shortcuts

    monkeypatch.setattr(engine.shortcuts, "for_rows", restricted)
    return used


def taken(used: list[tuple[bool, Shortcuts]]) -> set[str]:
    kinds = set()
    for _, shortcuts in used:
        kinds |= {"ablated attention" for a in shortcuts.attention.values() if isinstance(a, AblatedAttention)}
        kinds |= {"kept heads" for a in shortcuts.attention.values() if isinstance(a, KeptHeads)}
        kinds |= {"end-only MLPs"} if shortcuts.end_only_mlps else set()
        kinds |= {"constant MLPs"} if shortcuts.mlps else set()
    return kinds


def node_variants(run) -> list[Variant]:
    """Variants that keep one or two heads of a layer (with q and k positions), all of a layer's
    heads, three of four, and none: every shortcut and the model's own computation."""
    circuit = run.spec.circuit
    nodes = [member.node for member in circuit.nodes]
    return [
        circuit_variant(circuit, use_edges=False),
        *(circuit_variant(circuit, frozenset({node}), use_edges=False) for node in nodes),
        Variant(heads=(HeadKeep(1, 2),), mlps=(MlpKeep(0),), label="one head"),
        Variant(heads=(HeadKeep(2, 3),), mlps=(MlpKeep(1), MlpKeep(2)), label="one head, last layer"),
        run.full_model(),
        run.empty(),
        run.full_model(without=frozenset({ir.HeadNode(layer=2, head=1)})),
    ]


def metric(run, variants: list[Variant]) -> torch.Tensor:
    """The metric in chunks of 7 rows (a template's 8 prompts split in two) and of 8 (each
    template's prompts in one): both must agree."""
    engine = run.session.engine()
    mixed = engine.run(variants, engine.readout())
    engine.batch_size, size = 8, engine.batch_size
    try:
        alone = engine.run(variants, engine.readout())
    finally:
        engine.batch_size = size
    assert torch.allclose(mixed, alone, atol=TOLERANCE, rtol=TOLERANCE)
    return mixed


@pytest.mark.slow
@pytest.mark.parametrize(
    "ablate, kind, source",
    [
        ("mean of corrupt", "mean", "corrupt"),
        ("resample", "resample", "corrupt"),
        ("zero", "zero", "clean"),
    ],
)
def test_every_shortcut_gives_the_numbers_of_the_full_computation(model_dir, monkeypatch, ablate, kind, source):
    run = open_spec(model_dir, ablate=ablate, name=f"shortcut_{kind}.circ")
    engine, variants = run.session.engine(), node_variants(run)
    assert engine.shortcuts.heads_by_hand  # GPT-2's attention: the hand computation agrees with the model's
    use_only(monkeypatch, engine, ())
    everything = metric(run, variants)
    assert torch.allclose(everything, reference_metric(run, variants, kind, source), atol=TOLERANCE, rtol=0)
    for shortcut in KINDS:
        used = use_only(monkeypatch, engine, (shortcut,))
        alone = metric(run, variants)
        assert taken(used) == {shortcut}
        assert torch.allclose(alone, everything, atol=TOLERANCE, rtol=0), (shortcut, (alone - everything).abs().max())
    used = use_only(monkeypatch, engine, KINDS)
    assert torch.allclose(metric(run, variants), everything, atol=TOLERANCE, rtol=0)
    assert taken(used) == set(KINDS)


def test_a_kept_head_computed_wrongly_is_caught(model_dir, monkeypatch):
    """The comparison above notices a shortcut that computes something else: here the kept heads
    read clean keys and values at the positions their `k` leaves out (2.1 reads s2..s4 only)."""
    run = open_spec(model_dir, name="shortcut_wrong.circ")
    engine = run.session.engine()
    variants = [
        circuit_variant(run.spec.circuit, use_edges=False),
        Variant(heads=(HeadKeep(2, 1, q=None, k=run.spec.circuit.nodes[0].k),), label="2.1 k s2..s4"),
    ]
    use_only(monkeypatch, engine, ())
    everything = metric(run, variants)

    def every_key_clean(shortcuts: Shortcuts) -> Shortcuts:
        attention = {
            layer: replace(given, keep_kv=torch.ones_like(given.keep_kv)) if isinstance(given, KeptHeads) else given
            for layer, given in shortcuts.attention.items()
        }
        return replace(shortcuts, attention=attention)

    used = use_only(monkeypatch, engine, ("kept heads",), every_key_clean)
    wrong = metric(run, variants)
    assert "kept heads" in taken(used)
    assert not torch.allclose(wrong, everything, atol=1e-3, rtol=0)


@pytest.mark.slow
def test_hand_attention_is_refused_where_it_differs_from_the_model(model_dir, monkeypatch):
    """A model whose attention is not causal softmax of q.k / sqrt(dh) (other scaling, local
    windows) never takes the kept-heads shortcut: its check on clean prompts fails at the start."""

    def without_the_causal_mask(q, k, v, scale):
        return torch.einsum("bhqk,bkhe->bqhe", (torch.einsum("bqhe,bkhe->bhqk", q, k) * scale).softmax(-1), v)

    monkeypatch.setattr("circuitlang.engine.shortcuts._causal_attention", without_the_causal_mask)
    run = open_spec(model_dir, name="shortcut_refused.circ")
    engine = run.session.engine()
    assert not engine.shortcuts.heads_by_hand
    used = use_only(monkeypatch, engine, KINDS)
    variants = node_variants(run)
    assert torch.allclose(metric(run, variants), reference_metric(run, variants, "mean", "corrupt"), atol=TOLERANCE, rtol=0)
    assert "kept heads" not in taken(used)


@pytest.mark.slow
def test_edge_rows_take_no_shortcut_that_leaves_positions_or_hooks_out(model_dir, monkeypatch):
    """Edge ablation reads z (its running total) and recomputes q, k, v of circuit receivers at
    every position: a chunk with edge rows gets only the ablated layers (whose hooks on z still
    fire) and ablated MLPs, never hand-computed heads or end-only MLPs."""
    run = open_spec(model_dir, name="shortcut_edges.circ")
    engine = run.session.engine()
    detector = ir.HeadNode(layer=1, head=0)
    edge_variants = [run.circuit(), run.session.circuit(without=frozenset({detector}))]  # the second ablates layer 1
    variants = edge_variants + node_variants(run)
    used = use_only(monkeypatch, engine, ())
    everything = metric(run, variants)
    used = use_only(monkeypatch, engine, KINDS)
    fast = metric(run, variants)
    assert torch.allclose(fast, everything, atol=TOLERANCE, rtol=0)
    assert torch.allclose(fast[:2], reference_metric(run, edge_variants, "mean", "corrupt"), atol=TOLERANCE, rtol=0)
    with_edges = [shortcuts for plain, shortcuts in used if not plain]
    assert with_edges and taken([(False, s) for s in with_edges]) == {"ablated attention", "constant MLPs"}
    assert taken([(True, s) for plain, s in used if plain]) == set(KINDS)


def test_edge_runs_resumed_from_the_circuit_take_the_same_shortcuts_safely(model_dir, monkeypatch):
    """The circuit's cached edge run (the trunk) records every position: it takes no shortcut that
    leaves positions out, and variants resuming it agree with runs from layer 0 without shortcuts."""
    run = open_spec(model_dir, name="shortcut_trunk.circ")
    engine = run.session.engine()
    circuit = run.circuit()
    sweep = [circuit] + [run.session.circuit(without=frozenset({m.node})) for m in run.spec.circuit.nodes]
    use_only(monkeypatch, engine, ())
    everything = engine.run(sweep, engine.readout())
    engine.trunks.clear()
    use_only(monkeypatch, engine, KINDS)
    assert torch.allclose(engine.run(sweep, engine.readout(), base=circuit), everything, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_shortcuts_on_the_shipped_organism(monkeypatch):
    """`specs/organism_incr_digits.circ` (4 layers of 8 heads, 95 prompts): its circuit keeps three
    heads of layer 0 and every MLP, so its variants take the ablated-layer, kept-heads and
    end-only shortcuts; the numbers equal the run that computes everything."""
    run = circuitlang.open_run(circuitlang.load(SPECS / "organism_incr_digits.circ"))
    engine = run.session.engine()
    circuit = run.spec.circuit
    variants = [
        circuit_variant(circuit, use_edges=False),
        run.full_model(),
        run.empty(),
        *(circuit_variant(circuit, frozenset({m.node}), use_edges=False) for m in circuit.nodes),
        Variant(heads=(HeadKeep(3, 5),), mlps=(MlpKeep(3),), label="one head of the last layer"),
        run.full_model(without=frozenset({ir.HeadNode(layer=1, head=h) for h in range(8)})),
    ]
    use_only(monkeypatch, engine, ())
    everything = metric(run, variants)
    used = use_only(monkeypatch, engine, KINDS)
    fast = metric(run, variants)
    assert taken(used) == set(KINDS)
    assert torch.allclose(fast, everything, atol=TOLERANCE, rtol=TOLERANCE), (fast - everything).abs().max()
