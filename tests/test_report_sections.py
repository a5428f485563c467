"""The report's server-rendered sections: run header, suite table with thresholds and changes,
comparisons, baseline diff, per-tag breakdown, score and latency histograms, Elo leaderboard;
and the compact case data (size per case, text stored once)."""

from __future__ import annotations

import html as htmllib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_aie.gates.comparisons import Comparison
from pytest_aie.gates.thresholds import evaluate_suites
from pytest_aie.report import sections
from pytest_aie.report.blob import CHUNK, cases_in, decode
from pytest_aie.report.html import render_html
from pytest_aie.results.records import SuiteRow

ROOT = Path(__file__).resolve().parent.parent


def synthetic_run(n: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The bench's realistic synthetic run (benchmarks/report_scale.py)."""
    spec = importlib.util.spec_from_file_location("report_scale", ROOT / "benchmarks" / "report_scale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_run(n, seed)  # type: ignore[no-any-return]


def case(i: int, **extra: Any) -> dict[str, Any]:
    passed = i % 3 != 0
    return {"type": "case", "suite": "suites/test_qa.py::test_qa", "case_id": f"c{i}",
            "nodeid": f"suites/test_qa.py::test_qa[c{i}]", "metric": "exact.match", "model": "default",
            "model_id": "m", "status": "passed" if passed else "failed", "value": float(passed),
            "passed": passed, "binary": True, "reason": "ok" if passed else "wrong", "output": f"out {i}",
            "expected": "x", "prompt": f"q {i}", "tags": ["geo"] if i % 2 else ["math", "geo"],
            "engine": "scripted", "timings": {"e2e_s": 0.1 * (i + 1), "ttft_s": 0.01 * (i + 1)},
            "cached": False} | extra


HEADER = {"type": "run", "format_version": 2, "started_at": "2026-11-28T14:00:00+00:00",
          "engine": {"engine": "scripted", "model": "m"}}


def rows_of(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, table_id
    return [[" ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)]


def test_run_header_shows_exit_status_and_notes(tmp_path: Path) -> None:
    html = render_html(HEADER, [case(1)], None, tmp_path / "r.html", exit_status=11,
                       notes=["regression: <b>suite</b> dropped", "second note"]).read_text()
    assert 'id="aie-exit">exit status 11<' in html
    assert "<li>regression: &lt;b&gt;suite&lt;/b&gt; dropped</li><li>second note</li>" in html
    plain = render_html(HEADER, [case(1)], None, tmp_path / "p.html").read_text()
    assert "aie-exit" not in plain and "aie-notes" not in plain  # the report renders without them


def test_suite_row_draws_the_interval_against_the_threshold_and_shows_the_change(tmp_path: Path) -> None:
    cases = [case(i) for i in range(30)] + [case(i, model="candidate") for i in range(30)]
    summary = evaluate_suites(cases)
    for row in summary:
        row.threshold, row.verdict, row.interval = 0.6, "pass", [0.5, 0.8]
    baseline = Comparison("suites/test_qa.py::test_qa", "exact.match", "suite", 30, 0, 0,
                          {"delta": -0.125, "low": -0.2, "high": -0.05}, True, False,
                          newly_failing=["c1"], p_value=0.004, p_adjusted=0.012, confirmatory=True,
                          family_size=3, model="default")
    between = Comparison("suites/test_qa.py::test_qa", "exact.match", "suite", 30, 0, 0,
                         {"delta": 0.031}, False, False, p_value=0.4, models=("default", "candidate"))
    tag = Comparison("suites/test_qa.py::test_qa", "exact.match", "tag:math", 15, 0, 0,
                     {"delta": 0.0}, False, False, model="default")
    html = render_html(HEADER, cases, summary, tmp_path / "r.html",
                       comparisons=[baseline, between, tag]).read_text()
    rows = re.findall(r'<tr class="suite-row".*?</tr>', html, re.S)
    default, candidate = (r for r in rows if "· default" in r), (r for r in rows if "· candidate" in r)
    default_row, candidate_row = next(default), next(candidate)
    assert "≥ 60.0%" in default_row and "50.0% – 80.0%" in default_row
    bar = re.search(r"<svg class=\"bar\".*?</svg>", default_row, re.S).group(0)  # type: ignore[union-attr]
    assert "<title>estimate 66.7%, interval 50.0% – 80.0%, threshold ≥ 60.0%</title>" in bar
    # the threshold line sits at 60% of the axis (4 + 0.6 * 132), the interval from 50% to 80%
    assert 'x1="83.2"' in bar and 'x="70.0"' in bar and 'width="39.6"' in bar
    assert "-12.5 pt" in default_row and "vs baseline, p=0.012" in default_row and "regressed" in default_row
    assert "+3.1 pt" in candidate_row and "vs default" in candidate_row
    assert "no significant change" in candidate_row
    comparisons = rows_of(html, "aie-comparisons")
    assert [r[2] for r in comparisons] == ["suite", "suite", "tag:math"]
    assert comparisons[0][3] == "baseline (default)" and comparisons[1][3] == "candidate vs default"
    assert comparisons[0][4:6] == ["-12.5 pt", "[-20.0 pt, -5.0 pt]"]
    assert comparisons[0][10] == "1"  # newly failing


def test_baseline_diff_lists_changed_cases_old_and_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changes = [{"suite": "s", "metric": "exact.match", "model": "default", "case_id": f"c{i}",
                "change": "newly_failing" if i % 2 else "newly_passing",
                "old": {"status": "passed" if i % 2 else "failed", "value": float(i % 2),
                        "output": "<img src=x onerror=alert(1)>" if i == 1 else f"old {i}"},
                "new": {"status": "failed" if i % 2 else "passed", "value": float(not i % 2),
                        "output": None if i == 3 else f"new {i}"}} for i in range(6)]
    html = render_html(HEADER, [case(1)], None, tmp_path / "r.html", changes=changes).read_text()
    failing = rows_of(html, "aie-newly-failing")
    passing = rows_of(html, "aie-newly-passing")
    assert [r[0].split()[0] for r in failing] == ["c1", "c3", "c5"]
    assert [r[0].split()[0] for r in passing] == ["c0", "c2", "c4"]
    assert failing[0][1].startswith("passed score 1") and "<img src=x onerror=alert(1)>" in failing[0][1]
    assert "<img src=x" not in html  # escaped, never markup
    assert failing[1][2].endswith("(output not kept)")
    monkeypatch.setattr(sections, "MAX_CHANGES", 2)
    html = render_html(HEADER, [case(1)], None, tmp_path / "r.html", changes=changes).read_text()
    assert len(rows_of(html, "aie-newly-failing")) == 2
    assert "2 more changed cases are not listed here" in html
    html = render_html(HEADER, [case(1)], None, tmp_path / "r.html", changes=[]).read_text()
    assert "No case changed status against the baseline." in html


def test_tag_breakdown_counts_each_tag_per_suite(tmp_path: Path) -> None:
    cases = [case(i) for i in range(12)]
    html = render_html(HEADER, cases, None, tmp_path / "r.html").read_text()
    rows = {r[2]: r for r in rows_of(html, "aie-tags")}
    for tag in ("geo", "math"):
        mine = [c for c in cases if tag in c["tags"]]
        passed = sum(c["passed"] for c in mine)
        assert rows[tag][3:7] == [str(len(mine)), str(passed), str(len(mine) - passed),
                                  f"{100 * passed / len(mine):.1f}%"]


def test_tag_table_keeps_the_most_frequent_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [case(i, tags=[f"unique-{i}", "common"]) for i in range(10)]
    monkeypatch.setattr(sections, "MAX_TAG_ROWS", 4)
    html = render_html(HEADER, cases, None, tmp_path / "r.html").read_text()
    tags = [r[2] for r in rows_of(html, "aie-tags")]
    assert len(tags) == 4 and "common" in tags
    assert "7 rarer tag rows are not listed" in html


def test_score_histograms_have_their_numbers(tmp_path: Path) -> None:
    values = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0]
    cases = [case(i, metric="similarity.chrf", value=v, passed=None, status="scored", binary=False)
             for i, v in enumerate(values)] + [case(i) for i in range(10)]
    html = render_html(HEADER, cases, None, tmp_path / "r.html").read_text()
    figures = re.findall(r'<figure class="chart-box score-hist">.*?</figure>', html, re.S)
    assert len(figures) == 1 and "similarity.chrf" in figures[0]  # a 0/1 metric has no histogram
    bins = [(htmllib.unescape(a), int(b)) for a, b in
            re.findall(r"<tr><td>([^<]*)</td><td class=\"num\">(\d+)</td></tr>", figures[0])]
    assert bins == [("0–0.1", 1), ("0.1–0.2", 2), ("0.2–0.3", 0), ("0.3–0.4", 0), ("0.4–0.5", 0),
                    ("0.5–0.6", 1), ("0.6–0.7", 0), ("0.7–0.8", 0), ("0.8–0.9", 0), ("0.9–1", 2)]
    titles = re.findall(r"<rect [^>]*class=\"bin\"><title>([^<]*)</title>", figures[0])
    assert titles[1] == "0.1–0.2: 2" and len(titles) == 10


def _probed(i: int, ttft: float, e2e: float, tokens: int = 10, **extra: Any) -> dict[str, Any]:
    """A latency case record as the latency scorer writes it: the probe's figures in details."""
    gap = (e2e - ttft) / (tokens - 1)
    details = {"ttft_ms": ttft, "tpot_ms": gap, "e2e_ms": e2e, "output_tokens": tokens,
               "tokens_per_s": tokens / (e2e / 1000), "itl_ms": [gap] * (tokens - 1),
               "method": "stream", "error": None, "index": i, "concurrency": 1}
    return case(i, metric="latency.e2e_ms", value=e2e, passed=None, status="scored", binary=False,
                higher_is_better=False, details=details,
                timings={"e2e_s": 25.5, "batch_size": 40}) | extra


def test_latency_section_shows_each_requests_probe_figures_not_the_batch_wall_time(
        tmp_path: Path) -> None:
    # 40 requests, each scored on two metrics, generated in one batch of 40 that took 25.5 s:
    # the old section showed 25500 ms for every request and counted 80 "requests"
    ttft = [10.0 + i for i in range(40)]
    e2e = [100.0 + 10 * i for i in range(40)]
    cases = [case(i, timings={"e2e_s": 25.5, "batch_size": 40}) for i in range(40)]
    cases += [_probed(i, ttft[i], e2e[i]) for i in range(40)]
    html = render_html(HEADER, cases, None, tmp_path / "r.html").read_text()
    rows = {r[2]: r for r in rows_of(html, "aie-latency")}
    assert set(rows) == {"time to first token (TTFT)", "time per output token (TPOT)",
                         "inter-token latency (ITL)", "end to end (e2e)"}
    tpot = [(b - a) / 9 for a, b in zip(ttft, e2e)]
    for what, values, n in (("time to first token (TTFT)", ttft, 40), ("end to end (e2e)", e2e, 40),
                            ("time per output token (TPOT)", tpot, 40)):
        assert rows[what][3:5] == ["latency probe", str(n)]
        assert rows[what][5:] == [f"{p:.1f}" for p in np.percentile(values, [50, 90, 99])], what
    # by hand, linear interpolation: 100 + 10 x q x 39
    assert rows["end to end (e2e)"][5:] == ["295.0", "451.0", "486.1"]
    # ITL pools the 9 gaps of each request (each request's TPOT here, 9 times over)
    assert rows["inter-token latency (ITL)"][4:] == \
        ["40"] + [f"{p:.1f}" for p in np.percentile(np.repeat(tpot, 9), [50, 90, 99])]
    assert "25500" not in html and "25.5 s" not in html
    assert len(re.findall(r'<figure class="chart-box latency-hist">', html)) == 2


def test_latency_section_counts_repeats_and_leaves_batches_and_cache_out(tmp_path: Path) -> None:
    # requests=4 over two cases: the first case's record carries two repeats
    first = _probed(0, 10.0, 100.0)
    first["details"]["repeats"] = [dict(first["details"], ttft_ms=30.0, e2e_ms=300.0, index=2),
                                   dict(first["details"], ttft_ms=40.0, e2e_ms=400.0, index=3)]
    cases = [first, _probed(1, 20.0, 200.0)]
    # generations an engine timed alone (batch of 1) count once per request, cached ones never
    alone = {"e2e_s": 0.5, "ttft_s": 0.05, "batch_size": 1}
    cases += [case(i, suite="s2", metric=m, timings=alone) for i in range(3)
              for m in ("exact.match", "similarity.chrf")]
    cases += [case(9, suite="s2", timings={"e2e_s": 50.0, "batch_size": 1}, cached=True)]
    html = render_html(HEADER, cases, None, tmp_path / "r.html").read_text()
    rows = {(r[0], r[2]): r for r in rows_of(html, "aie-latency")}
    probe = rows[("suites/test_qa.py::test_qa", "time to first token (TTFT)")]
    assert probe[4] == "4" and probe[5] == f"{np.percentile([10, 20, 30, 40], 50):.1f}"
    gen = rows[("s2", "end to end (e2e)")]
    assert gen[3:] == ["generation, one request per call", "3", "500.0", "500.0", "500.0"]
    assert rows[("s2", "time to first token (TTFT)")][5] == "50.0"


def test_latency_section_shows_the_budgets_verdicts_and_mbu(tmp_path: Path) -> None:
    cases = [_probed(i, 10.0 + i, 100.0 + i) for i in range(5)]
    budgets = {"ttft_p90_ms": {"estimate": 13.6, "low": 12.0, "high": 14.0, "budget": 20.0,
                               "verdict": "pass", "n": 5, "kind": "ceiling"},
               "e2e_p50_ms": {"estimate": 102.0, "low": 100.0, "high": 104.0, "budget": 50.0,
                              "verdict": "fail", "n": 5, "kind": "ceiling"},
               "min_output_tokens_per_s": {"estimate": 98.0, "low": 96.0, "high": 100.0,
                                           "budget": 20.0, "verdict": "pass", "n": 5,
                                           "kind": "floor"}}
    util = {"mbu": 0.3268, "mfu": None, "mfu_reason": "pass --aie-cpu-peak-gflops",
            "decode_tokens_per_s": 242.1, "tpot_ms_median": 4.13, "params": 135_000_000,
            "bytes_per_param": 4.0, "dtype": "float32", "accelerator": "cpu",
            "peak_bandwidth": 400e9, "peak_flops": None}
    summary = [SuiteRow("suites/test_qa.py::test_qa", "latency.e2e_ms", model="default",
                        binary=False, budgets=budgets, utilization=util)]
    html = render_html(HEADER, cases, summary, tmp_path / "r.html").read_text()
    rows = {r[2]: r for r in rows_of(html, "aie-latency-budgets")}
    assert rows["ttft_p90_ms"][3:] == ["13.6", "[12.0, 14.0]", "≤ 20 ms", "5", "pass"]
    assert rows["e2e_p50_ms"][3:] == ["102.0", "[100.0, 104.0]", "≤ 50 ms", "5", "fail"]
    assert rows["min_output_tokens_per_s"][5] == "≥ 20 tokens/s"
    (mbu,) = rows_of(html, "aie-utilization")
    assert mbu[2:4] == ["32.7%", "unmeasured"] and "135M params x 4 bytes (float32)" in mbu[4]


ELO = {"battles": 120, "ranking": [
    {"model": "big", "rating": 1080.4, "low": 1040.0, "high": 1120.0, "battles": 80},
    {"model": "mid", "rating": 1000.0, "low": 960.0, "high": 1040.0, "battles": 80},
    {"model": "<small>", "rating": 919.6, "low": None, "high": None, "battles": 80}],
    "online": {"ratings": {"big": 1070.2, "mid": 1001.0, "<small>": 928.8}},
    "win_matrix": [{"model": a, "opponent": b, "wins": w, "losses": 40 - w - 2, "ties": 2,
                    "win_rate": (w + 1) / 40}
                   for a, b, w in (("big", "mid", 25), ("mid", "big", 13), ("big", "<small>", 30),
                                   ("<small>", "big", 8), ("mid", "<small>", 24), ("<small>", "mid", 14))],
    "expect": [{"expect": "big > mid", "verdict": "pass"}]}


def test_elo_leaderboard_and_win_rate_matrix(tmp_path: Path) -> None:
    summary = [SuiteRow("suites/test_arena.py::test_arena", "elo", model="default", n=0,
                        verdict="pass", elo=ELO)]
    html = render_html(HEADER, [case(1)], summary, tmp_path / "r.html").read_text()
    board = re.search(r'<div class="elo-board">.*?</div>\s*</section>', html, re.S).group(0)  # type: ignore[union-attr]
    ranking = [r for r in rows_of(board.replace("<table class=\"data ranking\">", '<table id="rk">'), "rk")]
    assert ranking == [["1", "big", "1080", "[1040, 1120]", "80", "1070"],
                       ["2", "mid", "1000", "[960, 1040]", "80", "1001"],
                       ["3", "<small>", "920", "—", "80", "929"]]
    svg = re.search(r'<svg class="whiskers".*?</svg>', board, re.S).group(0)  # type: ignore[union-attr]
    assert "<title>big: 1080 [1040, 1120]</title>" in svg and "&lt;small&gt;" in svg
    assert svg.count('class="whisker"') == 6  # two models with an interval: a line and two caps
    cells = re.findall(r'<td class="num win"[^>]*>([^<]*)<span class="muted">([^<]*)</span>', board)
    assert [(a.strip(), b) for a, b in cells][:2] == [("65.0%", "25-13-2"), ("77.5%", "30-8-2")]
    assert "expect big &gt; mid" in board


def test_a_case_on_two_metrics_stores_its_text_once(tmp_path: Path) -> None:
    long_output = "A long answer about rivers and cities. " * 20
    one = [case(1, output=long_output)]
    two = one + [case(1, output=long_output, metric="similarity.chrf")]
    size_one = len(json.dumps(decode(_detail_chunks(render_html(HEADER, one, None, tmp_path / "a.html"))[0])))
    size_two = len(json.dumps(decode(_detail_chunks(render_html(HEADER, two, None, tmp_path / "b.html"))[0])))
    assert size_one > len(long_output) and size_two < size_one + 300


def _detail_chunks(path: Path) -> list[str]:
    data = re.search(r'id="aie-data">(.*?)</script>', path.read_text(), re.S).group(1)  # type: ignore[union-attr]
    return json.loads(data)["detail"]


def test_realistic_cases_cost_a_few_hundred_bytes_each(tmp_path: Path) -> None:
    """The scale target (100,000 cases in at most 30 MB) as a per-case budget: 5,000 realistic
    cases, outputs of a few hundred characters each, at most 300 bytes per case in the file."""
    header, cases = synthetic_run(CHUNK * 10)
    path = render_html(header, cases, None, tmp_path / "r.html")
    assert path.stat().st_size < 300 * len(cases)
    assert sum(len(c["output"]) for c in cases) > 250 * len(cases)  # the outputs are not tiny
    shown = cases_in(path.read_text())
    assert [c["output"] for c in shown] == [c["output"] for c in cases]  # all of it, uncut
    assert [c["case_id"] for c in shown] == [c["case_id"] for c in cases]
