"""The retriever interface: documents in, ranked hits out, batch-first.

A :class:`Retriever` is indexed with documents (``index(documents)``, or lazily from
``corpus=`` on its first search) and answers a *list* of queries at once::

    hits = retriever.search(["who built the tower?", "how tall is Everest?"], k=5)
    hits[0][0].id, hits[0][0].score, hits[0][0].text, hits[0][0].rank   # best hit of query 0

**Your own retriever** (a vector database client, your production search) is a subclass that
implements :meth:`Retriever.search` only; :meth:`Retriever.index` is optional (the default
keeps the documents, which a client of an external index does not need). Override
:meth:`Retriever.settings` to name what its results depend on (an index name and version):
the harness caches a suite's retrieval results by it::

    class MySearch(Retriever):
        def search(self, queries, k=10):
            return [[Hit(id=r.id, score=r.score, text=r.text, rank=i + 1)
                     for i, r in enumerate(client.query(q, top_k=k))] for q in queries]

        def settings(self):
            return {"retriever": "my-search", "index": "products-2024-06"}

**As a suite's target**, ``retriever.as_target(k=10, query="question")`` searches every case's
``question`` field in one batch; each case's output text is the hit ids joined by ``", "`` and
its ``retrieved`` the hits' dicts, which the ``retrieval`` eval marker scores.

``corpus=`` a relative path is found next to the file of the code that made the retriever (a
test module, as dataset paths are), else in the working directory.

Nothing heavy is imported here: numpy and the retrieval libraries load on first use.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from pytest_aie.errors import UsageError, whole_number
from pytest_aie.retrieval.documents import Document, Hit, digest, to_documents

if TYPE_CHECKING:
    import numpy as np

    from pytest_aie.engines.base import Generation

__all__ = ["Document", "Hit", "Retriever", "RetrieverTarget", "to_documents"]

R = TypeVar("R", bound="Retriever")


def check_search(queries: Any, k: Any) -> list[str]:
    """The queries as a list of strings, after checking them and ``k``."""
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise UsageError(f"search() takes a list of queries, got {type(queries).__name__}",
                         fix="write search([query], k=...) for a single query")
    bad = [q for q in queries if not isinstance(q, str)]
    if bad:
        raise UsageError(f"queries must be strings, got {type(bad[0]).__name__} {bad[0]!r}",
                         fix="pass the query texts")
    whole_number("k", k, example=10)
    return list(queries)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` highest scores, best first; equal scores in index order (also
    at the cut), so the ranking is fully determined by the scores. NaN counts as the lowest."""
    import numpy as np

    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


class Retriever(abc.ABC):
    """Ranks documents for queries; see the module docstring.

    Subclasses implement :meth:`search`; the built-in ones also implement :meth:`_build`
    (called by :meth:`index`) and call :meth:`_ready` at the start of :meth:`search`, which
    indexes the ``corpus=`` given to the constructor the first time.
    """

    # class-level defaults: a user's subclass need not call super().__init__()
    _corpus_source: Any = None
    _documents: list[Document] | None = None
    _indexed: bool = False

    def __init__(self, *, corpus: Any = None) -> None:
        self._corpus_source = corpus_path(corpus) if isinstance(corpus, (str, Path)) else corpus
        self._documents = None
        self._indexed = False

    @abc.abstractmethod
    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The ``k`` best hits for each query, best first (fewer when the corpus is smaller)."""

    def index(self: R, documents: Any) -> R:
        """Index ``documents`` (see :func:`to_documents`), replacing any earlier index."""
        docs = to_documents(documents)
        self._build(docs)
        self._documents = docs
        self._corpus_source = None
        self._indexed = True
        return self

    def _build(self, documents: list[Document]) -> None:  # noqa: B027 - optional hook
        """Build the index of ``documents`` (the built-in retrievers override this)."""

    @property
    def documents(self) -> list[Document] | None:
        """The indexed documents, or those of ``corpus=`` (loaded, not yet indexed), or None."""
        if self._documents is None and self._corpus_source is not None:
            self._documents = load_source(self._corpus_source)
        return self._documents

    def _ready(self) -> list[Document]:
        """The documents, indexing ``corpus=`` first if that has not happened yet."""
        if not self._indexed:
            docs = self.documents
            if docs is None:
                raise UsageError(f"{type(self).__name__} has no documents to search",
                                 fix="pass corpus='docs.jsonl' (or a list of documents) to "
                                     "the retriever, or call .index(documents) first")
            self.index(docs)
        assert self._documents is not None
        return self._documents

    def settings(self) -> dict[str, Any]:
        """What this retriever's results depend on (besides the corpus): its kind and
        parameters. The default names the class and a digest of its ``search`` code."""
        from pytest_aie._util.digest import code_digest

        cls = type(self)
        return {"retriever": f"{cls.__module__}.{cls.__qualname__}",
                "code": code_digest(cls.search)[:16]}

    def corpus_identity(self) -> Any:
        """What identifies the searched corpus: its content digest (None: no documents known,
        as for a client of an external index)."""
        from pytest_aie.retrieval.corpus import corpus_digest

        docs = self.documents
        return corpus_digest(docs) if docs is not None else None

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries the results depend on (part of cache keys)."""
        return {}

    def as_target(self, k: int = 10, query: str | Callable[[Any], str] = "question"
                  ) -> RetrieverTarget:
        """This retriever as a suite's target: ``query`` names the case field to search with
        (or is a function case -> query text)."""
        return RetrieverTarget(self, k=k, query=query)


def corpus_path(path: str | Path) -> Path:
    """A corpus path as given; a relative one is found next to the file of the code that
    made the retriever (a test module, like dataset paths), else in the working directory."""
    import sys

    given = Path(path).expanduser()
    if given.is_absolute():
        return given
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
            ("pytest_aie.", "inspect")):
        frame = frame.f_back  # type: ignore[assignment]
    caller = frame.f_globals.get("__file__") if frame is not None else None
    if caller:
        beside = Path(caller).resolve().parent / given
        if beside.exists() or not given.exists():
            return beside
    return given.resolve()


def load_source(source: Any) -> list[Document]:
    """The documents of a ``corpus=`` argument: a file path, or a list of documents."""
    if isinstance(source, (str, Path)):
        from pytest_aie.retrieval.corpus import load_corpus

        return load_corpus(source)
    return to_documents(source)


class RetrieverTarget:
    """A retriever as a batch target (see :mod:`pytest_aie.suite.target`): every case's query is
    searched in one ``search`` call. A case without a query gets an error generation (that
    case is unmeasured), never a crash of the suite."""

    def __init__(self, retriever: Retriever, *, k: int = 10,
                 query: str | Callable[[Any], str] = "question") -> None:
        check_search([], k)
        if not (isinstance(query, str) and query) and not callable(query):
            raise UsageError(f"query={query!r} must name a case field or be a function",
                             fix="write query='question' or query=lambda case: ...")
        self.retriever = retriever
        self.k = k
        self.query = query

    @property
    def target_label(self) -> str:
        kind = self.retriever.settings().get("retriever", type(self.retriever).__name__)
        return f"retriever:{kind}"

    def target_identity(self, model: Any) -> str:
        """What the outputs depend on: the retriever's settings and libraries, the corpus's
        content, ``k`` and the query field (the model is not used)."""
        from pytest_aie._util.digest import code_digest

        query = self.query if isinstance(self.query, str) else code_digest(self.query)
        return digest({"settings": self.retriever.settings(),
                       "libraries": self.retriever.library_versions(),
                       "corpus": self.retriever.corpus_identity(),
                       "k": self.k, "query": query})[:16]

    def _query_of(self, case: Any) -> str:
        text: Any
        if callable(self.query):
            text = self.query(case)
        else:
            fields = getattr(case, "fields", case)
            text = fields.get(self.query) if isinstance(fields, Mapping) else None
            if text is None:
                case_id = getattr(case, "id", None)
                raise UsageError(
                    f"case {case_id!r} has no {self.query!r} field to search with",
                    fix=f"give every case a {self.query!r} field, or pass "
                        "as_target(query=...) the field that holds the query (or a function "
                        "case -> query)")
        return text if isinstance(text, str) else str(text)

    def run_cases(self, cases: Sequence[Any], model: Any = None) -> list[Generation]:
        from pytest_aie.engines.base import Generation, Timings

        label = self.target_label
        queries: dict[int, str] = {}
        problems: dict[int, str] = {}
        for i, case in enumerate(cases):
            try:
                queries[i] = self._query_of(case)
            except Exception as exc:  # noqa: BLE001 - that case is unmeasured, not the suite
                problems[i] = str(exc) if isinstance(exc, UsageError) else \
                    f"the query function raised {type(exc).__name__}: {exc}"
        started = time.perf_counter()
        results = self.retriever.search(list(queries.values()), k=self.k) if queries else []
        took = time.perf_counter() - started
        if len(results) != len(queries):
            raise UsageError(f"{type(self.retriever).__name__}.search returned "
                             f"{len(results)} rankings for {len(queries)} queries",
                             fix="return one list of hits per query, in order")
        found = iter(results)
        out = []
        for i in range(len(cases)):
            if i in problems:
                out.append(Generation(text="", finish_reason="error", engine="retriever",
                                      model=label, error=problems[i]))
                continue
            hits = next(found)
            out.append(Generation(text=", ".join(hit.id for hit in hits), finish_reason="stop",
                                  engine="retriever", model=label,
                                  timings=Timings(e2e_s=took, batch_size=len(queries)),
                                  retrieved=[hit.to_dict() for hit in hits]))
        return out
