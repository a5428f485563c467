"""Perplexity and bits-per-byte of a case's *reference* text under the model.

These measure how well the model predicts the reference (``case.expected``, or the field
named by ``references=``), not the generated output: the output is ignored. They need an
engine that can score text (:data:`~pytest_aie.engines.base.Capability.SCORE`), i.e. one
with ``score_text(texts, contexts=None) -> list[list[float]]`` returning each text's
per-token natural-log probabilities (the text's tokens only, given the context if any).

* ``perplexity = exp(-mean(logprobs))``
* ``bits_per_byte = -sum(logprobs) / ln(2) / len(text.encode("utf-8"))``

Both are lower-is-better: a case passes when ``value <= threshold`` (and the suite gate
``min_score`` is a ceiling on the mean). With ``context="prompt"`` the reference is scored
after the case's prompt. Several references: ``aggregate="max"``/``"best"`` keeps the lowest,
``"mean"`` averages. The whole suite goes to ``score_text`` in one call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from pytest_aie.engines.base import Capability
from pytest_aie.errors import EngineError, UsageError
from pytest_aie.scorers.base import Score
from pytest_aie.scorers.reference import ReferenceScorer, extract_references

if TYPE_CHECKING:
    from pytest_aie.dataset import Case
    from pytest_aie.engines.base import Engine

__all__ = ["PerplexityScorer", "bits_per_byte", "perplexity"]

KINDS = ("perplexity", "bits_per_byte")
CONTEXTS = (None, "prompt")


def perplexity(logprobs: Sequence[float]) -> float:
    """``exp(-mean(logprobs))``; ValueError for no tokens."""
    if not logprobs:
        raise ValueError("no token log-probabilities")
    return math.exp(-math.fsum(logprobs) / len(logprobs))


def bits_per_byte(logprobs: Sequence[float], text: str) -> float:
    """``-sum(logprobs) / ln 2 / len(text in UTF-8 bytes)``; ValueError for an empty text."""
    n_bytes = len(text.encode("utf-8"))
    if not logprobs or n_bytes == 0:
        raise ValueError("no tokens or no bytes")
    return -math.fsum(logprobs) / math.log(2) / n_bytes


class PerplexityScorer(ReferenceScorer):
    """Perplexity (``kind="perplexity"``) or bits per byte (``kind="bits_per_byte"``) of the
    reference under ``engine``."""

    higher_is_better: ClassVar[bool] = False
    max_threshold: ClassVar[float | None] = None

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return (1.0 if self.kind == "perplexity" else 0.0, None)

    def __init__(self, engine: Engine, *, kind: str = "perplexity",
                 context: str | None = None, **common: Any) -> None:
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
        if context not in CONTEXTS:
            raise UsageError(f"similarity {kind!r}: unknown context={context!r}",
                             fix="use context='prompt' to score the reference after the "
                                 "case's prompt, or leave it out")
        self.name = kind
        super().__init__(**common)
        if not engine.supports(Capability.SCORE) or not hasattr(engine, "score_text"):
            raise EngineError(
                f"engine {getattr(engine, 'name', type(engine).__name__)!r} cannot score "
                f"text, which {kind} needs (no Capability.SCORE)",
                fix="use the hf engine, which returns the log-probabilities of a given text")
        self.engine = engine
        self.kind = kind
        self.context = context

    def score_batch(self, outputs: Sequence[str], cases: Sequence[Case]) -> list[Score]:
        """Score every case's reference(s) with one ``engine.score_text`` call.

        The outputs are not used (only their count is checked). A failure of the engine as a
        whole propagates as :class:`~pytest_aie.errors.EngineError`.
        """
        if len(outputs) != len(cases):
            raise ValueError(f"{len(outputs)} outputs for {len(cases)} cases")
        results: list[Score | None] = [None] * len(cases)
        texts: list[str] = []
        contexts: list[str] = []
        spans: list[tuple[int, int, int]] = []
        for i, case in enumerate(cases):
            refs = extract_references(case, self.references)
            problem = refs.problem
            ctx = ""
            if not problem and self.context == "prompt":
                ctx = case.prompt or ""
                if not ctx:
                    problem = "context='prompt' but the case has no prompt"
            if problem:
                results[i] = Score.unmeasured(self.metric, problem)
                continue
            spans.append((i, len(texts), len(refs.texts)))
            texts.extend(refs.texts)
            contexts.extend([ctx] * len(refs.texts))
        if texts:
            got = self.engine.score_text(texts, contexts if self.context else None)
            if len(got) != len(texts):
                raise EngineError(f"engine returned {len(got)} scored texts for {len(texts)}",
                                  fix="fix the engine's score_text")
            for i, start, count in spans:
                per_ref = []
                problem = None
                for text, lps in zip(texts[start:start + count], got[start:start + count]):
                    value = self._value(text, lps)
                    if isinstance(value, str):
                        problem = value
                        break
                    per_ref.append((value, {"tokens": len(lps),
                                            "bytes": len(text.encode("utf-8")),
                                            "sum_logprob": math.fsum(lps)}))
                results[i] = Score.unmeasured(self.metric, problem) if problem \
                    else self._combine(per_ref)
        return [r for r in results if r is not None]

    def _value(self, text: str, lps: Sequence[float] | None) -> float | str:
        """The metric's value, or a string saying why there is none."""
        if lps is None or len(lps) == 0:
            return "engine returned no token log-probabilities for the reference"
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in lps):
            return "engine returned a non-finite token log-probability"
        try:
            return perplexity(lps) if self.kind == "perplexity" else bits_per_byte(lps, text)
        except OverflowError:
            return "perplexity overflows: the mean token log-probability is below -709"
