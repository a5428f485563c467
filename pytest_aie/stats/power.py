"""How large a drop can the paired binary gate catch? Answered by seeded simulation.

The model of two runs over ``n`` paired cases: the runs disagree on a fraction
``discordance`` of the cases; of those, ``(discordance + drop) / 2`` of all cases pass in
the baseline only and ``(discordance - drop) / 2`` in the candidate only, so the
candidate's pass rate is ``drop`` lower. The baseline passes ``base_rate`` of the cases.
Each simulated run draws the paired 2x2 table and calls the real gate decision
(:func:`pytest_aie.stats.paired.binary_gate_from_counts`).

The same uniform draws are reused for every ``drop`` tried (common random numbers), so
the detection rate rises monotonically with the drop and the search is a clean bisection.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_aie.errors import UsageError
from pytest_aie.stats.paired import binary_gate_from_counts

__all__ = ["detection_rate", "minimum_detectable_drop"]


def _uniforms(n: int, sims: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((sims, n))


def _rate(u: np.ndarray, drop: float, discordance: float, base_rate: float, margin: float,
          alpha: float, strict: bool) -> float:
    n = u.shape[1]
    pb = (discordance + drop) / 2  # baseline-only passes
    p11 = base_rate - pb  # passes in both
    if drop < 0 or drop > discordance or p11 < 0 or p11 + discordance > 1:
        raise UsageError(
            f"drop {drop}, discordance {discordance} and base rate {base_rate} are inconsistent",
            fix="need 0 <= drop <= discordance and a base rate that leaves room for both")
    b = (u < pb).sum(axis=1)
    c = (u < discordance).sum(axis=1) - b
    n11 = (u < discordance + p11).sum(axis=1) - b - c
    cache: dict[tuple[int, int, int], bool] = {}
    hits = 0
    for key in zip(n11.tolist(), b.tolist(), c.tolist()):
        if key not in cache:
            k11, kb, kc = key
            cache[key] = binary_gate_from_counts(k11, kb, kc, n - k11 - kb - kc, margin, alpha,
                                                 strict).regressed
        hits += cache[key]
    return hits / len(u)


def detection_rate(n: int, drop: float, discordance: float = 0.15, alpha: float = 0.05,
                   margin: float = 0.02, sims: int = 2000, seed: int = 0,
                   base_rate: float = 0.7, strict: bool = False) -> float:
    """Fraction of ``sims`` simulated runs in which the gate flags a regression when the
    true drop in pass rate is ``drop`` (``drop=0`` gives the false-alarm rate)."""
    return _rate(_uniforms(n, sims, seed), drop, discordance, base_rate, margin, alpha, strict)


def minimum_detectable_drop(n: int, discordance: float = 0.15, alpha: float = 0.05,
                            power: float = 0.8, margin: float = 0.02, sims: int = 2000,
                            seed: int = 0, base_rate: float = 0.7, strict: bool = False,
                            resolution: float = 0.0005) -> float:
    """Smallest true drop in pass rate the gate catches in at least ``power`` of runs.

    Bisection over ``[0, discordance]`` to within ``resolution``; returns ``math.inf``
    when even the largest drop the discordance allows is caught less often than
    ``power``. Monte Carlo error on the detected fraction is about
    ``sqrt(power * (1 - power) / sims)`` (0.9 points at the defaults).
    """
    if n < 1 or sims < 1 or not 0 < power < 1 or not 0 < discordance <= 1:
        raise UsageError("minimum_detectable_drop needs n >= 1, sims >= 1, 0 < power < 1 "
                         "and 0 < discordance <= 1", fix="check the arguments")
    u = _uniforms(n, sims, seed)

    def caught(drop: float) -> bool:
        return _rate(u, drop, discordance, base_rate, margin, alpha, strict) >= power

    lo, hi = 0.0, discordance
    if not caught(hi):
        return math.inf
    while hi - lo > resolution:
        mid = (lo + hi) / 2
        if caught(mid):
            hi = mid
        else:
            lo = mid
    return hi
