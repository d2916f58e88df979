"""Faithfulness curves: top-k edge selection, MIB's areas by hand, the batched evaluation against
one engine call per circuit, the micro model's known circuit at its own size, and `circuitlang
curve` end to end with its refusals."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

import circuitlang
from circuitlang.cli import main
from circuitlang.discover.curves import MIB_FRACTIONS, CurvePoint, FaithfulnessCurve, curve, evaluate_top, graph_edges, on_graph, top_edges
from circuitlang.discover.methods import IGGrid
from circuitlang.discover.path_growth import LOGITS
from circuitlang.discover.ranking import Ranking
from circuitlang.discover.scoring import Scorer, head, mlp, variant_of
from circuitlang.discover.acdc import as_edges
from circuitlang.engine.session import open_session
from circuitlang.ir.eap_ig import GraphConfig, model_edge_count
from tests.conftest import fast_cases
from tests.micro_model import WORDS, build_copy_model
from tests.workflows.test_verify import SPEC

KNOWN_EDGES = {(head(0, 0), LOGITS, ""), (head(0, 1), LOGITS, "")}  # the micro model's circuit, as edges


# ---- top_edges: no model ---------------------------------------------------------------------------------


def test_top_edges_ranks_by_absolute_score():
    scores = {(head(0, 0), LOGITS, ""): 2.0, (head(0, 1), LOGITS, ""): -3.0, (mlp(0), LOGITS, ""): 1.0}
    assert top_edges(scores, 1) == {(head(0, 1), LOGITS, "")}
    assert top_edges(scores, 2) == {(head(0, 1), LOGITS, ""), (head(0, 0), LOGITS, "")}
    assert top_edges(scores, 0) == set()
    assert top_edges(scores, 10) == set(scores)


def test_ties_are_broken_in_computation_order_whatever_the_dict_order():
    tied = [(head(1, 0), LOGITS, ""), (head(0, 1), head(1, 0), "v"), (head(0, 1), head(1, 0), "q"), (head(0, 0), head(1, 0), "k")]
    for order in (tied, tied[::-1]):
        scores = {key: 1.0 for key in order}
        # receivers in computation order (1.0 before the logits), then senders, then q, k, v
        assert top_edges(scores, 3) == set()  # the three edges into 1.0 come first, and reach no logits
        assert top_edges(scores, 4) == set(tied)
    scores = {key: 1.0 for key in tied} | {(head(1, 0), LOGITS, ""): 5.0}
    assert top_edges(scores, 2) == {(head(1, 0), LOGITS, ""), (head(0, 0), head(1, 0), "k")}
    assert top_edges(scores, 3) == {(head(1, 0), LOGITS, ""), (head(0, 0), head(1, 0), "k"), (head(0, 1), head(1, 0), "q")}


def test_edges_that_do_not_reach_the_logits_are_pruned():
    scores = {(head(0, 0), head(1, 0), "v"): 9.0, (head(1, 0), mlp(1), ""): 8.0, (head(0, 1), LOGITS, ""): 1.0}
    assert top_edges(scores, 2) == set()  # 0.0 -> 1.0 -> mlp 1, and mlp 1 reaches nothing
    assert top_edges(scores, 3) == {(head(0, 1), LOGITS, "")}
    scores[(mlp(1), LOGITS, "")] = 0.5
    assert top_edges(scores, 4) == set(scores)


@pytest.mark.parametrize("ranking", list(Ranking))
def test_unscored_edges_rank_last(ranking: Ranking):
    scores = {(head(0, 0), LOGITS, ""): float("nan"), (head(0, 1), LOGITS, ""): -5.0}
    assert top_edges(scores, 1, ranking) == {(head(0, 1), LOGITS, "")}


def test_signed_ranking_orders_edges_by_score_not_magnitude():
    helps, hurts, nothing = (head(0, 0), LOGITS, ""), (head(0, 1), LOGITS, ""), (mlp(0), LOGITS, "")
    scores = {helps: 2.0, hurts: -3.0, nothing: 0.0}
    assert top_edges(scores, 1, Ranking.SIGNED) == {helps}
    assert top_edges(scores, 2, Ranking.SIGNED) == {helps, nothing}  # a harmful edge comes after a useless one
    assert top_edges(scores, 1, Ranking.ABSOLUTE) == {hurts}


# ---- the areas, by hand -------------------------------------------------------------------------------


def _made_up(fractions: tuple[float, ...], values: tuple[float, ...]) -> FaithfulnessCurve:
    points = tuple(CurvePoint(k=i, edges=i, nodes=i, metric=v, normalized_faithfulness=v) for i, v in enumerate(values))
    return FaithfulnessCurve("made up", 100, fractions, points, m_model=1.0, m_empty=0.0)


def test_areas_are_mib_trapezoids_over_the_fraction_of_edges():
    made_up = _made_up((0.1, 0.5, 1.0), (0.0, 0.5, 1.0))
    # CPR: trapezoids of f over [0.1, 0.5] and [0.5, 1]
    assert made_up.cpr == pytest.approx(0.4 * (0.0 + 0.5) / 2 + 0.5 * (0.5 + 1.0) / 2)  # 0.475
    # CMD: trapezoids of |1 - f|
    assert made_up.cmd == pytest.approx(0.4 * (1.0 + 0.5) / 2 + 0.5 * (0.5 + 0.0) / 2)  # 0.425
    # the same trapezoids over ln(fraction)
    assert made_up.cpr_log == pytest.approx(math.log(5) * 0.25 + math.log(2) * 0.75)
    assert made_up.cmd_log == pytest.approx(math.log(5) * 0.75 + math.log(2) * 0.25)


def test_overshoot_counts_in_cmd_as_a_distance_from_one():
    made_up = _made_up((0.5, 1.0), (1.5, 1.0))
    assert made_up.cpr == pytest.approx(0.5 * (1.5 + 1.0) / 2)
    assert made_up.cmd == pytest.approx(0.5 * (0.5 + 0.0) / 2)


def test_the_json_form_has_every_point_and_area():
    made_up = _made_up((0.1, 0.5, 1.0), (0.0, 0.5, 1.0))
    document = json.loads(json.dumps(made_up.to_json()))
    assert [p["fraction"] for p in document["points"]] == [0.1, 0.5, 1.0]
    assert [p["normalized_faithfulness"] for p in document["points"]] == [0.0, 0.5, 1.0]
    assert document["cpr"] == pytest.approx(0.475) and document["cmd"] == pytest.approx(0.425)


# ---- on the micro model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curves")
    build_copy_model(root / "micro")
    path = root / "task.circ"
    path.write_text(SPEC % {"words": json.dumps(WORDS), "metric": "logit_diff(answer, wrong)", "circuit": "", "claims": ""})
    return path


@pytest.fixture(scope="module")
def micro(task: Path) -> Scorer:
    return Scorer(open_session(circuitlang.load(task)))


def _varied_scores(scorer: Scorer) -> dict:
    """A score for every edge, all different, in no particular order."""
    edges = sorted(graph_edges(scorer), key=str)
    return {key: ((7 * i) % len(edges) - 4) / 3 for i, key in enumerate(edges)}


def test_one_batched_call_equals_each_circuit_evaluated_alone(micro: Scorer):
    scores = _varied_scores(micro)
    ks = list(range(len(scores) + 1))
    calls = []
    run = micro.engine.run
    micro.engine.run = lambda variants, readout: calls.append(len(variants)) or run(variants, readout)
    try:
        points = evaluate_top(micro, scores, ks)
    finally:
        del micro.engine.run
    assert calls == [len(ks) + 1]  # and the circuit without edges, m(∅), in the same call
    for k, point in zip(ks, points):
        edges = top_edges(scores, k)
        nodes = sorted({s for s, _, _ in edges if s.kind in ("head", "mlp")}, key=str)
        alone = micro.faithfulness([variant_of(nodes, as_edges(edges), embed_edges=micro.embed_edges)])[0]
        metric = alone * micro.f_model  # scorer.faithfulness is F(C) / F(M)
        assert (point.k, point.edges, point.nodes) == (k, len(edges), len(nodes))
        assert point.metric == pytest.approx(metric, rel=1e-6, abs=1e-9)
        assert point.normalized_faithfulness == pytest.approx((metric - micro.f_empty) / (micro.f_model - micro.f_empty), rel=1e-6, abs=1e-9)


def test_the_known_circuit_ranked_first_is_faithful_at_its_own_size(micro: Scorer):
    scores = {key: 0.01 for key in graph_edges(micro)} | {key: 1.0 for key in KNOWN_EDGES}
    empty, known, everything = evaluate_top(micro, scores, [0, len(KNOWN_EDGES), len(scores)])
    assert empty.normalized_faithfulness == pytest.approx(0.0, abs=1e-6)
    assert (known.edges, known.nodes) == (2, 2)
    assert known.normalized_faithfulness == pytest.approx(1.0, abs=1e-4)
    assert everything.normalized_faithfulness == pytest.approx(1.0, abs=1e-6)


def test_a_curve_takes_mib_fractions_of_the_removable_edges(micro: Scorer):
    # Edges from the embeddings are always kept (embed_edges = all), so they are not counted:
    # 4 heads -> MLP, 4 heads and the MLP -> logits.
    assert len(graph_edges(micro)) == 9
    result = curve(micro, {key: 1.0 for key in KNOWN_EDGES}, label="known")
    assert [p.k for p in result.points] == [int(x * 9 + 1e-9) for x in MIB_FRACTIONS]
    assert result.points[-1].normalized_faithfulness == pytest.approx(1.0, abs=1e-6)
    assert set(on_graph(micro, {})) == graph_edges(micro)


def test_with_declared_embedding_edges_the_graph_is_eap_igs(task: Path):
    declared = task.parent / "declared.circ"  # beside the model folder: a spec's files lie in its folder
    declared.write_text(task.read_text().replace("set bootstrap = 200", "set bootstrap = 200\nset embed_edges = declared"))
    scorer = Scorer(open_session(circuitlang.load(declared)))
    assert len(graph_edges(scorer)) == model_edge_count(GraphConfig(n_layers=1, n_heads=4)) == 23
    # f's zero is the graph's circuit without edges, which here loses the embeddings too (MIB's
    # fully corrupted run), not verify's empty circuit, which keeps them
    result = curve(scorer, {key: 1.0 for key in graph_edges(scorer)}, fractions=(0.01, 1.0))
    assert result.points[0].k == 0 and result.points[0].normalized_faithfulness == pytest.approx(0.0, abs=1e-9)
    assert result.m_empty != pytest.approx(scorer.f_empty, abs=1e-3)


# ---- MIB's evaluate_area_under_curve, written out -----------------------------------------------------------


MIB_PERCENTAGES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)


def mib_area_under_curve(scorer: Scorer, scores: dict, absolute: bool) -> tuple[list[float], float, float]:
    """(faithfulnesses, area_under, area_from_1) as MIB's evaluate_area_under_curve computes them:
    the top int(pct * N) edges by |score| (absolute) or by score, largest first; f normalized
    between the circuit without edges and the model; trapezoids over the percentages. Circuits are
    pruned to the edges that reach the logits and evaluated by the engine, as docs/discover.md says."""
    order = sorted(scores, key=lambda edge: -(abs(scores[edge]) if absolute else scores[edge]))
    empty = _mean_metric(scorer, set())
    faithfulnesses = [
        (_mean_metric(scorer, _reaching_logits(set(order[: int(pct * len(order))]))) - empty) / (scorer.f_model - empty)
        for pct in MIB_PERCENTAGES
    ]
    area_under, area_from_1 = 0.0, 0.0
    for i in range(len(faithfulnesses) - 1):
        width = MIB_PERCENTAGES[i + 1] - MIB_PERCENTAGES[i]
        area_under += width * (faithfulnesses[i] + faithfulnesses[i + 1]) / 2
        area_from_1 += width * (abs(1 - faithfulnesses[i]) + abs(1 - faithfulnesses[i + 1])) / 2
    return faithfulnesses, area_under, area_from_1


def _reaching_logits(chosen: set) -> set:
    kept, reached = set(), {LOGITS}
    while any(edge[1] in reached for edge in chosen - kept):
        for edge in [edge for edge in chosen - kept if edge[1] in reached]:
            kept.add(edge)
            reached.add(edge[0])
    return kept


def _mean_metric(scorer: Scorer, edges: set) -> float:
    nodes = sorted({s for s, _, _ in edges if s.kind in ("head", "mlp")}, key=str)
    return scorer.means([variant_of(nodes, as_edges(edges), embed_edges=scorer.embed_edges)])[0]


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> Path:
    """A random 2-layer GPT-2 with MIB's setting (patching, the embeddings a sender): 110 edges."""
    from circuitlang.organisms.tiny import build_random_gpt2
    from tests.engine.test_attribution import REFERENCE_SPEC

    root = tmp_path_factory.mktemp("tiny_curves")
    build_random_gpt2(root / "tiny", [str(i) for i in range(1, 25)] + ["then", "and", "after"], seed=3)
    (root / "tiny.circ").write_text(REFERENCE_SPEC)
    return root / "tiny.circ"


@pytest.fixture(scope="module")
def tiny(tiny_spec: Path) -> Scorer:
    return Scorer(open_session(circuitlang.load(tiny_spec)))


@pytest.mark.parametrize("ranking", fast_cases(list(Ranking), (Ranking.ABSOLUTE,)))
def test_the_curve_equals_mibs_formula_for_both_rankings(tiny: Scorer, ranking: Ranking):
    from circuitlang.discover.attribution import edge_scores

    scores = on_graph(tiny, edge_scores(tiny, "eap"))
    assert len(set(scores.values())) == len(scores) == 110  # no ties, which each side would break its own way
    assert min(scores.values()) < 0 < max(scores.values())
    faithfulnesses, area_under, area_from_1 = mib_area_under_curve(tiny, scores, absolute=ranking is Ranking.ABSOLUTE)
    result = curve(tiny, scores, ranking=ranking)
    assert [p.normalized_faithfulness for p in result.points] == pytest.approx(faithfulnesses, abs=1e-6)
    assert (result.cpr, result.cmd) == pytest.approx((area_under, area_from_1), abs=1e-6)
    other = curve(tiny, scores, ranking=Ranking.SIGNED if ranking is Ranking.ABSOLUTE else Ranking.ABSOLUTE)
    assert abs(other.cpr - result.cpr) > 1e-3  # the two rankings choose different circuits here


# ---- the command ------------------------------------------------------------------------------------------


def _scored_graph(task: Path, folder: Path, layers: int | None = None) -> Path:
    """The micro model's EAP-IG graph file (from `circuitlang export`), its known edges scored highest."""
    exported = folder / "exported.json"
    assert main(["export", str(task), "-o", str(exported)]) == 0
    data = json.loads(exported.read_text())
    for index, entry in enumerate(data["edges"].values()):
        entry["score"] = 0.001 * index
    data["edges"]["a0.h0->logits"]["score"] = 2.0
    data["edges"]["a0.h1->logits"]["score"] = -1.5
    if layers is not None:
        data["cfg"]["n_layers"] = layers
    path = folder / f"scored{layers or ''}.json"
    path.write_text(json.dumps(data))
    return path


def test_the_command_writes_the_table_json_and_plot(task: Path, tmp_path: Path, capsys):
    graph = _scored_graph(task, tmp_path)
    out_json, out_svg = tmp_path / "curve.json", tmp_path / "curve.svg"
    assert main(["curve", str(task), "--graph", str(graph), "--json", str(out_json), "--plot", str(out_svg)]) == 0
    printed = capsys.readouterr().out
    assert "CPR" in printed and "CMD" in printed and "fraction" in printed
    document = json.loads(out_json.read_text())
    assert document["prompts"] == "copy"
    [written] = document["curves"]
    assert written["label"] == graph.name and written["total_edges"] == 9
    assert [p["fraction"] for p in written["points"]] == list(MIB_FRACTIONS)
    assert written["points"][-1]["normalized_faithfulness"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < written["cpr"] < 1 and written["cmd"] >= 0
    svg = ElementTree.parse(out_svg).getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 1
    assert graph.name in out_svg.read_text()


def test_rank_signed_ranks_a_graphs_edges_by_signed_score(task: Path, tmp_path: Path, capsys):
    graph = _scored_graph(task, tmp_path)  # 0.0 -> logits scores 2.0, the backup 0.1 -> logits -1.5, the rest ~0
    curves = {}
    for rank, by in (("abs", "by |score|"), ("signed", "by signed score")):
        out_json, out_svg = tmp_path / f"{rank}.json", tmp_path / f"{rank}.svg"
        assert main(["curve", str(task), "--graph", str(graph), "--rank", rank, "--json", str(out_json), "--plot", str(out_svg)]) == 0
        printed = capsys.readouterr().out
        assert f"edges ranked {by}: CPR" in printed and f"edges ranked {by};" in printed
        assert f"edges ranked {by}" in ElementTree.parse(out_svg).getroot().findtext("{http://www.w3.org/2000/svg}text")
        [curves[rank]] = json.loads(out_json.read_text())["curves"]
        assert curves[rank]["ranking"] == rank
    # at half of the 9 edges (k = 4) |score| keeps both copying heads; the signed score ranks 0.1 last
    half = {rank: curves[rank]["points"][MIB_FRACTIONS.index(0.5)] for rank in curves}
    assert half["abs"]["k"] == half["signed"]["k"] == 4
    assert half["abs"]["normalized_faithfulness"] == pytest.approx(1.0, abs=1e-4)
    assert half["signed"]["normalized_faithfulness"] < 0.9
    assert curves["signed"]["cpr"] < curves["abs"]["cpr"]


@pytest.mark.slow
def test_the_command_scores_eap_ig_on_the_grid_it_names(tiny_spec: Path, tiny: Scorer, tmp_path: Path):
    from circuitlang.discover.attribution import edge_scores

    written = {}
    for grid in IGGrid:
        out = tmp_path / f"{grid.value}.json"
        assert main(["curve", str(tiny_spec), "--method", "eap-ig", "--steps", "2", "--ig-grid", grid.value, "--json", str(out)]) == 0
        [written[grid]] = json.loads(out.read_text())["curves"]
        assert written[grid]["label"] == f"eap-ig (2 steps, {grid.value} grid)"
        expected = curve(tiny, edge_scores(tiny, "eap-ig", 2, grid))
        assert [p["normalized_faithfulness"] for p in written[grid]["points"]] == pytest.approx(
            [p.normalized_faithfulness for p in expected.points], abs=1e-9
        )
    assert written[IGGrid.LEFT]["points"] != written[IGGrid.RIGHT]["points"]  # the grid changes the ranking here


def test_several_graphs_give_one_curve_each_on_one_plot(task: Path, tmp_path: Path):
    graph = _scored_graph(task, tmp_path)
    out_svg = tmp_path / "both.svg"
    assert main(["curve", str(task), "--graph", str(graph), str(graph), "--plot", str(out_svg)]) == 0
    assert len(ElementTree.parse(out_svg).getroot().findall("{http://www.w3.org/2000/svg}polyline")) == 2


@pytest.mark.parametrize("problem", ["missing", "other model", "no scores"])
def test_a_bad_graph_file_is_refused_naming_it(task: Path, tmp_path: Path, capsys, problem: str):
    if problem == "missing":
        graph = tmp_path / "nowhere.json"
    elif problem == "other model":
        graph = _scored_graph(task, tmp_path, layers=2)
    else:
        graph = tmp_path / "exported.json"
        assert main(["export", str(task), "-o", str(graph)]) == 0  # export writes every score 0
    capsys.readouterr()
    assert main(["curve", str(task), "--graph", str(graph)]) == 2
    error = capsys.readouterr().err
    assert graph.name in error and "Traceback" not in error


def test_an_unknown_prompt_set_is_refused_before_the_model_loads(task: Path, tmp_path: Path, capsys):
    graph = _scored_graph(task, tmp_path)
    capsys.readouterr()
    assert main(["curve", str(task), "--graph", str(graph), "--prompts", "cpy"]) == 2
    error = capsys.readouterr().err
    assert str(task) in error and "'cpy'" in error and "copy" in error and "Traceback" not in error


@pytest.mark.parametrize(
    "options, message",
    [
        ([], "give the scores: --graph GRAPH.json"),
        (["--graph", "g.json", "--steps", "3"], "--steps applies to --method eap-ig only"),
        (["--graph", "g.json", "--plot", "x.gif"], "give a file ending in .svg, .png, .pdf"),
        (["--graph", "g.json", "--ig-grid", "left"], "--ig-grid applies to --method eap-ig only"),
        (["--graph", "g.json", "--rank", "sign"], "argument --rank: 'sign': did you mean 'signed'?"),
    ],
)
def test_bad_options_are_refused(task: Path, capsys, options: list[str], message: str):
    """Each for its own reason, before the graph file (which does not exist) is read."""
    assert main(["curve", str(task), *options]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_a_curve_whose_zero_is_the_model_is_refused(tmp_path, capsys):
    """answer = wrong: every circuit's logit difference is 0, so f's denominator m(M) - m(∅) is 0."""
    from tests.conftest import SPECS

    spec = tmp_path / "same.circ"
    spec.write_text((SPECS / "organism_months.circ").read_text().replace("  wrong = months[i + 3]", "  wrong = months[i + 4]"))
    assert main(["curve", str(spec), "--method", "eap"]) == 2
    assert "the model and the graph without edges give the same mean metric (0)" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_the_plot_format_follows_the_extension_as_draw_and_patch_do(task: Path, tmp_path: Path, suffix: str):
    """`--plot curve.png` used to be refused (SVG only); the PNG and PDF draw the numbers of the
    JSON, the same points as the SVG."""
    from circuitlang.report.curve_plot import faithfulness_figure

    graph = _scored_graph(task, tmp_path)
    out_json, out_image = tmp_path / "curve.json", tmp_path / f"curve.{suffix}"
    assert main(["curve", str(task), "--graph", str(graph), "--json", str(out_json), "--plot", str(out_image)]) == 0
    assert out_image.read_bytes()[:4] == {"png": b"\x89PNG", "pdf": b"%PDF"}[suffix]
    [written] = json.loads(out_json.read_text())["curves"]

    class Curve:  # the figure reads what a FaithfulnessCurve has, here from the JSON written
        label, cpr, cmd, cpr_log, cmd_log = written["label"], written["cpr"], written["cmd"], written["cpr_log"], written["cmd_log"]
        fractions = [p["fraction"] for p in written["points"]]
        points = [type("Point", (), p) for p in written["points"]]

    [line] = faithfulness_figure([Curve()], "t").axes[0].get_lines()[2:]  # after the two dashed references
    assert list(line.get_ydata()) == [p["normalized_faithfulness"] for p in written["points"]]
    assert list(line.get_xdata()) == list(MIB_FRACTIONS)
