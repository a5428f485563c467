"""Integration tests: whole pytest runs through pytester, on the scripted engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scripted_suite import write_scripted_suite

from pytest_aie.errors import EXIT_HARNESS_ERROR
from pytest_aie.results.records import FORMAT_VERSION

CASES = [
    {"id": "add", "prompt": "2+2?", "expected": "4", "tags": ["math"]},
    {"id": "capital", "prompt": "Capital of France?", "expected": "Paris", "tags": ["geo"]},
    {"id": "sky", "prompt": "Colour of the sky?", "expected": "blue"},
]
ANSWERS = {"2+2?": "4", "Capital of France?": "Paris.", "Colour of the sky?": "blue"}

TEST_FILE = """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact(normalize="all")
def test_qa(case, output):
    assert output.text
"""


def write_suite(pytester: pytest.Pytester, answers: dict[str, str] | None = None,
                cases: list[dict] | None = None, test: str = TEST_FILE) -> None:
    write_scripted_suite(pytester, cases or CASES, ANSWERS if answers is None else answers, test)


def read_results(pytester: pytest.Pytester) -> tuple[dict, list[dict]]:
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()
    header, *records = [json.loads(line) for line in lines]
    return header, [r for r in records if r.get("type") == "case"]


def test_markers_and_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*@pytest.mark.dataset(path, *, prompt=None*",
                                 "*@pytest.mark.exact(kind='match'*"])
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["output -- *", "*whole-suite batched pass*", "model [[]session scope[]]*",
                                 "models [[]session scope[]]*"])
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--aie-engine=NAME*", "*aie_engine*"])


def test_passing_suite_writes_results_and_report(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*pytest-aie summary*",
                                 "test_suite.py::test_qa [[]exact.match[]]: 3/3 passed, 0 failed*"])
    header, records = read_results(pytester)
    assert header["type"] == "run" and header["format_version"] == FORMAT_VERSION
    assert header["engine"]["engine"] == "scripted"
    assert {r["case_id"] for r in records} == {"add", "capital", "sky"}
    assert all(r["passed"] is True and r["reason"] for r in records)
    assert next(r for r in records if r["case_id"] == "add")["tags"] == ["math"]
    html = (pytester.path / "aie-results" / "report.html").read_text()
    assert "test_suite.py::test_qa" in html


def test_suite_is_generated_in_one_batch(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    pytester.makeconftest("""
        import pytest
        from pytest_aie.engines import register_engine
        from pytest_aie.engines.scripted import ScriptedEngine
        ENGINE = ScriptedEngine({"2+2?": "4", "Capital of France?": "Paris", "Colour of the sky?": "blue"})
        register_engine("counting", lambda **kw: ENGINE)

        def pytest_sessionfinish(session):
            print("BATCHES", ENGINE.calls)
    """)
    result = pytester.runpytest("-s", "--aie-engine", "counting")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*BATCHES [[]3[]]*"])


def test_failing_case_fails_with_one_line_reason(pytester: pytest.Pytester) -> None:
    write_suite(pytester, answers={**ANSWERS, "Colour of the sky?": "green"})
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*exact.match failed: expected 'blue', got 'green'*"])
    assert "Traceback" not in result.stdout.str()
    _, records = read_results(pytester)
    sky = next(r for r in records if r["case_id"] == "sky")
    assert sky["passed"] is False and sky["output"] == "green"


def test_test_body_assertion_is_recorded_as_failure(pytester: pytest.Pytester) -> None:
    write_suite(pytester, test=TEST_FILE.replace("assert output.text", "assert case.id != 'add', 'no add'"))
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    _, records = read_results(pytester)
    add = next(r for r in records if r["case_id"] == "add")
    assert add["passed"] is False and "no add" in add["reason"]


def test_generation_error_is_unmeasured(pytester: pytest.Pytester) -> None:
    write_suite(pytester, test=TEST_FILE.replace("assert output.text", "assert case.id"))
    pytester.makeconftest("""
        from pytest_aie.engines import register_engine
        from pytest_aie.engines.scripted import ScriptedEngine
        register_engine("strict", lambda **kw: ScriptedEngine({"2+2?": "4"}, strict=True))
    """)
    result = pytester.runpytest("--aie-engine", "strict")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*unmeasured: generation failed: no scripted answer*"])
    # cases the engine could not generate are an infrastructure problem, not a model failure
    assert result.ret == 10
    result.stdout.fnmatch_lines(["*the engine failed on 2 of 3 cases (no scripted answer*"])
    _, records = read_results(pytester)
    assert [r["passed"] for r in records if r["passed"] is not True] == [None, None]
    assert [r["status"] for r in records if r["passed"] is not True] == ["unmeasured"] * 2


@pytest.mark.parametrize("bad_line, message", [
    ('{"id": "x", "prompt": "p"', "cases.jsonl:4: invalid JSON*"),
    ('{"id": "add", "prompt": "p", "expected": "e"}', "*cases.jsonl:4: duplicate case id 'add' (first on line 1)*"),
    ('{"id": "y", "expected": "e"}', "*cases.jsonl:4: case is missing field(s): prompt*"),
])
def test_bad_dataset_is_one_line_and_exit_10(pytester: pytest.Pytester, bad_line: str,
                                             message: str) -> None:
    write_suite(pytester)
    path = pytester.path / "cases.jsonl"
    path.write_text(path.read_text() + "\n" + bad_line + "\n")
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([f"*pytest-aie: *{message}Fix: *"])
    assert "Traceback" not in result.stdout.str()


def test_unknown_marker_argument(pytester: pytest.Pytester) -> None:
    write_suite(pytester, test=TEST_FILE.replace('normalize="all"', 'normalise="all"'))
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*pytest-aie: @pytest.mark.exact got unknown argument 'normalise'. "
                                 "Fix: use only kind, normalize, *"])


def test_eval_marker_without_dataset(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.exact()
        def test_x(): pass
    """)
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*@pytest.mark.exact needs cases. Fix: add @pytest.mark.dataset*"])


def test_unknown_engine_stops_with_exit_10(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    result = pytester.runpytest("--aie-engine", "nosuch")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*pytest-aie: unknown engine 'nosuch'. Fix: use --aie-engine with one of *hf*"])
    assert "Traceback" not in result.stdout.str()


def test_missing_optional_dependency(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    pytester.makeconftest("import sys\nsys.modules['openai'] = None  # as if not installed\n")
    result = pytester.runpytest("--aie-engine", "openai", "--aie-base-url", "http://127.0.0.1:9/v1")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*needs the Python package 'openai'*Fix: pip install 'pytest-aie[[]openai[]]'*"])


def test_bad_option_value_is_usage_error(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    result = pytester.runpytest("--aie-cache", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aie-cache must be one of on, off, refresh, got 'sometimes'*"])


def test_cache_marks_second_run_cached(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    args = ["--aie-cache", "on", "--aie-cache-dir", str(pytester.path / "cache")]
    pytester.runpytest(*args).assert_outcomes(passed=3)
    _, first = read_results(pytester)
    assert not any(r["cached"] for r in first)
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*3 cached*"])
    _, second = read_results(pytester)
    assert all(r["cached"] and r["timings"]["e2e_s"] is None for r in second)
    pytester.runpytest("--aie-cache", "refresh", "--aie-cache-dir", str(pytester.path / "cache"))
    _, third = read_results(pytester)
    assert not any(r["cached"] for r in third)


def _records_by_case(pytester: pytest.Pytester) -> dict[str, dict]:
    _, records = read_results(pytester)
    keep = ("passed", "value", "reason", "output", "metric")
    return {r["nodeid"]: {k: r[k] for k in keep} for r in records}


def test_xdist_gives_same_results_as_serial(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": str(i % 3)} for i in range(40)]
    answers = {f"q{i}": str(i % 2) for i in range(40)}
    write_suite(pytester, answers=answers, cases=cases)
    serial = pytester.runpytest_subprocess("-p", "no:randomly")
    serial.assert_outcomes(passed=sum(1 for i in range(40) if i % 3 == i % 2),
                           failed=sum(1 for i in range(40) if i % 3 != i % 2))
    expected = _records_by_case(pytester)
    parallel = pytester.runpytest_subprocess("-n", "2")
    assert parallel.ret == serial.ret == 1
    assert _records_by_case(pytester) == expected
    parallel.stdout.fnmatch_lines(["*pytest-aie summary*", "*: 14/40 passed, 26 failed*"])


def test_crash_keeps_finished_results(pytester: pytest.Pytester) -> None:
    write_suite(pytester, test=TEST_FILE.replace(
        "assert output.text", "import os\n    if case.id == 'sky': os._exit(3)"))
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == 3
    _, records = read_results(pytester)
    assert [r["case_id"] for r in records] == ["add", "capital"]


def test_importing_plugin_pulls_in_no_heavy_dependency() -> None:
    code = ("import sys, pytest_aie, pytest_aie.plugin, pytest_aie.engines, pytest_aie.scorers.exact, "
            "pytest_aie.session\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'sentence_transformers', 'vllm', "
            "'sacrebleu', 'rouge_score', 'numpy', 'scipy') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_fixture_generates_through_cache(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    pytester.makepyfile(test_model="""
        def test_direct(model):
            out = model.generate("2+2?", max_tokens=4)
            assert out.text == "4" and out.engine == "scripted"

        def test_named(models):
            assert "default" in models and "alt" in models
            assert models["alt"].generate("2+2?").text == "four"
    """)
    pytester.makefile(".jsonl", alt='{"prompt": "2+2?", "answer": "four"}')
    result = pytester.runpytest("test_model.py", "--aie-models", "alt=scripted:alt.jsonl")
    result.assert_outcomes(passed=2)


def test_unreachable_server_is_one_line_and_exit_10(pytester: pytest.Pytester) -> None:
    pytest.importorskip("openai")
    import socket

    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_suite(pytester)
    result = pytester.runpytest("--aie-engine", "openai", "--aie-model", "m",
                                "--aie-base-url", f"http://127.0.0.1:{port}/v1")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([f"*pytest-aie: cannot reach OpenAI-compatible server at "
                                 f"http://127.0.0.1:{port}/v1*Fix: start the server or set --aie-base-url*"])
    assert "Traceback" not in result.stdout.str()


def test_missing_model_folder_is_one_line_and_exit_10(pytester: pytest.Pytester) -> None:
    write_suite(pytester)
    result = pytester.runpytest("--aie-engine", "hf", "--aie-model", "./no/such/model")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*pytest-aie: *no/such/model*Fix: *"])
    assert "Traceback" not in result.stdout.str()


COUNTING_SCORER = """
    import os
    from pytest_aie.scorers.base import Score, Scorer
    from pytest_aie import register_eval_marker

    class Counting(Scorer):
        marker = "counted"
        metric = "counted.match"

        def score(self, output, case):
            ok = output == case.expected
            return Score(self.metric, float(ok), ok, "counted")

        def score_batch(self, outputs, cases):
            with open(os.environ["AIE_COUNT_FILE"], "a") as fh:  # one line per call, any process
                fh.write(f"{cases[0].suite} {len(cases)}\\n")
            return super().score_batch(outputs, cases)

    register_eval_marker("counted", lambda *a, base_dir, engine, **kw: Counting(),
                         "counted(): exact match that counts its score_batch calls")
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_each_suite_is_scored_once_whatever_n_is(pytester: pytest.Pytester, monkeypatch,
                                                 workers: str) -> None:
    pytest.importorskip("xdist")
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"} for i in range(12)]
    write_scripted_suite(pytester, cases, {f"q{i}": f"a{i}" for i in range(12)}, """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.counted
def test_one(case, output):
    pass

@pytest.mark.dataset("cases.jsonl", system="be brief")
@pytest.mark.counted
def test_two(case, output):
    pass
""")
    pytester.makeconftest(COUNTING_SCORER)
    count = pytester.path / "calls.txt"
    monkeypatch.setenv("AIE_COUNT_FILE", str(count))
    result = pytester.runpytest_subprocess("-n", workers, "-p", "xdist")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=24)
    calls = sorted(count.read_text().splitlines())
    assert calls == ["test_suite.py::test_one 12", "test_suite.py::test_two 12"], calls


def test_several_eval_markers_on_one_test_each_with_its_own_gate(pytester: pytest.Pytester) -> None:
    pytest.importorskip("rouge_score")
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"answer number {i}"} for i in range(30)]
    answers = {f"q{i}": ("something else" if i < 12 else f"answer number {i}") for i in range(30)}
    write_scripted_suite(pytester, cases, answers, """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact(min_pass_rate=0.9)
@pytest.mark.similarity("rouge1", min_score=0.1)
def test_two(case, output):
    pass

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact()
@pytest.mark.similarity("rouge1", min_score=0.1)
def test_ungated_exact(case, output):
    pass
""")
    result = pytester.runpytest("-rx")
    assert result.ret == 1
    out = result.stdout.str()
    # one summary line, one gate and one verdict per metric
    result.stdout.fnmatch_lines(["*::test_two [[]exact.match[]]: 18/30 passed, 12 failed*-> FAIL (threshold 0.9)"])
    result.stdout.fnmatch_lines(["*::test_two [[]similarity.rouge1[]]: 30/30 scored*-> PASS (threshold 0.1)"])
    assert "GATE FAILED: 1 suite gate(s) failed: test_suite.py::test_two [exact.match]" in out
    # a case fails when any metric fails it: gated -> xfailed, ungated -> failed
    result.assert_outcomes(passed=36, xfailed=12, failed=12)
    _, records = read_results(pytester)
    c0 = [r for r in records if r["case_id"] == "c0" and r["suite"].endswith("test_two")]
    assert sorted(r["metric"] for r in c0) == ["exact.match", "similarity.rouge1"]
    assert {r["status"] for r in c0} == {"failed", "scored"}


def test_two_evals_measuring_the_same_metric_are_refused(pytester: pytest.Pytester) -> None:
    cases = [{"id": "a", "prompt": "p", "expected": "x"}]
    write_scripted_suite(pytester, cases, {"p": "x"}, """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact(min_pass_rate=0.5)
@pytest.mark.exact()
def test_twice(case, output):
    pass
""")
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*two eval markers on one test measure the same metric 'exact.match'*"])


SAMPLE_SCORER = """
    from pytest_aie.scorers.base import Score, Scorer
    from pytest_aie import register_eval_marker

    class Short(Scorer):
        # a continuous, lower-is-better metric that reads whole samples: tokens and request
        marker = "short"
        metric = "short.tokens"
        binary = False
        higher_is_better = False

        def required_fields(self):
            return ("budget",)

        def score(self, output, case):  # pragma: no cover - score_samples is used
            raise AssertionError("score_samples should be called")

        def score_samples(self, samples):
            out = []
            for s in samples:
                assert s.request.sampling.max_tokens == 7 and s.model == "default"
                assert s.generations == {"default": s.generation} and s.index == 0
                out.append(Score(self.metric, float(s.generation.completion_tokens),
                                 s.generation.completion_tokens <= s.case["budget"],
                                 f"{s.generation.completion_tokens} tokens"))
            return out

    register_eval_marker("short", lambda *a, base_dir, engine, **kw: Short(), "short()")
"""


def test_scorer_sees_whole_samples_and_declares_what_it_is(pytester: pytest.Pytester) -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "budget": 2} for i in range(4)]
    answers = {"q0": "one", "q1": "one two", "q2": "one two three", "q3": "a b c d"}
    write_scripted_suite(pytester, cases, answers, """
import pytest

@pytest.mark.dataset("cases.jsonl", max_tokens=7)
@pytest.mark.short
def test_len(case, output):
    pass
""")
    pytester.makeconftest(SAMPLE_SCORER)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=2)
    _, records = read_results(pytester)
    assert [r["value"] for r in records] == [1.0, 2.0, 3.0, 4.0]
    assert all(r["binary"] is False and r["higher_is_better"] is False for r in records)
    # the declared required field is checked when the dataset loads
    (pytester.path / "cases.jsonl").write_text('{"id": "x", "prompt": "q0"}\n')
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*case is missing field(s): budget*"])


def test_engine_options_reach_the_engine_and_its_cache_identity(pytester: pytest.Pytester) -> None:
    cases = [{"id": "known", "prompt": "p", "expected": "x"},
             {"id": "unknown", "prompt": "q", "expected": "fallback"}]
    write_scripted_suite(pytester, cases, {"p": "x"}, """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact()
def test_opts(case, output):
    pass
""")
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n")
    cache = ["--aie-cache-dir", str(pytester.path / "cache")]
    # default="fallback" reaches ScriptedEngine(default=...): the unknown prompt gets it
    first = pytester.runpytest(*cache, "--aie-engine-options", 'default="fallback"')
    assert first.ret == 0, first.stdout.str()
    # other options: another cache identity, so nothing is served from the first run's cache
    second = pytester.runpytest(*cache, "--aie-engine-options", 'default="other"')
    assert second.ret == 1
    assert "generating 2 of 2 requests" in second.stderr.str()
    # a typo is one line and exit 10 before anything runs
    typo = pytester.runpytest(*cache, "--aie-engine-options", "defualt=1")
    assert typo.ret == EXIT_HARNESS_ERROR
    assert "engine 'scripted' has no option 'defualt'" in typo.stderr.str() + typo.stdout.str()
    bad = pytester.runpytest("--aie-engine-options", "device=cpu")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "use --aie-device" in bad.stderr.str()


def test_whole_number_options_are_checked_alike() -> None:
    from pytest_aie.errors import UsageError, whole_number

    assert whole_number("k", 3) == 3
    for bad in (0, -1, 2.5, True, "3", None):
        with pytest.raises(UsageError) as info:
            whole_number("k", bad, example=10)
        assert f"k={bad!r} must be a whole number >= 1" in str(info.value)
        assert "write e.g. k=10" in str(info.value)
    with pytest.raises(UsageError, match=r"@x: overlap=-1 must be a whole number >= 0"):
        whole_number("overlap", -1, least=0, where="@x: ")
