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

from pytest_aie.rebuild import main
from pytest_aie.records import CaseRecord
from pytest_aie.results import MAX_FIELD_CHARS, ResultsLog


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
