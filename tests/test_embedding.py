"""Embedding cosine and BERTScore scorers, with the real all-MiniLM-L6-v2 model (slow tests)
and hand-computed checks of BERTScore's matching (fast)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from components import need_module  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pytest_aie.dataset import Case  # noqa: E402
from pytest_aie.errors import EngineError, UsageError  # noqa: E402
from pytest_aie.scorers.embedding import (  # noqa: E402
    BERTScoreScorer,
    EmbeddingScorer,
    bertscore,
    greedy_match,
    load_sentence_model,
    resolve_model,
)
from pytest_aie.scorers.similarity import build_similarity_scorer  # noqa: E402


def case(expected: object, i: int = 0) -> Case:
    return Case(id=f"c{i}", fields={"expected": expected})


# --------------------------------------------------------------------------- fast


def test_greedy_match_hand_computed() -> None:
    torch = need_module("torch", install="`make install` (the CPU build, torch==2.13.0)")
    # 2-D unit vectors. Candidate: [CLS] t1 t2 [SEP]; reference: [CLS] u1 [SEP].
    cand = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
    ref = torch.tensor([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]])
    cw, rw = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    p, r, f = greedy_match(cand, ref, cw, rw)
    # t1: best cosine 0.6 (u1); t2: 0.96 (u1) -> P = 0.78. u1: best 0.96 (t2) -> R = 0.96.
    assert p == pytest.approx(0.78) and r == pytest.approx(0.96)
    assert f == pytest.approx(2 * 0.78 * 0.96 / (0.78 + 0.96))
    # A special token of the other side is a valid match (as in bert-score): t = (1, 0)
    # matches the reference's [CLS] with cosine 1.
    p2, _, _ = greedy_match(torch.tensor([[1.0, 0.0]]), ref, torch.tensor([1.0]), rw)
    assert p2 == pytest.approx(1.0)


def test_missing_model_fails_at_build(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        EmbeddingScorer(model=str(tmp_path / "no-such-model"))
    with pytest.raises(EngineError, match="not installed locally") as err:
        build_similarity_scorer("cosine", model="nobody-xyz/no-such-model-123")
    assert err.value.fix and "local model folder" in err.value.fix
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="no config.json"):
        BERTScoreScorer(model=str(tmp_path / "empty"))


def test_default_model_is_the_bundled_folder() -> None:
    path = Path(resolve_model(None))
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    assert resolve_model("all-MiniLM-L6-v2") == resolve_model(
        "sentence-transformers/all-MiniLM-L6-v2") == str(path)


@pytest.mark.parametrize("metric,kwargs,match", [
    ("cosine", {"batch_size": 0}, "batch_size"),
    ("cosine", {"layer": 3}, "does not take"),
    ("bertscore", {"component": "f2"}, "component"),
    ("bertscore", {"layer": "5"}, "integer"),
    ("cosine", {"threshold": 1.5}, "0-1 scale"),
])
def test_model_scorer_usage_errors(metric: str, kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        build_similarity_scorer(metric, **kwargs)


def test_unloadable_model_is_unmeasured(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    scorer = EmbeddingScorer(model=str(tmp_path))  # resolves: the folder looks like a model
    scores = scorer.score_batch(["a", "b"], [case("a"), case("b", 1)])
    assert [s.value for s in scores] == [None, None]
    assert all("cannot load sentence-transformers model" in s.reason for s in scores)


# --------------------------------------------------------------------------- cosine (slow)

PARA = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("I like green apples and bananas", "Bananas are yellow."),
    ("The stock market fell sharply today.", "My grandmother knits warm socks."),
]


@pytest.mark.slow
def test_cosine_identical_and_symmetric() -> None:
    scorer = build_similarity_scorer("cosine", threshold=0.5)
    outs = [a for a, _ in PARA] + [b for _, b in PARA]
    refs = [b for _, b in PARA] + [a for a, _ in PARA]
    fwd = scorer.score_batch(outs, [case(r, i) for i, r in enumerate(refs)])
    n = len(PARA)
    for i in range(n):  # argument order does not matter
        assert fwd[i].value == pytest.approx(fwd[i + n].value, abs=1e-5)
    same = scorer.score_batch(outs, [case(o, i) for i, o in enumerate(outs)])
    assert all(s.value == pytest.approx(1.0, abs=1e-5) and s.passed for s in same)
    # paraphrases score above an unrelated pair, and the threshold separates them
    assert fwd[0].value > fwd[3].value + 0.3 and fwd[1].value > 0.9  # type: ignore[operator]
    assert fwd[0].passed is True and fwd[3].passed is False
    assert "cosine" in fwd[3].reason and "< threshold 0.5" in fwd[3].reason


@pytest.mark.slow
def test_cosine_equals_sentence_transformers_and_batching() -> None:
    import numpy as np

    scorer = EmbeddingScorer(batch_size=64)
    model = load_sentence_model()
    a, b = PARA[0]
    ea, eb = model.encode([a, b], normalize_embeddings=True)
    one = scorer.score(a, case(b))
    assert one.value == pytest.approx(float(np.dot(ea, eb)), abs=1e-5)
    batch = scorer.score_batch([o for o, _ in PARA], [case(r, i) for i, (_, r) in enumerate(PARA)])
    singles = [scorer.score(o, case(r)) for o, r in PARA]
    assert [s.value for s in batch] == pytest.approx([s.value for s in singles], abs=1e-5)


@pytest.mark.slow
def test_cosine_suite_is_two_encode_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = EmbeddingScorer(batch_size=64)
    model = load_sentence_model()
    assert load_sentence_model() is model  # shared per process
    calls: list[tuple[int, int]] = []
    real = model.encode

    def counting(texts, **kw):  # type: ignore[no-untyped-def]
        calls.append((len(texts), kw["batch_size"]))
        assert kw["normalize_embeddings"] is True
        return real(texts, **kw)

    monkeypatch.setattr(model, "encode", counting)
    outs = [f"answer number {i}" for i in range(150)]
    cases = [case([f"reference {i}", f"other reference {i}"], i) for i in range(150)]
    scores = scorer.score_batch(outs, cases)
    assert calls == [(150, 64), (300, 64)]
    assert all(s.measured and len(s.details["per_reference"]) == 2 for s in scores)


@pytest.mark.slow
def test_cosine_multi_reference_and_bad_input() -> None:
    out = "The cat sat on the mat."
    refs = ["Quarterly revenue grew by ten percent.", "A cat was sitting on the mat."]
    best = build_similarity_scorer("cosine").score(out, case(refs))
    mean = build_similarity_scorer("cosine", aggregate="mean").score(out, case(refs))
    per = best.details["per_reference"]
    assert best.value == pytest.approx(max(per)) and best.details["best_reference"] == 1
    assert mean.value == pytest.approx(sum(per) / 2) and mean.value < best.value  # type: ignore[operator]
    scores = EmbeddingScorer().score_batch(["", "fine", None, "fine"],  # type: ignore[list-item]
                                           [case("x"), case(""), case("x"), case(out)])
    assert [s.measured for s in scores] == [False, False, False, True]
    assert "output is empty" in scores[0].reason and "is empty" in scores[1].reason


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(a=st.text(min_size=1, max_size=40).filter(str.strip),
       b=st.text(min_size=1, max_size=40).filter(str.strip))
def test_cosine_properties_hypothesis(a: str, b: str) -> None:
    scorer = EmbeddingScorer()
    ab, ba = scorer.score(a, case(b)).value, scorer.score(b, case(a)).value
    assert ab == pytest.approx(ba, abs=1e-5) and -1.0 <= ab <= 1.0  # type: ignore[operator]
    assert scorer.score(a, case(a)).value == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- BERTScore (slow)

CANDS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog.",
         "Paris is the capital of France.", "I like green apples and bananas", "hello"]
REFS = ["A cat was sitting on the mat.", "The fast brown fox leaped over a sleepy dog.",
        "The capital of France is Paris.", "Bananas are yellow.", "hello there, general kenobi"]
# (P, R, F1) from bert-score 0.3.12 itself: bert_score.score(CANDS, REFS,
# model_type=<the bundled all-MiniLM-L6-v2 folder>, num_layers=5, idf=False, lang="en").
# bert-score is in the dev extra: test_bertscore_against_live_bert_score_package checks these
# values against the installed package on every run.
BERT_SCORE_LAYER5 = [
    (0.931639, 0.905306, 0.918284),
    (0.863279, 0.866330, 0.864802),
    (0.974461, 0.974461, 0.974461),
    (0.566756, 0.672442, 0.615092),
    (0.968410, 0.424712, 0.590465),
]


@pytest.mark.slow
def test_bertscore_equals_bert_score_package_output() -> None:
    got = bertscore(CANDS, REFS, layer=5, batch_size=2)
    for ours, theirs in zip(got, BERT_SCORE_LAYER5):
        assert ours == pytest.approx(theirs, abs=2e-5)
    scorer = build_similarity_scorer("bertscore", threshold=0.9)  # default layer = 5
    scores = scorer.score_batch(CANDS, [case(r, i) for i, r in enumerate(REFS)])
    assert [s.value for s in scores] == pytest.approx([t[2] for t in BERT_SCORE_LAYER5], abs=2e-5)
    assert [s.passed for s in scores] == [True, False, True, False, False]
    assert scores[0].details["layer"] == 5 and scores[0].metric == "similarity.bertscore_f1"
    rec = build_similarity_scorer("bertscore_recall").score_batch(
        CANDS, [case(r, i) for i, r in enumerate(REFS)])
    assert [s.value for s in rec] == pytest.approx([t[1] for t in BERT_SCORE_LAYER5], abs=2e-5)


@pytest.mark.slow
def test_bertscore_against_live_bert_score_package() -> None:
    # The installed bert-score on the bundled local model (a folder path: no hub), at the golden
    # layer and two others: it reproduces the golden table, and ours matches it at every layer.
    bert_score = need_module("bert_score", install="pip install -e '.[dev]' (or `make install`)")
    model = resolve_model(None)
    assert Path(model).is_dir()
    for layer in (3, 5, 6):
        P, R, F = bert_score.score(CANDS, REFS, model_type=model, num_layers=layer, idf=False, lang="en")
        theirs = [(float(p), float(r), float(f)) for p, r, f in zip(P, R, F)]
        if layer == 5:
            for live, golden in zip(theirs, BERT_SCORE_LAYER5, strict=True):
                assert live == pytest.approx(golden, abs=2e-5)
        got = bertscore(CANDS, REFS, layer=layer)
        for ours, live in zip(got, theirs, strict=True):
            assert ours == pytest.approx(live, abs=2e-5)


@pytest.mark.slow
def test_bertscore_identity_and_bad_input() -> None:
    scorer = BERTScoreScorer()
    s = scorer.score_batch(["The same sentence.", "", "ok"],
                           [case("The same sentence."), case("x"), case(["ok", 5])])
    assert s[0].details["precision"] == pytest.approx(1.0, abs=1e-5)
    assert s[0].details["recall"] == pytest.approx(1.0, abs=1e-5)
    assert s[0].value == pytest.approx(1.0, abs=1e-5)
    assert not s[1].measured and not s[2].measured and "not a string" in s[2].reason
