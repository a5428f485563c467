"""The report's latency section: what was measured per request, the budgets with their
verdicts, and MBU/MFU, from the same figures the terminal prints.

* **Measured per request**: the latency probe's figures (:mod:`pytest_aie.latency.probe`),
  read from each latency case record's ``details`` (the first measurement and its
  ``repeats``), so a report rebuilt from the results log shows them too: TTFT, TPOT, ITL and
  end-to-end p50/p90/p99 in ms, pooled as the budgets' estimates are
  (:func:`pytest_aie.latency.marker.measured_figures`). A generation's own timings are shown only
  when the engine timed that request alone (``batch_size`` 1) and it was not served from the
  cache: a batch's wall time is never shown as a request's latency. Each request counts once,
  however many metrics its case was scored on.
* **Budgets**: each budget of the suite rows (the run's, or the conclusion record's) with its
  estimate, bootstrap interval, limit and verdict.
* **Utilization**: each latency suite's MBU and MFU (or why they are unmeasured).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from pytest_aie.latency.marker import (
    MEASURES,
    SHOWN_PERCENTILES,
    fmt_ms,
    measured_figures,
    samples_of,
)
from pytest_aie.latency.probe import LatencySample
from pytest_aie.report.charts import bins, histogram
from pytest_aie.report.shown import is_number, name, percent
from pytest_aie.results.records import SuiteRow

__all__ = ["MAX_LATENCY_CHARTS", "latency_section"]

#: latency histograms drawn (one per suite, model and measure; the table has them all)
MAX_LATENCY_CHARTS = 12
_WHAT = {"ttft": "time to first token (TTFT)", "tpot": "time per output token (TPOT)",
         "itl": "inter-token latency (ITL)", "e2e": "end to end (e2e)"}
_CHARTED = ("e2e", "ttft")


def _generation_samples(cases: Iterable[Mapping[str, Any]]
                        ) -> dict[tuple[str, str], list[LatencySample]]:
    """Per suite and model, the generations an engine timed on their own (batch of 1, not
    cached), one per request (a case scored on several metrics is one request)."""
    seen: set[tuple[str, str, str]] = set()
    out: dict[tuple[str, str], list[LatencySample]] = defaultdict(list)
    for case in cases:
        t = case.get("timings")
        if not isinstance(t, Mapping) or case.get("cached") or t.get("batch_size") != 1 \
                or str(case.get("metric") or "").startswith("latency."):
            continue
        key = (str(case.get("suite", "")), str(case.get("model") or "default"))
        request = (*key, str(case.get("case_id")))
        if request in seen:
            continue
        seen.add(request)
        ms = {k: 1000 * float(t[k]) for k in ("e2e_s", "ttft_s", "tpot_s") if is_number(t.get(k))}
        if "e2e_s" not in ms:
            continue
        out[key].append(LatencySample(
            ttft_ms=ms.get("ttft_s"), tpot_ms=ms.get("tpot_s"), e2e_ms=ms["e2e_s"],
            output_tokens=None, tokens_per_s=None, method="generation"))
    return out


def _limit(name_: str, b: Mapping[str, Any]) -> str:
    budget = b.get("budget")
    if not is_number(budget):
        return "—"
    if b.get("kind") == "floor" or name_ == "min_output_tokens_per_s":
        return f"≥ {budget:g} tokens/s"
    return f"≤ {budget:g} ms"


def _budget_rows(summary: Sequence[SuiteRow]) -> list[dict[str, Any]]:
    rows = []
    for row in summary:
        budgets = row.budgets
        if not isinstance(budgets, Mapping):
            continue
        for budget, b in budgets.items():
            if not isinstance(b, Mapping):
                continue
            low, high = b.get("low"), b.get("high")
            rows.append({"suite": name(row.suite), "model": name(row.model or "default"),
                         "budget": name(budget), "estimate": fmt_ms(b.get("estimate")),
                         "interval": f"[{fmt_ms(low)}, {fmt_ms(high)}]"
                         if is_number(low) and is_number(high) else "—",
                         "limit": _limit(str(budget), b), "n": b.get("n", ""),
                         "verdict": name(str(b.get("verdict") or "n/a"))})
    return rows


def _utilization_rows(summary: Sequence[SuiteRow]) -> list[dict[str, Any]]:
    from pytest_aie.latency.utilization import summary_line

    rows = []
    for row in summary:
        u = row.utilization
        if not isinstance(u, Mapping):
            continue
        rows.append({"suite": name(row.suite), "model": name(row.model or "default"),
                     "mbu": percent(u.get("mbu")) if is_number(u.get("mbu")) else "unmeasured",
                     "mfu": percent(u.get("mfu")) if is_number(u.get("mfu")) else "unmeasured",
                     "line": name(summary_line(dict(u)))})
    return rows


def latency_section(cases: Iterable[Mapping[str, Any]],
                    summary: Sequence[SuiteRow] | None = None) -> dict[str, Any]:
    """The latency section's display rows: ``rows`` (measured p50/p90/p99 per suite, model and
    measure), ``charts`` (histograms of each request's e2e and TTFT), ``budgets``,
    ``utilization``, and ``shown`` (whether there is anything to show)."""
    cases = list(cases)
    probed: dict[tuple[str, str], list[LatencySample]] = defaultdict(list)
    for case in cases:
        found = samples_of(case)
        if found:
            probed[(str(case.get("suite", "")), str(case.get("model") or "default"))] += found
    rows: list[dict[str, Any]] = []
    charts: list[dict[str, Any]] = []
    for source, groups in (("latency probe", probed), ("generation, one request per call",
                                                         _generation_samples(cases))):
        for (suite, model), samples in groups.items():
            figures = measured_figures(samples)
            for metric in MEASURES:
                f = figures.get(metric)
                if not isinstance(f, dict):
                    continue
                rows.append({"suite": name(suite), "model": name(model), "what": _WHAT[metric],
                             "measure": metric, "source": source, "n": f["n"],
                             **{f"p{q}": fmt_ms(f[f"p{q}"]) for q in SHOWN_PERCENTILES}})
                if metric not in _CHARTED or len(charts) >= MAX_LATENCY_CHARTS:
                    continue
                ms = [v for s in samples if s.error is None for v in s.value(metric)]
                log = min(ms) > 0 and max(ms) / min(ms) > 100  # spread over orders of magnitude
                counts, edges = bins(ms, 12, log=log)
                label = f"{_WHAT[metric]} (ms) of {name(model)} in {name(suite)}, {source}"
                charts.append({"suite": name(suite), "model": name(model), "what": _WHAT[metric],
                               "source": source, "n": len(ms), "log": log,
                               "svg": histogram(counts, edges, unit=" ms", label=label),
                               "bins": [(f"{_ms(edges[i])}–{_ms(edges[i + 1])} ms", c)
                                        for i, c in enumerate(counts)]})
    budgets = _budget_rows(summary or ())
    utilization = _utilization_rows(summary or ())
    return {"rows": rows, "charts": charts, "budgets": budgets, "utilization": utilization,
            "shown": bool(rows or budgets or utilization)}


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
