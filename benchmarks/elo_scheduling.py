"""``elo_calls_ratio``: judge calls the adaptive pair scheduler spends before its stopping rule
ends the loop, divided by the calls of the full round robin (every pair on every case, both
orders), for 8 simulated models on 200 cases; the mean over seeded tournaments.
``elo_scheduled_agreement``: the share of those tournaments whose stopped ranking has a
Spearman correlation of at least 0.95 with the round robin's (Bradley-Terry on all battles).

A simulated tournament: 8 models with true ratings drawn from N(1000, 100^2) on the Elo scale
(``P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / 400))``). Every (pair, case) is judged in both
orders once, up front, so the scheduler and the round robin see the same verdicts (as the
judge cache makes them): each order's verdict is a tie with probability 0.1, else a win
drawn from the model with a position bias of 0.2 logits for the answer shown first; the
battle is the winner of both orders when they agree, else a tie
(:func:`pytest_aie.stats.agreement.consistent_winner`).

The loop (what the ``elo`` marker does): fit Bradley-Terry with bootstrap intervals
(:func:`pytest_aie.stats.ratings.bradley_terry`), stop when
:func:`~pytest_aie.stats.ranking.ranking_stable` says so (its defaults) or every pair has met
on every case, else run the next round's battles from
:func:`~pytest_aie.stats.ranking.schedule` (default round: 2 battles per pair); also stop when
every pair still in doubt has met on every case.

    .venv/bin/python benchmarks/elo_scheduling.py [--tournaments 50] [--models 8] [--cases 200]

The simulation functions are imported by ``tests/test_ratings.py`` (a smaller configuration).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from pytest_aie.stats.agreement import consistent_winner
from pytest_aie.stats.ranking import ranking_stable, schedule
from pytest_aie.stats.ratings import Battle, BTFit, bradley_terry

TIE = 0.1  # chance that one order's verdict is a tie
POSITION_BIAS = 0.2  # logits in favour of the answer shown first


def judged_battles(strengths: dict[str, float], cases: list[str], seed: int
                   ) -> dict[tuple[str, str, str], Battle]:
    """Every (pair, case) battle, judged in both orders up front, keyed (a, b, case)."""
    rng = np.random.default_rng(seed)
    out = {}
    for a, b in combinations(strengths, 2):
        gap = (strengths[a] - strengths[b]) * math.log(10) / 400  # in logits
        verdicts = []
        for first_is_a in (True, False):  # shown as (a, b), then as (b, a)
            bias = POSITION_BIAS if first_is_a else -POSITION_BIAS
            p_a = 1.0 / (1.0 + math.exp(-(gap + bias)))
            tie = rng.random(len(cases)) < TIE
            a_won = rng.random(len(cases)) < p_a
            verdicts.append(np.where(tie, "tie", np.where(a_won, "A", "B")))
        for case, first, second in zip(cases, *verdicts):
            outcome = str(consistent_winner(str(first), str(second))).lower()  # A/B/tie -> a/b/tie
            out[(a, b, case)] = Battle(a, b, outcome, case)  # type: ignore[arg-type]
    return out


def tournament(seed: int, n_models: int = 8, n_cases: int = 200, per_pair: int = 2,
               n_boot: int = 1000) -> dict[str, Any]:
    """One simulated tournament: the adaptive loop against the round robin."""
    rng = np.random.default_rng(seed)
    truth = {f"m{i}": float(r) for i, r in enumerate(rng.normal(1000, 100, n_models))}
    models, cases = list(truth), [f"c{i}" for i in range(n_cases)]
    every = judged_battles(truth, cases, seed + 10_000)
    full = bradley_terry(every.values(), models=models, n_boot=0).ranking()
    budget = len(every)
    battles: list[Battle] = []
    fits: list[BTFit] = []
    round_size = per_pair * n_models * (n_models - 1) // 2
    while True:
        fit = bradley_terry(battles, models=models, n_boot=n_boot, seed=seed + len(fits))
        fits.append(fit)
        state = ranking_stable(fits, spent=len(battles), budget=budget)
        reason = state.reason
        if state.stable:
            break
        picks = schedule(models, battles, fit, round_size, cases=cases, seed=seed + len(fits))
        if not picks:
            reason = "every pair still in doubt has met on every case"
            break
        battles += [every[(p.model_a, p.model_b, p.case)] for p in picks]  # type: ignore[index]

    def rho(ranking: list[str]) -> float:
        return float(spearmanr([ranking.index(m) for m in models],
                               [full.index(m) for m in models])[0])

    return {"calls": 2 * len(battles), "round_robin_calls": 2 * budget,
            "ratio": len(battles) / budget, "spearman": rho(fits[-1].ranking()),
            "spearman_truth": rho(sorted(truth, key=lambda m: -truth[m])),
            "rounds": len(fits) - 1, "reason": reason,
            "judged": [(b.model_a, b.model_b, b.case) for b in battles]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tournaments", type=int, default=50)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--cases", type=int, default=200)
    args = ap.parse_args()
    ratios, rhos = [], []
    start = time.perf_counter()
    for seed in range(args.tournaments):
        r = tournament(seed, args.models, args.cases)
        ratios.append(r["ratio"])
        rhos.append(r["spearman"])
        print(f"elo_scheduling: tournament {seed}: {r['calls']} of {r['round_robin_calls']} "
              f"judge calls ({r['ratio']:.3f}), {r['rounds']} rounds, Spearman {r['spearman']:.3f} "
              f"with the round robin (round robin vs truth {r['spearman_truth']:.3f}); "
              f"{r['reason']}", file=sys.stderr, flush=True)
    print(f"elo_scheduling: {args.tournaments} tournaments in {time.perf_counter() - start:.0f} s;"
          f" ratio max {max(ratios):.3f}, Spearman min {min(rhos):.3f}", file=sys.stderr)
    print(f"elo_calls_ratio: {np.mean(ratios):.4f}")
    print(f"elo_scheduled_agreement: {np.mean([x >= 0.95 for x in rhos]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
