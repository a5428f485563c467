"""Lexical similarity scorers (ROUGE, BLEU, chrF, TER), the similarity factory, and the
perplexity / bits-per-byte scorer (with a fake engine; one slow test with the real one)."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pytest
import sacrebleu
from components import need_module
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Capability, Engine, Generation
from pytest_aie.errors import EngineError, UsageError
from pytest_aie.scorers.base import Scorer
from pytest_aie.scorers.perplexity import PerplexityScorer
from pytest_aie.scorers.similarity import (
    BleuScorer,
    ChrfScorer,
    RougeScorer,
    TerScorer,
    build_similarity_scorer,
    corpus_scores,
)


def case(expected: object = None, i: int = 0, **fields: object) -> Case:
    data = dict(fields)
    if expected is not None:
        data["expected"] = expected
    return Case(id=f"c{i}", fields=data)


# sacrebleu's README ("Using SacreBLEU from Python"): two reference streams.
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REF_STREAMS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
PER_CASE = [list(r) for r in zip(*REF_STREAMS)]


# --------------------------------------------------------------------------- sacrebleu


def test_corpus_scores_match_sacrebleu_readme() -> None:
    got = corpus_scores(SYS, PER_CASE)
    # The numbers printed in sacrebleu's README: BLEU = 48.53, chrF2 = 59.73.
    assert got["bleu.corpus"] == pytest.approx(0.4853, abs=5e-5)
    assert got["chrf.corpus"] == pytest.approx(0.5973, abs=5e-5)
    assert got["ter.corpus"] == pytest.approx(
        sacrebleu.corpus_ter(SYS, REF_STREAMS).score / 100, abs=1e-12)
    assert got["n"] == 3 and got["skipped"] == 0


def test_corpus_scores_variable_references_readme() -> None:
    # README "Variable Number of References": first case loses a reference -> BLEU = 29.44.
    refs = [["The dog had bit the man."], PER_CASE[1], PER_CASE[2]]
    assert corpus_scores(SYS, refs)["bleu.corpus"] == pytest.approx(0.2944, abs=5e-5)


def test_corpus_bleu_is_not_mean_of_sentence_bleu() -> None:
    got = corpus_scores(SYS, PER_CASE)
    sentence = statistics.fmean(sacrebleu.sentence_bleu(h, r).score for h, r in zip(SYS, PER_CASE))
    assert got["bleu.sentence_mean"] == pytest.approx(sentence / 100, abs=1e-12)
    assert abs(got["bleu.corpus"] - got["bleu.sentence_mean"]) > 1e-3
    # A short perfect hypothesis: sentence BLEU 100 for it, but corpus BLEU pools brevity.
    hyps, refs = ["a b c d e", "the cat"], ["a b c d e", "the cat sat on the mat today"]
    two = corpus_scores(hyps, refs)
    assert two["bleu.corpus"] != pytest.approx(two["bleu.sentence_mean"], abs=1e-3)


def test_corpus_scores_skip_bad_pairs() -> None:
    got = corpus_scores(["a fine output for this test", "", None], ["a fine output for this test", "ref", "ref"])  # type: ignore[list-item]
    assert got["n"] == 1 and got["skipped"] == 2
    assert got["bleu.corpus"] == pytest.approx(1.0)
    empty = corpus_scores([""], ["x"])
    assert empty["bleu.corpus"] is None and empty["skipped"] == 1


@pytest.mark.parametrize("name,fn,opts", [
    ("bleu", sacrebleu.sentence_bleu, {}),
    ("chrf", sacrebleu.sentence_chrf, {}),
    ("ter", sacrebleu.sentence_ter, {}),
])
def test_sentence_scores_equal_sacrebleu(name: str, fn, opts: dict) -> None:  # type: ignore[no-untyped-def]
    scorer = build_similarity_scorer(name)
    scores = scorer.score_batch(SYS, [case(r, i) for i, r in enumerate(PER_CASE)])
    for hyp, refs, s in zip(SYS, PER_CASE, scores):
        expected = [fn(hyp, [r], **opts).score / 100 for r in refs]
        assert s.details["per_reference"] == pytest.approx(expected, abs=1e-12)
        best = max(expected) if name != "ter" else min(expected)
        assert s.value == pytest.approx(min(best, 1.0) if name != "ter" else best, abs=1e-12)
        assert s.details["sacrebleu"] == pytest.approx(best * 100, abs=1e-9)


def test_chrf_plus_plus_and_bleu_options() -> None:
    c = case("The Cat sat on the mat.")
    plus = build_similarity_scorer("chrf", word_order=2).score("the cat sat on a mat", c)
    assert plus.metric == "similarity.chrf++"
    assert plus.value == pytest.approx(
        sacrebleu.sentence_chrf("the cat sat on a mat", ["The Cat sat on the mat."],
                                word_order=2).score / 100)
    low = build_similarity_scorer("bleu", lowercase=True).score("the cat sat on the mat.", c)
    mixed = build_similarity_scorer("bleu").score("the cat sat on the mat.", c)
    assert low.value == pytest.approx(1.0) and mixed.value is not None and mixed.value < 1.0


def test_ter_is_lower_is_better() -> None:
    scorer = build_similarity_scorer("ter", threshold=0.25)
    good = scorer.score("the cat sat on the mat", case("the cat sat on the mat"))
    bad = scorer.score("a dog ran", case("the cat sat on the mat"))
    assert good.value == 0.0 and good.passed is True and "<= threshold" in good.reason
    assert bad.value is not None and bad.value > 0.25 and bad.passed is False
    assert bad.details["higher_is_better"] is False
    # TER may exceed 1, and its threshold may too.
    long = build_similarity_scorer("ter", threshold=10.0).score(
        "one two three four five six seven", case("x"))
    assert long.value == pytest.approx(7.0) and long.passed is True  # 7 edits, 1 ref word


# --------------------------------------------------------------------------- ROUGE


README_TARGET = "The quick brown fox jumps over the lazy dog"
README_PRED = "The quick brown dog jumps on the log."


def test_rouge_readme_example() -> None:
    c = case(README_TARGET)
    r1 = build_similarity_scorer("rouge1", stem=True).score(README_PRED, c)
    rl = build_similarity_scorer("rouge", variant="rougeL", stem=True).score(README_PRED, c)
    # Hand count: 6 shared unigrams of 8 predicted / 9 target; LCS "the quick brown jump the" = 5.
    assert r1.value == pytest.approx(2 * (6 / 8) * (6 / 9) / (6 / 8 + 6 / 9))
    assert rl.value == pytest.approx(2 * (5 / 8) * (5 / 9) / (5 / 8 + 5 / 9))
    lib = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(
        README_TARGET, README_PRED)
    assert r1.value == lib["rouge1"].fmeasure and rl.value == lib["rougeL"].fmeasure
    assert rl.details["precision"] == lib["rougeL"].precision
    assert rl.details["recall"] == lib["rougeL"].recall


def test_rouge_stemming_matters_and_lsum() -> None:
    c = case("cats are running")
    assert build_similarity_scorer("rouge1", stem=True).score("cat is run", c).value \
        > build_similarity_scorer("rouge1").score("cat is run", c).value  # type: ignore[operator]
    lsum = build_similarity_scorer("rougeLsum").score("a b c\nd e", case("d e\na b c"))
    lib = rouge_scorer.RougeScorer(["rougeLsum"]).score("d e\na b c", "a b c\nd e")
    assert lsum.value == lib["rougeLsum"].fmeasure == pytest.approx(1.0)
    assert lsum.metric == "similarity.rougeLsum"


WORDS = st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "dog", "ran", "a"]),
                 min_size=1, max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(a=WORDS, b=WORDS, variant=st.sampled_from(["rouge1", "rouge2", "rougeL"]))
def test_rouge_symmetric_and_bounded(a: str, b: str, variant: str) -> None:
    scorer = build_similarity_scorer(variant)
    ab, ba = scorer.score(a, case(b)), scorer.score(b, case(a))
    assert ab.value == pytest.approx(ba.value, abs=1e-12)  # F-measure swaps P and R
    assert ab.value is not None and 0.0 <= ab.value <= 1.0
    assert scorer.score(a, case(a)).value == pytest.approx(1.0) or variant == "rouge2"


@settings(max_examples=40, deadline=None)
@given(out=WORDS, refs=st.lists(WORDS, min_size=2, max_size=4),
       metric=st.sampled_from(["rouge1", "bleu", "chrf", "ter"]))
def test_multi_reference_max_and_mean(out: str, refs: list[str], metric: str) -> None:
    best = build_similarity_scorer(metric, aggregate="max").score(out, case(refs))
    mean = build_similarity_scorer(metric, aggregate="mean").score(out, case(refs))
    singles = [build_similarity_scorer(metric).score(out, case(r)).value for r in refs]
    assert best.details["per_reference"] == pytest.approx(singles)
    pick = min if metric == "ter" else max
    assert best.value == pytest.approx(pick(singles))  # type: ignore[type-var]
    assert best.details["best_reference"] == singles.index(pick(singles))  # type: ignore[type-var]
    assert mean.value == pytest.approx(statistics.fmean(singles))  # type: ignore[arg-type]
    assert mean.details["aggregate"] == "mean" and best.details["aggregate"] == "best"
    if metric != "ter":
        assert 0.0 <= best.value <= 1.0  # type: ignore[operator]


def test_references_field_and_named_field() -> None:
    scorer = build_similarity_scorer("rouge1")
    via_refs = scorer.score("a b", case(references=["x y", "a b"]))
    assert via_refs.value == pytest.approx(1.0) and via_refs.details["best_reference"] == 1
    named = build_similarity_scorer("rouge1", references="gold").score("a b", case("zzz", gold="a b"))
    assert named.value == pytest.approx(1.0)
    missing = build_similarity_scorer("rouge1", references="gold").score("a b", case("a b"))
    assert missing.value is None and "'gold'" in missing.reason


# --------------------------------------------------------------------------- thresholds


def test_threshold_pass_fail_and_no_threshold() -> None:
    c = case("the cat sat on the mat")
    strict = build_similarity_scorer("rouge1", threshold=0.9)
    loose = build_similarity_scorer("rouge1", threshold=0.3)
    none = build_similarity_scorer("rouge1")
    out = "the cat sat"
    assert strict.score(out, c).passed is False and "< threshold 0.9" in strict.score(out, c).reason
    assert loose.score(out, c).passed is True
    s = none.score(out, c)
    assert s.passed is None and s.measured and s.status == "scored" and "no threshold" in s.reason


def test_suite_check_min_score() -> None:
    scorer = build_similarity_scorer("rouge1", min_score=0.5)
    scores = scorer.score_batch(["a b", "x y", ""], [case("a b"), case("a b"), case("a b")])
    ok, reason = scorer.suite_check(scores)  # type: ignore[attr-defined]
    assert ok is True and "over 2 cases" in reason  # mean(1, 0) = 0.5; empty is unmeasured
    ter = build_similarity_scorer("ter", min_score=0.1)
    assert ter.suite_check(ter.score_batch(["a b"], [case("x y")]))[0] is False  # type: ignore[attr-defined]
    assert build_similarity_scorer("bleu").suite_check([])[0] is None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("metric", ["rouge1", "bleu", "chrf", "ter"])
def test_bad_inputs_are_unmeasured_and_nothing_lost(metric: str) -> None:
    scorer = build_similarity_scorer(metric, threshold=0.1)
    outputs = ["", "   ", None, 42, "ok text", "ok text", "ok text", "ok text", "ok text"]
    cases = [case("ref"), case("ref"), case("ref"), case("ref"), case(None), case(""),
             case(["ref", 3]), case([]), case("ok text")]
    scores = scorer.score_batch(outputs, cases)  # type: ignore[arg-type]
    assert len(scores) == len(cases)
    reasons = [s.reason for s in scores[:-1]]
    assert all(s.value is None and s.passed is None and not s.measured for s in scores[:-1])
    assert "output is empty" in reasons[0] and "output is empty" in reasons[1]
    assert "NoneType" in reasons[2] and "int" in reasons[3]
    assert "no reference" in reasons[4] and "is empty" in reasons[5]
    assert "'expected'[1] is a int" in reasons[6] and "list" in reasons[7]
    assert scores[-1].measured and scores[-1].passed is True


# --------------------------------------------------------------------------- factory


def test_factory_builds_each_metric() -> None:
    assert isinstance(build_similarity_scorer("rouge"), RougeScorer)
    assert build_similarity_scorer("rouge").metric == "similarity.rougeL"
    assert build_similarity_scorer("rouge2").metric == "similarity.rouge2"
    assert isinstance(build_similarity_scorer("bleu", tokenize="char"), BleuScorer)
    assert isinstance(build_similarity_scorer("chrf"), ChrfScorer)
    assert isinstance(build_similarity_scorer("ter", case_sensitive=True), TerScorer)
    s = build_similarity_scorer("rouge", threshold=0.4, min_score=0.5, references="expected",
                                aggregate="mean", stem=True)
    assert isinstance(s, Scorer) and s.marker == "similarity"
    assert (s.threshold, s.min_score, s.aggregate, s.stem) == (0.4, 0.5, "mean", True)  # type: ignore[attr-defined]


def test_factory_rejects_unknown_metric_and_keyword() -> None:
    with pytest.raises(UsageError, match="unknown similarity metric 'blue'") as err:
        build_similarity_scorer("blue")
    assert "bleu" in str(err.value) and "cosine" in str(err.value)
    with pytest.raises(UsageError, match="does not take keyword.*stemming") as err:
        build_similarity_scorer("rouge", stemming=True)
    assert "stem" in str(err.value.fix) and "threshold" in str(err.value.fix)
    with pytest.raises(UsageError, match="model"):  # a keyword of another metric
        build_similarity_scorer("bleu", model="x")


@pytest.mark.parametrize("kwargs,match", [
    ({"threshold": 40}, "0-1 scale"),
    ({"threshold": "high"}, "not a number"),
    ({"min_score": -0.1}, "outside"),
    ({"aggregate": "median"}, "aggregate"),
    ({"variant": "rouge3"}, "ROUGE variant"),
    ({"references": 3}, "field name"),
])
def test_factory_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_similarity_scorer("rouge", **kwargs)


def test_bad_sacrebleu_option_is_usage_error() -> None:
    with pytest.raises(UsageError, match="bad option"):
        build_similarity_scorer("bleu", tokenize="no-such-tokenizer")


def test_perplexity_needs_engine_in_factory() -> None:
    with pytest.raises(UsageError, match="needs an engine"):
        build_similarity_scorer("perplexity")


def test_import_is_light() -> None:
    code = ("import sys, pytest_aie.scorers.similarity, pytest_aie.scorers.embedding, "
            "pytest_aie.scorers.perplexity\n"
            "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'sacrebleu',"
            " 'rouge_score') if m in sys.modules]\nprint(heavy)\nassert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- perplexity


class FakeScoringEngine(Engine):
    """Returns given log-probabilities for each text; records what it was asked."""

    name = "fake"
    capabilities = frozenset({Capability.SCORE})

    def __init__(self, logprobs: dict[str, list[float]]) -> None:
        self.logprobs = logprobs
        self.calls: list[tuple[list[str], list[str] | None]] = []

    def identity(self) -> dict:
        return {"engine": "fake"}

    def generate(self, requests):  # type: ignore[no-untyped-def]
        return [Generation(text="") for _ in requests]

    def score_text(self, texts: list[str], contexts: list[str] | None = None) -> list[list[float]]:
        self.calls.append((list(texts), None if contexts is None else list(contexts)))
        return [self.logprobs.get(t, []) for t in texts]


def test_perplexity_and_bits_per_byte_arithmetic() -> None:
    lps = [-1.0, -2.0, -3.0]
    engine = FakeScoringEngine({"abcd": lps, "héllo": [-0.5, -0.5]})
    ppl = PerplexityScorer(engine, kind="perplexity", threshold=10.0)
    s = ppl.score("ignored output", case("abcd"))
    assert s.value == pytest.approx(math.exp(2.0)) and s.passed is True  # exp(-mean) = e^2
    assert s.metric == "similarity.perplexity" and "<= threshold 10" in s.reason
    bpb = build_similarity_scorer("bits_per_byte", engine=engine, threshold=0.1)
    b = bpb.score("", case("abcd"))  # the output is not used: empty is fine
    assert b.value == pytest.approx(6.0 / math.log(2) / 4) and b.passed is False
    u = bpb.score("x", case("héllo"))  # 6 UTF-8 bytes
    assert u.value == pytest.approx(1.0 / math.log(2) / 6)
    assert b.details["tokens"] == 3 and b.details["bytes"] == 4


@settings(max_examples=50, deadline=None)
@given(lps=st.lists(st.floats(min_value=-20, max_value=0), min_size=1, max_size=30),
       text=st.text(min_size=1, max_size=40).filter(str.strip))
def test_perplexity_bpb_relation(lps: list[float], text: str) -> None:
    engine = FakeScoringEngine({text: lps})
    ppl = PerplexityScorer(engine).score("o", case(text)).value
    bpb = PerplexityScorer(engine, kind="bits_per_byte").score("o", case(text)).value
    assert ppl == pytest.approx(math.exp(-sum(lps) / len(lps)))
    # log2(ppl) * tokens == bits of the whole text
    assert bpb == pytest.approx(math.log2(ppl) * len(lps) / len(text.encode()), abs=1e-9)


def test_perplexity_batch_multi_refs_context_and_bad_input() -> None:
    engine = FakeScoringEngine({"good": [-0.1, -0.1], "bad": [-3.0, -3.0], "none": []})
    scorer = PerplexityScorer(engine, context="prompt", aggregate="max")
    cases = [Case(id="a", fields={"prompt": "Q1", "expected": ["bad", "good"]}),
             Case(id="b", fields={"prompt": "Q2", "expected": "none"}),
             Case(id="c", fields={"prompt": "Q3"}),
             Case(id="d", fields={"expected": "good"})]
    scores = scorer.score_batch(["", "", "", ""], cases)
    assert engine.calls == [(["bad", "good", "none"], ["Q1", "Q1", "Q2"])]  # one call
    assert scores[0].value == pytest.approx(math.exp(0.1))  # best = lowest
    assert scores[0].details["best_reference"] == 1
    assert scores[1].value is None and "no token log-probabilities" in scores[1].reason
    assert scores[2].value is None and "no reference" in scores[2].reason
    assert scores[3].value is None and "no prompt" in scores[3].reason
    mean = PerplexityScorer(engine, aggregate="mean").score("", case(["bad", "good"]))
    assert mean.value == pytest.approx((math.exp(3.0) + math.exp(0.1)) / 2)
    assert engine.calls[-1][1] is None  # no context asked


def test_perplexity_needs_score_capability() -> None:
    class NoScore(FakeScoringEngine):
        capabilities = frozenset({Capability.CHAT})

    with pytest.raises(EngineError, match="cannot score text") as err:
        PerplexityScorer(NoScore({}))
    assert err.value.fix and "hf engine" in err.value.fix


@pytest.mark.slow
def test_perplexity_with_real_hf_engine() -> None:
    HFEngine = need_module("pytest_aie.engines.hf", "hf engine",
                           install="pip install -e '.[hf]' (or `make install`)").HFEngine
    engine = HFEngine(device="cpu")
    try:
        natural = "The capital of France is Paris, and it is a beautiful city."
        shuffled = "city beautiful Paris, a is and France it of capital is The."
        scorer = PerplexityScorer(engine, kind="perplexity")
        scores = scorer.score_batch(["", ""], [case(natural), case(shuffled, 1)])
        raw = engine.score_text([natural])[0]
        assert scores[0].value == pytest.approx(math.exp(-sum(raw) / len(raw)), rel=1e-4)
        assert all(s.measured and math.isfinite(s.value) for s in scores)  # type: ignore[arg-type]
        assert scores[0].value < scores[1].value  # type: ignore[operator]
        bpb = PerplexityScorer(engine, kind="bits_per_byte").score("", case(natural))
        assert bpb.value == pytest.approx(-sum(raw) / math.log(2) / len(natural.encode()), rel=1e-4)
    finally:
        engine.close()
