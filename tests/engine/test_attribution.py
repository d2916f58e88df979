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
from circuitlang.discover.methods import DEFAULT_IG_GRID, IGGrid
from circuitlang.discover.path_growth import LOGITS
from circuitlang.discover.scoring import Scorer, head, mlp, variant_of
from circuitlang.engine import attribution
from circuitlang.engine.session import open_session
from circuitlang.ir.eap_ig import GraphConfig, model_edge_count
from circuitlang.verification.statistics import rank_correlation
from tests import reference_attribution
from tests.conftest import fast_cases
from tests.micro_model import WORDS, build_copy_model
from tests.workflows.test_discover import KNOWN, NO_CIRCUIT
from tests.workflows.test_verify import SPEC

ROOT = Path(__file__).resolve().parents[2]
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
    graph = attribution.Graph(organism.n_layers, organism.n_heads, organism.parallel_attn_mlp, embed_edges == "declared")
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
        values = attribution.run_with_offsets(engine, template, engine.readout(), rows, start, _zero_offsets(organism, len(rows), start))
    assert float(values.mean()) == pytest.approx(organism.f_model, abs=1e-6)  # the engine keeps float32 per prompt


EDGES = [  # one of each kind of receiver: q, k and v of heads in several layers, an MLP, the logits
    (head(0, 0), mlp(1), ""),
    (head(0, 5), head(2, 3), "v"),
    (head(0, 3), head(1, 0), "q"),
    (head(0, 3), head(3, 0), "k"),
    (mlp(0), LOGITS, ""),
    (mlp(2), head(3, 6), "q"),
]


@pytest.mark.parametrize("edge", fast_cases(EDGES, (EDGES[0], EDGES[4])), ids=lambda e: f"{e[0]}->{e[1]}{e[2]}")
def test_each_score_equals_the_finite_difference_of_removing_that_much_of_the_edge(organism: Scorer, eap: dict, edge) -> None:
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
        m0 = float(
            attribution.run_with_offsets(engine, template, engine.readout(), rows, start, _zero_offsets(organism, len(rows), start)).mean()
        )
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


def test_eap_ig_with_one_step_of_the_right_grid_is_eap(organism: Scorer, eap: dict) -> None:
    one_step = discovery.edge_scores(organism, "eap-ig", steps=1, grid=IGGrid.RIGHT)
    assert one_step == eap


@pytest.mark.slow
def test_eap_ig_with_one_step_of_the_left_grid_is_not_eap(organism: Scorer, eap: dict) -> None:
    one_step = discovery.edge_scores(organism, "eap-ig", steps=1, grid=IGGrid.LEFT)
    assert max(abs(one_step[k] - eap[k]) for k in eap) > 1e-3  # not EAP: the reference below pins what it is


@pytest.mark.slow
def test_eap_ig_differs_from_eap_with_more_steps(organism: Scorer, eap: dict) -> None:
    integrated = discovery.edge_scores(organism, "eap-ig", steps=3)
    assert max(abs(integrated[k] - eap[k]) for k in eap) > 1e-3


def test_the_grids_are_left_and_right_riemann_sums() -> None:
    assert IGGrid.LEFT.alphas(4) == (0.0, 0.25, 0.5, 0.75)
    assert IGGrid.RIGHT.alphas(4) == (0.25, 0.5, 0.75, 1.0)
    assert DEFAULT_IG_GRID is IGGrid.LEFT  # Hanna et al.'s code and MIB
    assert IGGrid.LEFT.formula(5) == "alpha = k/5, k = 0..4"


def test_the_api_takes_the_grid(micro_root: Path) -> None:
    run = circuitlang.open_run(circuitlang.load(_micro_spec(micro_root, "api.circ")))
    eap = circuitlang.edge_scores(run, "eap", kind="records")
    right = circuitlang.edge_scores(run, "eap-ig", steps=1, ig_grid="right", kind="records")
    left = circuitlang.edge_scores(run, "eap-ig", steps=1, kind="records")
    assert right == eap and left != eap
    with pytest.raises(ValueError, match="ig_grid 'middle': choose one of left, right"):
        circuitlang.edge_scores(run, "eap-ig", ig_grid="middle")


# ---- EAP-IG against a slow reference of Hanna et al.'s formula -----------------------------------

REFERENCE_SPEC = """circuitlang 1
circuit tiny on "./tiny"
prompts digits {
  template "{s1} {s2} {s3} {s4}"
  template "{s1} then {s2} and {s3} after {s4}"
  for i in 1..4
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4; wrong = i + 3
  corrupt random { s1, s2, s3, s4 = random 1..20 }
}
metric logit_diff(answer, wrong)
ablate resample
set embed_edges = declared
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Scorer, object]:
    """A random 2-layer GPT-2 (every weight matters, unlike the micro model's) in float64, with
    Hanna et al.'s setting: patching from the corrupt prompts, the embeddings a sender."""
    from transformers import GPT2LMHeadModel

    from circuitlang.organisms.tiny import build_random_gpt2

    root = tmp_path_factory.mktemp("tiny_attribution")
    words = [str(i) for i in range(1, 25)] + ["then", "and", "after"]
    build_random_gpt2(root / "tiny", words, n_layers=2, n_heads=4, d_model=32, seed=3)
    (root / "tiny.circ").write_text(REFERENCE_SPEC)
    scorer = Scorer(open_session(circuitlang.load(root / "tiny.circ"), dtype=torch.float64))
    hf = GPT2LMHeadModel.from_pretrained(root / "tiny", torch_dtype=torch.float64).eval()
    return scorer, hf


def _reference_prompts(scorer: Scorer):
    for template in scorer.engine.bound.templates:
        for row in range(template.n_prompts):
            yield (
                template.clean[row : row + 1],
                template.corrupt[row : row + 1],
                template.positions["end"],
                template.answers["answer"][row][0],
                template.answers["wrong"][row][0],
            )


@pytest.mark.parametrize(
    "grid, ks, other",
    fast_cases([(IGGrid.LEFT, range(0, 3), range(1, 4)), (IGGrid.RIGHT, range(1, 4), range(0, 3))], (IGGrid.RIGHT,), unpack=True),
    ids=["left", "right"],
)
def test_eap_ig_equals_the_reference_formula_on_every_edge(tiny, grid: IGGrid, ks: range, other: range) -> None:
    """left: alpha = k/3 for k = 0, 1, 2 (Hanna et al., MIB); right: k = 1, 2, 3."""
    scorer, hf = tiny
    fast = discovery.edge_scores(scorer, "eap-ig", steps=3, grid=grid)
    slow = reference_attribution.eap_ig_scores(hf, _reference_prompts(scorer), ks, steps=3)
    assert set(fast) == set(slow) and len(slow) == model_edge_count(GraphConfig(n_layers=2, n_heads=4)) == 110
    largest = max(abs(value) for value in slow.values())
    assert largest > 1e-3  # gradients that vanish would match anything
    assert max(abs(fast[key] - slow[key]) for key in slow) < 1e-9 * largest
    shifted = reference_attribution.eap_ig_scores(hf, _reference_prompts(scorer), other, steps=3)
    assert max(abs(fast[key] - shifted[key]) for key in slow) > 0.05 * largest  # the test tells the grids apart


def test_the_default_grid_is_the_references_with_one_step(tiny) -> None:
    """One step of the default grid: the gradient at the corrupt inputs (alpha = 0) only."""
    scorer, hf = tiny
    fast = discovery.edge_scores(scorer, "eap-ig", steps=1)
    slow = reference_attribution.eap_ig_scores(hf, _reference_prompts(scorer), [0], steps=1)
    largest = max(abs(value) for value in slow.values())
    assert max(abs(fast[key] - slow[key]) for key in slow) < 1e-9 * largest


# ---- the scores against exact edge ablation ------------------------------------------------------


def exact_effects(scorer: Scorer, edges: list) -> list[float]:
    """F(full graph) - F(full graph without the edge), by edge ablation: what a score estimates."""
    nodes, _, graph = full_graph(scorer, None)
    full = variant_of(nodes, as_edges(graph), embed_edges=scorer.embed_edges)
    values = scorer.means([full] + [variant_of(nodes, as_edges(graph - {e}), embed_edges=scorer.embed_edges) for e in edges])
    return [values[0] - value for value in values[1:]]


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_fewest_edges_that_reach_the_target_are_found_as_the_slow_scan_finds_them(organism: Scorer, eap: dict) -> None:
    from circuitlang.discover.curves import evaluate_top
    from circuitlang.verification.criteria import faithfulness_point

    chosen = discovery.smallest_reaching(organism, eap, 0.9)
    points = evaluate_top(organism, eap, list(range(1, chosen.k + 1)))  # every size up to the one chosen
    reaching = [p.k for p in points if faithfulness_point(p.metric, organism.f_model) >= 0.9]
    assert reaching and reaching[0] == chosen.k


@pytest.mark.slow
def test_discover_with_eap_ig_writes_a_spec_that_verifies(tmp_path: Path) -> None:
    spec = tmp_path / "digits.circ"
    spec.write_text(NO_CIRCUIT)
    found = tmp_path / "found.circ"
    assert main(["discover", str(spec), "--method", "eap-ig", "--target", "0.9", "-o", str(found)]) == 0
    text = found.read_text()
    assert "eap-ig (5 steps, left grid): 1418 graph edges scored" in text and "edge mlp 0 -> logits  # resid" in text
    assert "alpha = k/5, k = 0..4 (--ig-grid left)" in text  # the default grid, Hanna et al.'s
    assert main(["verify", str(found)]) == 0


def test_discover_writes_the_grid_it_was_given(micro_root: Path) -> None:
    out = micro_root / "right.circ"
    spec = _micro_spec(micro_root, "grid.circ")
    assert main(["discover", str(spec), "--method", "eap-ig", "--steps", "2", "--ig-grid", "right", "-o", str(out)]) == 0
    text = out.read_text()
    assert "eap-ig (2 steps, right grid)" in text and "alpha = k/2, k = 1..2 (--ig-grid right)" in text


def test_top_keeps_that_many_edges(micro_root: Path, capsys) -> None:
    out = micro_root / "top1.circ"
    code = main(["discover", str(_micro_spec(micro_root, "top.circ")), "--method", "eap", "--top", "1", "-o", str(out)])
    assert code == 1  # one copy of the copying head does not reach 0.9: the command says so
    edges = [line for line in out.read_text().splitlines() if line.startswith("edge ")]
    assert len(edges) == 1 and "-> logits" in edges[0]
    assert "does NOT reach" in capsys.readouterr().out


@pytest.mark.parametrize(
    "options, says",
    [
        (["--method", "acdc", "--top", "3"], "--top 3: give a number of edges >= 1, with --method eap or eap-ig"),
        (["--method", "eap", "--top", "0"], "--top 0"),
        (["--method", "eap-ig", "--steps", "0"], "--steps 0"),
        (["--method", "eap", "--ig-grid", "right"], "--ig-grid right: the integration grid applies to --method eap-ig only"),
        (["--method", "eap-ig", "--ig-grid", "middle"], "choose from left, right"),
    ],
)
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
