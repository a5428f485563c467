"""Paired regression tests of a candidate against a stored baseline, case by case.

Both runs score the *same* cases, so the comparison is paired: a case that passed before
and fails now is *newly failing* (count ``b``), one that failed before and passes now is
*newly passing* (count ``c``). Concordant cases carry no information about the change.

The regression rule (binary and scores alike)
---------------------------------------------
A gate must not fail CI on noise (two identical models disagree on some cases just by
sampling) and must not fail it on a drop too small to matter, yet must catch real drops.
So :func:`paired_binary_gate` flags a regression only when **both** hold:

1. the drop is *statistically significant*: the exact McNemar test (a one-sided exact
   binomial test on the discordant pairs, ``H0: P(newly failing) <= P(newly passing)``,
   i.e. no drop) rejects at level ``alpha``; and
2. the drop is *practically relevant*: the estimated change in pass rate
   ``delta = (c - b) / n`` is below ``-margin``.

Condition 1 bounds the false-alarm rate of two identical models by ``alpha`` (the exact
test is conservative); condition 2 keeps large suites from failing on drops smaller than
the margin. ``strict=True`` replaces both with a one-sided test of
``H0: delta >= -margin`` at level ``alpha``: regression only when the upper bound of the
``1 - 2*alpha`` Newcombe interval lies below ``-margin``, i.e. when the drop is shown to
*exceed* the margin. That controls the rate of flagging drops no larger than the margin,
but it needs more cases (see :func:`pytest_aie.stats.power.minimum_detectable_drop`).

The reported interval for ``delta`` is Newcombe's hybrid score interval for paired
proportions (method 10 of Newcombe 1998, Stat Med 17:2635), built from the Wilson
intervals of the two pass rates (``scipy.stats.binomtest(...).proportion_ci``) and their
correlation; it is ``1 - 2*alpha`` two-sided (90% for ``alpha=0.05``), so its upper bound is
the one-sided ``1 - alpha`` bound matching the one-sided test.

``improved`` is the mirror image (significant gain beyond the margin).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from pytest_aie.errors import UsageError
from pytest_aie.stats.intervals import Interval, pass_rate_interval

__all__ = ["GateResult", "binary_gate_from_counts", "mcnemar_exact", "paired_binary_gate",
           "paired_proportion_interval", "paired_score_gate"]


@dataclass(frozen=True)
class GateResult:
    """Outcome of a paired regression gate.

    ``delta`` is candidate minus baseline (pass rate, or mean score); ``low``/``high`` its
    ``1 - 2*alpha`` interval (``None`` where the method gives none); ``p_value`` the
    one-sided p-value for a drop and ``p_gain`` for a gain; ``n`` the number of complete
    pairs and ``clusters`` the number of clusters when the test was cluster-level; the
    index lists point into the original sequences.
    """

    delta: float | None
    low: float | None
    high: float | None
    p_value: float | None
    regressed: bool
    improved: bool
    n: int
    method: str
    newly_failing_idx: list[int] = field(default_factory=list)
    newly_passing_idx: list[int] = field(default_factory=list)
    margin: float = 0.02
    alpha: float = 0.05
    p_gain: float | None = None
    clusters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for a terminal or report."""
        if self.delta is None:
            return "no paired cases to compare"
        state = "REGRESSION" if self.regressed else "improvement" if self.improved else "no change"
        ci = "" if self.low is None else (
            f" ({1 - 2 * self.alpha:.0%} CI {self.low:+.4f} to {self.high:+.4f})")
        p = "" if self.p_value is None else f", p={self.p_value:.3g}"
        return (f"{state}: delta {self.delta:+.4f}{ci}{p}, n={self.n}, margin {self.margin}, "
                f"{len(self.newly_failing_idx)} newly failing, "
                f"{len(self.newly_passing_idx)} newly passing [{self.method}]")


def _check_gate(margin: float, alpha: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise UsageError(f"margin {margin!r} is not in [0, 1)", fix="pass a margin such as 0.02")
    if not 0.0 < alpha < 0.5:
        raise UsageError(f"alpha {alpha!r} is not in (0, 0.5)", fix="pass alpha such as 0.05")


def mcnemar_exact(b: int, c: int,
                  alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> float:
    """Exact (conditional) McNemar test: ``scipy.stats.binomtest(b, b + c, 0.5)``.

    ``b`` counts pairs passing in the baseline and failing in the candidate, ``c`` the
    reverse. ``alternative="greater"`` tests for a drop (``b`` larger than chance),
    ``"less"`` for a gain. No discordant pairs gives ``1.0``.
    """
    from scipy import stats

    if b < 0 or c < 0:
        raise UsageError(f"McNemar counts must be >= 0, got b={b}, c={c}", fix="pass counts")
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(int(b), int(b + c), 0.5, alternative=alternative).pvalue)


def paired_proportion_interval(n11: int, b: int, c: int, n00: int,
                               confidence: float = 0.95) -> Interval:
    """Newcombe's hybrid score interval for ``delta = p_candidate - p_baseline``.

    Counts: ``n11`` pass in both, ``b`` pass in baseline only, ``c`` pass in candidate
    only, ``n00`` fail in both. Method 10 of Newcombe (1998): square-and-add of the two
    Wilson intervals with the continuity-corrected correlation ``phi`` between them.
    """
    n = n11 + b + c + n00
    if n <= 0 or min(n11, b, c, n00) < 0:
        raise UsageError("paired interval needs non-negative counts and at least one pair",
                         fix="pass the four cells of the paired 2x2 table")
    p1, p2 = (n11 + c) / n, (n11 + b) / n  # candidate, baseline pass rates
    w1 = pass_rate_interval(n11 + c, n, confidence, "wilson")
    w2 = pass_rate_interval(n11 + b, n, confidence, "wilson")
    margins = (n11 + c) * (b + n00) * (n11 + b) * (c + n00)
    psi = 0.0
    if margins > 0:
        a = n11 * n00 - b * c
        if a > n / 2:
            psi = (a - n / 2) / math.sqrt(margins)
        elif a < 0:
            psi = a / math.sqrt(margins)
    d1l, d1u, d2l, d2u = p1 - w1.low, w1.high - p1, p2 - w2.low, w2.high - p2
    delta = p1 - p2
    low = delta - math.sqrt(max(0.0, d1l ** 2 + d2u ** 2 - 2 * psi * d1l * d2u))
    high = delta + math.sqrt(max(0.0, d2l ** 2 + d1u ** 2 - 2 * psi * d2l * d1u))
    return Interval(delta, max(-1.0, low), min(1.0, high), "newcombe-paired", confidence)


def binary_gate_from_counts(n11: int, b: int, c: int, n00: int, margin: float = 0.02,
                            alpha: float = 0.05, strict: bool = False) -> GateResult:
    """The binary gate's decision from the paired 2x2 counts (see the module docstring).

    :func:`paired_binary_gate` calls this after counting; the index lists are left empty.
    """
    _check_gate(margin, alpha)
    n = n11 + b + c + n00
    if n == 0:
        return GateResult(None, None, None, None, False, False, 0, "no paired cases",
                          margin=margin, alpha=alpha)
    ci = paired_proportion_interval(n11, b, c, n00, confidence=1 - 2 * alpha)
    p_drop = mcnemar_exact(b, c, "greater")
    p_gain = mcnemar_exact(b, c, "less")
    if strict:
        regressed = ci.high < -margin and p_drop < alpha
        improved = ci.low > margin and p_gain < alpha
        method = "newcombe non-inferiority (H0: delta >= -margin)"
    else:
        regressed = p_drop < alpha and ci.estimate < -margin
        improved = p_gain < alpha and ci.estimate > margin
        method = "mcnemar-exact + margin on delta; newcombe interval"
    return GateResult(ci.estimate, ci.low, ci.high, p_drop, regressed, improved, n, method,
                      margin=margin, alpha=alpha, p_gain=p_gain)


def _pairs(base: Sequence[Any], cand: Sequence[Any], what: str) -> list[int]:
    if len(base) != len(cand):
        raise UsageError(f"{what} got {len(base)} baseline and {len(cand)} candidate results",
                         fix="align both runs on the same cases (one entry per case, None if missing)")
    return [i for i, (x, y) in enumerate(zip(base, cand))
            if x is not None and y is not None
            and not (isinstance(x, float) and math.isnan(x))
            and not (isinstance(y, float) and math.isnan(y))]


def _shared_groups(groups: Sequence[Any] | None, keep: list[int]) -> list[Any] | None:
    """The kept pairs' groups if some group holds two of them, else ``None`` (no clusters)."""
    if groups is None:
        return None
    kept = [groups[i] for i in keep]
    named = [g for g in kept if g is not None]
    return kept if len(set(named)) < len(named) else None


def _clustered_gate(d: np.ndarray, groups: list[Any], margin: float, alpha: float,
                    strict: bool, bounds: tuple[float, float] | None, n_resamples: int,
                    seed: int | None) -> GateResult:
    """Cluster-level paired gate: sign-flip test of the per-cluster totals of ``d``."""
    from pytest_aie.stats.means import cluster_totals, mean_t_interval, sign_flip_pvalues

    totals, _ = cluster_totals(d, groups)
    delta = float(d.mean())
    p_drop, p_gain = sign_flip_pvalues(totals, n_resamples, seed)
    ci = mean_t_interval(d, groups, 1 - 2 * alpha)
    if ci is not None and bounds is not None:
        ci = (max(bounds[0], ci[0]), min(bounds[1], ci[1]))
    low, high = ci if ci is not None else (None, None)
    name = f"cluster sign-flip over {totals.size} clusters"
    if strict:
        regressed = high is not None and high < -margin
        improved = low is not None and low > margin
        name += " (strict: cluster-robust t bound beyond the margin)"
    else:
        regressed = p_drop < alpha and delta < -margin
        improved = p_gain < alpha and delta > margin
        name += " + margin on delta; cluster-robust t interval"
    return GateResult(delta, low, high, p_drop, regressed, improved, int(d.size), name,
                      margin=margin, alpha=alpha, p_gain=p_gain, clusters=int(totals.size))


def paired_binary_gate(base: Sequence[bool | None], cand: Sequence[bool | None],
                       margin: float = 0.02, alpha: float = 0.05,
                       strict: bool = False, *, groups: Sequence[Any] | None = None,
                       n_resamples: int = 9999, seed: int | None = 0) -> GateResult:
    """Paired pass/fail regression gate of a candidate run against a baseline run.

    ``base[i]`` and ``cand[i]`` are the same case's outcome in each run; a pair with an
    unmeasured side (``None``) is left out. Regression means a significant drop (exact
    McNemar, one-sided, level ``alpha``) *and* an estimated drop beyond ``margin``; with
    ``strict=True``, a drop shown to exceed ``margin`` (upper ``1 - 2*alpha`` Newcombe
    bound below ``-margin``). The module docstring gives the reasoning.

    ``groups`` (one cluster name or ``None`` per case) makes the test cluster-level when
    some cluster holds two or more pairs: the sign-flip permutation test of the clusters'
    summed changes (McNemar's cluster analogue; the same test when every cluster is one
    case), with a cluster-robust t interval (see :mod:`pytest_aie.stats.means`).
    """
    _check_gate(margin, alpha)
    keep = _pairs(base, cand, "paired_binary_gate")
    failing = [i for i in keep if base[i] and not cand[i]]
    passing = [i for i in keep if not base[i] and cand[i]]
    clusters = _shared_groups(groups, keep)
    if clusters is not None:
        d = np.asarray([float(bool(cand[i])) - float(bool(base[i])) for i in keep])
        res = _clustered_gate(d, clusters, margin, alpha, strict, (-1.0, 1.0), n_resamples, seed)
    else:
        n11 = sum(1 for i in keep if base[i] and cand[i])
        n00 = len(keep) - n11 - len(failing) - len(passing)
        res = binary_gate_from_counts(n11, len(failing), len(passing), n00, margin, alpha, strict)
    return GateResult(**{**asdict(res), "newly_failing_idx": failing,
                         "newly_passing_idx": passing})


def paired_score_gate(base: Sequence[float | None], cand: Sequence[float | None],
                      margin: float = 0.02, alpha: float = 0.05,
                      method: Literal["permutation", "wilcoxon", "bootstrap"] = "permutation", *,
                      strict: bool = False, threshold: float | None = None,
                      n_resamples: int = 9999, seed: int | None = 0,
                      groups: Sequence[Any] | None = None) -> GateResult:
    """Paired regression gate for continuous scores; ``delta`` is the mean of
    ``cand - base`` (in score units, like ``margin``).

    * ``method="permutation"`` (default; ``"bootstrap"`` is its old name and gives the
      same result): the one-sided sign-flip permutation test of the differences (exact
      over all sign patterns up to 16 non-zero differences, seeded Monte Carlo beyond),
      which holds its level at any ``n`` and with many unchanged cases. Regression:
      ``p < alpha`` for a drop and ``delta < -margin``; strict: the test of the differences
      shifted by the margin (``H0``: centred at ``-margin``) rejects. The interval shown is
      the ``1 - 2*alpha`` t interval of the mean difference (``None`` with fewer than two
      pairs or no spread); it does not decide. A paired BCa bootstrap is not used: it is
      too narrow at small ``n`` (A/A false regressions of 9% at ``n=8``).
    * ``method="wilcoxon"``: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``), one-sided,
      same rule. No interval.

    ``groups`` makes the permutation test cluster-level, as in :func:`paired_binary_gate`.
    With ``threshold``, the index lists name the cases crossing it (pass to fail and back).
    """
    from pytest_aie.stats.means import mean_t_interval, sign_flip_pvalues

    _check_gate(margin, alpha)
    if method not in ("permutation", "bootstrap", "wilcoxon"):
        raise UsageError(f"unknown paired score method {method!r}",
                         fix="use method='permutation' or method='wilcoxon'")
    keep = _pairs(base, cand, "paired_score_gate")
    failing: list[int] = []
    passing: list[int] = []
    if threshold is not None:
        failing = [i for i in keep if base[i] >= threshold > cand[i]]  # type: ignore[operator]
        passing = [i for i in keep if cand[i] >= threshold > base[i]]  # type: ignore[operator]
    if not keep:
        return GateResult(None, None, None, None, False, False, 0, "no paired cases",
                          failing, passing, margin, alpha)
    b = np.asarray([base[i] for i in keep], dtype=float)
    c = np.asarray([cand[i] for i in keep], dtype=float)
    d = c - b
    delta = float(d.mean())
    n = d.size
    clusters = _shared_groups(groups, keep)
    if method == "wilcoxon":
        if clusters is not None:
            raise UsageError("the Wilcoxon score gate cannot use clusters",
                             fix="use method='permutation' when cases share a group")
        shift = margin if strict else 0.0
        p_drop = _wilcoxon(d + shift, "less")
        p_gain = _wilcoxon(d - shift, "greater")
        regressed = p_drop < alpha and (strict or delta < -margin)
        improved = p_gain < alpha and (strict or delta > margin)
        name = "wilcoxon signed-rank" + (" (shifted by margin)" if strict else " + margin on delta")
        return GateResult(delta, None, None, p_drop, regressed, improved, n, name,
                          failing, passing, margin, alpha, p_gain=p_gain)
    if clusters is not None:
        res = _clustered_gate(d, clusters, margin, alpha, strict, None, n_resamples, seed)
        return GateResult(**{**asdict(res), "newly_failing_idx": failing,
                             "newly_passing_idx": passing})
    if strict:
        p_drop = sign_flip_pvalues(d + margin, n_resamples, seed)[0]
        p_gain = sign_flip_pvalues(d - margin, n_resamples, seed)[1]
    else:
        p_drop, p_gain = sign_flip_pvalues(d, n_resamples, seed)
    if strict:
        regressed, improved = p_drop < alpha, p_gain < alpha
        name = "sign-flip permutation (shifted by margin); t interval"
    else:
        regressed = p_drop < alpha and delta < -margin
        improved = p_gain < alpha and delta > margin
        name = "sign-flip permutation + margin on delta; t interval"
    ci = mean_t_interval(d, None, 1 - 2 * alpha)
    low, high = ci if ci is not None else (None, None)
    return GateResult(delta, low, high, p_drop, regressed, improved, n, name,
                      failing, passing, margin, alpha, p_gain=p_gain)


def _wilcoxon(d: np.ndarray, alternative: str) -> float:
    from scipy import stats

    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(d, alternative=alternative).pvalue)
