"""What pytest-aie writes to the terminal: the failing-case line of a test, the summary
section (suites, comparisons, failing eval cases one line each, where the files are) and the
run's last line when pytest-aie decided the exit status. The hooks that call these live in
``plugin.py``; the suite and comparison lines themselves come from ``summary.py``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_aie._util.text import oneline, show
from pytest_aie.errors import EXIT_HARNESS_ERROR, EXIT_REGRESSION
from pytest_aie.results.records import SuiteRow
from pytest_aie.session import AieSession

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
    from pytest_aie.report.summary import comparison_lines, suite_lines

    lines = suite_lines(aie.suite_rows)
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


def gate_failures(rows: list[SuiteRow], policy: Any) -> list[tuple[str, list[str]]]:
    """Every suite row that failed the run (exit 1), with what failed it, as
    ``(row name, [what, ...])``: a failed gate (each failed ranking expectation named), an
    inconclusive verdict or latency budget counted as a failure by ``--aie-inconclusive fail``,
    failed must-pass cases, a failed latency budget. The same rules as
    :func:`pytest_aie.gates.conclusion.exit_status`."""
    from pytest_aie.gates.thresholds import row_name

    as_fail = getattr(policy, "inconclusive", None) == "fail"
    out: list[tuple[str, list[str]]] = []
    for row in rows:
        what: list[str] = []
        if row.verdict == "fail":  # a ranking row names its failed expectations
            named = [f"expect {text} failed" for text in row.failed_expectations or ()]
            what += named or ["below its threshold"]
        elif row.verdict == "inconclusive" and as_fail:
            expects = (row.elo or {}).get("expect") or ()
            named = [f"expect {e.get('expect')} inconclusive" for e in expects
                     if isinstance(e, dict) and e.get("verdict") == "inconclusive"]
            what.append(("; ".join(named) or "inconclusive")
                        + ", counted as a failure by --aie-inconclusive fail")
        if row.must_pass_failed:
            ids = [str(i) for i in row.must_pass_failed]
            what.append(f"must-pass case{'s' if len(ids) > 1 else ''} failed: "
                        f"{', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
        for budget, b in (row.budgets or {}).items():
            if not isinstance(b, dict):
                continue
            if b.get("verdict") == "fail":
                what.append(f"latency budget {budget} failed")
            elif b.get("verdict") == "inconclusive" and as_fail:
                what.append(f"latency budget {budget} inconclusive, counted as a failure by "
                            "--aie-inconclusive fail")
        if what:
            out.append((row_name(row), what))
    return out


def closing_line(aie: AieSession, status: int) -> str | None:
    """The run's red closing line when pytest-aie decided a non-zero ``status`` (or its gates
    failed on top of pytest's own failures), naming every failed item; None when it has
    nothing to add to pytest's own last line."""
    failed = gate_failures(aie.suite_rows, aie.policy)
    gates = (f"GATE FAILED: {len(failed)} suite gate(s) failed: "
             + ", ".join(f"{name} ({'; '.join(what)})" for name, what in failed)) if failed else ""
    if status == EXIT_REGRESSION:
        regressed = [c for c in aie.baseline_comparisons + aie.model_comparisons
                     if getattr(c, "regressed", False)]
        where = ", ".join(f"{c.suite} [{c.metric}]" + ("" if c.scope == "suite" else f" ({c.scope})")
                          for c in regressed)
        text = f"REGRESSION found in {len(regressed)} comparison(s): {where}"
        return f"pytest-aie: {text}{'; also ' + gates if gates else ''} (exit 11)"
    if status == EXIT_HARNESS_ERROR:
        n = len(aie.harness_errors)
        if not n:  # a pytest.exit(..., 10) of pytest-aie's: its own red line names the problem
            return None
        return (f"pytest-aie: the harness could not evaluate ({n} problem{'s' if n > 1 else ''} above)"
                f"{'; also ' + gates if gates else ''} (exit 10)")
    if status == 1 and gates:
        return f"pytest-aie: {gates} (exit 1)"
    if status != 0 and status != aie.pytest_status:  # decided here, by a rule named nowhere above
        why = "; ".join(aie.notes) or "see the summary above"
        return f"pytest-aie: the run fails with exit {status}: {why}"
    return None


def final_words(session: pytest.Session, aie: AieSession) -> None:
    """When pytest-aie decided the exit status (a failed gate, an inconclusive verdict counted
    as a failure, a regression, a harness problem), say so in the run's last lines, in pytest's
    colour for failure, naming every failed item: pytest prints ``session.shouldfail`` in red
    just above its final counts, and the counts go red too (otherwise "13 passed, 27 xfailed"
    would read green on a failed gate)."""
    text = closing_line(aie, int(session.exitstatus))
    if text is None:
        return
    if not session.shouldfail and not session.shouldstop:
        session.shouldfail = text
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hasattr(reporter, "_determine_main_color"):
        reporter._determine_main_color = lambda unknown_type_seen: "red"
