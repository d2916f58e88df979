"""Run one discovery method to a faithfulness target and turn its result into `.circ` text.

Takes a run (spec bound to its model) and the command's options; gives the text to write, a short
summary for the terminal, and whether the target was reached. The heads of the found circuit are
named by `discover.roles`; every number that led to the circuit is written as a comment.

Progress counts prompt rows through the model against a total counted before the search starts:
each method's rows at their most (`ROW_COUNTS`), then naming and position restriction for every
head of the model. What a search did not need comes off the total as soon as it is known, so the
time-left estimate errs long, and tightens as the search goes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from circuitlang.engine.session import Session
from circuitlang.discover.methods import BY_NAME, DEFAULT_IG_GRID, EAP_IG_STEPS, IGGrid, attribution_label
from circuitlang.discover import acdc, attribution, path_growth
from circuitlang.discover.acdc import KL_THRESHOLDS, METRIC_THRESHOLDS, search_threshold
from circuitlang.discover.path_growth import MIN_EFFECTS, PERCENTILES, EdgeScores, PathPatchingResult, search_percentile
from circuitlang.discover.prune import OrderComparison, PruneResult, compare_orders, compare_rows, prune_nodes, prune_rows
from circuitlang.discover.positions import positions_rows, restrict_positions
from circuitlang.discover.roles import HeadRole, name_heads, naming_rows
from circuitlang.discover.curves import on_graph, top_edges
from circuitlang.discover.scoring import NO_SPAN, Scorer, variant_of
from circuitlang.discover.write import BARE_MLP_ROLE, FoundCircuit, write_spec
from circuitlang.ir import models as ir
from circuitlang.verification.criteria import faithfulness_point
from circuitlang.verification.progress import Meter, Part

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """What to search for and how (the `discover` command's options; see its --help)."""

    method: str  # a name of discover.methods.METHODS
    output: Path  # the .circ to write (relative paths in the base spec are rewritten for its folder)
    target: float = 0.9
    prompts: str | None = None
    order: str = "both"
    include_mlps: bool = False
    percentile: float | None = None
    min_effect: float | None = None  # None: try MIN_EFFECTS from the highest
    threshold: float | None = None
    score: str = "kl"
    positions: bool = True
    name: str | None = None
    edges: bool = False  # prune: then find the edges among the kept nodes with ACDC
    root: Path | None = None  # the project root the spec was loaded with (None: its folder)
    steps: int = EAP_IG_STEPS  # eap-ig: gradient steps from the corrupt inputs to the clean ones
    top: int | None = None  # eap, eap-ig: keep this many edges (None: the fewest that reach the target)
    ig_grid: IGGrid = DEFAULT_IG_GRID  # eap-ig: the points of the gradient steps


@dataclass(frozen=True)
class Outcome:
    text: str
    summary: tuple[str, ...]
    reached: bool
    faithfulness: float


@dataclass(frozen=True)
class Found:
    nodes: tuple[ir.Node, ...]
    edges: tuple[ir.Edge, ...] | None
    faithfulness: float
    header: tuple[str, ...]
    edge_notes: dict[tuple[ir.Node, ir.Node], str]


class CannotSearch(Exception):
    """The spec and options ask for a search whose result would mean nothing; the message says why."""


def discover(session: Session, options: Options, command: str, progress: Progress = lambda message: None) -> Outcome:
    scorer = Scorer(session, options.prompts)
    _check_searchable(scorer, options)
    found, circuit, notes = _find(scorer, options, progress)
    header = (
        f"Found by: {command}",
        f"on prompt set '{scorer.engine.bound.name}' ({scorer.engine.bound.n_prompts} prompts): "
        f"F(M) = {scorer.f_model:.4g}, F(empty) = {scorer.f_empty:.4g}; "
        f"faithfulness of this circuit {found.faithfulness:.4f} (target {options.target})",
        *found.header,
        f"{scorer.evaluated} circuit variants and path-patching runs evaluated.",
        "Roles: where ablating the head alone matters most, and the key whose value it moves most from there.",
    )
    text = write_spec(
        Path(session.spec.path),
        FoundCircuit(circuit, header, (_claim(session, scorer, options),), notes, found.edge_notes),
        options.output,
        options.name or options.output.stem,
        options.root,
    )
    reached = found.faithfulness >= options.target
    summary = (
        f"{len(found.nodes)} nodes, {len(found.edges or ())} declared edges; faithfulness {found.faithfulness:.4f} "
        f"({'reaches' if reached else 'does NOT reach'} the target {options.target})",
        *found.header,
    )
    return Outcome(text, summary, reached, found.faithfulness)


def _find(scorer: Scorer, options: Options, progress: Progress) -> tuple[Found, ir.Circuit, dict[ir.Node, str]]:
    """Search, name the heads found and restrict their positions, telling `progress` how far it is."""
    searching = ROW_COUNTS[options.method](scorer, options)
    naming, restricting = _after_search(scorer, options, None)
    meter = scorer.meter = Meter(searching + naming + restricting, progress)
    meter(f"F(M) = {scorer.f_model:.4g}, F(empty) = {scorer.f_empty:.4g}; searching with {options.method}")
    with meter.part(searching):
        found = SEARCHES[options.method](scorer, options, meter)
    heads = sum(n.kind == "head" for n in found.nodes)
    naming_part, restricting_part = (
        _tightened(meter, counted, needed) for counted, needed in zip((naming, restricting), _after_search(scorer, options, heads))
    )
    meter(f"naming the {heads} heads")
    with naming_part:
        circuit, notes, roles = _circuit(scorer, found)
    if options.positions:
        meter("restricting heads to the positions their roles name, where faithfulness allows")
        with restricting_part:
            circuit, restricted = restrict_positions(scorer, circuit, roles, options.target)
        found = replace(found, faithfulness=restricted, header=found.header + (_positions_line(circuit),))
    return found, circuit, notes


def _after_search(scorer: Scorer, options: Options, heads: int | None) -> tuple[int, int]:
    """Rows of naming the found heads and restricting their positions; before the search, for
    every head of the model (the most it can find)."""
    heads = len(scorer.heads()) if heads is None else heads
    return naming_rows(scorer, heads), positions_rows(scorer, heads) if options.positions else 0


def _tightened(meter: Meter, counted: int, needed: int) -> Part:
    """A part counted as `counted` rows, now known to need `needed`."""
    part = meter.part(counted)
    part.left(needed)
    return part


def _check_searchable(scorer: Scorer, options: Options) -> None:
    _check_edges_possible(scorer, options)  # first: what the model allows comes before what the prompts show
    name = scorer.engine.bound.name
    if not scorer.f_model > 0:
        raise CannotSearch(
            f"on prompt set '{name}' the full model's metric F(M) = {scorer.f_model:.4g} is not positive, "
            "so faithfulness F(C)/F(M) would reward worse circuits; use a metric that is positive on "
            "the clean prompts (logit_diff(answer, wrong), prob_diff) or a corruption it separates"
        )
    empty = faithfulness_point(scorer.f_empty, scorer.f_model)
    if empty >= options.target:
        raise CannotSearch(
            f"on prompt set '{name}' the empty circuit already has faithfulness "
            f"{empty:.3f} >= the target {options.target}: the ablation does "
            "not remove the behaviour (check the corruption and `ablate`)"
        )
    needs_corruption = BY_NAME[options.method].needs_corruption
    if needs_corruption and any(t.corrupt is None for t in scorer.engine.bound.templates):
        raise CannotSearch(
            f"prompt set '{name}' has no corruption; {needs_corruption}: add a `corrupt` line, or use --method prune, acdc or eap"
        )
    if options.method in ("eap", "eap-ig") and scorer.engine.bound.metric.name == "accuracy":
        raise CannotSearch(f"{attribution.why_not_attributable(scorer, options.method)}, or --method acdc")
    if options.method == "path-patching":
        if scorer.embed_edges == "declared":
            raise CannotSearch(
                "path patching scores edges between heads and MLPs, not from the embeddings; with "
                "`set embed_edges = declared` its circuit would see no tokens: use --method acdc "
                "(which prunes embedding edges too) or remove the setting"
            )


def _check_edges_possible(scorer: Scorer, options: Options) -> None:
    """Edge searches need every head's q, k and v inputs apart and heads that add into the
    residual stream (docs/engine.md, "Model families")."""
    if options.method == "prune" and not options.edges:
        return
    why = scorer.session.model.family.why_no_edge_graph()
    if why:
        raise CannotSearch(
            f"--method {options.method}{' --edges' if options.edges else ''} searches edges, but {why}; use --method prune (node pruning)"
        )


def _claim(session: Session, scorer: Scorer, options: Options) -> str:
    """The search's target as a claim on the prompt set it was reached on."""
    on = f" on {scorer.engine.bound.name}" if len(session.spec.prompt_sets) > 1 else ""
    target = f"{options.target:.6f}".rstrip("0").rstrip(".")
    return f"expect faithfulness{on} >= {target}"


def search_by_pruning(scorer: Scorer, options: Options, progress: Progress) -> Found:
    if options.order != "both":
        result = prune_nodes(scorer, options.target, options.order, options.include_mlps)
        found = Found(result.nodes, None, result.faithfulness, (_prune_line(result),), {})
    else:
        progress("pruning forward-then-backward and backward-then-forward")
        comparison = compare_orders(scorer, options.target, options.include_mlps)
        chosen = _smaller(comparison)
        found = Found(chosen.nodes, None, chosen.faithfulness, _comparison_lines(comparison, chosen), {})
    return _edges_among(scorer, found, options, progress) if options.edges else found


def rows_of_pruning(scorer: Scorer, options: Options) -> int:
    """With --edges, ACDC among every node: the nodes it will run among are known when pruning ends."""
    pruning = compare_rows(scorer, options.include_mlps) if options.order == "both" else prune_rows(scorer, options.order, options.include_mlps)
    return pruning + (acdc.search_rows(scorer, len(_thresholds(options))) if options.edges else 0)


def _edges_among(scorer: Scorer, found: Found, options: Options, progress: Progress) -> Found:
    """ACDC restricted to the pruned nodes: which of the edges among them the circuit needs."""
    counted = acdc.search_rows(scorer, len(_thresholds(options)))
    with _tightened(scorer.meter, counted, acdc.search_rows(scorer, len(_thresholds(options)), found.nodes)):
        result = _acdc_search(scorer, options, progress, within=found.nodes)
    return Found(result.nodes, result.edges, result.faithfulness, found.header + _acdc_lines(result, options), {})


def _smaller(comparison: OrderComparison) -> PruneResult:
    fb, bf = comparison.fb, comparison.bf
    return bf if len(bf.nodes) < len(fb.nodes) else fb


def _prune_line(result: PruneResult) -> str:
    heads = ", ".join(str(n) for n in result.heads)
    return f"{result.schedule}: {len(result.heads)} heads, faithfulness {result.faithfulness:.4f}: {heads}"


def _comparison_lines(comparison: OrderComparison, chosen: PruneResult) -> tuple[str, ...]:
    fb, bf = set(comparison.fb.nodes), set(comparison.bf.nodes)
    only_fb = [str(n) for n in comparison.fb.nodes if n not in bf]
    only_bf = [str(n) for n in comparison.bf.nodes if n not in fb]
    what = "nodes" if comparison.include_mlps else "heads (every MLP kept)"
    return (
        _prune_line(comparison.fb),
        _prune_line(comparison.bf),
        f"intersection: {len(comparison.pruned(comparison.intersection))} {what}, faithfulness "
        f"{comparison.intersection_faithfulness:.4f}; union: {len(comparison.pruned(comparison.union))} {what}, "
        f"faithfulness {comparison.union_faithfulness:.4f}; agreement (Jaccard) {comparison.jaccard:.2f}",
        f"only in fb: {', '.join(only_fb) or '-'}; only in bf: {', '.join(only_bf) or '-'}",
        f"written: the {chosen.schedule} circuit" + (" (the smaller)" if fb != bf else " (both orders agree)"),
    )


def search_by_path_patching(scorer: Scorer, options: Options, progress: Progress) -> Found:
    scores = EdgeScores(scorer)
    progress("path patching from the logits backwards (MLPs frozen: each score is one direct edge)")
    result: PathPatchingResult = search_percentile(
        scores, options.target, _percentiles(options), tuple(f * abs(scorer.f_model) for f in _floors(options))
    )
    notes = {pair: ", ".join(f"{c or 'resid'} {v:+.3g}" for c, v in by_channel.items()) for pair, by_channel in result.edge_scores.items()}
    header = (
        f"path patching: edges at or above the {result.percentile:g}th percentile of |score| into each receiver "
        f"and at least {result.floor / abs(scorer.f_model):g} x |F(M)|; edge comments: F(patched) - F(M) per channel",
    )
    return Found(result.nodes, result.edges, result.faithfulness, header, notes)


def rows_of_path_patching(scorer: Scorer, options: Options) -> int:
    return path_growth.search_rows(EdgeScores(scorer), len(_percentiles(options)) * len(_floors(options)))


def _percentiles(options: Options) -> tuple[float, ...]:
    return (options.percentile,) if options.percentile is not None else PERCENTILES


def _floors(options: Options) -> tuple[float, ...]:
    """Noise floors as fractions of |F(M)|."""
    return (options.min_effect,) if options.min_effect is not None else MIN_EFFECTS


def search_by_acdc(scorer: Scorer, options: Options, progress: Progress) -> Found:
    result = _acdc_search(scorer, options, progress)
    return Found(result.nodes, result.edges, result.faithfulness, _acdc_lines(result, options), {})


def rows_of_acdc(scorer: Scorer, options: Options) -> int:
    return acdc.search_rows(scorer, len(_thresholds(options)))


def _acdc_search(scorer: Scorer, options: Options, progress: Progress, within: tuple[ir.Node, ...] | None = None):
    return search_threshold(
        scorer, _thresholds(options), options.target, options.score, lambda t: progress(f"acdc with threshold {t:g} ({options.score})"), within
    )


def _thresholds(options: Options) -> tuple[float, ...]:
    if options.threshold is not None:
        return (options.threshold,)
    return KL_THRESHOLDS if options.score == "kl" else METRIC_THRESHOLDS


def _acdc_lines(result, options: Options) -> tuple[str, ...]:
    tried = ", ".join(f"{r.threshold:g} -> {r.faithfulness:.3f}" for r in result.tried)
    score = "KL divergence" if options.score == "kl" else "metric drop / |F(M)|"
    return (
        f"acdc: threshold {result.threshold:g} on the {score}; {result.edges_tried} edge removals tried per "
        f"threshold; thresholds tried (faithfulness): {tried}",
    )


def search_by_eap(scorer: Scorer, options: Options, progress: Progress) -> Found:
    return _attribution_search(scorer, options, progress, "eap")


def search_by_eap_ig(scorer: Scorer, options: Options, progress: Progress) -> Found:
    return _attribution_search(scorer, options, progress, "eap-ig")


def rows_of_eap(scorer: Scorer, options: Options) -> int:
    return attribution.scoring_rows(scorer, "eap", 1) + attribution.selection_rows(scorer, options.top is None)


def rows_of_eap_ig(scorer: Scorer, options: Options) -> int:
    return attribution.scoring_rows(scorer, "eap-ig", options.steps) + attribution.selection_rows(scorer, options.top is None)


def _attribution_search(scorer: Scorer, options: Options, progress: Progress, method: str) -> Found:
    steps = 1 if method == "eap" else options.steps
    progress(f"{method}: scoring every edge ({steps} forward and backward pass{'es' if steps > 1 else ''})")
    scores = on_graph(scorer, attribution.edge_scores(scorer, method, steps, options.ig_grid))
    progress("choosing the top edges, each candidate circuit evaluated exactly")
    chosen = (
        attribution.select_top(scorer, scores, options.top)
        if options.top is not None
        else attribution.smallest_reaching(scorer, scores, options.target)
    )
    nodes, edges = acdc.connected_to_logits(top_edges(scores, chosen.k))
    tried = ", ".join(f"{k} -> {f:.3f}" for k, f in chosen.tried)
    how = f"--top {chosen.k}" if options.top is not None else f"the fewest that reach {options.target}"
    header = (
        f"{attribution_label(method, steps, options.ig_grid)}: {len(scores)} graph edges scored over "
        f"{scorer.engine.bound.n_prompts} prompts; kept the top {chosen.k} by |score| ({how}), "
        f"{len(edges)} graph edges on a path to the logits; edge comments: estimated F(M) - F(without the edge) per channel",
        *_gradient_line(method, steps, options.ig_grid),
        f"top k (faithfulness, evaluated exactly): {tried}",
    )
    return Found(nodes, acdc.as_edges(edges), chosen.faithfulness, header, attribution.channel_notes(scores, edges))


def _gradient_line(method: str, steps: int, grid: IGGrid) -> tuple[str, ...]:
    """Where EAP-IG took its gradients, so that a reader can recompute the scores."""
    if method != "eap-ig":
        return ()
    return (f"gradients at inputs corrupt + alpha (clean - corrupt), {grid.formula(steps)} (--ig-grid {grid.value})",)


def _positions_line(circuit: ir.Circuit) -> str:
    heads = [m for m in circuit.nodes if m.node.kind == "head"]
    return (
        f"positions: {sum(m.q is not None for m in heads)} of {len(heads)} heads kept clean only at their role's "
        f"query position, {sum(m.k is not None for m in heads)} read clean keys only at their role's key position"
    )


def _circuit(scorer: Scorer, found: Found) -> tuple[ir.Circuit, dict[ir.Node, str], dict[ir.Node, HeadRole]]:
    """The found nodes with their roles, and per head a note: the effect and attention behind its role."""
    variant = variant_of(found.nodes, found.edges, embed_edges=scorer.embed_edges)
    roles = name_heads(scorer, variant)
    members = [ir.CircuitNode(node=node, role=roles[node].role if node in roles else BARE_MLP_ROLE, span=NO_SPAN) for node in found.nodes]
    notes = {
        node: f"{node}: ablated at {r.query} {r.effect:+.3g}; attention to {r.key} {r.attention:.2f}, x |v W_O| {r.weighted:.3g}"
        for node, r in roles.items()
    }
    return ir.Circuit(nodes=tuple(members), edges=found.edges or ()), notes, roles


Search = Callable[[Scorer, Options, Progress], Found]  # runs one method to the target
RowCount = Callable[[Scorer, Options], int]  # a method's prompt rows at their most, before it runs

# Each method of discover.methods.METHODS, by the name written after --method.
SEARCHES: dict[str, Search] = {
    "prune": search_by_pruning,
    "path-patching": search_by_path_patching,
    "acdc": search_by_acdc,
    "eap": search_by_eap,
    "eap-ig": search_by_eap_ig,
}
ROW_COUNTS: dict[str, RowCount] = {
    "prune": rows_of_pruning,
    "path-patching": rows_of_path_patching,
    "acdc": rows_of_acdc,
    "eap": rows_of_eap,
    "eap-ig": rows_of_eap_ig,
}
