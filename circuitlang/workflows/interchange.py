"""The interchange step of `verify`: a hypothesis's carriers and variables -> InterchangeScores.

For each carried variable: draw the (base, source) pairs (data.counterfactuals), tokenize each
counterfactual answer, and run the engine's interchange (engine.interchange) once per carrier of
the variable and once for all of them together, each beside a baseline: the same pairs with as
many nodes that carry nothing the hypothesis declares for that variable, at the same positions.
The baseline's nodes are drawn per pair (seeded): of the same kind as the node they stand in for
where the model has enough such nodes outside the carriers, else of either kind.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from circuitlang.data.counterfactuals import HighLevelModel, Pairs, check_answers, draw_pairs, draw_scrub_sources
from circuitlang.data.datasets import _seed
from circuitlang.data.tokenization import TokenizerPanic, encode_text, model_error_of
from circuitlang.engine.interchange import Overwrite, Sites, interchange, patched_metric
from circuitlang.engine.result_cache import CachedArrays, interchange_request, scrubbing_request
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.session import Session
from circuitlang.errors import DataError, Span
from circuitlang.ir import models as ir
from circuitlang.results.report import InterchangeScore, Scrubbing
from circuitlang.verification.interchange import interchange_score, scrubbing
from circuitlang.verification.statistics import Resamples


def interchange_scores(session: Session, name: str, hypothesis: ir.Hypothesis, results: CachedArrays) -> list[InterchangeScore]:
    """Per carrier (in the spec's order), then per variable (its carriers together)."""
    dataset = next(d for d in session.datasets if d.name == name)
    bound = session.bound[name]  # the engine is built only if some array is not in the result cache
    model = HighLevelModel.of(session.spec, name)
    check_answers(model, dataset, bound.metric.args[0])
    settings = session.spec.settings
    scores: dict[tuple[str, int | None], InterchangeScore] = {}
    for variable in hypothesis.carried:
        pairs = draw_pairs(model, dataset, variable, settings.seed)
        if not len(pairs):
            raise DataError(
                f"prompt set '{name}': no pair of prompts gives {variable} a value that changes the hypothesis's answer",
                hypothesis.span,
                "an interchange needs prompts that differ in the variable; widen the prompt set",
            )
        columns = _answer_columns(session, bound, pairs, hypothesis.answer.span)
        resamples = Resamples.draw(len(pairs), settings.bootstrap, settings.confidence, _seed(settings.seed, f"{name}/{variable}"))
        carriers = hypothesis.carriers_of(variable)
        everyone = frozenset(node for carrier in hypothesis.carriers for node in carrier.nodes)  # the baseline avoids them all
        for index, carrier in enumerate(hypothesis.carriers):
            if carrier.variable == variable:
                scores[(variable, index)] = _score(session, name, results, pairs, columns, resamples, carrier.sites, carrier.text, everyone)
        if len(carriers) == 1:  # the variable's nodes are the one carrier's: the same runs, under the variable's name
            only = next(score for (v, _), score in scores.items() if v == variable)
            scores[(variable, None)] = only.model_copy(update={"target": f"variable {variable}"})
        else:
            joint = tuple(site for carrier in carriers for site in carrier.sites)
            scores[(variable, None)] = _score(session, name, results, pairs, columns, resamples, joint, f"variable {variable}", everyone)
    ordered = [scores[(c.variable, i)] for i, c in enumerate(hypothesis.carriers)]
    return ordered + [scores[(v, None)] for v in hypothesis.carried]


def _score(
    session: Session,
    name: str,
    results: CachedArrays,
    pairs: Pairs,
    columns: np.ndarray,
    resamples: Resamples,
    sites: Sites,
    target: str,
    carriers: frozenset[ir.Node],
) -> InterchangeScore:
    n = len(pairs)
    rng = random.Random(_seed(session.spec.settings.seed, f"{pairs.variable}/baseline/{target}"))
    others = _nodes_outside(session, carriers)
    runs: dict[str, list[Sites]] = {"intervened": [sites] * n, "clean": [()] * n}
    if _baseline_possible(sites, others):
        runs["baseline"] = [_baseline_sites(sites, others, rng) for _ in range(n)]
    arrays = _interchange_arrays(session, name, results, pairs, columns, runs)
    return interchange_score(
        target,
        pairs.variable,
        [str(site.node) for site in sites],
        pairs.without_source,
        arrays["intervened correct"] == 1,
        arrays["intervened toward"],
        -arrays["clean toward"],
        arrays["baseline correct"] == 1 if "baseline" in runs else None,
        resamples,
    )


def _interchange_arrays(
    session: Session, name: str, results: CachedArrays, pairs: Pairs, columns: np.ndarray, runs: dict[str, list[Sites]]
) -> dict[str, np.ndarray]:
    """Per run (its sites per pair): `correct` (the top token is the counterfactual answer, 1 or
    0) and `toward` (logit of the counterfactual answer minus the base answer's), per pair. They
    go through the result cache as per-prompt arrays indexed by the base (NaN where a prompt is no
    pair's base), so a re-run with the same pairs reads them back."""
    names = [(run, quantity) for run in runs for quantity in ("correct", "toward")]
    requests = [interchange_request(quantity, runs[run], pairs.base, pairs.source, columns) for run, quantity in names]

    def compute(missing: list[int]) -> list[np.ndarray]:
        computed = {}
        for run in dict.fromkeys(names[i][0] for i in missing):
            result = interchange(session.engine(name), runs[run], pairs.base, pairs.source, columns)
            computed[(run, "correct")] = (result.top == columns[:, 0]).astype(float)
            computed[(run, "toward")] = result.logits[:, 0] - result.logits[:, 1]
        return [_per_prompt(results.length, pairs.base, computed[names[i]]) for i in missing]

    found = results.many(requests, compute)
    return {f"{run} {quantity}": values[list(pairs.base)] for (run, quantity), values in zip(names, found)}


def _per_prompt(n: int, base: Sequence[int], values: np.ndarray) -> np.ndarray:
    out = np.full(n, np.nan)
    out[list(base)] = values
    return out


def _answer_columns(session: Session, bound: BoundPromptSet, pairs: Pairs, span: Span) -> np.ndarray:
    """[n_pairs, 2]: the counterfactual answer's token id, then the base answer's."""
    tokenizer: Any = session.model.tokenizer.backend_tokenizer
    prefix = bound.answer_prefix
    known: dict[str, int] = {}

    def token(text: str, pair: int) -> int:
        if text not in known:
            try:
                ids = list(encode_text(tokenizer, prefix + text).ids)
            except TokenizerPanic as panic:
                raise model_error_of(panic, session.spec.model) from None
            unknown = session.model.tokenizer.unk_token_id
            if len(ids) != 1 or (unknown is not None and ids[0] == unknown):
                raise DataError(
                    f"prompt set '{bound.name}': the hypothesis predicts the answer {prefix + text!r} "
                    f"(pair {pair}: base prompt {pairs.base[pair]}, source {pairs.source[pair]}), which is not one known token",
                    span,
                    "an interchange reads one next token: keep the hypothesis's answers within the model's one-token answers",
                )
            known[text] = ids[0]
        return known[text]

    return np.array([[token(c, i), token(a, i)] for i, (c, a) in enumerate(zip(pairs.counterfactual, pairs.answer))], dtype=np.int64)


def _nodes_outside(session: Session, carriers: frozenset[ir.Node]) -> dict[str, list[ir.Node]]:
    shape = session.shape
    heads = [ir.HeadNode(layer=layer, head=head) for layer in range(shape.n_layers) for head in range(shape.n_heads)]
    mlps = [ir.MlpNode(layer=layer) for layer in range(shape.n_layers)]
    return {"head": [n for n in heads if n not in carriers], "mlp": [n for n in mlps if n not in carriers]}


def _baseline_possible(sites: Sites, others: dict[str, list[ir.Node]]) -> bool:
    return len(sites) <= len(others["head"]) + len(others["mlp"])


def _baseline_sites(sites: Sites, others: dict[str, list[ir.Node]], rng: random.Random) -> Sites:
    """As many nodes as `sites`, none a carrier of the hypothesis, at the same positions (module
    docstring); `_baseline_possible` says whether the model has that many."""
    kinds = [site.node.kind for site in sites]
    if all(kinds.count(kind) <= len(others[kind]) for kind in set(kinds)):
        chosen = {kind: rng.sample(others[kind], kinds.count(kind)) for kind in set(kinds)}
        nodes = [chosen[kind].pop() for kind in kinds]
    else:
        nodes = rng.sample(others["head"] + others["mlp"], len(sites))
    return tuple(ir.Site(node=node, positions=site.positions) for node, site in zip(nodes, sites))


def scrubbing_score(session: Session, name: str, hypothesis: ir.Hypothesis, results: CachedArrays) -> Scrubbing:
    """Causal scrubbing (docs/verify.md): each base runs with every node outside the circuit taking
    its output, at every position, from the base's random prompt, and every carrier site from a
    prompt that agrees with the base on the variables its node carries (drawn per node); the circuit's
    other nodes compute on from there."""
    dataset = next(d for d in session.datasets if d.name == name)
    settings = session.spec.settings
    sources = draw_scrub_sources(HighLevelModel.of(session.spec, name), dataset, settings.seed)
    if not sources.base:
        raise DataError(
            f"prompt set '{name}': every template has one prompt, so causal scrubbing has nothing to resample from",
            hypothesis.span,
            "give each template more prompts",
        )
    circuit = frozenset(member.node for member in session.spec.circuit.nodes)
    outside = [node for nodes in _nodes_outside(session, circuit).values() for node in nodes]
    sites = [site for carrier in hypothesis.carriers for site in carrier.sites]
    overwrites = [
        tuple(Overwrite(node, None, r) for node in outside)
        + tuple(Overwrite(site.node, site.positions, sources.source_of(i, site.node)) for site in sites)
        for i, r in enumerate(sources.random)
    ]
    bases = list(sources.base)
    resamples = Resamples.draw(len(bases), settings.bootstrap, settings.confidence, _seed(settings.seed, f"{name}/scrubbing"))
    request = scrubbing_request(outside, sites, bases, sources.random, sources.agreeing)
    requests = [(quantity, request) for quantity in ("model", "scrubbed", "random")]

    def compute(missing: list[int]) -> list[np.ndarray]:
        engine, n = session.engine(name), len(bases)
        runs = {
            "model": lambda: patched_metric(engine, [()] * n, bases),  # the clean runs' end logits: read, not run
            "scrubbed": lambda: patched_metric(engine, overwrites, bases),
            "random": lambda: patched_metric(engine, [()] * n, list(sources.random), answers_of=bases),
        }
        return [_per_prompt(results.length, bases, runs[requests[i][0]]()) for i in missing]

    model, scrubbed, random_ = (values[bases] for values in results.many(requests, compute))
    return scrubbing(len(sites), sources.only_the_base_agrees, model, scrubbed, random_, resamples)
