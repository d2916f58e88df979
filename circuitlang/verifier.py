"""`verify`: run every experiment a spec needs on its model and build the Report.

The glue between the engine (torch) and the verifier's pure computations (numpy): it turns
variants into per-prompt metric arrays, node scores into estimates, and assembles the Report.
"""

from __future__ import annotations

import hashlib
import platform
import time
from importlib import metadata
from typing import Callable

import numpy as np

from circuitlang import __version__
from circuitlang.engine.session import Session
from circuitlang.engine import scores
from circuitlang.compile.audit import audit_pairs
from circuitlang.compile.plan import PATCH_RUNS_PER_EDGE, Plan, compile_plan
from circuitlang.compile.subsets import BASELINES
from circuitlang.engine.path_patching import Receiver, path_patch, path_patch_each
from circuitlang.engine.readouts import Readout
from circuitlang.ir import models as ir
from circuitlang.verification.claims import check_claims
from circuitlang.verification.progress import Meter
from circuitlang.ir.stdlib import CHANNELS
from circuitlang.verification.criteria import Criteria, VariantBank
from circuitlang.verification.edges import edge_effect, untested
from circuitlang.verification.audit import audit_report
from circuitlang.verification.report_model import (Audit, EdgeEffect, Faithfulness, NodeScores, PromptSetReport, Report,
                                             Versions)
from circuitlang.verification.statistics import Estimate, Resamples

Progress = Callable[[str], None]


def verify(session: Session, progress: Progress | None = None, audit: bool | None = None) -> Report:
    """`audit`: None runs the audit where the plan finds it cheap; True or False forces it."""
    started = time.perf_counter()
    resamples: dict[str, Resamples] = {}
    reports = []
    cfg = session.model.bridge.cfg
    plan = compile_plan(session.spec, session.datasets, audit, ir.ModelShape(n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                                                     origin="the loaded model"))
    say = Meter(sum(step.rows for step in plan.steps), progress or (lambda line: None))
    for prompt_set in session.spec.prompt_sets:
        say(f"{prompt_set.name}: caching clean and ablation runs")
        engine = session.engine(prompt_set.name)
        resamples[prompt_set.name] = Resamples.draw(engine.bound.n_prompts, session.spec.settings.bootstrap,
                                                   session.spec.settings.confidence, session.spec.settings.seed)
        reports.append(_prompt_set_report(session, prompt_set, resamples[prompt_set.name], plan, say))
    say("checking claims")

    def attention(name: str, head: ir.Node, queries: tuple, keys: tuple) -> Estimate:
        mass = scores.attention_mass(session.engine(name), head, queries, keys).numpy()
        return resamples[name].estimate({"a": mass}, lambda a: a["a"])

    claims = check_claims(session.spec, reports, attention)
    return Report(
        spec_path=session.spec.path, spec_sha256=spec_hash(session.spec), circuit=session.spec.name,
        model=session.model.identity.as_dict(), device=str(session.model.device), seed=session.spec.settings.seed,
        settings=session.spec.settings.model_dump(), versions=_versions(), prompt_sets=reports, claims=claims,
        passed=all(claim.passed for claim in claims), seconds=round(time.perf_counter() - started, 3),
    )


def spec_hash(spec: ir.Spec) -> str:
    """SHA-256 of what the spec means (its IR without source positions), `use`d files included."""
    return hashlib.sha256(spec.canonical_json(spans=False).encode()).hexdigest()


def _prompt_set_report(session: Session, prompt_set: ir.PromptSet, resamples: Resamples, plan: Plan,
                       say: Meter) -> PromptSetReport:
    engine = session.engine(prompt_set.name)
    readout = engine.readout()
    circuit = session.circuit()
    evaluated = [0]
    n = engine.bound.n_prompts

    def evaluate(kind: str, sets: list[frozenset[ir.Node]]) -> np.ndarray:
        say(f"{prompt_set.name}: {len(sets)} variants of {'the circuit' if kind == 'C' else 'the model'}")
        evaluated[0] += len(sets)
        variants = [session.circuit(without=s) if kind == "C" else session.full_model(without=s) for s in sets]
        values = engine.run(variants, readout, base=circuit if kind == "C" else None).numpy()
        say.advance(len(sets) * n)
        return values

    empty = engine.run([session.empty()], readout).numpy()[0]
    say.advance(sum(step.rows for step in plan.steps if step.id.startswith(f"{prompt_set.name}:")
                    and step.kind == "cache") + n)  # the clean and corrupt caches, and the empty circuit
    criteria = Criteria(session.spec.circuit, session.spec.settings, VariantBank(evaluate), resamples, empty)
    faithfulness = criteria.faithfulness()  # the order of compile.subsets.schedule: what `plan` prints
    minimality = criteria.minimality()
    completeness = criteria.completeness()
    steps = dict(criteria.bank.executed)
    steps[BASELINES] = steps.get(BASELINES, 0) + 1  # the empty circuit, run on its own
    model_metric = criteria.bank.get("M", frozenset())
    edges = _edge_effects(session, prompt_set.name, readout, model_metric, resamples, say)
    audit_step = next((s for s in plan.steps if s.id == f"{prompt_set.name}:audit"), None)
    audit = None if audit_step is None else (
        _audit(session, prompt_set.name, readout, model_metric, resamples, say) if audit_step.rows
        else Audit(ran=False, note=audit_step.what.split(": not run ", 1)[-1]))
    say(f"{prompt_set.name}: node scores")
    metric = engine.bound.metric
    return PromptSetReport(
        name=prompt_set.name, prompts=engine.bound.n_prompts,
        metric=f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name,
        faithfulness=faithfulness, completeness=completeness, minimality=minimality,
        node_scores=_node_scores(session, prompt_set.name, resamples), variants_evaluated=evaluated[0] + 1,
        edges=edges, patch_runs=PATCH_RUNS_PER_EDGE * sum(e.effect is not None for e in edges), steps=steps,
        audit=audit, warnings=_warnings(faithfulness),
    )


def _warnings(faithfulness: Faithfulness) -> list[str]:
    f = faithfulness.f_model
    if f.includes_zero():
        return [f"F(M) = {f.value:.4g} with CI [{f.low:.4g}, {f.high:.4g}] includes 0: faithfulness, incompleteness, "
                "minimality and edge effects are ratios to it and mean nothing here; claims on them fail"]
    return []


def _edge_effects(session: Session, name: str, readout: Readout, model: np.ndarray, resamples: Resamples,
                  say: Meter) -> list[EdgeEffect]:
    """Every declared edge path-patched on its own, direct path only (MLPs frozen too)."""
    engine, declared = session.engine(name), session.spec.circuit.edges
    if declared and engine.bound.templates[0].corrupt is None:
        return [untested(edge, "the prompt set has no corruption to patch from") for edge in declared]
    effects = []
    for number, edge in enumerate(declared, 1):
        say(f"{name}: path patching declared edge {number} of {len(declared)}")
        receiver = Receiver(edge.receiver, edge.channels or CHANNELS)
        patched = path_patch(engine, [edge.sender], [receiver], readout, freeze_mlps=True).numpy()
        say.advance(PATCH_RUNS_PER_EDGE * engine.bound.n_prompts)
        effects.append(edge_effect(edge, model, patched, resamples, session.spec.settings.minimality_threshold))
    return effects


def _audit(session: Session, name: str, readout: Readout, model: np.ndarray, resamples: Resamples, say: Meter) -> Audit:
    """Each node outside the circuit path-patched into each circuit node and the logits it can reach
    (one recording run, one replay per receiver), and into all of them at once."""
    cfg = session.model.bridge.cfg
    pairs = audit_pairs(session.spec.circuit, ir.ModelShape(n_layers=cfg.n_layers, n_heads=cfg.n_heads, origin="loaded"))
    engine, edges, nodes, runs = session.engine(name), {}, {}, 0
    for number, (sender, receivers) in enumerate(pairs, 1):
        say(f"{name}: audit, sender {number} of {len(pairs)}")
        groups = [[Receiver(r)] for r in receivers] + [[Receiver(r) for r in receivers]]
        patched = path_patch_each(engine, [sender], groups, readout, freeze_mlps=True)
        edges.update({(str(sender), str(r)): values.numpy() for r, values in zip(receivers, patched)})
        nodes[(str(sender), "circuit")] = patched[-1].numpy()
        runs += len(groups) + 1
        say.advance((len(groups) + 1) * engine.bound.n_prompts)
    return audit_report(model, edges, nodes, resamples, runs)


def _node_scores(session: Session, name: str, resamples: Resamples) -> list[NodeScores]:
    engine = session.engine(name)
    has_answer = bool(engine.bound.metric.args)

    def estimate(values: np.ndarray) -> Estimate:
        return resamples.estimate({"v": values}, lambda a: a["v"])

    rows = []
    for member in session.spec.circuit.nodes:
        node = member.node
        direct = estimate(scores.direct_logit(engine, node).numpy()) if has_answer else None
        copy = next_ = None
        if node.kind == "head":
            copy = estimate(scores.ov_scores(engine, node, "copy", session.spec.settings.top_k).numpy())
            next_ = estimate(scores.ov_scores(engine, node, "next", session.spec.settings.top_k).numpy())
        rows.append(NodeScores(node=str(node), role=member.role, direct_logit=direct, copy_score=copy,
                               next_score=next_))
    return rows


def _versions() -> Versions:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"
    return Versions(circuitlang=__version__, torch=version("torch"), transformer_lens=version("transformer-lens"),
                    python=platform.python_version())
