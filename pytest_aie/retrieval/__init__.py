"""Retrievers for retrieval and RAG evals: term-based (:class:`BM25`), embedding-based
(:class:`Dense`) and fused (:class:`Hybrid`), one batch-first interface (:class:`Retriever`:
``index(documents)``, ``search(queries, k)``), corpora from files (:func:`load_corpus`),
chunking (:func:`chunk_fixed`, :func:`chunk_sentences`) and an on-disk index cache.

Your own retriever (a vector database client, your production search) subclasses
:class:`Retriever` and implements ``search`` (and ``index`` if it wants one); see
:mod:`pytest_aie.retrieval.base`. Importing this package loads no heavy library: numpy,
bm25s, hnswlib and sentence-transformers load on first use.
"""

from __future__ import annotations

import inspect
from typing import Any

from pytest_aie.errors import UsageError
from pytest_aie.retrieval.base import Retriever, RetrieverTarget
from pytest_aie.retrieval.bm25 import BM25
from pytest_aie.retrieval.chunking import chunk_fixed, chunk_sentences, split_sentences
from pytest_aie.retrieval.corpus import corpus_digest, load_corpus
from pytest_aie.retrieval.dense import Dense
from pytest_aie.retrieval.documents import Document, Hit, to_documents
from pytest_aie.retrieval.hybrid import Hybrid, fuse
from pytest_aie.retrieval.store import CacheWarning, IndexStore

__all__ = [
    "BM25",
    "KINDS",
    "CacheWarning",
    "Dense",
    "Document",
    "Hit",
    "Hybrid",
    "IndexStore",
    "Retriever",
    "RetrieverTarget",
    "chunk_fixed",
    "chunk_sentences",
    "corpus_digest",
    "fuse",
    "load_corpus",
    "make_retriever",
    "split_sentences",
    "to_documents",
]

#: the kinds :func:`make_retriever` builds
KINDS = ("bm25", "dense", "hybrid", "hybrid:rrf", "hybrid:weighted")


def _params(cls: type) -> set[str]:
    return {name for name, p in inspect.signature(cls).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _reject_unknown(kind: str, options: dict[str, Any], accepted: set[str]) -> None:
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UsageError(f"retriever {kind!r} has no option {unknown[0]!r}",
                         fix=f"its options are: {', '.join(sorted(accepted))}")


def make_retriever(kind: str, **options: Any) -> Retriever:
    """A retriever by name: ``"bm25"`` (:class:`BM25`), ``"dense"`` (:class:`Dense`),
    ``"hybrid"`` (BM25 and Dense fused by reciprocal rank fusion; also ``"hybrid:rrf"``) or
    ``"hybrid:weighted"`` (weighted fusion of min-max normalised scores). Options go to the
    retriever; for a hybrid, each goes to the part that takes it (``k1``, ``b``, ... to BM25,
    ``model``, ``approximate``, ... to Dense; ``cache_dir`` to both) or to :class:`Hybrid`
    (``weights``, ``rrf_k``, ``depth``, ``corpus``)."""
    if kind == "bm25":
        _reject_unknown(kind, options, _params(BM25))
        return BM25(**options)
    if kind == "dense":
        _reject_unknown(kind, options, _params(Dense))
        return Dense(**options)
    if kind in ("hybrid", "hybrid:rrf", "hybrid:weighted"):
        own = _params(Hybrid) - {"fusion"}
        sparse, dense = _params(BM25) - {"corpus"}, _params(Dense) - {"corpus"}
        _reject_unknown(kind, options, own | sparse | dense)
        parts = (BM25(**{k: v for k, v in options.items() if k in sparse}),
                 Dense(**{k: v for k, v in options.items() if k in dense}))
        fusion = "weighted" if kind == "hybrid:weighted" else "rrf"
        return Hybrid(*parts, fusion=fusion, **{k: v for k, v in options.items() if k in own})
    raise UsageError(f"unknown retriever kind {kind!r}",
                     fix=f"use one of: {', '.join(KINDS)} (or build your own Retriever)")
