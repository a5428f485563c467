"""The scorer interface: an output and its case in, a :class:`Score` out.

A scorer is built from a marker's arguments (``@pytest.mark.exact("contains")``) and scores
a whole suite at once through :meth:`Scorer.score_batch`, so scorers that run a model
(embeddings, BERTScore, judges) can batch. A score whose ``value`` is ``None`` is
*unmeasured* (the scorer could not score it: empty output, unparseable judge answer); it
never counts as a pass or a fail. A score with a ``value`` but ``passed=None`` is *scored*:
a continuous metric without a per-case threshold, which is neither a pass nor a failure.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

if TYPE_CHECKING:
    from pytest_aie.dataset import Case
    from pytest_aie.engines.base import Generation, Request

__all__ = ["EvalMarker", "ModelScorer", "Sample", "Score", "Scorer"]


@dataclass
class Score:
    """One case's score on one metric."""

    metric: str
    value: float | None  # None: unmeasured
    passed: bool | None  # None: unmeasured, or scored without a per-case threshold
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def status(self) -> str:
        """``passed``, ``failed``, ``scored`` (a value, no per-case pass/fail: the suite's
        verdict decides) or ``unmeasured``."""
        if self.value is None:
            return "unmeasured"
        if self.passed is None:
            return "scored"
        return "passed" if self.passed else "failed"

    @classmethod
    def unmeasured(cls, metric: str, reason: str, **details: Any) -> Score:
        return cls(metric=metric, value=None, passed=None, reason=reason, details=details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "passed": self.passed,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class Sample:
    """Everything a scorer may look at for one generated sample of one case."""

    case: Case
    request: Request
    generation: Generation
    model: str  # the model's name in the run ("default", "candidate", a --aie-models name)
    index: int = 0  # the sample's index (repeated sampling)
    #: every model's generation for this case and sample index, by model name (a suite that
    #: runs several models; for a one-model suite, just this one)
    generations: Mapping[str, Generation] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.generation.text


class Scorer(abc.ABC):
    """Scores outputs against cases. Subclasses implement :meth:`score` (and may override
    :meth:`score_batch` to batch, or :meth:`score_samples` to see whole samples: the request,
    token counts, timings, the model, the sample index).

    What a scorer is, the harness reads from these declarations (never by probing):
    :attr:`binary`, :attr:`higher_is_better`, :attr:`bounds` and :meth:`required_fields`.
    """

    #: The marker this scorer belongs to ("exact", "similarity", ...).
    marker: ClassVar[str] = ""
    #: True: a pass/fail metric (the suite's figure is a pass rate); False: a continuous
    #: score (the suite's figure is a mean).
    binary: ClassVar[bool] = True
    #: False for metrics where lower is better (TER, perplexity, latency): thresholds are
    #: ceilings and a rise is a regression.
    higher_is_better: ClassVar[bool] = True

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The smallest and largest value the metric can take (None: unbounded)."""
        return (0.0, 1.0)

    def required_fields(self) -> tuple[str, ...]:
        """Case fields every case must have for this scorer (checked when the dataset loads)."""
        return ()

    def suite_aggregate(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        """A suite-level figure that is not a mean of case scores (corpus BLEU pools n-gram
        counts over the suite), from the first sample of every case of one model; shown
        next to the suite's line. None: the scorer has none."""
        return None

    def score_samples(self, samples: Sequence[Sample]) -> list[Score]:
        """Score a whole suite's samples at once; the default hands the texts and cases to
        :meth:`score_batch`."""
        return self.score_batch([s.generation.text for s in samples], [s.case for s in samples])

    @property
    @abc.abstractmethod
    def metric(self) -> str:
        """The metric's name as it appears in results and reports, e.g. ``exact.contains``."""

    @abc.abstractmethod
    def score(self, output: str, case: Case) -> Score:
        """Score one output."""

    def score_batch(self, outputs: Sequence[str], cases: Sequence[Case]) -> list[Score]:
        """Score a whole suite; the default scores one by one."""
        return [self.score(o, c) for o, c in zip(outputs, cases)]


class ModelScorer(Scorer):
    """A scorer that calls a model (a judge, a grader) for a whole suite at once, in two
    steps the harness drives:

    1. :meth:`plan` gets every sample of the suite and returns, per sample, the requests it
       needs: a :class:`~pytest_aie.engines.base.Request` goes to the scorer's own model
       (:attr:`model_name`), a ``(model name, Request)`` pair to any model of the run.
    2. The harness generates all of them per model through the same engines, de-duplication,
       cache, batching and progress lines as the main pass (and once per run under xdist).
    3. :meth:`score_results` gets the samples again with, per sample, the generations in the
       order planned, and returns one :class:`Score` per sample.

    The scorer's model is ``judge_model=`` when given (an ``--aie-models`` name or
    ``[ENGINE:]MODEL``), else ``--aie-judge``, else the embedded model.
    """

    binary: ClassVar[bool] = False
    #: how many follow-up rounds (:meth:`follow_up`) the harness runs at most
    rounds: ClassVar[int] = 0
    #: the run's name of the model that plain requests from :meth:`plan` go to
    model_name: str = "judge"

    def __init__(self, judge_model: str | None = None) -> None:
        self.model_name = "judge" if judge_model is None else f"judge:{judge_model}"

    def bind(self, supports: Callable[[str, str], bool]) -> None:  # noqa: B027 - optional
        """Called before :meth:`plan` with ``supports(model name, capability)``: what the
        scorer's models can do (constrained decoding: ``Capability.SCHEMA``)."""

    @abc.abstractmethod
    def plan(self, samples: Sequence[Sample]) -> list[list[Request | tuple[str, Request]]]:
        """The requests each sample needs."""

    def follow_up(self, samples: Sequence[Sample], results: Sequence[Sequence[Generation]]
                  ) -> list[list[Request | tuple[str, Request]]]:
        """More requests after seeing the results so far (a repair request for an unreadable
        reply), generated like the first ones and appended to each sample's results; up to
        :attr:`rounds` times, until a round asks for nothing."""
        return [[] for _ in samples]

    @abc.abstractmethod
    def score_results(self, samples: Sequence[Sample],
                      results: Sequence[Sequence[Generation]]) -> list[Score]:
        """Scores from the planned requests' generations (``results[i]``: sample ``i``'s,
        in the order planned)."""

    def score(self, output: str, case: Case) -> Score:
        raise TypeError(f"{type(self).__name__} calls a model: the harness scores it through "
                        "plan() and score_results(), not score()")


@dataclass(frozen=True)
class EvalMarker:
    """An eval marker as plain data: its ``name`` (``@pytest.mark.NAME``), the ``factory`` that
    builds its scorer (``factory(*marker args, base_dir=, engine=, **marker kwargs)``;
    ``engine()`` returns the suite's engine, created on first call) and its ``help`` line for
    ``pytest --markers``. ``accepts`` (``"module:attr"``, loaded on use) names the callable
    whose signature lists the marker's keyword arguments where the factory only forwards them
    (default: the factory's own signature). :mod:`pytest_aie.suite.markers` lists them all."""

    name: str
    factory: Callable[..., Scorer]
    help: str
    accepts: str | None = None
