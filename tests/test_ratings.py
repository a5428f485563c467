"""Ratings from pairwise battles (pytest_aie/stats/ratings.py; scheduling, stopping and gates in
ranking.py): online Elo by hand, the
Bradley-Terry fit against scikit-learn's logistic regression (Chatbot Arena's method), its
ranking and interval coverage on simulated battles, cycles, the pair scheduler against the
round robin (benchmarks/elo_scheduling.py) and the ranking gates."""

from __future__ import annotations

import importlib.util
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr

from pytest_aie.errors import UsageError
from pytest_aie.stats.pairs import find_cycles, preferences, win_matrix
from pytest_aie.stats.ranking import (
    expect,
    parse_expectation,
    ranking_agreement,
    ranking_signal,
    ranking_stable,
    schedule,
    sign_test,
)
from pytest_aie.stats.ratings import (
    DEFAULT_RIDGE,
    ELO_SCALE,
    Battle,
    _fit_scipy,
    _newton,
    as_battles,
    bradley_terry,
    online_elo,
)

# six models, true ratings on the Elo scale with mean 1000 (the fit's default anchoring)
TRUE = {"m0": 800.0, "m1": 880.0, "m2": 960.0, "m3": 1040.0, "m4": 1120.0, "m5": 1200.0}


def simulate(truth: dict[str, float], n: int, seed: int, tie_share: float = 0.4
             ) -> list[tuple[str, str, str]]:
    """``n`` battles between uniformly drawn pairs; A beats B with the Bradley-Terry
    probability ``p`` of the true ratings. Ties (probability ``tie_share * min(p, 1 - p)``)
    are taken half from each side's wins, so the expected score stays ``p``, which is what
    counting a tie as half a win estimates."""
    rng = np.random.default_rng(seed)
    names = list(truth)
    pairs = list(combinations(names, 2))
    out = []
    for k, u in zip(rng.integers(0, len(pairs), n), rng.random(n)):
        a, b = pairs[k]
        if rng.random() < 0.5:
            a, b = b, a
        p = 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400))
        t = tie_share * min(p, 1 - p)
        out.append((a, b, "a" if u < p - t / 2 else "tie" if u < p + t / 2 else "b"))
    return out


# ------------------------------------------------------------------ online Elo


def test_online_elo_matches_the_arithmetic_by_hand():
    battles = [("A", "B", "a"), ("B", "C", "tie"), ("C", "A", "a")]
    # 1. A (1000) beats B (1000): E_A = 1 / (1 + 10 ** (0 / 400)) = 0.5
    #    R_A = 1000 + 32 * (1 - 0.5) = 1016, R_B = 1000 - 16 = 984
    # 2. B (984) ties C (1000): E_B = 1 / (1 + 10 ** ((1000 - 984) / 400)) = 1 / (1 + 10 ** 0.04)
    #    10 ** 0.04 = 1.096478196143185 -> E_B = 0.4769904127024377
    #    R_B = 984 + 32 * (0.5 - E_B) = 984.736306793522, R_C = 1000 - 0.736306793522
    # 3. C (999.263693206478) beats A (1016): E_C = 1 / (1 + 10 ** ((1016 - R_C) / 400))
    #    = 0.4759331307924147; R_C += 32 * (1 - E_C), R_A -= 32 * (1 - E_C)
    e_b = 1 / (1 + 10 ** 0.04)
    r_c = 1000 - 32 * (0.5 - e_b)
    e_c = 1 / (1 + 10 ** ((1016 - r_c) / 400))
    hand = {"A": 1016 - 32 * (1 - e_c), "B": 984 + 32 * (0.5 - e_b), "C": r_c + 32 * (1 - e_c)}
    assert hand["A"] == pytest.approx(999.2298601853573, abs=1e-9)  # the worked numbers above
    assert hand["B"] == pytest.approx(984.736306793522, abs=1e-9)
    assert hand["C"] == pytest.approx(1016.0338330211207, abs=1e-9)
    result = online_elo(battles)
    for m in hand:
        assert result.ratings[m] == pytest.approx(hand[m], abs=1e-9)
    steps = result.history
    assert [s.expected_a for s in steps] == pytest.approx([0.5, e_b, e_c], abs=1e-12)
    assert (steps[0].after_a, steps[0].after_b) == (1016.0, 984.0)
    assert (steps[2].model_a, steps[2].before_a, steps[2].before_b) == ("C", pytest.approx(r_c), 1016.0)
    assert result.ranking() == ["C", "A", "B"]
    # K and the starting rating are parameters
    other = online_elo(battles[:1], k=16, initial=1500)
    assert other.ratings == {"A": 1508.0, "B": 1492.0}


def test_shuffled_orders_average_the_online_elo_of_each_order():
    battles = simulate(TRUE, 300, seed=3)
    result = online_elo(battles, shuffles=25, seed=9)
    # the same 25 orders, replayed one at a time through the plain update
    order = np.random.default_rng(9).permuted(np.tile(np.arange(300), (25, 1)), axis=1)
    finals = [online_elo([battles[i] for i in row]).ratings for row in order]
    for m in TRUE:
        values = [f[m] for f in finals]
        assert result.ratings[m] == pytest.approx(np.mean(values), abs=1e-9)
        assert result.order_sd[m] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
    assert result.history == online_elo(battles).history  # the order given, recorded
    assert online_elo(battles, shuffles=25, seed=9) == result
    assert online_elo(battles, shuffles=25, seed=10).ratings != result.ratings


def test_match_order_misleads_online_elo_but_not_bradley_terry():
    # A beats B in 6 of their 10 battles: A is the better one. A's wins come first, its
    # losses last, when A is rated higher and each loss costs it more than a win gained.
    battles = [("A", "B", "a")] * 6 + [("A", "B", "b")] * 4
    elo = online_elo(battles)
    assert elo.ratings["A"] < elo.ratings["B"]  # wrong order
    assert online_elo(battles[::-1]).ratings["A"] > online_elo(battles[::-1]).ratings["B"]
    bt = bradley_terry(battles, n_boot=0, ridge=0)
    assert bt.ranking() == ["A", "B"]
    # the maximum-likelihood gap: P(A beats B) = 0.6 -> 400 log10(0.6 / 0.4)
    assert bt.ratings["A"] - bt.ratings["B"] == pytest.approx(400 * math.log10(1.5), abs=1e-6)
    assert bradley_terry(battles[::-1], n_boot=0, ridge=0).ratings == bt.ratings
    assert online_elo(battles, shuffles=200).ranking() == ["A", "B"]


# ------------------------------------------------------------------ Bradley-Terry


def _sklearn_ratings(battles, models, ridge: float, solver: str = "newton-cg") -> dict[str, float]:
    """Chatbot Arena's fit: logistic regression without intercept on the +1/-1 design
    matrix, a tie as one half-weighted row for each side; unpenalised (``ridge=0``) or with
    scikit-learn's L2 penalty ``|w|^2 / 2 + C * loss``, i.e. ``C = 1 / ridge``."""
    from sklearn.linear_model import LogisticRegression

    index = {m: i for i, m in enumerate(models)}
    rows, ys, weights = [], [], []
    for a, b, outcome in battles:
        x = np.zeros(len(models))
        x[index[a]], x[index[b]] = 1.0, -1.0
        for y, w in {"a": [(1, 1.0)], "b": [(0, 1.0)], "tie": [(1, 0.5), (0, 0.5)]}[outcome]:
            rows.append(x)
            ys.append(y)
            weights.append(w)
    lr = LogisticRegression(fit_intercept=False, C=1 / ridge if ridge else np.inf, solver=solver,
                            tol=1e-12, max_iter=100_000)
    lr.fit(np.array(rows), np.array(ys), sample_weight=np.array(weights))
    coef = lr.coef_[0]
    return {m: 1000 + ELO_SCALE * (coef[i] - coef.mean()) for m, i in index.items()}


@pytest.mark.parametrize("ridge", [0.0, DEFAULT_RIDGE, 1.0])
def test_bradley_terry_agrees_with_sklearn_logistic_regression(ridge):
    pytest.importorskip("sklearn")
    battles = simulate(TRUE, 2000, seed=1)
    assert sum(o == "tie" for *_, o in battles) > 100
    fit = bradley_terry(battles, ridge=ridge, n_boot=0)
    ref = _sklearn_ratings(battles, list(fit.models), ridge)
    for m in TRUE:
        assert fit.ratings[m] == pytest.approx(ref[m], abs=1e-6)
    # a named anchor moves every rating by the same amount and sits at base exactly
    anchored = bradley_terry(battles, ridge=ridge, n_boot=0, anchor="m2", base=1200)
    assert anchored.ratings["m2"] == 1200
    for m in TRUE:
        assert anchored.ratings[m] - 1200 == pytest.approx(ref[m] - ref["m2"], abs=1e-6)


def test_the_bootstraps_newton_fit_equals_the_scipy_fit():
    battles = simulate(TRUE, 500, seed=2)
    names = list(TRUE)
    w = np.zeros((6, 6))
    for a, b, o in battles:
        s = {"a": 1.0, "b": 0.0, "tie": 0.5}[o]
        w[names.index(a), names.index(b)] += s
        w[names.index(b), names.index(a)] += 1 - s
    for ridge in (0.0, DEFAULT_RIDGE):
        assert np.abs(_newton(w[None], ridge)[0] - _fit_scipy(w, ridge)).max() < 1e-8


def test_bradley_terry_recovers_the_true_ranking():
    for seed in range(5):
        fit = bradley_terry(simulate(TRUE, 2000, seed=seed), n_boot=0)
        rho = spearmanr([TRUE[m] for m in TRUE], [fit.ratings[m] for m in TRUE])[0]
        assert rho >= 0.95
        assert fit.n_battles == 2000 and sum(fit.battles.values()) == 4000
        assert np.mean(list(fit.ratings.values())) == pytest.approx(1000)


def _coverage(reps: int, n_boot: int) -> float:
    covered = []
    for seed in range(reps):
        fit = bradley_terry(simulate(TRUE, 2000, seed=100 + seed), n_boot=n_boot, seed=seed)
        covered += [fit.intervals[m][0] <= TRUE[m] <= fit.intervals[m][1] for m in TRUE]
    return float(np.mean(covered))


def test_bootstrap_intervals_cover_the_true_ratings_at_about_the_nominal_rate():
    # 100 simulations x 6 models = 600 intervals at 95%: binomial sd 0.009 (more: the six
    # intervals of one simulation are correlated); half-width intervals would cover ~68%
    assert 0.91 <= _coverage(100, n_boot=200) <= 0.99


@pytest.mark.slow
def test_bootstrap_interval_coverage_long():
    assert 0.93 <= _coverage(400, n_boot=500) <= 0.97


def test_a_model_that_won_everything_is_flagged_and_finite():
    battles = [("top", "x", "a")] * 5 + [("top", "y", "a")] * 3 + [("x", "y", "a"), ("y", "x", "a"),
                                                                     ("x", "y", "tie")]
    fit = bradley_terry(battles, n_boot=200)
    assert fit.unbounded == ("top",) and not fit.mle_exists
    assert all(math.isfinite(r) for r in fit.ratings.values())
    assert fit.ranking()[0] == "top"
    assert fit.ratings["top"] - fit.ratings["x"] > 400  # far above, held by the prior
    # a tie against top is enough to make the maximum-likelihood estimate exist
    fine = bradley_terry(battles + [("x", "top", "tie")], n_boot=0, ridge=0)
    assert fine.mle_exists and fine.unbounded == ()
    # a model with no battles (named in models) sits at the mean, flagged
    idle = bradley_terry(battles[-3:], models=["x", "y", "idle"], n_boot=0)
    assert idle.unbounded == ("idle",) and idle.ratings["idle"] == pytest.approx(1000)


def test_bad_battles_and_arguments_are_refused():
    with pytest.raises(ValueError, match="outcome 'draw'"):
        as_battles([("a", "b", "draw")])
    with pytest.raises(ValueError, match="compared with itself"):
        as_battles([("a", "a", "tie")])
    with pytest.raises(ValueError, match="not one of the models"):
        bradley_terry([("a", "b", "a")], models=["a"])
    with pytest.raises(UsageError, match="anchor model 'z'"):
        bradley_terry([("a", "b", "a")], anchor="z")
    # the pairwise judge's labels are read as-is
    assert as_battles([("a", "b", "A", 7), ("a", "b", "TIE")]) == [Battle("a", "b", "a", "7"),
                                                                  Battle("a", "b", "tie")]


def test_win_matrix_counts_ties_as_half_a_win():
    battles = [("a", "b", "a"), ("b", "a", "a"), ("a", "b", "tie"), ("a", "b", "a"), ("a", "c", "b")]
    wm = win_matrix(battles)
    ab, ba = wm[("a", "b")], wm[("b", "a")]
    assert (ab.wins, ab.losses, ab.ties, ab.battles) == (2, 1, 1, 4)
    assert ab.win_rate == pytest.approx(2.5 / 4) and ba.win_rate == pytest.approx(1.5 / 4)
    assert wm[("c", "a")].win_rate == 1.0 and ("b", "c") not in wm


# ------------------------------------------------------------------ intransitivity


def _record(winner: str, loser: str, wins: int, losses: int, ties: int = 0):
    return [(winner, loser, "a")] * wins + [(winner, loser, "b")] * losses + \
        [(loser, winner, "tie")] * ties


def test_a_significant_cycle_is_found_and_a_transitive_set_has_none():
    cyc = _record("A", "B", 20, 4, 3) + _record("B", "C", 19, 5) + _record("C", "A", 21, 3) + \
        _record("A", "D", 20, 2) + _record("B", "D", 20, 2) + _record("C", "D", 20, 2)
    found = find_cycles(cyc)
    assert [c.models for c in found] == [("A", "B", "C")]
    step = found[0].steps[0]
    assert (step.winner, step.loser, step.wins, step.losses, step.ties) == ("A", "B", 20, 4, 3)
    assert step.p_value == pytest.approx(binomtest(20, 24, 0.5).pvalue)  # ties dropped
    assert all(s.significant for s in found[0].steps)
    # the same preferences made transitive: C loses to A instead
    trans = _record("A", "B", 20, 4, 3) + _record("B", "C", 19, 5) + _record("A", "C", 21, 3) + \
        _record("A", "D", 20, 2) + _record("B", "D", 20, 2) + _record("C", "D", 20, 2)
    assert find_cycles(trans) == []
    # a cycle whose steps are not significant is not listed
    weak = _record("A", "B", 4, 1) + _record("B", "C", 4, 1) + _record("C", "A", 4, 1)  # p = 0.375
    assert find_cycles(weak) == [] and find_cycles(weak, adjust=None) == []
    assert [c.models for c in find_cycles(weak, alpha=0.4, adjust=None)] == [("A", "B", "C")]


def test_longer_cycles_and_holm():
    four = _record("A", "B", 15, 1) + _record("B", "C", 15, 1) + _record("C", "D", 15, 1) + \
        _record("D", "A", 15, 1)
    assert [c.models for c in find_cycles(four)] == [("A", "B", "C", "D")]
    assert find_cycles(four, max_length=3) == []
    prefs = preferences(four)
    raw = [p.p_value for p in prefs]
    assert [p.p_adjusted for p in prefs] == pytest.approx([min(1, 4 * raw[0])] * 4)
    assert [p.p_adjusted for p in preferences(four, adjust=None)] == raw


# ------------------------------------------------------------------ scheduling


def _bench(name: str = "elo_scheduling"):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schedule_spreads_a_first_round_and_never_repeats_a_case():
    models = ["a", "b", "c", "d"]
    first = schedule(models, [], None, 12, cases=["c1", "c2", "c3"], seed=1)
    pairs = [(p.model_a, p.model_b) for p in first]
    assert sorted(set(pairs)) == list(combinations(models, 2)) and len(first) == 12
    assert all(pairs.count(p) == 2 for p in set(pairs))
    done = [Battle(p.model_a, p.model_b, "tie", p.case) for p in first]
    second = schedule(models, done, None, 100, cases=["c1", "c2", "c3"], seed=2)
    assert len(second) == 6  # one case left per pair
    assert not {(p.model_a, p.model_b, p.case) for p in second} & \
        {(b.model_a, b.model_b, b.case) for b in done}
    assert schedule(models, [], None, 5, seed=3) == schedule(models, [], None, 5, seed=3)


def test_schedule_goes_where_the_order_is_in_doubt():
    # a and b beat c and d every time; a vs b and c vs d are even, a vs b with fewer battles
    battles = _record("a", "b", 5, 5) + _record("c", "d", 10, 10)
    for top in "ab":
        for bottom in "cd":
            battles += _record(top, bottom, 30, 0)
    fit = bradley_terry(battles, n_boot=300)
    picks = [tuple(sorted((p.model_a, p.model_b))) for p in
             schedule(["a", "b", "c", "d"], battles, fit, 40)]
    assert set(picks) == {("a", "b"), ("c", "d")}
    # priority u / sqrt(1 + n): a-b (10 battles) first; c-d's turn comes
    assert picks[:10] == [("a", "b")] * 10 and picks.count(("c", "d")) >= 10


def test_ranking_stable():
    battles = simulate(TRUE, 3000, seed=5)
    fit = bradley_terry(battles, n_boot=300)
    assert ranking_agreement(fit) > 0.95
    assert ranking_stable([fit] * 4).stable  # patience 3: the same ranking in 4 fits
    assert not ranking_stable([fit] * 3).stable
    assert ranking_stable([fit] * 2, patience=1).stable
    flipped = bradley_terry([(b, a, o) for a, b, o in battles[:100]], n_boot=300)
    assert not ranking_stable([flipped, fit, fit, fit]).stable
    unsure = bradley_terry(battles[:60], n_boot=300)
    assert ranking_agreement(unsure) < 0.9
    assert not ranking_stable([unsure] * 4).stable
    assert not ranking_stable([unsure, fit, fit, fit]).stable  # each fit must be sure
    assert ranking_stable([unsure], spent=10, budget=10).stable  # the budget is spent
    assert ranking_stable([fit]).unsettled == ()


def test_adaptive_scheduling_needs_far_fewer_judge_calls_than_the_round_robin():
    # the benchmark's tournaments (8 models, 200 cases: round robin 11,200 judge calls),
    # four of them (the benchmark runs 50)
    bench = _bench()
    runs = [bench.tournament(seed, n_models=8, n_cases=200) for seed in range(4)]
    for r in runs:
        assert r["spearman"] >= 0.95, r
        # each battle judged once (a pair never meets twice on a case), in both orders; the
        # round robin: 28 pairs x 200 cases x 2 orders
        assert len(set(r["judged"])) == len(r["judged"])
        assert r["calls"] == 2 * len(r["judged"]) and r["round_robin_calls"] == 28 * 200 * 2
        assert r["ratio"] == pytest.approx(len(r["judged"]) / (28 * 200))
    assert np.mean([r["ratio"] for r in runs]) <= 0.3, runs


# ------------------------------------------------------------------ gates


def test_parse_expectation():
    e = parse_expectation("candidate > base")
    assert (e.left, e.op, e.right, e.margin) == ("candidate", ">", "base", 0.0)
    e = parse_expectation("gpt-4o-mini >= llama-3.1:8b - 25")
    assert (e.left, e.op, e.right, e.margin) == ("gpt-4o-mini", ">=", "llama-3.1:8b", -25.0)
    e = parse_expectation("a < b")  # swapped: b > a
    assert (e.left, e.op, e.right, e.margin) == ("b", ">", "a", 0.0)
    e = parse_expectation("a <= b + 10")  # a - b <= 10  <=>  b - a >= -10
    assert (e.left, e.op, e.right, e.margin) == ("b", ">=", "a", -10.0)
    e = parse_expectation("'my model' > \"base model\" + 5.5")
    assert (e.left, e.right, e.margin) == ("my model", "base model", 5.5)
    for bad in ["candidate", "a >> b", "a > b > c", "a = b", "a > b +", "> b", "a > a"]:
        with pytest.raises(UsageError) as err:
            parse_expectation(bad)
        assert err.value.fix


def test_gates_pass_fail_and_inconclusive_on_the_sign_test():
    battles = _record("good", "base", 70, 30) + _record("same", "base", 50, 50, 10)
    fit = bradley_terry(battles, n_boot=500)
    verdicts = {v.expectation.text: v for v in expect(fit, [
        "good > base", "base > good", "same > base", "good >= base + 300", "good >= base - 1000",
        "base < good"])}
    assert verdicts["good > base"].verdict == "pass"
    assert verdicts["good > base"].low > 0
    assert verdicts["base > good"].verdict == "fail"
    assert verdicts["same > base"].verdict == "inconclusive"
    # +300 Elo is a win rate of 1 / (1 + 10^-0.75) = 1 / 1.17783 = 0.84902: 70 of 100 is significantly below
    assert verdicts["good >= base + 300"].verdict == "fail"
    assert verdicts["good >= base + 300"].test.p0 == pytest.approx(0.84902, abs=1e-5)
    assert verdicts["good >= base - 1000"].verdict == "pass"
    assert verdicts["base < good"].verdict == "pass"
    # the reference: scipy's exact binomial test, one-sided
    g = verdicts["good > base"]
    assert g.test.p_pass == pytest.approx(binomtest(70, 100, 0.5, alternative="greater").pvalue)
    assert verdicts["base > good"].test.p_fail == pytest.approx(
        binomtest(30, 100, 0.5, alternative="less").pvalue)
    assert (g.test.wins, g.test.losses, g.test.ties) == (70, 30, 0)
    assert verdicts["same > base"].test.ties == 10
    # good and base met only each other: the maximum-likelihood gap is the log odds of 70 to
    # 30 on the Elo scale, 400 log10(7/3) = 147.19 (the ridge prior takes a hair off)
    assert g.difference == pytest.approx(400 * math.log10(7 / 3), abs=0.1)
    assert g.low < g.difference < g.high and g.prob_better > 0.975
    # the verdict needs no bootstrap
    assert expect(bradley_terry(battles, n_boot=0), "good > base")[0].verdict == "pass"
    with pytest.raises(UsageError, match="'nobody'"):
        expect(fit, ["nobody > base"])


@pytest.mark.parametrize("wins, losses, ties, verdict, why", [
    (4, 0, 96, "inconclusive", "too few decisive battles: a vs b 4-0, 96 ties; a one-sided sign "
                               "test at level 0.025 needs at least 6"),
    (6, 0, 0, "pass", "a vs b 6-0, 0 ties: one-sided sign test p = 0.0156 <= 0.025"),
    (0, 0, 12, "inconclusive", "no decisive battle: a vs b 0-0, 12 ties"),
    (0, 6, 30, "fail", "the decisive battles favour b"),
    (5, 0, 0, "inconclusive", "too few decisive battles"),
    (8, 3, 5, "inconclusive", "the decisive battles do not decide"),
])
def test_the_sign_test_cases_the_issue_names(wins, losses, ties, verdict, why):
    battles = _record("a", "b", wins, losses, ties) + _record("c", "b", 3, 3)
    got = expect(bradley_terry(battles, n_boot=50), "a > b")[0]
    assert got.verdict == verdict and why in got.reason, got.reason
    n = wins + losses
    if n:
        assert got.test.p_pass == pytest.approx(binomtest(wins, n, 0.5, alternative="greater").pvalue)
    if (wins, losses) == (6, 0):
        assert got.test.p_pass == pytest.approx(1 / 64)  # by hand: 0.5^6


@pytest.mark.parametrize("margin", [0.0, 50.0, -100.0])
def test_every_small_record_is_decided_as_scipys_exact_test(margin):
    # property: pass exactly when scipy's one-sided exact test (against the win rate at the
    # margin) is at most 0.025, fail exactly when the other side's is, ties never matter
    p0 = 1 / (1 + 10 ** (-margin / 400))
    text = f"a > b {'+' if margin >= 0 else '-'} {abs(margin):g}"
    for wins in range(13):
        for losses in range(13):
            ties = (wins * 7 + losses) % 5
            test = sign_test(wins, losses, ties, margin=margin)
            if wins + losses == 0:
                assert test.verdict == "inconclusive"
                continue
            up = binomtest(wins, wins + losses, p0, alternative="greater").pvalue
            down = binomtest(wins, wins + losses, p0, alternative="less").pvalue
            want = "pass" if up <= 0.025 else "fail" if down <= 0.025 else "inconclusive"
            assert test.verdict == want, (wins, losses, ties, up, down)
            if (wins + 2 * losses) % 7 == 0:  # some of them through the fit and expect
                fit = bradley_terry(_record("a", "b", wins, losses, ties), n_boot=0)
                assert expect(fit, text)[0].verdict == want


def test_the_level_follows_the_confidence():
    fit = bradley_terry(_record("a", "b", 5, 0), n_boot=0, confidence=0.9)  # level 0.05
    assert expect(fit, "a > b")[0].verdict == "pass"  # 0.5^5 = 0.031
    assert expect(fit, "a > b", level=0.025)[0].verdict == "inconclusive"
    with pytest.raises(ValueError):
        sign_test(1, 0, level=0.6)


def test_no_signal_from_a_judge_that_follows_the_answer_order_or_from_ties():
    # 97% of battles flipped with the order: the issue's judge
    assert "changed with the answer order in 35 of 36" in ranking_signal(
        [1, 0, 0], 36, flips=35, flip_pairs=36)
    # a coin: 18 flips of 36 is what a judge that ignores the answers does
    assert ranking_signal([9, 9, 9], 36, flips=18, flip_pairs=36) is not None
    # a consistent judge: 3 flips of 36 is significantly fewer than half (p = 1e-7)
    assert ranking_signal([11, 11, 11], 36, flips=3, flip_pairs=36) is None
    # boundary by hand: P(X <= 11 | 36, 1/2) = 0.0144 <= 0.025, P(X <= 12) = 0.0326 > 0.025
    assert ranking_signal([20], 36, flips=11, flip_pairs=36) is None
    assert ranking_signal([20], 36, flips=12, flip_pairs=36) is not None
    # too few decisive battles for any pair: 5 < the 6 a sign test needs at 0.025
    assert "5 of 300 battles decisive (2%)" in ranking_signal([5, 0, 0], 300)
    assert ranking_signal([6, 0, 0], 300) is None
    assert ranking_signal([], 0) is not None


def test_all_tied_battles_are_never_a_stable_ranking():
    tied = [("a", "b", "tie"), ("b", "c", "tie"), ("a", "c", "tie")] * 40
    fit = bradley_terry(tied, n_boot=200)
    assert ranking_agreement(fit) == 0.0
    assert not ranking_stable([fit] * 5).stable
    # two models tied with each other, both clearly above a third: still not stable
    half = _record("a", "c", 30, 0) + _record("b", "c", 30, 0) + _record("a", "b", 0, 0, 30)
    fit = bradley_terry(half, n_boot=200)
    assert not ranking_stable([fit] * 5).stable


# ------------------------------------------------------------------ simulations (make bench)


@pytest.mark.parametrize("share, n", [(1.0, 30), (0.5, 60), (0.3, 200), (0.03, 200), (0.01, 10)])
def test_equally_good_models_rarely_fail_an_expectation(share, n):
    # benchmarks/elo_verdicts.py (elo_aa_false_fail_rate) on a smaller grid: 6 equal models,
    # 15 expectations per run, 20 runs per cell
    failed, total = _bench("elo_verdicts").aa_cell(n, share, runs=20, seed=3)
    assert total == 300 and failed / total <= 0.05, (failed, total)


def test_the_power_to_pass_a_70_percent_winner_is_the_exact_sign_tests():
    bench = _bench("elo_verdicts")
    simulated = bench.power(250, seed=1)  # through bradley_terry and expect
    exact = bench.exact_power()
    # by hand: with 30 decisive battles the test needs 21 wins (P(X >= 21 | 30, 1/2) = 0.021,
    # P(X >= 20) = 0.049), which a 70% winner gets with probability 0.589
    assert binomtest(21, 30, 0.5, alternative="greater").pvalue <= 0.025
    assert binomtest(20, 30, 0.5, alternative="greater").pvalue > 0.025
    assert 0.45 < exact < 0.6 and abs(simulated - exact) < 3 * math.sqrt(exact * (1 - exact) / 250)
    assert bench.exact_power(110) >= 0.8  # the battles per pair that power 0.8 needs
