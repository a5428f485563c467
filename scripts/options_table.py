"""The options table of docs/options.md, rendered from the option definitions
(``pytest_aie.settings.OPTIONS``): one row per ``--aie-*`` option with its ini twin, default
and help text, between ``<!-- options:start -->`` and ``<!-- options:end -->``.

    .venv/bin/python scripts/options_table.py           # rewrite the table in docs/options.md
    .venv/bin/python scripts/options_table.py --check   # exit 1 when the page differs

tests/test_docs.py fails when the page and the definitions differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_aie.settings import OPTIONS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "options.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The Markdown table, one row per option, in the order they are defined."""
    rows = ["| option | ini | default | meaning |", "|---|---|---|---|"]
    for opt in OPTIONS:
        default = f"`{opt.default}`" if opt.default else "unset"
        meaning = _cell(opt.help)
        if opt.choices:
            meaning += " (one of " + ", ".join(f"`{c}`" for c in opt.choices) + ")"
        rows.append(f"| `{opt.flag} {opt.metavar}` | `{opt.ini}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def current(page: str) -> str:
    """The table as the page has it now (between the markers)."""
    if START not in page or END not in page:
        return ""
    return page.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


def main(argv: list[str]) -> int:
    page = PAGE.read_text(encoding="utf-8")
    if START not in page or END not in page:
        print(f"{PAGE}: no {START} ... {END} markers", file=sys.stderr)
        return 2
    if "--check" in argv:
        if current(page) != render():
            print(f"{PAGE}: the options table differs from pytest_aie.settings.OPTIONS; "
                  "run .venv/bin/python scripts/options_table.py", file=sys.stderr)
            return 1
        print("docs/options.md: the options table matches the definitions")
        return 0
    before, rest = page.split(START, 1)
    after = rest.split(END, 1)[1]
    PAGE.write_text(f"{before}{START}\n{render()}{END}{after}", encoding="utf-8")
    print(f"wrote the options table of {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
