"""The user's own application as the target (``dataset(target=...)``) and the test-body style
(``evaluate(...)``): outputs go to the same scorers, gates, results and report."""

from __future__ import annotations

import json

import pytest
from scripted_suite import write_scripted_suite

from pytest_aie.errors import EXIT_HARNESS_ERROR

CASES = [{"id": f"c{i}", "question": f"what is {i}+1?", "expected": str(i + 1)} for i in range(20)]

APP = """
import asyncio
import pytest

CALLS = []

def right(i):
    return str(i + 1) if i % 5 else "no idea"   # wrong on c0, c5, c10, c15

def number(case):
    return int(case["question"].split()[2].split("+")[0])

def answer(case):
    CALLS.append(case["id"])
    return right(number(case))

async def answer_async(case):
    await asyncio.sleep(0)
    return right(number(case))

def answer_batch(cases):
    CALLS.append(len(cases))
    return [right(number(c)) for c in cases]

def answer_with_model(case, model):
    return model.generate(case["question"]).text
"""


def records(pytester: pytest.Pytester) -> list[dict]:
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:]
    return [r for r in map(json.loads, lines) if r.get("type") == "case"]


@pytest.mark.parametrize("target, extra", [("answer", ""), ("answer_async", ", target_concurrency=3"),
                                           ("answer_batch", ", target_batch=True")])
def test_target_suite_is_scored_gated_and_reported(pytester: pytest.Pytester, target: str,
                                                   extra: str) -> None:
    write_scripted_suite(pytester, CASES, {}, APP + f"""
@pytest.mark.dataset("cases.jsonl", target={target}{extra})
@pytest.mark.exact(min_pass_rate=0.5)
def test_app(case, output):
    assert output.engine == "target"
""")
    result = pytester.runpytest()
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=16, xfailed=4)
    result.stdout.fnmatch_lines(["*test_app [[]exact.match[]]: 16/20 passed, 4 failed*-> PASS*"])
    recs = records(pytester)
    assert {r["model_id"] for r in recs} == {f"test_suite.{target}"}
    assert {r["model"] for r in recs} == {f"target:test_suite.{target}"}
    assert sorted(r["case_id"] for r in recs if r["status"] == "failed") == ["c0", "c10", "c15", "c5"]
    report = (pytester.path / "aie-results" / "report.html").read_text()
    from pytest_aie.report.blob import cases_in  # the case data (packed in the page)
    assert "test_app" in report and "c15" in {c["case_id"] for c in cases_in(report)}


def test_batch_target_is_called_once_for_the_suite_and_cached(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES, {}, APP + """
@pytest.mark.dataset("cases.jsonl", target=answer_batch, target_batch=True)
@pytest.mark.exact()
def test_app(case, output):
    pass

def test_calls():
    pass
""")
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n")
    cache = ["--aie-cache-dir", str(pytester.path / "cache")]
    first = pytester.runpytest(*cache, "-p", "no:randomly")
    assert first.ret == 1
    assert "generating 20 of 20 requests on target:test_suite.answer_batch" in first.stderr.str()
    second = pytester.runpytest(*cache)
    assert "generating" not in second.stderr.str()  # every output came from the cache
    assert all(r["cached"] for r in records(pytester))


def test_target_errors_leave_cases_unmeasured_and_exit_10(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES[:4], {}, """
import pytest

def broken(case):
    raise RuntimeError("index not loaded")

@pytest.mark.dataset("cases.jsonl", target=broken)
@pytest.mark.exact()
def test_app(case, output):
    pass
""")
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*the engine failed on 4 of 4 cases (target raised RuntimeError: "
                                 "index not loaded)*"])


@pytest.mark.parametrize("args, message", [
    ('target="answer"', "*dataset(target='answer') is not callable*"),
    ("target_batch=True", "*dataset(target_batch=...) needs target=*"),
    ("target=len, target_concurrency=0", "*dataset(target_concurrency=0) must be a whole number >= 1*"),
])
def test_bad_target_arguments_are_one_line(pytester: pytest.Pytester, args: str,
                                           message: str) -> None:
    write_scripted_suite(pytester, CASES[:2], {}, f"""
import pytest

@pytest.mark.dataset("cases.jsonl", {args})
@pytest.mark.exact()
def test_app(case, output):
    pass
""")
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([message])


def test_test_body_hands_its_output_to_the_markers(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES, {}, APP + """
@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact(min_pass_rate=0.5)
def test_body(case, evaluate):
    evaluate(answer(case))

def test_no_generation():
    assert CALLS and len(CALLS) == 20  # the body ran the app once per case, nothing else did
""")
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=17, xfailed=4)
    result.stdout.fnmatch_lines(["*test_body [[]exact.match[]]: 16/20 passed, 4 failed*-> PASS*"])
    assert "generating" not in result.stderr.str()
    recs = records(pytester)
    assert {r["engine"] for r in recs} == {"test-body"} and len(recs) == 20


def test_test_body_that_forgets_to_hand_over_fails(pytester: pytest.Pytester) -> None:
    write_scripted_suite(pytester, CASES[:2], {}, """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact()
def test_body(case, evaluate):
    pass

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact()
def test_wrong_type(case, evaluate):
    evaluate(42)
""")
    result = pytester.runpytest()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*did not hand its output over: call evaluate(output)*"])
    result.stdout.fnmatch_lines(["*evaluate() takes the output text (a str), a Generation or an agent*got int: 42*"])


def test_a_target_that_calls_the_model_is_regenerated_when_the_model_changes(
        pytester: pytest.Pytester) -> None:
    """The target's cache key includes the session model's identity: a new model is not
    served the old model's answers."""
    cases = CASES[:3]
    write_scripted_suite(pytester, cases, {c["question"]: c["expected"] for c in cases}, APP + """
@pytest.mark.dataset("cases.jsonl", target=answer_with_model)
@pytest.mark.exact(min_pass_rate=0.5)
def test_app(case, output):
    pass
""")
    from scripted_suite import write_answers
    write_answers(pytester, {c["question"]: "wrong" for c in cases}, name="wrong")
    cache = ["--aie-cache", "on", "--aie-cache-dir", str(pytester.path / "cache")]
    assert pytester.runpytest(*cache).ret == 0
    assert [r["output"] for r in records(pytester)] == ["1", "2", "3"]
    # the same target on another model: regenerated, not read from the first model's cache
    pytester.runpytest(*cache, "--aie-model", "wrong.jsonl")
    assert [r["output"] for r in records(pytester)] == ["wrong"] * 3
    assert not any(r["cached"] for r in records(pytester))
