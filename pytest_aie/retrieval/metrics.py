"""Retrieval quality: the ``retrieval`` eval marker and its scorer, on the ``ranx`` library.

::

    @pytest.mark.dataset("questions.jsonl", target=SEARCH.as_target(k=5))
    @pytest.mark.retrieval("recall@3", min_score=0.6)
    @pytest.mark.retrieval("hit_rate@1", min_pass_rate=0.4)
    def test_search(case, output): ...

Each case's ranking is what its generation retrieved (``Generation.retrieved``: dicts with
``id``, ``score``, ``text``, ``rank``, best first); its relevance judgments are the case field
``relevant`` (``relevant=`` names another): a list of ids (binary relevance) or a dict
``{id: grade}`` (graded, whole numbers >= 0; a grade of 0 is judged not relevant). The metrics,
computed per case by ``ranx.evaluate(..., return_mean=False)`` in one call for the whole suite:

* ``recall@k``, ``precision@k`` (relevant in the top k divided by k, also when fewer than k
  were retrieved, as trec_eval and ranx count), ``mrr`` / ``mrr@k``, ``map@k``,
  ``ndcg@k`` (ranx's ``ndcg``: Järvelin and Kekäläinen's linear gain, ``grade / log2(rank+1)``)
  and ``ndcg_burges@k`` (the exponential gain ``(2**grade - 1) / log2(rank+1)``): continuous
  scores, the suite's figure is their mean with the harness's interval, gated by
  ``min_score=``; ``threshold=`` also makes each case pass or fail on its own.
* ``hit_rate@k``: pass/fail per case (a relevant id in the top k); the suite's figure is a pass
  rate, gated by ``min_pass_rate=``.

``@k`` may be left out (``mrr``): the whole ranking counts. Grades >= 1 count as relevant for
every metric but nDCG, which weighs them.

**Order.** The ranking's order is the hits' ``rank`` (their list order when a hit has none),
never their scores: ranx is handed scores that reproduce that order exactly, so retriever
scores that tie, or that are distances (lower is better), cannot reorder it. An id retrieved
twice counts at its first (best) rank; its later places stay in the ranking as non-relevant,
so every hit keeps its rank and ``@k`` always means the top k hits retrieved.

**Documents.** ``doc_level=True`` scores documents rather than chunks: a chunk id
``"doc#n"`` (the chunkers' ids) counts as its document ``"doc"`` (relevant ids too), at the
rank of its first chunk; the document's other chunks count as repeats (above).

**Never green by accident.** A generation without ``retrieved`` is unmeasured (the reason
names the fix); so is a malformed ``retrieved`` list, and a case whose relevant set is empty.
``retrieved=[]`` is a real ranking that found nothing (every metric 0). A case without the
field fails when the dataset loads; a ``relevant`` that is neither a list nor a dict of whole
grades >= 0 is a :class:`~pytest_aie.errors.DatasetError` naming the case.

Each score's ``details`` hold the ranked ids (top k) with each one's grade, the relevant ids
missed within the cutoff, and ``relevant``: the ids the report marks as relevant.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from pytest_aie.errors import DatasetError, UsageError
from pytest_aie.scorers.base import EvalMarker, Sample, Score, Scorer

if TYPE_CHECKING:
    from pytest_aie.dataset import Case

__all__ = ["MARKER", "METRICS", "HitRateScorer", "MetricSpec", "RetrievalScorer", "build_retrieval_scorer",
           "doc_id", "parse_metric", "ranx_scores", "read_relevant"]

#: metric name -> ranx's name for it
METRICS = {"recall": "recall", "precision": "precision", "mrr": "mrr", "map": "map",
           "ndcg": "ndcg", "ndcg_burges": "ndcg_burges", "hit_rate": "hit_rate"}
_NAMES = ("recall@k, precision@k, mrr, mrr@k, map@k, ndcg@k (linear gain), "
          "ndcg_burges@k (exponential gain), hit_rate@k")
_SPEC = re.compile(r"^([a-z_]+)(?:@(\d+))?$")
_CHUNK = re.compile(r"^(.+)#\d+$")
_SHOWN = 100  # ranks kept in a score's details at most
NO_RETRIEVED = ("the output carries no retrieved passages: use target=retriever.as_target() "
                "or return Generation(retrieved=...)")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``name`` (a key of :data:`METRICS`) and ``k`` (0: whole ranking)."""

    name: str
    k: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}@{self.k}" if self.k else self.name

    @property
    def ranx(self) -> str:
        return f"{METRICS[self.name]}@{self.k}" if self.k else METRICS[self.name]


def parse_metric(metric: Any) -> MetricSpec:
    """``"ndcg@10"`` -> ``MetricSpec("ndcg", 10)``; one :class:`UsageError` listing the metric
    names for an unknown name or a bad k."""
    m = _SPEC.match(metric.strip().lower()) if isinstance(metric, str) else None
    k = int(m[2]) if m and m[2] is not None else 0
    if m is None or m[1] not in METRICS or (m[2] is not None and k < 1):
        why = "unknown metric" if m is None or m[1] not in METRICS else "k must be >= 1"
        raise UsageError(f"@pytest.mark.retrieval({metric!r}): {why}",
                         fix=f"use one of {_NAMES}, with k a whole number >= 1 (e.g. ndcg@10)")
    return MetricSpec(m[1], k)


def doc_id(hit_id: str) -> str:
    """The document of a chunk id ``"doc#n"`` (any other id is its own document)."""
    m = _CHUNK.match(hit_id)
    return m[1] if m else hit_id


def _is_id(value: Any) -> bool:
    return (isinstance(value, str) and value != "") or (isinstance(value, int)
                                                        and not isinstance(value, bool))


def read_relevant(case: Case, field: str = "relevant", *, doc_level: bool = False
                  ) -> dict[str, int]:
    """The case's relevance judgments as ``{id: grade}`` (a list: grade 1 each); with
    ``doc_level`` chunk ids become their documents (the best grade kept). Raises
    :class:`DatasetError` naming the case for anything but a list of ids or a dict of whole
    grades >= 0."""
    raw = case.get(field)
    where = f"case {case.id!r}" + (f" ({case.source})" if case.source else "")
    fix = (f'write "{field}": ["doc-1", "doc-2"] (binary) or "{field}": {{"doc-1": 2, '
           '"doc-2": 1}} (graded, whole numbers >= 0)')
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, (list, tuple)):
        pairs = [(item, 1) for item in raw]
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        raise DatasetError(f"{where}: field {field!r} must be a list of ids or a dict of id -> "
                           f"grade, not {type(raw).__name__}", fix=fix)
    grades: dict[str, int] = {}
    for item, grade in pairs:
        if not _is_id(item):
            raise DatasetError(f"{where}: field {field!r} holds {item!r}, which is not a "
                               "document id", fix=fix)
        if isinstance(grade, float) and grade.is_integer():
            grade = int(grade)
        if isinstance(grade, bool) or not isinstance(grade, int) or grade < 0:
            raise DatasetError(f"{where}: field {field!r} gives {item!r} the grade {grade!r}; "
                               "grades are whole numbers >= 0", fix=fix)
        key = doc_id(str(item)) if doc_level else str(item)
        grades[key] = max(grades.get(key, 0), grade)
    return grades


def _ranking(retrieved: Sequence[Any], doc_level: bool
             ) -> tuple[list[tuple[str, str, bool]], str | None]:
    """The hits in rank order as ``(hit id, id scored, first occurrence)``, or why not."""
    if not isinstance(retrieved, (list, tuple)):
        return [], f"retrieved is a {type(retrieved).__name__}, not a list of hits"
    for n, hit in enumerate(retrieved):
        if not isinstance(hit, Mapping) or not _is_id(hit.get("id")):
            return [], f"retrieved[{n}] has no id (hits are dicts with id, score, text, rank)"
    ranks = [hit.get("rank") for hit in retrieved]
    order = list(range(len(retrieved)))
    if all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
        order.sort(key=lambda i: (ranks[i], i))  # stable: equal ranks keep the list order
    out: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    for i in order:
        hit_id = str(retrieved[i]["id"])
        key = doc_id(hit_id) if doc_level else hit_id
        out.append((hit_id, key, key not in seen))
        seen.add(key)
    return out, None


def ranx_scores(qrels: Sequence[Mapping[str, int]], rankings: Sequence[Sequence[str | None]],
                metric: str) -> list[float]:
    """Per-query values of the ranx metric ``metric`` (``"ndcg@10"``) in one
    ``ranx.evaluate(..., return_mean=False)`` call. ``rankings[i]`` lists query ``i``'s ids best
    first, each at most once; ``None`` holds a place that is never relevant (a repeat). ranx
    orders a run by score, so each id gets a score that reproduces the given order exactly."""
    if not qrels:
        return []
    from pytest_aie.errors import require

    qids = [f"q{i:09d}" for i in range(len(qrels))]
    run: dict[str, dict[str, float]] = {}
    for qid, ids, judged in zip(qids, rankings, qrels):
        places = list(ids) or [None]  # ranx needs one entry per query: a place never relevant
        taken = set(judged) | {doc for doc in places if doc is not None}
        run[qid] = {(_filler(pos, taken) if doc is None else doc): float(len(places) - pos)
                    for pos, doc in enumerate(places)}
    with warnings.catch_warnings():
        ranx = require("ranx", "rag", "the retrieval metrics")
        from numba.core.errors import NumbaTypeSafetyWarning

        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        # (save_results_in_run stays on: with it off, ranx 0.3 looks up "ndcg" for "ndcg@10")
        values = ranx.evaluate(ranx.Qrels({q: dict(g) for q, g in zip(qids, qrels)}),
                               ranx.Run(run), metric, return_mean=False)
    by_qid = dict(zip(sorted(qids), (float(v) for v in values)))  # ranx sorts queries by id
    return [by_qid[q] for q in qids]


def _filler(pos: int, taken: set[str]) -> str:
    """An id for a place that is never relevant, distinct from every id of the query."""
    name = f"(repeat {pos})"
    while name in taken:
        name += "~"
    return name


# ---------------------------------------------------------------------------- the scorers


class RetrievalScorer(Scorer):
    """A continuous retrieval metric (recall, precision, MRR, MAP, nDCG) per case; see the
    module docstring."""

    marker: ClassVar[str] = "retrieval"
    binary: ClassVar[bool] = False

    def __init__(self, spec: MetricSpec, *, relevant: str = "relevant", doc_level: bool = False,
                 threshold: float | None = None) -> None:
        if not isinstance(relevant, str) or not relevant:
            raise UsageError(f"@pytest.mark.retrieval(relevant={relevant!r}) must name a case "
                             "field", fix='write e.g. relevant="relevant_ids"')
        if not isinstance(doc_level, bool):
            raise UsageError(f"@pytest.mark.retrieval(doc_level={doc_level!r}) must be True or "
                             "False", fix="write doc_level=True to score documents, not chunks")
        if threshold is not None:
            if self.binary:
                raise UsageError(f"@pytest.mark.retrieval({spec.label!r}, threshold=...): a hit "
                                 "rate is already pass/fail per case",
                                 fix="drop threshold=; gate the suite with min_pass_rate=")
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                    or not (math.isfinite(threshold) and 0 <= threshold <= 1):
                raise UsageError(f"@pytest.mark.retrieval(threshold={threshold!r}) must be a "
                                 "number in [0, 1]", fix="write e.g. threshold=0.5")
        self.spec, self.field, self.doc_level = spec, relevant, doc_level
        self.threshold = None if threshold is None else float(threshold)

    @property
    def metric(self) -> str:
        return f"retrieval.{'doc.' if self.doc_level else ''}{self.spec.label}"

    def required_fields(self) -> tuple[str, ...]:
        return (self.field,)

    def score(self, output: str, case: Case) -> Score:
        raise TypeError("the retrieval scorer reads the generation's retrieved passages: the "
                        "harness scores it through score_samples(), not score()")

    def score_samples(self, samples: Sequence[Sample]) -> list[Score]:
        scores: list[Score | None] = []
        todo: list[tuple[int, dict[str, int], list[tuple[str, str, bool]]]] = []
        for i, sample in enumerate(samples):
            grades = read_relevant(sample.case, self.field, doc_level=self.doc_level)
            retrieved = sample.generation.retrieved
            ranked, problem = ([], NO_RETRIEVED) if retrieved is None else \
                _ranking(retrieved, self.doc_level)
            if problem is None and not any(g >= 1 for g in grades.values()):
                problem = f"no relevant ids: the case's {self.field!r} names none (grade >= 1)"
            scores.append(None if problem is None else Score.unmeasured(self.metric, problem))
            if problem is None:
                todo.append((i, grades, ranked))
        values = ranx_scores([g for _, g, _ in todo],
                             [[key if first else None for _, key, first in r] for _, _, r in todo],
                             self.spec.ranx)
        for (i, grades, ranked), value in zip(todo, values):
            scores[i] = self._score(value, grades, ranked)
        return [s for s in scores if s is not None]

    def _score(self, value: float, grades: dict[str, int],
               ranked: list[tuple[str, str, bool]]) -> Score:
        cut = self.spec.k or len(ranked)
        relevant = {doc for doc, g in grades.items() if g >= 1}
        rows: list[dict[str, Any]] = []
        for rank, (hit_id, key, first) in enumerate(ranked[:min(cut, _SHOWN)], 1):
            row: dict[str, Any] = {"rank": rank, "id": hit_id,
                                   "grade": grades.get(key, 0) if first else 0}
            if key != hit_id:
                row["doc"] = key
            if not first:
                row["repeat"] = True
            rows.append(row)
        found = [(rank, key) for rank, (_, key, first) in enumerate(ranked[:cut], 1)
                 if first and key in relevant]
        got = {key for _, key in found}
        missed = sorted(relevant - got, key=lambda d: (-grades[d], d))
        marked = sorted(relevant | {h for h, key, _ in ranked if key in relevant})
        details: dict[str, Any] = {"metric": self.spec.label, "k": self.spec.k,
                                   "doc_level": self.doc_level, "ranked": rows,
                                   "relevant": marked, "missed": missed}
        if any(g > 1 for g in grades.values()):
            details["grades"] = dict(grades)
        top = f"the top {self.spec.k}" if self.spec.k else "the ranking"
        where = (f"relevant at rank{'s' if len(found) > 1 else ''} "
                 f"{', '.join(str(r) for r, _ in found)}" if found
                 else f"no relevant id in {top}")
        if missed:
            where += f"; missed {', '.join(missed[:5])}" + (" ..." if len(missed) > 5 else "")
        passed = self._passed(value)
        return Score(self.metric, value, passed, f"{self.spec.label} {value:.4f}: {where}"
                     + self._verdict(value), details)

    def _passed(self, value: float) -> bool | None:
        return None if self.threshold is None else value >= self.threshold

    def _verdict(self, value: float) -> str:
        if self.threshold is None:
            return "; no threshold"
        return f"; {'>=' if value >= self.threshold else '<'} threshold {self.threshold:g}"


class HitRateScorer(RetrievalScorer):
    """``hit_rate@k``: a case passes when a relevant id is in the top k; the suite's figure is
    its pass rate."""

    binary: ClassVar[bool] = True

    def _passed(self, value: float) -> bool | None:
        return value >= 1.0

    def _verdict(self, value: float) -> str:
        return ""


def build_retrieval_scorer(metric: Any = "ndcg@10", *, relevant: str = "relevant",
                           doc_level: bool = False, threshold: float | None = None
                           ) -> RetrievalScorer:
    """The scorer of ``@pytest.mark.retrieval(metric, ...)``."""
    import importlib.util

    spec = parse_metric(metric)
    if importlib.util.find_spec("ranx") is None:
        from pytest_aie.errors import MissingDependency

        raise MissingDependency("ranx", "rag", "@pytest.mark.retrieval")
    cls = HitRateScorer if spec.name == "hit_rate" else RetrievalScorer
    return cls(spec, relevant=relevant, doc_level=doc_level, threshold=threshold)


def _retrieval(metric: Any = "ndcg@10", *, base_dir: Any, engine: Any,
               relevant: str = "relevant", doc_level: bool = False,
               threshold: float | None = None) -> Scorer:
    return build_retrieval_scorer(metric, relevant=relevant, doc_level=doc_level,
                                  threshold=threshold)


#: the ``retrieval`` eval marker (listed in :mod:`pytest_aie.suite.markers`)
MARKER = EvalMarker(
    "retrieval", _retrieval,
    "retrieval(metric='ndcg@10', *, relevant='relevant', doc_level=False, threshold=None, "
    "min_score=None, min_pass_rate=None): score each case's ranking (the output's "
    "retrieved passages, e.g. from target=retriever.as_target()) against its relevant ids "
    "(a list, or a dict id -> grade) with ranx. metric: recall@k, precision@k, mrr, map@k, "
    "ndcg@k (linear gain), ndcg_burges@k (exponential gain): the suite's mean with its "
    "interval, gated by min_score (threshold= is per case); hit_rate@k: pass/fail per "
    "case, gated by min_pass_rate. doc_level=True counts chunk ids 'doc#n' as their "
    "document.")
