"""``make bench`` figures for the statistical gates, by seeded simulation through the
project's own gate functions (records -> baseline / comparisons -> exit status).

* ``aa_rate_clustered``: 50 groups of 20 cases, pass/fail; each case has a fixed difficulty
  and each *run* gives each group a shared shock N(0, 1) on the logit scale (paraphrases of
  one question rise and fall together); groups declared. Baseline and candidate are the
  same model. Share of replicates whose exit status is 11 (regression).
* ``aa_rate_tags``: n = 1,000 pass/fail cases in 10 tags of 100, candidate vs base from the
  same model (``compare_models``: the suite and every tag). Share of replicates in which
  anything changes the exit status.
* ``aa_rate_score_n8``: the paired score gate on 8 cases, same model twice (skewed scores
  with a case effect). Share flagged as regression.
* ``power_5pt_n1000``: a candidate 5 points worse on 1,000 cases, with 15% of the pairs
  discordant; share of replicates that exit 11.

Each figure is a ``name: value`` line on stdout; details on stderr. ``--reps N`` changes the
number of replicates (default 2,000). The scenario functions are imported by
``tests/test_stats_simulation.py``, which runs fewer replicates with a tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import numpy as np

from pytest_aie.errors import EXIT_REGRESSION
from pytest_aie.gates.baseline import make_baseline
from pytest_aie.gates.comparisons import compare_models, compare_to_baseline
from pytest_aie.gates.conclusion import exit_status
from pytest_aie.gates.policy import GatePolicy
from pytest_aie.stats import paired_score_gate

POLICY = GatePolicy()  # alpha 0.05, margin 0.02: the defaults a user gets


def _records(passed: np.ndarray, *, groups: list[str | None] | None = None,
             tags: list[list[str]] | None = None, base: np.ndarray | None = None,
             suite: str = "sim") -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(passed.tolist()):
        rec: dict[str, Any] = {"type": "case", "suite": suite, "metric": "exact.match",
                               "case_id": f"c{i}", "passed": p, "value": float(p),
                               "status": "passed" if p else "failed", "binary": True,
                               "group": groups[i] if groups else None,
                               "tags": tags[i] if tags else []}
        if base is not None:  # the base model's record of the same case
            b = bool(base[i])
            out.append({**rec, "passed": b, "value": float(b), "status": "passed" if b else "failed",
                        "model": "default", "gated": False})
            rec["model"] = "candidate"
        out.append(rec)
    return out


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def clustered_replicate(rng: np.random.Generator, n_groups: int = 50, size: int = 20,
                        shock_sd: float = 1.0, declare: bool = True) -> bool:
    """One A/A comparison with a stored baseline; True if the run would exit 11."""
    n = n_groups * size
    group_of = np.repeat(np.arange(n_groups), size)
    difficulty = 1.0 + rng.normal(0.0, 1.0, n)  # about 70% pass

    def run() -> np.ndarray:
        shock = rng.normal(0.0, shock_sd, n_groups)[group_of]
        return rng.random(n) < _expit(difficulty + shock)

    groups = [f"g{g}" for g in group_of] if declare else None
    baseline = make_baseline("sim", {}, _records(run(), groups=groups))
    comps = compare_to_baseline(_records(run(), groups=groups), baseline, POLICY)
    return exit_status([], comps, POLICY, 0)[0] == EXIT_REGRESSION


def _latent_pass(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-case pass probability: 55% always solved, 15% never, 30% flaky U(0.2, 0.8)."""
    kind = rng.random(n)
    return np.where(kind < 0.55, 1.0, np.where(kind < 0.70, 0.0, rng.uniform(0.2, 0.8, n)))


def tags_replicate(rng: np.random.Generator, n: int = 1000, n_tags: int = 10) -> bool:
    """One A/A base-vs-candidate run with tags; True if anything changes the exit status."""
    p = _latent_pass(rng, n)
    tags = [[f"t{i % n_tags}"] for i in range(n)]
    recs = _records(rng.random(n) < p, tags=tags, base=rng.random(n) < p)
    comps = compare_models(recs, POLICY)
    return exit_status([], comps, POLICY, 0)[0] != 0


def score_replicate(rng: np.random.Generator, n: int = 8, unchanged: float = 0.0) -> bool:
    """One A/A paired score comparison on ``n`` cases; ``unchanged`` of the cases give the
    same score in both runs (deterministic answers). True if flagged as a regression."""
    quality = rng.beta(2.0, 5.0, n)  # skewed case scores
    same = rng.random(n) < unchanged

    def run() -> np.ndarray:
        return np.clip(quality + rng.gamma(1.0, 0.1, n) - 0.1, 0.0, 1.0)

    base, cand = run(), run()
    cand = np.where(same, base, cand)
    return paired_score_gate(list(base), list(cand), margin=POLICY.margin,
                             alpha=POLICY.alpha).regressed


def power_replicate(rng: np.random.Generator, n: int = 1000, drop: float = 0.05,
                    discordance: float = 0.15, n_tags: int = 0) -> bool:
    """A candidate ``drop`` worse, ``discordance`` of pairs disagreeing (``(d + drop)/2``
    newly failing, ``(d - drop)/2`` newly passing, 60% passing in both); True if exit 11."""
    u = rng.random(n)
    b_cut = (discordance + drop) / 2
    both = discordance + 0.60
    base = (u < b_cut) | ((u >= discordance) & (u < both))
    cand = ((u >= b_cut) & (u < discordance)) | ((u >= discordance) & (u < both))
    tags = [[f"t{i % n_tags}"] for i in range(n)] if n_tags else None
    comps = compare_models(_records(cand, tags=tags, base=base), POLICY)
    return exit_status([], comps, POLICY, 0)[0] == EXIT_REGRESSION


def rate(replicate: Callable[..., bool], reps: int, seed: int, **kwargs: Any) -> float:
    rng = np.random.default_rng(seed)
    return sum(replicate(rng, **kwargs) for _ in range(reps)) / reps


FIGURES: dict[str, tuple[Callable[..., bool], dict[str, Any], int]] = {
    "aa_rate_clustered": (clustered_replicate, {}, 101),
    "aa_rate_tags": (tags_replicate, {}, 202),
    "aa_rate_score_n8": (score_replicate, {}, 303),
    "power_5pt_n1000": (power_replicate, {}, 404),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    for name, (replicate, kwargs, seed) in FIGURES.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        value = rate(replicate, args.reps, seed, **kwargs)
        half = 1.96 * np.sqrt(max(value * (1 - value), 1e-9) / args.reps)
        print(f"{name}: {value:.4f}", flush=True)
        print(f"  {name}: {args.reps} replicates, seed {seed}, +/- {half:.4f} (95% Monte Carlo), "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
