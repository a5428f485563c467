"""Make ``docs/report.png``, the README's picture of the HTML report, from a real report.

    make demo        # runs suites/ on the embedded model, writes aie-results/report.html
    .venv/bin/python scripts/report_screenshot.py aie-results/report.html docs/report.png

It opens the report in the system's headless Chromium (``tests/browser.py``), takes the top of
the page down to the eighth suite row, the case table filtered to one agent case with its
drill-down open, and the Elo leaderboard, and stacks them into one PNG of 128 colours (Pillow).
The agent case's id and metric are the ``--case`` option (default ``capital-distance
agent.steps``, a case of ``suites/agent/tasks.jsonl``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import chromium_or_skip  # noqa: E402  (tests/ is put on sys.path above)

WIDTH = 1400


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("output")
    parser.add_argument("--case", default="capital-distance agent.steps",
                        help="filter text that selects the case whose drill-down is shown")
    args = parser.parse_args()
    from PIL import Image

    tmp = Path(tempfile.mkdtemp())
    with chromium_or_skip() as browser:
        page = browser.new_context(viewport={"width": WIDTH, "height": 900},
                                   color_scheme="light").new_page()
        page.goto(Path(args.report).resolve().as_uri())
        page.wait_for_selector("body[data-ready]")
        rows = page.locator("tr.suite-row")
        box = rows.nth(min(7, rows.count() - 1)).bounding_box()
        page.screenshot(path=str(tmp / "top.png"),
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": box["y"] + box["height"] + 2})
        page.fill("#aie-filter", args.case)
        page.press("#aie-filter", "Enter")
        page.locator("tr.case-row").first.click()
        page.wait_for_selector("tr.detail-row.ready")
        page.locator("#cases").screenshot(path=str(tmp / "cases.png"))
        parts = ["top.png", "cases.png"]
        if page.locator("#elo").count():
            page.locator("#elo").screenshot(path=str(tmp / "elo.png"))
            parts.append("elo.png")
    images = [Image.open(tmp / p).convert("RGB") for p in parts]
    canvas = Image.new("RGB", (WIDTH, sum(i.size[1] + 8 for i in images)), (255, 255, 255))
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.size[1] + 8
    canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                    dither=Image.Dither.NONE).save(args.output, optimize=True)
    print(f"{args.output}: {canvas.size[0]}x{canvas.size[1]}")


if __name__ == "__main__":
    main()
