"""The eval markers, one table: each family's marker as plain data
(:class:`~pytest_aie.scorers.base.EvalMarker`: name, factory, help), listed here the way
:data:`pytest_aie.engines.ENGINES` lists engines. Nothing registers itself by being imported.

The built-in markers are :data:`BUILTIN`; a user's plugin adds its own with
:func:`register_eval_marker` (the plugin forgets those a run added when it ends, so two
pytest runs in one process do not share them). :data:`EVAL_MARKERS` and :data:`MARKER_HELP`
are read-only views of both.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, TypeVar

from pytest_aie.agent.scorer import MARKER as AGENT
from pytest_aie.latency.marker import MARKER as LATENCY
from pytest_aie.retrieval.metrics import MARKER as RETRIEVAL
from pytest_aie.scorers.base import EvalMarker, Score, Scorer

__all__ = ["BUILTIN", "DATASET_HELP", "EVAL_MARKERS", "MARKER_HELP", "EvalMarker", "UnavailableScorer",
           "HARNESS_KWARGS", "RUN_OPTIONS", "accepted_kwargs", "register_eval_marker",
           "registered", "restore", "run_kwargs"]


def _exact(*args: Any, base_dir: Path, engine: Callable[[], Any], **kwargs: Any) -> Scorer:
    from pytest_aie.scorers.exact import ExactScorer

    return ExactScorer(*args, base_dir=base_dir, **kwargs)


def _judge(*args: Any, base_dir: Path, engine: Callable[[], Any], **kwargs: Any) -> Scorer:
    from pytest_aie.judge.scorer import build_judge

    return build_judge(*args, base_dir=base_dir, **kwargs)


def _elo(*args: Any, base_dir: Path, engine: Callable[[], Any], **kwargs: Any) -> Scorer:
    from pytest_aie.judge.elo import build_elo

    return build_elo(*args, base_dir=base_dir, **kwargs)


class _LazyEngine:
    """The suite's engine for scorers that need one (perplexity), created on first use so
    collecting tests never loads a model."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get
        self.name = "lazy"

    def supports(self, capability: str) -> bool:
        return True  # checked against the real engine on first use

    def score_text(self, texts: list[str], contexts: list[str] | None = None) -> list[list[float]]:
        from pytest_aie.engines.base import Capability
        from pytest_aie.errors import EngineError

        engine = self._get()
        if not engine.supports(Capability.SCORE) or not hasattr(engine, "score_text"):
            raise EngineError(f"engine {engine.name!r} cannot score text (perplexity needs the "
                              "log-probabilities of a given text)",
                              fix="use the hf engine (--aie-engine hf) for perplexity suites")
        return engine.score_text(texts, contexts)  # type: ignore[no-any-return]


def _similarity(metric: str = "cosine", *, base_dir: Path, engine: Callable[[], Any],
                **kwargs: Any) -> Scorer:
    from pytest_aie.errors import EngineError
    from pytest_aie.scorers.similarity import build_similarity_scorer

    if metric in ("perplexity", "bits_per_byte") and "engine" not in kwargs:
        kwargs["engine"] = _LazyEngine(engine)
    try:
        scorer = build_similarity_scorer(metric, **kwargs)
    except EngineError as exc:  # a model or library that is not installed
        scorer = UnavailableScorer(f"similarity.{metric}", str(exc))
    return scorer


class UnavailableScorer(Scorer):
    """Stands in for a similarity scorer whose model or library is missing: every case is
    recorded as unmeasured with the reason, and the rest of the run goes on."""

    binary: ClassVar[bool] = False

    def __init__(self, metric: str, reason: str) -> None:
        self._metric = metric
        self.reason = reason

    @property
    def metric(self) -> str:
        return self._metric

    def score(self, output: str, case: Any) -> Score:
        return Score.unmeasured(self._metric, self.reason)


#: the ``dataset`` marker's help line (it parametrizes a suite; it builds no scorer)
DATASET_HELP = ("dataset(path, *, prompt=None, system=None, chat=True, model=None, models=None, "
                "variants=None, reference=None, max_tokens=None, "
                "temperature=None, top_p=None, stop=None, seed=None, target=None, "
                "target_batch=False, target_concurrency=8, target_cache=True, target_id=None): "
                "parametrize the test's `case` argument with the cases in a JSONL, CSV or YAML "
                "file next to the test file; each case's request is generated for the whole suite "
                "in one batched pass. target=your_function evaluates your application instead of "
                "the bare model; a test that takes the `evaluate` fixture computes its own output. "
                "models=['a', 'b', ...]: every case for each model (one test per case and model, "
                "paired comparisons between them); reference='a': that model is compared "
                "against, not gated. variants={'terse': {'system': '...'}, 'plain': {}}: the "
                "same, for variants of the prompt, system prompt, sampling or model.")

#: the built-in eval markers, in ``pytest --markers`` order
BUILTIN: tuple[EvalMarker, ...] = (
    EvalMarker(
        "similarity", _similarity,
        "similarity(metric='cosine', *, threshold=None, min_score=None, references=None, "
        "aggregate='max', samples=None, **metric_options): score each case's output "
        "against its reference(s) (case.expected, or a `references` list). metric: "
        "cosine (sentence-transformers; model=), rouge1/rouge2/rougeL/rougeLsum (stem=), "
        "bleu, chrf, ter (sacrebleu), bertscore (model=, layer=), perplexity / "
        "bits_per_byte (of the reference under the suite's model). Values are on a 0-1 "
        "scale; threshold is per case, min_score gates the suite's mean with its "
        "interval. TER, perplexity and bits_per_byte are lower-is-better."),
    EvalMarker(
        "exact", _exact,
        "exact(kind='match', *, normalize=None, field='expected', pattern=None, flags='', "
        "schema=None, tolerance=1e-6, rel_tolerance=0, extract=None, regex_timeout=1.0, "
        "min_pass_rate=None, "
        "must_pass=(), samples=None): score each case's output exactly. kind: match, "
        "contains (any_of), contains_all, regex, json, json_schema, numeric; a list in "
        "expected means any of them counts (contains_all: every one); normalize: case, "
        "whitespace, "
        "punctuation, articles, or 'all'. With min_pass_rate the suite's interval decides "
        "pass/fail/inconclusive and a failing case alone does not fail the run.",
        accepts="pytest_aie.scorers.exact:ExactScorer"),
    EvalMarker(
        "judge", _judge,
        "judge(rubric='helpfulness', *, judge_model=None, combine=None, against=None, "
        "human=None, human_file=None, min_kappa=None, kappa_weights='quadratic', "
        "threshold=None, max_tokens=256, min_pass_rate=None, min_score=None, "
        "samples=None): grade each case's output with an AI judge on a rubric (a name "
        "from judges/ -- helpfulness, correctness, faithfulness, preference -- or a .j2 "
        "path). judge_model: --aie-models name(s) or ENGINE:MODEL, a list for several "
        "judges (combine='mean' or 'majority'); default --aie-judge, else the embedded "
        "model. Replies are constrained to the rubric's JSON where the engine can, else "
        "read with one repair request; unreadable replies are unmeasured. preference "
        "rubrics compare with against= (a model of the suite or a case field) in both "
        "orders. human='FIELD' / human_file='PATH': human labels for Cohen's kappa; min_kappa: below "
        "it the judge is untrusted and its verdicts inconclusive.",
        accepts="pytest_aie.judge.scorer:build_judge"),
    EvalMarker(
        "elo", _elo,
        "elo(rubric='preference', *, judge_model=None, expect=(), battles=None, judge=True, "
        "budget=None, round_size=None, k=32, initial=1000, shuffles=0, anchor=None, "
        "bootstrap=1000, seed=0, max_tokens=256): rank the models of a suite (models=[...] "
        "or variants={...}) from pairwise battles judged in both orders (and/or a file of "
        "human preferences, battles=): Bradley-Terry ratings on the Elo scale with "
        "bootstrap intervals, online Elo, win rates, cycles. expect=['a > b'] gates the "
        "ranking (pass/fail/inconclusive on the bootstrap interval). budget=N: adaptive "
        "rounds where the ranking is least certain, at most N judged battles.",
        accepts="pytest_aie.judge.elo:build_elo"),
    AGENT,
    LATENCY,
    RETRIEVAL,
)

_REGISTERED: dict[str, EvalMarker] = {}  # users' plugins' markers, by name


def register_eval_marker(name: str, factory: Callable[..., Scorer], help: str) -> None:
    """Add an eval marker of your own plugin: ``@pytest.mark.NAME(...)`` builds its scorer
    with ``factory(*args, base_dir=, engine=, **kwargs)``; ``help`` is its ``pytest --markers``
    line."""
    _REGISTERED[name] = EvalMarker(name, factory, help)


def registered() -> dict[str, EvalMarker]:
    """The markers users' plugins have registered so far (for :func:`restore`)."""
    return dict(_REGISTERED)


def restore(before: Mapping[str, EvalMarker]) -> None:
    """Forget the markers registered since ``before`` (:func:`registered`) was taken."""
    _REGISTERED.clear()
    _REGISTERED.update(before)


_V = TypeVar("_V")


class _View(Mapping[str, _V]):
    """A read-only view of a table built on each read (so a registration shows at once)."""

    def __init__(self, table: Callable[[], dict[str, _V]]) -> None:
        self._table = table

    def __getitem__(self, name: str) -> _V:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: eval marker name -> :class:`EvalMarker` (read-only: the built-in markers, then the registered
#: ones; a registered name replaces a built-in)
EVAL_MARKERS: Mapping[str, EvalMarker] = _View(lambda: {**{m.name: m for m in BUILTIN}, **_REGISTERED})
#: marker name -> its ``pytest --markers`` line (read-only)
MARKER_HELP: Mapping[str, str] = _View(
    lambda: {"dataset": DATASET_HELP, **{n: m.help for n, m in EVAL_MARKERS.items()}})


#: keyword arguments every factory receives from the harness, not from the marker
HARNESS_KWARGS = ("base_dir", "engine")
#: the run's options a factory receives when its signature names them (``utilization``: the
#: run's :class:`~pytest_aie.latency.utilization.UtilizationOptions`)
RUN_OPTIONS = ("utilization",)


def _params(marker: EvalMarker) -> list[inspect.Parameter] | None:
    target: Any = marker.factory
    if marker.accepts:
        module, attr = marker.accepts.split(":")
        target = getattr(importlib.import_module(module), attr)
    try:
        return list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover
        return None


def accepted_kwargs(marker: EvalMarker) -> tuple[str, ...] | None:
    """Keyword arguments the marker accepts (None: anything; the factory checks itself)."""
    params = _params(marker)
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and p.name not in HARNESS_KWARGS + RUN_OPTIONS)


def run_kwargs(marker: EvalMarker, options: Mapping[str, Any]) -> dict[str, Any]:
    """The run options (:data:`RUN_OPTIONS`) the marker's factory names in its signature."""
    try:
        named = inspect.signature(marker.factory).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}
    return {k: v for k, v in options.items() if k in RUN_OPTIONS and k in named}
