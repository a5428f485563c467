"""The run as Markdown: the summary appended to GitHub Actions' ``$GITHUB_STEP_SUMMARY`` at
session end, and printed by ``python -m pytest_aie report --summary``.

It holds the suite table (metric, value, interval, threshold, verdict), the regressions
against the baseline or between models, the baseline's newly failing cases (the first
:data:`CASE_ROWS`, then a count of the rest), the exit status with its notes, and where the
report and the results log are. Every cell is escaped: names and outputs are untrusted text
that must not break the table or add markup.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pytest_aie._util.text import shorten, visible
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.results.records import SuiteRow

__all__ = ["CASE_ROWS", "append_step_summary", "markdown_summary"]

#: Newly failing cases listed before "... and N more".
CASE_ROWS = 20
#: Comparison lines listed before "... and N more".
COMPARISON_ROWS = 30
_OUTPUT_CHARS = 80

_STATUS = {0: "passed", 1: "tests or evals failed", 2: "interrupted", 10: "harness problem",
           11: "regression"}


def cell(value: Any, limit: int = 200) -> str:
    """A table cell: one line, visible characters, ``|`` ``<`` ``>`` `` ` `` and ``*`` ``_``
    ``[`` ``]`` escaped (no markup from a case id or an output), cut to about ``limit``."""
    text = shorten(visible(str(value).replace("\r", " ").replace("\n", " ")), limit)
    for ch in "\\|`*_[]":
        text = text.replace(ch, "\\" + ch)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _fmt(value: Any, binary: bool) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a"
    return f"{value:.1%}" if binary else f"{value:.3f}"


def _suite_table(rows: Sequence[SuiteRow]) -> list[str]:
    out = ["| suite | metric | value | interval | threshold | verdict |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        binary = bool(row.binary)
        interval = row.interval
        ci = "" if not interval else f"[{_fmt(interval[0], binary)}, {_fmt(interval[1], binary)}]"
        threshold = row.threshold
        bound = "" if threshold is None else \
            ("≥ " if row.higher_is_better else "≤ ") + _fmt(threshold, binary)
        verdict = str(row.verdict or "–").upper()
        if row.must_pass_failed:
            verdict += f" (must-pass failed: {len(row.must_pass_failed)})"
        name = str(row.suite) + (f" on {row.model}" if row.several_models else "")
        out.append(f"| {cell(name)} | {cell(row.metric)} | "
                   f"{_fmt(row.estimate, binary)} | {ci} | {bound} | {cell(verdict)} |")
    return out


def _comparison_lines(comps: Sequence[Comparison], baseline: str | None) -> list[str]:
    shown = [c for c in comps if c.regressed] + [c for c in comps if not c.regressed and c.scope == "suite"]
    if not shown:
        return []
    out = ["", "### Comparisons", ""]
    for comp in shown[:COMPARISON_ROWS]:
        title = comp.title if comp.models else f"baseline {baseline or ''}".strip()
        mark = "**REGRESSION** " if comp.regressed else ""
        out.append(f"- {mark}{cell(title)}: {cell(comp.line(), 600)}")
    if len(shown) > COMPARISON_ROWS:
        out.append(f"- ... and {len(shown) - COMPARISON_ROWS} more (see the report)")
    return out


def _change_lines(changes: Sequence[Mapping[str, Any]], limit: int) -> list[str]:
    failing = [c for c in changes if c.get("change") == "newly_failing"]
    passing = len(changes) - len(failing)
    if not changes:
        return []
    out = ["", f"### Newly failing cases against the baseline ({len(failing)})"
               + (f", {passing} newly passing" if passing else ""), ""]
    if failing:
        out += ["| suite | metric | case | old | new | new output |", "|---|---|---|---|---|---|"]
        for c in failing[:limit]:
            old, new = c.get("old") or {}, c.get("new") or {}
            out.append(f"| {cell(c.get('suite'))} | {cell(c.get('metric'))} | "
                       f"{cell(c.get('case_id'))} | {cell(old.get('status'))} | "
                       f"{cell(new.get('status'))} | {cell(new.get('output') or '', _OUTPUT_CHARS)} |")
        if len(failing) > limit:
            out.append(f"\n... and {len(failing) - limit} more newly failing cases (all of them: "
                       "the report and the results log)")
    return out


def markdown_summary(rows: Sequence[SuiteRow], comparisons: Iterable[Comparison],
                     changes: Sequence[Mapping[str, Any]], *, exit_status: int | None,
                     notes: Iterable[str] = (), harness_errors: Iterable[str] = (),
                     baseline: str | None = None, report: str | None = None,
                     results: str | None = None, case_rows: int = CASE_ROWS) -> str:
    """The Markdown summary of a run: its suite rows, comparisons, changed cases, exit status
    and the lines that explain it."""
    comps = list(comparisons)
    status = "" if exit_status is None else \
        f" — exit {exit_status} ({_STATUS.get(exit_status, 'pytest status')})"
    out = [f"## pytest-aie{status}", ""]
    out += _suite_table(rows) if rows else ["No eval suite ran."]
    out += _comparison_lines(comps, baseline)
    out += _change_lines(list(changes), case_rows)
    extra = [*harness_errors, *notes]
    if extra:
        out += ["", *(f"- {cell(line, 600)}" for line in extra[:COMPARISON_ROWS])]
        if len(extra) > COMPARISON_ROWS:
            out.append(f"- ... and {len(extra) - COMPARISON_ROWS} more")
    files = [f"{what}: {cell(path, 500)}" for what, path in
             (("HTML report", report), ("results log", results)) if path]
    if files:
        out += ["", " · ".join(files)]
    return "\n".join(out) + "\n"


def append_step_summary(text: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Append ``text`` to the file ``$GITHUB_STEP_SUMMARY`` names, when it is set. Returns
    a warning line when the file cannot be written (never raises: a summary is no reason to
    fail a run), else ``None``."""
    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with Path(target).open("a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        return (f"WARNING pytest-aie: could not append the summary to $GITHUB_STEP_SUMMARY "
                f"({target}): {exc.strerror or exc}")
    return None
