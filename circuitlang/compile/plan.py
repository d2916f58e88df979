"""IR -> Plan: the steps `verify` runs, as a small DAG with a readable printout.

The plan is computed without a model, so `circuitlang plan` shows what a verification costs
(forward passes, variants, prompts) before any weights are loaded. `verify` compiles the same plan
with the loaded model's shape and runs its steps in order, each by the function its kind maps to
(workflows.verify.STEP_RUNNERS): what `plan` prints is what runs. Its variant steps are the schedule of
compile.subsets, with the same counts: exact for every step but the greedy completeness search,
whose bound is printed as such; each declared edge adds two path-patching runs. The report
records what each step evaluated (`steps`, `patch_runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from circuitlang.compile.audit import audit_pairs, audit_runs
from circuitlang.compile.subsets import BASELINES, COMPLETENESS, GREEDY, MINIMALITY, greedy_bound, schedule
from circuitlang.data.datasets import Dataset
from circuitlang.ir import models as ir

PATCH_RUNS_PER_EDGE = 2  # record the receiver's input with the sender patched, then replay it


class StepKind(str, Enum):
    """What a step does. `verify` runs each kind with one function (workflows.verify.STEP_RUNNERS), so a new
    kind of experiment is a member here, its runner there and one entry in that table. A str, so
    that code comparing a step's kind with its old name ("run", "patch") keeps working."""

    EXPAND = "expand"  # the prompt set's prompts from its templates
    BIND = "bind"  # tokens, positions and answers
    CACHE = "cache"  # a clean or corrupt run whose activations the variants start from
    RUN = "run"  # variants of the circuit and the model: one step of compile.subsets.schedule
    PATCH = "patch"  # path patching of one declared edge
    AUDIT = "audit"  # path patching from outside the circuit into it (compile.audit)
    NODE_SCORES = "node scores"  # direct-logit, copy and next-token scores of every circuit node
    INTERCHANGE = "interchange"  # interchange interventions on a hypothesis's carriers and variables
    SCRUB = "scrubbing"  # causal scrubbing of a hypothesis
    CLAIMS = "claims"  # every `expect` of the spec against the numbers


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    what: str  # as `plan` prints it
    depends_on: tuple[str, ...] = ()
    variants: int = 0
    rows: int = 0  # prompt rows through the model (variants x prompts, or prompts for a cache)
    exact: bool = True  # False: an upper bound (the greedy search's choices depend on measured values)
    prompt_set: str | None = None  # None: a step over every prompt set (the claims)
    schedule_step: str | None = None  # RUN: the compile.subsets step it evaluates
    edge: ir.Edge | None = None  # PATCH: the declared edge it patches
    skipped: str | None = None  # why the step does not run (the audit when not asked for or too costly)
    # False: work `verify` has always done that `plan` has never listed (node scores, claims that
    # need no model run). Such a step runs no prompt rows, so the printed total stays every row.
    printed: bool = True


@dataclass(frozen=True)
class Plan:
    spec: str
    model: str
    steps: tuple[Step, ...]

    def render(self) -> str:
        shown = [step for step in self.steps if step.printed]
        width = max(len(step.id) for step in shown)
        lines = [f"plan for {self.spec} on {self.model}"]
        for step in shown:
            after = f"  (after {', '.join(step.depends_on)})" if step.depends_on else ""
            bound = "" if step.exact else "at most "
            cost = (
                f"  [{bound}{step.variants} variants, {bound}{step.rows} rows]"
                if step.variants
                else (f"  [{step.rows} rows]" if step.rows else "")
            )
            lines.append(f"  {step.id:<{width}}  {step.what}{cost}{after}")
        total = sum(step.rows for step in self.steps)
        bound = "" if all(step.exact for step in self.steps) else "at most "
        lines.append(f"total: {bound}{total} prompt rows through the model (runs start from the first layer a variant changes)")
        return "\n".join(lines)


def compile_plan(spec: ir.Spec, datasets: tuple[Dataset, ...], audit: bool | None = None, shape: ir.ModelShape | None = None) -> Plan:
    """`audit`: None runs the audit when it is cheap (compile.audit), True or False forces it.
    `shape`: the loaded model's, where the spec's model has no shape known offline."""
    steps: list[Step] = []
    for dataset in datasets:
        steps.extend(_prompt_set_steps(spec, dataset, audit, shape or spec.shape))
    steps.append(_claims_step(spec, datasets))
    return Plan(spec.name, spec.model.name, tuple(steps))


def _claims_step(spec: ir.Spec, datasets: tuple[Dataset, ...]) -> Step:
    """Every claim is checked; `plan` lists the step only where claims need the model again."""
    needs_model = any(isinstance(e, (ir.AttendsExpectation, ir.ScoreExpectation)) for e in spec.expectations)
    what = "attention, copy, next-token and direct-logit scores of claimed nodes" if needs_model else "claims on the numbers already computed"
    return Step("claims", StepKind.CLAIMS, what, tuple(f"{dataset.name}:clean" for dataset in datasets), printed=needs_model)


def _prompt_set_steps(spec: ir.Spec, dataset: Dataset, audit: bool | None, shape: ir.ModelShape | None) -> list[Step]:
    name, n = dataset.name, len(dataset.clean)
    prompt_set = spec.prompt_set(name)
    corruption = prompt_set.corruption.kind if prompt_set.corruption else "none"
    steps = [
        Step(f"{name}:expand", StepKind.EXPAND, f"{n} prompts from {len(dataset.templates)} template(s), corrupt {corruption}", prompt_set=name),
        Step(f"{name}:bind", StepKind.BIND, "tokenize; resolve positions per template; tokenize answers", (f"{name}:expand",), prompt_set=name),
        Step(f"{name}:clean", StepKind.CACHE, "clean run, residual and head/MLP activations cached", (f"{name}:bind",), rows=n, prompt_set=name),
    ]
    caches = [f"{name}:clean"]
    patched = spec.circuit.edges if prompt_set.corruption is not None else ()
    ablated_from_corrupt = spec.ablation.kind != "zero" and spec.ablation.source == "corrupt"
    auditable = prompt_set.corruption is not None and shape is not None and audit is not False
    if ablated_from_corrupt or patched or auditable:
        steps.append(
            Step(
                f"{name}:corrupt",
                StepKind.CACHE,
                "corrupt run for the ablation values and path patching",
                (f"{name}:bind",),
                rows=n,
                prompt_set=name,
            )
        )
        caches.append(f"{name}:corrupt")
    for step_name, what, variants, exact in _variant_steps(spec):
        steps.append(
            Step(
                f"{name}:{step_name}", StepKind.RUN, what, tuple(caches), variants, variants * n, exact, prompt_set=name, schedule_step=step_name
            )
        )
    for edge in patched:  # without a corruption there is nothing to patch from (the report says so)
        steps.append(
            Step(
                f"{name}:patch {edge}",
                StepKind.PATCH,
                "path patching of this declared edge (direct path): two runs",
                (f"{name}:clean", f"{name}:corrupt"),
                rows=PATCH_RUNS_PER_EDGE * n,
                prompt_set=name,
                edge=edge,
            )
        )
    if prompt_set.corruption is not None:
        steps.append(_audit_step(spec, name, n, sum(step.rows for step in steps), audit, shape))
    steps.append(
        Step(
            f"{name}:node scores",
            StepKind.NODE_SCORES,
            "direct-logit, copy and next-token scores of every circuit node, from the clean run",
            (f"{name}:clean",),
            prompt_set=name,
            printed=False,
        )
    )
    hypothesis = spec.hypothesis_for(name)
    if hypothesis is not None:
        steps.append(_interchange_step(hypothesis, name, n))
        what = "causal scrubbing: carriers from prompts that agree on their variable, the rest of the model from a random prompt"
        steps.append(Step(f"{name}:scrubbing", StepKind.SCRUB, what, (f"{name}:clean",), 1, n, prompt_set=name))
    return steps


INTERCHANGE_RUNS_PER_PAIR = 2  # the declared nodes, and a same-size baseline set (docs/verify.md)


def _interchange_step(hypothesis: ir.Hypothesis, name: str, n: int) -> Step:
    """One pair per prompt for each carrier and each carried variable (at most: a base with no
    source that changes its answer has none), each run on the declared nodes and on a baseline."""
    targets = len(hypothesis.carriers) + len(hypothesis.carried)
    what = (
        f"interchange interventions: {len(hypothesis.carriers)} carrier(s) and {len(hypothesis.carried)} variable(s), "
        "one (base, source) pair per prompt, each with a same-size baseline"
    )
    runs = INTERCHANGE_RUNS_PER_PAIR * targets
    return Step(f"{name}:interchange", StepKind.INTERCHANGE, what, (f"{name}:clean",), runs, runs * n, exact=False, prompt_set=name)


def _audit_step(spec: ir.Spec, name: str, n: int, other_rows: int, audit: bool | None, shape: ir.ModelShape | None) -> Step:
    """The audit (compile.audit) runs when forced, or by default when it costs no more rows than the
    rest of the prompt set's verification; a step that does not run says why, with 0 rows."""
    step_id, depends = f"{name}:audit", (f"{name}:clean", f"{name}:corrupt")
    if shape is None:
        why = "the model's shape is not known offline"
        return Step(step_id, StepKind.AUDIT, f"audit: not run, {why}", depends, prompt_set=name, skipped=why)
    rows = audit_runs(spec.circuit, shape) * n
    what = (
        f"audit: path patching from the {len(audit_pairs(spec.circuit, shape))} nodes outside the circuit into each circuit node and the logits"
    )
    if audit is False or (audit is None and rows > other_rows):
        why = "--no-audit" if audit is False else f"it would cost {rows} rows, more than the rest; verify --audit runs it"
        return Step(step_id, StepKind.AUDIT, f"{what}: not run ({why})", depends, prompt_set=name, skipped=why)
    return Step(step_id, StepKind.AUDIT, what, depends, rows=rows, prompt_set=name)


def _variant_steps(spec: ir.Spec) -> list[tuple[str, str, int, bool]]:
    """The schedule `verify` runs (compile.subsets), with what each step evaluates."""
    settings, nodes = spec.settings, len(spec.circuit.nodes)
    steps, _ = greedy_bound(spec.circuit, settings)
    what = {
        BASELINES: "F(M), F(C), F(empty)",
        MINIMALITY: f"for each of {nodes} nodes, C\\(K+v) and C\\K for K in (empty, its role class, {settings.minimality_samples} random)",
        COMPLETENESS: f"C\\K and M\\K for {settings.completeness_samples} random K and {len(spec.circuit.roles())} role classes",
        GREEDY: f"C\\K and M\\K along a greedy search of {steps} steps (its choices follow the measured values)",
    }
    return [(step.name, what[step.name], step.variants, step.exact) for step in schedule(spec.circuit, settings)]
