"""Unit tests for pytest_aie.stats against published worked examples, brute force, and
(where installed) statsmodels."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from pytest_aie.errors import UsageError
from pytest_aie.stats import (
    Aggregate,
    aggregate,
    binary_gate_from_counts,
    cluster_totals,
    clustered_interval,
    consistency,
    flaky,
    holm,
    mcnemar_exact,
    mean_interval,
    mean_t_interval,
    mean_t_pvalue,
    paired_binary_gate,
    paired_proportion_interval,
    paired_score_gate,
    pass_at_k,
    pass_hat_k,
    pass_rate_interval,
    sampling_summary,
    sampling_table,
    sign_flip_pvalue,
    threshold_pvalue,
    verdict,
)

# ---------------------------------------------------------------- pass-rate intervals

# Newcombe (1998) "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Stat Med 17:857-872, Table II: Wilson score (method 3) and
# Clopper-Pearson exact (method 5) limits, 4 decimals.
NEWCOMBE_1998 = [
    # passes, n, wilson (low, high), exact (low, high)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize("passes,n,wilson,exact", NEWCOMBE_1998)
def test_pass_rate_interval_matches_newcombe_1998(passes, n, wilson, exact):
    w = pass_rate_interval(passes, n, method="wilson")
    e = pass_rate_interval(passes, n, method="exact")
    assert w.estimate == pytest.approx(passes / n)
    assert (round(w.low, 4), round(w.high, 4)) == wilson
    assert (round(e.low, 4), round(e.high, 4)) == exact
    assert e.low <= w.low and e.high >= w.high  # Clopper-Pearson is the wider one here


@pytest.mark.parametrize("passes,n", [(0, 1), (1, 1), (3, 7), (50, 100), (999, 1000)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_closed_form(passes, n, confidence):
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = passes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    w = pass_rate_interval(passes, n, confidence)
    assert w.low == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert w.high == pytest.approx(min(1.0, centre + half), abs=1e-12)
    assert w.confidence == confidence


def test_wilson_matches_scipy_binomtest_everywhere():
    """Wilson is computed in closed form (no scipy.stats import on every run): it must equal
    scipy's own Wilson interval on every count up to n = 60 and at several levels."""
    worst = 0.0
    for n in range(1, 61):
        for passes in range(n + 1):
            for confidence in (0.5, 0.9, 0.95, 0.99):
                ci = sps.binomtest(passes, n).proportion_ci(confidence_level=confidence,
                                                            method="wilson")
                got = pass_rate_interval(passes, n, confidence)
                worst = max(worst, abs(got.low - ci.low), abs(got.high - ci.high))
    assert worst < 1e-12


def test_pass_rate_interval_against_statsmodels():
    sm = pytest.importorskip("statsmodels.stats.proportion")
    for passes, n in [(0, 5), (3, 17), (81, 263), (990, 1000)]:
        for ours, theirs in [("wilson", "wilson"), ("exact", "beta")]:
            lo, hi = sm.proportion_confint(passes, n, alpha=0.05, method=theirs)
            got = pass_rate_interval(passes, n, method=ours)  # type: ignore[arg-type]
            assert (got.low, got.high) == pytest.approx((lo, hi), abs=1e-9)


@pytest.mark.parametrize("passes,n", [(-1, 5), (6, 5), (0, 0)])
def test_pass_rate_interval_rejects_bad_counts(passes, n):
    with pytest.raises(UsageError, match="Fix:"):
        pass_rate_interval(passes, n)


def test_pass_rate_interval_rejects_bad_method_and_confidence():
    with pytest.raises(UsageError):
        pass_rate_interval(1, 2, method="wald")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        pass_rate_interval(1, 2, confidence=95)


# ---------------------------------------------------------------- mean intervals


def test_mean_interval_agrees_with_t_interval_on_normal_data():
    x = np.random.default_rng(7).normal(0.6, 0.2, size=400)
    got = mean_interval(x, n_resamples=4000)
    t_lo, t_hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert got.method == "bootstrap-bca"
    assert got.estimate == pytest.approx(x.mean())
    assert got.low == pytest.approx(t_lo, abs=0.004)
    assert got.high == pytest.approx(t_hi, abs=0.004)


def test_mean_interval_is_seeded_and_seed_matters():
    x = np.random.default_rng(1).random(50)
    assert mean_interval(x, seed=3) == mean_interval(x, seed=3)
    assert mean_interval(x, seed=3).low != mean_interval(x, seed=4).low


def test_mean_interval_bca_is_skew_aware():
    x = np.random.default_rng(2).exponential(1.0, size=200)
    got = mean_interval(x, n_resamples=4000)
    # a right-skewed mean has a longer upper arm; a symmetric interval would not
    assert got.high - got.estimate > got.estimate - got.low


@pytest.mark.parametrize("values,why", [([0.7], "n<2"), ([0.5, 0.5, 0.5], "all values equal")])
def test_mean_interval_degenerate_cases_are_quiet(values, why):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = mean_interval(values)
    assert got.low == got.high == got.estimate == values[0]
    assert why in got.method


def test_mean_interval_rejects_empty_and_nan():
    with pytest.raises(UsageError):
        mean_interval([])
    with pytest.raises(UsageError, match="NaN"):
        mean_interval([0.1, float("nan")])


# ---------------------------------------------------------------- clustered intervals


def _clustered_data(groups: int = 40, size: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.5, 0.2, size=groups)
    values = np.concatenate([c + rng.normal(0, 0.05, size=size) for c in centres])
    tags = [f"g{g}" for g in range(groups) for _ in range(size)]
    return values, tags


def test_clustered_interval_widens_for_correlated_cases():
    values, tags = _clustered_data()
    iid = mean_interval(values, n_resamples=3000)
    cl = clustered_interval(values, tags, n_resamples=3000)
    assert cl.estimate == pytest.approx(values.mean())
    assert "40 groups" in cl.method
    # intraclass correlation ~0.94 with 10 cases per group: design effect ~9.5, so the
    # clustered interval is about 3x as wide as the independent-case one
    assert (cl.high - cl.low) > 2.5 * (iid.high - iid.low)


def test_clustered_interval_matches_cluster_robust_standard_error():
    values, tags = _clustered_data(groups=60, size=5, seed=3)
    cl = clustered_interval(values, tags, n_resamples=4000)
    means = values.reshape(60, 5).mean(axis=1)  # equal group sizes: pooled mean = mean of means
    se = means.std(ddof=1) / math.sqrt(60)
    z = sps.norm.ppf(0.975)
    assert (cl.high - cl.low) / (2 * z * se) == pytest.approx(1.0, abs=0.15)


def test_clustered_interval_against_statsmodels_cluster_robust_se():
    sm = pytest.importorskip("statsmodels.api")
    values, tags = _clustered_data(groups=50, size=6, seed=5)
    codes = np.unique(tags, return_inverse=True)[1]
    fit = sm.OLS(values, np.ones_like(values)).fit(cov_type="cluster",
                                                   cov_kwds={"groups": codes})
    lo, hi = fit.conf_int(alpha=0.05)[0]
    cl = clustered_interval(values, tags, n_resamples=4000)
    assert (cl.high - cl.low) / (hi - lo) == pytest.approx(1.0, abs=0.15)
    assert cl.estimate == pytest.approx(fit.params[0])


def test_clustered_interval_with_singleton_groups_resembles_iid():
    x = np.random.default_rng(4).random(300)
    cl = clustered_interval(x, [None] * 300, n_resamples=3000)
    iid = mean_interval(x, n_resamples=3000)
    assert (cl.high - cl.low) == pytest.approx(iid.high - iid.low, rel=0.1)


def test_clustered_interval_one_group_falls_back_and_mismatch_raises():
    got = clustered_interval([0.1, 0.5, 0.9], ["a", "a", "a"])
    assert "unclustered" in got.method and got.low < got.high
    with pytest.raises(UsageError, match="groups"):
        clustered_interval([0.1, 0.2], ["a"])


# ---------------------------------------------------------------- aggregate and verdict


def test_aggregate_binary_skips_unmeasured():
    agg = aggregate([True, False, None, True, float("nan")], binary=True)
    assert (agg.n, agg.measured, agg.unmeasured) == (5, 3, 2)
    assert agg.estimate == pytest.approx(2 / 3)
    w = pass_rate_interval(2, 3)
    assert (agg.low, agg.high, agg.method) == (w.low, w.high, "wilson")
    assert aggregate([1, 0, 1], binary=True, method="exact").method == "exact"


def test_aggregate_continuous_uses_bootstrap():
    agg = aggregate([0.2, None, 0.4, 0.9, 0.5], binary=False)
    assert (agg.measured, agg.unmeasured) == (4, 1)
    assert agg.estimate == pytest.approx(0.5)
    assert agg.method == "bootstrap-bca" and agg.low < 0.5 < agg.high


def test_aggregate_nothing_measured():
    agg = aggregate([None, None], binary=True)
    assert agg == Aggregate(2, 0, 2, None, None, None, "none measured", 0.95)
    assert verdict(agg, 0.5) == "inconclusive"
    assert agg.to_dict()["estimate"] is None


def test_aggregate_binary_rejects_scores():
    with pytest.raises(UsageError, match="binary=False"):
        aggregate([0.5, 1.0], binary=True)


def test_aggregate_clustered_binary_is_never_narrower_than_wilson():
    rng = np.random.default_rng(11)
    # 30 questions x 4 paraphrases; whether a question is answered depends on the question
    q_pass = rng.random(30) < 0.7
    values = [bool(q_pass[g]) if rng.random() < 0.9 else not q_pass[g]
              for g in range(30) for _ in range(4)]
    tags = [f"q{g}" for g in range(30) for _ in range(4)]
    clustered = aggregate(values, binary=True, groups=tags)
    plain = aggregate(values, binary=True)
    assert "cluster-bootstrap" in clustered.method
    assert clustered.estimate == plain.estimate
    assert clustered.low <= plain.low and clustered.high >= plain.high
    assert (clustered.high - clustered.low) > 1.3 * (plain.high - plain.low)
    # every case passing: the cluster bootstrap alone would say [1, 1]; the hull keeps Wilson
    allpass = aggregate([True] * 40, binary=True, groups=[f"q{i // 4}" for i in range(40)])
    assert allpass.low == pytest.approx(pass_rate_interval(40, 40).low)


def test_aggregate_unshared_groups_are_not_clustered():
    agg = aggregate([True, False, True], binary=True, groups=["a", "b", None])
    assert agg.method == "wilson"


def test_aggregate_group_length_mismatch():
    with pytest.raises(UsageError):
        aggregate([True, False], binary=True, groups=["a"])


def _agg(est, low, high):
    return Aggregate(100, 100, 0, est, low, high, "test", 0.95)


@pytest.mark.parametrize("low,high,expected", [
    (0.80, 0.9, "pass"),  # low == threshold clears it
    (0.81, 0.9, "pass"),
    (0.70, 0.79, "fail"),
    (0.70, 0.80, "inconclusive"),  # high == threshold does not lie wholly below
    (0.75, 0.85, "inconclusive"),
])
def test_verdict_interval_mode(low, high, expected):
    assert verdict(_agg((low + high) / 2, low, high), 0.8) == expected


def test_verdict_point_mode_and_bad_mode():
    assert verdict(_agg(0.80, 0.7, 0.9), 0.8, mode="point") == "pass"
    assert verdict(_agg(0.79, 0.7, 0.9), 0.8, mode="point") == "fail"
    with pytest.raises(UsageError):
        verdict(_agg(0.79, 0.7, 0.9), 0.8, mode="median")  # type: ignore[arg-type]


def test_verdict_on_real_aggregates():
    many = aggregate([True] * 95 + [False] * 5, binary=True)  # Wilson (0.888, 0.978)
    assert verdict(many, 0.85) == "pass"
    assert verdict(many, 0.98) == "fail"
    assert verdict(many, 0.95) == "inconclusive"
    few = aggregate([True] * 9 + [False], binary=True)  # 90% of 10 cases proves little
    assert verdict(few, 0.8) == "inconclusive"
    assert verdict(few, 0.8, mode="point") == "pass"


# ---------------------------------------------------------------- repeated sampling


def _brute_force(n: int, c: int, k: int) -> tuple[float, float]:
    """Probability that k of the n samples, drawn without replacement, contain at least
    one pass / only passes, by enumerating every subset."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    any_pass = sum(any(samples[i] for i in s) for s in subsets)
    all_pass = sum(all(samples[i] for i in s) for s in subsets)
    return any_pass / len(subsets), all_pass / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_and_pass_hat_k_match_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            at, hat = _brute_force(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(at, abs=1e-15)
            assert pass_hat_k(n, c, k) == pytest.approx(hat, abs=1e-15)


def test_pass_at_k_large_n_is_stable():
    assert pass_at_k(200, 3, 1) == pytest.approx(3 / 200, rel=1e-15)
    assert pass_hat_k(200, 3, 1) == pytest.approx(3 / 200, rel=1e-15)
    # Chen et al.'s numerically stable product form as an independent reference
    n, c, k = 5000, 7, 100
    ref = 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
    assert pass_at_k(n, c, k) == pytest.approx(ref, rel=1e-12)
    # a tiny pass^k that naive factorials would overflow on; log-gamma reference
    n, c, k = 3000, 2900, 500
    log_ref = (math.lgamma(c + 1) - math.lgamma(c - k + 1) - math.lgamma(n + 1)
               + math.lgamma(n - k + 1))
    assert math.log(pass_hat_k(n, c, k)) == pytest.approx(log_ref, rel=1e-10)
    assert 0.0 < pass_hat_k(n, c, k) < 1e-6


def test_pass_at_k_rejects_bad_arguments():
    for n, c, k in [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)]:
        with pytest.raises(UsageError):
            pass_at_k(n, c, k)
        with pytest.raises(UsageError):
            pass_hat_k(n, c, k)


def test_consistency_and_flaky():
    assert consistency([True, True, False, None]) == pytest.approx(2 / 3)
    assert consistency(["Paris", "paris", "Paris", "Paris"]) == 0.75
    assert consistency([None, None]) is None
    cases = {"a": [True, True, True], "b": [True, False, True], "c": [None, False],
             "d": ["x", "y"], "e": []}
    assert flaky(cases) == ["b", "d"]


def test_sampling_summary():
    cases = {"a": [True] * 5, "b": [True, False, False, False, False], "c": [False, None]}
    s = sampling_summary(cases, k=2)
    assert s.cases == 2 and s.skipped == ["c"]
    assert s.pass_at_k == pytest.approx((1.0 + pass_at_k(5, 1, 2)) / 2)
    assert s.pass_hat_k == pytest.approx((1.0 + 0.0) / 2)
    assert s.mean_consistency == pytest.approx((1.0 + 0.8 + 1.0) / 3)
    assert s.flaky == ["b"]
    assert s.to_dict()["k"] == 2
    with pytest.raises(UsageError):
        sampling_summary(cases, k=0)


# ---------------------------------------------------------------- McNemar and paired interval


def test_mcnemar_exact_published_examples():
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91. Bentur et al. (2009)
    # airway hyper-responsiveness: 1 and 7 discordant pairs, exact conditional p = 0.070.
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256) == pytest.approx(0.0703125)
    assert mcnemar_exact(7, 1) == mcnemar_exact(1, 7)
    # Cavo et al. (2012) complete response: 6 and 16 discordant pairs, p = 0.052479
    # (Fagerland et al., Statistical Analysis of Contingency Tables, ch. 8).
    assert round(mcnemar_exact(6, 16), 6) == 0.052479


def test_mcnemar_exact_by_hand_and_one_sided():
    # 10 discordant pairs, 1 vs 9: P(X <= 1 | Bin(10, 1/2)) = 11/1024, two-sided doubles it
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    assert mcnemar_exact(9, 1, "greater") == pytest.approx(11 / 1024, rel=1e-12)
    assert mcnemar_exact(1, 9, "greater") == pytest.approx(1 - 1 / 1024, rel=1e-12)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    with pytest.raises(UsageError):
        mcnemar_exact(-1, 3)


def test_mcnemar_exact_against_statsmodels():
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for b, c in [(1, 7), (6, 16), (30, 12), (100, 85)]:
        ref = contingency.mcnemar([[50, b], [c, 40]], exact=True).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-10)


def test_paired_proportion_interval_published_example():
    # Cavo et al. (2012) table [[59, 6], [16, 80]]: Newcombe square-and-add interval for the
    # difference -0.0621 (95% CI -0.1186 to -0.0046), Fagerland, Lydersen & Laake (2017).
    # Candidate passes in 59 + 6 cases, baseline in 59 + 16.
    ci = paired_proportion_interval(n11=59, b=16, c=6, n00=80)
    assert (round(ci.estimate, 4), round(ci.low, 4), round(ci.high, 4)) == (-0.0621, -0.1186, -0.0046)


def test_paired_proportion_interval_properties():
    a = paired_proportion_interval(40, 12, 5, 43)
    swapped = paired_proportion_interval(40, 5, 12, 43)
    assert (a.low, a.high) == pytest.approx((-swapped.high, -swapped.low))
    narrow = paired_proportion_interval(40, 12, 5, 43, confidence=0.9)
    assert a.low < narrow.low < narrow.high < a.high
    none = paired_proportion_interval(60, 0, 0, 40)
    assert none.estimate == 0 and none.low < 0 < none.high
    with pytest.raises(UsageError):
        paired_proportion_interval(0, 0, 0, 0)


# ---------------------------------------------------------------- paired binary gate


def _pairs(n11: int, b: int, c: int, n00: int) -> tuple[list[bool], list[bool]]:
    base = [True] * n11 + [True] * b + [False] * c + [False] * n00
    cand = [True] * n11 + [False] * b + [True] * c + [False] * n00
    return base, cand


def test_gate_identical_runs_do_not_regress():
    base = [True, False, True, True, None] * 40
    res = paired_binary_gate(base, list(base))
    assert not res.regressed and not res.improved
    assert res.delta == 0 and res.n == 160 and res.p_value == 1.0
    assert res.newly_failing_idx == [] == res.newly_passing_idx


def test_gate_catches_a_large_drop_and_names_the_cases():
    base, cand = _pairs(600, 100, 50, 250)
    res = paired_binary_gate(base, cand)
    assert res.regressed and not res.improved
    assert res.delta == pytest.approx(-0.05)
    assert res.p_value == pytest.approx(mcnemar_exact(100, 50, "greater"))
    assert res.newly_failing_idx == list(range(600, 700))
    assert res.newly_passing_idx == list(range(700, 750))
    assert res.low < -0.05 < res.high < 0
    assert "REGRESSION" in res.summary()
    assert res.to_dict()["regressed"] is True


def test_gate_needs_significance():
    # a 15-point drop on 20 cases (3 newly failing, 0 newly passing): p = 1/8, not significant
    res = paired_binary_gate(*_pairs(10, 3, 0, 7))
    assert res.delta == pytest.approx(-0.15)
    assert res.p_value == pytest.approx(0.125)
    assert not res.regressed


def test_gate_needs_the_drop_to_exceed_the_margin():
    # 20,000 cases, a 1-point drop: highly significant, but inside the 2-point margin
    res = paired_binary_gate(*_pairs(15000, 700, 500, 3800))
    assert res.delta == pytest.approx(-0.01) and res.p_value < 1e-6
    assert not res.regressed
    assert paired_binary_gate(*_pairs(15000, 700, 500, 3800), margin=0.005).regressed


def test_gate_strict_rule_wants_the_drop_shown_beyond_the_margin():
    counts = (600, 95, 55, 250)  # a 4-point drop on 1,000 cases
    default = binary_gate_from_counts(*counts)
    strict = binary_gate_from_counts(*counts, strict=True)
    assert default.regressed
    assert default.high > -0.02  # the interval does not exclude drops within the margin
    assert not strict.regressed
    assert binary_gate_from_counts(600, 130, 20, 250, strict=True).regressed


def test_gate_improvement_is_symmetric():
    res = paired_binary_gate(*_pairs(600, 50, 100, 250))
    assert res.improved and not res.regressed and res.delta == pytest.approx(0.05)


def test_gate_skips_unmeasured_pairs_and_validates():
    base = [True, True, None, False, True]
    cand = [True, False, True, None, True]
    res = paired_binary_gate(base, cand)
    assert res.n == 3 and res.newly_failing_idx == [1]
    with pytest.raises(UsageError, match="align"):
        paired_binary_gate([True], [True, False])
    with pytest.raises(UsageError):
        paired_binary_gate([True], [True], margin=-0.1)
    with pytest.raises(UsageError):
        paired_binary_gate([True], [True], alpha=0.7)
    empty = paired_binary_gate([None], [True])
    assert empty.n == 0 and empty.delta is None and not empty.regressed
    assert empty.summary() == "no paired cases to compare"


# ---------------------------------------------------------------- paired score gate


@pytest.mark.parametrize("method", ["bootstrap", "wilcoxon"])
def test_score_gate_catches_a_drop(method):
    rng = np.random.default_rng(5)
    base = rng.uniform(0.3, 0.9, 300)
    cand = base - 0.06 + rng.normal(0, 0.05, 300)
    res = paired_score_gate(list(base), list(cand), method=method, n_resamples=3000)
    assert res.regressed and not res.improved
    assert res.delta == pytest.approx(float(np.mean(cand - base)))
    same = paired_score_gate(list(base), list(base + rng.normal(0, 0.05, 300)), method=method,
                             n_resamples=3000)
    assert not same.regressed


def test_score_gate_interval_is_the_t_interval_and_p_the_sign_flip_test():
    rng = np.random.default_rng(8)
    base = rng.uniform(0, 1, 500)
    cand = base + rng.normal(-0.01, 0.1, 500)
    res = paired_score_gate(list(base), list(cand))
    d = cand - base
    lo, hi = sps.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (res.low, res.high) == pytest.approx((lo, hi), rel=1e-9)
    # at n=500 the randomised sign-flip p-value is close to the t-test's
    t_p = sps.ttest_1samp(d, 0.0, alternative="less").pvalue
    assert res.p_value == pytest.approx(t_p, abs=0.003)
    assert "sign-flip" in res.method
    assert paired_score_gate(list(base), list(cand), method="bootstrap") == res  # old name


def _sign_flip_reference(d: np.ndarray) -> float:
    """P(sum of randomly signed |d| <= observed sum), over all 2**n sign patterns."""
    observed = d.sum()
    null = [sum(s * abs(x) for s, x in zip(signs, d))
            for signs in itertools.product([-1, 1], repeat=len(d))]
    return sum(v <= observed + 1e-12 for v in null) / len(null)


@pytest.mark.parametrize("d", [
    [-0.31, -0.27, 0.05, -0.22, -0.18, 0.09, -0.4, -0.12, 0.15, -0.35],
    [-0.1, -0.2, 0.0, 0.0, 0.3, -0.05, -0.05, 0.0],  # zeros (unchanged cases) and ties
    [-0.5, -0.5, -0.5],
])
def test_score_gate_p_is_the_exact_sign_flip_test(d):
    d = np.asarray(d)
    base = [0.5] * len(d)
    res = paired_score_gate(base, list(0.5 + d), margin=0.0)
    assert res.p_value == pytest.approx(_sign_flip_reference(0.5 + d - 0.5), rel=1e-9)
    assert res.regressed == (res.p_value < 0.05 and res.delta < 0)


@pytest.mark.parametrize("k", [5, 12, 16, 40])
def test_sign_flip_agrees_with_scipy_permutation_test(k):
    rng = np.random.default_rng(k)
    x = rng.normal(-0.2, 1.0, k)
    ours = sign_flip_pvalue(x, "less"), sign_flip_pvalue(x, "greater")
    for alternative, p in zip(("less", "greater"), ours):
        ref = sps.permutation_test((x,), lambda v, axis=-1: np.sum(v, axis=axis),
                                   permutation_type="samples", alternative=alternative,
                                   vectorized=True, n_resamples=2 ** 16 if k <= 16 else 9999,
                                   rng=np.random.default_rng(1)).pvalue
        assert p == pytest.approx(ref, rel=1e-12 if k <= 16 else 0.0, abs=0 if k <= 16 else 0.015)
    assert sign_flip_pvalue(x, seed=3) == sign_flip_pvalue(x, seed=3)  # seeded


def test_sign_flip_on_pass_fail_changes_is_mcnemar():
    for b, c in [(8, 3), (12, 2), (0, 4), (5, 5), (30, 12)]:
        totals = [-1.0] * b + [1.0] * c + [0.0] * 7
        assert sign_flip_pvalue(totals, "less") == pytest.approx(
            mcnemar_exact(b, c, "greater"), abs=0.01 if b + c > 13 else 1e-12)
        assert sign_flip_pvalue(totals, "greater") == pytest.approx(
            mcnemar_exact(b, c, "less"), abs=0.01 if b + c > 16 else 1e-12)
    assert sign_flip_pvalue([0.0, 0.0]) == 1.0
    assert sign_flip_pvalue([-0.3]) == 0.5 and sign_flip_pvalue([0.3]) == 1.0
    assert sign_flip_pvalue([-0.3], "greater") == 1.0


def test_score_gate_wilcoxon_p_matches_exact_enumeration():
    # signed-rank statistic over all 2**10 sign patterns, no ties
    d = np.array([-0.31, -0.27, 0.05, -0.22, -0.18, 0.09, -0.4, -0.12, 0.15, -0.35])
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in
            itertools.product([False, True], repeat=10)]
    p_ref = sum(w <= observed for w in null) / len(null)
    base = [0.5] * 10
    res = paired_score_gate(base, list(0.5 + d), margin=0.02, method="wilcoxon")
    assert res.p_value == pytest.approx(p_ref, rel=1e-12)
    assert res.regressed == (p_ref < 0.05)


def test_score_gate_margin_and_strict():
    rng = np.random.default_rng(9)
    base = rng.uniform(0.3, 0.9, 3000)
    cand = base - 0.01 + rng.normal(0, 0.03, 3000)  # significant, but inside the margin
    for method in ("bootstrap", "wilcoxon"):
        res = paired_score_gate(list(base), list(cand), method=method, n_resamples=2000)
        assert not res.regressed, method
        assert paired_score_gate(list(base), list(cand), margin=0.005, method=method,
                                 n_resamples=2000).regressed
        strict = paired_score_gate(list(base), list(base - 0.04 + rng.normal(0, 0.03, 3000)),
                                   method=method, strict=True, n_resamples=2000)
        assert strict.regressed, method


def test_score_gate_degenerate_and_threshold_indices():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = paired_score_gate([0.5, 0.7, 0.9], [0.5, 0.7, 0.9])
        shifted = paired_score_gate([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
        wil = paired_score_gate([0.5, 0.7, 0.9], [0.5, 0.7, 0.9], method="wilcoxon")
    assert same.delta == 0 and not same.regressed and same.p_value == 1.0
    assert same.low is None and same.high is None  # no spread: no interval
    # three identical drops: 1 sign pattern in 8 is as extreme, too few cases to decide
    assert shifted.p_value == pytest.approx(1 / 8) and not shifted.regressed
    assert shifted.low is None
    assert wil.p_value == 1.0 and not wil.regressed
    res = paired_score_gate([0.9, 0.4, 0.8, None], [0.6, 0.8, 0.85, 0.1], threshold=0.7)
    assert res.newly_failing_idx == [0] and res.newly_passing_idx == [1] and res.n == 3
    with pytest.raises(UsageError):
        paired_score_gate([0.1], [0.2], method="ttest")  # type: ignore[arg-type]


# ---------------------------------------------------------------- too little data (item 10)


def test_one_case_or_no_spread_never_decides():
    one = aggregate([0.9], binary=False)
    assert verdict(one, 0.8) == "inconclusive"
    assert verdict(one, 0.95) == "inconclusive"
    assert verdict(one, 0.8, mode="point") == "inconclusive"
    flat = aggregate([0.9] * 30, binary=False)  # every value equal: zero-width interval
    assert flat.low == flat.high == pytest.approx(0.9)
    assert verdict(flat, 0.8) == "inconclusive" and verdict(flat, 0.95) == "inconclusive"
    assert verdict(flat, 0.8, mode="point") == "pass"  # point mode asks for the estimate only
    assert verdict(aggregate([False], binary=True), 0.8) == "inconclusive"
    # a pass rate always has a Wilson interval of non-zero width: 50 of 50 can decide
    assert verdict(aggregate([True] * 50, binary=True), 0.9) == "pass"
    assert threshold_pvalue([0.9], 0.95, binary=False) == 1.0
    assert threshold_pvalue([0.5] * 10, 0.95, binary=False) == 1.0  # no spread
    assert threshold_pvalue([None], 0.5, binary=True) is None


def test_one_pair_is_never_a_regression():
    res = paired_score_gate([0.9], [0.5])
    assert not res.regressed and res.p_value == 0.5 and res.low is None
    assert not paired_binary_gate([True], [False]).regressed


# ---------------------------------------------------------------- threshold p-values


def test_threshold_pvalue_binary_is_the_exact_binomial_test():
    vals = [True] * 80 + [False] * 20
    assert threshold_pvalue(vals, 0.9, binary=True) == pytest.approx(
        sps.binomtest(80, 100, 0.9, alternative="less").pvalue)
    assert threshold_pvalue(vals + [None], 0.9, binary=True) == threshold_pvalue(vals, 0.9, binary=True)
    # clustered: never smaller than the binomial p, and larger when clusters are correlated
    groups = [f"g{i // 10}" for i in range(100)]
    assert threshold_pvalue(vals, 0.9, binary=True, groups=groups) > threshold_pvalue(vals, 0.9, binary=True)
    singles = [f"s{i}" for i in range(100)]  # no shared group: the binomial test alone
    assert threshold_pvalue(vals, 0.9, binary=True, groups=singles) == threshold_pvalue(vals, 0.9, binary=True)


def test_threshold_pvalue_scores_is_the_t_test():
    rng = np.random.default_rng(3)
    x = rng.normal(0.7, 0.1, 40)
    assert threshold_pvalue(list(x), 0.75, binary=False) == pytest.approx(
        sps.ttest_1samp(x, 0.75, alternative="less").pvalue)


def test_mean_t_interval_and_pvalue_cluster_robust_against_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(15), 6)
    x = rng.normal(0, 1, 15)[groups] + rng.normal(0, 1, 90)
    fit = sm.OLS(x, np.ones((90, 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    se = float(fit.bse[0])
    lo, hi = mean_t_interval(x, list(groups), 0.90)
    half = sps.t.ppf(0.95, 14) * se
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-6)
    assert mean_t_pvalue(x, 0.2, list(groups)) == pytest.approx(sps.t.cdf((x.mean() - 0.2) / se, 14))
    # singletons: the ordinary t interval
    assert mean_t_interval(x) == pytest.approx(sps.t.interval(0.9, 89, x.mean(), sps.sem(x)))
    assert mean_t_interval([1.0]) is None and mean_t_interval([2.0, 2.0]) is None


# ---------------------------------------------------------------- clustered paired gates (item 7)


def test_cluster_totals():
    totals, sizes = cluster_totals(np.array([1.0, 2.0, 3.0, 4.0]), ["a", None, "a", None])
    assert list(totals) == [4.0, 2.0, 4.0] and list(sizes) == [2.0, 1.0, 1.0]


def test_binary_gate_with_clusters_tests_clusters_not_cases():
    # 10 clusters of 10 cases; every change is in one cluster: 10 newly failing cases
    base = [True] * 100
    cand = [i >= 10 for i in range(100)]
    groups = [f"g{i // 10}" for i in range(100)]
    flat = paired_binary_gate(base, cand)
    assert flat.regressed and flat.p_value < 0.01  # ten independent cases would be evidence
    clustered = paired_binary_gate(base, cand, groups=groups)
    assert clustered.p_value == 0.5 and not clustered.regressed  # one cluster is not
    assert clustered.clusters == 10 and clustered.newly_failing_idx == list(range(10))
    assert clustered.delta == pytest.approx(-0.1) and "cluster" in clustered.method
    # groups of one case each: McNemar, as without groups
    assert paired_binary_gate(base, cand, groups=list(range(100))) == flat
    # the same drop spread over every cluster is a regression
    spread = [i % 10 != 0 for i in range(100)]
    assert paired_binary_gate(base, spread, groups=groups).regressed


def test_score_gate_with_clusters():
    rng = np.random.default_rng(4)
    groups = [f"g{i // 20}" for i in range(200)]
    base = rng.uniform(0.3, 0.9, 200)
    shock = np.repeat(rng.normal(0, 0.1, 10), 20)  # the run shifts whole clusters
    cand = base + shock - shock.mean() - 0.03 + rng.normal(0, 0.01, 200)
    assert paired_score_gate(list(base), list(cand)).regressed  # case-level: looks certain
    res = paired_score_gate(list(base), list(cand), groups=groups)
    assert res.clusters == 10 and not res.regressed and res.p_value > 0.05
    assert res.low < res.delta < res.high


# ---------------------------------------------------------------- Holm (item 8)


def test_holm_against_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(2)
    for m in (1, 2, 5, 17):
        p = rng.uniform(0, 0.2, m)
        p[rng.random(m) < 0.3] = 0.001
        ref = multitest.multipletests(p, alpha=0.05, method="holm")
        assert holm(list(p)) == pytest.approx(list(ref[1]), rel=1e-12)
        assert [x <= 0.05 for x in holm(list(p))] == list(ref[0])
    assert holm([]) == []
    with pytest.raises(UsageError):
        holm([1.5])


def test_holm_by_hand():
    # ascending 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (monotone)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------- pass@k for every k (item 11)


def test_sampling_table_reports_every_k_and_keeps_partly_unmeasured_cases():
    cases = {"a": [True, False, False, False], "b": [True, True, None, True],
             "c": [None, None, None, False]}
    t = sampling_table(cases)
    assert list(t["pass_at"]) == [1, 2, 3, 4] and list(t["pass_hat"]) == [1, 2, 3, 4]
    # b has 3 measured samples: it counts for k <= 3, skipped only at k = 4
    assert t["cases_at"] == {1: 3, 2: 2, 3: 2, 4: 1}
    assert t["skipped_at"] == {1: 0, 2: 1, 3: 1, 4: 2} and "fewer" in t["skipped_reason"]
    assert t["pass_at"][1] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert t["pass_at"][2] == pytest.approx((pass_at_k(4, 1, 2) + 1.0) / 2)
    assert t["pass_hat"][3] == pytest.approx((0.0 + 1.0) / 2)
    assert t["pass_at"][4] == pytest.approx(1.0)
