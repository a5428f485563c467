"""The similarity marker through whole pytest runs (pytester), on the scripted engine with the
real metric libraries (rouge-score, sacrebleu, sentence-transformers)."""

from __future__ import annotations

import json

import pytest
from scripted_suite import eval_test, read_records, write_scripted_suite

from pytest_aie.errors import EXIT_HARNESS_ERROR

REFS = {
    "cat": "The cat sat on the mat.",
    "sun": "The sun rises in the east.",
    "rain": "Rain falls from clouds in the sky.",
    "tea": "Tea is made by steeping leaves in hot water.",
}


def make(pytester: pytest.Pytester, marker: str, answers: dict[str, str],
         refs: dict[str, object] = REFS) -> None:
    cases = [{"id": k, "prompt": f"say {k}", "expected": v} for k, v in refs.items()]
    write_scripted_suite(pytester, cases, {f"say {k}": v for k, v in answers.items()},
                         eval_test(f"similarity({marker})", "test_sim"), test_module="test_sim")


def records(pytester: pytest.Pytester) -> dict[str, dict]:
    return {r["case_id"]: r for r in read_records(pytester)}


def test_rouge_identical_and_different_outputs(pytester: pytest.Pytester) -> None:
    answers = dict(REFS, rain="Bananas are yellow.")
    make(pytester, '"rougeL", threshold=0.5', answers)
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    recs = records(pytester)
    assert recs["cat"]["value"] == pytest.approx(1.0) and recs["cat"]["binary"] is False
    assert recs["rain"]["value"] < 0.5 and recs["rain"]["passed"] is False
    result.stdout.fnmatch_lines(["*rouge*failed*"])


# near misses (chrF 1.0, 0.96, 0.88, 0.85; TER 0, 0.17, 0.14, 0.11) and bad answers (chrF
# 0 to 0.12): scores with a spread, so that the suite interval has a width
GOOD = dict(REFS, sun="The sun rises in the east", rain="Rain falls from the clouds in the sky.",
            tea="Tea is made by steeping leaves in water.")
BAD = {"cat": "zzz qqq", "sun": "The zzz", "rain": "qqq in sky", "tea": "leaves xx"}


def test_min_score_gates_the_mean_with_an_interval(pytester: pytest.Pytester) -> None:
    make(pytester, '"chrf", min_score=0.5', REFS)  # every score 1.0: no spread, too little data
    result = pytester.runpytest()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*.chrf[]]: *(mean score 1.000*) -> INCONCLUSIVE (threshold 0.5)"])
    make(pytester, '"chrf", min_score=0.5', GOOD)
    result = pytester.runpytest()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*.chrf[]]: *(mean score 0.920*) -> PASS (threshold 0.5)"])
    make(pytester, '"chrf", min_score=0.5', BAD)
    result = pytester.runpytest()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*-> FAIL (threshold 0.5)"])


def test_ter_is_a_ceiling_and_corpus_bleu_is_reported(pytester: pytest.Pytester) -> None:
    make(pytester, '"ter", min_score=0.3', GOOD)
    result = pytester.runpytest()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*.ter[]]*mean score 0.105*-> PASS (ceiling 0.3)",
                                 "  corpus-level over 4 cases: ter.corpus 0.*, ter.sentence_mean 0.105"])
    make(pytester, '"ter", min_score=0.3', BAD)  # TER 0.83 to 1.0: wholly above the ceiling
    result = pytester.runpytest()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*.ter[]]*mean score 0.895*-> FAIL (ceiling 0.3)"])
    make(pytester, '"ter", min_score=0.12', GOOD)  # the ceiling inside the interval
    pytester.runpytest().stdout.fnmatch_lines(["*.ter[]]*-> INCONCLUSIVE (ceiling 0.12)"])
    answers = dict(REFS, cat="A dog slept on a rug.", sun="It is morning in the east.")
    make(pytester, '"bleu"', answers)
    pytester.runpytest().stdout.fnmatch_lines(
        ["  corpus-level over 4 cases: bleu.corpus 0.*, bleu.sentence_mean 0.*"])
    # under xdist the worker that scored the suite computes it and the controller shows it
    pytester.runpytest_subprocess("-n", "2", "-p", "xdist").stdout.fnmatch_lines(
        ["  corpus-level over 4 cases: bleu.corpus 0.*, bleu.sentence_mean 0.*"])


def test_bad_reference_is_unmeasured_and_nothing_is_lost(pytester: pytest.Pytester) -> None:
    make(pytester, '"rouge1"', REFS, refs=dict(REFS, tea=""))
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=1)
    recs = records(pytester)
    assert len(recs) == 4
    assert recs["tea"]["passed"] is None and "empty" in recs["tea"]["reason"]


def test_multiple_references_best_of(pytester: pytest.Pytester) -> None:
    refs = dict(REFS, cat=["A feline rested.", "The cat sat on the mat."])
    make(pytester, '"rouge1"', REFS, refs=refs)
    pytester.runpytest()
    assert records(pytester)["cat"]["value"] == pytest.approx(1.0)
    make(pytester, '"rouge1", aggregate="mean"', REFS, refs=refs)
    pytester.runpytest()
    assert records(pytester)["cat"]["value"] < 0.9


def test_unknown_metric_and_keyword_are_harness_errors(pytester: pytest.Pytester) -> None:
    make(pytester, '"blue"', REFS)
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*unknown similarity metric 'blue'. Fix: use one of *bleu*"])
    make(pytester, '"rouge1", stemming=True', REFS)
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*does not take keyword(s) stemming*"])


def test_perplexity_needs_an_engine_that_scores_text(pytester: pytest.Pytester) -> None:
    make(pytester, '"perplexity"', REFS)
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*engine 'scripted' cannot score text*Fix: use the hf engine*"])


@pytest.mark.slow
def test_embedding_cosine_with_the_real_model(pytester: pytest.Pytester) -> None:
    answers = dict(REFS, sun="In the east, the sun comes up.", rain="Bananas are yellow.")
    make(pytester, '"cosine", threshold=0.6', answers)
    result = pytester.runpytest_subprocess()  # torch is imported: see above
    result.assert_outcomes(passed=3, failed=1)
    recs = records(pytester)
    assert recs["cat"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert 0.6 < recs["sun"]["value"] < 1.0
    assert recs["rain"]["value"] < 0.6


def test_missing_similarity_model_leaves_cases_unmeasured(pytester: pytest.Pytester) -> None:
    make(pytester, '"cosine", model="no-such-model"', REFS)
    pytester.makepyfile(test_other="""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.similarity("rouge1")
        def test_rouge(case, output):
            pass
    """)
    # A subprocess: torch, imported while looking for the model, cannot be imported twice in
    # one process, and in-process pytester runs drop the modules they import.
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=4, failed=4)  # rouge runs; the cosine cases fail unmeasured
    result.stdout.fnmatch_lines(["*[[]similarity.rouge1[]]: 4/4 scored, 0 unmeasured*",
                                 "*[[]similarity.cosine[]]: 0/4 passed, 0 failed, 4 unmeasured*",
                                 "*similarity.cosine unmeasured: model 'no-such-model' is not installed*",
                                 "*[[]similarity.cosine[]]: none of 4 cases was measured*"])
    assert result.ret == 10  # a suite with nothing measured never passes
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:]
    recs = [r for r in map(json.loads, lines) if r.get("type") == "case"]
    assert len(recs) == 8
    assert all(r["passed"] is None for r in recs if r["metric"] == "similarity.cosine")


SCORING_ENGINE = """
    import math
    from pytest_aie.engines import register_engine
    from pytest_aie.engines.base import Capability
    from pytest_aie.engines.scripted import ScriptedEngine

    class Scoring(ScriptedEngine):
        # a scripted engine that also scores text: each word has probability 1/(8 + length)
        name = "scoring"
        capabilities = ScriptedEngine.capabilities | {Capability.SCORE}

        def score_text(self, texts, contexts=None, **kw):
            return [[-math.log(8 + len(t.split()))] * len(t.split()) for t in texts]

    register_engine("scoring", lambda **kw: Scoring(kw.get("model")))
"""


@pytest.mark.parametrize("ceiling, verdict, status", [(20, "PASS", 0), (5, "FAIL", 1)])
def test_min_score_on_an_unbounded_scale(pytester: pytest.Pytester, ceiling: int, verdict: str,
                                         status: int) -> None:
    """Perplexity is 1 and up and lower is better: min_score=20 is a ceiling of 20, not a
    value refused for lying outside [0, 1]."""
    refs = {f"r{i}": " ".join(["word"] * (i + 1)) for i in range(8)}  # perplexity 9 to 16
    make(pytester, f'"perplexity", min_score={ceiling}', refs, refs)
    pytester.makeconftest(SCORING_ENGINE)
    result = pytester.runpytest("--aie-engine", "scoring")
    assert result.ret == status
    result.stdout.fnmatch_lines([f"*[[]similarity.perplexity[]]: 8/8 scored*mean score 12.500*"
                                 f"-> {verdict} (ceiling {ceiling})"])


def test_min_pass_rate_stays_a_rate(pytester: pytest.Pytester) -> None:
    cases = [{"id": "a", "prompt": "p", "expected": "x"}]
    write_scripted_suite(pytester, cases, {"p": "x"}, eval_test("exact(min_pass_rate=20)"))
    result = pytester.runpytest()
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*min_pass_rate=20) must be a rate in [[]0, 1[]]*"])
