"""Pipeline v2 through real pytest runs on the scripted engine: several models per suite with
paired comparisons, a reference model, model-calling scorers (a judge) batched and scored
once per run, and the typed record schema."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from scripted_suite import read_records, write_answers, write_jsonl

from pytest_aie.errors import EXIT_HARNESS_ERROR, EXIT_REGRESSION
from pytest_aie.results.records import CaseRecord

N = 60


def _three_models(pytester: pytest.Pytester, test: str, wrong: dict[str, set[int]]) -> None:
    """Cases q0..q59; model NAME answers wrong on the cases in wrong[NAME]."""
    write_jsonl(pytester, "cases", ({"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"}
                                    for i in range(N)))
    for name, bad in wrong.items():
        write_answers(pytester, {f"q{i}": ("nope" if i in bad else f"a{i}") for i in range(N)}, name)
    models = ",".join(f"{m}=scripted:{m}.jsonl" for m in wrong)
    pytester.makeini(f"[pytest]\naie_engine = scripted\naie_model = {next(iter(wrong))}.jsonl\n"
                     f"aie_cache = off\naie_models = {models}\n")
    pytester.makepyfile(test_suite=textwrap.dedent(test))


THREE = """
    import pytest

    @pytest.mark.dataset("cases.jsonl", models=["small", "medium", "large"])
    @pytest.mark.exact(min_pass_rate=0.3)
    def test_models(case, output):
        pass
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_three_model_suite_gates_each_model_and_compares_every_pair(
        pytester: pytest.Pytester, workers: str) -> None:
    pytest.importorskip("xdist")
    _three_models(pytester, THREE, {"small": set(range(30)), "medium": set(range(12)),
                                    "large": set(range(3))})
    result = pytester.runpytest_subprocess("-n", workers, "-p", "xdist")
    out = result.stdout.str()
    # one test per case and model; the suite's gate is decided per model
    assert result.ret == 0, out
    result.assert_outcomes(passed=3 * N - 45, xfailed=45)
    for model, passed in (("small", 30), ("medium", 48), ("large", 57)):
        assert re.search(rf"test_models \[exact.match\] on {model}: {passed}/{N} passed", out), out
    # paired deltas for each pair, exploratory (a suite without reference= gates no pair)
    deltas = {("small", "medium"): (30 - 12) / N, ("small", "large"): (30 - 3) / N,
              ("medium", "large"): (12 - 3) / N}
    for (worse, better), delta in deltas.items():
        pair = [line for line in out.splitlines()
                if line.startswith(f"{worse} vs {better}:") or line.startswith(f"{better} vs {worse}:")]
        assert len(pair) == 1, out
        sign = -1 if pair[0].startswith(f"{worse} vs") else 1
        assert f"delta {sign * delta:+.3f}" in pair[0] and "exploratory" in pair[0], pair[0]
        assert f"on {N} shared cases" in pair[0]
    records = read_records(pytester)
    assert len(records) == 3 * N
    assert {r["model"] for r in records} == {"small", "medium", "large"}
    assert {r["model_id"] for r in records} == {"small.jsonl", "medium.jsonl", "large.jsonl"}
    by = {(r["case_id"], r["model"]): r for r in records}
    assert by[("c5", "small")]["status"] == "failed" and by[("c5", "large")]["status"] == "passed"
    assert by[("c5", "medium")]["nodeid"].endswith("[c5@medium]")
    html = (pytester.path / "aie-results" / "report.html").read_text()
    assert "exact.match · medium" in html


def test_reference_model_is_compared_against_not_gated(pytester: pytest.Pytester) -> None:
    _three_models(pytester, """
        import pytest

        @pytest.mark.dataset("cases.jsonl", models=["prod", "next"], reference="prod")
        @pytest.mark.exact(min_pass_rate=0.3)
        def test_models(case, output):
            pass
    """, {"prod": set(range(2)), "next": set(range(20))})
    result = pytester.runpytest()
    out = result.stdout.str()
    assert result.ret == EXIT_REGRESSION, out
    result.assert_outcomes(passed=N - 20, xfailed=20)  # items only for the gated model
    assert re.search(r"next vs prod: test_suite.py::test_models \[exact.match\]: REGRESSION: "
                     r"delta -0.300", out), out
    assert " on prod" not in out and "test_models [exact.match]: 40/60 passed" in out
    records = read_records(pytester)
    assert sorted({(r["model"], r["gated"]) for r in records}) == [("next", True), ("prod", False)]


@pytest.mark.parametrize("marker, message", [
    ('dataset("cases.jsonl", models="small")', "must be a list of model names"),
    ('dataset("cases.jsonl", models=["small", "small"])', "names 'small' twice"),
    ('dataset("cases.jsonl", models=["small", "nosuch"])', "no model named 'nosuch'"),
    ('dataset("cases.jsonl", models=["small"], model="large")', "model= or models=, not both"),
    ('dataset("cases.jsonl", models=["small", "large"], reference="medium")',
     "must be one of models="),
    ('dataset("cases.jsonl", reference="small")', "needs models="),
])
def test_bad_models_arguments_are_one_line_and_exit_10(pytester: pytest.Pytester, marker: str,
                                                        message: str) -> None:
    _three_models(pytester, f"""
        import pytest

        @pytest.mark.{marker}
        @pytest.mark.exact
        def test_models(case, output):
            pass
    """, {"small": set(), "medium": set(), "large": set()})
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines([f"*{message}*Fix: *"])


# ------------------------------------------------------------------- model-calling scorers

JUDGE_PLUGIN = """
    import os
    from pytest_aie.engines.base import Request, Sampling
    from pytest_aie.scorers.base import ModelScorer, Score
    from pytest_aie import register_eval_marker

    class Graded(ModelScorer):
        metric = "graded.yes"
        binary = True

        def plan(self, samples):
            with open(os.environ["AIE_COUNT_FILE"], "a") as fh:  # one line per call, any process
                fh.write(f"plan {samples[0].case.suite} {len(samples)} {samples[0].model}\\n")
            # the judge sees the prompt and the output; two identical requests per sample
            # are de-duplicated by the harness
            return [[Request(prompt=f"{s.request.messages[-1]['content']} => {s.text}",
                             sampling=Sampling(temperature=0, max_tokens=4))] * 2
                    for s in samples]

        def score_results(self, samples, results):
            out = []
            for s, gens in zip(samples, results):
                verdict = gens[0].text.strip()
                if verdict not in ("yes", "no"):
                    out.append(Score.unmeasured(self.metric, f"judge said {verdict!r}"))
                else:
                    out.append(Score(self.metric, float(verdict == "yes"), verdict == "yes",
                                     f"judge {gens[0].model}: {verdict}"))
            return out

    register_eval_marker("graded", lambda *a, base_dir, engine, judge_model=None, **kw:
                         Graded(judge_model), "graded(judge_model=None): a scripted judge")
"""


def _judge_suite(pytester: pytest.Pytester, marker: str = "graded") -> None:
    write_jsonl(pytester, "cases", ({"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"}
                                    for i in range(12)))
    write_answers(pytester, {f"q{i}": f"a{i}" for i in range(12)})
    # the judge says "yes" to even cases, "no" to odd ones, and garbage to c11
    write_answers(pytester, {f"q{i} => a{i}": ("maybe?" if i == 11 else "yes" if i % 2 == 0 else "no")
                             for i in range(12)}, "judge")
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n"
                     "aie_judge = scripted:judge.jsonl\n")
    pytester.makeconftest(JUDGE_PLUGIN)
    pytester.makepyfile(test_suite=textwrap.dedent(f"""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.{marker}
        @pytest.mark.exact
        def test_judged(case, output):
            pass
    """))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_model_calling_scorer_plans_once_per_suite_through_the_judge_model(
        pytester: pytest.Pytester, monkeypatch, tmp_path: Path, workers: str) -> None:
    pytest.importorskip("xdist")
    _judge_suite(pytester)
    count = tmp_path / "calls.txt"
    monkeypatch.setenv("AIE_COUNT_FILE", str(count))
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "cache"))
    result = pytester.runpytest_subprocess("-n", workers, "-p", "xdist")
    out = result.stdout.str() + result.stderr.str()
    assert count.read_text().splitlines() == ["plan test_suite.py::test_judged 12 default"]
    # the judge's requests went through the model layer: 12 unique of 24, with progress
    assert "generating 12 of 12 requests on judge (scripted)" in out, out
    assert result.ret == 1, out  # odd cases fail the judge; c11 is unmeasured
    recs = {(r["case_id"], r["metric"]): r for r in read_records(pytester)}
    assert recs[("c2", "graded.yes")]["status"] == "passed"
    assert recs[("c2", "graded.yes")]["reason"] == "judge judge.jsonl: yes"
    assert recs[("c3", "graded.yes")]["status"] == "failed"
    assert recs[("c11", "graded.yes")]["status"] == "unmeasured"
    assert "judge said 'maybe?'" in recs[("c11", "graded.yes")]["reason"]
    assert all(recs[(f"c{i}", "exact.match")]["status"] == "passed" for i in range(12))
    # a second run reads the judge's answers from the cache: no engine call for them
    count.unlink()
    again = pytester.runpytest_subprocess("-n", workers, "-p", "xdist")
    assert "requests on judge" not in again.stdout.str() + again.stderr.str()
    assert count.read_text().splitlines() == ["plan test_suite.py::test_judged 12 default"]


def test_judge_model_argument_names_a_model_of_the_run(pytester: pytest.Pytester, monkeypatch,
                                                       tmp_path: Path) -> None:
    _judge_suite(pytester, marker='graded(judge_model="strict")')
    write_answers(pytester, {f"q{i} => a{i}": "no" for i in range(12)}, "strict")
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\naie_cache = off\n"
                     "aie_models = strict=scripted:strict.jsonl\n")
    monkeypatch.setenv("AIE_COUNT_FILE", str(tmp_path / "calls.txt"))
    result = pytester.runpytest()
    assert result.ret == 1, result.stdout.str()
    graded = [r for r in read_records(pytester) if r["metric"] == "graded.yes"]
    assert {r["reason"] for r in graded} == {"judge strict.jsonl: no"}


def test_a_judge_that_cannot_start_stops_its_suite_only(pytester: pytest.Pytester, monkeypatch,
                                                       tmp_path: Path) -> None:
    """The judged suite's judge names a file that does not exist: that suite's first case
    errors with the one line, its other cases are skipped with it; a second suite without the
    judge is generated, scored and gated; the run exits 10."""
    _judge_suite(pytester, marker='graded(judge_model="gone")')
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\naie_cache = off\n"
                     "aie_models = gone=scripted:missing.jsonl\n")
    pytester.makepyfile(test_other=textwrap.dedent("""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.exact(min_pass_rate=0.5)
        def test_plain(case, output):
            pass
    """))
    monkeypatch.setenv("AIE_COUNT_FILE", str(tmp_path / "calls.txt"))
    result = pytester.runpytest("-p", "no:randomly", "-rs")
    out = result.stdout.str()
    assert result.ret == 10, out
    result.assert_outcomes(passed=12, errors=1, skipped=11)
    assert "missing.jsonl" in out
    result.stdout.fnmatch_lines(["*test_other.py::test_plain [[]exact.match[]]: 12/12 passed*PASS*"])
    assert {r["suite"] for r in read_records(pytester)} == {"test_other.py::test_plain"}


# ------------------------------------------------------------------- the record schema


def test_the_docs_document_every_record_field() -> None:
    results = (Path(__file__).parent.parent / "docs" / "results.md").read_text(encoding="utf-8")
    section = results.split("\n## Results log schema\n", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert documented == [name for name, _ in CaseRecord.schema()]
    from pytest_aie.results.records import FORMAT_VERSION

    assert f"format version {FORMAT_VERSION}" in section


def test_record_to_dict_leaves_out_unset_optional_fields() -> None:
    rec = CaseRecord(suite="s", case_id="c", nodeid="n", metric="m", model="default",
                     status="passed", value=1.0, passed=True)
    data = rec.to_dict()
    assert "samples" not in data and "references" not in data and data["gated"] is True
    assert json.loads(json.dumps(data))["status"] == "passed"
    rec.samples = [{"seed": 1}]
    assert rec.to_dict()["samples"] == [{"seed": 1}]
def test_generation_is_triggered_once_not_once_per_item(pytester: pytest.Pytester) -> None:
    """The first item generates and scores the whole selection; every later item finds its
    output done without going over the selection again (that was O(items) per item, O(n^2)
    per run: 100 s of a 10,000-case suite)."""
    n = 50
    write_jsonl(pytester, "cases", ({"id": f"c{i}", "prompt": f"q{i}", "expected": f"a{i}"}
                                    for i in range(n)))
    for name in ("a", "b"):
        write_answers(pytester, {f"q{i}": f"a{i}" for i in range(n)}, name)
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = a.jsonl\naie_cache = off\n"
                     "aie_models = a=scripted:a.jsonl,b=scripted:b.jsonl\n")
    pytester.makeconftest(textwrap.dedent("""
        from pytest_aie.run.pipeline import Pipeline

        calls = []
        _ensure = Pipeline.ensure

        def ensure(self, unit, selected):
            calls.append(len(selected))
            return _ensure(self, unit, selected)

        Pipeline.ensure = ensure

        def pytest_sessionfinish(session):
            print(f"\\nensure calls: {len(calls)}")
    """))
    pytester.makepyfile(test_suite=textwrap.dedent("""
        import pytest

        @pytest.mark.dataset("cases.jsonl", models=["a", "b"])
        @pytest.mark.exact()
        def test_models(case, output):
            pass
    """))
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=2 * n)
    result.stdout.fnmatch_lines(["*ensure calls: 1"])


def test_bulk_allocations_restores_the_collector_even_on_error():
    import gc

    from pytest_aie.run.pipeline import bulk_allocations

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with bulk_allocations():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()  # a user who runs with the collector off keeps it off
    try:
        with bulk_allocations():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
