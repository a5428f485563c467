"""Retrieval speed on a 10,000-document corpus, and the approximate index's recall.

The corpus is synthetic and deterministic: 10,000 documents of 50-100 words drawn from the
whole words of all-MiniLM-L6-v2's vocabulary (about 20,000 English words, in the vocabulary's
roughly-by-frequency order) with Zipf's law (``P(word of rank r) ~ 1/r``), so common words
are common and BM25 has realistic posting lists. 500 queries, each 3-8 words of one document
(rank > 100: content words) plus 0-2 random words.

Figures (``name: value`` on stdout; details on stderr):

* ``bm25_qps_10k``: queries per second of ``BM25().search(queries, k=10)``, the whole batch
  (tokenizing the queries included), median of 3 runs;
* ``dense_qps_10k``: the same for ``Dense(approximate=False)`` (exact search), embedding the
  queries included, median of 3 runs;
* ``dense_index_10k_s``: seconds to index the corpus with ``Dense`` (embedding every document
  and storing the matrix), cache disabled, model already loaded;
* ``hnsw_recall_at_10``: mean recall@10 of the hnswlib index (``Dense``'s defaults: ``m=32``,
  ``ef_construction=200``, ``ef_search=200``) against exact search, on those embeddings.

Run: ``.venv/bin/python benchmarks/retrieval.py [--docs 10000] [--queries 500]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pytest_aie.retrieval import BM25, Dense  # noqa: E402
from pytest_aie.retrieval.base import top_k  # noqa: E402
from pytest_aie.retrieval.dense import HNSW  # noqa: E402
from pytest_aie.scorers.embedding import resolve_model  # noqa: E402


def _log(msg: str) -> None:
    print(f"[retrieval] {msg}", file=sys.stderr, flush=True)


def word_list() -> list[str]:
    """The whole alphabetic words of the embedded model's vocabulary, in vocabulary order."""
    vocab = (Path(resolve_model()) / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return [w for w in vocab if len(w) >= 2 and w.isascii() and w.isalpha()]


def corpus(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[dict[str, str]], list[str]]:
    words = word_list()
    rng = random.Random(seed)
    weights = [1.0 / r for r in range(1, len(words) + 1)]
    docs = []
    for i in range(n_docs):
        drawn = rng.choices(words, weights=weights, k=rng.randint(50, 100))
        docs.append({"id": f"doc{i}", "text": " ".join(drawn)})
    rank = {w: r for r, w in enumerate(words)}
    queries = []
    for _ in range(n_queries):
        content = [w for w in docs[rng.randrange(n_docs)]["text"].split() if rank[w] > 100]
        picked = rng.sample(content, min(len(content), rng.randint(3, 8)))
        picked += rng.choices(words, weights=weights, k=rng.randint(0, 2))
        queries.append(" ".join(picked))
    return docs, queries


def qps(retriever: BM25 | Dense, queries: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        found = retriever.search(queries, k=10)
        times.append(time.perf_counter() - started)
        assert len(found) == len(queries)
    return len(queries) / statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    docs, queries = corpus(args.docs, args.queries)
    lengths = [len(d["text"].split()) for d in docs]
    _log(f"{len(docs)} documents ({statistics.mean(lengths):.0f} words on average), "
         f"{len(queries)} queries")

    started = time.perf_counter()
    bm25 = BM25(cache_dir=False).index(docs)
    _log(f"bm25 index built in {time.perf_counter() - started:.2f}s")
    bm25.search(queries[:10], k=10)
    bm25_qps = qps(bm25, queries)

    started = time.perf_counter()
    dense = Dense(approximate=False, cache_dir=False)
    dense.encode(["warm up the model"])
    _log(f"model loaded in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    dense.index(docs)
    index_s = time.perf_counter() - started
    _log(f"dense index built in {index_s:.1f}s ({len(docs) / index_s:.0f} documents/s)")
    dense_qps = qps(dense, queries)

    assert dense.embeddings is not None
    started = time.perf_counter()
    graph = HNSW.build(dense.embeddings)
    _log(f"hnsw graph built in {time.perf_counter() - started:.1f}s")
    vectors = dense.encode(queries)
    labels, _ = graph.search(vectors, 10)
    exact = [set(top_k(row, 10).tolist()) for row in vectors @ dense.embeddings.T]
    recall = float(np.mean([len(set(found.tolist()) & truth) / 10
                            for found, truth in zip(labels, exact)]))
    started = time.perf_counter()
    graph.search(vectors, 10)
    _log(f"hnsw search: {len(queries) / (time.perf_counter() - started):.0f} queries/s "
         "(embedding excluded)")

    print(f"bm25_qps_10k: {bm25_qps:.1f}")
    print(f"dense_qps_10k: {dense_qps:.1f}")
    print(f"dense_index_10k_s: {index_s:.1f}")
    print(f"hnsw_recall_at_10: {recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
