"""Ratings from pairwise battles: online Elo and Bradley-Terry with bootstrap intervals.

Pure functions over plain sequences. A *battle* is ``(model_a, model_b, outcome)`` or
``(model_a, model_b, outcome, case)`` (or a :class:`Battle`), ``outcome`` being ``"a"`` (A
won), ``"b"`` (B won) or ``"tie"``.

* :func:`online_elo`: Elo (1978) as in Huyen, *AI Engineering* (2025), ch. 3: after each
  match the expected score ``E_a = 1 / (1 + 10 ** ((R_b - R_a) / 400))`` moves the ratings
  by ``R_a += K (S_a - E_a)``, ``R_b -= K (S_a - E_a)`` with ``S_a`` 1, 0.5 or 0. The result
  depends on the order of the matches (Chatbot Arena's reason to move to Bradley-Terry,
  Chiang et al. 2024, arXiv:2403.04132); by option it is averaged over shuffled orders.
* :func:`bradley_terry`: the Bradley & Terry (1952) model ``P(i beats j) = s(t_i - t_j)``
  (``s`` the logistic function) fitted by maximum likelihood, a tie counted as half a win
  for each side (as Chatbot Arena counts them), reported on the Elo scale
  ``400 log10(strength)`` = ``t * 400 / ln 10``, anchored at the mean or at a named model,
  with percentile bootstrap intervals over battles (resampled with replacement).

:func:`tally` counts each pair's wins and ties once, for the fit here and for the win rates
and sign tests of :mod:`pytest_aie.stats.pairs`.

What to judge next, when to stop, and the ranking gates (``"candidate > base"``) are in
:mod:`pytest_aie.stats.ranking`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import numpy.typing as npt

from pytest_aie.errors import UsageError

__all__ = ["DEFAULT_RIDGE", "ELO_SCALE", "BTFit", "Battle", "BattleLike", "EloResult", "EloStep",
           "as_battles", "bradley_terry", "model_order", "online_elo", "tally"]

Outcome = Literal["a", "b", "tie"]
OUTCOMES = ("a", "b", "tie")
SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}  # S_a, the score of model A
#: Elo points per natural-log unit of Bradley-Terry strength: 400 / ln 10 (about 173.7)
ELO_SCALE = 400.0 / math.log(10.0)
#: the ridge prior of :func:`bradley_terry`: an independent N(0, 1/ridge) prior on each
#: natural-log strength (sd 10, i.e. about 1,737 Elo points: it matters only where the
#: maximum-likelihood estimate does not exist)
DEFAULT_RIDGE = 0.01
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Battle:
    """One comparison: ``outcome`` is ``"a"`` (``model_a`` won), ``"b"`` or ``"tie"``."""

    model_a: str
    model_b: str
    outcome: Outcome
    case: str | None = None


BattleLike = Battle | Sequence[Any]


def as_battles(battles: Iterable[BattleLike]) -> list[Battle]:
    """Battles from :class:`Battle` objects or ``(model_a, model_b, outcome[, case])`` tuples
    (a tuple's outcome in any case: the pairwise judge's ``"A"``/``"B"``/``"tie"`` read as
    ``"a"``/``"b"``/``"tie"``); ``ValueError`` for an unknown outcome or a model compared with
    itself."""
    out = []
    for i, b in enumerate(battles):
        if not isinstance(b, Battle):
            if len(b) not in (3, 4):
                raise ValueError(f"battle {i}: expected (model_a, model_b, outcome[, case]), got {b!r}")
            case = None if len(b) == 3 or b[3] is None else str(b[3])
            outcome: Any = b[2].lower() if isinstance(b[2], str) else b[2]
            b = Battle(str(b[0]), str(b[1]), outcome, case)
        if b.outcome not in OUTCOMES:
            raise ValueError(f"battle {i}: outcome {b.outcome!r} is not one of {OUTCOMES}")
        if b.model_a == b.model_b:
            raise ValueError(f"battle {i}: model {b.model_a!r} compared with itself")
        out.append(b)
    return out


def model_order(battles: Sequence[Battle], models: Sequence[str] | None) -> list[str]:
    """``models`` (deduplicated), or the models in the order the battles first name them;
    ``ValueError`` for a battle of a model not in ``models``."""
    names = list(dict.fromkeys(models or ()))
    seen = set(names)
    for b in battles:
        for m in (b.model_a, b.model_b):
            if m not in seen:
                if models is not None:
                    raise ValueError(f"battle between {b.model_a!r} and {b.model_b!r}: "
                                     f"{m!r} is not one of the models {names}")
                seen.add(m)
                names.append(m)
    return names


def tally(battles: Sequence[Battle], names: Sequence[str]) -> npt.NDArray[np.int64]:
    """``counts[i, j]`` = (wins of ``names[i]`` over ``names[j]``, ties between the two): the
    one count the ratings, the win rates and the sign tests are all read from."""
    index = {m: i for i, m in enumerate(names)}
    counts = np.zeros((len(names), len(names), 2), np.int64)
    kinds = Counter((b.model_a, b.model_b, b.outcome) for b in battles)  # few kinds, many battles
    for (a, b, outcome), k in kinds.items():
        i, j = index[a], index[b]
        if outcome == "tie":
            counts[i, j, 1] += k
            counts[j, i, 1] += k
        else:
            win, lose = (i, j) if outcome == "a" else (j, i)
            counts[win, lose, 0] += k
    return counts


# --------------------------------------------------------------------------- online Elo

@dataclass(frozen=True)
class EloStep:
    """One match of :func:`online_elo`, in the order played: the ratings before and after."""

    model_a: str
    model_b: str
    outcome: Outcome
    expected_a: float  # E_a = 1 / (1 + 10 ** ((R_b - R_a) / 400)) before the match
    before_a: float
    before_b: float
    after_a: float
    after_b: float


@dataclass(frozen=True)
class EloResult:
    """Online Elo ratings. With ``shuffles`` > 0, ``ratings`` is the mean of the final
    ratings over that many random orders and ``order_sd`` their standard deviation;
    ``history`` is always the matches in the order given."""

    ratings: dict[str, float]
    history: tuple[EloStep, ...]
    k: float
    initial: float
    shuffles: int = 0
    order_sd: dict[str, float] = field(default_factory=dict)

    def ranking(self) -> list[str]:
        return sorted(self.ratings, key=lambda m: (-self.ratings[m], m))


def _expected(ra: Any, rb: Any) -> Any:
    return 1.0 / (1.0 + 10.0 ** ((rb - ra) / 400.0))


def online_elo(battles: Iterable[BattleLike], *, k: float = 32.0, initial: float = 1000.0,
               models: Sequence[str] | None = None, shuffles: int = 0,
               seed: int = 0) -> EloResult:
    """Online Elo over ``battles`` in order: every model starts at ``initial``; each match
    sets ``E_a = 1 / (1 + 10 ** ((R_b - R_a) / 400))`` and ``R_a += K (S_a - E_a)``,
    ``R_b += K ((1 - S_a) - (1 - E_a))``, ``S_a`` = 1 (A won), 0.5 (tie), 0 (B won).

    ``shuffles=N`` also plays the battles in ``N`` random orders (``numpy`` generator seeded
    with ``seed``) and reports the mean final ratings and their spread over orders."""
    bs = as_battles(battles)
    names = model_order(bs, models)
    rating = {m: float(initial) for m in names}
    history = []
    for b in bs:
        ra, rb = rating[b.model_a], rating[b.model_b]
        e = _expected(ra, rb)
        delta = k * (SCORE[b.outcome] - e)
        rating[b.model_a], rating[b.model_b] = ra + delta, rb - delta
        history.append(EloStep(b.model_a, b.model_b, b.outcome, e, ra, rb, ra + delta, rb - delta))
    if shuffles <= 0 or not bs:
        return EloResult(rating, tuple(history), k, initial)
    index = {m: i for i, m in enumerate(names)}
    ia = np.array([index[b.model_a] for b in bs])
    ib = np.array([index[b.model_b] for b in bs])
    score = np.array([SCORE[b.outcome] for b in bs])
    rng = np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(len(bs)), (shuffles, 1)), axis=1)
    r = np.full((shuffles, len(names)), float(initial))
    rows = np.arange(shuffles)
    for t in range(len(bs)):  # every order's t-th match at once
        m = order[:, t]
        a, b = ia[m], ib[m]
        delta = k * (score[m] - _expected(r[rows, a], r[rows, b]))
        r[rows, a] += delta
        r[rows, b] -= delta
    mean, sd = r.mean(0), r.std(0, ddof=1) if shuffles > 1 else np.zeros(len(names))
    return EloResult({m: float(mean[i]) for i, m in enumerate(names)}, tuple(history), k,
                     initial, shuffles, {m: float(sd[i]) for i, m in enumerate(names)})


# --------------------------------------------------------------------------- Bradley-Terry

def _categories(bs: Sequence[Battle], index: dict[str, int], n: int
                ) -> tuple[Floats, Floats]:
    """The distinct (pair, outcome) kinds of battle: their counts, and the wins matrix
    (flattened, ``W[i, j]`` = wins of i over j, a tie half a win each) one of each adds."""
    kinds: dict[tuple[int, int, str], int] = {}
    for b in bs:
        key = (index[b.model_a], index[b.model_b], b.outcome)
        kinds[key] = kinds.get(key, 0) + 1
    counts = np.array(list(kinds.values()), dtype=float)
    effect = np.zeros((len(kinds), n * n))
    for row, (i, j, outcome) in enumerate(kinds):
        effect[row, i * n + j] += SCORE[outcome]
        effect[row, j * n + i] += 1.0 - SCORE[outcome]
    return counts, effect


def _objective(theta: Floats, w: Floats, ridge: float) -> tuple[Floats, Floats, Floats]:
    """Penalised log-likelihood of strengths ``theta`` (..., n) given wins ``w`` (..., n, n):
    ``sum W_ij log s(t_i - t_j) - ridge/2 |t|^2 - (sum t)^2 / (2n)``, its gradient and Hessian.
    The last term fixes the level (the likelihood ignores it) at mean 0 and changes nothing
    else; with ``ridge > 0`` the optimum has mean 0 anyway."""
    n = theta.shape[-1]
    d = theta[..., :, None] - theta[..., None, :]
    p = 1.0 / (1.0 + np.exp(-d))
    nn = w + np.swapaxes(w, -1, -2)
    total = theta.sum(-1, keepdims=True)
    value = -(w * np.logaddexp(0.0, -d)).sum((-1, -2)) - 0.5 * ridge * (theta ** 2).sum(-1) \
        - 0.5 * total[..., 0] ** 2 / n
    grad = (w - nn * p).sum(-1) - ridge * theta - total / n
    v = nn * p * (1.0 - p)
    hess = v - v.sum(-1)[..., :, None] * np.eye(n) - ridge * np.eye(n) - 1.0 / n
    return value, grad, hess


def _newton(w: Floats, ridge: float, iterations: int = 100) -> Floats:
    """Maximise :func:`_objective` for a stack of wins matrices (b, n, n) at once: Newton's
    method with step halving (the objective is concave). Used for the bootstrap."""
    theta = np.zeros(w.shape[:2])
    value, grad, hess = _objective(theta, w, ridge)
    for _ in range(iterations):
        step = -np.linalg.solve(hess, grad[..., None])[..., 0] if ridge > 0 else \
            -(np.linalg.pinv(hess) @ grad[..., None])[..., 0]
        if np.max(np.abs(step)) < 1e-10:
            break
        size = np.ones(len(theta))
        for _ in range(40):
            new = theta + size[:, None] * step
            new_value, new_grad, new_hess = _objective(new, w, ridge)
            worse = new_value < value - 1e-12 * np.abs(value)
            if not worse.any():
                break
            size[worse] *= 0.5
        theta, value, grad, hess = new, new_value, new_grad, new_hess
    return theta


def _fit_scipy(w: Floats, ridge: float) -> Floats:
    """The maximum-(penalised-)likelihood strengths of one wins matrix, by
    ``scipy.optimize.minimize`` (trust-region Newton with the exact Hessian)."""
    from scipy.optimize import minimize

    n = w.shape[0]

    def neg(theta: Floats) -> tuple[float, Floats]:
        value, grad, _ = _objective(theta, w, ridge)
        return -float(value), -grad

    def neg_hess(theta: Floats) -> Floats:
        return -_objective(theta, w, ridge)[2]

    res = minimize(neg, np.zeros(n), jac=True, hess=neg_hess, method="trust-exact",
                   options={"gtol": 1e-10, "maxiter": 500})
    return np.asarray(res.x, dtype=float)


@dataclass(frozen=True)
class BTFit:
    """A Bradley-Terry fit on the Elo scale: ``ratings[m] = base + 400/ln 10 * (t_m - ref)``,
    ``ref`` the mean strength or the ``anchor`` model's.

    ``intervals``: percentile bootstrap intervals at ``confidence`` (empty when
    ``n_boot == 0``); ``samples``: the ratings of every bootstrap resample, one row per
    resample, columns in the order of ``models``. ``mle_exists`` is False when the models
    split into groups one of which never lost (nor tied) against another (Ford 1957): the
    plain maximum-likelihood gaps between them are infinite and the ridge prior sets them;
    ``unbounded`` names the models that won, or lost, every battle they played (the usual
    cause), or played none."""

    models: tuple[str, ...]
    ratings: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    battles: dict[str, int]
    n_battles: int
    confidence: float
    n_boot: int
    base: float
    anchor: str | None
    ridge: float
    mle_exists: bool
    unbounded: tuple[str, ...]
    samples: Floats = field(repr=False, compare=False)
    #: ``outcomes[i, j]`` = (wins of model i over model j, ties between them), in the order
    #: of ``models``: the decisive battles :func:`~pytest_aie.stats.ranking.expect` tests
    outcomes: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0, 2), np.int64),
                                            repr=False, compare=False)

    def ranking(self) -> list[str]:
        """The models, best first (ties by name)."""
        return sorted(self.models, key=lambda m: (-self.ratings[m], m))

    def difference_samples(self, a: str, b: str) -> Floats:
        """``r_a - r_b`` in every bootstrap resample."""
        i, j = self.models.index(a), self.models.index(b)
        return np.asarray(self.samples[:, i] - self.samples[:, j])

    def prob_better(self, a: str, b: str) -> float:
        """Share of bootstrap resamples with ``r_a > r_b`` (ties count half); 0.5 without."""
        if self.n_boot == 0:
            return 0.5
        d = self.difference_samples(a, b)
        return float(np.mean(d > 0) + 0.5 * np.mean(d == 0))

    def record(self, a: str, b: str) -> tuple[int, int, int]:
        """``a``'s wins, losses and ties against ``b`` (battles between the two only)."""
        if self.outcomes.shape[0] != len(self.models):
            return 0, 0, 0
        i, j = self.models.index(a), self.models.index(b)
        return (int(self.outcomes[i, j, 0]), int(self.outcomes[j, i, 0]),
                int(self.outcomes[i, j, 1]))

    def to_dict(self) -> dict[str, Any]:
        """Everything but the samples, JSON-ready, ranked best first."""
        return {"ranking": [{"model": m, "rating": self.ratings[m],
                             "low": self.intervals[m][0] if self.intervals else None,
                             "high": self.intervals[m][1] if self.intervals else None,
                             "battles": self.battles[m], "unbounded": m in self.unbounded}
                            for m in self.ranking()],
                "n_battles": self.n_battles, "confidence": self.confidence,
                "n_boot": self.n_boot, "base": self.base, "anchor": self.anchor,
                "ridge": self.ridge, "mle_exists": self.mle_exists}


def bradley_terry(battles: Iterable[BattleLike], *, models: Sequence[str] | None = None,
                  anchor: str | None = None, base: float = 1000.0,
                  ridge: float = DEFAULT_RIDGE, n_boot: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> BTFit:
    """Bradley-Terry ratings of ``battles`` on the Elo scale, with bootstrap intervals.

    Maximises ``sum_ij W_ij log s(t_i - t_j) - ridge/2 sum_i t_i^2`` (``W_ij`` the wins of i
    over j, a tie half a win each; ``s`` the logistic function) with
    ``scipy.optimize.minimize``; ``ridge=0`` is the plain maximum likelihood (as Chatbot
    Arena's unpenalised logistic regression), which is infinite where ``mle_exists`` is
    False. Ratings are ``base + 400/ln 10 * (t - mean t)``, or ``- t_anchor`` with an
    ``anchor`` model (which then sits at ``base`` exactly).

    Bootstrap: ``n_boot`` resamples of the battles with replacement (numpy generator seeded
    with ``seed``; drawn as multinomial counts of the distinct kinds of battle, which is the
    same distribution), each refitted by Newton's method; the intervals are the
    ``(1 -+ confidence)/2`` percentiles of each model's rating."""
    from scipy.sparse.csgraph import connected_components

    bs = as_battles(battles)
    names = model_order(bs, models)
    if anchor is not None and anchor not in names:
        raise UsageError(f"anchor model {anchor!r} is not one of the rated models {names}",
                         fix="name one of them, or no anchor (the mean is then at base)")
    if ridge < 0 or not 0 < confidence < 1 or n_boot < 0:
        raise ValueError("need ridge >= 0, 0 < confidence < 1 and n_boot >= 0")
    n = len(names)
    index = {m: i for i, m in enumerate(names)}
    outcomes = tally(bs, names)
    wins, ties = outcomes[..., 0], outcomes[..., 1]
    w = wins + ties / 2.0  # a tie is half a win for each side
    played = {m: int(wins[i].sum() + wins[:, i].sum() + ties[i].sum()) for i, m in enumerate(names)}
    ref = index[anchor] if anchor is not None else None

    def elo(theta: Floats) -> Floats:
        level = theta[..., [ref]] if ref is not None else theta.mean(-1, keepdims=True)
        return np.asarray(base + ELO_SCALE * (theta - level))

    point = elo(_fit_scipy(w, ridge)) if n else np.zeros(0)
    samples = np.zeros((0, n))
    if n_boot and bs and n:
        counts, effect = _categories(bs, index, n)
        draws = np.random.default_rng(seed).multinomial(len(bs), counts / counts.sum(), n_boot)
        samples = elo(_newton((draws @ effect).reshape(n_boot, n, n), ridge))
    intervals = {}
    if len(samples):
        q = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
        intervals = {m: (float(q[0, i]), float(q[1, i])) for i, m in enumerate(names)}
    components = connected_components(w > 0, directed=True, connection="strong")[0] if n else 0
    won, lost = w.sum(1), w.sum(0)
    unbounded = tuple(m for i, m in enumerate(names) if won[i] == 0 or lost[i] == 0)
    return BTFit(tuple(names), {m: float(point[i]) for i, m in enumerate(names)}, intervals,
                 played, len(bs), confidence, n_boot if bs else 0, base, anchor, ridge,
                 components <= 1, unbounded, samples, outcomes)

