"""The shared base of every reference-based scorer: reading a case's reference(s), checking
outputs, several references (best-of or mean), per-case thresholds in either direction, and the
suite-mean check. The conventions are in :mod:`pytest_aie.scorers.similarity`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from pytest_aie.errors import UsageError
from pytest_aie.scorers.base import Score, Scorer

if TYPE_CHECKING:
    from pytest_aie.dataset import Case

__all__ = ["AGGREGATES", "ReferenceScorer", "extract_references"]

AGGREGATES = ("max", "best", "mean")


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class _Refs:
    """The references of one case, or why there are none usable."""

    texts: tuple[str, ...] = ()
    problem: str | None = None


def extract_references(case: Case, field: str | None = None) -> _Refs:
    """The reference texts of ``case``.

    With ``field`` given, that field is read; otherwise ``references`` when the case has it,
    else ``expected``. A string is one reference; a list or tuple is several. Non-string or
    empty (blank) references make the case unmeasurable, with the problem named.
    """
    if field is None:
        field = "references" if case.get("references") is not None else "expected"
    raw = case.get(field)
    if raw is None:
        return _Refs(problem=f"case has no reference (field {field!r} is missing)")
    items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not items:
        return _Refs(problem=f"case's reference list {field!r} is empty")
    for i, item in enumerate(items):
        where = f"reference {field!r}" + (f"[{i}]" if isinstance(raw, (list, tuple)) else "")
        if not isinstance(item, str):
            return _Refs(problem=f"{where} is a {type(item).__name__}, not a string")
        if not item.strip():
            return _Refs(problem=f"{where} is empty")
    return _Refs(texts=tuple(items))


def _output_problem(output: Any) -> str | None:
    if not isinstance(output, str):
        return f"output is a {type(output).__name__}, not a string"
    if not output.strip():
        return "output is empty"
    return None


# --------------------------------------------------------------------------- base class


class ReferenceScorer(Scorer):
    """Base for scorers that compare an output with the case's reference(s).

    Subclasses set :attr:`name` and :attr:`higher_is_better` and implement
    :meth:`_pair_values` (a batch of ``(output, reference)`` pairs in, one value and details
    dict per pair out). This class handles references, bad input, aggregation over several
    references, thresholds and reasons.
    """

    marker: ClassVar[str] = "similarity"
    #: Metric name inside the marker, e.g. ``"bleu"``; the result's metric is ``similarity.<name>``.
    name: str = ""
    higher_is_better: ClassVar[bool] = True
    binary: ClassVar[bool] = False  # a continuous score
    #: Largest sensible threshold (values are on a 0-1 scale); None: unbounded.
    max_threshold: ClassVar[float | None] = 1.0

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return (0.0, self.max_threshold)

    def __init__(self, *, threshold: float | None = None, min_score: float | None = None,
                 references: str | None = None, aggregate: str = "max") -> None:
        for label, value in (("threshold", threshold), ("min_score", min_score)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise UsageError(f"similarity {self.name!r}: {label}={value!r} is not a number",
                                 fix=f"give {label} as a number such as 0.5")
            if self.max_threshold is not None and not 0.0 <= value <= self.max_threshold:
                raise UsageError(
                    f"similarity {self.name!r}: {label}={value!r} is outside "
                    f"[0, {self.max_threshold:g}] (values are on a 0-1 scale)",
                    fix=f"give {label} on the 0-1 scale, e.g. 0.3 rather than 30")
        if aggregate not in AGGREGATES:
            raise UsageError(f"similarity {self.name!r}: unknown aggregate={aggregate!r}",
                             fix=f"use one of {', '.join(AGGREGATES)}")
        if references is not None and not isinstance(references, str):
            raise UsageError(f"similarity {self.name!r}: references={references!r} must be "
                             "a field name", fix="pass the name of the case field, e.g. "
                             "references='expected'")
        self.threshold = None if threshold is None else float(threshold)
        self.min_score = None if min_score is None else float(min_score)
        self.references = references
        self.aggregate = "max" if aggregate == "best" else aggregate

    # ----------------------------------------------------------------- to implement

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        """One ``(value, details)`` per ``(output, reference)`` pair."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the interface

    @property
    def metric(self) -> str:
        return f"similarity.{self.name}"

    def score(self, output: str, case: Case) -> Score:
        return self.score_batch([output], [case])[0]

    def score_batch(self, outputs: Sequence[str], cases: Sequence[Case]) -> list[Score]:
        """Score a suite: all valid pairs are handed to :meth:`_pair_values` in one call."""
        if len(outputs) != len(cases):
            raise ValueError(f"{len(outputs)} outputs for {len(cases)} cases")
        results: list[Score | None] = [None] * len(cases)
        pairs: list[tuple[str, str]] = []
        spans: list[tuple[int, int, int]] = []  # (case index, first pair, pair count)
        for i, (output, case) in enumerate(zip(outputs, cases)):
            problem = _output_problem(output)
            refs = extract_references(case, self.references)
            problem = problem or refs.problem
            if problem:
                results[i] = Score.unmeasured(self.metric, problem)
                continue
            spans.append((i, len(pairs), len(refs.texts)))
            pairs.extend((output, ref) for ref in refs.texts)
        if pairs:
            try:
                values = self._pair_values(pairs)
            except Exception as exc:  # noqa: BLE001 - a failing metric must not lose the suite
                why = f"{type(exc).__name__}: {exc}"
                for i, _, _ in spans:
                    results[i] = Score.unmeasured(self.metric, f"could not compute: {why}")
                return [r for r in results if r is not None]
            for i, start, count in spans:
                results[i] = self._combine(values[start:start + count])
        return [r for r in results if r is not None]

    def _combine(self, per_ref: Sequence[tuple[float, dict[str, Any]]]) -> Score:
        vals = [v for v, _ in per_ref]
        bad = [v for v in vals if not math.isfinite(v)]
        if bad:
            return Score.unmeasured(self.metric, f"metric gave a non-finite value {bad[0]}")
        if self.aggregate == "mean":
            value, best = statistics.fmean(vals), None
        else:
            pick = max if self.higher_is_better else min
            best = pick(range(len(vals)), key=vals.__getitem__)
            value = vals[best]
        details: dict[str, Any] = {"higher_is_better": self.higher_is_better,
                                   "threshold": self.threshold}
        if len(per_ref) > 1:
            details["aggregate"] = "best" if best is not None else "mean"
            details["per_reference"] = vals
            if best is not None:
                details["best_reference"] = best
        chosen = per_ref[best if best is not None else 0][1]
        if len(per_ref) == 1 or best is not None:
            details.update(chosen)
        return Score(metric=self.metric, value=value, passed=self._passes(value),
                     reason=self._reason(value, len(vals)), details=details)

    def _passes(self, value: float) -> bool | None:
        if self.threshold is None:
            return None  # scored, not passed: the suite's gate decides
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def _reason(self, value: float, n_refs: int) -> str:
        of = "" if n_refs == 1 else f" ({'best' if self.aggregate == 'max' else 'mean'} of " \
                                    f"{n_refs} references)"
        if self.threshold is None:
            return f"{self.name} {value:.4f}{of}; no threshold"
        op = (">=" if self._passes(value) else "<") if self.higher_is_better else \
            ("<=" if self._passes(value) else ">")
        return f"{self.name} {value:.4f}{of} {op} threshold {self.threshold:g}"

    def suite_check(self, scores: Sequence[Score]) -> tuple[bool | None, str]:
        """The suite-level gate: is the mean measured value at least ``min_score`` (at most,
        for lower-is-better metrics)? ``(None, reason)`` without ``min_score`` or values."""
        vals = [s.value for s in scores if s.measured and s.value is not None]
        if self.min_score is None:
            return None, "no min_score"
        if not vals:
            return None, "no measured case"
        mean = statistics.fmean(vals)
        ok = mean >= self.min_score if self.higher_is_better else mean <= self.min_score
        op = (">=" if ok else "<") if self.higher_is_better else ("<=" if ok else ">")
        return ok, f"mean {self.name} {mean:.4f} over {len(vals)} cases {op} {self.min_score:g}"
