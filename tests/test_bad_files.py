"""Files pytest-aie reads or writes that are not what it expects: a results log whose
structured fields were cut, malformed records in a log that is rebuilt, unusable baselines,
output paths that cannot be created, and the report a run that could not start leaves behind.
Each one is one line naming the file and the fix, with exit 2 or 10 (never 1, never a
traceback), before any generation where the run has not started yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from components import need_module, not_on_this_machine
from scripted_suite import eval_test, write_scripted_suite

from pytest_aie.errors import EXIT_HARNESS_ERROR
from pytest_aie.rebuild import main
from pytest_aie.results.log import MAX_FIELD_CHARS, ResultsLog
from pytest_aie.results.records import CaseRecord


def case(i: int = 1, **extra: Any) -> dict[str, Any]:
    return CaseRecord(suite="t.py::test_it", case_id=f"c{i}", nodeid=f"t.py::test_it[c{i}]",
                      metric="exact.match", model="default", status="passed", value=1.0,
                      passed=True, gate={"min_pass_rate": 0.5}, **extra).to_dict()


def write_log(path: Path, records: list[dict[str, Any]]) -> Path:
    log = ResultsLog(path, {"type": "run", "format_version": 3, "settings": {}})
    for rec in records:
        log.append(rec)
    log.close()
    return path


def rebuild_cli(log: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main([str(log), "-o", str(log.with_suffix(".html"))])
    return status, capsys.readouterr().err.splitlines()


# ---------------------------------------------------------------- cut structured fields

def test_rebuild_reads_a_log_whose_trajectory_and_retrieved_were_cut(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = [{"output": "x" * 1000, "tool": "t", "arguments": {}, "result": "y" * 1000}] * 150
    hits = [{"id": f"d{i}", "score": 1.0, "text": "z" * 1000, "rank": i} for i in range(300)]
    log = write_log(tmp_path / "results.jsonl", [
        case(1, trajectory={"task": "t", "steps": steps, "answer": "a", "stopped": "answer"},
             retrieved=hits), case(2)])
    stored = json.loads(log.read_text().splitlines()[1])
    assert isinstance(stored["trajectory"], str) and stored["cut"]["trajectory"] > MAX_FIELD_CHARS
    status, err = rebuild_cli(log, capsys)
    assert status == 0, err
    assert f"pytest-aie: {log}:2: case c1: its retrieved was cut in the results log " \
        f"({stored['cut']['retrieved']:,} characters as JSON) and is not shown" in err
    assert any(f"{log}:2: case c1: its trajectory was cut" in line for line in err)
    assert log.with_suffix(".html").is_file()


# ---------------------------------------------------------------- malformed records

@pytest.mark.parametrize(("field", "value", "says"), [
    ("suite", None, "'suite' is missing"),
    ("metric", 5, "'metric' is 5, not a non-empty string"),
    ("passed", "yes", "'passed' is 'yes', not bool"),
    ("value", "0.5", "'value' is '0.5', not number"),
    ("trajectory", [1], "'trajectory' is [1], not dict"),
    ("tags", [1, 2], "'tags' holds an entry that is not a string"),
    ("gate", {"min_pass_rate": "high"}, "'gate' is {'min_pass_rate': 'high'}, not thresholds"),
    ("status", "won", "'status' is 'won', not one of passed, failed, scored, unmeasured"),
])
def test_malformed_case_record_is_one_line_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any,
        says: str) -> None:
    log = write_log(tmp_path / "results.jsonl", [case(1), case(2), case(3)])
    text = log.read_text().splitlines()
    bad = json.loads(text[2])
    bad[field] = value
    text[2] = json.dumps(bad)
    log.write_text("\n".join(text) + "\n")
    status, err = rebuild_cli(log, capsys)
    assert status == 2
    assert len(err) == 1 and err[0].startswith(f"pytest-aie: {log}:3: malformed case record: {says}")
    assert "Fix: " in err[0]


def test_no_wrong_type_in_any_record_field_gives_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Property: every field of a case record and of the conclusion record, set to each
    wrongly typed JSON value, gives exit 2 with one line naming the line, or reads (the
    report is written with the status the record says)."""
    records = [case(i) for i in range(4)]
    conclusion = {"type": "conclusion", "policy": {}, "aggregates": [], "rows": [],
                  "comparisons": [], "baseline": None, "changes": 0, "pytest_status": 0,
                  "exit_status": 0, "notes": [], "harness_errors": []}
    log = write_log(tmp_path / "clean.jsonl", [*records, conclusion])
    clean = log.read_text().splitlines()
    wrong: list[Any] = [None, "x", 5, True, [1], {"a": 1}]
    for line in (2, len(clean)):
        for key in json.loads(clean[line - 1]):
            for value in wrong:
                edited = list(clean)
                rec = json.loads(edited[line - 1])
                rec[key] = value
                edited[line - 1] = json.dumps(rec)
                bad = tmp_path / "bad.jsonl"
                bad.write_text("\n".join(edited) + "\n")
                status, err = rebuild_cli(bad, capsys)  # raises on a traceback
                if status == 2:
                    assert err[-1].startswith(f"pytest-aie: {bad}:{line}: malformed"), (key, value)


# ---------------------------------------------------------------- baselines

def gate_suite(pytester: pytest.Pytester, wrong: set[int], name: str = "test_gate") -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"} for i in range(50)]
    write_scripted_suite(pytester, cases, {f"q{i}": "nope" if i in wrong else f"a{i}" for i in range(50)},
                         eval_test("exact(min_pass_rate=0.1)", name))


def one_line_before_generating(result: pytest.RunResult, pytester: pytest.Pytester, says: str) -> None:
    text = result.stdout.str() + result.stderr.str()
    lines = [line for line in text.splitlines() if "pytest-aie:" in line]
    assert len(lines) == 1 and says in lines[0] and "Fix: " in lines[0], text
    assert "Traceback" not in text and "INTERNALERROR" not in text
    assert "generating" not in text and not (pytester.path / "aie-results" / "results.jsonl").exists()


@pytest.mark.parametrize(("content", "says"), [
    (b"\xff\xfe{", "baseline is not UTF-8 text (byte 0: b'\\xff')"),
    (b'{"format_version": 3, "suites": []}', "'suites' is list, not an object"),
    (b'{"format_version": 3, "suites": {"k": {"suite": "s", "metric": "m", "cases": [1]}}}',
     "suite 'k': 'cases' is list, not an object"),
    (b'{"format_version": 3, "suites": {"k": {"suite": "s", "metric": "m", "cases": '
     b'{"c1": {"passed": "yes"}}}}}', "suite 'k', case 'c1': 'passed' is 'yes'"),
])
def test_unusable_baseline_is_one_line_before_generation(
        pytester: pytest.Pytester, content: bytes, says: str) -> None:
    gate_suite(pytester, set())
    (pytester.path / "aie-baselines").mkdir()
    (pytester.path / "aie-baselines" / "main.json").write_bytes(content)
    result = pytester.runpytest("-p", "no:randomly", "--aie-baseline", "main")
    assert result.ret == EXIT_HARNESS_ERROR
    one_line_before_generating(result, pytester, says)
    assert "aie-baselines/main.json: baseline is not " in result.stderr.str()


def test_baseline_with_no_suite_in_common_is_an_error_not_a_silent_pass(
        pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    gate_suite(pytester, set())
    assert pytester.runpytest("-p", "no:randomly", "--aie-save-baseline", "main").ret == 0
    gate_suite(pytester, set(range(20)), name="test_renamed")  # renamed, and 40 points worse
    result = pytester.runpytest("-p", "no:randomly", "--aie-baseline", "main")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([
        "pytest-aie: baseline main has no suite in common with this run, so nothing was "
        "compared: it holds test_suite.py::test_gate [[]exact.match[]]; this run ran "
        "test_suite.py::test_renamed [[]exact.match[]]. Fix: *",
        "*pytest-aie: the harness could not evaluate (1 problem above) (exit 10)*"])
    log = pytester.path / "aie-results" / "results.jsonl"
    # the conclusion record is not trusted for a rebuild with --baseline: recomputed, same error
    assert main([str(log), "--baseline", "main", "-o", str(pytester.path / "r.html")]) == \
        EXIT_HARNESS_ERROR
    err = capsys.readouterr().err
    assert err.count("baseline main has no suite in common") == 1


def test_suites_missing_from_the_baseline_are_named_and_the_others_compared() -> None:
    from types import SimpleNamespace

    from pytest_aie.gates.baseline import unmatched

    records = [{"suite": s, "metric": "m"} for s in ("a", "b", "c")]
    error, notes = unmatched(records, [SimpleNamespace(suite="b", metric="m")], {}, "main")
    assert error is None
    assert notes == ["a [m]: not in baseline main (a new suite?): not compared",
                     "c [m]: not in baseline main (a new suite?): not compared"]
    assert unmatched([], [], {}, "main") == (None, [])  # nothing ran: nothing to compare


# ---------------------------------------------------------------- output paths and stale reports

def need_proc() -> None:
    if not Path("/proc/self").is_dir():
        not_on_this_machine("this machine has no /proc (a folder that refuses new files even "
                            "to root, which os.access cannot tell)")


@pytest.mark.parametrize(("option", "what"), [
    ("--aie-report", "report"), ("--aie-results", "results log"), ("--aie-cache-dir", "cache folder")])
def test_output_path_that_cannot_be_created_is_one_line_before_generation(
        pytester: pytest.Pytester, option: str, what: str) -> None:
    need_proc()
    gate_suite(pytester, set())
    extra = ["--aie-cache", "on"] if option == "--aie-cache-dir" else []
    result = pytester.runpytest("-p", "no:randomly", option, "/proc/aie-x/out", *extra)
    assert result.ret == EXIT_HARNESS_ERROR
    one_line_before_generating(result, pytester, f"{what} /proc/aie-x/out cannot be written: "
                                                  "folder /proc does not take new files")


def test_rebuild_to_an_output_that_cannot_be_created_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_proc()
    log = write_log(tmp_path / "results.jsonl", [case(1)])
    assert main([str(log), "-o", "/proc/aie-x/r.html"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "pytest-aie: report /proc/aie-x/r.html cannot be written: folder /proc does not take new "
        "files (No such file or directory). Fix: pass -o/--output with a path this run can write"]


def dead_url() -> str:
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_run_that_cannot_start_does_not_leave_the_previous_green_report(
        pytester: pytest.Pytester) -> None:
    need_module("openai")
    gate_suite(pytester, set())
    assert pytester.runpytest("-p", "no:randomly").ret == 0
    report = pytester.path / "aie-results" / "report.html"
    green = report.read_text()
    dead = ["-p", "no:randomly", "--aie-engine", "openai", "--aie-model", "m",
            "--aie-base-url", dead_url()]
    for _ in range(2):  # a second failed start keeps the last real report aside
        result = pytester.runpytest_subprocess(*dead)  # in-process, openai's second import
        # gives new exception classes that the first one's engine does not catch
        assert result.ret == EXIT_HARNESS_ERROR
        page = report.read_text()
        assert "this run could not start (exit 10)" in page and "cannot reach" in page
        assert "report.previous.html" in page and green not in page
        assert (pytester.path / "aie-results" / "report.previous.html").read_text() == green
        result.stdout.fnmatch_lines([f"pytest-aie report: {report} says this run could not start "
                                     "(the previous run's report moved to *report.previous.html)"])
