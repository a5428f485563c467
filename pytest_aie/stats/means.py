"""Tests and t intervals for means of per-case values, case by case or cluster by cluster.

* :func:`sign_flip_pvalue`: the paired permutation test. Under ``H0`` (two runs of the same
  model on the same cases) a pair's difference ``candidate - baseline`` is symmetric about
  zero, since which run is called the baseline does not matter. Flipping the sign of each
  difference at random gives the null distribution of their sum
  (:func:`scipy.stats.permutation_test`, ``permutation_type="samples"``): exact over all
  ``2**k`` sign patterns of the ``k`` non-zero differences when ``2**k <= n_resamples``,
  else a seeded random sample of patterns with the ``(count + 1) / (n_resamples + 1)``
  p-value, which keeps its level. It holds its level at any ``n`` (no normal
  approximation); zero differences (unchanged cases) carry no sign and drop out.
* Clustered cases (a declared ``group``: paraphrases of one question, turns of one
  conversation) are correlated within a cluster but independent between clusters, so the
  unit of the test is the cluster: :func:`cluster_totals` sums the differences per cluster
  and the signs of the *totals* are flipped. With one case per cluster and pass/fail
  differences (-1, 0, +1) this is exactly McNemar's exact test.
* :func:`mean_t_interval` / :func:`mean_t_pvalue`: the cluster-robust (sandwich) standard
  error of a mean, ``sqrt(G/(G-1) * sum_g e_g**2) / n`` with ``e_g`` the cluster's summed
  residuals, and Student's t with ``G - 1`` degrees of freedom (:mod:`scipy.stats.t`).
  With one case per cluster it is the ordinary t interval / one-sample t-test.

Too little data never decides: with fewer than two clusters, or no spread at all (every
value equal), there is no interval (``None``) and the one-sample p-value is 1.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["cluster_codes", "cluster_totals", "mean_t_interval", "mean_t_pvalue", "robust_mean_se",
           "sign_flip_pvalue", "sign_flip_pvalues"]

N_RESAMPLES = 9999


def cluster_codes(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """One integer per case naming its cluster; ``None`` (or no ``groups``) is a cluster of
    its own."""
    if groups is None:
        return np.arange(n, dtype=np.intp)
    index: dict[Any, int] = {}
    keys = (g if g is not None else ("__single__", i) for i, g in enumerate(groups))
    return np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.intp, count=n)


def cluster_totals(values: np.ndarray, groups: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of ``values`` and cluster sizes, in order of first appearance."""
    codes = cluster_codes(groups, values.size)
    g = int(codes.max()) + 1 if codes.size else 0
    return (np.bincount(codes, weights=values, minlength=g),
            np.bincount(codes, minlength=g).astype(float))


EXACT_UP_TO = 16  # non-zero differences enumerated exactly (65,536 sign patterns)


def _null_sums(x: np.ndarray, n_resamples: int, seed: int | None) -> tuple[np.ndarray, bool]:
    """Sums of ``+-|x|`` over every sign pattern (exact) or ``n_resamples`` random ones."""
    a = np.abs(x)
    k = a.size
    if k <= EXACT_UP_TO:
        bits = (np.arange(2 ** k)[:, None] >> np.arange(k)) & 1
        return (2 * bits - 1) @ a, True
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    step = max(1, 2_000_000 // k)
    for start in range(0, n_resamples, step):
        m = min(step, n_resamples - start)
        signs = rng.integers(0, 2, (m, k), dtype=np.int8)
        out[start:start + m] = (2 * signs - 1) @ a
    return out, False


def sign_flip_pvalues(totals: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                      seed: int | None = 0) -> tuple[float, float]:
    """One-sided sign-flip permutation p-values for the sum of ``totals`` (per-case or
    per-cluster differences): ``(p for a drop, p for a gain)``, from one null distribution.

    The same test as ``scipy.stats.permutation_test((totals,), np.sum,
    permutation_type="samples")`` (checked against it in the tests), vectorised in numpy:
    scipy's general implementation takes 50 to 90 ms a call, and the gates call it for
    every suite and tag, the simulations thousands of times.
    """
    x = np.asarray(totals, dtype=float)
    x = x[x != 0]
    if x.size == 0:
        return 1.0, 1.0
    null, exact = _null_sums(x, n_resamples, seed)
    observed = float(x.sum())
    tol = 1e-12 * float(np.abs(x).sum())  # sums equal up to rounding are ties
    adj = 0 if exact else 1  # a random sample of patterns counts the observed one too
    p_drop = (float(np.sum(null <= observed + tol)) + adj) / (null.size + adj)
    p_gain = (float(np.sum(null >= observed - tol)) + adj) / (null.size + adj)
    return min(1.0, p_drop), min(1.0, p_gain)


def sign_flip_pvalue(totals: Sequence[float] | np.ndarray,
                     alternative: Literal["less", "greater"] = "less",
                     n_resamples: int = N_RESAMPLES, seed: int | None = 0) -> float:
    """One-sided sign-flip permutation p-value for the sum of ``totals``: ``"less"`` tests
    for a drop, ``"greater"`` for a gain (see :func:`sign_flip_pvalues`)."""
    drop, gain = sign_flip_pvalues(totals, n_resamples, seed)
    return drop if alternative == "less" else gain


def robust_mean_se(values: np.ndarray, groups: Sequence[Any] | None) -> tuple[float, float, int]:
    """Mean, its cluster-robust standard error, and the number of clusters."""
    n = values.size
    mean = float(values.mean())
    resid, _ = cluster_totals(values - mean, groups)
    g = resid.size
    if g < 2:
        return mean, 0.0, g
    se = math.sqrt(g / (g - 1) * float(np.sum(resid ** 2))) / n
    return mean, se, g


def mean_t_interval(values: Sequence[float] | np.ndarray, groups: Sequence[Any] | None = None,
                    confidence: float = 0.90) -> tuple[float, float] | None:
    """Two-sided t interval for the mean (cluster-robust when ``groups`` are given);
    ``None`` when there are fewer than two clusters or no spread."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return None
    mean, se, g = robust_mean_se(arr, groups)
    if g < 2 or not se > 1e-12 * max(1.0, abs(mean)):
        return None
    low, high = stats.t.interval(confidence, g - 1, loc=mean, scale=se)
    return float(low), float(high)


def mean_t_pvalue(values: Sequence[float] | np.ndarray, threshold: float,
                  groups: Sequence[Any] | None = None,
                  alternative: Literal["less", "greater"] = "less") -> float:
    """One-sided t-test p-value of the mean against ``threshold`` (cluster-robust with
    ``groups``); 1.0 when there are fewer than two clusters or no spread."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return 1.0
    mean, se, g = robust_mean_se(arr, groups)
    if g < 2 or not se > 1e-12 * max(1.0, abs(mean)):
        return 1.0
    t = (mean - threshold) / se
    dist = stats.t(g - 1)
    return float(dist.cdf(t) if alternative == "less" else dist.sf(t))
