"""Term-based retrieval: BM25 with the `bm25s <https://github.com/xhluca/bm25s>`_ library.

Texts are lowercased and split into words of two or more letters or digits (bm25s's
scikit-learn-style tokenizer), English stopwords removed (``stopwords="en"``; ``None`` keeps
every word, a list names your own). A document's score for a query is the sum over the query's
words (repeats count again) of ``idf(word) * tf_part(word, doc)``; with ``method="lucene"``
(the default, Lucene's BM25 since version 8)::

    idf     = ln(1 + (N - df + 0.5) / (df + 0.5))
    tf_part = tf / (tf + k1 * (1 - b + b * doc_len / avg_doc_len))

(N documents, df of them containing the word, tf its count in the document, lengths in words
after stopword removal). ``method`` may also be ``"robertson"``, ``"atire"``, ``"bm25l"`` or
``"bm25+"`` (Kamphuis et al., ECIR 2020, as bm25s implements them). Only documents that share a
word with the query are returned (for ``bm25l``/``bm25+``, which score absent words too: every
document, when a word of the query is in the corpus), so a query may get fewer than ``k`` hits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pytest_aie.errors import UsageError, require
from pytest_aie.retrieval.base import Retriever, check_search, top_k
from pytest_aie.retrieval.documents import Document, Hit
from pytest_aie.retrieval.store import IndexStore, library_version

__all__ = ["BM25"]

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
_SCORES_ABSENT_WORDS = ("bm25l", "bm25+")


def _bm25s() -> Any:
    return require("bm25s", "rag", "BM25 retrieval")


class BM25(Retriever):
    """BM25 over a corpus; see the module docstring. ``corpus=`` (a file path or a list of
    documents) is indexed on the first search; ``cache_dir=`` moves the index cache
    (``False`` turns it off)."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene",
                 stopwords: str | Sequence[str] | None = "en", *, delta: float = 0.5,
                 corpus: Any = None, cache_dir: str | Path | bool | None = None) -> None:
        super().__init__(corpus=corpus)
        for name, value, low, high in (("k1", k1, 0.0, None), ("b", b, 0.0, 1.0),
                                       ("delta", delta, 0.0, None)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    value < low or (high is not None and value > high):
                span = f"between {low} and {high}" if high is not None else f">= {low}"
                raise UsageError(f"{name}={value!r} must be a number {span}",
                                 fix="the usual values are k1=1.5, b=0.75")
        if method not in METHODS:
            raise UsageError(f"method={method!r} is not a BM25 variant",
                             fix=f"use one of {', '.join(METHODS)}")
        if stopwords in ("en", "english"):
            stopwords = "en"
        elif stopwords is not None and (isinstance(stopwords, str) or not all(
                isinstance(w, str) for w in stopwords)):
            raise UsageError(f"stopwords={stopwords!r} is not a stopword list",
                             fix="pass 'en', None (keep every word) or a list of words")
        self.k1, self.b, self.delta, self.method = float(k1), float(b), float(delta), method
        self.stopwords: str | list[str] | None = \
            stopwords if stopwords is None or isinstance(stopwords, str) else sorted(set(stopwords))
        self.store = IndexStore(cache_dir)
        self._index: Any = None

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retriever": "bm25", "k1": self.k1, "b": self.b,
                               "method": self.method, "stopwords": self.stopwords}
        if self.method in _SCORES_ABSENT_WORDS:
            out["delta"] = self.delta
        return out

    def library_versions(self) -> dict[str, str]:
        return {"bm25s": library_version("bm25s")}

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        stopwords: Any = "english" if self.stopwords == "en" else (self.stopwords or [])
        tokens = _bm25s().tokenize(list(texts), stopwords=stopwords, return_ids=False,
                                   show_progress=False)
        return [list(t) for t in tokens]

    def _build(self, documents: list[Document]) -> None:
        from pytest_aie.retrieval.corpus import corpus_digest

        bm25s = _bm25s()

        def build() -> Any:
            index = bm25s.BM25(k1=self.k1, b=self.b, delta=self.delta, method=self.method)
            index.index(self._tokenize([d.text for d in documents]), show_progress=False)
            return index

        def save(index: Any, folder: Path) -> None:
            index.save(str(folder), show_progress=False)

        def load(folder: Path) -> Any:
            index = bm25s.BM25.load(str(folder), show_progress=False)
            if index.scores["num_docs"] != len(documents):
                raise ValueError(f"the index has {index.scores['num_docs']} documents, "
                                 f"the corpus {len(documents)}")
            return index

        key = {"settings": self.settings(), "corpus": corpus_digest(documents),
               "libraries": self.library_versions()}
        self._index = self.store.fetch("bm25", key, build, save, load)

    def _scores(self, tokens: list[str]) -> Any:
        """The documents' scores, or None when no word of the query is in the corpus."""
        ids = self._index.get_tokens_ids(tokens)
        return self._index.get_scores_from_ids(ids) if ids else None

    def scores(self, query: str) -> Any:
        """Every document's score for ``query`` (a numpy array in corpus order)."""
        import numpy as np

        self._ready()
        scores = self._scores(self._tokenize([query])[0])
        return np.zeros(len(self._ready()), dtype=np.float32) if scores is None else scores

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        queries = check_search(queries, k)
        docs = self._ready()
        out: list[list[Hit]] = []
        for tokens in self._tokenize(queries) if queries else []:
            scores = self._scores(tokens)
            if scores is None:  # no word of the query is in the corpus
                out.append([])
                continue
            best = top_k(scores, k)
            if self.method not in _SCORES_ABSENT_WORDS:
                best = best[scores[best] > 0]
            out.append([Hit(id=docs[i].id, score=float(scores[i]), text=docs[i].text,
                            rank=rank) for rank, i in enumerate(best.tolist(), start=1)])
        return out
