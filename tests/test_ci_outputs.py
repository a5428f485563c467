"""The CI outputs around the report: the Markdown summary appended to $GITHUB_STEP_SUMMARY and
pytest-aie's properties in pytest's own --junitxml."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from scripted_suite import eval_test, write_answers, write_scripted_suite

from pytest_aie.errors import EXIT_REGRESSION
from pytest_aie.report.markdown import cell, markdown_summary

N = 60


def make_suite(pytester: pytest.Pytester, wrong: set[int]) -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"} for i in range(N)]
    write_scripted_suite(pytester, cases, answers(wrong), eval_test("exact(min_pass_rate=0.5)", "test_gate"))


def answers(wrong: set[int]) -> dict[str, str]:
    return {f"q{i}": f"wrong|<b>{i}</b>" if i in wrong else f"a{i}" for i in range(N)}


def test_step_summary_has_suites_regressions_and_newly_failing_cases(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    make_suite(pytester, wrong=set())
    summary = pytester.path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert pytester.runpytest("-p", "no:randomly", "--aie-save-baseline", "main").ret == 0
    first = summary.read_text()
    assert first.startswith("earlier step\n## pytest-aie — exit 0 (passed)")
    assert "| test\\_suite.py::test\\_gate | exact.match | 100.0% | [94.0%, 100.0%] | ≥ 50.0% | PASS |" \
        in first
    assert "Newly failing" not in first
    write_answers(pytester, answers(set(range(25))))
    result = pytester.runpytest("-p", "no:randomly", "--aie-baseline", "main")
    assert result.ret == EXIT_REGRESSION
    text = summary.read_text()[len(first):]  # appended, the earlier text kept
    assert text.startswith("## pytest-aie — exit 11 (regression)")
    assert "**REGRESSION** baseline main: test\\_suite.py::test\\_gate [exact.match]: REGRESSION" \
        .replace("[exact", "\\[exact").replace("match]", "match\\]") in text
    assert "### Newly failing cases against the baseline (25)" in text
    assert "| test\\_suite.py::test\\_gate | exact.match | c0 | passed | failed | wrong\\|&lt;b&gt;0&lt;/b&gt; |" \
        in text
    assert "c19 |" in text and "c20 |" not in text  # the first 20, then a count
    assert "... and 5 more newly failing cases" in text
    assert "HTML report: " in text and "results log: " in text and "results.jsonl" in text


def test_unwritable_step_summary_warns_and_never_fails_the_run(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    make_suite(pytester, wrong=set())
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path))  # a folder: cannot append
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*WARNING pytest-aie: could not append the summary to "
                                 "$GITHUB_STEP_SUMMARY*"])


def test_junitxml_carries_case_and_suite_properties(pytester: pytest.Pytester) -> None:
    make_suite(pytester, wrong={3})
    result = pytester.runpytest("-p", "no:randomly", "--junitxml=junit.xml")
    assert result.ret == 0
    root = ET.parse(pytester.path / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")}
             for tc in suite.iter("testcase")}
    assert len(cases) == N
    assert cases["test_gate[c3]"] == {  # the scripted engine measures no latency
        "aie.suite": "test_suite.py::test_gate", "aie.case_id": "c3", "aie.model": "default",
        "aie.cached": "false", "aie.exact.match.status": "failed", "aie.exact.match.value": "0"}
    assert cases["test_gate[c4]"]["aie.exact.match.status"] == "passed"
    props = suite.find("properties")
    assert props is not None
    glob = {p.get("name"): p.get("value") for p in props.iter("property")}
    name = "aie.suite[test_suite.py::test_gate [exact.match]]"
    assert glob[f"{name}.verdict"] == "pass" and glob[f"{name}.n"] == str(N)
    assert abs(float(glob[f"{name}.value"]) - (N - 1) / N) < 1e-6
    assert glob[f"{name}.threshold"] == "0.5" and glob["aie.exit_status"] == "0"
    low, high = map(float, glob[f"{name}.interval"].split(","))
    assert low < (N - 1) / N < high


def test_junitxml_properties_travel_from_xdist_workers(pytester: pytest.Pytester) -> None:
    make_suite(pytester, wrong={3})
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--junitxml=junit.xml")
    assert result.ret == 0
    root = ET.parse(pytester.path / "junit.xml").getroot()
    statuses = [p.get("value") for p in root.iter("property")
                if p.get("name") == "aie.exact.match.status"]
    assert sorted(statuses) == ["failed"] + ["passed"] * (N - 1)
    assert any(p.get("name") == "aie.exit_status" for p in root.iter("property"))


def test_case_properties_of_a_timed_case_and_its_reference_model() -> None:
    from pytest_aie.report.junit import case_properties

    own = {"suite": "s", "case_id": "c1", "metric": "exact.match", "model": "candidate",
           "status": "passed", "value": 1.0, "cached": False, "timings": {"total": 0.25}}
    ref = {**own, "model": "default", "status": "failed", "value": 0.0}
    props = dict(case_properties([own, ref]))
    assert props["aie.latency_s"] == "0.25" and props["aie.model"] == "candidate"
    assert props["aie.exact.match.status"] == "passed"
    assert props["aie.exact.match@default.status"] == "failed"
    assert "aie.latency_s" not in dict(case_properties([{**own, "cached": True}]))


def test_markdown_cells_cannot_break_the_table_or_add_markup() -> None:
    assert cell("a|b\nc <script>x</script> `code` *b* [l](u)") == \
        "a\\|b c &lt;script&gt;x&lt;/script&gt; \\`code\\` \\*b\\* \\[l\\](u)"
    assert cell("\u202eevil") == "<U+202E>evil".replace("<", "&lt;").replace(">", "&gt;")
    changes = [{"suite": "s", "metric": "m", "model": "default", "case_id": f"c{i}",
                "change": "newly_failing", "old": {"status": "passed", "value": 1, "output": "x"},
                "new": {"status": "failed", "value": 0, "output": "y" * 500}} for i in range(3)]
    text = markdown_summary([], [], changes, exit_status=None, case_rows=2)
    assert "No eval suite ran." in text and "| c1 |" in text and "| c2 |" not in text
    assert "... and 1 more newly failing" in text and "y" * 500 not in text
