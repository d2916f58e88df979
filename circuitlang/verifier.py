"""`verify`: run every experiment a spec needs on its model and build the Report.

The glue between the engine (torch) and the verifier's pure computations (numpy): it turns
variants into per-prompt metric arrays, node scores into estimates, and assembles the Report.
With a result cache (`engine.result_cache`) every per-prompt array is read from it when it is
there; a prompt set's engine (its clean and corrupt runs) is built only when something is not.
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
from circuitlang.engine.path_patching import Receiver, path_patch_each
from circuitlang.engine.result_cache import CachedArrays, ResultCache, path_patch_request, variant_request
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir
from circuitlang.verification.claims import check_claims
from circuitlang.verification.progress import Meter
from circuitlang.ir.stdlib import CHANNELS
from circuitlang.verification.criteria import Criteria, VariantBank
from circuitlang.verification.edges import edge_effect, untested
from circuitlang.verification.audit import audit_report
from circuitlang.verification.report_model import (Audit, EdgeEffect, Faithfulness, NodeScores, PromptSetReport, Report,
                                                   ResultCacheUse, Versions)
from circuitlang.verification.statistics import Estimate, Resamples

Progress = Callable[[str], None]


def verify(session: Session, progress: Progress | None = None, audit: bool | None = None,
           cache: ResultCache | None = None) -> Report:
    """`audit`: None runs the audit where the plan finds it cheap; True or False forces it.
    `cache`: where per-prompt arrays are read from and stored (None: computed, kept nowhere; the
    command line uses the user's cache unless `--no-cache`)."""
    started = time.perf_counter()
    resamples: dict[str, Resamples] = {}
    results: dict[str, CachedArrays] = {}
    reports = []
    plan = compile_plan(session.spec, session.datasets, audit, loaded_shape(session, "the loaded model"))
    say = Meter(sum(step.rows for step in plan.steps), progress or (lambda line: None))
    for prompt_set in session.spec.prompt_sets:
        say(f"{prompt_set.name}: caching clean and ablation runs")
        bound = session.bound[prompt_set.name]
        results[prompt_set.name] = CachedArrays.open(cache, session.model, bound, session.batch_size)
        resamples[prompt_set.name] = Resamples.draw(bound.n_prompts, session.spec.settings.bootstrap,
                                                   session.spec.settings.confidence, session.spec.settings.seed)
        reports.append(_prompt_set_report(session, prompt_set, resamples[prompt_set.name], plan, say,
                                          results[prompt_set.name]))
    say("checking claims")

    def attention(name: str, head: ir.Node, queries: tuple, keys: tuple) -> Estimate:
        mass = results[name].one(("attention", head, queries, keys),
                                 lambda: scores.attention_mass(session.engine(name), head, queries, keys).numpy())
        return resamples[name].estimate({"a": mass}, lambda a: a["a"])

    claims = check_claims(session.spec, reports, attention)
    if cache is not None and cache.written_bytes:
        cache.trim()
    reports = [r.model_copy(update={"cache": _cache_use(cache, results[r.name])}) for r in reports]
    return Report(
        spec_path=session.spec.path, spec_sha256=spec_hash(session.spec), circuit=session.spec.name,
        model=session.model.identity.as_dict(), device=str(session.model.device),
        dtype=str(session.model.bridge.cfg.dtype).removeprefix("torch."), seed=session.spec.settings.seed,
        settings=session.spec.settings.model_dump(), versions=_versions(), prompt_sets=reports, claims=claims,
        passed=all(claim.passed for claim in claims), seconds=round(time.perf_counter() - started, 3),
    )


def spec_hash(spec: ir.Spec) -> str:
    """SHA-256 of what the spec means (its IR without source positions), `use`d files included."""
    return hashlib.sha256(spec.canonical_json(spans=False).encode()).hexdigest()


def _cache_use(cache: ResultCache | None, results: CachedArrays) -> ResultCacheUse:
    return ResultCacheUse(enabled=cache is not None, hits=results.hits, misses=results.misses)


def _prompt_set_report(session: Session, prompt_set: ir.PromptSet, resamples: Resamples, plan: Plan,
                       say: Meter, results: CachedArrays) -> PromptSetReport:
    name = prompt_set.name
    bound = session.bound[name]
    circuit = session.circuit()
    evaluated = [0]
    n = bound.n_prompts

    def evaluate(kind: str, sets: list[frozenset[ir.Node]]) -> np.ndarray:
        say(f"{name}: {len(sets)} variants of {'the circuit' if kind == 'C' else 'the model'}")
        evaluated[0] += len(sets)
        variants = [session.circuit(without=s) if kind == "C" else session.full_model(without=s) for s in sets]
        values = _variant_metrics(session, name, results, variants, base=circuit if kind == "C" else None)
        say.advance(len(sets) * n)
        return values

    empty = _variant_metrics(session, name, results, [session.empty()])[0]
    say.advance(sum(step.rows for step in plan.steps if step.id.startswith(f"{prompt_set.name}:")
                    and step.kind == "cache") + n)  # the clean and corrupt caches, and the empty circuit
    criteria = Criteria(session.spec.circuit, session.spec.settings, VariantBank(evaluate), resamples, empty)
    faithfulness = criteria.faithfulness()  # the order of compile.subsets.schedule: what `plan` prints
    minimality = criteria.minimality()
    completeness = criteria.completeness()
    steps = dict(criteria.bank.executed)
    steps[BASELINES] = steps.get(BASELINES, 0) + 1  # the empty circuit, run on its own
    model_metric = criteria.bank.get("M", frozenset())
    edges = _edge_effects(session, name, results, model_metric, resamples, say)
    audit_step = next((s for s in plan.steps if s.id == f"{name}:audit"), None)
    audit = None if audit_step is None else (
        _audit(session, name, results, model_metric, resamples, say) if audit_step.rows
        else Audit(ran=False, note=audit_step.what.split(": not run ", 1)[-1]))
    say(f"{name}: node scores")
    metric = bound.metric
    return PromptSetReport(
        name=name, prompts=n,
        metric=f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name,
        faithfulness=faithfulness, completeness=completeness, minimality=minimality,
        node_scores=_node_scores(session, name, results, resamples), variants_evaluated=evaluated[0] + 1,
        edges=edges, patch_runs=PATCH_RUNS_PER_EDGE * sum(e.effect is not None for e in edges), steps=steps,
        audit=audit, warnings=_warnings(faithfulness),
    )


def _variant_metrics(session: Session, name: str, results: CachedArrays, variants: list[Variant],
                     base: Variant | None = None) -> np.ndarray:
    """Metric per variant and prompt, [len(variants), n_prompts]; only the variants the cache
    lacks run (each on its own, so the cache cannot change a number), from `base` where they
    agree with it."""
    def compute(missing: list[int]) -> np.ndarray:
        engine = session.engine(name)
        return engine.run([variants[i] for i in missing], engine.readout(), base=base).numpy()

    requests = [variant_request(variant, session.spec.ablation) for variant in variants]
    return np.stack(results.many(requests, compute))


def _path_patched(session: Session, name: str, results: CachedArrays, sender: ir.Node,
                  groups: list[list[Receiver]]) -> list[np.ndarray]:
    """The metric per prompt with `sender` path-patched into each group of receivers on its own
    (direct paths: MLPs frozen too); only the groups the cache lacks run, sharing one recording."""
    def compute(missing: list[int]) -> list[np.ndarray]:
        engine = session.engine(name)
        patched = path_patch_each(engine, [sender], [groups[i] for i in missing], engine.readout(), freeze_mlps=True)
        return [values.numpy() for values in patched]

    return results.many([path_patch_request([sender], group, freeze_mlps=True) for group in groups], compute)


def _warnings(faithfulness: Faithfulness) -> list[str]:
    f = faithfulness.f_model
    if f.includes_zero():
        return [f"F(M) = {f.value:.4g} with CI [{f.low:.4g}, {f.high:.4g}] includes 0: faithfulness, incompleteness, "
                "minimality and edge effects are ratios to it and mean nothing here; claims on them fail"]
    return []


def _edge_effects(session: Session, name: str, results: CachedArrays, model: np.ndarray, resamples: Resamples,
                  say: Meter) -> list[EdgeEffect]:
    """Every declared edge path-patched on its own, direct path only (MLPs frozen too)."""
    bound, declared = session.bound[name], session.spec.circuit.edges
    if declared and bound.templates[0].corrupt is None:
        return [untested(edge, "the prompt set has no corruption to patch from") for edge in declared]
    effects = []
    for number, edge in enumerate(declared, 1):
        say(f"{name}: path patching declared edge {number} of {len(declared)}")
        [patched] = _path_patched(session, name, results, edge.sender, [[Receiver(edge.receiver, edge.channels or CHANNELS)]])
        say.advance(PATCH_RUNS_PER_EDGE * bound.n_prompts)
        effects.append(edge_effect(edge, model, patched, resamples, session.spec.settings.minimality_threshold))
    return effects


def _audit(session: Session, name: str, results: CachedArrays, model: np.ndarray, resamples: Resamples,
           say: Meter) -> Audit:
    """Each node outside the circuit path-patched into each circuit node and the logits it can reach
    (one recording run, one replay per receiver), and into all of them at once."""
    pairs = audit_pairs(session.spec.circuit, loaded_shape(session, "loaded"))
    n, edges, nodes, runs = session.bound[name].n_prompts, {}, {}, 0
    for number, (sender, receivers) in enumerate(pairs, 1):
        say(f"{name}: audit, sender {number} of {len(pairs)}")
        groups = [[Receiver(r)] for r in receivers] + [[Receiver(r) for r in receivers]]
        patched = _path_patched(session, name, results, sender, groups)
        edges.update({(str(sender), str(r)): values for r, values in zip(receivers, patched)})
        nodes[(str(sender), "circuit")] = patched[-1]
        runs += len(groups) + 1
        say.advance((len(groups) + 1) * n)
    return audit_report(model, edges, nodes, resamples, runs)


def _node_scores(session: Session, name: str, results: CachedArrays, resamples: Resamples) -> list[NodeScores]:
    has_answer = bool(session.bound[name].metric.args)

    def estimate(node: ir.Node, score: str) -> Estimate:
        return resamples.estimate({"v": _node_score(session, name, results, node, score)}, lambda a: a["v"])

    # a norm of the heads' sum before the residual stream (Gemma 2): a head's own write, which these
    # scores read through W_O, is not defined (docs/engine.md, "Model families"); left empty
    heads_write_alone = not session.model.family.attention_output_norm
    rows = []
    for member in session.spec.circuit.nodes:
        node = member.node
        defined = node.kind != "head" or heads_write_alone
        direct = estimate(node, "direct_logit") if has_answer and defined else None
        copy = next_ = None
        if node.kind == "head" and defined:
            copy, next_ = estimate(node, "copy"), estimate(node, "next")
        rows.append(NodeScores(node=str(node), role=member.role, direct_logit=direct, copy_score=copy,
                               next_score=next_))
    return rows


def _node_score(session: Session, name: str, results: CachedArrays, node: ir.Node, score: str) -> np.ndarray:
    """`direct_logit`, or the `copy` or `next` score (an OV score, with the spec's top_k), per prompt."""
    top_k = session.spec.settings.top_k

    def compute() -> np.ndarray:
        engine = session.engine(name)
        if score == "direct_logit":
            return scores.direct_logit(engine, node).numpy()
        return scores.ov_scores(engine, node, score, top_k).numpy()

    return results.one(("direct_logit", node) if score == "direct_logit" else ("ov_score", score, node, top_k), compute)


def _versions() -> Versions:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"
    return Versions(circuitlang=__version__, torch=version("torch"), transformer_lens=version("transformer-lens"),
                    python=platform.python_version())


def loaded_shape(session: Session, origin: str) -> ir.ModelShape:
    """The loaded model's shape, as `check` reads it offline (heads: query heads)."""
    family = session.model.family
    return ir.ModelShape(n_layers=family.n_layers, n_heads=family.n_heads, n_kv_heads=family.n_kv_heads,
                         parallel_attn_mlp=family.parallel_attn_mlp, origin=origin)
