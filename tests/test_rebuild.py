"""The results log's conclusion and ``python -m pytest_aie report``: rebuilding the report,
gates and comparisons included, from one log, from the logs of a run split across machines,
from a crashed log; refusing logs that cannot be merged; the baseline diff."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scripted_suite import eval_test, write_answers, write_scripted_suite

from pytest_aie.errors import EXIT_REGRESSION
from pytest_aie.gates.changes import case_changes
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.rebuild import load_log, main, rebuild
from pytest_aie.results.records import ResultsWarning

N = 80
SHARDS = """
import os

def pytest_collection_modifyitems(config, items):
    shard = os.environ.get("SHARD")
    if shard is not None:  # a sharded CI job: every other case
        items[:] = [it for i, it in enumerate(items) if i % 2 == int(shard)]
"""


def make_run(pytester: pytest.Pytester, *, candidate_wrong: set[int], wrong: frozenset[int] = frozenset(),
             marker: str = "min_pass_rate=0.5") -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}",
              "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(N)]
    write_scripted_suite(pytester, cases, {f"q{i}": "nope" if i in wrong else f"a{i}" for i in range(N)},
                         eval_test(f"exact({marker})", "test_gate"))
    write_answers(pytester, {f"q{i}": "nope" if i in candidate_wrong else f"a{i}" for i in range(N)},
                  name="candidate")
    pytester.makeconftest(SHARDS)


def run(pytester: pytest.Pytester, name: str, *args: str) -> tuple[int, Path]:
    """One run; its results log kept as ``name``."""
    result = pytester.runpytest("-p", "no:randomly", "--aie-candidate", "scripted:candidate.jsonl",
                                *args)
    log = pytester.path / name
    shutil.copy(pytester.path / "aie-results" / "results.jsonl", log)
    return int(result.ret), log


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def as_logged(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """Comparisons as the conclusion record holds them (JSON: ``models`` a list)."""
    return [json.loads(json.dumps(c.to_dict())) for c in comparisons]


def assert_same_conclusion(rebuilt: Any, logged: dict[str, Any]) -> None:
    """A log rebuilt by ``python -m pytest_aie report`` concludes what the run logged: both go
    through gates.conclusion.conclude."""
    assert logged["type"] == "conclusion"
    assert [r.to_json() for r in rebuilt.rows] == logged["rows"]
    assert as_logged(rebuilt.comparisons) == logged["comparisons"]
    assert len(rebuilt.changes) == logged["changes"]
    assert rebuilt.exit_status == logged["exit_status"]
    assert rebuilt.notes == logged["notes"] and rebuilt.harness_errors == logged["harness_errors"]


def test_split_run_merges_to_the_single_runs_rows_and_exit_status(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    make_run(pytester, candidate_wrong=set(range(0, N, 4)))  # the candidate regresses
    status, whole = run(pytester, "whole.jsonl")
    assert status == EXIT_REGRESSION
    conclusion = lines(whole)[-1]
    assert conclusion["type"] == "conclusion" and conclusion["exit_status"] == EXIT_REGRESSION
    assert conclusion["policy"]["alpha"] == 0.05 and conclusion["rows"][0]["n"] == N
    assert any(c["regressed"] and c["models"] == ["default", "candidate"]
               for c in conclusion["comparisons"])
    shards = []
    for shard in ("0", "1"):
        monkeypatch.setenv("SHARD", shard)
        shards.append(run(pytester, f"shard{shard}.jsonl"))
    monkeypatch.delenv("SHARD")
    assert all(len(load_log(log).cases) == N for _, log in shards)  # N/2 cases, two models
    # rebuilt from the complete single log: as the run concluded
    single = rebuild([whole])
    assert [r.to_json() for r in single.rows] == conclusion["rows"] and single.exit_status == EXIT_REGRESSION
    assert_same_conclusion(single, conclusion)
    # merged from the two shards: the same rows, comparisons and exit status
    merged = rebuild([log for _, log in shards])
    assert [r.to_json() for r in merged.rows] == conclusion["rows"]
    assert as_logged(merged.comparisons) == conclusion["comparisons"]
    assert merged.exit_status == EXIT_REGRESSION and not merged.messages
    # a suite-level figure computed on each shard (corpus BLEU, Elo...) is not the suite's
    def with_figure(r: dict[str, Any]) -> dict[str, Any]:
        if r["type"] != "conclusion":
            return r
        return {**r, "aggregates": [{"suite": "test_suite.py::test_gate", "metric": "exact.match",
                                     "model": "candidate", "value": {"n": N // 2}}]}

    figured = [_edit(log, pytester.path / f"fig{i}.jsonl", with_figure) for i, (_, log) in enumerate(shards)]
    split = rebuild(figured)
    assert split.rows[0].corpus is None and "cannot be combined" in split.messages[0]
    out = pytester.path / "merged.html"
    assert main([str(shards[0][1]), str(shards[1][1]), "-o", str(out), "--summary"]) == EXIT_REGRESSION
    printed = capsys.readouterr()
    assert out.is_file() and "REGRESSION" in printed.out and "merged.html" in printed.err
    # the command line, as CI calls it
    proc = subprocess.run([sys.executable, "-m", "pytest_aie", "report", str(whole), "-o",
                           str(pytester.path / "whole.html")], capture_output=True, text=True)
    assert proc.returncode == EXIT_REGRESSION, proc.stderr
    assert (pytester.path / "whole.html").is_file()


def test_crashed_log_is_rebuilt_from_its_cases_and_says_what_is_missing(
        pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(pytester, candidate_wrong=set(range(30)), wrong=frozenset(range(30)),
             marker="min_pass_rate=0.9")
    status, log = run(pytester, "full.jsonl")
    assert status == 1  # the gate failed
    records = lines(log)
    conclusion = records[-1]
    crashed = pytester.path / "crashed.jsonl"
    text = "\n".join(json.dumps(r) for r in records[:-1]) + "\n" + json.dumps(records[-1])[:40]
    crashed.write_text(text)  # killed while writing the conclusion
    with pytest.warns(ResultsWarning, match="truncated last line"):
        rebuilt = rebuild([crashed])
    assert [r.to_json() for r in rebuilt.rows] == conclusion["rows"] and rebuilt.exit_status == 1
    assert "no conclusion record" in rebuilt.messages[0]
    assert main([str(crashed), "-o", str(pytester.path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert "truncated last line" in err and "no conclusion record" in err
    # without gates, the failing cases failed their own tests: pytest's status was 1
    ungated = [{**r, "gate": None} if r.get("type") == "case" else r for r in records[:-1]]
    (pytester.path / "ungated.jsonl").write_text("\n".join(json.dumps(r) for r in ungated))
    assert rebuild([pytester.path / "ungated.jsonl"]).exit_status == 1
    passing = [{**r, "status": "passed", "passed": True} for r in ungated[1:]]
    (pytester.path / "passing.jsonl").write_text("\n".join(json.dumps(r) for r in [records[0], *passing]))
    assert rebuild([pytester.path / "passing.jsonl"]).exit_status == 0
    # a suite whose figure is computed at session end (corpus BLEU): named as not recomputed
    bleu = [{**r, "metric": "similarity.bleu"} if r.get("type") == "case" else r
            for r in records[:-1]]
    (pytester.path / "bleu.jsonl").write_text("\n".join(json.dumps(r) for r in bleu))
    (message,) = rebuild([pytester.path / "bleu.jsonl"]).messages
    assert "never written" in message and "test_gate [similarity.bleu]" in message


def _edit(src: Path, dst: Path, fn: Any) -> Path:
    dst.write_text("\n".join(json.dumps(fn(r)) for r in lines(src)))
    return dst


def test_logs_that_cannot_be_merged_are_refused_with_one_line(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    make_run(pytester, candidate_wrong=set())
    monkeypatch.setenv("SHARD", "0")
    _, a = run(pytester, "a.jsonl")
    monkeypatch.setenv("SHARD", "1")
    _, b = run(pytester, "b.jsonl")
    assert main([str(a), str(b), "-o", str(pytester.path / "ok.html")]) == 0
    capsys.readouterr()

    def settings(**change: Any) -> Any:
        return lambda r: {**r, "settings": {**r["settings"], **change}} if r["type"] == "run" else r

    other_model = _edit(b, pytester.path / "b_tokens.jsonl", settings(max_tokens=7))
    other_gate = _edit(b, pytester.path / "b_alpha.jsonl", settings(alpha=0.01))
    first = next(r for r in lines(a) if r.get("type") == "case")
    same_case = _edit(a, pytester.path / "a_again.jsonl", lambda r: {
        **r, "status": "failed", "passed": False, "value": 0.0} if r is not None
        and r.get("case_id") == first["case_id"] and r.get("type") == "case" else r)
    for bad, words in ((other_model, "different settings (max_tokens 64 vs 7)"),
                       (other_gate, "different gate settings (alpha 0.05 vs 0.01)"),
                       (same_case, f"case {first['case_id']} of")):
        assert main([str(a), str(bad), "-o", str(pytester.path / "no.html")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and "Fix:" in err[0], err
    assert not (pytester.path / "no.html").exists()
    # the same case with the same result in two logs (a shard run twice) is kept once
    assert len(rebuild([a, a]).cases) == len(load_log(a).cases)


def test_baseline_diff_keeps_old_and_new_outputs(pytester: pytest.Pytester) -> None:
    make_run(pytester, candidate_wrong=set(), wrong=frozenset({5}))
    pytester.runpytest("-p", "no:randomly", "--aie-save-baseline", "main")
    saved = json.loads((pytester.path / "aie-baselines" / "main.json").read_text())
    cases = next(iter(saved["suites"].values()))["cases"]
    assert saved["format_version"] == 3 and cases["c3"]["output"] == "a3"
    write_answers(pytester, {f"q{i}": "nope" if i in (3, 4) else f"a{i}" for i in range(N)})
    pytester.runpytest("-p", "no:randomly", "--aie-baseline", "main")
    log = pytester.path / "aie-results" / "results.jsonl"
    written = [r for r in lines(log) if r["type"] == "change"]
    by_case = {c["case_id"]: c for c in written}
    assert set(by_case) == {"c3", "c4", "c5"}
    assert by_case["c3"]["change"] == "newly_failing"
    assert by_case["c3"]["old"] == {"status": "passed", "value": 1.0, "output": "a3"}
    assert by_case["c3"]["new"] == {"status": "failed", "value": 0.0, "output": "nope"}
    assert by_case["c5"]["change"] == "newly_passing" and by_case["c5"]["old"]["output"] == "nope"
    assert lines(log)[-1]["changes"] == 3
    # rebuilt with --baseline: the same diff over the log's cases, and the same conclusion
    again = rebuild([log], baseline="main")
    assert_same_conclusion(again, lines(log)[-1])
    assert again.changes == [{k: v for k, v in c.items() if k != "type"} for c in written]
    assert again.comparisons[0].newly_failing == ["c3", "c4"]
    # a baseline saved before outputs were kept still loads: old outputs are None
    for case in cases.values():
        del case["output"]
    old = {**saved, "format_version": 2}
    (old_path := pytester.path / "old.json").write_text(json.dumps(old))
    from pytest_aie.results.log import load_results

    # written out by hand: c3 and c4 passed in the baseline and fail now, c5 the reverse;
    # a format-2 baseline has no outputs, so every old output is None
    suite = "test_suite.py::test_gate"
    expected = [
        {"suite": suite, "metric": "exact.match", "model": "default", "case_id": case,
         "change": change, "old": {"status": old_status, "value": old_value, "output": None},
         "new": {"status": new_status, "value": 1.0 - old_value, "output": new_output}}
        for case, change, old_status, old_value, new_status, new_output in (
            ("c3", "newly_failing", "passed", 1.0, "failed", "nope"),
            ("c4", "newly_failing", "passed", 1.0, "failed", "nope"),
            ("c5", "newly_passing", "failed", 0.0, "passed", "a5"))]
    assert case_changes(load_results(log)[1], old) == expected
    assert rebuild([log], baseline=str(old_path)).changes == expected
    # long outputs are cut in the baseline
    from pytest_aie.gates.baseline import OUTPUT_CHARS, make_baseline

    rec = {**load_results(log)[1][0], "output": "x" * 5000}
    kept = make_baseline("b", {}, [rec])
    out = next(iter(kept["suites"].values()))["cases"][rec["case_id"]]["output"]
    assert out.startswith("x" * OUTPUT_CHARS) and "3,000 more characters" in out
