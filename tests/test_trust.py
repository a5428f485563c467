"""Verdicts you can trust (issue 7): no green without evidence, one clear line per problem,
terminal output proportional to what failed. Whole runs through pytester, on the scripted
engine or a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import re
import textwrap

import pytest
from scripted_suite import INI, eval_test, read_records, write_jsonl, write_scripted_suite
from test_engine_openai import fake  # noqa: F401, F811  (the scripted OpenAI-compatible server)

from pytest_aie.engines.base import Engine
from pytest_aie.errors import EXIT_HARNESS_ERROR, EXIT_REGRESSION
from pytest_aie.run.scoring import combine
from pytest_aie.scorers.base import Score
from pytest_aie.session import case_seed

RED = "\x1b[31m"


def cases(n: int, **extra: object) -> list[dict]:
    return [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}", **extra} for i in range(n)]


def answers(n: int, wrong: set[int]) -> dict[str, str]:
    return {f"q{i}": "nope" if i in wrong else f"a{i}" for i in range(n)}


# --- green without evidence ----------------------------------------------------------------

def openai_ini(pytester: pytest.Pytester, base_url: str) -> None:
    pytester.makeini(textwrap.dedent(f"""
        [pytest]
        aie_engine = openai
        aie_model = fake-model
        aie_base_url = {base_url}
        aie_cache = off
    """))


def test_engine_errors_on_every_case_exit_10_with_count(pytester, fake) -> None:  # noqa: F811
    from test_engine_openai import json_reply

    srv = fake(lambda path, body, n: json_reply(500, {"error": {"message": "boom"}},
                                                       {"retry-after-ms": "1"}))
    write_jsonl(pytester, "cases", cases(4))
    pytester.makepyfile(test_suite=eval_test("exact(min_pass_rate=0.5)", "test_gate"))
    openai_ini(pytester, srv.base_url)
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*test_gate [[]exact.match[]]: the engine failed on 4 of 4 cases "
                                 "(HTTP 500*boom*"])
    assert "PASS" not in result.stdout.str()


def test_wrong_key_fails_the_suite_at_once_with_one_line(pytester, fake) -> None:  # noqa: F811
    from test_engine_openai import json_reply

    srv = fake(lambda path, body, n: json_reply(401, {"error": {"message": "bad key"}}))
    write_jsonl(pytester, "cases", cases(40))
    pytester.makepyfile(test_suite=eval_test("exact(min_pass_rate=0.5)", "test_gate"))
    openai_ini(pytester, srv.base_url)
    result = pytester.runpytest("--aie-concurrency", "2", "-rN")  # -rN: no short summary
    assert result.ret == EXIT_HARNESS_ERROR
    out = result.stdout.str()
    assert len(re.findall(r"refused the request with HTTP 401 \(wrong or missing API key\)", out)) >= 1
    # not one request per case: the first refusal stops the batch (two were in flight)
    assert len(srv.posts()) <= 2
    result.assert_outcomes(errors=1, skipped=39)  # the first case carries the error; the rest
    # of the suite is skipped with it as the reason (no request per case)
    assert out.count("Fix:") == 1, out  # once, by pytest (pytest-aie does not repeat it)


def test_suite_with_nothing_measured_never_exits_0(pytester) -> None:
    rows = [{"id": f"c{i}", "prompt": f"q{i}", "expected": "not a number"} for i in range(6)]
    write_scripted_suite(pytester, rows, {f"q{i}": "4" for i in range(6)},
                         eval_test('exact("numeric", min_pass_rate=0.5)', "test_gate"))
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*test_gate [[]exact.numeric[]]: none of 6 cases was measured*"])


def test_misspelt_eval_marker_stops_collection_with_the_close_match(pytester) -> None:
    write_scripted_suite(pytester, cases(3), answers(3, set()), eval_test('exactt("contains")'))
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*unknown marker @pytest.mark.exactt*did you mean @pytest.mark.exact?*"])
    assert "generating" not in result.stderr.str()


@pytest.mark.parametrize("typo, meant", [("similarty", "similarity"), ("Exact", "exact"),
                                         ("exact_match", "exact"), ("datasets", "dataset")])
def test_other_misspellings_of_our_markers(pytester, typo: str, meant: str) -> None:
    write_scripted_suite(pytester, cases(2), answers(2, set()), eval_test(f"{typo}()"))
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([f"*unknown marker @pytest.mark.{typo}*did you mean @pytest.mark.{meant}?*"])


def test_registered_marker_that_looks_like_ours_is_left_alone(pytester) -> None:
    write_scripted_suite(pytester, cases(2), answers(2, set()), textwrap.dedent("""
        import pytest

        @pytest.mark.exacts
        def test_plain():
            pass
    """))
    pytester.makeini(textwrap.dedent(INI) + "markers =\n    exacts: a user's own marker\n")
    assert pytester.runpytest().ret == 0


def final_lines(result: pytest.RunResult, n: int = 2) -> list[str]:
    return [line for line in result.outlines if line.strip()][-n:]


def test_failed_gate_ends_in_red_saying_so(pytester) -> None:
    write_scripted_suite(pytester, cases(40), answers(40, set(range(20))),
                         eval_test("exact(min_pass_rate=0.9)", "test_gate"))
    result = pytester.runpytest("--color=yes")
    assert result.ret == 1
    warn, last = final_lines(result)
    assert "GATE FAILED" in warn and "test_gate [exact.match]" in warn and RED in warn
    assert "20 passed" in last and "20 xfailed" in last and last.lstrip().startswith(RED)


def test_passing_run_keeps_pytest_green_line(pytester) -> None:
    write_scripted_suite(pytester, cases(10), answers(10, set()),
                         eval_test("exact(min_pass_rate=0.5)", "test_gate"))
    result = pytester.runpytest("--color=yes")
    assert result.ret == 0
    last = final_lines(result, 1)[0]
    assert RED not in last and "GATE FAILED" not in result.stdout.str()


def test_regression_ends_in_red_saying_so(pytester) -> None:
    write_scripted_suite(pytester, cases(60), answers(60, set()),
                         eval_test("exact()", "test_gate"))
    assert pytester.runpytest("--aie-save-baseline", "main").ret == 0
    write_jsonl(pytester, "answers", ({"prompt": k, "answer": v}
                                      for k, v in answers(60, set(range(30))).items()))
    result = pytester.runpytest("--aie-baseline", "main", "--color=yes")
    assert result.ret == EXIT_REGRESSION
    warn, last = final_lines(result)
    assert "REGRESSION" in warn and RED in warn and last.lstrip().startswith(RED)


def test_unthresholded_similarity_cases_show_as_scored_not_passed(pytester) -> None:
    pytest.importorskip("rouge_score")
    rows = [{"id": f"c{i}", "prompt": f"q{i}", "expected": "the cat sat on the mat"} for i in range(8)]
    write_scripted_suite(pytester, rows, {f"q{i}": "the cat sat" for i in range(8)},
                         eval_test('similarity("rouge1")', "test_sim"))
    result = pytester.runpytest()
    assert result.ret == 0
    out = result.stdout.str()
    assert "8/8 scored" in out and "8/8 passed" not in out
    assert {r["status"] for r in read_records(pytester)} == {"scored"}
    assert all(r["passed"] is None and r["value"] > 0 for r in read_records(pytester))


# --- independent samples ----------------------------------------------------------------------

def test_case_seeds_are_stable_distinct_and_runs_do_not_share_sample_seeds() -> None:
    assert case_seed(0, "q1", 0) == case_seed(0, "q1", 0)
    per_case = {case_seed(0, f"q{i}", 0) for i in range(1000)}
    assert len(per_case) == 1000
    run0 = {case_seed(0, "q1", i) for i in range(5)}
    run1 = {case_seed(1, "q1", i) for i in range(5)}
    assert len(run0) == 5 and not run0 & run1
    assert all(0 <= s < 2 ** 31 for s in run0 | run1)


def test_each_case_and_sample_gets_its_own_seed_in_a_run(pytester) -> None:
    write_scripted_suite(pytester, cases(5), answers(5, set()),
                         eval_test("exact(samples=3)", "test_gate"))
    assert pytester.runpytest("--aie-seed", "7", "--aie-temperature", "0.8").ret == 0
    seeds = [s["seed"] for r in read_records(pytester) for s in r["samples"]]
    assert len(seeds) == 15 and len(set(seeds)) == 15
    assert seeds[0] == case_seed(7, "c0", 0)


def _score(passed: bool | None, value: float | None = None) -> Score:
    return Score("m", value if value is not None else (None if passed is None else float(passed)),
                 passed, "r")


def test_an_even_split_of_samples_is_not_a_pass() -> None:
    value, passed, reason = combine([_score(True), _score(False)])
    assert passed is False and "even split" in reason
    assert combine([_score(True), _score(True), _score(False)])[1] is True
    # an unmeasured sample does not vote
    assert combine([_score(True), _score(None), _score(False)])[1] is False
    # samples without per-case pass/fail stay scored
    value, passed, _ = combine([_score(None, 0.2), _score(None, 0.4)])
    assert passed is None and value == pytest.approx(0.3)


# --- one clear line per bad input, before any work --------------------------------------------

def test_unknown_device_is_refused_before_anything_loads(pytester) -> None:
    write_scripted_suite(pytester, cases(2), answers(2, set()), eval_test("exact()"))
    result = pytester.runpytest("--aie-device", "gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aie-device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'*"])


def test_missing_baseline_is_found_before_generation(pytester) -> None:
    write_scripted_suite(pytester, cases(3), answers(3, set()), eval_test("exact()"))
    result = pytester.runpytest("--aie-baseline", "nope")
    assert result.ret == EXIT_HARNESS_ERROR
    assert "baseline" in result.stderr.str() and "nope.json" in result.stderr.str()
    assert "generating" not in result.stderr.str()
    assert not (pytester.path / "aie-results" / "results.jsonl").exists()


def test_harness_error_is_printed_once(pytester) -> None:
    write_jsonl(pytester, "cases", cases(2))
    pytester.makepyfile(test_suite=eval_test("exact()"))
    pytester.makeini(textwrap.dedent(INI).replace("answers.jsonl", "missing.jsonl"))
    result = pytester.runpytest("-rN")  # pytest's own short summary repeats it (CI: in full)
    assert result.ret == EXIT_HARNESS_ERROR
    out = result.stdout.str()
    assert out.count("Fix:") == 1, out


def test_progress_says_how_the_engine_really_batched() -> None:
    class Sixteen(Engine):
        name = "sixteen"
        micro_batch = 16

        def identity(self):  # pragma: no cover - not called
            return {}

        def generate(self, requests):  # pragma: no cover - not called
            return []

    assert Sixteen().describe_batches(40, 64) == "in 3 batches of up to 16"
    assert Sixteen().describe_batches(40, 8) == "in 5 batches of up to 8"
    assert Sixteen().describe_batches(1, 64) == "in 1 batch of up to 1"


def test_failing_case_line_shows_the_output_and_cuts_long_values(pytester) -> None:
    huge = "x" * 1_000_000
    rows = [{"id": "big", "prompt": "q0", "expected": huge}, {"id": "small", "prompt": "q1",
                                                             "expected": "a1"}]
    write_scripted_suite(pytester, rows, {"q0": "a short answer", "q1": "wrong\u202eanswer"},
                         eval_test("exact()"))
    result = pytester.runpytest("--junitxml=junit.xml", "-ra")
    assert result.ret == 1
    out = result.stdout.str()
    assert len(out) < 20_000
    result.stdout.fnmatch_lines(["FAILED *test_eval[[]small[]] - exact.match failed: *"
                                 "output: 'wrong\\u202eanswer'"])
    assert "output: 'a short answer'" in out
    assert (pytester.path / "junit.xml").stat().st_size < 20_000


def test_many_failing_cases_keep_the_terminal_short(pytester) -> None:
    n = 400
    write_scripted_suite(pytester, cases(n), answers(n, set(range(0, n, 2))), eval_test("exact()"))
    result = pytester.runpytest("-ra")
    assert result.ret == 1
    out = result.stdout.str()
    assert "Traceback" not in out and "= FAILURES =" not in out
    listed = [line for line in result.outlines if line.startswith("FAILED ")]
    assert len(listed) == 25
    result.stdout.fnmatch_lines(["failing eval cases (200):", "... and 175 more failing cases*",
                                 "*200 failed, 200 passed*"])
    assert len(pytester.runpytest("-ra", "-vv").stdout.str().splitlines()) > 600


def test_summary_gives_pass_at_every_k_and_the_cases_left_out() -> None:
    from pytest_aie.report.summary import suite_lines
    from pytest_aie.results.records import SuiteRow

    row = {"suite": "s", "metric": "exact.match", "binary": True, "n": 3, "passed": 2, "failed": 1,
           "unmeasured": 0, "estimate": 0.6, "interval": None, "cached": 0, "verdict": None,
           "sampling": {"k": 3, "pass_at_1": 0.5, "pass_at_k": 0.9, "pass_hat_k": 0.1,
                        "mean_consistency": 0.8, "flaky": [],
                        "pass_at": {1: 0.5, 2: 0.75, 3: 0.9}, "pass_hat": {1: 0.5, 2: 0.3, 3: 0.1},
                        "skipped_at": {1: 0, 2: 0, 3: 1}, "skipped_reason": "fewer measured samples"}}
    text = "\n".join(line for line, _ in suite_lines([SuiteRow(**row)]))
    assert "pass@1 50.0%, pass@2 75.0%, pass@3 90.0%; pass^2 30.0%, pass^3 10.0%" in text
    assert "1 case(s) at k=3" in text
