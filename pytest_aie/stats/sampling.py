"""Repeated sampling: pass@k, pass^k, per-case consistency and flaky cases.

When every case is sampled ``n`` times (temperature > 0, or a nondeterministic server):

* **pass@k** (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): the
  probability that at least one of ``k`` samples drawn without replacement from the ``n``
  passes, estimated without bias as ``1 - C(n-c, k) / C(n, k)`` for ``c`` passing samples;
* **pass^k** (Yao et al. 2024, tau-bench): the probability that *all* ``k`` samples pass,
  estimated without bias as ``C(c, k) / C(n, k)``: a reliability measure;
* **consistency**: the fraction of a case's samples that agree with its majority outcome;
* **flaky** cases: those whose samples disagree.

Both estimators are computed with exact integer binomials (:func:`math.comb`) and one
correctly rounded division, so there is no overflow and no cancellation for any ``n``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Hashable, Mapping, Sequence

from pytest_aie.errors import UsageError

__all__ = ["SamplingSummary", "consistency", "flaky", "pass_at_k", "pass_hat_k",
           "sampling_summary", "sampling_table"]


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise UsageError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}",
                         fix="draw at least k samples per case (n >= k)")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` pass: ``1 - C(n-c,k)/C(n,k)``."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k (all ``k`` samples pass) from ``n`` samples, ``c`` passing:
    ``C(c,k)/C(n,k)``."""
    _check(n, c, k)
    if c < k:
        return 0.0
    return math.comb(c, k) / math.comb(n, k)


def _measured(samples: Sequence[Hashable | None]) -> list[Hashable]:
    return [s for s in samples if s is not None]


def consistency(samples: Sequence[Hashable | None]) -> float | None:
    """Fraction of a case's measured samples equal to its most common outcome.

    Works for pass/fail samples and for any hashable outcome (e.g. normalised answers).
    ``None`` samples are unmeasured and ignored; ``None`` is returned if none is measured.
    """
    kept = _measured(samples)
    if not kept:
        return None
    return Counter(kept).most_common(1)[0][1] / len(kept)


def flaky(cases_samples: Mapping[str, Sequence[Hashable | None]]) -> list[str]:
    """Ids of the cases whose measured samples disagree (consistency below 1), in input
    order."""
    out = []
    for case_id, samples in cases_samples.items():
        c = consistency(samples)
        if c is not None and c < 1.0:
            out.append(case_id)
    return out


@dataclass(frozen=True)
class SamplingSummary:
    """Suite-level repeated-sampling figures, each a mean over cases.

    Cases with fewer than ``k`` measured samples cannot give pass@k and are listed in
    ``skipped`` instead of being counted.
    """

    k: int
    cases: int
    pass_at_k: float | None
    pass_hat_k: float | None
    mean_consistency: float | None
    flaky: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sampling_summary(cases_samples: Mapping[str, Sequence[bool | None]], k: int) -> SamplingSummary:
    """Mean pass@k, pass^k and consistency over cases, plus the flaky cases.

    ``cases_samples`` maps a case id to its pass/fail samples (``None`` = unmeasured).
    """
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}", fix="pass k >= 1")
    at, hat, cons, skipped = [], [], [], []
    for case_id, samples in cases_samples.items():
        kept = [bool(s) for s in samples if s is not None]
        if kept:
            cons.append(consistency(kept))
        if len(kept) < k:
            skipped.append(case_id)
            continue
        at.append(pass_at_k(len(kept), sum(kept), k))
        hat.append(pass_hat_k(len(kept), sum(kept), k))

    def mean(xs: list[Any]) -> float | None:
        return math.fsum(xs) / len(xs) if xs else None

    return SamplingSummary(k=k, cases=len(at), pass_at_k=mean(at), pass_hat_k=mean(hat),
                           mean_consistency=mean(cons), flaky=flaky(cases_samples),
                           skipped=skipped)


def sampling_table(cases_samples: Mapping[str, Sequence[bool | None]],
                   max_k: int | None = None) -> dict[str, Any]:
    """pass@k and pass^k for every ``k`` from 1 to ``max_k`` (default: the most samples any
    case has), with how many cases each figure averages and how many it had to skip.

    A case with unmeasured samples is not dropped: its measured samples give every
    ``k`` up to their number; only for larger ``k`` is it skipped (reason: fewer than
    ``k`` measured samples), and the count is reported per ``k``.
    """
    if max_k is None:
        max_k = max((len(s) for s in cases_samples.values()), default=0)
    out: dict[str, Any] = {"pass_at": {}, "pass_hat": {}, "cases_at": {}, "skipped_at": {}}
    for k in range(1, max_k + 1):
        s = sampling_summary(cases_samples, k)
        out["pass_at"][k] = s.pass_at_k
        out["pass_hat"][k] = s.pass_hat_k
        out["cases_at"][k] = s.cases
        out["skipped_at"][k] = len(s.skipped)
    out["skipped_reason"] = "fewer measured samples than k (unmeasured samples)"
    return out
