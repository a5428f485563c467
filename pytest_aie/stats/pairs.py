"""Pairs of models: win rates and intransitive cycles, read from the battles' one tally.

* :func:`win_matrix`: wins, losses, ties and the win rate ``(wins + ties/2) / battles`` of
  every ordered pair that met.
* :func:`preferences`, :func:`find_cycles`: each pair's two-sided exact binomial (sign) test
  and the cycles A > B > C > A whose every step is significant.

The ratings themselves (online Elo, Bradley-Terry) are in :mod:`pytest_aie.stats.ratings`;
the ranking gates in :mod:`pytest_aie.stats.ranking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

from pytest_aie.errors import UsageError
from pytest_aie.stats.ratings import BattleLike, as_battles, model_order, tally

__all__ = ["Cycle", "PairRecord", "Preference", "find_cycles", "preferences", "win_matrix"]

# --------------------------------------------------------------------------- win rates

@dataclass(frozen=True)
class PairRecord:
    """``model``'s record against ``opponent``: ``win_rate = (wins + ties/2) / battles``."""

    model: str
    opponent: str
    wins: int
    losses: int
    ties: int
    battles: int
    win_rate: float


def win_matrix(battles: Iterable[BattleLike], *, models: Sequence[str] | None = None
               ) -> dict[tuple[str, str], PairRecord]:
    """Every ordered pair ``(model, opponent)`` that met (both directions), with counts."""
    bs = as_battles(battles)
    names = model_order(bs, models)
    counts = tally(bs, names)
    out = {}
    for i, me in enumerate(names):
        for j, other in enumerate(names):
            w, lo, t = int(counts[i, j, 0]), int(counts[j, i, 0]), int(counts[i, j, 1])
            if w + lo + t:
                out[(me, other)] = PairRecord(me, other, w, lo, t, w + lo + t, (w + t / 2) / (w + lo + t))
    return out


# --------------------------------------------------------------------------- intransitivity

@dataclass(frozen=True)
class Preference:
    """A pair's sign test: ``winner`` won more of their decisive battles (ties are dropped,
    as in the sign test) than ``loser``; ``p_value`` is the two-sided exact binomial test
    of ``wins`` in ``wins + losses`` against 1/2 (``scipy.stats.binomtest``),
    ``p_adjusted`` its Holm adjustment over all pairs tested (or the same without)."""

    winner: str
    loser: str
    wins: int
    losses: int
    ties: int
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class Cycle:
    """``models[0]`` beats ``models[1]`` ... and the last beats the first, each step
    significant; ``steps[i]`` is the test of ``models[i]`` over the next."""

    models: tuple[str, ...]
    steps: tuple[Preference, ...]


def preferences(battles: Iterable[BattleLike], *, alpha: float = 0.05,
                adjust: Literal["holm"] | None = "holm",
                models: Sequence[str] | None = None) -> list[Preference]:
    """The sign test of every pair with a decisive battle; ``significant`` when the (Holm
    adjusted, by default) p-value is below ``alpha``. A pair with as many wins as losses
    has no winner and is left out (it cannot be significant)."""
    from scipy.stats import binomtest

    from pytest_aie.stats.multiple import holm

    if adjust not in ("holm", None):
        raise UsageError(f"unknown adjustment {adjust!r}", fix="use adjust='holm' or None")
    records = win_matrix(battles, models=models)
    tested = [r for r in records.values() if r.wins > r.losses]
    ps = [float(binomtest(r.wins, r.wins + r.losses, 0.5).pvalue) for r in tested]
    adjusted = holm(ps) if adjust == "holm" else ps
    return [Preference(r.model, r.opponent, r.wins, r.losses, r.ties, p, q, q < alpha)
            for r, p, q in zip(tested, ps, adjusted)]


def find_cycles(battles: Iterable[BattleLike], *, alpha: float = 0.05,
                adjust: Literal["holm"] | None = "holm", models: Sequence[str] | None = None,
                max_length: int | None = None, limit: int = 100) -> list[Cycle]:
    """The elementary cycles of the significant preferences (:func:`preferences`), shortest
    first, each listed once starting from its first model in the models' order; at most
    ``limit`` of them, of at most ``max_length`` models."""
    bs = as_battles(battles)
    names = model_order(bs, models)
    order = {m: i for i, m in enumerate(names)}
    edges: dict[str, list[Preference]] = {}
    for p in preferences(bs, alpha=alpha, adjust=adjust, models=names):
        if p.significant:
            edges.setdefault(p.winner, []).append(p)
    longest = max_length or len(names)
    found: list[Cycle] = []

    def walk(start: str, path: list[Preference]) -> None:
        here = path[-1].loser
        for p in edges.get(here, ()):
            if p.loser == start:
                steps = path + [p]
                found.append(Cycle(tuple(s.winner for s in steps), tuple(steps)))
            elif order[p.loser] > order[start] and len(path) + 1 < longest and \
                    p.loser not in {s.winner for s in path}:
                walk(start, path + [p])

    for start in names:
        for p in edges.get(start, ()):
            if order[p.loser] > order[start]:
                walk(start, [p])
    found.sort(key=lambda c: (len(c.models), [order[m] for m in c.models]))
    return found[:limit]
