"""A real latency run's report in headless Chromium: its latency section shows the per-request
p50/p90/p99 the terminal printed (and numpy computes from the results log), the budgets with
the terminal's verdicts, and a report rebuilt from the log (``python -m pytest_aie report``)
shows the same."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import numpy as np
import pytest

try:  # `python -m pytest` puts the repo root on sys.path; plain `pytest` puts tests/ there
    from tests.test_latency import ROWS_CONFTEST
    from tests.test_report import chromium, open_report
except ImportError:
    from test_latency import ROWS_CONFTEST
    from test_report import chromium, open_report

__all__ = ["chromium"]  # the module's browser fixture, shared

SUITE = """
    import pytest

    @pytest.mark.dataset("cases.jsonl", max_tokens=16, chat=False)
    @pytest.mark.latency(ttft_p90_ms=60000, e2e_p50_ms=1, warmup=1)
    def test_speed(case, output):
        pass
"""

INI = """
    [pytest]
    aie_engine = scripted
    aie_model = answers.jsonl
    aie_engine_options = token_delay=0.002
    aie_cache = off
"""

MEASURE = {"TTFT": "ttft", "TPOT": "tpot", "ITL": "itl", "e2e": "e2e"}
LOGGED = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "e2e_ms"}


def _terminal_figures(out: str) -> tuple[int, dict[str, list[str]]]:
    """The terminal's ``measured over N requests (ms): TTFT p50 a p90 b p99 c; ...`` line."""
    m = re.search(r"measured over (\d+) requests \(ms\): (.*)", out)
    assert m, out
    figures = {}
    for part in m[2].split("; "):
        label, *rest = part.split()
        figures[MEASURE[label]] = rest[1::2]  # the values after p50, p90, p99
    return int(m[1]), figures


def _report_figures(page: Any) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(
        "#aie-latency tr.latency-row",
        "rs => rs.map(r => [r.dataset.measure, r.querySelector('.p50').textContent, "
        "r.querySelector('.p90').textContent, r.querySelector('.p99').textContent, "
        "r.cells[4].textContent])")
    return {r[0]: r[1:] for r in rows}


def test_a_latency_runs_report_shows_the_percentiles_the_terminal_printed(
        chromium: Any, pytester: pytest.Pytester) -> None:
    # a real run: the scripted engine sleeps 2 ms per word (perf_counter measures), answers
    # of 1 to 12 words, so the figures spread
    n = 12
    pytester.makefile(".jsonl", cases="\n".join(json.dumps({"id": f"c{i}", "prompt": f"q{i}"})
                                                for i in range(n)))
    (pytester.path / "answers.jsonl").write_text("\n".join(
        json.dumps({"prompt": f"q{i}", "answer": " ".join(["w"] * (1 + i))}) for i in range(n)))
    pytester.makepyfile(test_speed=textwrap.dedent(SUITE))
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makeini(textwrap.dedent(INI))
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert result.ret == 1, out  # e2e_p50_ms=1 fails: every request takes at least 2 ms
    requests, terminal = _terminal_figures(out)
    assert requests == n and set(terminal) == {"ttft", "tpot", "itl", "e2e"}

    # independently: numpy on the results log's per-request figures, in ms
    log = pytester.path / "aie-results" / "results.jsonl"
    recs = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("type") == "case"]
    assert len(recs) == n
    for measure, key in LOGGED.items():
        values = [r["details"][key] for r in recs if r["details"][key] is not None]
        want = [f"{p:.1f}" if p >= 1 else f"{p:.3g}" for p in np.percentile(values, [50, 90, 99])]
        assert terminal[measure] == want, measure
    assert min(r["details"]["e2e_ms"] for r in recs) >= 2  # milliseconds: 2 ms sleeps at least

    budgets = dict(re.findall(r"  (\w+_ms): .* -> (PASS|FAIL|INCONCLUSIVE)", out))
    assert budgets["e2e_p50_ms"] == "FAIL"
    estimates = dict(re.findall(r"  (\w+_ms): ([0-9.]+) ", out))

    from pytest_aie.rebuild import main as rebuild

    rebuilt = pytester.path / "rebuilt.html"
    assert rebuild([str(log), "-o", str(rebuilt)]) == 1
    for path in (pytester.path / "aie-results" / "report.html", rebuilt):
        with open_report(chromium, path) as (page, page_log):
            shown = _report_figures(page)
            assert {m: v[:3] for m, v in shown.items()} == terminal, path
            # requests, not records; the one-word answer has no TPOT and no gap
            assert {m: v[3] for m, v in shown.items()} == \
                {"ttft": str(n), "e2e": str(n), "tpot": str(n - 1), "itl": str(n - 1)}
            rows = page.eval_on_selector_all(
                "#aie-latency-budgets tr.budget-row",
                "rs => rs.map(r => [r.querySelector('.budget').textContent, "
                "r.querySelector('.estimate').textContent, "
                "r.querySelector('.verdict').textContent.trim()])")
            assert {b: v.upper() for b, _, v in rows} == budgets, path
            for budget, estimate, _ in rows:  # the terminal's rounding of the same figure
                assert float(estimate) == pytest.approx(float(estimates[budget]), rel=0.006, abs=0.051)
            assert page.locator("#aie-utilization tr.utilization-row").count() == 1
            assert "scripted engine's parameter count is unknown" in page.inner_text("#aie-utilization")
            assert page_log.errors == []
