"""Integration tests of the statistical gates through pytester: verdicts and exit codes,
repeated sampling, baselines and base-vs-candidate comparisons, on the scripted engine."""

from __future__ import annotations

import json

import pytest
from scripted_suite import eval_test, read_records, write_scripted_suite
from scripted_suite import write_answers as scripted_answers

from pytest_aie.errors import EXIT_HARNESS_ERROR, EXIT_REGRESSION


def make_suite(pytester: pytest.Pytester, n: int, wrong: set[int], *, marker: str,
               answers_name: str = "answers") -> None:
    """n cases 'q{i}' -> 'a{i}'; the script answers wrongly on the indices in ``wrong``."""
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}",
              "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(n)]
    write_scripted_suite(pytester, cases, {}, eval_test(f"exact({marker})", "test_gate"))
    write_answers(pytester, n, wrong, answers_name)


def write_answers(pytester: pytest.Pytester, n: int, wrong: set[int], name: str = "answers") -> None:
    scripted_answers(pytester, {f"q{i}": "nope" if i in wrong else f"a{i}" for i in range(n)}, name)


def records(pytester: pytest.Pytester) -> list[dict]:
    return read_records(pytester)


def test_passing_gate_tolerates_failing_cases(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 200, wrong={3, 50}, marker="min_pass_rate=0.9")
    result = pytester.runpytest("-rx")
    assert result.ret == 0
    result.assert_outcomes(passed=198, xfailed=2)
    result.stdout.fnmatch_lines([
        "*test_suite.py::test_gate [[]exact.match[]]: 198/200 passed, 2 failed, 0 unmeasured "
        "(pass rate 99.0%, 95% CI [[]96.4%, 99.7%[]]) -> PASS (threshold 0.9)"])
    result.stdout.fnmatch_lines([
        "XFAIL test_suite.py::test_gate[[]c3[]] - exact.match failed: *left to the suite gate min_pass_rate=0.9*"])
    failed = [r for r in records(pytester) if r["passed"] is False]
    assert [r["case_id"] for r in failed] == ["c3", "c50"]


def test_failing_gate_exits_1(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 100, wrong=set(range(40)), marker="min_pass_rate=0.9")
    result = pytester.runpytest()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*60/100 passed*-> FAIL (threshold 0.9)"])


def test_inconclusive_gate_follows_policy(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 20, wrong={0, 1, 2}, marker="min_pass_rate=0.8")  # 85%, CI ~[64%, 95%]
    warn = pytester.runpytest()
    assert warn.ret == 0
    warn.stdout.fnmatch_lines(["*-> INCONCLUSIVE (threshold 0.8)", "WARNING *inconclusive*"])
    assert pytester.runpytest("--aie-inconclusive", "fail").ret == 1
    assert pytester.runpytest("--aie-inconclusive", "pass").ret == 0
    point = pytester.runpytest("--aie-gate", "point")
    assert point.ret == 0
    point.stdout.fnmatch_lines(["*-> PASS (threshold 0.8)"])


RED = "\x1b[31m"


def test_inconclusive_counted_as_failure_ends_in_a_named_red_line(pytester: pytest.Pytester) -> None:
    # 17/20 against 0.8: inconclusive; --aie-inconclusive fail makes pytest-aie exit 1, and
    # the run must not end on pytest's green "17 passed, 3 xfailed"
    make_suite(pytester, 20, wrong={0, 1, 2}, marker="min_pass_rate=0.8")
    result = pytester.runpytest("-p", "no:randomly", "--color=yes", "--aie-inconclusive", "fail")
    assert result.ret == 1
    warn, last = [line for line in result.outlines if line.strip()][-2:]
    assert warn.startswith(RED) and "GATE FAILED" in warn and "(exit 1)" in warn
    assert "test_suite.py::test_gate [exact.match] (inconclusive, counted as a failure by " \
        "--aie-inconclusive fail)" in warn
    assert "17 passed" in last and last.lstrip().startswith(RED)


def test_closing_line_names_every_failed_item(tmp_path) -> None:
    from types import SimpleNamespace

    from pytest_aie.results.records import SuiteRow
    from pytest_aie.session import AieSession
    from pytest_aie.settings import Settings
    from pytest_aie.terminal import closing_line

    def row(suite: str, **kw: object) -> SuiteRow:
        return SuiteRow.from_json({"suite": suite, "metric": "m", "verdict": "pass", **kw})

    aie = AieSession(settings=Settings(), rootdir=tmp_path)
    aie.policy = SimpleNamespace(inconclusive="fail")
    aie.suite_rows = [
        row("elo", verdict="fail", failed_expectations=["cot > riddle", "riddle > terse"], elo={"expect": [
            {"expect": "cot > riddle", "verdict": "fail"}, {"expect": "cot > terse", "verdict": "pass"},
            {"expect": "riddle > terse", "verdict": "fail"}]}),  # as gates.evaluate_suites writes it
        row("must", must_pass_failed=["c1", "c2"]),
        row("fast", budgets={"p90_ms": {"verdict": "fail"}, "p50_ms": {"verdict": "inconclusive"}}),
        row("unsure", verdict="inconclusive"),
        row("fine"),
    ]
    assert closing_line(aie, 1) == (
        "pytest-aie: GATE FAILED: 4 suite gate(s) failed: "
        "elo [m] (expect cot > riddle failed; expect riddle > terse failed), "
        "must [m] (must-pass cases failed: c1, c2), "
        "fast [m] (latency budget p90_ms failed; latency budget p50_ms inconclusive, counted as a "
        "failure by --aie-inconclusive fail), "
        "unsure [m] (inconclusive, counted as a failure by --aie-inconclusive fail) (exit 1)")
    aie.policy = SimpleNamespace(inconclusive="warn")  # the same rows under the default policy
    assert "unsure" not in (closing_line(aie, 1) or "") and "p50_ms" not in (closing_line(aie, 1) or "")
    aie.suite_rows = [row("fine")]
    assert closing_line(aie, 0) is None
    assert closing_line(aie, 1) == "pytest-aie: the run fails with exit 1: see the summary above"
    aie.pytest_status = 1
    assert closing_line(aie, 1) is None  # pytest's own failures: pytest's own red line says so
    aie.harness_errors = ["pytest-aie: x", "pytest-aie: y"]
    assert closing_line(aie, EXIT_HARNESS_ERROR) == \
        "pytest-aie: the harness could not evaluate (2 problems above) (exit 10)"


def test_must_pass_case_fails_the_run(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 50, wrong={7}, marker="min_pass_rate=0.5, must_pass=['c7']")
    result = pytester.runpytest()
    assert result.ret == 1
    result.assert_outcomes(passed=49, failed=1)
    result.stdout.fnmatch_lines(["*must-pass cases failed: c7*"])


def test_without_threshold_a_failing_case_fails(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 10, wrong={1}, marker="")
    result = pytester.runpytest()
    assert result.ret == 1
    result.assert_outcomes(passed=9, failed=1)


def test_ini_threshold_applies_to_every_suite(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 100, wrong=set(range(40)), marker="")
    result = pytester.runpytest("-o", "aie_min_pass_rate=0.9")
    assert result.ret == 1
    result.assert_outcomes(passed=60, xfailed=40)


def test_bad_gate_argument(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 5, wrong=set(), marker="min_pass_rate=90")
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*min_pass_rate=90) must be a rate in [[]0, 1[]]. Fix: write e.g. min_pass_rate=0.8"])


def test_regression_against_saved_baseline(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 400, wrong=set(range(0, 400, 10)), marker="min_pass_rate=0.5")  # 90%
    saved = pytester.runpytest("--aie-save-baseline", "main")
    assert saved.ret == 0
    path = pytester.path / "aie-baselines" / "main.json"
    first = path.read_text()
    data = json.loads(first)
    assert data["format_version"] == 3 and len(data["suites"]) == 1
    pytester.runpytest("--aie-save-baseline", "main")
    assert path.read_text() == first  # stable: same outcomes, same bytes

    same = pytester.runpytest("--aie-baseline", "main")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["baseline main: *no significant change*on 400 shared cases"])

    # 15 more cases fail (a 3.75-point drop): significant and beyond the 2-point margin.
    write_answers(pytester, 400, set(range(0, 400, 10)) | set(range(1, 151, 10)))
    worse = pytester.runpytest("--aie-baseline", "main")
    assert worse.ret == EXIT_REGRESSION
    worse.stdout.fnmatch_lines(["baseline main: *REGRESSION: delta -0.037*p=3.05e-05 "
                                "(Holm-adjusted 6.1e-05 over 2 decisions) on 400 shared cases",
                                "  newly failing (15): c1, c11, c21*"])

    # Cases added and removed: compared on the shared ones, and said so.
    cases = pytester.path / "cases.jsonl"
    lines = cases.read_text().splitlines()
    cases.write_text("\n".join(lines[:390] + [json.dumps({"id": "new", "prompt": "q1",
                                                          "expected": "x"})]))
    changed = pytester.runpytest("--aie-baseline", "main")
    changed.stdout.fnmatch_lines(["*on 390 shared cases (1 added, 10 removed since the reference)"])


def test_missing_baseline_is_harness_error(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 5, wrong=set(), marker="")
    result = pytester.runpytest("--aie-baseline", "nosuch")
    assert result.ret == EXIT_HARNESS_ERROR
    # checked before any generation, so the line may come on stderr (pytest.exit)
    assert any(line.endswith("nosuch.json' not found. Fix: save one first with --aie-save-baseline "
                             "NAME (and commit it)") for line in result.stdout.lines + result.stderr.lines)


def test_repeated_sampling_reports_pass_at_k_and_flaky_cases(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", cases="\n".join(
        json.dumps({"id": f"c{i}", "prompt": f"q{i}", "expected": "yes"}) for i in range(4)))
    pytester.makeconftest("""
        from pytest_aie.engines import register_engine
        from pytest_aie.engines.scripted import ScriptedEngine

        from collections import Counter

        SEEN = Counter()

        def answer(request):
            # c0 always right, c1 never, c2 and c3 right on every second sample
            case = int(request.messages[-1]["content"][1:])
            SEEN[case] += 1
            if case == 0 or (case >= 2 and SEEN[case] % 2 == 0):
                return "yes"
            return "no"

        register_engine("seeded", lambda **kw: ScriptedEngine(answer))
    """)
    pytester.makepyfile(test_s="""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.exact(min_pass_rate=0.1)
        def test_sampled(case, output):
            pass
    """)
    result = pytester.runpytest("--aie-engine", "seeded", "--aie-samples", "4", "--aie-cache", "off")
    result.stdout.fnmatch_lines(["*4 samples per case: pass@1 50.0%, pass@2 *, pass@3 *, pass@4 75.0%; "
                                 "pass^2 *, pass^3 *, pass^4 25.0%; consistency *",
                                 "*flaky cases (2): c2, c3"])
    recs = {r["case_id"]: r for r in records(pytester)}
    assert len({s["seed"] for s in recs["c2"]["samples"]}) == 4  # four different samples
    assert sorted(s["passed"] for s in recs["c2"]["samples"]) == [False, False, True, True]
    assert recs["c0"]["value"] == 1.0 and recs["c1"]["value"] == 0.0 and recs["c2"]["value"] == 0.5
    assert recs["c0"]["consistency"] == 1.0 and recs["c2"]["consistency"] == 0.5


def test_candidate_regression_per_suite_and_tag(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 300, wrong=set(), marker="min_pass_rate=0.5")
    # The candidate forgot the odd cases 1..59 (30 of 150 odd cases): a slice regression.
    write_answers(pytester, 300, set(range(1, 60, 2)), name="candidate")
    result = pytester.runpytest("--aie-candidate", "scripted:candidate.jsonl")
    assert result.ret == EXIT_REGRESSION
    result.stdout.fnmatch_lines([
        "candidate vs default: test_suite.py::test_gate [[]exact.match[]]: REGRESSION: delta -0.100*",
        "  newly failing (30): c1, c3*",
        "candidate vs default: test_suite.py::test_gate (tag:even) [[]exact.match[]]: no significant change*",
        "candidate vs default: test_suite.py::test_gate (tag:odd) [[]exact.match[]]: REGRESSION: delta -0.200*"])
    # one record per case and model: the candidate's is gated, the base's is the reference
    recs = {r["model"]: r for r in records(pytester) if r["case_id"] == "c1"}
    assert recs["candidate"]["passed"] is False and recs["candidate"]["gated"] is True
    assert recs["default"]["passed"] is True and recs["default"]["gated"] is False

    write_answers(pytester, 300, set(range(0, 300, 3)), name="answers")  # base is worse
    improved = pytester.runpytest("--aie-candidate", "scripted:candidate.jsonl")
    assert improved.ret == 0
    improved.stdout.fnmatch_lines(["candidate vs default: test_suite.py::test_gate [[]exact.match[]]: improved*"])


def test_candidate_adapter_shares_the_base_engine(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 200, wrong=set(), marker="min_pass_rate=0.5")
    (pytester.path / "lora").mkdir()
    pytester.makeconftest("""
        from pytest_aie.engines import register_engine
        from pytest_aie.engines.scripted import ScriptedEngine

        CREATED = []

        def answer(request):
            i = int(request.messages[-1]["content"][1:])
            # the adapter "forgets" every fourth case
            if request.adapter and request.adapter.endswith("lora") and i % 4 == 0:
                return "forgot"
            return f"a{i}"

        def make(**kw):
            CREATED.append(1)
            return ScriptedEngine(answer)

        register_engine("adapterable", make)

        def pytest_sessionfinish(session):
            print("ENGINES CREATED", len(CREATED))
    """)
    result = pytester.runpytest("-s", "--aie-engine", "adapterable", "--aie-candidate-adapter", "lora")
    assert result.ret == EXIT_REGRESSION
    result.stdout.fnmatch_lines(["*candidate vs default: *REGRESSION: delta -0.250*"])
    result.stdout.fnmatch_lines(["*ENGINES CREATED 1*"])  # base and candidate share one engine
    recs = {r["model"]: r for r in records(pytester) if r["case_id"] == "c4"}
    assert recs["candidate"]["adapter"].endswith("lora") and recs["candidate"]["passed"] is False
    assert recs["default"]["adapter"] is None and recs["default"]["passed"] is True


def test_candidate_adapter_needs_adapter_support(pytester: pytest.Pytester) -> None:
    make_suite(pytester, 5, wrong=set(), marker="")
    pytester.makeconftest("""
        from pytest_aie.engines import register_engine
        from pytest_aie.engines.scripted import ScriptedEngine

        class NoAdapters(ScriptedEngine):
            capabilities = frozenset({"chat", "prompt"})

        register_engine("plain", lambda **kw: NoAdapters({}))
    """)
    result = pytester.runpytest("--aie-engine", "plain", "--aie-candidate-adapter", "lora")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*--aie-candidate-adapter needs an engine with LoRA adapters*Fix: *"])


def test_family_wise_control_over_suite_and_tags(pytester: pytest.Pytester) -> None:
    # 500 cases in 10 tags of 50. The candidate misses 6 cases of tag t0: alone, that tag
    # would regress (McNemar p = 1/64, delta -12 points), but it is one of 11 decisions.
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}", "tags": [f"t{i % 10}"]}
             for i in range(500)]
    write_scripted_suite(pytester, cases, {}, eval_test("exact(min_pass_rate=0.5)", "test_gate"))
    write_answers(pytester, 500, set())
    write_answers(pytester, 500, set(range(0, 60, 10)), name="candidate")
    result = pytester.runpytest("--aie-candidate", "scripted:candidate.jsonl")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "candidate vs default: test_suite.py::test_gate (tag:t0) [[]exact.match[]]: no significant "
        "change: delta -0.120*p=0.0156 (Holm-adjusted 0.188 over 12 decisions)*",
        "*(tag:t0) [[]exact.match[]]: a drop with p=0.0156, not significant after the Holm "
        "adjustment over 12 decisions (adjusted p=0.188): not a regression"])


def test_grouped_cases_are_compared_cluster_by_cluster(pytester: pytest.Pytester) -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}", "group": f"g{i // 20}"}
             for i in range(200)]
    write_scripted_suite(pytester, cases, {}, eval_test("exact(min_pass_rate=0.5)", "test_gate"))
    write_answers(pytester, 200, set())
    assert pytester.runpytest("--aie-save-baseline", "main").ret == 0
    saved = json.loads((pytester.path / "aie-baselines" / "main.json").read_text())
    assert saved["suites"]["test_suite.py::test_gate::exact.match"]["cases"]["c25"]["group"] == "g1"
    # one whole group of 20 paraphrases now fails: one cluster, not 20 independent cases
    write_answers(pytester, 200, set(range(20)))
    result = pytester.runpytest("--aie-baseline", "main")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["baseline main: *no significant change: delta -0.100*p=0.5 *, "
                                 "10 clusters on 200 shared cases"])
    # the same drop spread over every group is a regression
    write_answers(pytester, 200, set(range(0, 200, 10)))
    assert pytester.runpytest("--aie-baseline", "main").ret == EXIT_REGRESSION
