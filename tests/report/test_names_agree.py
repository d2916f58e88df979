"""One word, one number: every view of the same quantity states the same number under the same
name, and different quantities have different names (docs/decisions.md, "Counts and names").

- Counts: `check`, `draw`, `compare` and `export` count nodes, declared edges (`edge` lines) and
  graph edges (EAP-IG's, one per q/k/v channel) and say which; one word, one number across them.
- Edge claims: `effect` is the edges table's signed number wherever it appears; `edge_effect`'s
  value is the weakest edge's |effect| and is shown as `|effect|`, in the JSON and every format.
- Curves: `curve`'s f is the normalized faithfulness, named so in the table, JSON and plot, and is
  `verify`'s normalized faithfulness of the same circuit; `verify`'s faithfulness is F(C)/F(M).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from rich.console import Console

import circuitlang
from circuitlang.api import verify
from circuitlang.cli import main
from circuitlang.commands.curve import CURVE_CAPTION
from circuitlang.discover.curves import curve
from circuitlang.discover.path_growth import LOGITS
from circuitlang.discover.scoring import Scorer, head
from circuitlang.engine.session import open_session
from circuitlang.ir.lower import load_spec
from circuitlang.report.curve_plot import Y_LABEL
from circuitlang.report.render import tables, to_github, to_junit, to_markdown
from circuitlang.verification.claims import check_claims
from circuitlang.verification.edges import magnitude
from circuitlang.results.estimate import Estimate
from tests.conftest import SPECS, fast_cases
from tests.micro_model import WORDS, build_copy_model
from tests.verification.test_edges import micro_report  # noqa: F401  (fixture)
from tests.workflows.test_verify import SPEC as MICRO_SPEC

# ---- counts ----------------------------------------------------------------------------------------------


COUNTED = re.compile(r"(\d+) (?:of \d+ )?(node|declared edge|graph edge)s?\b")
COMPARED = re.compile(r"^\w+: (\d+ nodes?, \d+ declared edges?, \d+ graph edges?) \(")  # compare's size lines
BARE = re.compile(r"\d+ (?:of \d+ )?edges?\b")
OTHER = {"organism_months": "organism_incr_digits", "incr_digits": "ioi", "ioi": "incr_digits"}


def _counts(text: str) -> dict[str, set[int]]:
    """Every number stated for each counted word."""
    found: dict[str, set[int]] = {}
    for number, word in COUNTED.findall(text):
        found.setdefault(word, set()).add(int(number))
    return found


@pytest.mark.parametrize("name", fast_cases(["organism_months", "incr_digits", "ioi"], ("organism_months",)))
def test_check_draw_compare_and_export_state_one_count_per_word(name, capsys, tmp_path):
    """`4.4 -> 9.1 via k, v` is one declared edge and two graph edges: every command that counts
    a circuit says which it counts, and states the same number for the same word."""
    path = SPECS / f"{name}.circ"
    other = SPECS / f"{OTHER[name]}.circ"  # on a model of the same shape, so that they draw together
    outputs = {}
    for command in (
        ["check", str(path)],
        ["draw", str(path), "-o", str(tmp_path / "c.dot")],
        ["compare", str(path), str(other), "--no-transfer", "--format", "markdown"],
        ["export", str(path), "-o", str(tmp_path / "c.json")],
    ):
        capsys.readouterr()
        assert main(command) == 0
        outputs[command[0]] = capsys.readouterr().out
    compared = [line for line in outputs.pop("compare").splitlines() if COMPARED.match(line)]
    outputs["compare"] = next(line for line in compared if line.startswith(f"{name}: "))
    assert main(["draw", str(path), str(other), "-o", str(tmp_path / "both.dot")]) == 0
    legend = (tmp_path / "both.dot").read_text()
    assert all(COMPARED.match(line).group(1) in legend for line in compared)  # each spec's size, in compare's words
    spec = load_spec(path)
    exported = json.loads((tmp_path / "c.json").read_text())
    expected = {
        "node": {len(spec.circuit.nodes)},
        "declared edge": {sum(line.startswith("edge ") for line in path.read_text().splitlines())},
        "graph edge": {sum(info["in_graph"] for info in exported["edges"].values())},
    }
    assert spec.circuit.edges or expected["declared edge"] == {0}
    for command, text in outputs.items():
        counts = _counts(text)
        assert "node" in counts and not BARE.search(text), (command, text)  # no count of edges without its kind
        for word, numbers in counts.items():
            assert numbers == expected[word], (command, word, text)
    assert {"declared edge", "graph edge"} <= set(_counts(outputs["draw"])) == set(_counts(outputs["compare"]))
    assert "declared edge" in _counts(outputs["check"]) and "graph edge" in _counts(outputs["export"])


# ---- edge claims ----------------------------------------------------------------------------------------


EFFECT_SHOWN = re.compile(r"(\|effect\||effect) (-?\d+\.\d{3}) \[(-?\d+\.\d{3}), (-?\d+\.\d{3})\]")


def _shown(estimate: Estimate) -> tuple[str, str, str]:
    return f"{estimate.value:.3f}", f"{estimate.low:.3f}", f"{estimate.high:.3f}"


def test_an_edge_claim_names_the_interval_it_shows_and_effect_means_the_tables_number(micro_report):  # noqa: F811
    """`effect` is the signed number of the edges table wherever it is shown, and `edge_effect`'s
    value, the weakest edge's |effect|, is shown as `|effect|` with its own interval, in the JSON
    and in every text format: a claim and the table never show two intervals under one word."""
    [prompt_set] = micro_report.prompt_sets
    straddling = Estimate(value=-0.002, low=-0.006, high=0.008)  # a sign the sample cannot tell
    edges = [prompt_set.edges[0], prompt_set.edges[1].model_copy(update={"effect": straddling})]
    changed = prompt_set.model_copy(update={"edges": edges})
    spec_path = Path(micro_report.spec_path).with_name("claims.circ")  # beside the model folder it names
    spec_path.write_text(
        Path(micro_report.spec_path)
        .read_text()
        .replace("set bootstrap = 200", "set bootstrap = 200\nexpect edge_effect >= 0.01\nexpect 0.2 -> logits effect >= 0.01")
    )
    claims = check_claims(circuitlang.load(spec_path), [changed], lambda *args: Estimate(value=0.0, low=0.0, high=0.0))
    report = micro_report.model_copy(update={"prompt_sets": [changed], "claims": claims})
    weakest, named = claims
    assert (weakest.target, weakest.quantity, weakest.value) == ("0.2 -> logits", "|effect|", magnitude(straddling))
    assert (named.target, named.quantity, named.value) == ("0.2 -> logits", "effect", straddling)
    data = json.loads(report.model_dump_json())
    table = {edge["edge"]: edge["effect"] for edge in data["prompt_sets"][0]["edges"]}
    for claim in data["claims"]:
        signed = table[claim["target"]]
        expected = signed if claim["quantity"] == "effect" else magnitude(Estimate(**signed)).model_dump()
        assert claim["quantity"] in ("effect", "|effect|") and claim["value"] == expected
    rows = report.table("claims", kind="records")
    assert [(row["quantity"], row["value_low"]) for row in rows] == [("|effect|", 0.0), ("effect", -0.006)]

    signed = {_shown(e.effect) for e in edges} | {_shown(m.effect) for m in prompt_set.audit.edges + prompt_set.audit.nodes}
    console = Console(record=True, width=400)
    for item in tables(report):
        console.print(item)
    texts = {"table": console.export_text(), "junit": to_junit(report), "github": to_github(report), "markdown": to_markdown(report)}
    for name, text in texts.items():
        shown = EFFECT_SHOWN.findall(text.replace("&gt;", ">"))
        assert ("|effect|", *_shown(magnitude(straddling))) in shown, name
        for word, *numbers in shown:
            assert tuple(numbers) in (signed if word == "effect" else {_shown(magnitude(straddling))}), (name, word, numbers)
    assert "-0.002 [-0.006, 0.008]" in texts["table"]  # the edges table's cell


# ---- the faithfulness curve's f ----------------------------------------------------------------------------


HALF = 'role "copier": 0.0\nedge 0.0 -> logits'  # half of the micro model's circuit (0.1 is 0.0's twin)


def test_curves_f_is_named_normalized_faithfulness_and_is_verifys(tmp_path: Path, capsys):
    """The curve's f at a circuit is the number `verify` calls normalized faithfulness for it
    (which differs here from its faithfulness F(C)/F(M)); the table, JSON and plot name it so."""
    build_copy_model(tmp_path / "micro")
    spec = tmp_path / "known.circ"
    spec.write_text(MICRO_SPEC % {"words": json.dumps(WORDS), "metric": "logit_diff(answer, wrong)", "circuit": HALF, "claims": ""})
    numbers = verify(circuitlang.open_run(circuitlang.load(spec))).prompt_sets[0].faithfulness
    scorer = Scorer(open_session(circuitlang.load(spec)))
    result = curve(scorer, {(head(0, 0), LOGITS, ""): 2.0}, fractions=(1 / 9, 1.0))  # of 9 edges: k = 1, the spec's
    point = result.points[0]
    assert (point.k, point.edges) == (1, 1)
    assert (result.m_model, result.m_empty, point.metric) == pytest.approx(
        (numbers.f_model.value, numbers.f_empty.value, numbers.f_circuit.value), rel=1e-6
    )
    assert point.normalized_faithfulness == pytest.approx(numbers.normalized_faithfulness.value, rel=1e-6)
    assert abs(numbers.faithfulness.value - numbers.normalized_faithfulness.value) > 0.01

    graph, out_json, out_svg = tmp_path / "graph.json", tmp_path / "curve.json", tmp_path / "curve.svg"
    assert main(["export", str(spec), "-o", str(graph)]) == 0
    data = json.loads(graph.read_text())
    data["edges"]["a0.h0->logits"]["score"] = 2.0
    graph.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["curve", str(spec), "--graph", str(graph), "--json", str(out_json), "--plot", str(out_svg)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "normalized faithfulness f" in printed and " ".join(CURVE_CAPTION.split()) in printed
    [written] = json.loads(out_json.read_text())["curves"]
    for entry in written["points"]:
        assert "faithfulness" not in entry
        expected = (entry["metric"] - written["m_empty"]) / (written["m_model"] - written["m_empty"])
        assert entry["normalized_faithfulness"] == pytest.approx(expected, abs=1e-9)
    labels = [t.text or "" for t in ElementTree.parse(out_svg).iter("{http://www.w3.org/2000/svg}text")]
    assert Y_LABEL in labels and not any(label.startswith("faithfulness f") for label in labels)


def test_every_claim_names_its_quantity():
    """A new claim word must be given its name in the tables' words, or its row cannot be shown."""
    from circuitlang.ir.stdlib import METRIC_CLAIMS, SCORE_CLAIMS
    from circuitlang.verification.claims import CIRCUIT_QUANTITIES, NODE_QUANTITIES

    assert set(CIRCUIT_QUANTITIES) == set(METRIC_CLAIMS)
    assert set(NODE_QUANTITIES) == set(SCORE_CLAIMS)
