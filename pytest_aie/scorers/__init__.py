"""Scorers: the interface every eval family builds on (:mod:`.base`: :class:`Score`,
:class:`Scorer`, ``ModelScorer``, ``Sample`` and ``EvalMarker``, a marker as plain data) and
the plain scorers: exact checks (:mod:`.exact`), similarity metrics (:mod:`.similarity`,
:mod:`.embedding`, :mod:`.reference`) and perplexity (:mod:`.perplexity`)."""
from pytest_aie.scorers.base import Score, Scorer

__all__ = ["Score", "Scorer"]
