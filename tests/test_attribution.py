"""Edge attribution (EAP, EAP-IG): the gradients against finite differences, the scores against
exact single-edge ablation, the graph against ACDC's, and discovery recovering the micro model's
known circuit by both methods."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

import circuitlang
from circuitlang.cli import main
from circuitlang.discover import attribution as discovery
from circuitlang.discover.acdc import as_edges, full_graph
from circuitlang.discover.path_patching import LOGITS
from circuitlang.discover.scoring import Scorer, head, mlp, variant_of
from circuitlang.engine import attribution
from circuitlang.engine.session import open_session
from circuitlang.verification.statistics import rank_correlation
from tests.micro_model import WORDS, build_copy_model
from tests.test_discover import KNOWN, NO_CIRCUIT
from tests.test_verify import SPEC

ROOT = Path(__file__).resolve().parent.parent
ORGANISM = ROOT / "specs" / "organism_incr_digits.circ"


@pytest.fixture(scope="module")
def organism() -> Scorer:
    """The organism in float64, so that finite differences resolve the gradients to ~1e-6."""
    return Scorer(open_session(circuitlang.load(ORGANISM), dtype=torch.float64))


@pytest.fixture(scope="module")
def eap(organism: Scorer) -> dict:
    return discovery.edge_scores(organism, "eap")


@pytest.fixture(scope="module")
def micro_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("micro_attribution")
    build_copy_model(root / "micro")
    return root


def _micro_spec(root: Path, name: str, metric: str = "logit_diff(answer, wrong)", corruption: bool = True) -> Path:
    text = SPEC % {"words": json.dumps(WORDS), "metric": metric, "circuit": "", "claims": ""}
    if not corruption:
        text = text.replace("  corrupt random { s1, s2, s3 = random animals distinct }\n", "")
        text = text.replace("ablate mean of corrupt", "ablate mean of clean")
    path = root / name
    path.write_text(text)
    return path


# ---- the graph ---------------------------------------------------------------------------------

@pytest.mark.parametrize("embed_edges", ["all", "declared"])
def test_the_scored_edges_are_exactly_the_graph_acdc_searches(organism: Scorer, embed_edges: str) -> None:
    graph = attribution.Graph(organism.n_layers, organism.n_heads, organism.parallel_attn_mlp,
                              embed_edges == "declared")
    acdc_edges = full_graph(_with_embed_edges(organism, embed_edges), None)[2]
    assert set(graph.edges()) == acdc_edges
    assert len(list(graph.edges())) == len(acdc_edges)  # no edge twice


def _with_embed_edges(scorer: Scorer, embed_edges: str) -> Scorer:
    class Like:
        n_layers, n_heads, parallel_attn_mlp = scorer.n_layers, scorer.n_heads, scorer.parallel_attn_mlp

        def heads(self):
            return scorer.heads()

        def mlps(self):
            return scorer.mlps()
    like = Like()
    like.embed_edges = embed_edges  # type: ignore[attr-defined]
    return like  # type: ignore[return-value]


# ---- the gradients -----------------------------------------------------------------------------

def test_zero_offsets_leave_the_clean_run_unchanged(organism: Scorer) -> None:
    engine = organism.engine
    template = engine.bound.templates[0]
    rows = torch.arange(template.n_prompts)
    start = engine.clean_cache(template).resid_pre[0][rows]
    with torch.no_grad():
        values = attribution.run_with_offsets(engine, template, engine.readout(), rows, start,
                                              _zero_offsets(organism, len(rows), start))
    assert float(values.mean()) == pytest.approx(organism.f_model, abs=1e-6)  # the engine keeps float32 per prompt


EDGES = [  # one of each kind of receiver: q, k and v of heads in several layers, an MLP, the logits
    (head(0, 0), mlp(1), ""), (head(0, 5), head(2, 3), "v"), (head(0, 3), head(1, 0), "q"),
    (head(0, 3), head(3, 0), "k"), (mlp(0), LOGITS, ""), (mlp(2), head(3, 6), "q"),
]


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: f"{e[0]}->{e[1]}{e[2]}")
def test_each_score_equals_the_finite_difference_of_removing_that_much_of_the_edge(organism: Scorer, eap: dict,
                                                                                    edge) -> None:
    """(m(0) - m(-eps diff_s at r)) / eps -> the score, for a step small against the curvature."""
    sender, receiver, channel = edge
    engine, graph = organism.engine, discovery.attribution_graph(organism)
    template = engine.bound.templates[0]
    rows = torch.arange(template.n_prompts)
    start = engine.clean_cache(template).resid_pre[0][rows]
    difference = attribution._sender_differences(engine, template, graph, rows)[graph.senders().index(sender)]
    eps = 1e-5
    offsets = _zero_offsets(organism, len(rows), start)
    with torch.no_grad():
        _offset_of(offsets, receiver, channel).sub_(eps * difference)
        m0 = float(attribution.run_with_offsets(engine, template, engine.readout(), rows, start,
                                                _zero_offsets(organism, len(rows), start)).mean())
        moved = float(attribution.run_with_offsets(engine, template, engine.readout(), rows, start, offsets).mean())
    assert (m0 - moved) / eps == pytest.approx(eap[edge], rel=1e-4, abs=1e-9)
    assert abs(eap[edge]) > 1e-7  # a zero score would pass trivially


def _zero_offsets(scorer: Scorer, rows: int, like: torch.Tensor):
    cfg = scorer.session.model.bridge.cfg
    return attribution._Offsets(rows, like.shape[1], cfg.n_layers, cfg.n_heads, cfg.d_model, like)


def _offset_of(offsets, receiver, channel: str) -> torch.Tensor:
    if receiver.kind == "head":
        return offsets.heads[(receiver.layer, channel)][:, :, receiver.head]
    return offsets.mlps[receiver.layer] if receiver.kind == "mlp" else offsets.logits


def test_eap_ig_with_one_step_is_eap(organism: Scorer, eap: dict) -> None:
    one_step = discovery.edge_scores(organism, "eap-ig", steps=1)
    assert one_step == eap


def test_eap_ig_differs_from_eap_with_more_steps(organism: Scorer, eap: dict) -> None:
    integrated = discovery.edge_scores(organism, "eap-ig", steps=3)
    assert max(abs(integrated[k] - eap[k]) for k in eap) > 1e-3


# ---- the scores against exact edge ablation ------------------------------------------------------

def exact_effects(scorer: Scorer, edges: list) -> list[float]:
    """F(full graph) - F(full graph without the edge), by edge ablation: what a score estimates."""
    nodes, _, graph = full_graph(scorer, None)
    full = variant_of(nodes, as_edges(graph), embed_edges=scorer.embed_edges)
    values = scorer.means([full] + [variant_of(nodes, as_edges(graph - {e}), embed_edges=scorer.embed_edges)
                                    for e in edges])
    return [values[0] - value for value in values[1:]]


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_scores_rank_edges_as_exact_single_edge_ablation_does(organism: Scorer, method: str) -> None:
    scores = discovery.edge_scores(organism, method)
    ranked = sorted(scores, key=lambda e: -abs(scores[e]))
    sample = ranked[:30] + random.Random(0).sample(ranked[30:], 30)
    exact = exact_effects(organism, sample)
    assert rank_correlation([abs(scores[e]) for e in sample], [abs(x) for x in exact]) > 0.85
    assert rank_correlation([scores[e] for e in sample], exact) > 0.8


def test_the_rank_correlation_is_spearmans() -> None:
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)  # with a tie


# ---- discovery ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_both_methods_recover_the_micro_models_known_circuit(micro_root: Path, method: str) -> None:
    scorer = Scorer(open_session(circuitlang.load(_micro_spec(micro_root, f"{method}.circ"))))
    scores = discovery.edge_scores(scorer, method)
    chosen = discovery.smallest_reaching(scorer, scores, 0.9)
    from circuitlang.discover.curves import top_edges

    edges = top_edges(scores, chosen.k)
    assert {e[0] for e in edges} == KNOWN and {e[1] for e in edges} == {LOGITS}
    assert chosen.faithfulness >= 0.9
    useless = [e for e in scores if e[0] not in KNOWN]
    assert max(abs(scores[e]) for e in useless) < 1e-6 < min(abs(scores[(h, LOGITS, "")]) for h in KNOWN)


def test_the_fewest_edges_that_reach_the_target_are_found_as_the_slow_scan_finds_them(organism: Scorer,
                                                                                         eap: dict) -> None:
    from circuitlang.discover.curves import evaluate_top
    from circuitlang.verification.criteria import faithfulness_point

    chosen = discovery.smallest_reaching(organism, eap, 0.9)
    points = evaluate_top(organism, eap, list(range(1, chosen.k + 1)))  # every size up to the one chosen
    reaching = [p.k for p in points if faithfulness_point(p.metric, organism.f_model) >= 0.9]
    assert reaching and reaching[0] == chosen.k


def test_discover_with_eap_ig_writes_a_spec_that_verifies(tmp_path: Path) -> None:
    spec = tmp_path / "digits.circ"
    spec.write_text(NO_CIRCUIT)
    found = tmp_path / "found.circ"
    assert main(["discover", str(spec), "--method", "eap-ig", "--target", "0.9", "-o", str(found)]) == 0
    text = found.read_text()
    assert "eap-ig (5 steps): 1418 edges scored" in text and "edge mlp 0 -> logits  # resid" in text
    assert main(["verify", str(found)]) == 0


def test_top_keeps_that_many_edges(micro_root: Path, capsys) -> None:
    out = micro_root / "top1.circ"
    code = main(["discover", str(_micro_spec(micro_root, "top.circ")), "--method", "eap", "--top", "1", "-o", str(out)])
    assert code == 1  # one copy of the copying head does not reach 0.9: the command says so
    edges = [line for line in out.read_text().splitlines() if line.startswith("edge ")]
    assert len(edges) == 1 and "-> logits" in edges[0]
    assert "does NOT reach" in capsys.readouterr().out


@pytest.mark.parametrize("options, says", [
    (["--method", "acdc", "--top", "3"], "--top 3: give a number of edges >= 1, with --method eap or eap-ig"),
    (["--method", "eap", "--top", "0"], "--top 0"),
    (["--method", "eap-ig", "--steps", "0"], "--steps 0"),
])
def test_bad_attribution_options_are_refused_before_the_model_loads(micro_root: Path, capsys, options, says) -> None:
    args = ["discover", str(_micro_spec(micro_root, "opts.circ")), "-o", str(micro_root / "o.circ"), *options]
    assert main(args) == 2
    assert says in capsys.readouterr().err


def test_a_metric_without_a_gradient_is_refused(micro_root: Path, capsys) -> None:
    spec = _micro_spec(micro_root, "acc.circ", metric="accuracy(answer)")
    assert main(["discover", str(spec), "--method", "eap", "-o", str(micro_root / "acc_found.circ")]) == 2
    assert "gradient is zero everywhere" in capsys.readouterr().err


def test_eap_ig_without_a_corruption_is_refused_and_eap_runs(micro_root: Path, capsys) -> None:
    spec = _micro_spec(micro_root, "clean_only.circ", corruption=False)
    assert "corrupt" not in spec.read_text()
    assert main(["discover", str(spec), "--method", "eap-ig", "-o", str(micro_root / "ig.circ")]) == 2
    assert "EAP-IG integrates the gradient from the corrupt prompts' inputs" in capsys.readouterr().err
    assert main(["discover", str(spec), "--method", "eap", "-o", str(micro_root / "eap.circ")]) in (0, 1)
