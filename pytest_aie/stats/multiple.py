"""Family-wise error control over the decisions that can fail a run: Holm's step-down method.

A run can hold many statistical decisions (a threshold verdict per suite and metric, a
regression test per suite against a baseline, per suite and per tag between base and
candidate). Each one alone is tested at its level; together, the chance that *some* of them
fails the run when nothing is wrong grows with their number (10 tags: about 29%). Holm
(1979, Scand J Stat 6:65) keeps that chance at most ``alpha`` for any dependence between the
tests, and is uniformly more powerful than Bonferroni. Benjamini-Hochberg controls the
false discovery rate instead, which suits screening many hypotheses; a CI gate answers the
yes/no question "did anything get worse", so the family-wise rate is the one that matters.

Decisions tested at different levels (a two-sided 95% interval decides a threshold at
one-sided 2.5%, a regression test at ``alpha``) are put on one scale first: a p-value ``p``
of a decision taken at level ``a`` enters the family as ``p * alpha / a``. That is still a
valid p-value when ``a <= alpha`` (it only grows), and a family of one decides exactly as
the decision alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pytest_aie.errors import UsageError

__all__ = ["holm"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: reject ``H_i`` at family level ``alpha``
    when ``holm(p)[i] <= alpha`` (the same decisions as the step-down procedure).

    ``p_adj(j) = max_{i <= j} min(1, (m - i + 1) p_(i))`` over the ascending order.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise UsageError("holm() needs a flat list of p-values", fix="pass one p-value per decision")
    if p.size == 0:
        return []
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise UsageError("holm() got a p-value outside [0, 1]", fix="pass p-values in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(steps)
    return [float(x) for x in adjusted]
