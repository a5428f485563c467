"""The retrievers (pytest_aie.retrieval) on the real libraries: BM25 (bm25s) against the
formulas computed here, dense search (all-MiniLM-L6-v2) against a brute-force cosine, hnswlib
against exact search, fusion against hand values, a corpus where hybrid fusion beats both of
its parts, chunking, the disk cache (a second process loads instead of embedding; a damaged
entry is rebuilt), the batch target and the errors a user can fix."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Sampling
from pytest_aie.errors import DatasetError, EngineError, UsageError
from pytest_aie.retrieval import (
    BM25,
    CacheWarning,
    Dense,
    Document,
    Hit,
    Hybrid,
    Retriever,
    chunk_fixed,
    chunk_sentences,
    corpus_digest,
    fuse,
    load_corpus,
    make_retriever,
    split_sentences,
)
from pytest_aie.retrieval.base import top_k
from pytest_aie.retrieval.dense import HNSW
from pytest_aie.suite.target import TargetEngine, target_request

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrievers that keep the default cache_dir write under the test's folder."""
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "aie-cache"))


def words(text: str) -> list[str]:
    """bm25s's tokenizer without stopwords: lowercase words of two or more characters."""
    return re.findall(r"(?u)\b\w\w+\b", text.lower())


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


# --------------------------------------------------------------------------- BM25

SMALL = [Document("a", "cat sat mat"), Document("b", "cat cat dog"),
         Document("c", "dog barked loud"), Document("d", "bird flew over green hills")]


def lucene(docs: list[Document], query: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Lucene's BM25 (idf ln(1 + (N - df + .5)/(df + .5)), tf / (tf + k1 (1 - b + b dl/avgdl)))."""
    counts = [Counter(words(d.text)) for d in docs]
    lengths = [sum(c.values()) for c in counts]
    avg, n = sum(lengths) / len(docs), len(docs)
    out = []
    for c, dl in zip(counts, lengths):
        score = 0.0
        for w in words(query):
            df = sum(1 for other in counts if w in other)
            if c[w]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * c[w] / (c[w] + k1 * (1 - b + b * dl / avg))
        out.append(score)
    return out


def okapi(docs: list[Document], query: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """rank_bm25's BM25Okapi: idf ln((N - df + .5)/(df + .5)), tf (k1 + 1) / (tf + k1 (...))."""
    counts = [Counter(words(d.text)) for d in docs]
    lengths = [sum(c.values()) for c in counts]
    avg, n = sum(lengths) / len(docs), len(docs)
    out = []
    for c, dl in zip(counts, lengths):
        score = 0.0
        for w in words(query):
            df = sum(1 for other in counts if w in other)
            idf = math.log((n - df + 0.5) / (df + 0.5))
            assert idf > 0  # the corpus keeps every query word below half the documents
            score += idf * c[w] * (k1 + 1) / (c[w] + k1 * (1 - b + b * dl / avg))
        out.append(score)
    return out


def test_bm25_matches_a_hand_computation() -> None:
    bm25 = BM25(stopwords=None, cache_dir=False).index(SMALL)
    # N=4, avgdl=14/4=3.5, df(cat)=2: idf=ln(1+2.5/2.5)=ln 2; doc b: tf=2, dl=3:
    # 2 / (2 + 1.5 (0.25 + 0.75*3/3.5)) * ln 2 = 0.415148
    assert float(bm25.scores("cat")[1]) == pytest.approx(0.415148, rel=1e-5)
    for query in ("cat", "cat dog", "dog loud hills", "cat cat", "green"):
        assert bm25.scores(query).tolist() == pytest.approx(lucene(SMALL, query), rel=1e-5)
    hits = bm25.search(["cat dog"], k=10)[0]
    expected = lucene(SMALL, "cat dog")
    assert ids(hits) == ["b", "a", "c"]  # d shares no word: not returned
    assert [h.score for h in hits] == pytest.approx([expected[1], expected[0], expected[2]])
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].text == "cat cat dog"


def test_bm25_robertson_is_rank_bm25_okapi_up_to_k1_plus_1() -> None:
    docs = [Document(str(i), t) for i, t in enumerate([
        "apple banana cherry", "banana split with cream", "cherry pie and apple tart crumble",
        "grapes only", "melon melon melon kiwi", "kiwi tart"])]
    bm25 = BM25(method="robertson", stopwords=None, cache_dir=False).index(docs)
    for query in ("apple", "tart kiwi", "melon cream", "apple cherry"):
        # bm25s leaves out Okapi's constant (k1 + 1) factor, which changes no ranking
        assert (bm25.scores(query) * 2.5).tolist() == pytest.approx(okapi(docs, query), rel=1e-5)
        expected = [str(i) for i, s in sorted(enumerate(okapi(docs, query)),
                                              key=lambda p: (-p[1], p[0])) if s > 0]
        assert ids(bm25.search([query], k=6)[0]) == expected


def test_bm25_parameters_and_stopwords() -> None:
    docs = ["the cat and the hat", "a hat", "the the the"]
    plain = BM25(k1=1.2, b=0.5, stopwords=None, cache_dir=False).index(docs)
    assert plain.scores("hat").tolist() == pytest.approx(
        lucene(to_docs(docs), "hat", k1=1.2, b=0.5), rel=1e-5)
    english = BM25(cache_dir=False).index(docs)
    assert english.search(["the", "the zebra", "HAT"], k=3) == \
        [[], [], english.search(["hat"], k=3)[0]]
    own = BM25(stopwords=["cat"], cache_dir=False).index(docs)
    assert ids(own.search(["the cat"], k=3)[0]) == ["2", "0"]  # "the" counts, "cat" not
    assert len(english.search(["hat"], k=1)[0]) == 1


def to_docs(texts: list[str]) -> list[Document]:
    return [Document(str(i), t) for i, t in enumerate(texts)]


def test_top_k_orders_ties_by_position() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 4, 0]
    assert top_k(scores, 4).tolist() == [1, 4, 0, 2]
    assert top_k(scores, 10).tolist() == [1, 4, 0, 2, 5, 3]
    assert top_k(scores, 1).tolist() == [1]
    assert top_k(np.array([np.nan, 0.2, np.nan, 0.1]), 3).tolist() == [1, 3, 0]


# --------------------------------------------------------------------------- dense

PASSAGES = [
    "The Eiffel Tower is in Paris and was finished in 1889.",
    "Mount Everest is the highest mountain above sea level.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The Nile flows north into the Mediterranean Sea.",
    "Python is a programming language with dynamic typing.",
    "A violin has four strings tuned in fifths.",
    "The mitochondrion is the powerhouse of the cell.",
    "Bread rises because yeast produces carbon dioxide.",
]


@pytest.fixture(scope="module")
def dense() -> Dense:
    return Dense(cache_dir=False)


def test_dense_exact_search_is_the_brute_force_cosine(dense: Dense) -> None:
    dense.index(PASSAGES)
    queries = ["Which river ends in the Mediterranean?", "tallest peak on Earth",
               "how do plants make food", "string instruments"]
    found = dense.search(queries, k=3)
    raw = dense.encoder().encode(PASSAGES + queries, normalize_embeddings=False)
    docs, qs = raw[:len(PASSAGES)], raw[len(PASSAGES):]
    for q, hits in zip(qs, found):
        cosines = [float(np.dot(q, d) / (np.linalg.norm(q) * np.linalg.norm(d))) for d in docs]
        best = sorted(range(len(docs)), key=lambda i: -cosines[i])[:3]
        assert ids(hits) == [str(i) for i in best]
        assert [h.score for h in hits] == pytest.approx([cosines[i] for i in best], abs=1e-5)
    assert [ids(h)[0] for h in found] == ["3", "1", "2", "5"]  # and the answers make sense


class Lookup:
    """An encoder that maps texts to given vectors, counting its calls."""

    def __init__(self, vectors: dict[str, np.ndarray], cache_key: str | None = "lookup-v1"):
        self.vectors = vectors
        self.calls: list[int] = []
        if cache_key is not None:
            self.cache_key = cache_key

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.stack([self.vectors[t] for t in texts])


def random_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_hnsw_recall_against_exact_search() -> None:
    base, queries = random_vectors(3000, 32, 1), random_vectors(100, 32, 2)
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    labels, cosines = HNSW.build(unit, ef_search=100).search(q, 10)
    exact = [set(top_k(row, 10).tolist()) for row in q @ unit.T]
    recall = np.mean([len(set(found) & truth) / 10 for found, truth in zip(labels, exact)])
    assert recall >= 0.95
    assert cosines[0].tolist() == pytest.approx((unit[labels[0]] @ q[0]).tolist(), abs=1e-5)
    # through Dense, with an encoder of our own: approximate above the threshold only
    texts = {f"doc{i}": v for i, v in enumerate(base)} | {f"q{i}": v for i, v in enumerate(queries)}
    docs = list(texts)[:3000]
    small = Dense(Lookup(texts), approximate_above=5000, cache_dir=False).index(docs)
    large = Dense(Lookup(texts), approximate_above=2000, cache_dir=False).index(docs)
    assert small.hnsw is None and large.hnsw is not None
    got_exact = small.search([f"q{i}" for i in range(100)], k=10)
    got_hnsw = large.search([f"q{i}" for i in range(100)], k=10)
    assert [set(map(int, (h.id for h in hits))) for hits in got_exact] == \
        [{int(docs[i][3:]) for i in truth} for truth in exact]
    overlap = np.mean([len(set(ids(a)) & set(ids(b))) / 10 for a, b in zip(got_exact, got_hnsw)])
    assert overlap >= 0.95


# --------------------------------------------------------------------------- fusion

def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(id=i, score=s, text=i.upper(), rank=r) for r, (i, s) in enumerate(pairs, 1)]


def test_rrf_and_weighted_fusion_by_hand() -> None:
    first = hits(("a", 10.0), ("b", 6.0), ("c", 2.0))
    second = hits(("c", 0.9), ("a", 0.5), ("d", 0.1))
    rrf = fuse([first, second], rrf_k=60)
    assert ids(rrf) == ["a", "c", "b", "d"]
    assert [h.score for h in rrf] == pytest.approx(
        [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63])
    assert [h.rank for h in rrf] == [1, 2, 3, 4] and rrf[0].text == "A"
    weighted = fuse([first, second], fusion="weighted", weights=[0.3, 0.7])
    # min-max: first a=1, b=.5, c=0; second c=1, a=.5, d=0
    assert ids(weighted) == ["c", "a", "b", "d"]
    assert [h.score for h in weighted] == pytest.approx([0.7, 0.3 + 0.35, 0.15, 0.0])
    # weighted RRF, and ties: equal fused scores go by best rank, then by part
    assert ids(fuse([hits(("x", 1)), hits(("y", 1))])) == ["x", "y"]
    assert ids(fuse([hits(("x", 1)), hits(("y", 1))], weights=[1, 2])) == ["y", "x"]
    assert fuse([hits(("x", 3), ("y", 3))], fusion="weighted")[1].score == 1.0  # max == min


FILLER = ("To install the unit, mount the bracket on a solid wall, level it, hang the housing "
          "on the bracket, connect the hoses to the inlet and outlet, and tighten every clamp "
          "by hand. Leave a gap of ten centimetres on each side for air to circulate, and keep "
          "the cable away from hot surfaces.")
#: keyword questions (a part number, an error code: BM25 finds them) and paraphrases (no
#: shared word with the answer; a decoy shares the question's words: the embedding finds them)
HYBRID_DOCS = [
    {"id": "e4471", "text": "E4471 is logged when the intake fuse blows. " + FILLER},
    {"id": "faults", "text": "Each fault shown on the display has a meaning explained in the manual."},
    {"id": "lights", "text": "Warning lights and fault indications: the signal each one gives."},
    {"id": "codes", "text": "Diagnostic messages name the failed component."},
    {"id": "k9311", "text": "K9311 is the drive belt. " + FILLER},
    {"id": "spares", "text": "Replacement parts and accessories for your appliance, listed by model."},
    {"id": "catalogue", "text": "Our catalogue of components: belts, filters, seals and motors."},
    {"id": "ordering", "text": "Order spares online with the number printed on the old component."},
    {"id": "refund", "text": "Refunds: send the receipt back to us and we pay within five days."},
    {"id": "returns", "text": "Returning an item: pack it and post it to our returns desk for reimbursement."},
    {"id": "payments", "text": "Payments are refunded to the card that paid for the order."},
    {"id": "decoy-money", "text": "Money plants grow back quickly after pruning in spring."},
    {"id": "hours", "text": "The shop is staffed from nine until six on weekdays; the doors are open "
                            "to visitors then."},
    {"id": "opening", "text": "Visiting us: we welcome customers at our store every weekday morning "
                              "and afternoon."},
    {"id": "schedule", "text": "Our weekday schedule for visits to the store and the service desk."},
    {"id": "decoy-time", "text": "Open fields: hours of walking through the countryside, a short poem."},
]
HYBRID_QUESTIONS = [("what does error E4471 mean", "e4471"), ("which spare part is K9311", "k9311"),
                    ("How do I get my money back?", "refund"), ("What hours are you open?", "hours")]


def test_hybrid_beats_both_of_its_parts(dense: Dense) -> None:
    questions = [q for q, _ in HYBRID_QUESTIONS]
    sparse = BM25(cache_dir=False)
    hybrid = Hybrid(sparse, dense, corpus=HYBRID_DOCS)  # indexes both parts
    ranks = {}
    for name, retriever in (("hybrid", hybrid), ("bm25", sparse), ("dense", dense)):
        found = retriever.search(questions, k=5)
        ranks[name] = [ids(h).index(rel) + 1 if rel in ids(h) else None
                       for h, (_, rel) in zip(found, HYBRID_QUESTIONS)]
    mrr = {name: np.mean([1 / r if r else 0.0 for r in rs]) for name, rs in ranks.items()}
    hit1 = {name: np.mean([r == 1 for r in rs]) for name, rs in ranks.items()}
    assert ranks["bm25"][:2] == [1, 1] and ranks["bm25"][2:] == [2, 2]  # decoys first
    assert ranks["dense"][1] > 1  # the part number: its siblings look closer
    assert ranks["hybrid"] == [1, 1, 1, 1]
    assert mrr["hybrid"] > max(mrr["bm25"], mrr["dense"])
    assert hit1["hybrid"] > max(hit1["bm25"], hit1["dense"])


def test_hybrid_parts_with_their_own_corpus_and_settings(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(["red apples", "green apples", "red cars"])))
    vectors = {"red apples": np.array([1, 0.0]), "green apples": np.array([0.8, 0.6]),
               "red cars": np.array([0, 1.0]), "red": np.array([0.6, 0.8])}
    hybrid = Hybrid(BM25(corpus=corpus, cache_dir=False),
                    Dense(Lookup(vectors), corpus=corpus, cache_dir=False),
                    fusion="weighted", weights=[1, 1], depth=2)
    found = hybrid.search(["red"], k=2)[0]
    # BM25 (depth 2): d0, d2 tied -> min-max 1 each; dense: d1 .96, d2 .8 -> d1 1, d2 0;
    # every fused score is 1: by best rank, then part: d0 (1st in BM25), d1 (1st in dense)
    assert ids(found) == ["d0", "d1"] and [h.score for h in found] == pytest.approx([1.0, 1.0])
    # k=3 deepens both parts to 3: dense d1 .96, d2 .8, d0 .6 -> d2 (.8-.6)/.36 = .556
    found = hybrid.search(["red"], k=3)[0]
    assert ids(found) == ["d2", "d0", "d1"]
    assert [h.score for h in found] == pytest.approx([1 + 0.2 / 0.36, 1.0, 1.0], rel=1e-6)
    settings = hybrid.settings()
    assert settings["fusion"] == "weighted" and [p["retriever"] for p in settings["parts"]] == \
        ["bm25", "dense"] and "rrf_k" not in settings
    assert hybrid.corpus_identity()[0] == corpus_digest(load_corpus(corpus))


# --------------------------------------------------------------------------- chunking

def test_fixed_chunks_by_words_and_characters() -> None:
    text = "one two  three four\nfive six seven eight nine ten"
    chunks = chunk_fixed([Document("d", text, {"lang": "en"})], size=4, overlap=1)
    assert [c.id for c in chunks] == ["d#0", "d#1", "d#2"]
    assert [c.text for c in chunks] == ["one two  three four", "four\nfive six seven",
                                        "seven eight nine ten"]
    assert chunks[1].metadata == {"lang": "en", "parent": "d", "start": 15, "end": 34}
    assert text[15:34] == chunks[1].text
    assert [c.text for c in chunk_fixed(["abcdefghij"], size=4, overlap=2, unit="chars")] == \
        ["abcd", "cdef", "efgh", "ghij"]
    assert [c.text for c in chunk_fixed(["abcdefghi"], size=4, overlap=0, unit="chars")] == \
        ["abcd", "efgh", "i"]
    assert [c.text for c in chunk_fixed(["short text"], size=50, overlap=10)] == ["short text"]
    assert chunk_fixed(["   ", "x"], size=2, overlap=0) == [Document("1#0", "x", {
        "parent": "1", "start": 0, "end": 1})]


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 4, "overlap": 4}, "overlap=4 must be smaller than size=4"),
    ({"size": 0, "overlap": 0}, "size=0 must be a whole number >= 1"),
    ({"size": 4, "overlap": -1}, "overlap=-1"),
    ({"size": 2.5, "overlap": 0}, "size=2.5"),
    ({"size": True, "overlap": 0}, "size=True"),
    ({"size": 4, "overlap": 0, "unit": "tokens"}, "unit='tokens'"),
])
def test_fixed_chunks_reject_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        chunk_fixed(["a b c"], **kwargs)


def test_sentences_and_sentence_chunks() -> None:
    text = ('Dr. Smith met J. R. Tolkien in the U.S. in 1950. It cost 3.5 dollars! '
            'Really? "Yes," he said. e.g. this one... And then\n\nA new paragraph without end')
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == ["Dr. Smith met J. R. Tolkien in the U.S. in 1950.",
                         "It cost 3.5 dollars!", "Really?", '"Yes," he said. e.g. this one...',
                         "And then", "A new paragraph without end"]
    chunks = chunk_sentences([{"id": "x", "text": text, "source": "s"}], max_sentences=4,
                             overlap=2)
    assert [c.id for c in chunks] == ["x#0", "x#1"]
    assert chunks[0].text == text[:text.index("one...") + 6]
    assert chunks[1].text.startswith("Really?") and chunks[1].text.endswith("without end")
    assert chunks[1].metadata["parent"] == "x" and chunks[1].metadata["source"] == "s"
    assert [c.text for c in chunk_sentences(["One. Two. Three."], max_sentences=1)] == \
        ["One.", "Two.", "Three."]
    with pytest.raises(UsageError, match="overlap=1 must be smaller than max_sentences=1"):
        chunk_sentences(["One."], max_sentences=1, overlap=1)


# --------------------------------------------------------------------------- corpus files

def test_corpus_files_in_every_format(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "alpha", "year": 1}, {"id": 2, "text": "beta"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "c.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "d.json").write_text(json.dumps({"documents": rows}))
    (tmp_path / "c.yaml").write_text("- id: a\n  text: alpha\n  year: 1\n- id: 2\n  text: beta\n")
    (tmp_path / "c.csv").write_text("id,text,year\na,alpha,1\n2,beta,\n")
    for name in ("c.jsonl", "c.json", "d.json", "c.yaml"):
        docs = load_corpus(tmp_path / name)
        assert docs == [Document("a", "alpha", {"year": 1}), Document("2", "beta", {})], name
    assert load_corpus(tmp_path / "c.csv")[0] == Document("a", "alpha", {"year": "1"})
    digest = corpus_digest(load_corpus(tmp_path / "c.jsonl"))
    assert digest == corpus_digest([Document("a", "alpha"), Document("2", "beta", {"x": 1})])
    assert digest != corpus_digest([Document("2", "beta"), Document("a", "alpha")])
    assert digest != corpus_digest([Document("a", "alpha!"), Document("2", "beta")])


@pytest.mark.parametrize("name, content, message", [
    ("m.jsonl", '{"id": "a", "text": "x"}\n{"text": "y"}\n', "m.jsonl:2: document has no 'id'"),
    ("m.jsonl", '{"id": "a", "text": "x"}\n\n{"id": "b"}\n', "m.jsonl:3: document has no 'text'"),
    ("m.jsonl", '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
     "m.jsonl:2: document id 'a' appears more than once (first on line 1)"),
    ("m.jsonl", '{"id": "a", "text": "x"}\n{"id": "b", "text": 3}\n',
     "m.jsonl:2: 'text' must be a string, got int"),
    ("m.jsonl", '{"id": "a", "text": "x"}\n{"id": "b", "text": \n', "m.jsonl:2: invalid JSON"),
    ("m.jsonl", '["a", "x"]\n', "m.jsonl:1: a document must be a mapping"),
    ("m.csv", "id,text\na,x\nb,\n", "m.csv:3: document's 'text' field is empty"),
    ("m.yaml", "- id: a\n  text: x\n- id: a\n  text: y\n",
     "m.yaml:3: document id 'a' appears more than once"),
    ("m.json", '[\n {"id": "a", "text": "x"},\n {"id": "b"}\n]', "m.json:3: document has no 'text'"),
    ("m.json", '[\n {"id": "a", "text": "x"}\n {"id": "b"}\n]', "m.json:3: invalid JSON"),
    ("m.json", '{"docs": []}', "must be a list of documents"),
    ("m.jsonl", "\n", "the corpus is empty"),
    ("m.txt", "a", "unsupported corpus format '.txt'"),
])
def test_bad_corpus_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_corpus(tmp_path / name)


def test_a_relative_corpus_path_is_next_to_the_module_that_made_the_retriever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "docs.jsonl").write_text('{"id": "a", "text": "red apples"}\n')
    (tmp_path / "suite" / "test_x.py").write_text(
        "from pytest_aie.retrieval import BM25\nSEARCH = BM25(corpus='docs.jsonl')\n")
    monkeypatch.chdir(tmp_path)  # not the module's folder
    search = runpy.run_path(str(tmp_path / "suite" / "test_x.py"))["SEARCH"]
    assert ids(search.search(["apples"])[0]) == ["a"]
    (tmp_path / "here.jsonl").write_text('{"id": "b", "text": "red cars"}\n')
    assert ids(BM25(corpus="here.jsonl", cache_dir=False).search(["cars"])[0]) == ["b"]


def test_missing_corpus_fails_at_first_search_not_at_construction(tmp_path: Path) -> None:
    lazy = BM25(corpus=tmp_path / "nope.jsonl")  # a module-level retriever costs nothing
    with pytest.raises(DatasetError, match="nope.jsonl: corpus file not found"):
        lazy.search(["x"])


# --------------------------------------------------------------------------- disk cache

def test_bm25_index_is_cached_by_corpus_and_settings(tmp_path: Path) -> None:
    docs = ["red apples", "green apples", "red cars"]
    first = BM25(cache_dir=tmp_path).index(docs)
    again = BM25(cache_dir=tmp_path).index(docs)
    assert (first.store.built, again.store.built, again.store.loaded) == (1, 0, 1)
    assert again.search(["red apples"], k=3) == first.search(["red apples"], k=3)
    other = BM25(k1=1.2, cache_dir=tmp_path).index(docs)
    changed = BM25(cache_dir=tmp_path).index(docs[:2] + ["red bikes"])
    assert other.store.built == 1 and changed.store.built == 1
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3
    off = BM25(cache_dir=False).index(docs)
    assert off.store.built == 1 and off.store.root is None


def test_a_second_process_loads_the_embeddings(tmp_path: Path, dense: Dense) -> None:
    cache = tmp_path / "cache"
    built = Dense(cache_dir=cache).index(PASSAGES)
    assert built.store.built == 1
    script = textwrap.dedent(f"""
        import json, sys
        from pytest_aie.retrieval import Dense
        d = Dense(cache_dir={str(cache)!r}).index({PASSAGES!r})
        heavy = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
        print(json.dumps({{"loaded": d.store.loaded, "built": d.store.built, "heavy": heavy,
                          "sum": float(d.embeddings.sum())}}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] == 1 and report["built"] == 0
    assert report["heavy"] == []  # loading needs no model: nothing was embedded
    assert built.embeddings is not None
    assert report["sum"] == pytest.approx(float(built.embeddings.sum()), rel=1e-6)
    # and in this process: a new retriever embeds the queries only
    counted = Dense(cache_dir=cache)
    calls: list[int] = []
    encode = counted.encode
    counted.encode = lambda texts: calls.append(len(texts)) or encode(texts)  # type: ignore[method-assign]
    counted.index(PASSAGES)
    assert calls == []
    assert ids(counted.search(["tallest peak on Earth", "yeast"], k=1)[0]) == ["1"]
    assert calls == [2]  # both queries in one call


def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    vectors = {f"t{i}": v for i, v in enumerate(random_vectors(50, 8, 3))}
    texts = list(vectors)
    encoder = Lookup(vectors)
    first = Dense(encoder, approximate=True, cache_dir=tmp_path).index(texts)
    expected = first.search(["t3", "t7"], k=5)
    assert encoder.calls == [50, 2]
    entries = {p.name.split("-")[0]: p for p in tmp_path.iterdir() if p.is_dir()}
    assert set(entries) == {"dense", "hnsw"}
    # a flipped byte in the embeddings, a truncated graph: checksums catch both
    emb = entries["dense"] / "embeddings.npy"
    raw = bytearray(emb.read_bytes())
    raw[-3] ^= 0xFF
    emb.write_bytes(bytes(raw))
    graph = entries["hnsw"] / "hnsw.bin"
    graph.write_bytes(graph.read_bytes()[:100])
    with pytest.warns(CacheWarning, match="unreadable") as caught:
        rebuilt = Dense(encoder, approximate=True, cache_dir=tmp_path).index(texts)
    assert len(caught) == 2 and "fails its checksum" in str(caught[0].message)
    assert encoder.calls == [50, 2, 50]  # embedded again
    assert rebuilt.search(["t3", "t7"], k=5) == expected
    # the rewritten entries load cleanly; a broken manifest is rebuilt too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = Dense(encoder, approximate=True, cache_dir=tmp_path).index(texts)
    assert clean.store.loaded == 2 and encoder.calls == [50, 2, 50, 2]  # no new embedding
    (entries["dense"] / "manifest.json").write_text("{")
    with pytest.warns(CacheWarning, match="JSONDecodeError"):
        Dense(encoder, cache_dir=tmp_path).index(texts)
    assert encoder.calls == [50, 2, 50, 2, 50]


def test_an_unusable_cache_folder_costs_only_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(CacheWarning, match="not usable"):
        bm25 = BM25(cache_dir=blocker / "sub").index(["a cat", "a dog"])
    assert ids(bm25.search(["cat"])[0]) == ["0"]


def test_an_encoder_without_cache_key_is_not_cached(tmp_path: Path) -> None:
    encoder = Lookup({"a": np.ones(3), "b": np.arange(3.0)}, cache_key=None)
    Dense(encoder, cache_dir=tmp_path).index(["a", "b"])
    Dense(encoder, cache_dir=tmp_path).index(["a", "b"])
    assert encoder.calls == [2, 2] and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- as a target

def cases() -> list[Case]:
    return [Case("q1", {"question": "red apples", "relevant": ["d0"]}),
            Case("q2", {"prompt": "no question here"}),
            Case("q3", {"question": "cars", "relevant": ["d2"]})]


def test_as_target_runs_the_suite_in_one_search() -> None:
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(["red apples", "green apples",
                                                               "red cars"])]
    bm25 = BM25(corpus=docs, cache_dir=False)
    searched: list[list[str]] = []
    search = bm25.search
    bm25.search = lambda q, k=10: searched.append(list(q)) or search(q, k)  # type: ignore[method-assign]
    target = bm25.as_target(k=2)
    out = target.run_cases(cases(), model=None)
    assert searched == [["red apples", "cars"]]
    assert [g.engine for g in out] == ["retriever"] * 3
    assert out[0].text == "d0, d1" and out[0].finish_reason == "stop"  # d1, d2 tie: by position
    assert out[0].retrieved == [h.to_dict() for h in search(["red apples"], k=2)[0]]
    assert out[0].retrieved[0]["rank"] == 1 and out[0].retrieved[0]["text"] == "red apples"
    assert out[1].finish_reason == "error" and out[1].text == ""
    assert "case 'q2' has no 'question' field" in out[1].error
    assert "as_target(query=...)" in out[1].error
    assert out[2].text == "d2" and out[2].timings.batch_size == 2
    assert target.target_label == "retriever:bm25"
    by_prompt = bm25.as_target(k=1, query=lambda case: case.get("question") or case.prompt)
    assert [g.text for g in by_prompt.run_cases(cases(), None)] == ["d0", "", "d2"]


def test_target_identity_follows_settings_corpus_and_k(tmp_path: Path) -> None:
    docs = ["red apples", "green apples"]
    ident = BM25(corpus=docs).as_target(k=3).target_identity(None)
    assert ident == BM25(corpus=list(docs)).as_target(k=3).target_identity(None)
    assert ident != BM25(corpus=docs).as_target(k=4).target_identity(None)
    assert ident != BM25(corpus=docs, k1=1.0).as_target(k=3).target_identity(None)
    assert ident != BM25(corpus=docs[:1]).as_target(k=3).target_identity(None)
    assert ident != BM25(corpus=docs).as_target(k=3, query="prompt").target_identity(None)


def test_as_target_through_the_target_engine() -> None:
    bm25 = BM25(corpus=["red apples", "green apples", "red cars"], cache_dir=False)
    engine = TargetEngine(bm25.as_target(k=1))
    suite = cases()
    requests = [target_request(dict(c.fields), Sampling()) for c in suite]
    engine.bind({r.key(): c for r, c in zip(requests, suite)})
    out = engine.generate(requests)
    assert [g.text for g in out] == ["0", "", "2"] and out[1].error
    assert engine.identity()["model"] == "retriever:bm25"
    assert engine.identity()["version"] == bm25.as_target(k=1).target_identity(None)


class Catalogue(Retriever):
    """A user's retriever: only search (as a client of an external index would be)."""

    def search(self, queries, k=10):  # type: ignore[no-untyped-def]
        return [[Hit(id=f"{q}-{i}", score=1.0 / (i + 1), text=q, rank=i + 1) for i in range(k)]
                for q in queries]


def test_a_users_own_retriever_needs_only_search() -> None:
    target = Catalogue().as_target(k=2)
    out = target.run_cases(cases(), None)
    assert out[0].text == "red apples-0, red apples-1"
    assert target.target_label == "retriever:test_retrieval.Catalogue"
    assert len(target.target_identity(None)) == 16
    assert Catalogue().index(["x"]).documents == [Document("0", "x")]


# --------------------------------------------------------------------------- errors

def test_search_and_constructor_errors() -> None:
    bm25 = BM25(cache_dir=False).index(["a cat"])
    with pytest.raises(UsageError, match=r"search\(\) takes a list of queries.*search\(\[query\]"):
        bm25.search("cat")
    with pytest.raises(UsageError, match="queries must be strings"):
        bm25.search([3])
    with pytest.raises(UsageError, match="k=0 must be"):
        bm25.search(["cat"], k=0)
    with pytest.raises(UsageError, match="BM25 has no documents.*corpus="):
        BM25().search(["cat"])
    with pytest.raises(UsageError, match="document id 'a' appears more than once"):
        BM25().index([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    with pytest.raises(UsageError, match="document 1 has no 'text'"):
        BM25().index([{"id": "a", "text": "x"}, {"id": "b"}])
    with pytest.raises(UsageError, match="no documents"):
        BM25().index([])
    for bad, message in ((dict(method="okapi"), "method='okapi'"), (dict(b=2), "b=2"),
                         (dict(k1=-1), "k1=-1"), (dict(stopwords="fr"), "stopwords='fr'")):
        with pytest.raises(UsageError, match=re.escape(message)):
            BM25(**bad)
    with pytest.raises(UsageError, match="approximate='yes'"):
        Dense(approximate="yes")
    with pytest.raises(UsageError, match="ef_search=0"):
        Dense(ef_search=0)
    with pytest.raises(UsageError, match="at least two retrievers"):
        Hybrid(BM25())
    with pytest.raises(UsageError, match="one weight per retriever"):
        Hybrid(BM25(), BM25(), weights=[1])
    with pytest.raises(UsageError, match="fusion='max'"):
        Hybrid(BM25(), BM25(), fusion="max")
    with pytest.raises(UsageError, match="k=0"):
        BM25().as_target(k=0)


def test_make_retriever() -> None:
    hybrid = make_retriever("hybrid", k1=1.2, model=None, depth=20, corpus=["x"], cache_dir=False)
    assert isinstance(hybrid, Hybrid) and hybrid.fusion == "rrf" and hybrid.depth == 20
    sparse, dense_part = hybrid.parts
    assert isinstance(sparse, BM25) and sparse.k1 == 1.2 and isinstance(dense_part, Dense)
    assert sparse.store.root is None and dense_part.store.root is None
    assert make_retriever("hybrid:weighted").fusion == "weighted"  # type: ignore[attr-defined]
    assert isinstance(make_retriever("bm25", corpus=None), BM25)
    assert isinstance(make_retriever("dense", approximate=False), Dense)
    with pytest.raises(UsageError, match=r"unknown retriever kind 'splade'.*bm25, dense, hybrid"):
        make_retriever("splade")
    with pytest.raises(UsageError, match=r"retriever 'bm25' has no option 'model'.*k1"):
        make_retriever("bm25", model="x")


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bm25s", None)
    with pytest.raises(EngineError, match=r"pytest-aie\[rag\]"):
        BM25(cache_dir=False).index(["a cat"])


def test_importing_the_package_loads_no_heavy_library() -> None:
    script = ("import sys, pytest_aie.retrieval as r\n"
              "r.BM25(corpus='docs.jsonl'); r.Dense(corpus='docs.jsonl')\n"
              "print([m for m in ('torch', 'sentence_transformers', 'bm25s', 'hnswlib', 'numpy',"
              " 'scipy', 'transformers') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
