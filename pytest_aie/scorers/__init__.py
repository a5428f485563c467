"""Scorers: exact, similarity and (later) judge metrics behind one interface."""
from pytest_aie.scorers.base import Score, Scorer

__all__ = ["Score", "Scorer"]
