"""``elo_aa_false_fail_rate``: the highest rate at which a ranking expectation between equally
good models FAILs, over decisive shares from 1% to 100% and 10 to 200 battles per pair;
``elo_aa_false_fail_upper``: the highest 95% Wilson upper bound of those rates (the
simulation error included); ``elo_power_70``: the share of runs in which a model that truly
wins 70% of decisive battles passes ``expect`` with 60 battles per pair, half of them decisive;
``elo_power_70_battles_for_0_8``: the battles per pair (half decisive) at which that power
reaches 0.8 (computed exactly). About 30 decisive battles give the exact sign test power 0.52
at a 70% win rate and level 0.025 (0.67 at level 0.05); by the normal approximation no
one-sided level-0.025 test on 30 decisive battles reaches 0.8 (about 0.6 at best).

Every run goes through the project's own functions: the battles are fitted by
:func:`pytest_aie.stats.ratings.bradley_terry` and decided by
:func:`pytest_aie.stats.ranking.expect` (the exact one-sided sign test on the decisive battles
between the two models, at level 0.025, ties dropped).

* A/A: ``MODELS`` equally good models (15 pairs, every pair an ``a > b`` expectation, written
  in a random direction); each battle is decisive with the given share, and a decisive
  battle's winner is a fair coin. ``RUNS`` runs per cell of the grid ``SHARES`` x ``BATTLES``.
* Power: two models; each of 60 battles is decisive with probability 1/2, and the first model
  wins a decisive battle with probability 0.7; ``expect("a > b")``.

    .venv/bin/python benchmarks/elo_verdicts.py [--runs 60] [--power-runs 2000]

The functions are imported by ``tests/test_ratings.py`` (a smaller simulation).
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations

import numpy as np

from pytest_aie.stats.intervals import pass_rate_interval
from pytest_aie.stats.ranking import expect
from pytest_aie.stats.ratings import Battle, bradley_terry

MODELS = 6
SHARES = (0.01, 0.03, 0.1, 0.3, 0.5, 1.0)
BATTLES = (10, 30, 60, 100, 200)


def battles(rng: np.random.Generator, a: str, b: str, n: int, share: float, p_win: float
            ) -> list[Battle]:
    """``n`` battles between ``a`` and ``b``: decisive with probability ``share``, then won by
    ``a`` with probability ``p_win``; the others ties. ``a`` is shown first in a random half."""
    decisive = (rng.random(n) < share).tolist()
    a_won = (rng.random(n) < p_win).tolist()
    first = (rng.random(n) < 0.5).tolist()
    out = []
    for d, w, f in zip(decisive, a_won, first):
        outcome = "tie" if not d else "a" if w == f else "b"
        out.append(Battle(a, b, outcome) if f else Battle(b, a, outcome))  # type: ignore[arg-type]
    return out


def aa_cell(n: int, share: float, runs: int, seed: int) -> tuple[int, int]:
    """(expectations that FAILed, expectations decided) over ``runs`` A/A runs of
    ``MODELS`` equally good models, ``n`` battles per pair, ``share`` of them decisive."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(MODELS)]
    failed = total = 0
    for _ in range(runs):
        pairs = list(combinations(models, 2))
        bs = [b for x, y in pairs for b in battles(rng, x, y, n, share, 0.5)]
        fit = bradley_terry(bs, models=models, n_boot=0)
        texts = [f"{x} > {y}" if rng.random() < 0.5 else f"{y} > {x}" for x, y in pairs]
        verdicts = expect(fit, texts)
        failed += sum(v.verdict == "fail" for v in verdicts)
        total += len(verdicts)
    return failed, total


def power(runs: int, seed: int, n: int = 60, share: float = 0.5, p_win: float = 0.7) -> float:
    """Share of ``runs`` in which ``expect("a > b")`` passes when ``a`` truly wins ``p_win`` of
    the decisive battles (``n`` battles, ``share`` of them decisive)."""
    rng = np.random.default_rng(seed)
    passed = 0
    for _ in range(runs):
        fit = bradley_terry(battles(rng, "a", "b", n, share, p_win), models=["a", "b"], n_boot=0)
        passed += expect(fit, "a > b")[0].verdict == "pass"
    return passed / runs


def exact_power(n: int = 60, share: float = 0.5, p_win: float = 0.7, level: float = 0.025
                ) -> float:
    """The same power computed exactly: over the binomial number of decisive battles, the
    chance of at least the wins a one-sided sign test at ``level`` needs."""
    from scipy.stats import binom

    total = 0.0
    for d in range(1, n + 1):
        tails = binom.sf(np.arange(-1, d), d, 0.5)  # P(X >= k) for k = 0..d
        reach = np.flatnonzero(tails <= level)
        if len(reach):
            total += float(binom.pmf(d, n, share) * binom.sf(reach[0] - 1, d, p_win))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--power-runs", type=int, default=2000)
    args = ap.parse_args()
    start = time.perf_counter()
    worst = upper = 0.0
    for i, share in enumerate(SHARES):
        for j, n in enumerate(BATTLES):
            failed, total = aa_cell(n, share, args.runs, seed=100 * i + j)
            ci = pass_rate_interval(failed, total, 0.95)
            worst, upper = max(worst, failed / total), max(upper, float(ci.high))
            print(f"elo_verdicts: A/A, {share:.0%} decisive, {n} battles per pair: "
                  f"{failed} of {total} expectations FAIL ({failed / total:.3f}, upper "
                  f"{ci.high:.3f})", file=sys.stderr, flush=True)
    got = power(args.power_runs, seed=7)
    needed = next(n for n in range(60, 1000, 2) if exact_power(n) >= 0.8)
    print(f"elo_verdicts: power: {got:.3f} simulated, {exact_power():.3f} exact (at most "
          f"{exact_power(level=0.05):.3f} even at level 0.05); power 0.8 needs {needed} battles "
          f"per pair; {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"elo_aa_false_fail_rate: {worst:.4f}")
    print(f"elo_aa_false_fail_upper: {upper:.4f}")
    print(f"elo_power_70: {got:.4f}")
    print(f"elo_power_70_battles_for_0_8: {needed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
