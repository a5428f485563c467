"""The HTML report: loading the results log, rendering safely, and a real headless-browser check."""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_aie.report import html as report
from pytest_aie.report.blob import cases_in, decode
from pytest_aie.report.html import render_html
from pytest_aie.results.log import load_results
from pytest_aie.results.records import ResultsError, ResultsWarning, SuiteRow, basic_summary

try:  # `python -m pytest` puts the repo root on sys.path; plain `pytest` puts tests/ there
    from tests.browser import chromium_or_skip, open_page
except ImportError:
    from browser import chromium_or_skip, open_page

# Each payload sets window.__aie_pwned (or opens a dialog) if it ever runs as HTML/JS.
HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="window.__aie_pwned = 2">',
    "</script><script>window.__aie_pwned = 3</script>",
    '"\'><svg onload="window.__aie_pwned = 4"> & <!-- not a comment',
    "line\u2028separator and </SCRIPT> in caps <b>bold?</b>",
]
SUITES = [
    "suites/test_capitals.py::test_capitals",
    "suites/test_math.py::test_arithmetic",
    'suites/test_odd.py::test_<img src=x onerror="window.__aie_pwned=5">',
]


def make_header(**extra: Any) -> dict[str, Any]:
    header = {
        "type": "run", "format_version": 1, "started_at": "2026-11-27T14:00:00+00:00",
        "pytest_aie": "0.1.0", "python": "3.11.2",
        "engine": {"engine": "hf", "model": "SmolLM2-135M-Instruct <b>q4</b>", "revision": "abc"},
        "git_commit": "abc1234", "seed": 0, "argv": ["pytest", "suites", "--aie-engine", "hf"],
        "versions": {"torch": "2.13.0", "transformers": "5.0.0"},
    }
    header.update(extra)
    return header


def make_case(i: int) -> dict[str, Any]:
    """A deterministic mix: suites in turn, every 9th unmeasured, every 4th failed, hostile text."""
    suite = SUITES[i % len(SUITES)]
    passed: bool | None = None if i % 9 == 0 else (i % 4 != 1)
    hostile = HOSTILE[(i // 10) % len(HOSTILE)] if i % 10 == 3 else None
    return {
        "type": "case", "suite": suite, "case_id": f"case-{i:04d}",
        "nodeid": f"{suite}[case-{i:04d}]", "metric": "exact.match",
        "value": None if passed is None else float(passed),
        "passed": passed,
        "reason": "no answer found" if passed is None else ("matched" if passed else f"expected 'Paris', got {i}"),
        "output": hostile if hostile is not None else f"The answer is {i}.",
        "expected": {"any": ["Paris", i]} if i % 2 else "Paris",
        "prompt": f"Question {i}: what is the capital of France?",
        "tags": ["geo", "hostile"] if hostile else (["geo"] if i % 3 == 0 else ["math"]),
        "engine": "hf", "model": "SmolLM2-135M-Instruct <b>q4</b>", "cached": i % 5 == 0,
        "timings": {"e2e_s": 0.5 + i / 1000, "ttft_s": None, "tpot_s": None, "batch_size": 16},
        "completion_tokens": 12, "source": f"suites/capitals.jsonl:{i + 1}",
    }


def as_rows(summary: list[dict[str, Any]]) -> list[SuiteRow]:
    """Suite rows as the conclusion record holds them, typed as the report reads them."""
    return [SuiteRow.from_json(row) for row in summary]


def make_summary(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = basic_summary(cases)
    for row in summary:
        values = [c["value"] for c in cases if c["suite"] == row["suite"] and c["value"] is not None]
        row["mean_score"] = sum(values) / len(values)
    summary[0].update(verdict="pass", interval=[0.61, 0.83])
    summary[1].update(verdict="inconclusive", interval=[0.4, 0.9])
    return summary


def write_log(path: Path, header: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in [header, *cases]:
            fh.write(json.dumps(record) + "\n")


def blob_of(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="aie-data">(.*?)</script>', html, re.S)
    assert match, "no JSON data block"

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not valid JSON for JSON.parse")

    return json.loads(match.group(1), parse_constant=no_constants)


def table_of(html: str) -> dict[str, Any]:
    """The case table the page's script decompresses (columnar)."""
    return decode(blob_of(html)["table"])


def shown_cases(html: str) -> list[dict[str, Any]]:
    """Each case as the page shows it (the table's columns joined with its drill-down)."""
    shown = cases_in(html)
    assert len(shown) == table_of(html)["n"]
    return [c | {"st": c["status"], "id": c["case_id"]} for c in shown]


# --------------------------------------------------------------------------- load_results


def test_load_results_reads_header_and_cases(tmp_path: Path) -> None:
    cases = [make_case(i) for i in range(5)]
    write_log(tmp_path / "r.jsonl", make_header(), cases)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        header, loaded = load_results(tmp_path / "r.jsonl")
    assert header["engine"]["model"] == "SmolLM2-135M-Instruct <b>q4</b>"
    assert loaded == cases


def test_load_results_skips_truncated_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    cases = [make_case(i) for i in range(4)]
    path = tmp_path / "r.jsonl"
    write_log(path, make_header(), cases)
    with path.open("a", encoding="utf-8") as fh:  # a crash mid-write: half a record, no newline
        fh.write(json.dumps(make_case(4))[:57])
    with pytest.warns(ResultsWarning, match=r"r\.jsonl:6: .*truncated last line"):
        header, loaded = load_results(path)
    assert header["type"] == "run"
    assert [c["case_id"] for c in loaded] == [c["case_id"] for c in cases]


def test_load_results_cut_inside_a_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_log(path, make_header(), [make_case(0)])
    data = json.dumps({"type": "case", "output": "naïve café ☕"}, ensure_ascii=False).encode()
    path.write_bytes(path.read_bytes() + data[: data.index("☕".encode()) + 1])
    with pytest.warns(ResultsWarning, match="truncated"):
        _, loaded = load_results(path)
    assert len(loaded) == 1


def test_load_results_damaged_middle_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(make_header()), json.dumps(make_case(0)), "{not json", "",
             json.dumps(make_case(1)), json.dumps({"type": "future-record"}), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.warns(ResultsWarning, match=r"r\.jsonl:3: skipped a damaged line"):
        _, loaded = load_results(path)
    assert [c["case_id"] for c in loaded] == ["case-0000", "case-0001"]


def test_load_results_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not found"):
        load_results(tmp_path / "missing.jsonl")
    (tmp_path / "headless.jsonl").write_text(json.dumps(make_case(0)) + "\n", encoding="utf-8")
    with pytest.raises(ResultsError, match="no run header") as info:
        load_results(tmp_path / "headless.jsonl")
    assert info.value.fix


# --------------------------------------------------------------------------- rendering


def test_templates_are_a_package_resource() -> None:
    root = importlib.resources.files("pytest_aie.templates")
    for name in ("report.html.j2", "report.css", "report.js"):
        assert root.joinpath(name).is_file(), name


def test_autoescape_shows_hostile_text_as_text(tmp_path: Path) -> None:
    cases = [make_case(i) for i in range(60)]
    path = render_html(make_header(), cases, as_rows(make_summary(cases)), tmp_path / "report.html")
    html = path.read_text(encoding="utf-8")
    # Nothing hostile appears as markup anywhere in the file.
    for raw in ("<script>alert(1)", "<img src=x", "<svg onload", "<b>q4</b>", "<b>bold", "<!-- not"):
        assert raw not in html, raw
    # Server-rendered places (suite names, model name) are HTML-escaped...
    assert "test_&lt;img src=x onerror=&#34;window.__aie_pwned=5&#34;&gt;" in html
    assert "SmolLM2-135M-Instruct &lt;b&gt;q4&lt;/b&gt;" in html
    # ...and exactly two script elements exist: the JSON data and the report script.
    assert len(re.findall(r"<script\b", html, re.I)) == 2
    assert len(re.findall(r"</script", html, re.I)) == 2
    # The data block gives every string back unchanged.
    shown = shown_cases(html)
    assert [c["suite"] for c in shown] == [c["suite"] for c in cases]
    assert [c["output"] for c in shown] == [c["output"] for c in cases]
    assert [c["expected"] for c in shown] == [c["expected"] for c in cases]
    assert set(HOSTILE) <= {c["output"] for c in shown}


def test_csp_allows_exactly_the_inline_script(tmp_path: Path) -> None:
    path = render_html(make_header(), [make_case(1)], None, tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)  # type: ignore[union-attr]
    assert f"sha256-{digest}" in csp and "default-src &#39;none&#39;" in csp
    assert "http://" not in html and "https://" not in html  # no CDN, nothing remote


def test_non_finite_numbers_and_odd_values_still_make_valid_json(tmp_path: Path) -> None:
    case = make_case(2) | {"expected": [float("nan"), float("inf"), {"k": object}], "value": 0.123456}
    html = render_html(make_header(), [case], None, tmp_path / "r.html").read_text(encoding="utf-8")
    shown = shown_cases(html)[0]
    assert shown["expected"][:2] == ["nan", "inf"]
    assert shown["value"] == 0.123456


def test_long_text_is_cut_with_a_note(tmp_path: Path) -> None:
    case = make_case(2) | {"output": "x" * 5000}
    html = render_html(make_header(), [case], None, tmp_path / "r.html", max_text_chars=1000).read_text()
    output = shown_cases(html)[0]["output"]
    assert output.startswith("x" * 1000) and output.endswith("[report cut 4000 more characters]")


def test_summary_is_server_rendered(tmp_path: Path) -> None:
    cases = [make_case(i) for i in range(90)]
    summary = make_summary(cases)
    html = render_html(make_header(), cases, as_rows(summary), tmp_path / "r.html").read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="suite-row".*?</tr>', html, re.S)
    assert len(rows) == len(summary)
    first = rows[0]
    for key in ("n", "passed", "failed", "unmeasured"):
        assert re.search(rf'class="num {key}[^"]*">{summary[0][key]}</td>', first), key
    assert f"{100 * summary[0]['pass_rate']:.1f}%" in first
    assert "61.0% – 83.0%" in first and "verdict-pass" in first


def test_basic_summary_counts() -> None:
    cases = [make_case(i) for i in range(36)]
    by_suite = {row["suite"]: row for row in basic_summary(cases)}
    for suite in SUITES:
        mine = [c for c in cases if c["suite"] == suite]
        row = by_suite[suite]
        assert row["n"] == len(mine)
        assert row["passed"] == sum(c["passed"] is True for c in mine)
        assert row["failed"] == sum(c["passed"] is False for c in mine)
        assert row["unmeasured"] == sum(c["passed"] is None for c in mine)
        assert row["pass_rate"] == pytest.approx(row["passed"] / (row["passed"] + row["failed"]))
    assert basic_summary([{"suite": "s", "metric": "m", "passed": None}])[0]["pass_rate"] is None


def test_cli_renders_from_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "r.jsonl", make_header(), [make_case(i) for i in range(10)])
    assert report.main([str(tmp_path / "r.jsonl")]) == 0
    assert table_of((tmp_path / "r.html").read_text(encoding="utf-8"))["n"] == 10
    assert report.main([str(tmp_path / "nope.jsonl")]) == 10
    assert "not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- statuses, visibility


def scored_case(i: int, **extra: Any) -> dict[str, Any]:
    """A similarity case without a per-case threshold: a value, no pass or fail."""
    return make_case(i) | {"suite": "suites/test_sim.py::test_sim", "metric": "similarity.chrf",
                           "value": 0.5 + i / 100, "passed": None, "status": "scored",
                           "reason": f"chrf {0.5 + i / 100:.2f}"} | extra


def test_scored_cases_are_neither_passes_nor_failures(tmp_path: Path) -> None:
    cases = [scored_case(i) for i in range(8)]
    # the summary a plugin gives may count them differently: the report counts the cases
    summary = [{"suite": "suites/test_sim.py::test_sim", "metric": "similarity.chrf", "n": 8,
                "passed": 8, "failed": 0, "unmeasured": 0, "pass_rate": 1.0, "mean_score": 0.535,
                "binary": False, "verdict": None, "interval": None}]
    html = render_html(make_header(), cases, as_rows(summary), tmp_path / "r.html").read_text(encoding="utf-8")
    assert {c["st"] for c in shown_cases(html)} == {"scored"}
    row = re.search(r'<tr class="suite-row".*?</tr>', html, re.S).group(0)  # type: ignore[union-attr]
    assert re.search(r'class="num passed">0</td>', row) and re.search(r'class="num scored">8</td>', row)
    assert re.search(r'class="num pass-rate">—</td>', row) and "100.0%" not in html
    assert re.search(r'class="num mean-score">0.535</td>', row)
    assert '<span class="badge scored">8 scored</span>' in html and "0 passed" in html
    by_summary = basic_summary(cases)[0]
    assert (by_summary["scored"], by_summary["passed"], by_summary["pass_rate"]) == (8, 0, None)
    assert by_summary["mean_score"] == pytest.approx(sum(c["value"] for c in cases) / 8)


def test_old_records_without_status() -> None:
    old = [{"suite": "s", "metric": "m", "passed": p, "value": v}
           for p, v in ((True, 1.0), (False, 0.0), (None, None))]
    row = basic_summary(old)[0]
    assert (row["passed"], row["failed"], row["scored"], row["unmeasured"]) == (1, 1, 0, 1)
    assert [report.status_of(c) for c in old] == ["passed", "failed", "unmeasured"]


INVISIBLE = "\u202eevil\u202c \u200bzero \x1b[31mred\x1b[0m \ud800 bom\ufeff"
SHOWN = "<U+202E>evil<U+202C> <U+200B>zero <U+001B>[31mred<U+001B>[0m <U+D800> bom<U+FEFF>"


def test_control_and_bidi_characters_are_made_visible(tmp_path: Path) -> None:
    case = make_case(1) | {"output": INVISIBLE + "\nline two\r\nthree\ttab", "prompt": "q\u2066x\u2069",
                           "expected": {"any": ["\u202eParis"]}, "case_id": "id\u202e1",
                           "suite": "suites/t.py::test_\u202ertl", "reason": "got \u202eX"}
    header = make_header(engine={"engine": "hf", "model": "m\u202eodel"}, argv=["-k", "\u202e"])
    html = render_html(header, [case], None, tmp_path / "r.html").read_text(encoding="utf-8")
    for raw in ("\u202e", "\u200b", "\x1b", "\ufeff", "\u2066"):
        assert raw not in html, repr(raw)
    row = shown_cases(html)[0]
    assert row["output"] == SHOWN + "\nline two\r\nthree\ttab"  # newlines and tabs stay
    assert row["prompt"] == "q<U+2066>x<U+2069>" and row["expected"] == {"any": ["<U+202E>Paris"]}
    assert row["id"] == "id<U+202E>1" and row["reason"] == "got <U+202E>X"
    assert table_of(html)["suites"] == ["suites/t.py::test_<U+202E>rtl"]
    assert "m&lt;U+202E&gt;odel" in html  # server-rendered metadata and summary too
    assert "test_&lt;U+202E&gt;rtl" in html


def test_long_expected_and_references_are_cut(tmp_path: Path) -> None:
    cases = [make_case(1) | {"expected": "E" * 5000},
             make_case(2) | {"expected": [f"option {i}" for i in range(2000)]},
             make_case(3) | {"expected": None, "reference_field": "answer", "reference": "R" * 5000}]
    html = render_html(make_header(), cases, None, tmp_path / "r.html", max_text_chars=1000).read_text()
    shown = shown_cases(html)
    assert shown[0]["expected"] == "E" * 1000 + "\n… [report cut 4000 more characters]"
    assert isinstance(shown[1]["expected"], str) and shown[1]["expected"].startswith('[\n  "option 0"')
    assert "more characters]" in shown[1]["expected"] and len(shown[1]["expected"]) < 1100
    assert shown[2]["expected"].startswith("R" * 1000) and len(shown[2]["expected"]) < 1100
    plain = render_html(make_header(), [make_case(i) for i in (1, 2, 3)], None, tmp_path / "p.html").read_text()
    assert len(html) < len(plain) + 8_000  # three values of about 1,000 characters (escaped), not 40,000


def test_expected_shows_the_reference_the_scorer_used(tmp_path: Path) -> None:
    cases = [make_case(1) | {"expected": None, "reference_field": "answer", "reference": "42"},
             make_case(2) | {"expected": None, "references": ["a cat", "the cat"]},
             make_case(4)]
    shown = shown_cases(render_html(make_header(), cases, None, tmp_path / "r.html").read_text())
    assert (shown[0]["expected"], shown[0]["expected_label"]) == ("42", "Expected (field 'answer')")
    assert (shown[1]["expected"], shown[1]["expected_label"]) == (["a cat", "the cat"], "Expected (references)")
    assert shown[2]["expected"] == "Paris" and shown[2]["expected_label"] is None


def test_command_row_has_no_credentials_even_from_an_old_log(tmp_path: Path) -> None:
    header = make_header(argv=["suites", "--aie-base-url", "http://me:hunter2@h/v1?api_key=k3y",
                               "--aie-api-key", "sk-hunter3"],
                         settings={"base_url": "http://me:hunter2@h/v1"})
    html = render_html(header, [make_case(1)], None, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "hunter" not in html and "k3y" not in html
    assert "http://me:***@h/v1?api_key=***" in html


# --------------------------------------------------------------------------- atomic write


def test_atomic_write_fsyncs_then_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(report.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(report.os, "replace",
                        lambda a, b: (calls.append(f"replace {Path(a).parent == Path(b).parent}"),
                                      real_replace(a, b))[1])
    target = tmp_path / "out" / "report.html"
    render_html(make_header(), [make_case(1)], None, target)
    assert calls[:2] == ["fsync", "replace True"]  # file data synced before the rename, same folder
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]


def test_atomic_write_leaves_the_old_report_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")

    def chunks() -> Any:
        yield "<!DOCTYPE html> half of a report"
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        report.write_atomic(target, chunks())
    assert target.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left behind

    def no_replace(a: Any, b: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", no_replace)
    with pytest.raises(OSError, match="disk full"):
        render_html(make_header(), [make_case(1)], None, target)
    assert target.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --------------------------------------------------------------------------- real browser

N_BROWSER_CASES = 437
PAGE = 200


@pytest.fixture(scope="module")
def chromium() -> Any:
    with chromium_or_skip() as browser:
        yield browser


@pytest.fixture(scope="module")
def big_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]:
    cases = [make_case(i) for i in range(N_BROWSER_CASES)]
    summary = make_summary(cases)
    path = render_html(make_header(), cases, as_rows(summary), tmp_path_factory.mktemp("report") / "report.html")
    return path, cases, summary


@contextmanager
def open_report(browser: Any, path: Path) -> Iterator[tuple[Any, Any]]:
    """:func:`open_page`, once the case table is shown (the page decompresses it first)."""
    with open_page(browser, path) as (page, log):
        page.wait_for_selector("body[data-ready]", timeout=30_000)
        yield page, log


def wait_details(page: Any, n: int) -> None:
    """Wait until ``n`` drill-downs are filled in (their chunk decompressed)."""
    page.wait_for_selector(f"tr.detail-row.ready >> nth={n - 1}", timeout=10_000)


def visible_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("tr.case-row", "rows => rows.map(r => r.dataset.caseId)")


def test_browser_summary_table(chromium: Any, big_report: Any) -> None:
    path, cases, summary = big_report
    with open_report(chromium, path) as (page, log):
        heads = page.eval_on_selector_all("#aie-summary thead th", "hs => hs.map(h => h.innerText.trim())")
        rows = [dict(zip(heads, cells)) for cells in page.eval_on_selector_all(
            "#aie-summary tbody tr.suite-row",
            "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")]
        assert len(rows) == len(summary)
        for row, expected in zip(rows, summary):
            assert row["Suite"] == expected["suite"]  # the hostile suite name shows as literal text
            assert row["Metric"] == expected["metric"]
            assert [int(row[k]) for k in ("Cases", "Passed", "Failed", "Unmeasured")] == \
                [expected[k] for k in ("n", "passed", "failed", "unmeasured")]
            assert row["Pass rate"] == f"{100 * expected['pass_rate']:.1f}%"
            assert float(row["Mean score"]) == pytest.approx(expected["mean_score"], rel=1e-2)
            assert row["Verdict"] == (expected["verdict"] or "—")
        assert rows[0]["Interval"] == "61.0% – 83.0%" and rows[2]["Interval"] == "—"
        total = page.inner_text("#aie-summary tfoot .n")
        assert int(total) == len(cases)
        assert "SmolLM2-135M-Instruct <b>q4</b>" in page.inner_text("#run")
        assert log.errors == [] and log.dialogs == []


def test_browser_paging(chromium: Any, big_report: Any) -> None:
    path, cases, _ = big_report
    ids = [c["case_id"] for c in cases]
    with open_report(chromium, path) as (page, log):
        assert visible_ids(page) == ids[:PAGE]
        assert page.inner_text("#aie-page-info") == f"Page 1 of {-(-len(ids) // PAGE)}"
        assert page.is_disabled("#aie-prev")
        page.click("#aie-next")
        assert visible_ids(page) == ids[PAGE:2 * PAGE]
        page.click("#aie-next")
        assert visible_ids(page) == ids[2 * PAGE:]
        assert page.is_disabled("#aie-next")
        page.click("#aie-prev")
        assert visible_ids(page) == ids[PAGE:2 * PAGE]
        assert page.inner_text("#aie-count").startswith(f"Showing {PAGE + 1}–{2 * PAGE} of {len(ids)}")
        assert log.errors == []


def test_browser_filter_and_failures_only(chromium: Any, big_report: Any) -> None:
    path, cases, _ = big_report
    failed = [c["case_id"] for c in cases if c["passed"] is False]
    with open_report(chromium, path) as (page, log):
        page.check("#aie-failures-only")
        shown = visible_ids(page)
        assert shown == failed[:PAGE]
        assert page.eval_on_selector_all("tr.case-row", "rs => rs.every(r => r.classList.contains('fail'))")
        assert f"of {len(failed)} cases" in page.inner_text("#aie-count")

        page.fill("#aie-filter", "test_math")  # failures in one suite
        page.press("#aie-filter", "Enter")
        assert visible_ids(page) == [c["case_id"] for c in cases
                                     if c["passed"] is False and "test_math" in c["suite"]][:PAGE]

        page.uncheck("#aie-failures-only")
        page.fill("#aie-filter", "HOSTILE")  # case-insensitive, matches the tag
        page.press("#aie-filter", "Enter")
        hostile = [c["case_id"] for c in cases if "hostile" in c["tags"]]
        assert visible_ids(page) == hostile and hostile

        page.fill("#aie-filter", "case-0042 geo")  # every term must match
        page.press("#aie-filter", "Enter")
        assert visible_ids(page) == ["case-0042"]

        page.fill("#aie-filter", "no such text anywhere")
        page.press("#aie-filter", "Enter")
        assert visible_ids(page) == []
        assert "No cases match" in page.inner_text("#aie-case-rows")

        page.fill("#aie-filter", "")
        page.press("#aie-filter", "Enter")
        assert len(visible_ids(page)) == PAGE
        assert log.errors == []


def test_browser_hostile_output_is_text_and_never_runs(chromium: Any, big_report: Any) -> None:
    path, cases, _ = big_report
    hostile = [c for c in cases if "hostile" in c["tags"]]
    with open_report(chromium, path) as (page, log):
        page.fill("#aie-filter", "hostile")
        page.press("#aie-filter", "Enter")
        for row in page.query_selector_all("tr.case-row"):
            row.click()  # open every drill-down: the outputs are now in the DOM
        wait_details(page, len(hostile))
        details = page.eval_on_selector_all(
            "tr.detail-row", "rs => rs.map(r => Array.from(r.querySelectorAll('pre')).map(p => p.textContent))")
        assert len(details) == len(hostile)
        for (prompt, output, expected), case in zip(details, hostile):
            assert prompt == case["prompt"]
            assert output == case["output"]  # the payload, as literal characters
            assert json.loads(expected) == case["expected"] if not isinstance(case["expected"], str) \
                else expected == case["expected"]
        page.wait_for_timeout(300)  # give an onerror/onload handler time to fire, if one existed
        assert page.evaluate("typeof window.__aie_pwned") == "undefined"
        images = "#aie-cases img, #aie-cases svg, #aie-summary img"
        assert page.evaluate(f"document.querySelectorAll('{images}').length") == 0
        assert log.dialogs == []
        assert log.errors == []
        assert all(url.startswith("file:") for url in log.requests), log.requests
        page.screenshot(path="/tmp/aie-report-hostile.png", full_page=False)


def test_browser_drill_down_toggles(chromium: Any, big_report: Any) -> None:
    path, cases, _ = big_report
    with open_report(chromium, path) as (page, log):
        first = page.locator("tr.case-row").first
        first.click()
        wait_details(page, 1)
        assert page.locator("tr.detail-row").count() == 1
        facts = page.inner_text("tr.detail-row .facts")
        assert cases[0]["nodeid"] in facts and cases[0]["source"] in facts
        first.click()
        assert page.locator("tr.detail-row").count() == 0
        page.locator("tr.case-row").nth(1).focus()
        page.keyboard.press("Enter")
        assert page.locator("tr.detail-row").count() == 1
        page.screenshot(path="/tmp/aie-report.png", full_page=False)
        assert log.errors == []


def test_browser_scored_and_invisible_characters(chromium: Any, tmp_path: Path) -> None:
    cases = [scored_case(0, output=INVISIBLE), scored_case(1),
             make_case(1) | {"expected": None, "reference_field": "answer", "reference": "42"}]
    path = render_html(make_header(), cases, None, tmp_path / "report.html")
    with open_report(chromium, path) as (page, log):
        badges = page.eval_on_selector_all("tr.case-row .badge", "bs => bs.map(b => b.textContent)")
        assert badges == ["scored", "scored", "fail"]
        heads = page.eval_on_selector_all("#aie-summary thead th", "hs => hs.map(h => h.innerText.trim())")
        cells = page.eval_on_selector_all("#aie-summary tbody tr.suite-row",
                                          "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))")
        scored_row = dict(zip(heads, cells[0]))
        assert (scored_row["Scored"], scored_row["Passed"], scored_row["Pass rate"]) == ("2", "0", "—")
        page.check("#aie-failures-only")  # scored cases are not failures
        assert visible_ids(page) == [cases[2]["case_id"]]
        page.uncheck("#aie-failures-only")
        page.locator("tr.case-row").nth(0).click()
        page.locator("tr.case-row").nth(2).click()
        wait_details(page, 2)
        blocks = page.eval_on_selector_all(
            "tr.detail-row .block",
            "bs => bs.map(b => [b.querySelector('h4').textContent, b.querySelector('pre').textContent])")
        as_dict = dict(blocks[:3])
        assert as_dict["Output"] == SHOWN  # what a reader sees: the markers, not a reordered line
        assert "\u202e" not in page.inner_text("body")
        assert ["Expected (field 'answer')", "42"] in [list(b) for b in blocks[3:]]
        assert log.errors == []


def test_browser_shows_retrieved_passages_and_agent_trajectories_as_text(
        chromium: Any, tmp_path: Path) -> None:
    """A RAG case shows what was retrieved next to the answer (relevant ones marked); an agent
    case its trajectory step by step; hostile text in either stays text."""
    rag = make_case(0) | {
        "output": "Paris", "details": {"relevant": ["eiffel"]},
        "retrieved": [{"id": "eiffel", "score": 0.91, "text": "The Eiffel Tower is in Paris.",
                       "rank": 1},
                      {"id": "nile", "score": 0.2, "text": "<img src=x onerror=alert(1)>",
                       "rank": 2}]}
    agent = make_case(1) | {"output": "391", "trajectory": {
        "task": "What is 17 times 23?", "protocol": "text", "tools": [], "state_changing": [],
        "steps": [
            {"index": 0, "output": '{"tool": "calculate"}', "tool": "calculate",
             "arguments": {"expression": "17*23"}, "result": "391.0", "error": None,
             "refused": False, "prompt_tokens": 120, "completion_tokens": 14, "seconds": 0.5},
            {"index": 1, "output": '{"tool": "send_email"}', "tool": "send_email",
             "arguments": {"to": "a@b"}, "result": None, "error": "refused", "refused": True,
             "prompt_tokens": 150, "completion_tokens": 12, "seconds": 0.4},
            {"index": 2, "output": '{"answer": "391"}', "tool": None, "arguments": None,
             "result": None, "error": None, "refused": False, "prompt_tokens": 170,
             "completion_tokens": 8, "seconds": 0.3}],
        "answer": "391", "stopped": "answer", "error": None,
        "prompt_tokens": 440, "completion_tokens": 34, "seconds": 1.2}}
    path = render_html(make_header(), [rag, agent], None, tmp_path / "report.html")
    with open_report(chromium, path) as (page, log):
        page.locator("tr.case-row").nth(0).click()
        page.locator("tr.case-row").nth(1).click()
        wait_details(page, 2)
        blocks = dict(page.eval_on_selector_all(
            "tr.detail-row .block",
            "bs => bs.map(b => [b.querySelector('h4').textContent, b.querySelector('pre').textContent])"))
        passages = blocks["Retrieved passages (best first)"]
        assert passages.splitlines() == [
            "1. eiffel (0.910) [relevant]: The Eiffel Tower is in Paris.",
            "2. nile (0.200): <img src=x onerror=alert(1)>"]
        steps = blocks["Agent trajectory, step by step"].splitlines()
        assert steps[0].startswith("task: What is 17 times 23?")
        assert "  call calculate({\"expression\": \"17*23\"})" in steps
        assert "  result: 391.0" in steps
        assert "  REFUSED: the tool changes state and this is an eval run" in steps
        assert steps[-1] == "answer: 391"
        assert page.locator("img").count() == 0
        assert log.errors == []
