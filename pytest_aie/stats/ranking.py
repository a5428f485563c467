"""Using a ranking from pairwise battles: the next battles where it is least certain, when to
stop, and the gates on it.

* :func:`schedule`, :func:`ranking_stable`: the next battles where the ranking is least
  certain (adjacent models whose bootstrap intervals overlap most), and when to stop (the
  ranking agreeing with itself over ``patience`` consecutive fits).
* :func:`parse_expectation`, :func:`expect`: ``"candidate > base"`` gates decided by the
  exact sign test on the decisive battles between the two (:func:`sign_test`, ties dropped):
  ``pass``, ``fail`` or ``inconclusive`` (with the reason, e.g. too few decisive battles).
* :func:`ranking_signal`: why the battles cannot rank at all (a judge whose pick follows the
  answer order, too few decisive battles), so that the leaderboard orders nothing.

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

__all__ = ["Expectation", "GateVerdict", "Pairing", "SignTest", "Stability", "decisive_needed",
           "expect", "parse_expectation", "ranking_agreement", "ranking_signal", "ranking_stable",
           "schedule", "sign_test", "win_probability"]


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
    least ``min_spearman`` with the fit's own ranking; None without resamples. Models with equal
    ratings in a resample count as ranked against the fit's order (a tie is no evidence of an
    order), so battles that are all ties never make a ranking agree with itself."""
    ranking = fit.ranking()
    n = len(ranking)
    if not fit.n_boot or len(fit.samples) == 0 or n < 2:
        return None
    # Spearman's rho of two rankings without ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    position = np.array([ranking.index(m) for m in fit.models])
    # each resample's ranking, a tie broken against the fit's order: equal ratings (all battles
    # between them tied, or none) are no evidence of the order, so all-tied battles never agree
    order = np.lexsort((np.broadcast_to(-position, fit.samples.shape), -fit.samples), axis=1)
    boot = np.argsort(order, axis=1)
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


Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class SignTest:
    """The exact one-sided sign test of ``wins`` in ``wins + losses`` decisive battles (ties
    dropped) against ``p0``, the win probability at the margin: ``p_pass`` = P(X >= wins),
    ``p_fail`` = P(X <= wins) for X ~ Binomial(wins + losses, p0); ``reason`` says why the
    verdict."""

    verdict: Verdict
    wins: int
    losses: int
    ties: int
    p0: float
    p_pass: float
    p_fail: float
    level: float
    reason: str


def win_probability(margin: float) -> float:
    """The chance of winning a decisive battle at a rating gap of ``margin`` Elo points
    (Bradley-Terry on the Elo scale): ``1 / (1 + 10 ** (-margin / 400))``."""
    return 1.0 / (1.0 + math.pow(10.0, -margin / 400.0))


def decisive_needed(p0: float, level: float) -> int:
    """The fewest decisive battles with which a one-sided sign test against ``p0`` can reach
    ``level`` at all (every one of them won): the smallest ``n`` with ``p0 ** n <= level``."""
    return max(1, math.ceil(math.log(level) / math.log(p0) - 1e-9))


def sign_test(wins: int, losses: int, ties: int = 0, *, margin: float = 0.0,
              level: float = 0.025, left: str = "left", right: str = "right") -> SignTest:
    """Decide ``left > right + margin`` on the decisive battles between the two.

    ``pass`` when ``p_pass <= level`` (the decisive battles show ``left`` winning more often
    than ``p0 = win_probability(margin)``), ``fail`` when ``p_fail <= level`` (they show it
    winning less often), else ``inconclusive``: with a reason that says when too few decisive
    battles make either verdict impossible (``p0 ** n`` and ``(1 - p0) ** n`` both above
    ``level``). Ties carry no evidence of the order and are dropped (the sign test)."""
    from scipy.special import bdtr, bdtrc  # binomial P(X <= k) and P(X > k)

    if not 0 < level < 0.5:
        raise ValueError(f"level {level!r} must be between 0 and 0.5")
    n = wins + losses
    p0 = win_probability(margin)
    p_pass = float(bdtrc(wins - 1, n, p0)) if n and wins else 1.0
    p_fail = float(bdtr(wins, n, p0)) if n else 1.0
    record = f"{left} vs {right} {wins}-{losses}, {ties} tie{'' if ties == 1 else 's'}"
    against = "" if margin == 0 else f" against a win rate of {p0:.3f} (margin {margin:+g})"
    verdict: Verdict = "inconclusive"
    if n == 0:
        reason = (f"no decisive battle: {record}" if ties
                  else f"{left} and {right} never met (the verdict needs their own battles)")
    elif p_pass <= level:
        verdict = "pass"
        reason = f"{record}: one-sided sign test p = {p_pass:.3g}{against} <= {level:.3g}"
    elif p_fail <= level:
        verdict = "fail"
        reason = (f"{record}: the decisive battles favour {right} (one-sided sign test "
                  f"p = {p_fail:.3g}{against} <= {level:.3g})")
    elif p0 ** n > level and (1 - p0) ** n > level:
        need = min(decisive_needed(p0, level), decisive_needed(1 - p0, level))
        reason = (f"too few decisive battles: {record}; a one-sided sign test at level "
                  f"{level:.3g} needs at least {need}{against}")
    else:
        reason = (f"the decisive battles do not decide: {record}, one-sided sign test "
                  f"p = {p_pass:.3g} for ahead, {p_fail:.3g} for behind{against} (level "
                  f"{level:.3g})")
    return SignTest(verdict, wins, losses, ties, p0, p_pass, p_fail, level, reason)


@dataclass(frozen=True)
class GateVerdict:
    """A ranking gate decided by the exact sign test on the decisive battles between its two
    models (:func:`sign_test`); ``difference = r_left - r_right`` and its bootstrap interval
    ``[low, high]`` at ``confidence`` are shown next to it (None without resamples)."""

    expectation: Expectation
    verdict: Verdict
    difference: float
    low: float | None
    high: float | None
    confidence: float
    prob_better: float  # share of resamples with r_left - r_right above the margin
    test: SignTest

    @property
    def reason(self) -> str:
        return self.test.reason


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


def expect(fit: BTFit, expectations: str | Sequence[str], *, level: float | None = None
           ) -> list[GateVerdict]:
    """Decide each expectation ``left > right + margin`` by the exact one-sided sign test on
    the decisive battles between ``left`` and ``right`` (:func:`sign_test`; ties dropped),
    against the win probability at the margin, at one-sided ``level`` (default
    ``(1 - fit.confidence) / 2``, 0.025, the level of the other gates). ``>=`` is decided the
    same way (a discrete test cannot tell the two apart). Only the two models' own battles
    count: a verdict never rests on the ties, nor on the Bradley-Terry fit's bootstrap, whose
    interval of ``r_left - r_right`` is reported for display."""
    items = [expectations] if isinstance(expectations, str) else list(expectations)
    level = (1 - fit.confidence) / 2 if level is None else level
    out = []
    for text in items:
        e = parse_expectation(text)
        missing = [m for m in (e.left, e.right) if m not in fit.models]
        if missing:
            raise UsageError(f"the ranking expectation {text!r} names {missing[0]!r}, which is "
                             f"not rated", fix=f"use one of the models {list(fit.models)}")
        diff = fit.ratings[e.left] - fit.ratings[e.right]
        test = sign_test(*fit.record(e.left, e.right), margin=e.margin, level=level,
                         left=e.left, right=e.right)
        low = high = None
        prob = 0.5
        if fit.n_boot and len(fit.samples):
            d = fit.difference_samples(e.left, e.right)
            low, high = (float(x) for x in np.quantile(d, [(1 - fit.confidence) / 2,
                                                          (1 + fit.confidence) / 2]))
            prob = float(np.mean(d > e.margin))
        out.append(GateVerdict(e, test.verdict, diff, low, high, fit.confidence, prob, test))
    return out


def ranking_signal(decisive: Sequence[int], battles: int, *, flips: int = 0,
                   flip_pairs: int = 0, level: float = 0.025) -> str | None:
    """Why the battles cannot rank the models (None when they can).

    * Position flips: ``flip_pairs`` battles the judge did not call a tie in both orders,
      ``flips`` of them with a pick that changed when the answer order was swapped. A judge
      whose pick does not depend on the answers (always the first, a coin flip, any mix)
      flips at least half of these; no signal unless ``flips`` is significantly below half
      (one-sided exact binomial test at ``level``).
    * Decisive battles: ``decisive`` holds each pair's decisive battles; no signal when no
      pair has the :func:`decisive_needed` battles a sign test needs to separate it at
      ``level`` (6 at 0.025)."""
    from scipy.special import bdtr

    if flip_pairs:
        p = float(bdtr(flips, flip_pairs, 0.5))
        if p > level:
            return (f"the judge's pick changed with the answer order in {flips} of {flip_pairs} "
                    f"battles it did not tie both ways ({flips / flip_pairs:.0%}); a judge that "
                    f"ignores the answers flips at least half, and this is not significantly "
                    f"fewer (one-sided p = {p:.3g} > {level:.3g})")
    need = decisive_needed(0.5, level)
    if not decisive or max(decisive) < need:
        total = sum(decisive)
        share = f" ({total / battles:.0%})" if battles else ""
        return (f"{total} of {battles} battles decisive{share}: no pair has the {need} decisive "
                f"battles a sign test needs to order it at level {level:.3g}")
    return None
