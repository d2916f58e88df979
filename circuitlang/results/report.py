"""The Report: every number a verification produced, as frozen pydantic models (documented in
docs/verify.md; the JSON output is `Report.model_dump_json()`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from circuitlang.results.estimate import Estimate
from circuitlang.results.tidy import TABLE_SCHEMAS, report_rows, tidy

REPORT_SCHEMA_VERSION = 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Faithfulness(Frozen):
    f_model: Estimate  # F(M): the metric of the full model
    f_circuit: Estimate  # F(C): the circuit, its complement ablated
    f_empty: Estimate  # F(empty): everything ablated
    faithfulness: Estimate  # F(C) / F(M)
    normalized_faithfulness: Estimate  # (F(C) - F(empty)) / (F(M) - F(empty))


class SubsetScore(Frozen):
    nodes: list[str]
    source: str  # "random", "role: NAME", "greedy step N", "empty"
    score: Estimate


class Completeness(Frozen):
    worst: Estimate  # max over the sets below of |F(C\K) - F(M\K)| / |F(M)|
    worst_set: SubsetScore
    mean: Estimate  # mean over the sets
    sets: list[SubsetScore]  # every K tried, worst first


class NodeMinimality(Frozen):
    node: str
    role: str
    score: Estimate  # max over K of |F(C\(K+v)) - F(C\K)| / |F(M)|
    worst_set: list[str]  # the K that gave the maximum
    needed: bool  # score >= minimality_threshold


class EdgeEffect(Frozen):
    edge: str  # "4.4 -> 9.1 via k, v"
    line: int  # the edge line in the spec
    effect: Estimate | None  # (F(M) - F(M with the edge path-patched from corrupt)) / |F(M)|; None: not computable
    needed: bool  # the interval excludes 0 and |effect| >= minimality_threshold
    note: str = ""


class MissingEdge(Frozen):
    sender: str  # a node outside the circuit
    receiver: str  # a circuit node (all its inputs) or "logits"
    effect: Estimate  # (F(M) - F(M; sender -> receiver patched)) / |F(M)|


class Audit(Frozen):
    """What the hypothesis leaves out: the strongest paths from outside the circuit into it."""

    ran: bool
    note: str = ""  # why it did not run
    runs: int = 0  # path-patching runs over the prompt set
    pairs: int = 0  # sender -> receiver pairs tested
    edges: list[MissingEdge] = []  # the strongest, by |effect|
    nodes: list[MissingEdge] = []  # each sender into every circuit node and the logits at once ("circuit")


class NodeScores(Frozen):
    node: str
    role: str
    direct_logit: Estimate | None = None
    copy_score: Estimate | None = None
    next_score: Estimate | None = None


class ResultCacheUse(Frozen):
    """How many per-prompt arrays came from the result cache (docs/verify.md, "Result cache")."""

    enabled: bool = False  # false with `verify --no-cache`, and in reports made before the cache
    hits: int = 0  # arrays read from the cache
    misses: int = 0  # arrays computed (and stored, when enabled)
    refused: str = ""  # why the cache was not used although asked for (a folder others may write, ...)


class InterchangeScore(Frozen):
    """Interchange interventions on one carrier, or on every carrier of a variable at once
    (docs/verify.md, "Interchange interventions")."""

    target: str  # the carrier as written, or `variable s4` for every carrier of it together
    variable: str
    nodes: list[str]
    pairs: int  # (base, source) pairs whose counterfactual answer differs from the base's
    without_source: int  # bases no drawn source changed the answer of
    iia: Estimate  # fraction of pairs whose top next token is the counterfactual answer
    graded_iia: Estimate  # mean logit difference toward it, over the clean one (ratio of means)
    baseline_iia: Estimate | None  # the same, with as many nodes that carry nothing declared (None: the model has too few)


class Scrubbing(Frozen):
    """Causal scrubbing of the hypothesis (docs/verify.md, "Causal scrubbing"): the fraction of the
    metric recovered when every carrier takes its output from a prompt that agrees with the base on
    its variable, and every node outside the circuit from a random prompt."""

    prompts: int  # bases scrubbed (a template with one prompt has nothing to resample from)
    sites: int  # carrier sites resampled per base
    only_the_base_agrees: int  # site draws where no other prompt agreed (the base's own output kept)
    f_model: Estimate  # the metric of the model on the bases
    f_scrubbed: Estimate  # ... of the scrubbed model
    f_random: Estimate  # ... of the model run on the random prompts, read with the bases' answers
    recovered: Estimate  # (f_scrubbed - f_random) / (f_model - f_random)


class PromptSetReport(Frozen):
    name: str
    prompts: int
    metric: str
    faithfulness: Faithfulness
    completeness: Completeness
    minimality: list[NodeMinimality]
    node_scores: list[NodeScores]
    variants_evaluated: int
    edges: list[EdgeEffect] = []  # one per declared edge, in the spec's order
    steps: dict[str, int] = {}  # variants each step of the schedule evaluated (`plan` printed the same steps)
    audit: Audit | None = None  # None: the prompt set has no corruption to patch from
    patch_runs: int = 0  # path-patching forward passes over the prompt set (two per tested edge)
    warnings: list[str] = []  # what makes numbers of this prompt set unreliable (F(M) near zero)
    cache: ResultCacheUse = ResultCacheUse()
    interchange: list[InterchangeScore] = []  # per carrier, then per variable; empty without a hypothesis
    scrubbing: Scrubbing | None = None  # None without a hypothesis


class ClaimResult(Frozen):
    claim: str  # the expectation as written
    line: int
    prompt_set: str
    target: str  # "circuit", a node, a role's node, or a declared edge
    # What `value` measures, in the words of the report's tables: "faithfulness", "effect" (signed,
    # as in the edges table), "|effect|" (edge_effect: the weakest edge's magnitude), ...
    quantity: str = ""
    value: Estimate | None
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    passed: bool
    margin: float | None  # how far the value is on the right side of the threshold (negative: failed)
    note: str = ""  # e.g. the confidence interval straddles the threshold


class Versions(Frozen):
    circuitlang: str
    torch: str
    transformer_lens: str
    python: str


class Report(Frozen):
    schema_version: int = REPORT_SCHEMA_VERSION
    spec_path: str
    spec_sha256: str
    circuit: str
    model: dict[str, object]
    device: str
    dtype: str = "float32"  # the model's precision (verify --dtype)
    seed: int
    settings: dict[str, object]
    versions: Versions
    prompt_sets: list[PromptSetReport]
    claims: list[ClaimResult]
    passed: bool
    seconds: float

    def __repr__(self) -> str:
        failed = sum(not claim.passed for claim in self.claims)
        verdict = "all claims pass" if self.passed else f"{failed} of {len(self.claims)} claims failed"
        sets = ", ".join(f"{p.name}: faithfulness {p.faithfulness.faithfulness}" for p in self.prompt_sets)
        return f"<Report {self.circuit}: {verdict}; {sets}>"

    def table(self, name: str = "claims", kind: str = "auto"):
        """One of the report's tidy tables (results.tidy.REPORT_TABLES: claims, faithfulness,
        completeness, minimality, edges, audit, node_scores, interchange, scrubbing), every prompt set
        in one table: a pandas
        DataFrame when pandas is installed, else a numpy structured array (`kind=` chooses)."""
        return tidy(report_rows(self, name), kind, TABLE_SCHEMAS.get(name))

    def _repr_markdown_(self) -> str:  # a notebook shows the Markdown report
        from circuitlang.report.render import to_markdown

        return to_markdown(self)
