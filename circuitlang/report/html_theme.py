"""The HTML report's style sheet and script (report/html.py), inline in every page: the page must
open from a file or a CI artifact with no network. The page's Content-Security-Policy admits
exactly these two texts by their hashes, so they are constants, never formatted with data.

Colours follow the diagrams' (report/html_circuit.py): blue needed, red not needed or failed.
"""

from __future__ import annotations

STYLE = """
:root { --ink: #222; --muted: #666; --line: #ddd; --pass: #1b7a3d; --fail: #c0392b; --blue: #225588; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1320px; padding: 0 20px 40px; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header { border-bottom: 1px solid var(--line); padding: 14px 0 8px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 26px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.badge { font-size: 14px; padding: 2px 10px; border-radius: 12px; color: #fff; vertical-align: middle; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0 12px; margin: 0; color: var(--muted); font-size: 13px; }
.facts dt { font-weight: 600; } .facts dd { margin: 0; overflow-wrap: anywhere; }
nav { position: sticky; top: 0; background: #fff; padding: 6px 0; border-bottom: 1px solid var(--line); z-index: 1; }
nav a { margin-right: 16px; }
a { color: var(--blue); }
.warning { background: #fff4e5; border-left: 4px solid #e67e22; padding: 6px 10px; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 16px; }
.card { flex: 1 1 200px; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card .name { color: var(--muted); font-size: 13px; }
.card .value { font-size: 28px; font-weight: 600; }
.card .interval { font-variant-numeric: tabular-nums; }
.card .definition { color: var(--muted); font-size: 12px; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 20px; align-items: start; }
@media (max-width: 1000px) { .pair { grid-template-columns: minmax(0, 1fr); } }
figure.circuit { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figure.circuit svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 6px; }
table { border-collapse: collapse; margin: 10px 0 18px; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
table.summary caption { caption-side: bottom; font-weight: normal; color: var(--muted); font-size: 12px; }
.summary td:nth-child(3), .nodes td, .edges td:nth-child(3) { white-space: nowrap; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
tr.hot, tr.hot td { background: #fff3c4; }
.needed { color: var(--pass); } .not-needed { color: var(--fail); font-weight: 600; } .not-tested { color: var(--muted); }
.verdict.pass { color: var(--pass); font-weight: 600; } .verdict.fail { color: var(--fail); font-weight: 700; }
tr.fail td { background: #fdecea; }
g.edge.hot path, g.edge.hot polygon { stroke: #ee7733; }
g.edge.hot text { fill: #ee7733; font-weight: bold; }
pre.source { background: #f7f7f7; border: 1px solid var(--line); border-radius: 6px; padding: 8px 0;
             overflow-x: auto; font-size: 13px; line-height: 1.5; }
pre.source .line { display: block; padding: 0 12px 0 0; white-space: pre; }
pre.source .number { display: inline-block; width: 4em; padding-right: 1em; text-align: right; color: #999;
                     text-decoration: none; user-select: none; }
pre.source .claim.pass { background: #e8f5ec; } pre.source .claim.fail { background: #fdecea; }
pre.source .line:target { background: #fff3c4; outline: 1px solid #e6c200; }
"""

# Hovering a row of the edges table lights its edge in the drawing, and the other way round.
SCRIPT = """
document.querySelectorAll("[data-edge]").forEach(function (row) {
  var edge = document.getElementById(row.getAttribute("data-edge"));
  if (!edge) { return; }
  function light(on) { row.classList.toggle("hot", on); edge.classList.toggle("hot", on); }
  [row, edge].forEach(function (part) {
    part.addEventListener("mouseenter", function () { light(true); });
    part.addEventListener("mouseleave", function () { light(false); });
  });
});
"""
