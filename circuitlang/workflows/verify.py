"""`verify`: run the plan of a spec on its model and build the Report.

`verify` compiles the plan `circuitlang plan` prints (compile.plan), with the loaded model's shape,
and runs its steps in order, each by the function its kind maps to in STEP_RUNNERS: a new kind of
experiment is a StepKind, a runner here and its entry in that table. The runners are the glue
between the engine (torch) and the verifier's pure computations (numpy): they turn variants into
per-prompt metric arrays, node scores into estimates, and leave their results in the prompt set's
run, from which the claims step assembles the reports. With a result cache
(`engine.result_cache`) every per-prompt array is read from it when it is there; a prompt set's
engine (its clean and corrupt runs) is built only when something is not. `verify_cached` runs
the plan on a session without a model (engine.session.open_cached_session) and gives up at the
first array the cache lacks: a fully cached verify loads no model and imports no torch.

A spec's prompt sets are verified independently until the claims: `verify_prompt_sets` runs the
steps of some of them (on a Ray cluster, one task each: workflows.suite) and `assemble_report`
checks the claims on all of them, with the attention estimates the claims step read.
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, TypeVar

import numpy as np

from circuitlang import __version__
from circuitlang.data.datasets import Dataset
from circuitlang.engine.session import NeedsModel, Session, open_cached_session
from circuitlang.compile.audit import audit_pairs
from circuitlang.compile.plan import PATCH_RUNS_PER_EDGE, Step, StepKind, compile_plan
from circuitlang.compile.subsets import BASELINES, COMPLETENESS, GREEDY, MINIMALITY
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.result_cache import CachedArrays, ResultCache, path_patch_request, variant_request
from circuitlang.engine.variants import Receiver, Variant
from circuitlang.ir import models as ir
from circuitlang.verification.claims import check_claims
from circuitlang.verification.progress import Meter
from circuitlang.ir.stdlib import CHANNELS
from circuitlang.verification.criteria import Criteria, VariantBank
from circuitlang.verification.edges import edge_effect, untested
from circuitlang.verification.audit import audit_report
from circuitlang.results.report import (
    InterchangeScore,
    Scrubbing,
    Audit,
    ClaimResult,
    Completeness,
    EdgeEffect,
    Faithfulness,
    NodeMinimality,
    NodeScores,
    PromptSetReport,
    Report,
    ResultCacheUse,
    Versions,
)
from circuitlang.results.estimate import Estimate
from circuitlang.verification.statistics import Resamples

Progress = Callable[[str], None]
T = TypeVar("T")


def verify(session: Session, progress: Progress | None = None, audit: bool | None = None, cache: ResultCache | None = None) -> Report:
    """`audit`: None runs the audit where the plan finds it cheap; True or False forces it.
    `cache`: where per-prompt arrays are read from and stored (None: computed, kept nowhere; the
    command line uses the user's cache unless `--no-cache`)."""
    return assemble_report(session.spec, [verify_prompt_sets(session, None, progress, audit, cache)])


@dataclass(frozen=True)
class PromptSetsVerified:
    """What the plan's steps found on some of a spec's prompt sets (all of them, or those one Ray
    task was given): their reports, and every attention estimate the claims on them read."""

    reports: list[PromptSetReport]
    attention: dict[tuple, Estimate]
    model: dict
    device: str
    dtype: str
    seconds: float
    versions: Versions  # of the process that ran the steps (a Ray worker's, not the driver's)


def verify_prompt_sets(
    session: Session, names: frozenset[str] | None, progress: Progress | None, audit: bool | None, cache: ResultCache | None
) -> PromptSetsVerified:
    """The plan's steps of the prompt sets `names` (None: every one) in plan order, then the claims
    step on their reports: each prompt set's steps depend on its own results alone, so a prompt set
    verified on its own gives the numbers it gives among the others."""
    started = time.perf_counter()
    plan = compile_plan(session.spec, session.datasets, audit, session.shape)
    steps = [step for step in plan.steps if names is None or step.prompt_set is None or step.prompt_set in names]
    verification = Verification(session, cache, Meter(sum(step.rows for step in steps), progress or (lambda line: None)))
    for step in steps:
        STEP_RUNNERS[step.kind](verification, step)
    _finished(verification.claims, "claims step")
    if cache is not None and cache.written_bytes:
        cache.trim()
    reports = [r.model_copy(update={"cache": _cache_use(cache, verification.runs[r.name].results)}) for r in verification.reports]
    facts = session.facts
    return PromptSetsVerified(
        reports, verification.attention_read, facts.identity.as_dict(), facts.device, facts.dtype, time.perf_counter() - started, _versions()
    )


def assemble_report(spec: ir.Spec, parts: list[PromptSetsVerified]) -> Report:
    """The spec's Report from its prompt sets' results (one part, or one per Ray task), in the
    spec's order of prompt sets, with the claims checked on all of them together."""
    order = {prompt_set.name: index for index, prompt_set in enumerate(spec.prompt_sets)}
    reports = sorted((report for part in parts for report in part.reports), key=lambda report: order[report.name])
    attention = {key: value for part in parts for key, value in part.attention.items()}
    claims = check_claims(spec, reports, lambda *key: attention[key])
    first = parts[0]
    return Report(
        spec_path=spec.path,
        spec_sha256=spec_hash(spec),
        circuit=spec.name,
        model=first.model,
        device=first.device,
        dtype=first.dtype,
        seed=spec.settings.seed,
        settings=spec.settings.model_dump(),
        versions=first.versions,
        prompt_sets=reports,
        claims=claims,
        passed=all(claim.passed for claim in claims),
        seconds=round(max(part.seconds for part in parts), 3),
    )


def verify_cached(
    spec: ir.Spec,
    datasets: tuple[Dataset, ...],
    cache: ResultCache,
    audit: bool | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int = 0,
) -> Report | None:
    """The Report of `verify` when every array it needs is in `cache` and the cache remembers the
    model's facts, computed without loading the model; else None (nothing is written then)."""
    part = verify_cached_prompt_sets(spec, datasets, cache, None, audit, device, dtype, threads)
    return None if part is None else assemble_report(spec, [part])


def verify_cached_prompt_sets(
    spec: ir.Spec,
    datasets: tuple[Dataset, ...],
    cache: ResultCache,
    names: frozenset[str] | None,
    audit: bool | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int = 0,
) -> PromptSetsVerified | None:
    """`verify_prompt_sets` of `names` without the model when the cache holds every array; else None."""
    session = open_cached_session(spec, datasets, cache, device, dtype, threads)
    if session is None:
        return None
    try:
        return verify_prompt_sets(session, names, None, audit, cache)
    except NeedsModel:
        return None


def spec_hash(spec: ir.Spec) -> str:
    """SHA-256 of what the spec means (its IR without source positions), `use`d files included."""
    return hashlib.sha256(spec.canonical_json(spans=False).encode()).hexdigest()


def _cache_use(cache: ResultCache | None, results: CachedArrays) -> ResultCacheUse:
    refused = cache.refused or "" if cache is not None else ""
    return ResultCacheUse(enabled=cache is not None and not refused, hits=results.hits, misses=results.misses, refused=refused)


# ---- what the steps share ----------------------------------------------------------------------


@dataclass
class PromptSetRun:
    """One prompt set's verification: what its steps need, and what they found, in plan order."""

    session: Session
    say: Meter
    name: str
    results: CachedArrays
    resamples: Resamples
    circuit: Variant  # the circuit's variants run from it where they agree with it
    caches: list[Step] = field(default_factory=list)  # its cache steps so far (see _run_cache)
    criteria: Criteria | None = None  # from the baselines on
    faithfulness: Faithfulness | None = None
    minimality: list[NodeMinimality] | None = None
    completeness: Completeness | None = None
    edges: list[EdgeEffect] = field(default_factory=list)  # the declared edges path-patched so far
    audit: Audit | None = None
    node_scores: list[NodeScores] | None = None
    interchange: list[InterchangeScore] = field(default_factory=list)  # the hypothesis's, when the spec has one
    scrubbing: Scrubbing | None = None
    variants_evaluated: int = 0  # by the criteria (the empty circuit is counted in the report)

    @classmethod
    def open(cls, session: Session, say: Meter, cache: ResultCache | None, name: str) -> PromptSetRun:
        bound, settings = session.bound[name], session.spec.settings
        return cls(
            session,
            say,
            name,
            CachedArrays.open(cache, session.facts, session.cpu_threads(), bound, session.batch_size),
            Resamples.draw(bound.n_prompts, settings.bootstrap, settings.confidence, settings.seed),
            session.circuit(),
        )

    @property
    def bound(self) -> BoundPromptSet:
        return self.session.bound[self.name]

    @property
    def n(self) -> int:
        return self.bound.n_prompts

    @property
    def started_criteria(self) -> Criteria:
        return _finished(self.criteria, f"{self.name}:baselines step")

    def evaluate(self, kind: str, sets: list[frozenset[ir.Node]]) -> np.ndarray:
        """The criteria's variants (kind "C": the circuit, "M": the model, without each set), with progress."""
        self.say(f"{self.name}: {len(sets)} variants of {'the circuit' if kind == 'C' else 'the model'}")
        self.variants_evaluated += len(sets)
        session = self.session
        variants = [session.circuit(without=s) if kind == "C" else session.full_model(without=s) for s in sets]
        values = _variant_metrics(session, self.name, self.results, variants, base=self.circuit if kind == "C" else None)
        self.say.advance(len(sets) * self.n)
        return values

    def report(self) -> PromptSetReport:
        metric, criteria = self.bound.metric, self.started_criteria
        faithfulness = _finished(self.faithfulness, f"{self.name}:baselines step")
        steps = dict(criteria.bank.executed)
        steps[BASELINES] = steps.get(BASELINES, 0) + 1  # the empty circuit, run on its own
        edges = self._edge_report()
        return PromptSetReport(
            name=self.name,
            prompts=self.n,
            metric=f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name,
            faithfulness=faithfulness,
            completeness=_finished(self.completeness, f"{self.name}:{GREEDY} step"),
            minimality=_finished(self.minimality, f"{self.name}:{MINIMALITY} step"),
            node_scores=_finished(self.node_scores, f"{self.name}:node scores step"),
            variants_evaluated=self.variants_evaluated + 1,
            edges=edges,
            patch_runs=PATCH_RUNS_PER_EDGE * sum(e.effect is not None for e in edges),
            steps=steps,
            audit=self.audit,
            warnings=_warnings(faithfulness),
            interchange=self.interchange,
            scrubbing=self.scrubbing,
        )

    def _edge_report(self) -> list[EdgeEffect]:
        """The patch steps' effects; without a corruption the plan has none, and each edge says why."""
        declared = self.session.spec.circuit.edges
        if declared and self.bound.templates[0].corrupt is None:
            return [untested(edge, "the prompt set has no corruption to patch from") for edge in declared]
        return self.edges


@dataclass
class Verification:
    """What every step of one verification shares; the claims step leaves the reports and claims."""

    session: Session
    cache: ResultCache | None
    say: Meter
    runs: dict[str, PromptSetRun] = field(default_factory=dict)  # in the plan's order of prompt sets
    reports: list[PromptSetReport] = field(default_factory=list)
    claims: list[ClaimResult] | None = None
    attention_read: dict[tuple, Estimate] = field(default_factory=dict)  # by the claims, by their arguments

    def prompt_set(self, step: Step) -> PromptSetRun:
        """The run of the step's prompt set, opened by its first step."""
        name = _finished(step.prompt_set, f"prompt set in step {step.id}")
        if name not in self.runs:
            self.runs[name] = PromptSetRun.open(self.session, self.say, self.cache, name)
        return self.runs[name]

    def attention(self, name: str, head: ir.Node, queries: tuple, keys: tuple) -> Estimate:
        """A head's attention from the query positions to the key positions (claims), kept in
        `attention_read` for `assemble_report`."""
        key = (name, head, queries, keys)
        self.attention_read[key] = self._attention(*key)  # each claim's request is read (and counted) on its own
        return self.attention_read[key]

    def _attention(self, name: str, head: ir.Node, queries: tuple, keys: tuple) -> Estimate:
        run = self.runs[name]

        def compute() -> np.ndarray:
            from circuitlang.engine import scores

            return scores.attention_mass(self.session.engine(name), head, queries, keys).numpy()

        mass = run.results.one(("attention", head, queries, keys), compute)
        return run.resamples.estimate({"a": mass}, lambda a: a["a"])


def _finished(value: T | None, what: str) -> T:
    """What an earlier step of the plan (or the plan itself) gives a later step: a plan that lacks
    the step fails here, saying which, rather than with a None deep in a computation."""
    if value is None:
        raise RuntimeError(f"the plan has no {what}, which verify needs")
    return value


# ---- the steps ---------------------------------------------------------------------------------


def _already_done(verification: Verification, step: Step) -> None:
    """Expansion and binding: `open_session` did both for every prompt set before the plan ran.
    The prompt set's run opens here, at its first step."""
    verification.prompt_set(step)


def _run_cache(verification: Verification, step: Step) -> None:
    """The engine builds a prompt set's clean and corrupt runs on first use, in its first variant
    run (the baselines): this step says so once per prompt set, and its rows are counted then."""
    run = verification.prompt_set(step)
    if not run.caches:
        verification.say(f"{run.name}: caching clean and ablation runs")
    run.caches.append(step)


def _run_variants(verification: Verification, step: Step) -> None:
    """One step of the schedule (compile.subsets), by the part of the criteria that evaluates it."""
    SCHEDULE_STEPS[_finished(step.schedule_step, f"schedule step in step {step.id}")](verification.prompt_set(step))


def _baselines(run: PromptSetRun) -> None:
    """F(empty) on its own, then F(M) and F(C): faithfulness."""
    session = run.session
    empty = _variant_metrics(session, run.name, run.results, [session.empty()])[0]
    run.say.advance(sum(step.rows for step in run.caches) + run.n)  # the caches (built for this run), and it
    run.criteria = Criteria(session.spec.circuit, session.spec.settings, VariantBank(run.evaluate), run.resamples, empty)
    run.faithfulness = run.criteria.faithfulness()


def _minimality(run: PromptSetRun) -> None:
    run.minimality = run.started_criteria.minimality()


def _fixed_completeness_sets(run: PromptSetRun) -> None:
    run.started_criteria.fixed_completeness_sets()


def _greedy_completeness(run: PromptSetRun) -> None:
    run.completeness = run.started_criteria.greedy_completeness()


SCHEDULE_STEPS: dict[str, Callable[[PromptSetRun], None]] = {
    BASELINES: _baselines,
    MINIMALITY: _minimality,
    COMPLETENESS: _fixed_completeness_sets,
    GREEDY: _greedy_completeness,
}


def _run_patch(verification: Verification, step: Step) -> None:
    """A declared edge path-patched on its own, direct path only (MLPs frozen too)."""
    run, edge = verification.prompt_set(step), _finished(step.edge, f"edge in step {step.id}")
    declared = verification.session.spec.circuit.edges
    run.say(f"{run.name}: path patching declared edge {len(run.edges) + 1} of {len(declared)}")
    [patched] = _path_patched(run.session, run.name, run.results, edge.sender, [[Receiver(edge.receiver, edge.channels or CHANNELS)]])
    run.say.advance(PATCH_RUNS_PER_EDGE * run.n)
    model = run.started_criteria.bank.get("M", frozenset())
    run.edges.append(edge_effect(edge, model, patched, run.resamples, verification.session.spec.settings.minimality_threshold))


def _run_audit(verification: Verification, step: Step) -> None:
    run = verification.prompt_set(step)
    if step.skipped is not None:
        run.audit = Audit(ran=False, note=f"({step.skipped})")  # the report's note reads "(why)"
    elif not step.rows:  # every node of the model is in the circuit: nothing outside it to patch from
        run.audit = Audit(ran=False, note=step.what)
    else:
        run.audit = _audit(run, run.started_criteria.bank.get("M", frozenset()))


def _run_node_scores(verification: Verification, step: Step) -> None:
    run = verification.prompt_set(step)
    run.say(f"{run.name}: node scores")
    run.node_scores = _node_scores(run.session, run.name, run.results, run.resamples)


def _run_interchange(verification: Verification, step: Step) -> None:
    run = verification.prompt_set(step)
    hypothesis = run.session.spec.hypothesis_for(run.name)
    assert hypothesis is not None, "the plan has an interchange step only for a prompt set with a hypothesis"
    run.say(f"{run.name}: interchange interventions")
    from circuitlang.workflows.interchange import interchange_scores  # its engine half imports torch

    run.interchange = interchange_scores(run.session, run.name, hypothesis, run.results)
    run.say.advance(step.rows)


def _run_scrubbing(verification: Verification, step: Step) -> None:
    run = verification.prompt_set(step)
    hypothesis = run.session.spec.hypothesis_for(run.name)
    assert hypothesis is not None, "the plan has a scrubbing step only for a prompt set with a hypothesis"
    run.say(f"{run.name}: causal scrubbing")
    from circuitlang.workflows.interchange import scrubbing_score

    run.scrubbing = scrubbing_score(run.session, run.name, hypothesis, run.results)
    run.say.advance(step.rows)


def _run_claims(verification: Verification, step: Step) -> None:
    """Every claim of the spec, on the prompt sets' reports (attention claims run the model again)."""
    verification.say("checking claims")
    verification.reports = [run.report() for run in verification.runs.values()]
    verification.claims = check_claims(verification.session.spec, verification.reports, verification.attention)


StepRunner = Callable[[Verification, Step], None]
STEP_RUNNERS: dict[StepKind, StepRunner] = {
    StepKind.EXPAND: _already_done,
    StepKind.BIND: _already_done,
    StepKind.CACHE: _run_cache,
    StepKind.RUN: _run_variants,
    StepKind.PATCH: _run_patch,
    StepKind.AUDIT: _run_audit,
    StepKind.NODE_SCORES: _run_node_scores,
    StepKind.INTERCHANGE: _run_interchange,
    StepKind.SCRUB: _run_scrubbing,
    StepKind.CLAIMS: _run_claims,
}


# ---- the engine's numbers ----------------------------------------------------------------------


def _variant_metrics(session: Session, name: str, results: CachedArrays, variants: list[Variant], base: Variant | None = None) -> np.ndarray:
    """Metric per variant and prompt, [len(variants), n_prompts]; only the variants the cache
    lacks run (each on its own, so the cache cannot change a number), from `base` where they
    agree with it."""

    def compute(missing: list[int]) -> list[np.ndarray]:
        engine = session.engine(name)
        return list(engine.run([variants[i] for i in missing], engine.readout(), base=base).numpy())  # a row each

    requests = [variant_request(variant, session.spec.ablation) for variant in variants]
    return np.stack(results.many(requests, compute))


def _path_patched(session: Session, name: str, results: CachedArrays, sender: ir.Node, groups: list[list[Receiver]]) -> list[np.ndarray]:
    """The metric per prompt with `sender` path-patched into each group of receivers on its own
    (direct paths: MLPs frozen too); only the groups the cache lacks run, sharing one recording."""

    def compute(missing: list[int]) -> list[np.ndarray]:
        from circuitlang.engine.path_patching import path_patch_each

        engine = session.engine(name)
        patched = path_patch_each(engine, [sender], [groups[i] for i in missing], engine.readout(), freeze_mlps=True)
        return [values.numpy() for values in patched]

    return results.many([path_patch_request([sender], group, freeze_mlps=True) for group in groups], compute)


def _warnings(faithfulness: Faithfulness) -> list[str]:
    f = faithfulness.f_model
    if f.includes_zero():
        return [
            f"F(M) = {f.value:.4g} with CI [{f.low:.4g}, {f.high:.4g}] includes 0: faithfulness, incompleteness, "
            "minimality and edge effects are ratios to it and mean nothing here; claims on them fail"
        ]
    return []


def _audit(run: PromptSetRun, model: np.ndarray) -> Audit:
    """Each node outside the circuit path-patched into each circuit node and the logits it can reach
    (one recording run, one replay per receiver), and into all of them at once."""
    pairs = audit_pairs(run.session.spec.circuit, run.session.shape)
    edges, nodes, runs = {}, {}, 0
    for number, (sender, receivers) in enumerate(pairs, 1):
        run.say(f"{run.name}: audit, sender {number} of {len(pairs)}")
        groups = [[Receiver(r)] for r in receivers] + [[Receiver(r) for r in receivers]]
        patched = _path_patched(run.session, run.name, run.results, sender, groups)
        edges.update({(str(sender), str(r)): values for r, values in zip(receivers, patched)})
        nodes[(str(sender), "circuit")] = patched[-1]
        runs += len(groups) + 1
        run.say.advance((len(groups) + 1) * run.n)
    return audit_report(model, edges, nodes, run.resamples, runs)


def _node_scores(session: Session, name: str, results: CachedArrays, resamples: Resamples) -> list[NodeScores]:
    has_answer = bool(session.bound[name].metric.args)

    def estimate(node: ir.Node, score: str) -> Estimate:
        return resamples.estimate({"v": _node_score(session, name, results, node, score)}, lambda a: a["v"])

    # a norm of the heads' sum before the residual stream (Gemma 2): a head's own write, which these
    # scores read through W_O, is not defined (docs/engine.md, "Model families"); left empty
    heads_write_alone = not session.facts.family.attention_output_norm
    rows = []
    for member in session.spec.circuit.nodes:
        node = member.node
        defined = node.kind != "head" or heads_write_alone
        direct = estimate(node, "direct_logit") if has_answer and defined else None
        copy = next_ = None
        if node.kind == "head" and defined:
            copy, next_ = estimate(node, "copy"), estimate(node, "next")
        rows.append(NodeScores(node=str(node), role=member.role, direct_logit=direct, copy_score=copy, next_score=next_))
    return rows


def _node_score(session: Session, name: str, results: CachedArrays, node: ir.Node, score: str) -> np.ndarray:
    """`direct_logit`, or the `copy` or `next` score (an OV score, with the spec's top_k), per prompt."""
    top_k = session.spec.settings.top_k

    def compute() -> np.ndarray:
        from circuitlang.engine import scores

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

    return Versions(
        circuitlang=__version__, torch=version("torch"), transformer_lens=version("transformer-lens"), python=platform.python_version()
    )
