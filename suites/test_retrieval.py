"""Retrieval and RAG on a small corpus written for the project (``rag/corpus.jsonl``: 24
passages; ``rag/questions.jsonl``: 22 questions with their relevant passage ids, one graded,
and short answers).

* Retrieval quality of term-based (BM25), embedding-based (all-MiniLM-L6-v2) and hybrid
  (reciprocal rank fusion) search: recall@3, nDCG@5, MRR and hit rate@1, each with its
  interval and gate. Several questions are paraphrases that share few words with their passage.
* A RAG application (retrieve 3 passages, then ask the embedded model): whether the answer
  contains the expected fact, whether retrieval found the relevant passage, and whether the
  answer is faithful to what was retrieved, judged on the ``faithfulness`` rubric. The report
  shows the retrieved passages next to each answer.

Indexes are built on first use and cached on disk by corpus content and settings.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_aie.retrieval import BM25, Dense, Hybrid

CORPUS = Path(__file__).parent / "rag" / "corpus.jsonl"

BM25_SEARCH = BM25(corpus=CORPUS)
DENSE_SEARCH = Dense(corpus=CORPUS)
HYBRID_SEARCH = Hybrid(BM25(), Dense(), fusion="rrf", corpus=CORPUS)


def retrieval_evals(test):
    """The same retrieval metrics and gates on every retriever."""
    for marker in (pytest.mark.retrieval("recall@3", min_score=0.6),
                   pytest.mark.retrieval("ndcg@5", min_score=0.5),
                   pytest.mark.retrieval("mrr", min_score=0.5),
                   pytest.mark.retrieval("hit_rate@1", min_pass_rate=0.4)):
        test = marker(test)
    return pytest.mark.dataset("rag/questions.jsonl", target=retrieval_target(test.__name__))(test)


def retrieval_target(name):
    return {"test_bm25": BM25_SEARCH, "test_dense": DENSE_SEARCH,
            "test_hybrid": HYBRID_SEARCH}[name].as_target(k=5, query="question")


@retrieval_evals
def test_bm25(case, output):
    assert output.retrieved


@retrieval_evals
def test_dense(case, output):
    assert output.retrieved


@retrieval_evals
def test_hybrid(case, output):
    assert output.retrieved


def prompt(question, hits):
    context = "\n".join(f"- {hit.text}" for hit in hits)
    return f"Context:\n{context}\n\nUsing the context, answer in a few words: {question}"


def rag_answers(cases, model):
    """The RAG application, batch-first: one search and one model call for every question."""
    found = HYBRID_SEARCH.search([case["question"] for case in cases], k=3)
    requests = [model.request(prompt(case["question"], hits), max_tokens=24)
                for case, hits in zip(cases, found)]
    return [replace(gen, retrieved=[hit.to_dict() for hit in hits])
            for gen, hits in zip(model.generate_many(requests), found)]


@pytest.mark.dataset("rag/questions.jsonl", target=rag_answers, target_batch=True,
                     target_id="rag-hybrid-k3-v1")
@pytest.mark.exact("contains", normalize="all", min_pass_rate=0.3)
@pytest.mark.retrieval("recall@3", min_score=0.6)
@pytest.mark.judge("faithfulness", max_tokens=96)
def test_rag(case, output):
    assert output.retrieved
