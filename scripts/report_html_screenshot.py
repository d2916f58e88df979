"""The screenshot of the HTML report in docs/verify.md (docs/pictures/report_html.png).

    .venv/bin/python scripts/report_html_screenshot.py [--output docs/pictures/report_html.png]

Verifies the shipped organism spec with `verify --format html` (the same command a user runs),
opens the page in the system Chromium through Playwright (the `test` extra; `apt-get install -y
chromium`), offline, at a laptop's size (1366 x 900), and saves the top of the page as it shows
there. Run from the repository root, so that the page names the spec as `specs/...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "specs/organism_incr_digits.circ"
CHROMIUM = os.environ.get("CIRCUITLANG_CHROMIUM", "/usr/bin/chromium")
LAPTOP = {"width": 1366, "height": 900}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "pictures" / "report_html.png")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the top a laptop screen shows")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from circuitlang.cli import main as circuitlang

    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        os.chdir(ROOT)
        if circuitlang(["verify", SPEC, "--no-cache", "--format", "html", "-o", str(page)]) != 0:
            print(f"verify {SPEC} did not pass: no screenshot taken", file=sys.stderr)
            return 1
        shoot(page, args.output, args.full_page)
    print(f"wrote {args.output}")
    return 0


def shoot(page: Path, output: Path, full_page: bool) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        tab = browser.new_context(offline=True, viewport=LAPTOP).new_page()
        tab.goto(page.as_uri())
        output.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(output), full_page=full_page)
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
