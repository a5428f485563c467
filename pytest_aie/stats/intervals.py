"""Confidence intervals for a suite's pass rate or mean score, and threshold verdicts.

All numerics come from :mod:`scipy.stats`:

* pass rates: :func:`scipy.stats.binomtest` ``.proportion_ci`` (Wilson score or exact
  Clopper-Pearson);
* mean scores: :func:`scipy.stats.bootstrap` (BCa by default);
* clustered cases (several cases share a group tag, e.g. paraphrases of one question):
  a *cluster bootstrap*, i.e. :func:`scipy.stats.bootstrap` resampling whole groups, with
  the pooled mean ``sum(values) / count(values)`` over the resampled groups as statistic.

Bootstrap intervals are seeded (``seed=0`` by default) so that a gate gives the same
verdict on the same scores every run.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal, Sequence

import numpy as np

from pytest_aie.errors import UsageError

__all__ = [
    "Aggregate",
    "Interval",
    "aggregate",
    "clustered_interval",
    "extreme_interval",
    "mean_interval",
    "pass_rate_interval",
    "threshold_pvalue",
    "verdict",
]

Verdict = Literal["pass", "fail", "inconclusive"]
RateMethod = Literal["wilson", "exact"]
_BOOT_METHODS = {"bca": "BCa", "percentile": "percentile", "basic": "basic"}


@dataclass(frozen=True)
class Interval:
    """A point estimate and a two-sided confidence interval around it."""

    estimate: float
    low: float
    high: float
    method: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Aggregate:
    """A suite's score on one metric: the estimate with its interval, and the counts.

    ``n`` counts every case, ``measured`` those with a score, ``unmeasured`` those without
    (never counted as pass or fail). ``estimate``, ``low`` and ``high`` are ``None`` when
    nothing was measured.
    """

    n: int
    measured: int
    unmeasured: int
    estimate: float | None
    low: float | None
    high: float | None
    method: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence level {confidence!r} is not between 0 and 1",
                         fix="pass a confidence such as 0.95")


def pass_rate_interval(passes: int, n: int, confidence: float = 0.95,
                       method: Literal["wilson", "exact"] = "wilson") -> Interval:
    """Interval for a pass rate ``passes / n``.

    ``method="wilson"`` is the Wilson score interval (good coverage, never outside [0, 1]);
    ``"exact"`` is Clopper-Pearson (guaranteed coverage, wider), from
    ``scipy.stats.binomtest(passes, n).proportion_ci``. Wilson is the closed form (Wilson
    1927) with the normal quantile from the standard library: it is the interval every
    gate of every run computes, and importing ``scipy.stats`` for it cost about a second of
    each run. ``tests/test_stats.py`` checks it against scipy, statsmodels and Newcombe's
    published table.
    """
    _check_confidence(confidence)
    method = _rate_method(method)  # callers without a type checker can pass anything
    if n <= 0 or not 0 <= passes <= n:
        raise UsageError(f"cannot form a pass rate from {passes} passes out of {n} cases",
                         fix="pass 0 <= passes <= n with n >= 1")
    if method == "wilson":
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        p, z2 = passes / n, z * z
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
        low = 0.0 if passes == 0 else max(0.0, centre - half)
        high = 1.0 if passes == n else min(1.0, centre + half)
        return Interval(passes / n, low, high, method, confidence)
    from scipy import stats

    ci = stats.binomtest(int(passes), int(n)).proportion_ci(confidence_level=confidence,
                                                            method=method)
    return Interval(passes / n, float(ci.low), float(ci.high), method, confidence)


def _rate_method(method: str) -> RateMethod:
    if method == "wilson":
        return "wilson"
    if method == "exact":
        return "exact"
    raise UsageError(f"unknown pass-rate interval method {method!r}",
                     fix="use method='wilson' or method='exact'")


def _measured(values: Sequence[float | bool | None]) -> tuple[list[int], np.ndarray]:
    """The positions of the measured values (not None, not NaN) and those values as floats."""
    kept = [(i, float(v)) for i, v in enumerate(values)
            if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return [i for i, _ in kept], np.asarray([v for _, v in kept], dtype=np.float64)


def _as_floats(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise UsageError(f"{what} needs a non-empty list of numbers", fix="pass at least one value")
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} got a NaN or infinite value",
                         fix="drop unmeasured values first, or use aggregate(), which skips None")
    return arr


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, *, confidence: float, method: str,
               n_resamples: int, seed: int | None, paired: bool = False) -> tuple[float, float, str]:
    """Run scipy's bootstrap quietly; fall back to the percentile method if BCa is undefined.

    BCa needs a non-degenerate jackknife; on nearly constant data scipy warns and returns
    NaN. Warnings are kept inside this call, and the fallback is named in the method.
    """
    from scipy import stats

    if method not in _BOOT_METHODS:
        raise UsageError(f"unknown bootstrap method {method!r}",
                         fix="use method='bca', 'percentile' or 'basic'")
    tried = [method] if method == "percentile" else [method, "percentile"]
    for m in tried:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(data, statistic, paired=paired, vectorized=True,
                                  confidence_level=confidence, method=_BOOT_METHODS[m],
                                  n_resamples=n_resamples, batch=max(1, 4_000_000 // max(1, data[0].size)),
                                  rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, m
    return math.nan, math.nan, tried[-1]


def mean_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95,
                  method: str = "bca", n_resamples: int = 9999,
                  seed: int | None = 0) -> Interval:
    """Bootstrap interval for the mean of ``values`` (``scipy.stats.bootstrap``, BCa default).

    With fewer than two values, or all values equal, there is no spread to resample and the
    interval is degenerate: ``low == high == mean``, with ``method`` saying why. No warning
    escapes. If BCa is undefined on the resamples it falls back to the percentile method
    (``method`` then reads ``bootstrap-percentile``).
    """
    _check_confidence(confidence)
    arr = _as_floats(values, "mean_interval")
    mean = float(arr.mean())
    if arr.size < 2:
        return Interval(mean, mean, mean, "degenerate (n<2)", confidence)
    if np.ptp(arr) == 0:
        return Interval(mean, mean, mean, "degenerate (all values equal)", confidence)
    low, high, used = _bootstrap((arr,), _mean, confidence=confidence, method=method,
                                 n_resamples=n_resamples, seed=seed)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Interval(mean, mean, mean, "degenerate (bootstrap undefined)", confidence)
    return Interval(mean, min(low, mean), max(high, mean), f"bootstrap-{used}", confidence)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    means: np.ndarray = np.mean(x, axis=axis)
    return means


def _pooled_mean(sums: np.ndarray, sizes: np.ndarray, axis: int = -1) -> np.ndarray:
    pooled: np.ndarray = np.sum(sums, axis=axis) / np.sum(sizes, axis=axis)
    return pooled


def clustered_interval(values: Sequence[float] | np.ndarray, groups: Sequence[str | None],
                       confidence: float = 0.95, method: str = "bca",
                       n_resamples: int = 9999, seed: int | None = 0) -> Interval:
    """Cluster-bootstrap interval for the mean when cases share a group tag.

    Cases in one group (paraphrases of a question, turns of one conversation) are not
    independent, so an i.i.d. interval is too narrow. This resamples *groups* with
    replacement (``scipy.stats.bootstrap`` over the per-group sums and sizes, paired), and
    the statistic is the pooled mean ``sum of values / number of values`` of the resampled
    groups, the same estimator as the plain mean. A case whose group is ``None`` is its own
    group. With fewer than two groups there is nothing to resample between groups and the
    i.i.d. :func:`mean_interval` is returned instead (its ``method`` says so).
    """
    _check_confidence(confidence)
    arr = _as_floats(values, "clustered_interval")
    if len(groups) != arr.size:
        raise UsageError(f"clustered_interval got {arr.size} values but {len(groups)} groups",
                         fix="pass one group tag (or None) per value")
    keys = [g if g is not None else ("__single__", i) for i, g in enumerate(groups)]
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.intp,
                        count=arr.size)
    n_groups = len(index)
    mean = float(arr.mean())
    if n_groups < 2:
        iid = mean_interval(arr, confidence, method, n_resamples, seed)
        return Interval(iid.estimate, iid.low, iid.high, f"{iid.method} (1 group: unclustered)",
                        confidence)
    sums = np.bincount(codes, weights=arr, minlength=n_groups)
    sizes = np.bincount(codes, minlength=n_groups).astype(float)
    if np.ptp(sums / sizes) == 0:
        return Interval(mean, mean, mean, "degenerate (all group means equal)", confidence)
    low, high, used = _bootstrap((sums, sizes), _pooled_mean, confidence=confidence,
                                 method=method, n_resamples=n_resamples, seed=seed, paired=True)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Interval(mean, mean, mean, "degenerate (bootstrap undefined)", confidence)
    return Interval(mean, min(low, mean), max(high, mean),
                    f"cluster-bootstrap-{used} ({n_groups} groups)", confidence)


def _units(groups: Sequence[str | None] | None, count: int) -> int:
    """Independent units among ``count`` measured cases: each shared group counts once."""
    if groups is None:
        return count
    return len({g for g in groups if g is not None}) + sum(1 for g in groups if g is None)


def _at_bound(arr: np.ndarray, bounds: tuple[float | None, float | None] | None) -> int:
    """+1 when every value sits at the metric's upper bound, -1 at its lower bound, else 0
    (also 0 for an unbounded side, or no values)."""
    if bounds is None or arr.size == 0 or bounds[0] is None or bounds[1] is None \
            or not bounds[1] > bounds[0]:
        return 0
    if np.all(arr == bounds[1]):
        return 1
    return -1 if np.all(arr == bounds[0]) else 0


def extreme_interval(values: Sequence[float], bounds: tuple[float, float], confidence: float,
                     units: int | None = None) -> tuple[float, float] | None:
    """The interval for the mean of a metric bounded in ``bounds`` when every value sits at
    one bound, where the bootstrap has no spread to work with; None otherwise.

    For a metric rescaled to ``u`` in [0, 1] with mean ``mu``, ``P(u = 1) <= mu`` (Markov), so
    ``n`` independent cases all at 1 have probability at most ``mu ** n``: the two-sided
    ``confidence`` interval is ``[((1 - confidence) / 2) ** (1 / n), 1]``, the Clopper-Pearson
    interval of ``n`` successes in ``n`` (and its mirror at the lower bound). ``units``: the
    number of independent units (clusters), which replaces ``n`` when cases share a group."""
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    side = _at_bound(arr, bounds)
    if side == 0:
        return None
    lo, hi = float(bounds[0]), float(bounds[1])
    reach = ((1.0 - confidence) / 2.0) ** (1.0 / max(1, units or arr.size))
    return (lo + (hi - lo) * reach, hi) if side > 0 else (lo, hi - (hi - lo) * reach)


def aggregate(values: Sequence[float | bool | None], *, binary: bool,
              groups: Sequence[str | None] | None = None, confidence: float = 0.95,
              method: str | None = None, n_resamples: int = 9999,
              seed: int | None = 0,
              bounds: tuple[float | None, float | None] | None = None) -> Aggregate:
    """Summarise one metric over a suite: estimate, interval and counts.

    ``values`` holds one entry per case; ``None`` (or NaN) is *unmeasured* and is left out
    of the estimate entirely, never counted as a pass or a fail. ``binary=True`` means the
    values are pass/fail (bools or 0/1) and the estimate is the pass rate.

    Interval used:

    * no ``groups``, or no group shared by two measured cases: binary -> Wilson score
      (``method="exact"`` for Clopper-Pearson); continuous -> BCa bootstrap
      (``method="percentile"``/``"basic"`` also accepted);
    * shared groups: the cluster bootstrap of :func:`clustered_interval`. Because
      clustering can only be ignored at the cost of too-narrow intervals, and a cluster
      bootstrap can come out narrower than the i.i.d. interval by resampling noise or on
      degenerate data (e.g. every case passes), the result is the hull of the cluster and
      the i.i.d. intervals: never narrower than the independent-case interval;
    * a continuous metric with ``bounds`` whose every value sits at one bound (a perfect
      MRR): :func:`extreme_interval`, counting shared groups once (the bootstrap would give
      a zero-width interval, which decides nothing).
    """
    n = len(values)
    if groups is not None and len(groups) != n:
        raise UsageError(f"aggregate got {n} values but {len(groups)} groups",
                         fix="pass one group tag (or None) per value")
    keep, arr = _measured(values)
    measured = len(keep)
    if measured == 0:
        return Aggregate(n, 0, n, None, None, None, "none measured", confidence)
    if binary:
        if not np.all((arr == 0.0) | (arr == 1.0)):
            raise UsageError("aggregate(binary=True) got a value that is not pass/fail",
                             fix="pass bools (or 0/1), or use binary=False for scores")
        iid = pass_rate_interval(int(arr.sum()), measured, confidence,
                                 method=_rate_method(method or "wilson"))
    else:
        kept = [groups[i] for i in keep] if groups is not None else None
        if _at_bound(arr, bounds) and measured >= MIN_CASES:
            low, high = extreme_interval(arr.tolist(), bounds, confidence,  # type: ignore[arg-type]
                                         _units(kept, measured)) or (None, None)
            where = "maximum" if _at_bound(arr, bounds) > 0 else "minimum"
            return Aggregate(n, measured, n - measured, float(arr.mean()), low, high,
                             f"exact (every value at the {where})", confidence)
        iid = mean_interval(arr, confidence, method or "bca", n_resamples, seed)
    kept_groups = [groups[i] for i in keep] if groups is not None else None
    named = [g for g in kept_groups or () if g is not None]
    if kept_groups is None or len(set(named)) == len(named):  # no group shared by two cases
        return Aggregate(n, measured, n - measured, iid.estimate, iid.low, iid.high,
                         iid.method, confidence)
    boot = "bca" if binary or method is None else method
    cl = clustered_interval(arr, kept_groups, confidence, boot, n_resamples, seed)
    return Aggregate(n, measured, n - measured, iid.estimate, min(cl.low, iid.low),
                     max(cl.high, iid.high), f"{cl.method} + {iid.method} hull", confidence)


MIN_CASES = 2  # fewer measured cases than this never decide a verdict


def verdict(agg: Aggregate, threshold: float,
            mode: Literal["interval", "point"] = "interval") -> Verdict:
    """Compare a suite's score with a threshold.

    ``mode="interval"``: ``"pass"`` when the whole interval clears the threshold
    (``low >= threshold``), ``"fail"`` when it lies wholly below (``high < threshold``),
    else ``"inconclusive"`` (more cases needed). ``mode="point"`` compares the estimate
    only: ``"pass"`` when ``estimate >= threshold``, else ``"fail"``.

    Too little data is inconclusive in either mode: nothing measured, fewer than
    :data:`MIN_CASES` measured cases, or (interval mode) an interval of zero width, which
    is what a continuous score with no spread gives (every value equal): it says nothing
    about how far the mean could be from the estimate. A pass rate always has a Wilson
    interval of non-zero width, so 50 passes out of 50 can still pass.
    """
    if mode not in ("interval", "point"):
        raise UsageError(f"unknown verdict mode {mode!r}", fix="use mode='interval' or 'point'")
    if agg.estimate is None or agg.low is None or agg.high is None or agg.measured < MIN_CASES:
        return "inconclusive"
    if mode == "point":
        return "pass" if agg.estimate >= threshold else "fail"
    if not agg.high > agg.low:
        return "inconclusive"
    if agg.low >= threshold:
        return "pass"
    if agg.high < threshold:
        return "fail"
    return "inconclusive"


def threshold_pvalue(values: Sequence[float | bool | None], threshold: float, *, binary: bool,
                     groups: Sequence[str | None] | None = None,
                     bounds: tuple[float | None, float | None] | None = None) -> float | None:
    """One-sided p-value for "the suite falls short of ``threshold``" (``H0``: the true pass
    rate or mean is at least ``threshold``); ``None`` if nothing was measured.

    The family-wise adjustment (:mod:`pytest_aie.stats.multiple`) needs it for each
    threshold verdict that can fail a run. Pass/fail: the exact binomial test
    (``scipy.stats.binomtest``, ``alternative="less"``); with shared groups also the
    cluster-robust t-test, and the larger p-value counts. Scores: the one-sample t-test
    (cluster-robust with groups); no spread or fewer than two clusters gives 1.0, except every
    value at one of the metric's ``bounds`` (see :func:`extreme_interval`): at the upper bound
    the p-value is ``t ** n`` for the threshold ``t`` rescaled to [0, 1] (``n``: independent
    units), at the lower bound ``(1 - t) ** n``.
    """
    from scipy import stats

    from pytest_aie.stats.means import mean_t_pvalue, robust_mean_se

    keep, arr = _measured(values)
    if not keep:
        return None
    kept_groups = [groups[i] for i in keep] if groups is not None else None
    named = [g for g in kept_groups or () if g is not None]
    if len(set(named)) == len(named):  # no group shared by two cases: not clustered
        kept_groups = None
    if len(keep) < MIN_CASES:
        return 1.0
    if not binary:
        side = _at_bound(arr, bounds)
        if side and bounds is not None and bounds[0] is not None and bounds[1] is not None:
            lo, hi = float(bounds[0]), float(bounds[1])
            share = min(1.0, max(0.0, (float(threshold) - lo) / (hi - lo)))
            units = _units([groups[i] for i in keep] if groups is not None else None, len(keep))
            if side > 0:
                return float(share ** units)
            return float((1.0 - share) ** units) if share > 0 else 1.0
        return mean_t_pvalue(arr, threshold, kept_groups)
    t0 = min(1.0, max(0.0, float(threshold)))
    p = float(stats.binomtest(int(arr.sum()), arr.size, t0, alternative="less").pvalue)
    if kept_groups is not None and robust_mean_se(arr, kept_groups)[1] > 0:
        p = max(p, mean_t_pvalue(arr, threshold, kept_groups))
    return min(1.0, p)
