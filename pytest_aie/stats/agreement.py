"""Agreement statistics for AI judges: how far a judge agrees with people, how far several
judges agree with each other, and the biases a judge can have.

* :func:`cohen_kappa`: two raters (a judge and human labels), unweighted or weighted, with
  the large-sample interval of Fleiss, Cohen & Everitt (1969);
* :func:`krippendorff_alpha` (the ``krippendorff`` package) and :func:`fleiss_kappa`:
  several raters over the same cases;
* :func:`detection_rates`: a pass/fail judge's true-positive and true-negative rates against
  human labels, with Wilson intervals;
* :func:`length_bias`: Spearman's rank correlation of score and answer length;
* :func:`flip_rate` and :func:`consistent_winner`: pairwise judgments made in both orders.

Pure functions over plain sequences. Labels may be numbers (an ordinal 1-5 scale) or strings
(``pass``/``fail``, ``A``/``B``/``tie``); ``categories`` gives the order of an ordinal scale
and the categories nobody used. ``None`` (or a float NaN) marks a missing label: dropped
(pairwise for two raters) and counted. A statistic that is undefined on the data (too few
cases, no variation) is ``None`` with a ``reason``, never a made-up value. Inputs that do not
fit together (lengths, unknown labels) raise :class:`ValueError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal, Sequence, cast

import numpy as np

from pytest_aie.stats.intervals import _check_confidence, pass_rate_interval

__all__ = ["Alpha", "DetectionRates", "FleissKappa", "FlipRate", "Kappa", "LengthBias",
           "cohen_kappa", "consistent_winner", "detection_rates", "fleiss_kappa", "flip_rate",
           "krippendorff_alpha", "length_bias"]

KappaWeights = Literal["linear", "quadratic"]
AlphaLevel = Literal["nominal", "ordinal", "interval", "ratio"]
PREFERENCES = ("A", "B", "tie")


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return asdict(cast(Any, self))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _scale(labels: Sequence[Any], categories: Sequence[Any] | None) -> list[Any]:
    """The categories in order: as given, or the labels seen (numbers ascending, then strings
    in alphabetical order; first-seen order where they cannot be compared)."""
    if categories is not None:
        cats = list(categories)
        if len(set(cats)) != len(cats):
            raise ValueError(f"categories {cats} name a category twice")
    else:
        cats = list(dict.fromkeys(labels))
        try:
            cats.sort(key=lambda v: (isinstance(v, str), v))
        except TypeError:
            pass
    unknown = [v for v in labels if v not in cats]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not one of the categories {cats}")
    return cats


# -- two raters -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kappa(_Result):
    """Cohen's kappa of two raters. ``kappa``, ``se``, ``low`` and ``high`` are None (with
    ``reason``) where kappa is undefined. The interval is not clipped to [-1, 1]."""

    kappa: float | None
    se: float | None  # large-sample standard error (Fleiss, Cohen & Everitt 1969)
    low: float | None
    high: float | None
    n: int  # pairs with both labels
    weights: KappaWeights | None
    observed: float | None  # (weighted) observed agreement p_o
    expected: float | None  # (weighted) agreement expected by chance p_e
    dropped: int  # pairs with a missing label
    confidence: float
    reason: str | None = None


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], *, categories: Sequence[Any] | None = None,
                weights: KappaWeights | None = None, confidence: float = 0.95) -> Kappa:
    """Cohen's kappa of raters ``a`` and ``b`` (say, a judge and human labels) on the same cases.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o = sum w_ij p_ij`` and
    ``p_e = sum w_ij p_i. p_.j`` over the table of joint label proportions ``p_ij`` (Cohen 1960).
    Unweighted, ``w`` is the identity; weighted (Cohen 1968), ``w_ij = 1 - |i - j| / (k - 1)``
    (``"linear"``) or ``1 - (i - j)^2 / (k - 1)^2`` (``"quadratic"``), where ``i`` and ``j`` are
    positions in ``categories``: pass the whole scale, so that unused points count in the
    distances (the convention of scikit-learn's ``cohen_kappa_score`` and statsmodels'
    ``cohens_kappa``; the weights' scale does not change kappa).

    The standard error is the large-sample one of Fleiss, Cohen & Everitt (1969, Psychological
    Bulletin 72(5)), valid when kappa is not 0 (the one statsmodels'
    ``statsmodels.stats.inter_rater.cohens_kappa`` reports as ``std_kappa``)::

        var = [sum p_ij (w_ij - (w_i. + w_.j)(1 - kappa))^2 - (kappa - p_e (1 - kappa))^2]
              / (n (1 - p_e)^2)

    with ``w_i. = sum_j p_.j w_ij`` and ``w_.j = sum_i p_i. w_ij``; the interval is
    ``kappa +- z se``, z the normal quantile (statsmodels' ``kappa_low``/``kappa_upp``).

    Pairs where either label is missing are dropped (``dropped``). Kappa is None, with the
    reason, under 2 labelled pairs or when both raters put every case in one category (chance
    agreement is then 1). Raises ValueError for sequences of different lengths or a label
    outside ``categories``.
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    _check_confidence(confidence)
    if len(a) != len(b):
        raise ValueError(f"the two raters labelled {len(a)} and {len(b)} cases")
    pairs = [(x, y) for x, y in zip(a, b) if not _missing(x) and not _missing(y)]
    cats = _scale([v for p in pairs for v in p], categories)
    n, k, dropped = len(pairs), len(cats), len(a) - len(pairs)

    def undefined(reason: str, po: float | None = None, pe: float | None = None) -> Kappa:
        return Kappa(None, None, None, None, n, weights, po, pe, dropped, confidence, reason)

    if n < 2:
        return undefined(f"{n} labelled pair(s): kappa needs at least 2")
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((k, k))
    np.add.at(table, ([index[x] for x, _ in pairs], [index[y] for _, y in pairs]), 1)
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    if row.max() == 1.0 and col.max() == 1.0 and row.argmax() == col.argmax():
        return undefined(f"both raters put every case in {cats[int(row.argmax())]!r}: chance "
                         "agreement is 1, so kappa is undefined", 1.0, 1.0)
    i, j = np.indices((k, k))
    if weights is None:
        w = (i == j).astype(float)
    else:
        d = np.abs(i - j) / (k - 1)
        w = 1.0 - (d if weights == "linear" else d * d)
    po = float((w * p).sum())
    pe = float((w * np.outer(row, col)).sum())
    kappa = (po - pe) / (1.0 - pe)
    w_row = w @ col  # w_i. = sum_j p_.j w_ij
    w_col = row @ w  # w_.j = sum_i p_i. w_ij
    var = (float((p * (w - (w_row[:, None] + w_col[None, :]) * (1.0 - kappa)) ** 2).sum())
           - (kappa - pe * (1.0 - kappa)) ** 2) / (n * (1.0 - pe) ** 2)
    se = math.sqrt(max(var, 0.0))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return Kappa(kappa, se, kappa - z * se, kappa + z * se, n, weights, po, pe, dropped,
                 confidence)


# -- several raters ---------------------------------------------------------------------------

def _rows(ratings: Sequence[Sequence[Any]]) -> list[list[Any]]:
    rows = [[None if _missing(v) else v for v in r] for r in ratings]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("every rater must rate the same cases: rows of lengths "
                         f"{sorted({len(r) for r in rows})}")
    return rows


@dataclass(frozen=True)
class Alpha(_Result):
    """Krippendorff's alpha of several raters; None (with ``reason``) where undefined."""

    alpha: float | None
    level: AlphaLevel
    raters: int
    units: int  # cases (columns)
    pairable_units: int  # cases with at least two ratings: the only ones alpha uses
    pairable_values: int  # the ratings in those cases (Krippendorff's n)
    reason: str | None = None


def krippendorff_alpha(ratings: Sequence[Sequence[Any]], *, level: AlphaLevel = "nominal",
                       categories: Sequence[Any] | None = None) -> Alpha:
    """Krippendorff's alpha of several raters (rows: one per judge) over the same cases
    (columns), with ``None`` for a missing rating.

    ``alpha = 1 - D_o / D_e``: the disagreement observed within cases over the one expected
    from all pairable ratings pooled, under the distance of the ``level`` (nominal, ordinal,
    interval or ratio), as defined in Krippendorff (2011), "Computing Krippendorff's
    Alpha-Reliability" (University of Pennsylvania, ASC working paper 43). Computed by the
    ``krippendorff`` package (``krippendorff.alpha``). Only cases rated at least twice count.

    Labels are coded by ``categories``: numbers keep their values (an interval or ratio scale
    needs them); other labels become their position in ``categories``, which is the scale's
    order for ``level="ordinal"`` and equal spacing for ``"interval"``. Without
    ``categories``, the labels seen are used in sorted order; labels that are not numbers
    then only make sense on a nominal scale, so other levels raise ValueError.

    None, with the reason, when no case has two ratings or all pairable ratings are equal
    (no variation: alpha is 0/0).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    rows = _rows(ratings)
    raters, units = len(rows), (len(rows[0]) if rows else 0)
    flat = [v for r in rows for v in r if v is not None]
    cats = _scale(flat, categories)
    numeric = all(_numeric(c) for c in cats)
    if categories is None and not numeric and level != "nominal":
        raise ValueError(f"an {level} alpha of labels that are not numbers needs categories= "
                         "listing the scale in order")
    code = {c: float(c) if numeric else float(i) for i, c in enumerate(cats)}
    columns = [[r[u] for r in rows if r[u] is not None] for u in range(units)]
    pairable = [c for c in columns if len(c) >= 2]
    values = [v for c in pairable for v in c]

    def result(alpha: float | None, reason: str | None = None) -> Alpha:
        return Alpha(alpha, level, raters, units, len(pairable), len(values), reason)

    if not pairable:
        return result(None, "no case has ratings from two raters: alpha needs at least one")
    if len(set(values)) < 2:
        return result(None, f"every pairable rating is {values[0]!r}: no variation, so alpha "
                            "is undefined")
    import krippendorff

    data = np.array([[np.nan if v is None else code[v] for v in r] for r in rows], dtype=float)
    value = krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                               value_domain=[code[c] for c in cats])
    return result(float(value))


@dataclass(frozen=True)
class FleissKappa(_Result):
    """Fleiss' kappa of several raters; None (with ``reason``) where undefined."""

    kappa: float | None
    observed: float | None  # mean pairwise agreement within a case, P-bar
    expected: float | None  # chance agreement from the pooled category shares, P-bar_e
    items: int  # cases with every rating
    raters: int
    dropped: int  # cases missing a rating
    reason: str | None = None


def fleiss_kappa(ratings: Sequence[Sequence[Any]], *,
                 categories: Sequence[Any] | None = None) -> FleissKappa:
    """Fleiss' (1971) kappa of several raters (rows) over the same cases (columns), nominal.

    With ``m`` ratings per case and ``n_ij`` of them in category ``j`` for case ``i``:
    ``P_i = (sum_j n_ij^2 - m) / (m (m - 1))``, ``P-bar`` its mean over the ``N`` cases,
    ``p_j = sum_i n_ij / (N m)``, ``P-bar_e = sum_j p_j^2`` and
    ``kappa = (P-bar - P-bar_e) / (1 - P-bar_e)`` (Fleiss 1971, Psychological Bulletin 76(5),
    378-382; the statistic of statsmodels' ``fleiss_kappa``). Fleiss' kappa needs the same
    number of ratings for every case, so cases with a missing rating are dropped and counted.

    On complete data it determines nominal Krippendorff's alpha:
    ``alpha = 1 - (1 - kappa) (N m - 1) / (N m)``.

    None, with the reason, with fewer than 2 raters or 2 complete cases, or when every rating
    is in one category.
    """
    rows = _rows(ratings)
    raters, units = len(rows), (len(rows[0]) if rows else 0)
    complete = [[r[u] for r in rows] for u in range(units) if all(r[u] is not None for r in rows)]
    cats = _scale([v for c in complete for v in c], categories)
    n_items, dropped = len(complete), units - len(complete)

    def undefined(reason: str) -> FleissKappa:
        return FleissKappa(None, None, None, n_items, raters, dropped, reason)

    if raters < 2 or n_items < 2:
        return undefined(f"{raters} rater(s) with {n_items} fully rated case(s): Fleiss' kappa "
                         "needs at least 2 of each")
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((n_items, len(cats)))
    for i, case in enumerate(complete):
        for v in case:
            counts[i, index[v]] += 1
    m = raters
    observed = float(((counts ** 2).sum(axis=1) - m).mean() / (m * (m - 1)))
    shares = counts.sum(axis=0) / (n_items * m)
    expected = float((shares ** 2).sum())
    if shares.max() == 1.0:
        return undefined(f"every rating is {cats[int(shares.argmax())]!r}: chance agreement is 1, "
                         "so kappa is undefined")
    return FleissKappa((observed - expected) / (1.0 - expected), observed, expected, n_items,
                       raters, dropped)


# -- a judge against human truth --------------------------------------------------------------

@dataclass(frozen=True)
class DetectionRates(_Result):
    """A pass/fail judge's rates with human labels as the truth, each with a Wilson interval;
    a rate is None where people gave no example of its class."""

    tpr: float | None  # of the cases people call positive, the share the judge calls positive
    tpr_low: float | None
    tpr_high: float | None
    tnr: float | None  # of the cases people call negative, the share the judge calls negative
    tnr_low: float | None
    tnr_high: float | None
    positives: int  # cases people call positive
    negatives: int
    true_positives: int
    true_negatives: int
    dropped: int  # cases missing the judge's or the human label
    confidence: float


def detection_rates(judge: Sequence[Any], human: Sequence[Any], *, positive: Any = "pass",
                    confidence: float = 0.95) -> DetectionRates:
    """True-positive rate (sensitivity: ``TP / (TP + FN)``) and true-negative rate
    (specificity: ``TN / (TN + FP)``) of ``judge`` with ``human`` as the truth. ``positive`` is
    the positive label; every other label is negative. Intervals: Wilson score (Wilson 1927),
    from :func:`pytest_aie.stats.intervals.pass_rate_interval`. Cases where either label is
    missing are dropped and counted."""
    _check_confidence(confidence)
    if len(judge) != len(human):
        raise ValueError(f"{len(judge)} judge labels but {len(human)} human labels")
    pairs = [(j, h) for j, h in zip(judge, human) if not _missing(j) and not _missing(h)]
    pos = [j == positive for j, h in pairs if h == positive]
    neg = [j != positive for j, h in pairs if h != positive]

    def rate(hits: list[bool]) -> tuple[float | None, float | None, float | None]:
        if not hits:
            return None, None, None
        ci = pass_rate_interval(sum(hits), len(hits), confidence)
        return ci.estimate, ci.low, ci.high

    return DetectionRates(*rate(pos), *rate(neg), positives=len(pos), negatives=len(neg),
                          true_positives=sum(pos), true_negatives=sum(neg),
                          dropped=len(judge) - len(pairs), confidence=confidence)


# -- biases -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LengthBias(_Result):
    """Spearman's rank correlation between a judge's scores and the answers' lengths."""

    rho: float | None
    p_value: float | None  # two-sided, H0: no monotonic association
    n: int  # pairs with a score and a length
    dropped: int = 0  # pairs missing either
    reason: str | None = None


def length_bias(scores: Sequence[float | None], lengths: Sequence[float | None]) -> LengthBias:
    """Does the judge score longer answers higher? Spearman's rho of score and length with its
    two-sided p-value, from :func:`scipy.stats.spearmanr` (ties get average ranks). Pairs with a
    missing value are dropped and counted. None, with the reason, under 3 pairs or when either
    the scores or the lengths are all equal (a rank correlation is then undefined)."""
    if len(scores) != len(lengths):
        raise ValueError(f"{len(scores)} scores but {len(lengths)} lengths")
    pairs = [(float(s), float(x)) for s, x in zip(scores, lengths)
             if s is not None and x is not None and not _missing(s) and not _missing(x)]
    n, dropped = len(pairs), len(scores) - len(pairs)
    if n < 3:
        return LengthBias(None, None, n, dropped, f"{n} scored answer(s): too few for a "
                                                  "correlation (at least 3)")
    for what, values in (("score", [s for s, _ in pairs]), ("length", [x for _, x in pairs])):
        if len(set(values)) < 2:
            return LengthBias(None, None, n, dropped,
                              f"every answer has the same {what}: the correlation is undefined")
    from scipy import stats

    res = stats.spearmanr([s for s, _ in pairs], [x for _, x in pairs])
    return LengthBias(float(res.statistic), float(res.pvalue), n, dropped)


@dataclass(frozen=True)
class FlipRate(_Result):
    """How often a pairwise judge's winner changes when the two answers swap places."""

    flip_rate: float | None  # share of pairs whose two verdicts differ; None with no pair
    low: float | None  # Wilson interval of flip_rate
    high: float | None
    n: int  # pairs judged in both orders
    flips: int
    #: of the decisive verdicts (A or B, not tie) in both orders, the share that went to the
    #: answer shown first; 0.5 for a judge without position preference. None with none.
    first_position_rate: float | None
    decisive: int  # verdicts (two per pair) that are not a tie
    first_position: int  # of those, the ones that picked the answer shown first
    dropped: int  # pairs missing either verdict
    confidence: float


def _preference(label: Any) -> str:
    if label not in PREFERENCES:
        raise ValueError(f"pairwise verdict {label!r} is not one of {list(PREFERENCES)}")
    return str(label)


def consistent_winner(first: str | None, second: str | None) -> str | None:
    """The verdict on one pair judged in both orders, both written in the original labels: the
    label when the two agree, ``"tie"`` when they differ, None when either is missing."""
    if first is None or second is None:
        return None
    return first if _preference(first) == _preference(second) else "tie"


def flip_rate(first_order: Sequence[str | None], swapped_order: Sequence[str | None], *,
              confidence: float = 0.95) -> FlipRate:
    """Position consistency of a pairwise judge (labels ``"A"``, ``"B"``, ``"tie"``).

    ``first_order[i]`` is the winner of pair ``i`` shown as (A, B); ``swapped_order[i]`` its
    winner shown as (B, A), written back in the ORIGINAL labels, so that a consistent judge
    gives the same label twice. The flip rate is the share of pairs whose two verdicts differ
    (a tie in one order and a winner in the other counts as a flip), with a Wilson interval
    (:func:`pytest_aie.stats.intervals.pass_rate_interval`). ``first_position_rate`` is the
    share of decisive verdicts that picked the answer shown first: "A" in the first order, the
    original "B" in the swapped one. Without position preference it is 0.5 for each pair whose
    verdicts agree; a judge that always answers "A" picks the first-shown answer every time
    (rate 1.0) and flips on every pair (flip rate 1.0). The two picks of a pair are not
    independent, so ``first_position_rate`` has no interval. Pairs missing either verdict are
    dropped and counted.
    """
    _check_confidence(confidence)
    if len(first_order) != len(swapped_order):
        raise ValueError(f"{len(first_order)} first-order but {len(swapped_order)} swapped "
                         "verdicts")
    pairs = [(_preference(a), _preference(b)) for a, b in zip(first_order, swapped_order)
             if a is not None and b is not None]
    n, dropped = len(pairs), len(first_order) - len(pairs)
    picks = [a == "A" for a, _ in pairs if a != "tie"] + [b == "B" for _, b in pairs if b != "tie"]
    first = sum(picks) / len(picks) if picks else None
    if n == 0:
        return FlipRate(None, None, None, 0, 0, first, 0, 0, dropped, confidence)
    flips = sum(1 for a, b in pairs if a != b)
    ci = pass_rate_interval(flips, n, confidence)
    return FlipRate(ci.estimate, ci.low, ci.high, n, flips, first, len(picks), sum(picks),
                    dropped, confidence)
