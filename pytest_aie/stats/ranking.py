"""Using a ranking from pairwise battles: the next battles where it is least certain, when to
stop, and the gates on it.

* :func:`schedule`, :func:`ranking_stable`: the next battles where the ranking is least
  certain (adjacent models whose bootstrap intervals overlap most), and when to stop (the
  ranking agreeing with itself over ``patience`` consecutive fits).
* :func:`parse_expectation`, :func:`expect`: ``"candidate > base"`` gates decided by the
  bootstrap interval of the rating difference: ``pass``, ``fail`` or ``inconclusive``.

The fits come from :mod:`pytest_aie.stats.ratings` (:func:`~pytest_aie.stats.ratings.bradley_terry`).
"""

from __future__ import annotations

import heapq
import math
import random
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

from pytest_aie.errors import UsageError
from pytest_aie.stats.ratings import BattleLike, BTFit, as_battles

__all__ = ["Expectation", "GateVerdict", "Pairing", "Stability", "expect", "parse_expectation",
           "ranking_agreement", "ranking_stable", "schedule"]


# --------------------------------------------------------------------------- scheduling

@dataclass(frozen=True)
class Pairing:
    """A battle to run next: ``case`` is None when :func:`schedule` was given no cases."""

    model_a: str
    model_b: str
    case: str | None = None


def _pair(a: str, b: str, order: dict[str, int]) -> tuple[str, str]:
    return (a, b) if order[a] < order[b] else (b, a)


def schedule(models: Sequence[str], battles: Iterable[BattleLike], fit: BTFit | None,
             budget: int, *, cases: Sequence[str] | None = None, seed: int = 0
             ) -> list[Pairing]:
    """Up to ``budget`` battles for the next round, where the ranking is least certain.

    Each pair's priority is ``u / sqrt(1 + n)``: ``u = min(q, 1 - q)`` with ``q`` the
    bootstrap probability that the first model is the better (:meth:`BTFit.prob_better`;
    0.5, the most uncertain, without a fit or resamples), ``n`` the pair's battles so far
    plus those already given to it this round. Battles go one at a time to the pair of
    highest priority, so a pair whose order is in doubt gets more while it has few battles,
    and none goes to a pair the fit already orders for sure (``u = 0``). With ``cases``, each
    battle gets a case the pair has not met on yet (drawn with ``random.Random(seed)``), and
    a pair that has met on every case gets no more."""
    bs = as_battles(battles)
    names = list(dict.fromkeys(models))
    order = {m: i for i, m in enumerate(names)}
    met: dict[tuple[str, str], int] = {}
    used: dict[tuple[str, str], set[str | None]] = {}
    for b in bs:
        if b.model_a in order and b.model_b in order:
            key = _pair(b.model_a, b.model_b, order)
            met[key] = met.get(key, 0) + 1
            used.setdefault(key, set()).add(b.case)
    rng = random.Random(seed)
    fitted = set(fit.models) if fit is not None else set()
    heap = []
    for i, a in enumerate(names):
        for other in names[i + 1:]:
            q = fit.prob_better(a, other) if fit is not None and {a, other} <= fitted else 0.5
            u = min(q, 1.0 - q)
            n = met.get((a, other), 0)
            if u > 0:
                free = None if cases is None else \
                    [c for c in cases if c not in used.get((a, other), set())]
                if free is None or free:
                    if free is not None:
                        rng.shuffle(free)
                    heap.append((-u / math.sqrt(1 + n), i, a, other, u, n, free))
    heapq.heapify(heap)
    out: list[Pairing] = []
    while heap and len(out) < budget:
        _, i, a, other, u, n, free = heapq.heappop(heap)
        out.append(Pairing(a, other, free.pop() if free is not None else None))
        if free is None or free:
            heapq.heappush(heap, (-u / math.sqrt(2 + n), i, a, other, u, n + 1, free))
    return out


@dataclass(frozen=True)
class Stability:
    """Whether to stop: ``reason`` says why (or why not); ``agreement`` is the share of
    bootstrap resamples whose ranking agrees with the fit's (Spearman >= ``min_spearman``);
    ``unsettled`` the adjacent pairs whose difference interval straddles 0."""

    stable: bool
    reason: str
    agreement: float | None
    unsettled: tuple[tuple[str, str], ...]


def ranking_agreement(fit: BTFit, min_spearman: float = 0.95) -> float | None:
    """Share of the fit's bootstrap resamples whose ranking has a Spearman correlation of at
    least ``min_spearman`` with the fit's own ranking; None without resamples."""
    ranking = fit.ranking()
    n = len(ranking)
    if not fit.n_boot or len(fit.samples) == 0 or n < 2:
        return None
    # Spearman's rho of two rankings without ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    position = np.array([ranking.index(m) for m in fit.models])
    boot = np.argsort(np.argsort(-fit.samples, axis=1, kind="stable"), axis=1)
    rho = 1.0 - 6.0 * ((boot - position) ** 2).sum(1) / (n * (n * n - 1))
    return float(np.mean(rho >= min_spearman - 1e-12))


def ranking_stable(fits: Sequence[BTFit], *, patience: int = 3, min_spearman: float = 0.95,
                   min_agreement: float = 0.9, spent: int | None = None,
                   budget: int | None = None) -> Stability:
    """Whether an adaptive loop may stop, given the fit after each round (latest last).

    Stable when the budget is spent (``spent >= budget``), or when each of the last
    ``patience + 1`` fits gives the same ranking and is sure of it: in at least
    ``min_agreement`` of its bootstrap resamples the ranking has a Spearman correlation of at
    least ``min_spearman`` with the fit's (:func:`ranking_agreement`). Asking it of several
    consecutive fits, each with more battles, guards against stopping on one lucky look.
    ``min_spearman=1`` asks the resamples for the same order (every adjacent pair separated,
    jointly); the default, 0.95, tolerates a swap of two near neighbours among 8 or more."""
    if not fits:
        return Stability(False, "nothing fitted yet", None, ())
    fit = fits[-1]
    ranking = fit.ranking()
    unsettled = tuple((a, b) for a, b in zip(ranking, ranking[1:]) if fit.intervals and
                      not np.quantile(fit.difference_samples(a, b), (1 - fit.confidence) / 2) > 0)
    share = ranking_agreement(fit, min_spearman)
    if spent is not None and budget is not None and spent >= budget:
        return Stability(True, f"budget spent ({spent} of {budget})", share, unsettled)
    recent = fits[-(patience + 1):]
    if len(recent) < patience + 1 or any(f.ranking() != ranking for f in recent):
        return Stability(False, f"the ranking changed within the last {patience} rounds",
                         share, unsettled)
    shares = [ranking_agreement(f, min_spearman) for f in recent]
    if any(x is None or x < min_agreement for x in shares):
        return Stability(False, f"{min(x or 0.0 for x in shares):.0%} of bootstrap resamples rank "
                         f"with Spearman >= {min_spearman} in one of the last {patience + 1} fits "
                         f"(need {min_agreement:.0%})", share, unsettled)
    return Stability(True, f"the same ranking in the last {patience + 1} fits, each with at least "
                     f"{min_agreement:.0%} of bootstrap resamples agreeing (Spearman >= "
                     f"{min_spearman})", share, unsettled)


# --------------------------------------------------------------------------- gates

@dataclass(frozen=True)
class Expectation:
    """``left op right + margin`` on the Elo scale: holds when ``r_left - r_right op margin``."""

    text: str
    left: str
    op: Literal[">", ">="]
    right: str
    margin: float


@dataclass(frozen=True)
class GateVerdict:
    """A ranking gate decided on the bootstrap interval ``[low, high]`` of
    ``difference = r_left - r_right`` at ``confidence``."""

    expectation: Expectation
    verdict: Literal["pass", "fail", "inconclusive"]
    difference: float
    low: float | None
    high: float | None
    confidence: float
    prob_better: float  # share of resamples with r_left - r_right above the margin


_NAME = r"""(?:"[^"]+"|'[^']+'|[^\s<>=!"']+)"""
_EXPR = re.compile(rf"^\s*({_NAME})\s*(>=|<=|>|<)\s*({_NAME})(?:\s+([+-])\s*(\d+(?:\.\d*)?))?\s*$")


def parse_expectation(text: str) -> Expectation:
    """Parse ``"candidate > base"``, ``"a >= b"``, ``"a < b"``, ``"a >= b - 25"`` (a margin in
    Elo points after a space) and quoted names (``'"my model" > base'``). ``<``/``<=`` swap
    the sides. ``UsageError`` naming the fix otherwise."""
    m = _EXPR.match(text) if isinstance(text, str) else None
    if m is None:
        raise UsageError(f"cannot read the ranking expectation {text!r}",
                         fix="write 'model_a > model_b' (or >=, <, <=), optionally with a margin "
                             "in Elo points after a space, e.g. 'candidate >= base - 25'; quote "
                             "names with spaces")
    left, op, right = (g.strip("'\"") if g[0] in "'\"" else g for g in m.group(1, 2, 3))
    if left == right:
        raise UsageError(f"the ranking expectation {text!r} compares {left!r} with itself",
                         fix="compare two different models")
    margin = float(m.group(5)) * (-1 if m.group(4) == "-" else 1) if m.group(5) else 0.0
    if op in ("<", "<="):  # a < b + m  <=>  b > a - m
        left, right, margin, op = right, left, -margin, ">" if op == "<" else ">="
    return Expectation(text, left, ">" if op == ">" else ">=", right, margin)


def expect(fit: BTFit, expectations: str | Sequence[str]) -> list[GateVerdict]:
    """Decide each expectation on the fit's bootstrap: with ``d = r_left - r_right`` and its
    percentile interval ``[low, high]`` at ``fit.confidence``, ``">"`` passes when
    ``low > margin`` and fails when ``high <= margin``; ``">="`` passes when ``low >= margin``
    and fails when ``high < margin`` (the rule of :func:`pytest_aie.stats.verdict`); else, or
    without resamples or with an interval of zero width, ``inconclusive``."""
    items = [expectations] if isinstance(expectations, str) else list(expectations)
    out = []
    for text in items:
        e = parse_expectation(text)
        missing = [m for m in (e.left, e.right) if m not in fit.models]
        if missing:
            raise UsageError(f"the ranking expectation {text!r} names {missing[0]!r}, which is "
                             f"not rated", fix=f"use one of the models {list(fit.models)}")
        diff = fit.ratings[e.left] - fit.ratings[e.right]
        if fit.n_boot == 0 or len(fit.samples) == 0:
            out.append(GateVerdict(e, "inconclusive", diff, None, None, fit.confidence, 0.5))
            continue
        d = fit.difference_samples(e.left, e.right)
        low, high = (float(x) for x in np.quantile(d, [(1 - fit.confidence) / 2,
                                                      (1 + fit.confidence) / 2]))
        t = e.margin
        verdict: Literal["pass", "fail", "inconclusive"] = "inconclusive"
        if high > low:
            if (low > t) if e.op == ">" else (low >= t):
                verdict = "pass"
            elif (high <= t) if e.op == ">" else (high < t):
                verdict = "fail"
        out.append(GateVerdict(e, verdict, diff, low, high, fit.confidence,
                               float(np.mean(d > t))))
    return out
