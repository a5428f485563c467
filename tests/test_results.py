"""The results log and the run's output files: any text a model returns is stored, the previous
log is kept, concurrent runs are refused, credentials never reach a file, and unwritable output
paths stop the run with one line before any generation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from scripted_suite import eval_test, write_scripted_suite

from pytest_aie._util.redact import scrub, scrub_argv, scrub_text
from pytest_aie.errors import EXIT_HARNESS_ERROR, UsageError
from pytest_aie.results.log import (
    MAX_FIELD_CHARS,
    ResultsLog,
    check_writable,
    load_results,
    run_header,
)

CASES = [
    {"id": "a", "prompt": "p1", "expected": "x"},
    {"id": "b", "prompt": "p2", "expected": "y"},
    {"id": "c", "prompt": "p3", "expected": "z"},
]


def header(**extra: Any) -> dict[str, Any]:
    return {"type": "run", "format_version": 1, "argv": ["pytest"], **extra}


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "case", "suite": "s", "case_id": f"c{i}", "metric": "exact.match",
            "passed": True, "value": 1.0, "output": f"out {i}", **extra}


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def blob_of(html: str) -> dict[str, Any]:
    from pytest_aie.report.blob import cases_in  # the report's case data is packed

    return {"cases": cases_in(html)}


# --------------------------------------------------------------------------- any text is stored


def test_lone_surrogate_is_written_and_read_back_exactly(tmp_path: Path) -> None:
    log = ResultsLog(tmp_path / "r.jsonl", header(argv=["pytest", "caf\udce9"]))
    texts = ["\ud800", "a\udfffb", "\ud83d\ude00 pair as two code points", "nul \x00 and \u202e"]
    for i, text in enumerate(texts):
        log.append(record(i, output=text, expected={"k": text}))
    log.append(record(9))
    log.close()
    head, cases = load_results(tmp_path / "r.jsonl")
    assert head["argv"] == ["pytest", "caf\udce9"]
    assert [c["output"] for c in cases[:3]] == ["\ud800", "a\udfffb", "\U0001f600 pair as two code points"]
    assert cases[3]["output"] == "nul \x00 and \u202e"
    assert cases[0]["expected"] == {"k": "\ud800"}
    assert len(cases) == 5  # the records after it are kept


def test_lone_surrogate_from_the_model_does_not_lose_the_run(pytester: pytest.Pytester) -> None:
    """Scripted answers are JSON, so they can carry a lone surrogate as a model server can."""
    write_scripted_suite(pytester, CASES, {"p1": "\ud800", "p2": "y", "p3": "\u202eevil\udfff"},
                         eval_test("exact()"))
    args = ["--aie-cache", "on", "--aie-cache-dir", str(pytester.path / "cache")]
    for attempt in range(2):  # the second run reads the cached surrogate back
        result = pytester.runpytest(*args)
        assert result.ret == 1, result.stdout.str()
        result.assert_outcomes(passed=1, failed=2)
        _, cases = load_results(pytester.path / "aie-results" / "results.jsonl")
        assert [c["output"] for c in cases] == ["\ud800", "y", "\u202eevil\udfff"]
        assert [c["cached"] for c in cases] == [attempt == 1] * 3
        html = (pytester.path / "aie-results" / "report.html").read_text(encoding="utf-8")
        outputs = [c["output"] for c in blob_of(html)["cases"]]
        assert outputs == ["<U+D800>", "y", "<U+202E>evil<U+DFFF>"]
        assert "\u202e" not in html


# --------------------------------------------------------------------------- rotation and lock


def test_previous_logs_are_rotated_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    for run in range(5):
        log = ResultsLog(path, header(run=run))
        log.claim()
        log.append(record(run))
        log.close()
    assert log_lines(path)[0]["run"] == 4
    kept = {p.name: log_lines(p)[0]["run"] for p in tmp_path.glob("results.*.jsonl")}
    assert kept == {"results.1.jsonl": 3, "results.2.jsonl": 2, "results.3.jsonl": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "results.1.jsonl", "results.2.jsonl", "results.3.jsonl", "results.jsonl"]  # no lock left


def test_a_run_that_logs_nothing_keeps_the_previous_log_and_leaves_no_folder(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    log = ResultsLog(path, header())
    log.claim()
    assert path.parent.is_dir()
    log.close()
    assert not path.parent.exists()  # created for the lock only, and removed again
    path.parent.mkdir()
    path.write_text("previous\n")
    log = ResultsLog(path, header())
    log.claim()
    log.close()
    assert path.read_text() == "previous\n" and not path.with_name("results.1.jsonl").exists()


def test_second_writer_of_the_same_log_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    first = ResultsLog(path, header(argv=["pytest", "suites", "--aie-base-url", "http://u:pw@h/v1"]))
    first.claim()
    first.append(record(0))
    second = ResultsLog(path, header())
    with pytest.raises(UsageError) as info:
        second.claim()
    message = info.value.line()
    assert "\n" not in message
    assert f"pid {os.getpid()}" in message and "pytest suites" in message
    assert "pw" not in message  # the other run's command line is scrubbed too
    assert "--aie-results" in (info.value.fix or "")
    first.append(record(1))
    first.close()
    assert [r.get("case_id") for r in log_lines(path)] == [None, "c0", "c1"]  # untouched
    second.claim()  # free again once the first run is done
    second.close()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_concurrent_run_stops_with_one_line_before_generating(pytester: pytest.Pytester,
                                                               xdist: list[str]) -> None:
    write_scripted_suite(pytester, CASES, {"p1": "x", "p2": "y", "p3": "z"}, eval_test("exact()"))
    holder = ResultsLog(pytester.path / "aie-results" / "results.jsonl", header(argv=["pytest", "-k", "other"]))
    holder.claim()
    try:
        result = pytester.runpytest_subprocess(*xdist) if xdist else pytester.runpytest()
    finally:
        holder.close()
    assert result.ret == EXIT_HARNESS_ERROR
    text = result.stdout.str() + result.stderr.str()
    lines = [line for line in text.splitlines() if "pytest-aie:" in line]
    assert len(lines) == 1 and "in use by another pytest-aie run" in lines[0], text
    assert "pytest -k other" in lines[0]
    assert "passed" not in text and "PASSED" not in text  # stopped before the first case
    assert pytester.runpytest(*xdist).ret == 0  # and the next run goes ahead


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("raw, clean", [
    ("http://user:secret@host:8000/v1", "http://user:***@host:8000/v1"),
    ("https://sk-abcdefghijklmnopqrstuv@host/v1", "https://sk-***@host/v1"),
    ("http://host/v1?api_key=abc123&model=m", "http://host/v1?api_key=***&model=m"),
    ("http://host/v1?x=1&access_token=t0k&sig=zz", "http://host/v1?x=1&access_token=***&sig=***"),
    ("--aie-base-url=http://u:p@h", "--aie-base-url=http://u:***@h"),
    ("--aie-api-key=sk-live-123", "--aie-api-key=***"),
    ("OPENAI_API_KEY=sk-whatever", "OPENAI_API_KEY=***"),
    ("aie_hf_token=hf_abcdefghijklmnopqrstuvwxyz", "aie_hf_token=***"),
    ("token hf_abcdefghijklmnopqrstuvwxyz1234 in text", "token hf_*** in text"),
    ("http://host/v1", "http://host/v1"),
    ("--aie-min-pass-rate=0.8", "--aie-min-pass-rate=0.8"),
    ("ssh://git@github.com/x", "ssh://git@github.com/x"),
    ("suites/test_q.py::test_x[key=value]", "suites/test_q.py::test_x[key=value]"),
    ("401 for Authorization: Basic YWxpY2U6cHc=", "401 for Authorization: Basic ***"),
    ("echo: Bearer abc.DEF-123_xyz rest", "echo: Bearer *** rest"),
    ("Basic example of a Bearer token", "Basic example of a Bearer token"),  # prose stays
])
def test_scrub_text(raw: str, clean: str) -> None:
    assert scrub_text(raw) == clean


def test_scrub_argv_hides_values_of_secret_options() -> None:
    argv = ["suites", "--aie-api-key", "sk-1", "--token", "t", "--aie-min-pass-rate", "0.8",
            "--aie-base-url", "http://a:b@h", "-k", "key"]
    assert scrub_argv(argv) == ["suites", "--aie-api-key", "***", "--token", "***",
                                "--aie-min-pass-rate", "0.8", "--aie-base-url", "http://a:***@h",
                                "-k", "key"]


def test_scrub_nested_settings() -> None:
    settings = {"base_url": "http://u:pw@h", "api_key": "sk-x", "models": {"b": ("openai", "http://u:pw@h")},
                "token": "", "seed": 0, "candidate": None}
    assert scrub(settings) == {"base_url": "http://u:***@h", "api_key": "***",
                               "models": {"b": ["openai", "http://u:***@h"]}, "token": "",
                               "seed": 0, "candidate": None}


def test_run_header_has_no_secrets(tmp_path: Path) -> None:
    head = run_header(settings={"engine": "openai", "model": "m", "base_url": "http://u:hunter2@h/v1?key=zqxj"},
                      rootdir=tmp_path, argv=["--aie-base-url", "http://u:hunter2@h/v1?key=zqxj",
                                               "--aie-api-key=hunter3"])
    text = json.dumps(head)
    assert "hunter" not in text and "zqxj" not in text
    assert head["settings"]["base_url"] == "http://u:***@h/v1?key=***"


def test_password_in_base_url_reaches_no_file(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES, {"p1": "x", "p2": "y", "p3": "z"}, eval_test("exact()"))
    secret = "s3cr3t-Pa55"
    result = pytester.runpytest("--aie-base-url", f"http://user:{secret}@example.invalid/v1?api_key={secret}",
                                "--aie-save-baseline", "main")
    assert result.ret == 0, result.stdout.str()
    written = [p for p in pytester.path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".html", ".json")]
    assert {p.name for p in written} >= {"results.jsonl", "report.html", "main.json"}
    for path in written:
        assert secret not in path.read_text(encoding="utf-8"), path
    assert secret not in result.stdout.str() + result.stderr.str()
    html = (pytester.path / "aie-results" / "report.html").read_text(encoding="utf-8")
    assert "http://user:***@example.invalid/v1?api_key=***" in html


def test_openai_engine_shows_its_url_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminal lines name the server by ``engine.base_url``: no password, no query token."""
    pytest.importorskip("openai")
    from pytest_aie.engines.openai import OpenAIEngine

    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    engine = OpenAIEngine("m", base_url="http://user:pw123@127.0.0.1:9/v1?api_key=tok123")
    try:
        shown = f"{engine.base_url} {engine!r} {json.dumps(engine.identity(), default=str)}"
        assert "pw123" not in shown and "tok123" not in shown
        assert engine.base_url == "http://127.0.0.1:9/v1?api_key=***"
    finally:
        engine.close()


# --------------------------------------------------------------------------- bounded records


def test_log_cuts_huge_fields_and_says_so(tmp_path: Path) -> None:
    huge = "e" * (MAX_FIELD_CHARS + 5000)
    nested = {"aliases": [["x" * 1000] * 50] * (MAX_FIELD_CHARS // 10_000)}
    rec = record(0, expected=huge, references=nested, output="short")
    log = ResultsLog(tmp_path / "r.jsonl", header())
    log.append(rec)
    log.close()
    assert rec["expected"] == huge and isinstance(rec["references"], dict)  # in memory: whole
    _, (stored,) = load_results(tmp_path / "r.jsonl")
    assert stored["output"] == "short"
    assert stored["expected"].startswith("e" * 1000) and len(stored["expected"]) < MAX_FIELD_CHARS + 200
    assert stored["expected"].endswith("[results log cut 5,000 more characters]")
    assert isinstance(stored["references"], str) and len(stored["references"]) < MAX_FIELD_CHARS + 200
    assert stored["cut"] == {"expected": len(huge), "references": len(json.dumps(nested, ensure_ascii=False))}
    assert (tmp_path / "r.jsonl").stat().st_size < 3 * MAX_FIELD_CHARS


def test_log_cuts_per_field_not_per_line(tmp_path: Path) -> None:
    """A line longer than the limit whose fields are each within it is stored whole; a field
    of exactly the limit is kept, one character more is cut; other text stays readable."""
    at_limit = "a" * MAX_FIELD_CHARS
    rec_long_line = record(0, expected=at_limit, output="b" * (MAX_FIELD_CHARS - 10),
                           reason="naïve – ok")
    rec_over = record(1, expected=at_limit + "a")
    log = ResultsLog(tmp_path / "r.jsonl", header())
    log.append(rec_long_line)
    log.append(rec_over)
    log.close()
    _, (first, second) = load_results(tmp_path / "r.jsonl")
    assert "cut" not in first and first["expected"] == at_limit and first["output"] == rec_long_line["output"]
    assert first["reason"] == "naïve – ok"
    assert "naïve – ok" in (tmp_path / "r.jsonl").read_text(encoding="utf-8")  # not \\u-escaped
    assert second["cut"] == {"expected": MAX_FIELD_CHARS + 1}


# --------------------------------------------------------------------------- writable outputs


def test_check_writable(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    check_writable(tmp_path / "new" / "deeper" / "r.jsonl", "results log", "--aie-results")
    check_writable(afile, "results log", "--aie-results")  # an existing file is overwritten
    with pytest.raises(UsageError, match=r"results log .*afile.*is a file, not a folder") as info:
        check_writable(afile / "r.jsonl", "results log", "--aie-results")
    assert "--aie-results" in (info.value.fix or "")
    with pytest.raises(UsageError, match="is a folder"):
        check_writable(tmp_path, "report", "--aie-report")
    with pytest.raises(UsageError, match="is a file"):
        check_writable(afile, "cache folder", "--aie-cache-dir", folder=True)
    check_writable(tmp_path / "cache", "cache folder", "--aie-cache-dir", folder=True)


def test_check_writable_read_only_folder(tmp_path: Path) -> None:
    """The check says what a real write would do: refused for a user, allowed for root (who
    can write into a folder without write permission; no skip, so CI runs it either way)."""
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.geteuid() == 0:
        check_writable(ro / "r.jsonl", "results log", "--aie-results")
        (ro / "r.jsonl").write_text("root can write here\n")
        return
    with pytest.raises(UsageError, match="not writable"):
        check_writable(ro / "r.jsonl", "results log", "--aie-results")


@pytest.mark.parametrize("option, what", [
    ("--aie-results", "results log"),
    ("--aie-report", "report"),
    ("--aie-cache-dir", "cache folder"),
])
def test_unwritable_output_stops_before_generating(pytester: pytest.Pytester, option: str, what: str) -> None:
    write_scripted_suite(pytester, CASES, {"p1": "x", "p2": "y", "p3": "z"}, eval_test("exact()"))
    (pytester.path / "blocker").write_text("a file where a folder should be")
    args = [option, "blocker/out"] + (["--aie-cache", "on"] if option == "--aie-cache-dir" else [])
    result = pytester.runpytest(*args)
    assert result.ret == EXIT_HARNESS_ERROR
    text = result.stdout.str() + result.stderr.str()
    lines = [line for line in text.splitlines() if "pytest-aie:" in line]
    assert len(lines) == 1 and what in lines[0] and option in lines[0], text
    assert "Traceback" not in text and "INTERNALERROR" not in text
    assert "no tests ran" in text and not (pytester.path / "aie-results" / "results.jsonl").exists()


# --------------------------------------------------------------------------- reference used


def test_record_carries_the_reference_the_scorer_used(pytester: pytest.Pytester) -> None:
    cases = [{"id": "a", "prompt": "p1", "answer": "x"}, {"id": "b", "prompt": "p2", "answer": "nope"}]
    write_scripted_suite(pytester, cases, {"p1": "x", "p2": "y"}, eval_test('exact(field="answer")'))
    result = pytester.runpytest()
    assert result.ret == 1
    _, records = load_results(pytester.path / "aie-results" / "results.jsonl")
    assert [(r["reference_field"], r["reference"]) for r in records] == [("answer", "x"), ("answer", "nope")]
    html = (pytester.path / "aie-results" / "report.html").read_text(encoding="utf-8")
    shown = blob_of(html)["cases"]
    assert [c["expected"] for c in shown] == ["x", "nope"]
    assert all(c["expected_label"] == "Expected (field 'answer')" for c in shown)


def test_record_of_a_plain_expected_field_has_no_extra_reference(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES, {"p1": "x", "p2": "y", "p3": "z"}, eval_test("exact()"))
    assert pytester.runpytest().ret == 0
    _, records = load_results(pytester.path / "aie-results" / "results.jsonl")
    assert all("reference_field" not in r and r["expected"] in "xyz" for r in records)
