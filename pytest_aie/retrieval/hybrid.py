"""Hybrid retrieval: several retrievers' rankings fused into one.

Each part retrieves its ``depth`` best documents per query (at least ``k``); a document's
fused score is then, with ``w_i`` the part's weight (1 each by default):

* ``fusion="rrf"``, reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009)::

      score(d) = sum over the parts that retrieved d of  w_i / (rrf_k + rank_i(d))

  with 1-based ranks and ``rrf_k=60`` as in the paper. Only ranks count, so parts whose
  scores live on different scales (BM25's unbounded sums, cosines) fuse without tuning.
* ``fusion="weighted"``, weighted fusion of min-max normalised scores::

      norm_i(d) = (s_i(d) - min_i) / (max_i - min_i)      (1 when max_i == min_i)
      score(d)  = sum over the parts that retrieved d of  w_i * norm_i(d)

  with ``min_i``/``max_i`` the lowest and highest score among part ``i``'s ``depth`` hits for
  that query; a document a part did not retrieve adds 0 for it (as its lowest hit does).

Documents with equal fused scores are ordered by the best rank any part gave them, then by the
part that gave it (earlier parts first). A hit's text is the one its first part returned.
``Hybrid(BM25(), Dense(), corpus="docs.jsonl")`` indexes every part with that corpus; without
``corpus=`` each part searches its own.
"""

from __future__ import annotations

from typing import Any, Sequence

from pytest_aie.errors import UsageError, whole_number
from pytest_aie.retrieval.base import Retriever, check_search
from pytest_aie.retrieval.documents import Document, Hit

__all__ = ["FUSIONS", "Hybrid", "fuse"]

FUSIONS = ("rrf", "weighted")


def _number(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
            (positive and value == 0) or value != value:
        raise UsageError(f"{name}={value!r} must be a number {'>' if positive else '>='} 0",
                         fix=f"pass e.g. {name}=1")
    return float(value)


def fuse(rankings: Sequence[Sequence[Hit]], *, fusion: str = "rrf",
         weights: Sequence[float] | None = None, rrf_k: float = 60.0) -> list[Hit]:
    """One query's rankings (one per part, best first) fused; see the module docstring."""
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    scores: dict[str, float] = {}
    order: dict[str, tuple[int, int]] = {}  # id -> (best rank, part of that rank)
    texts: dict[str, str] = {}
    for part, (hits, weight) in enumerate(zip(rankings, weights)):
        if fusion == "weighted" and hits:
            low = min(h.score for h in hits)
            high = max(h.score for h in hits)
        seen: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            if hit.id in seen:
                continue  # a part that returned an id twice: its best rank counts
            seen.add(hit.id)
            if fusion == "rrf":
                gain = weight / (rrf_k + rank)
            else:
                gain = weight * ((hit.score - low) / (high - low) if high > low else 1.0)
            scores[hit.id] = scores.get(hit.id, 0.0) + gain
            order[hit.id] = min(order.get(hit.id, (rank, part)), (rank, part))
            texts.setdefault(hit.id, hit.text)
    ranked = sorted(scores, key=lambda i: (-scores[i], order[i]))
    return [Hit(id=i, score=scores[i], text=texts[i], rank=r)
            for r, i in enumerate(ranked, start=1)]


class Hybrid(Retriever):
    """Fuses the rankings of several retrievers; see the module docstring."""

    def __init__(self, *retrievers: Retriever, fusion: str = "rrf",
                 weights: Sequence[float] | None = None, rrf_k: float = 60,
                 depth: int = 100, corpus: Any = None) -> None:
        super().__init__(corpus=corpus)
        if len(retrievers) < 2:
            raise UsageError(f"Hybrid needs at least two retrievers, got {len(retrievers)}",
                             fix="write Hybrid(BM25(), Dense())")
        for part in retrievers:
            if not isinstance(part, Retriever):
                raise UsageError(f"Hybrid's parts must be retrievers, got {part!r}",
                                 fix="pass retriever objects: Hybrid(BM25(), Dense())")
        if fusion not in FUSIONS:
            raise UsageError(f"fusion={fusion!r} is not a fusion method",
                             fix="use 'rrf' (reciprocal rank fusion) or 'weighted'")
        if weights is not None:
            if isinstance(weights, (str, bytes)) or len(weights) != len(retrievers):
                raise UsageError(f"weights={weights!r} must give one weight per retriever "
                                 f"({len(retrievers)})", fix="pass e.g. weights=[0.5, 0.5]")
            weights = [_number("weight", w, positive=False) for w in weights]
            if not any(weights):
                raise UsageError("every weight is 0", fix="give at least one part a weight")
        whole_number("depth", depth, example=100)
        self.parts = list(retrievers)
        self.fusion = fusion
        self.weights = list(weights) if weights is not None else [1.0] * len(retrievers)
        self.rrf_k = _number("rrf_k", rrf_k, positive=True)
        self.depth = depth

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retriever": "hybrid", "fusion": self.fusion,
                               "weights": self.weights, "depth": self.depth,
                               "parts": [p.settings() for p in self.parts]}
        if self.fusion == "rrf":
            out["rrf_k"] = self.rrf_k
        return out

    def library_versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self.parts:
            out.update(part.library_versions())
        return out

    def corpus_identity(self) -> Any:
        if self._corpus_source is not None or self._documents is not None:
            return super().corpus_identity()
        return [part.corpus_identity() for part in self.parts]

    def _build(self, documents: list[Document]) -> None:
        for part in self.parts:
            part.index(documents)

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        queries = check_search(queries, k)
        if self._corpus_source is not None or self._documents is not None:
            self._ready()
        depth = max(self.depth, k)
        runs = [part.search(queries, k=depth) for part in self.parts]
        return [fuse([run[q] for run in runs], fusion=self.fusion, weights=self.weights,
                     rrf_k=self.rrf_k)[:k] for q in range(len(queries))]
