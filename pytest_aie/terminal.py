"""What pytest-aie writes to the terminal: the failing-case line of a test, the summary
section (suites, comparisons, failing eval cases one line each, where the files are) and the
run's last line when pytest-aie decided the exit status. The hooks that call these live in
``plugin.py``; the suite and comparison lines themselves come from ``summary.py``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_aie.errors import EXIT_HARNESS_ERROR, EXIT_REGRESSION
from pytest_aie.session import AieSession
from pytest_aie.text import oneline, show

__all__ = ["RECORD_ATTR", "failing", "failure_line", "final_words", "write_summary"]

RECORD_ATTR = "aie_cases"  # the case's records (one per eval marker) on its call report
CASE_LINES = 25  # failing eval cases listed one line each (all with -vv)


def failing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] in ("failed", "unmeasured")]


def failure_line(bad: list[dict[str, Any]], reason_chars: int, output_chars: int) -> str:
    """One line for a failing case: each failing metric's reason, then the output."""
    return "; ".join(f"{r['metric']} {r['status']}: {oneline(r['reason'], reason_chars)}"
                     for r in bad) + f"; output: {show(bad[0]['output'], output_chars)}"


def _case_lines(hidden: list[pytest.TestReport], verbosity: int) -> list[tuple[str, dict[str, bool]]]:
    if not hidden:
        return []
    limit = None if verbosity >= 2 else CASE_LINES
    out = [(f"failing eval cases ({len(hidden)}):", {"red": True})]
    for rep in hidden[:limit]:
        records = getattr(rep, RECORD_ATTR)
        out.append((f"FAILED {rep.nodeid} - {failure_line(failing(records) or records, 200, 100)}",
                    {}))
    if limit is not None and len(hidden) > limit:
        out.append((f"... and {len(hidden) - limit} more failing cases (all of them: the report "
                    f"and the results log below; -vv lists them here)", {"red": True}))
    return out


def write_summary(tw: Any, aie: AieSession, hidden: list[pytest.TestReport], verbosity: int,
                  report: str | None) -> None:
    """Per suite: counts, estimate with interval, verdict; sampling figures, flaky cases;
    comparisons with a baseline or between base and candidate; where the files are."""
    from pytest_aie.summary import comparison_lines, suite_lines

    lines = suite_lines(aie.rows)
    lines += comparison_lines(aie.baseline_comparisons, "baseline " + aie.settings.baseline)
    lines += comparison_lines(aie.model_comparisons)
    lines += _case_lines(hidden, verbosity)
    if lines:
        tw.write_sep("=", "pytest-aie summary")
        for text, style in lines:
            tw.write_line(text, **style)
    for note in aie.notes:
        tw.write_line(note, yellow=True)
    for line in aie.harness_errors:
        if line not in aie.shown_errors:
            tw.write_line(line, red=True)
    if aie.log is not None and aie.records:
        tw.write_line(f"pytest-aie results: {aie.log.path}")
    if report:
        tw.write_line(f"pytest-aie report: {report}")
    if aie.saved_baseline:
        tw.write_line(f"pytest-aie baseline saved: {aie.saved_baseline}")


def final_words(session: pytest.Session, aie: AieSession) -> None:
    """When pytest-aie decided the exit status (a failed gate, a regression, a harness
    problem), say so in the run's last lines, in pytest's colour for failure: pytest prints
    ``session.shouldfail`` in red just above its final counts, and the counts go red too
    (otherwise "13 passed, 27 xfailed" would read green on a failed gate)."""
    status = int(session.exitstatus)
    from pytest_aie.gates import row_name

    gates = [row_name(r) for r in aie.rows if r.get("verdict") == "fail" or r.get("must_pass_failed")
             or any(b.get("verdict") == "fail" for b in (r.get("budgets") or {}).values())]
    if status == EXIT_REGRESSION:
        regressed = [c for c in aie.baseline_comparisons + aie.model_comparisons
                     if getattr(c, "regressed", False)]
        where = ", ".join(f"{c.suite} [{c.metric}]" + ("" if c.scope == "suite" else f" ({c.scope})")
                          for c in regressed[:3])
        text = f"pytest-aie: REGRESSION found in {len(regressed)} comparison(s): {where} (exit 11)"
    elif status == EXIT_HARNESS_ERROR and aie.harness_errors:
        n = len(aie.harness_errors)
        text = f"pytest-aie: the harness could not evaluate ({n} problem{'s' if n > 1 else ''} above) (exit 10)"
    elif status == 1 and gates:
        text = (f"pytest-aie: GATE FAILED: {len(gates)} suite gate(s) failed: "
                f"{', '.join(gates[:3])}{' ...' if len(gates) > 3 else ''} (exit 1)")
    else:
        return
    if not session.shouldfail and not session.shouldstop:
        session.shouldfail = text
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hasattr(reporter, "_determine_main_color"):
        reporter._determine_main_color = lambda unknown_type_seen: "red"
