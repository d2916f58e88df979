"""`verify --format html`: one self-contained page, opened in a real headless Chromium.

The page of a real verification of the shipped organism spec must load from a file:// URL with
nothing fetched from elsewhere and no console error, state the JSON report's numbers in the other
views' words and formats, draw one edge element per declared edge, and link each claim to its line
in the listed source; both layouts of the drawing (Graphviz's, and the plain one of the light
install) are checked. Spec text is untrusted: a `<script>` in it must show as text.

The browser is Debian's Chromium (`apt-get install -y chromium`; `.ci/run` installs it), driven by
Playwright's Python package (the `test` extra) with `executable_path`, since Playwright's own
browser download is not available. A missing browser fails these tests with what to install;
set CIRCUITLANG_ALLOW_NO_BROWSER=1 to skip them instead on a machine without one (CI never does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.ir.lower import load_spec
from circuitlang.report.html import to_html
from circuitlang.results.report import Report
from tests.conftest import SPECS

ORGANISM = SPECS / "organism_incr_digits.circ"
CHROMIUM = os.environ.get("CIRCUITLANG_CHROMIUM", "/usr/bin/chromium")
ALLOW_NO_BROWSER = "CIRCUITLANG_ALLOW_NO_BROWSER"
HOSTILE = "<script>alert(1)</script>"
HEADLINE = {  # card -> where the JSON report holds its number
    "faithfulness": ("faithfulness", "faithfulness"),
    "normalized faithfulness": ("faithfulness", "normalized_faithfulness"),
    "incompleteness (worst K)": ("completeness", "worst"),
}


def _without_browser(what: str) -> None:
    message = f"the HTML report's browser tests need {what}"
    if os.environ.get(ALLOW_NO_BROWSER) == "1":
        pytest.skip(message)
    pytest.fail(f"{message}; or set {ALLOW_NO_BROWSER}=1 to skip them on a machine without a browser", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _without_browser("Playwright's Python package (pip install -e '.[test]')")
    if shutil.which(CHROMIUM) is None:
        _without_browser(f"Chromium at {CHROMIUM} (apt-get install -y chromium, or set CIRCUITLANG_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Loaded:
    """A page opened from its file, and everything it asked for or complained about."""

    page: object
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors and warnings, uncaught exceptions
    dialogs: list[str] = field(default_factory=list)


def open_page(browser, path: Path) -> Loaded:
    """Open the file offline; every request is recorded, and any outside file:// refused."""
    context = browser.new_context(offline=True, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    loaded = Loaded(page)

    def route(route) -> None:
        loaded.requests.append(route.request.url)
        route.continue_() if route.request.url.startswith("file:") else route.abort()

    context.route("**/*", route)
    page.on("console", lambda message: loaded.problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: loaded.problems.append(str(error)))
    page.on("dialog", lambda dialog: (loaded.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return loaded


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> tuple[Path, dict, str]:
    """One real verification of the organism spec: the HTML page, and the JSON and Markdown reports
    of the same run."""
    folder = tmp_path_factory.mktemp("html")
    html, report, markdown = folder / "report.html", folder / "report.json", folder / "report.md"
    code = main(["verify", str(ORGANISM), "--format", "html", "-o", str(html), "--write", f"json={report}", "--write", f"markdown={markdown}"])
    assert code == 0
    return html, json.loads(report.read_text()), markdown.read_text()


def _interval(estimate: dict) -> tuple[str, str]:
    """As the table and Markdown print a headline number (written out here, not imported)."""
    return f"{estimate['value']:.4g}", f"[{estimate['low']:.4g}, {estimate['high']:.4g}]"


def test_the_page_loads_offline_without_errors_and_fetches_nothing(browser, verified):
    html, _, _ = verified
    loaded = open_page(browser, html)
    assert loaded.requests == [html.as_uri()]  # the page itself, nothing else
    assert loaded.problems == [] and loaded.dialogs == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html.read_text())  # no link out, even unfollowed
    assert loaded.page.locator("script").count() == 1  # the page's own


def test_the_headline_numbers_are_the_json_reports_in_the_markdown_words(browser, verified):
    html, report, markdown = verified
    page = open_page(browser, html).page
    prompt_set = report["prompt_sets"][0]
    section = page.locator("section.prompt-set").first
    for name, (group, key) in HEADLINE.items():
        value, interval = _interval(prompt_set[group][key])
        card = section.locator(f'.card[data-number="{name}"]')
        assert (card.locator(".value").inner_text(), card.locator(".interval").inner_text()) == (value, interval)
        row = section.locator(f'table.summary tr[data-number="{name}"] td')
        assert row.all_inner_texts()[:3] == [name, value, interval]
        assert f"| {name} | {value} | {interval} |" in markdown  # one word, one number in every view
    needed = sum(node["needed"] for node in prompt_set["minimality"])
    assert section.locator('.card[data-number="minimality"] .value').inner_text() == f"{needed} of {len(prompt_set['minimality'])}"
    assert page.locator("#verdict").inner_text() == ("all claims pass" if report["passed"] else "claims FAILED")


def test_the_tables_list_the_nodes_the_worst_sets_and_the_audit(browser, verified):
    html, report, _ = verified
    page = open_page(browser, html).page
    prompt_set = report["prompt_sets"][0]
    nodes = page.locator("table.nodes tbody tr")
    assert nodes.count() == len(prompt_set["minimality"])
    for index, node in enumerate(prompt_set["minimality"]):
        cells = nodes.nth(index).locator("td").all_inner_texts()
        assert cells[0] == node["node"] and cells[3] == ("yes" if node["needed"] else "NOT NEEDED")
    assert page.locator("table.completeness tbody tr").count() == min(5, len(prompt_set["completeness"]["sets"]))
    assert prompt_set["audit"]["ran"]
    missing = page.locator(".audit table").first.locator("tbody tr")
    assert missing.count() == len(prompt_set["audit"]["edges"])
    first = prompt_set["audit"]["edges"][0]
    assert missing.first.locator("td").first.inner_text() == f"{first['sender']} -> {first['receiver']}"


def test_each_claim_has_a_row_with_its_verdict_linked_to_its_line_in_the_source(browser, verified):
    html, report, _ = verified
    page = open_page(browser, html).page
    rows = page.locator("table.claims tbody tr")
    assert rows.count() == len(report["claims"]) >= 1
    for index, claim in enumerate(report["claims"]):
        row = rows.nth(index)
        verdict = "pass" if claim["passed"] else "fail"
        assert row.get_attribute("data-verdict") == verdict and row.locator(".verdict").inner_text().lower() == verdict
        assert f"{claim['threshold']:g}" in row.inner_text()
        link = row.locator("a.claim-link")
        assert link.get_attribute("href") == f"#L{claim['line']}"
        target = page.locator(f"#source #L{claim['line']}")
        assert target.count() == 1 and claim["claim"] in target.inner_text()
        link.click()
        assert page.evaluate("location.hash") == f"#L{claim['line']}"
    lines = page.locator("#source .line")
    assert lines.count() == len(ORGANISM.read_text().splitlines())


@pytest.mark.parametrize("layout", ["graphviz", "layered"])
def test_the_circuit_has_one_edge_element_per_declared_edge_marked_by_its_verdict(browser, verified, layout, tmp_path, monkeypatch):
    html, report, _ = verified
    if layout == "layered":  # the light install, without pygraphviz: the page lays the circuit out itself
        monkeypatch.setitem(sys.modules, "pygraphviz", None)
        html = tmp_path / "layered.html"
        html.write_text(to_html(Report.model_validate(report), load_spec(ORGANISM), ORGANISM.read_text()))
    loaded = open_page(browser, html)
    page = loaded.page
    assert loaded.problems == [] and loaded.requests == [html.as_uri()]
    edges = report["prompt_sets"][0]["edges"]
    assert len(edges) == sum(line.startswith("edge ") for line in ORGANISM.read_text().splitlines())
    drawn = page.locator("figure.circuit svg g.edge")
    assert drawn.count() == len(edges)
    rows = page.locator("table.edges tbody tr")  # in the spec's order, as the JSON's edges
    ids = [rows.nth(i).get_attribute("data-edge") for i in range(len(edges))]
    assert sorted(ids) == sorted(drawn.nth(i).get_attribute("id") for i in range(len(edges)))
    for id_, edge in zip(ids, edges):
        element = page.locator(f"figure.circuit svg g.edge#{id_}")
        assert ("needed" if edge["needed"] else "not-needed") in element.get_attribute("class").split()
        assert f"{edge['effect']['value']:.3f}" in element.text_content()
        assert element.locator(f'a[*|href="#L{edge["line"]}"]').count() >= 1  # to its line in the source (href or xlink:href)
    rows.first.hover()  # the page's script runs under its policy: the row lights its edge
    assert "hot" in page.locator(f"#{ids[0]}").get_attribute("class").split()
    page.locator(f"#{ids[-1]} text").first.click()
    assert page.evaluate("location.hash") == f"#L{edges[-1]['line']}"


@pytest.mark.parametrize("layout", ["graphviz", "layered"])
def test_spec_text_is_shown_as_text_never_run(browser, verified, layout, tmp_path, monkeypatch):
    """A template, a role name and the circuit's name that hold markup: the page shows them as
    written, and runs no script but its own."""
    if layout == "layered":
        monkeypatch.setitem(sys.modules, "pygraphviz", None)
    _, report, _ = verified
    text = ORGANISM.read_text()
    role = re.search(r'^role "([^"]+)"', text, flags=re.M).group(1)
    hostile = text.replace('template "{s1} {s2} {s3} {s4}"', f'template "{HOSTILE} {{s1}} {{s2}} {{s3}} {{s4}}"')
    hostile = hostile.replace(f'"{role}"', f'"</title>{HOSTILE}<b>"')
    assert hostile.count(HOSTILE) == 2  # the template and the role (the line count kept: the edges keep their lines)
    spec_path = tmp_path / "hostile.circ"
    spec_path.write_text(hostile)
    renamed = json.loads(json.dumps(report).replace(f'"role": "{role}"', f'"role": "</title>{HOSTILE}<b>"'))
    shown = Report.model_validate(renamed).model_copy(update={"circuit": f"{HOSTILE}&amp;", "spec_path": str(spec_path)})
    page_path = tmp_path / "hostile.html"
    page_path.write_text(to_html(shown, load_spec(spec_path), hostile))
    loaded = open_page(browser, page_path)
    page = loaded.page
    assert loaded.dialogs == [] and loaded.problems == [] and page.locator("script").count() == 1
    assert page.locator("h1").inner_text().startswith(f"circuitlang: {HOSTILE}&amp;")
    assert HOSTILE in page.title()
    template_line = next(n for n, line in enumerate(hostile.splitlines(), 1) if "template" in line)
    assert page.locator(f"#L{template_line}").inner_text().endswith(f'template "{HOSTILE} {{s1}} {{s2}} {{s3}} {{s4}}"\n')
    assert f"</title>{HOSTILE}<b>" in page.locator("table.nodes").inner_text()
    assert f"</title>{HOSTILE}<b>" in page.locator("figure.circuit svg").text_content()


def test_a_spec_that_cannot_be_verified_gets_an_html_page_with_its_errors(browser, tmp_path):
    broken = tmp_path / "broken.circ"
    broken.write_text(ORGANISM.read_text() + f'\nnonsense "{HOSTILE}"\n')
    page_path = tmp_path / "broken.html"
    assert main(["verify", str(broken), "--format", "json", "--write", f"html={page_path}"]) == 2
    loaded = open_page(browser, page_path)
    page = loaded.page
    assert loaded.problems == [] and loaded.dialogs == [] and page.locator("script").count() == 1
    assert page.locator("h1").inner_text() == f"circuitlang: {broken} (not verified: exit 2)"
    errors = page.locator("#errors li")
    assert errors.count() >= 1 and f'nonsense "{HOSTILE}"' in errors.first.locator("pre").inner_text()


def test_look_adds_the_lens_and_each_circuit_heads_attention_and_changes_no_number(browser, verified, tmp_path):
    """`verify --look`: each prompt set's logit lens, direct contributions and the mean attention
    pattern of every head of the circuit, as PNG inlined in the page (nothing fetched); the report's
    numbers are those of the run without it."""
    from circuitlang.api import load

    html, report = tmp_path / "look.html", tmp_path / "look.json"
    assert main(["verify", str(ORGANISM), "--look", "--format", "html", "-o", str(html), "--write", f"json={report}"]) == 0
    looked = json.loads(report.read_text())
    _, plain, _ = verified
    for name in ("faithfulness", "completeness", "minimality"):
        assert looked["prompt_sets"][0][name] == plain["prompt_sets"][0][name]
    heads = {str(member.node) for member in load(ORGANISM).circuit.nodes if member.node.kind == "head"}
    loaded = open_page(browser, html)
    assert loaded.requests == [html.as_uri()] and loaded.problems == []
    captions = loaded.page.locator("figure.look figcaption").all_inner_texts()
    assert captions[:2] == ["logit lens", "direct contributions"]
    assert sorted(captions[2:]) == sorted(f"attention of {head}" for head in heads) and len(heads) >= 2
    sizes = loaded.page.eval_on_selector_all("figure.look img", "images => images.map(i => i.naturalWidth)")
    assert len(sizes) == len(captions) and all(width > 100 for width in sizes)  # each picture decoded


def test_look_without_an_html_output_is_a_usage_error(capsys):
    assert main(["verify", str(ORGANISM), "--look", "--format", "json"]) == 2
    assert "the readings go on the HTML page" in capsys.readouterr().err
