"""Agreement statistics for AI judges: Cohen's kappa (with its large-sample interval) against
human labels, Krippendorff's alpha between several judges, detection rates, length bias, and
the position-flip rate of pairwise judgments.

Pure functions over plain sequences. Labels may be numbers (an ordinal 1-5 scale) or strings
(``pass``/``fail``, ``A``/``B``/``tie``); ``categories`` gives the order of an ordinal scale
(and the categories nobody used). ``None`` marks a missing label: dropped pairwise and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["FlipRate", "Kappa", "LengthBias", "Rates", "cohen_kappa", "consistent_winner",
           "detection_rates", "flip_rate", "krippendorff_alpha", "length_bias"]


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa of two raters; ``kappa`` is None (with ``reason``) where undefined."""

    kappa: float | None
    se: float | None
    low: float | None
    high: float | None
    n: int
    weights: str | None
    observed: float | None  # (weighted) observed agreement
    expected: float | None  # (weighted) agreement expected by chance
    dropped: int = 0  # pairs with a missing label
    reason: str | None = None


def _codes(a: Sequence[Any], b: Sequence[Any], categories: Sequence[Any] | None
           ) -> tuple[list[int], list[int], list[Any], int]:
    if len(a) != len(b):
        raise ValueError(f"the two raters labelled {len(a)} and {len(b)} items")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    dropped = len(a) - len(pairs)
    if categories is None:
        seen = {v for p in pairs for v in p}
        cats = sorted(seen, key=lambda v: (isinstance(v, str), v))
    else:
        cats = list(categories)
    index = {c: i for i, c in enumerate(cats)}
    unknown = [v for p in pairs for v in p if v not in index]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not one of the categories {cats}")
    return [index[x] for x, _ in pairs], [index[y] for _, y in pairs], cats, dropped


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], *, categories: Sequence[Any] | None = None,
                weights: str | None = None, confidence: float = 0.95) -> Kappa:
    """Cohen's (1960) kappa of raters ``a`` and ``b``, weighted (Cohen 1968) with ``"linear"``
    or ``"quadratic"`` disagreement weights over the order of ``categories``, and its
    large-sample standard error of Fleiss, Cohen & Everitt (1969), the one statsmodels'
    ``cohens_kappa`` reports; the interval is kappa +- z * se."""
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    x, y, cats, dropped = _codes(a, b, categories)
    n, k = len(x), len(cats)
    if n < 2 or k < 2:
        return Kappa(None, None, None, None, n, weights, None, None, dropped,
                     f"{n} labelled pair(s) over {k} category(ies): too few to compute kappa")
    table = np.zeros((k, k))
    np.add.at(table, (x, y), 1)
    p = table / n
    row, col = p.sum(1), p.sum(0)
    i, j = np.indices((k, k))
    if weights is None:
        w = (i == j).astype(float)  # agreement weights
    else:
        d = np.abs(i - j) / (k - 1)
        w = 1.0 - (d if weights == "linear" else d * d)
    po = float((w * p).sum())
    pe = float((w * np.outer(row, col)).sum())
    if math.isclose(pe, 1.0):
        return Kappa(None, None, None, None, n, weights, po, pe, dropped,
                     "every label is in one category: chance agreement is 1, kappa undefined")
    kappa = (po - pe) / (1 - pe)
    w_row = (w * col[None, :]).sum(1)  # mean weight of row i against the column margins
    w_col = (w * row[:, None]).sum(0)
    var = ((p * (w - (w_row[:, None] + w_col[None, :]) * (1 - kappa)) ** 2).sum()
           - (kappa - pe * (1 - kappa)) ** 2) / ((1 - pe) ** 2 * n)
    se = math.sqrt(max(float(var), 0.0))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return Kappa(float(kappa), se, float(kappa) - z * se, float(kappa) + z * se, n, weights,
                 po, pe, dropped)


def krippendorff_alpha(ratings: Sequence[Sequence[Any]], *,
                       level: Literal["nominal", "ordinal", "interval"] = "nominal",
                       categories: Sequence[Any] | None = None) -> float | None:
    """Krippendorff's alpha of several raters (rows) over the same items (columns), ``None``
    for a missing rating, from the ``krippendorff`` package. Labels are coded by their order
    in ``categories`` (numbers keep their value on an interval scale). None when alpha is
    undefined (fewer than two pairable ratings, or no variation at all)."""
    import krippendorff

    flat = [v for r in ratings for v in r if v is not None]
    if categories is None:
        categories = sorted(set(flat), key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in categories)
    code = {c: (float(c) if numeric else float(i)) for i, c in enumerate(categories)}
    unknown = [v for v in flat if v not in code]
    if unknown:
        raise ValueError(f"rating {unknown[0]!r} is not one of the categories {list(categories)}")
    data = np.array([[np.nan if v is None else code[v] for v in r] for r in ratings], float)
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum()
    if data.shape[0] < 2 or pairable < 1 or len(set(flat)) < 2:
        return None
    domain = sorted(set(code.values()))
    value = krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                               value_domain=domain)
    return None if not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Rates:
    """A judge's detection rates against human labels, each with a Wilson interval."""

    tpr: float | None  # of the cases people call positive, the share the judge does
    tpr_low: float | None
    tpr_high: float | None
    tnr: float | None  # of the cases people call negative, the share the judge does
    tnr_low: float | None
    tnr_high: float | None
    positives: int
    negatives: int


def detection_rates(judge: Sequence[Any], human: Sequence[Any], *, positive: Any = "pass",
                    confidence: float = 0.95) -> Rates:
    """True-positive and true-negative rates of ``judge`` with ``human`` as the truth."""
    from pytest_aie.stats.intervals import pass_rate_interval

    pairs = [(j, h) for j, h in zip(judge, human) if j is not None and h is not None]
    pos = [j == positive for j, h in pairs if h == positive]
    neg = [j != positive for j, h in pairs if h != positive]

    def rate(hits: list[bool]) -> tuple[float | None, float | None, float | None]:
        if not hits:
            return None, None, None
        ci = pass_rate_interval(sum(hits), len(hits), confidence)
        return ci.estimate, ci.low, ci.high

    return Rates(*rate(pos), *rate(neg), positives=len(pos), negatives=len(neg))


@dataclass(frozen=True)
class LengthBias:
    """Spearman's rank correlation between scores and answer lengths."""

    rho: float | None
    p_value: float | None
    n: int
    reason: str | None = None


def length_bias(scores: Sequence[float], lengths: Sequence[int]) -> LengthBias:
    """Does the judge score longer answers higher? ``scipy.stats.spearmanr`` of score and
    length; None (with the reason) under 3 pairs or when either is constant."""
    n = len(scores)
    if n != len(lengths):
        raise ValueError(f"{n} scores but {len(lengths)} lengths")
    if n < 3:
        return LengthBias(None, None, n, f"{n} scored answers: too few for a correlation")
    if len(set(scores)) < 2 or len(set(lengths)) < 2:
        what = "score" if len(set(scores)) < 2 else "answer length"
        return LengthBias(None, None, n, f"every answer has the same {what}")
    from scipy import stats

    res = stats.spearmanr(scores, lengths)
    return LengthBias(float(res.statistic), float(res.pvalue), n)


@dataclass(frozen=True)
class FlipRate:
    """How often a pairwise judge's winner changes when the answers swap places."""

    flip_rate: float | None
    low: float | None
    high: float | None
    n: int  # pairs judged in both orders
    flips: int
    #: of the non-tie picks in both orders, the share that went to the answer shown first
    first_position_rate: float | None


def consistent_winner(first: str, second: str) -> str:
    """The verdict of one pair judged in both orders (both in the original labels): the same
    winner both times, else a tie."""
    return first if first == second else "tie"


def flip_rate(first_order: Sequence[str], swapped_order: Sequence[str], *,
              confidence: float = 0.95) -> FlipRate:
    """``first_order[i]``: the winner of pair ``i`` shown as (A, B); ``swapped_order[i]``: its
    winner shown as (B, A), written back in the original labels, so a consistent judge gives
    the same label twice. A judge that always answers "A" flips on every pair (without true
    ties) and picks the first-shown answer every time."""
    from pytest_aie.stats.intervals import pass_rate_interval

    if len(first_order) != len(swapped_order):
        raise ValueError(f"{len(first_order)} first-order and {len(swapped_order)} swapped verdicts")
    n = len(first_order)
    if n == 0:
        return FlipRate(None, None, None, 0, 0, None)
    flips = sum(1 for a, b in zip(first_order, swapped_order) if a != b)
    ci = pass_rate_interval(flips, n, confidence)
    # shown first: "A" in the first order; in the swapped order the original B was shown first
    picks = [w == "A" for w in first_order if w in ("A", "B")] + \
            [w == "B" for w in swapped_order if w in ("A", "B")]
    first = sum(picks) / len(picks) if picks else None
    return FlipRate(flips / n, ci.low, ci.high, n, flips, first)
