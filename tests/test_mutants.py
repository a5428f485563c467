"""Tests that kill mutants which survived tests/test_stats.py and tests/test_gates.py.

Found by mutation testing (mutmut over pytest_aie/stats/ and pytest_aie/gates/thresholds.py; see README,
"Mutation testing"). Each test pins a behaviour the other tests left open: an argument that
was not passed through (confidence, seed, strict, margin, alpha), a boundary (exactly two
cases, a drop of exactly the margin), a branch nobody took (improvements, strict and
Wilcoxon gates, must-pass failures, ``--aie-inconclusive fail``), or a field of a result
that nothing read.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from test_gates import (  # the record and spread helpers of the gate tests
    POLICY,
    rec,
    split_base,
    spread,
)

from pytest_aie.errors import UsageError
from pytest_aie.gates.comparisons import (
    Comparison,
    compare_models,
    compare_pairs,
    compare_to_baseline,
)
from pytest_aie.gates.conclusion import exit_status
from pytest_aie.gates.policy import GatePolicy, adjust
from pytest_aie.gates.thresholds import evaluate_suites
from pytest_aie.results.records import SuiteRow
from pytest_aie.stats import (
    Aggregate,
    aggregate,
    binary_gate_from_counts,
    clustered_interval,
    holm,
    mcnemar_exact,
    mean_interval,
    mean_t_interval,
    mean_t_pvalue,
    paired_binary_gate,
    paired_proportion_interval,
    paired_score_gate,
    pass_at_k,
    pass_rate_interval,
    sampling_summary,
    threshold_pvalue,
    verdict,
)
from pytest_aie.stats.means import cluster_totals, sign_flip_pvalues

# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize("call, word", [
    (lambda: verdict(Aggregate(3, 3, 0, .5, .4, .6, "m", .95), .5, mode="mean"), "mode"),
    (lambda: holm([[0.1, 0.2]]), "flat"),
    (lambda: holm([1.5]), "outside"),
    (lambda: holm([-0.1]), "outside"),
    (lambda: holm([math.nan]), "outside"),
    (lambda: mean_interval([0.5, 0.6], confidence=1.5), "confidence"),
    (lambda: mean_interval([]), "non-empty"),
    (lambda: mean_interval([0.5, math.nan]), "NaN"),
    (lambda: mean_interval([0.5, 0.6], method="jackknife"), "bootstrap method"),
    (lambda: pass_rate_interval(1, 2, method="agresti"), "method"),
    (lambda: pass_rate_interval(3, 2), "3 passes out of 2"),
    (lambda: clustered_interval([0.5, 0.6], ["a"]), "groups"),
    (lambda: aggregate([1, 0], binary=True, groups=["a"]), "groups"),
    (lambda: aggregate([0.5], binary=True), "pass/fail"),
    (lambda: paired_binary_gate([True], [True], margin=1.5), "margin"),
    (lambda: paired_binary_gate([True], [True], alpha=0.7), "alpha"),
    (lambda: paired_binary_gate([True], [True, False]), "paired_binary_gate"),
    (lambda: paired_score_gate([0.5], [0.5, 0.6]), "paired_score_gate"),
    (lambda: paired_score_gate([0.5], [0.5], method="ttest"), "method"),
    (lambda: paired_score_gate([.1, .2, .3], [.2, .3, .4], method="wilcoxon",
                               groups=["a", "a", "b"]), "Wilcoxon"),
    (lambda: mcnemar_exact(-1, 2), "McNemar"),
    (lambda: paired_proportion_interval(1, -1, 0, 0), "non-negative"),
    (lambda: pass_at_k(3, 4, 1), "pass@k"),
    (lambda: sampling_summary({"a": [True]}, 0), "k must be"),
])
def test_every_stats_usage_error_has_a_problem_and_a_fix(call, word):
    with pytest.raises(UsageError) as info:
        call()
    err = info.value
    assert isinstance(err.problem, str) and word in err.problem
    assert err.fix and str(err) == f"{err.problem}. Fix: {err.fix}"


# ---------------------------------------------------------------- verdict, holm


def test_verdict_decides_with_exactly_the_minimum_number_of_cases():
    agg = Aggregate(2, 2, 0, 0.95, 0.9, 1.0, "m", 0.95)
    assert verdict(agg, 0.5) == "pass" and verdict(agg, 1.01) == "fail"
    assert verdict(agg, 0.5, mode="point") == "pass"
    assert verdict(Aggregate(2, 1, 1, 0.95, 0.9, 1.0, "m", 0.95), 0.5) == "inconclusive"


def test_holm_caps_at_one_and_accepts_zero():
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([0.0, 1.0]) == [0.0, 1.0]
    assert holm([0, 1]) == [0.0, 1.0]  # integers are p-values too


# ---------------------------------------------------------------- aggregate, threshold p


def test_aggregate_uses_the_confidence_for_pass_rates():
    values = [True] * 14 + [False] * 6
    agg = aggregate(values, binary=True, confidence=0.5)
    ci = pass_rate_interval(14, 20, 0.5)
    assert (agg.low, agg.high, agg.confidence) == (ci.low, ci.high, 0.5)


@pytest.mark.parametrize("groups", [None, [f"g{i // 3}" for i in range(12)]])
def test_aggregate_of_scores_is_reproducible(groups):
    values = spread(0.6, 0.2, 12)
    first = aggregate(values, binary=False, groups=groups)
    assert aggregate(values, binary=False, groups=groups) == first


def test_clustered_aggregate_counts_and_method():
    values = spread(0.6, 0.2, 12) + [None, None]
    groups = [f"g{i // 3}" for i in range(12)] + ["g0", "g9"]
    agg = aggregate(values, binary=False, groups=groups, confidence=0.9, method="percentile")
    assert (agg.n, agg.measured, agg.unmeasured, agg.confidence) == (14, 12, 2, 0.9)
    assert "cluster-bootstrap-percentile" in agg.method and "hull" in agg.method
    agg = aggregate([1, 0, 1, 1, 0, 1], binary=True, groups=["a", "a", "b", "b", "c", "c"])
    assert agg.method.startswith("cluster-bootstrap-") and "wilson" in agg.method


def test_threshold_pvalue_decides_with_exactly_two_cases():
    assert threshold_pvalue([0.10, 0.12], 0.9, binary=False) < 0.05


def test_threshold_pvalue_of_clustered_scores_is_cluster_robust():
    values = spread(0.7, 0.1, 12)
    groups = [f"g{i // 4}" for i in range(12)]
    p = threshold_pvalue(values, 0.75, binary=False, groups=groups)
    assert p == mean_t_pvalue(np.asarray(values), 0.75, groups)
    assert p != threshold_pvalue(values, 0.75, binary=False)


def test_threshold_pvalue_of_clustered_pass_fail_takes_the_larger_p():
    values = [1] * 8 + [0] * 4 + [1] * 8
    groups = [f"g{i // 4}" for i in range(20)]
    binom = sps.binomtest(16, 20, 0.9, alternative="less").pvalue
    robust = mean_t_pvalue(np.asarray(values, float), 0.9, groups)
    assert robust > binom  # the precondition: clustering matters here
    assert threshold_pvalue(values, 0.9, binary=True, groups=groups) == pytest.approx(robust)


def test_threshold_pvalue_of_clusters_without_spread_between_them_is_the_binomial():
    # every cluster has the same mean: the cluster-robust se is 0, the binomial test decides
    values = [1, 0] * 10
    groups = [f"g{i // 2}" for i in range(20)]
    binom = sps.binomtest(10, 20, 0.9, alternative="less").pvalue
    assert threshold_pvalue(values, 0.9, binary=True, groups=groups) == pytest.approx(binom)


# ---------------------------------------------------------------- binary gate


def test_binary_gate_with_no_pairs():
    for res in (binary_gate_from_counts(0, 0, 0, 0, margin=0.1, alpha=0.1),
                paired_binary_gate([None], [True], margin=0.1, alpha=0.1)):
        assert (res.delta, res.p_value, res.regressed, res.improved, res.n) == (
            None, None, False, False, 0)
        assert (res.method, res.margin, res.alpha) == ("no paired cases", 0.1, 0.1)


def test_binary_gate_reports_its_inputs():
    res = binary_gate_from_counts(50, 5, 25, 20, margin=0.05, alpha=0.1)
    ci = paired_proportion_interval(50, 5, 25, 20, confidence=0.8)
    assert res.n == 100 and (res.low, res.high) == (ci.low, ci.high)
    assert res.p_gain == mcnemar_exact(5, 25, "less") and res.p_value == mcnemar_exact(5, 25, "greater")
    assert (res.margin, res.alpha) == (0.05, 0.1)
    assert res.improved and not res.regressed and res.method.startswith("mcnemar-exact")


def test_binary_gate_improvement_needs_significance_and_the_margin():
    assert not binary_gate_from_counts(900, 30, 50, 20).improved  # +2 points: not beyond
    assert not binary_gate_from_counts(10, 0, 3, 7).improved  # +15 points, not significant


def test_binary_gate_drop_of_exactly_the_margin_is_not_a_regression():
    res = binary_gate_from_counts(75, 25, 0, 0, margin=0.25)
    assert res.delta == -0.25 and res.p_value < 1e-6 and not res.regressed
    res = binary_gate_from_counts(0, 0, 25, 75, margin=0.25)
    assert res.delta == 0.25 and not res.improved


def test_strict_binary_gate():
    res = binary_gate_from_counts(0, 0, 400, 600, margin=0.02, strict=True)
    assert res.improved and not res.regressed and "non-inferiority" in res.method
    # a significant gain whose lower bound is not beyond the margin does not count
    res = binary_gate_from_counts(1000, 10, 40, 950, margin=0.02, strict=True)
    assert res.p_gain < 0.05 and res.low < 0.02 and not res.improved


def test_paired_binary_gate_passes_strict_through():
    base = [True] * 1910 + [True] * 70 + [False] * 20
    cand = [True] * 1910 + [False] * 70 + [True] * 20
    loose = paired_binary_gate(base, cand)
    strict = paired_binary_gate(base, cand, strict=True)
    assert loose.regressed and not strict.regressed  # -2.5 points: beyond, not shown beyond
    assert strict.method == binary_gate_from_counts(1910, 70, 20, 0, strict=True).method


def test_clustered_binary_gate_clips_its_interval_to_possible_changes():
    base = [True, True, False, False, True, True]
    cand = [False, False, True, True, False, False]
    groups = ["a", "a", "b", "b", "c", "c"]
    d = np.asarray([-1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    raw = mean_t_interval(d, groups, 0.9)
    assert raw[0] < -1 and raw[1] > 1  # the precondition: the t interval overshoots
    res = paired_binary_gate(base, cand, groups=groups)
    assert (res.low, res.high, res.clusters) == (-1.0, 1.0, 3)


def _mixed_cluster_runs() -> tuple[list[bool], list[bool], list[str]]:
    """40 clusters of two cases: 25 lose a pass, 10 gain one, 5 unchanged."""
    base: list[bool] = []
    cand: list[bool] = []
    for i in range(40):
        if i < 25:
            base += [True, True]
            cand += [False, True]
        elif i < 35:
            base += [False, True]
            cand += [True, True]
        else:
            base += [True, False]
            cand += [True, False]
    return base, cand, [f"g{i // 2}" for i in range(80)]


def test_clustered_binary_gate_passes_strict_and_the_resampling_through():
    base, cand, groups = _mixed_cluster_runs()
    totals, _ = cluster_totals(np.asarray(cand, float) - np.asarray(base, float), groups)
    res = paired_binary_gate(base, cand, groups=groups, n_resamples=999, seed=5)
    assert (res.p_value, res.p_gain) == sign_flip_pvalues(totals, 999, 5)
    assert 0.001 < res.p_value < 0.5  # the precondition: a p-value that depends on the seed
    default = paired_binary_gate(base, cand, groups=groups)
    assert (default.p_value, default.p_gain) == sign_flip_pvalues(totals, 9999, 0)
    strict = paired_binary_gate(base, cand, groups=groups, strict=True)
    assert strict.regressed == (strict.high < -0.02) and "strict" in strict.method
    assert strict.method != res.method


def test_binary_gate_decides_below_alpha_not_at_it():
    # two newly failing of two: the one-sided exact p is exactly 0.25
    for strict in (False, True):
        res = binary_gate_from_counts(0, 2, 0, 0, alpha=0.25, strict=strict)
        assert res.p_value == 0.25 and not res.regressed
        res = binary_gate_from_counts(0, 0, 2, 0, alpha=0.25, strict=strict)
        assert res.p_gain == 0.25 and not res.improved


# ---------------------------------------------------------------- score gate


def test_score_gate_with_no_pairs():
    res = paired_score_gate([None, 0.5], [0.4, None], margin=0.1, alpha=0.1)
    assert (res.delta, res.low, res.p_value, res.regressed, res.improved, res.n) == (
        None, None, None, False, False, 0)
    assert (res.method, res.margin, res.alpha) == ("no paired cases", 0.1, 0.1)
    assert res.newly_failing_idx == [] and res.newly_passing_idx == []


def test_score_gate_names_the_cases_crossing_the_threshold():
    base = [0.5, 0.6, 0.4, 0.5, 0.7]
    cand = [0.4, 0.5, 0.5, 0.5, 0.9]
    for method in ("permutation", "wilcoxon"):
        res = paired_score_gate(base, cand, threshold=0.5, method=method)
        assert res.newly_failing_idx == [0] and res.newly_passing_idx == [2]


def test_score_gate_reports_its_inputs():
    base = spread(0.6, 0.1, 30)
    cand = [b + 0.01 + 0.05 * math.sin(i) for i, b in enumerate(base)]
    d = np.asarray(cand) - np.asarray(base)
    res = paired_score_gate(base, cand, margin=0.05, alpha=0.1, n_resamples=999, seed=4)
    assert (res.p_value, res.p_gain) == sign_flip_pvalues(d, 999, 4)
    assert 0.001 < res.p_gain < 0.9  # the precondition: p-values that depend on the seed
    assert (res.low, res.high) == mean_t_interval(d, None, 0.8)
    assert (res.margin, res.alpha, res.n) == (0.05, 0.1, 30)
    default = paired_score_gate(base, cand)
    assert (default.p_value, default.p_gain) == sign_flip_pvalues(d, 9999, 0)
    strict = paired_score_gate(base, cand, margin=0.01, strict=True, n_resamples=999, seed=4)
    assert strict.p_value == sign_flip_pvalues(d + 0.01, 999, 4)[0]
    assert strict.p_gain == sign_flip_pvalues(d - 0.01, 999, 4)[1]
    strict = paired_score_gate(base, cand, margin=0.01, strict=True)
    assert strict.p_value == sign_flip_pvalues(d + 0.01, 9999, 0)[0]
    assert strict.p_gain == sign_flip_pvalues(d - 0.01, 9999, 0)[1]


def test_score_gate_improvement_needs_the_margin():
    base = spread(0.6, 0.1, 20)
    res = paired_score_gate(base, [b + 0.01 for b in base])
    assert res.p_gain < 0.05 and not res.improved


def test_score_gate_drop_of_exactly_the_margin_is_not_a_regression():
    res = paired_score_gate([0.5] * 10, [0.25] * 10, margin=0.25)
    assert res.delta == -0.25 and res.p_value < 0.05 and not res.regressed


@pytest.mark.parametrize("method", ["permutation", "wilcoxon"])
def test_strict_score_gate_needs_a_change_shown_beyond_the_margin(method):
    base = spread(0.6, 0.1, 20)
    small = [b - 0.01 for b in base]
    large = [b - 0.1 for b in base]
    assert paired_score_gate(base, small, method=method).p_value < 0.05
    assert not paired_score_gate(base, small, method=method, strict=True).regressed
    assert paired_score_gate(base, large, method=method, strict=True).regressed
    up_small = [b + 0.01 for b in base]
    up_large = [b + 0.1 for b in base]
    assert not paired_score_gate(base, up_small, method=method, strict=True).improved
    res = paired_score_gate(base, up_large, method=method, strict=True)
    assert res.improved and not res.regressed and "shifted by margin" in res.method


def test_wilcoxon_score_gate_fields():
    base = spread(0.6, 0.1, 20)
    cand = [b + 0.1 for b in base]
    res = paired_score_gate(base, cand, method="wilcoxon", margin=0.05, alpha=0.1)
    assert res.improved and not res.regressed and res.p_gain < 0.01
    assert (res.low, res.high, res.n, res.margin, res.alpha) == (None, None, 20, 0.05, 0.1)
    assert res.method == "wilcoxon signed-rank + margin on delta"
    small = paired_score_gate(base, [b + 0.01 for b in base], method="wilcoxon")
    assert small.p_gain < 0.05 and not small.improved


def test_clustered_score_gate_passes_its_settings_through():
    groups = [f"g{i // 2}" for i in range(40)]
    base = spread(0.6, 0.1, 40)
    cand = [b - 0.03 + 0.06 * math.cos(i) for i, b in enumerate(base)]
    res = paired_score_gate(base, cand, groups=groups, margin=0.01, alpha=0.1,
                            n_resamples=999, seed=2)
    d = np.asarray(cand) - np.asarray(base)
    totals, _ = cluster_totals(d, groups)
    assert (res.p_value, res.p_gain) == sign_flip_pvalues(totals, 999, 2)
    assert 0.001 < res.p_value < 0.9  # the precondition: p-values that depend on the seed
    default = paired_score_gate(base, cand, groups=groups)
    assert (default.p_value, default.p_gain) == sign_flip_pvalues(totals, 9999, 0)
    assert (res.low, res.high) == mean_t_interval(d, groups, 0.8)
    assert (res.margin, res.alpha, res.clusters, res.n) == (0.01, 0.1, 20, 40)


def test_clustered_score_gate_decisions():
    groups = [f"g{i // 2}" for i in range(40)]
    base = spread(0.6, 0.1, 40)
    down = [b - 0.1 + 0.02 * math.cos(i) for i, b in enumerate(base)]
    assert paired_score_gate(base, down, groups=groups).regressed
    assert not paired_score_gate(base, down, groups=groups, margin=0.2).regressed
    strict = paired_score_gate(base, down, groups=groups, strict=True)
    assert strict.regressed and strict.method.startswith("cluster sign-flip over 20 clusters (strict")
    up = paired_score_gate(down, base, groups=groups)
    assert up.improved and not up.regressed and up.method.endswith("cluster-robust t interval")
    strict_up = paired_score_gate(down, base, groups=groups, strict=True)
    assert strict_up.improved and not strict_up.regressed
    small = [b + 0.01 + 0.001 * math.cos(i) for i, b in enumerate(base)]
    res = paired_score_gate(base, small, groups=groups)
    assert res.p_gain < 0.05 and not res.improved  # significant, not beyond the margin
    res = paired_score_gate(base, small, groups=groups, strict=True)
    assert res.low < 0.02 and not res.improved
    noisy = [b + 0.08 * (1 if i % 4 < 2 else -1) + 0.03 for i, b in enumerate(base)]
    res = paired_score_gate(base, noisy, groups=groups)
    assert res.delta > 0.02 and res.p_gain >= 0.05 and not res.improved


# ---------------------------------------------------------------- evaluate_suites


def test_records_without_binary_are_pass_fail():
    recs = [rec(f"c{i}", i % 4 != 0) for i in range(8)]
    for r in recs:
        del r["binary"]
    (row,) = evaluate_suites(recs)
    assert row.binary is True and row.passed == 6


def test_suite_interval_uses_the_policy_confidence():
    recs = [rec(f"c{i}", i < 14) for i in range(20)]
    (row,) = evaluate_suites(recs, GatePolicy(confidence=0.5))
    ci = pass_rate_interval(14, 20, 0.5)
    assert row.interval == [ci.low, ci.high] and row.confidence == 0.5


def test_threshold_falls_back_to_the_other_gate_key():
    (row,) = evaluate_suites([rec(f"c{i}", True, gate={"min_score": 0.5}) for i in range(4)])
    assert row.threshold == 0.5
    recs = [rec(f"c{i}", None, v, binary=False, status="scored", gate={"min_pass_rate": 0.4})
            for i, v in enumerate(spread(0.8, 0.05, 6))]
    (row,) = evaluate_suites(recs)
    assert row.threshold == 0.4 and row.verdict == "pass"


def test_row_fields():
    recs = [rec("a", True, cached=True, completion_tokens=7),
            rec("b", False, must_pass=True),
            rec("c", None, must_pass=True, completion_tokens=None),
            rec("d", True, must_pass=True, cached=False)]
    (row,) = evaluate_suites(recs)
    assert row.pass_rate == pytest.approx(2 / 3) and row.mean_score == pytest.approx(2 / 3)
    assert row.cached == 1 and row.completion_tokens == 7
    assert row.must_pass_failed == ["b", "c"] and row.higher_is_better is True
    assert evaluate_suites([rec("a", True), rec("b", False)])[0].pass_rate == 0.5


def test_nothing_measured_has_no_interval():
    (row,) = evaluate_suites([rec("a", None), rec("b", None)])
    assert row.interval is None and row.estimate is None and row.pass_rate is None


def test_point_mode_verdicts_use_the_estimate():
    recs = [rec(f"c{i}", i < 2, gate={"min_pass_rate": 0.6}) for i in range(3)]
    assert evaluate_suites(recs)[0].verdict == "inconclusive"
    assert evaluate_suites(recs, GatePolicy(mode="point"))[0].verdict == "pass"
    ter = [rec(f"c{i}", None, v, binary=False, status="scored", metric="sim.ter",
               higher_is_better=False, gate={"min_score": 0.35}, output="x", expected="x")
           for i, v in enumerate([0.1, 0.5, 0.2, 0.4])]
    assert evaluate_suites(ter)[0].verdict == "inconclusive"
    corpus = {"n": 4, "ter.corpus": 0.3}  # the scorer's own suite figure, by suite/metric/model
    (row,) = evaluate_suites(ter, GatePolicy(mode="point"), {("s", "sim.ter", "default"): corpus})
    assert row.verdict == "pass" and row.higher_is_better is False
    assert row.corpus == corpus and evaluate_suites(ter)[0].corpus is None
    for r in ter:
        r["value"] += 0.1  # mean 0.4, above the ceiling
    assert evaluate_suites(ter, GatePolicy(mode="point"))[0].verdict == "fail"


def test_shortfall_p_of_a_clustered_suite_is_clustered():
    values = [1] * 8 + [0] * 4 + [1] * 8
    recs = [rec(f"c{i}", bool(v), group=f"q{i // 4}", gate={"min_pass_rate": 0.9})
            for i, v in enumerate(values)]
    (row,) = evaluate_suites(recs)
    groups = [f"group:q{i // 4}" for i in range(20)]
    assert row.p_value == threshold_pvalue(values, 0.9, binary=True, groups=groups)
    assert row.p_value != threshold_pvalue(values, 0.9, binary=True)


def test_shortfall_p_of_a_clustered_ceiling_is_clustered():
    values = [0.2, 0.25, 0.3, 0.28, 0.5, 0.55, 0.6, 0.52, 0.3, 0.35, 0.32, 0.38]
    common = dict(binary=False, status="scored", metric="sim.x", higher_is_better=False,
                  gate={"min_score": 0.3})
    recs = [rec(f"c{i}", None, v, group=f"q{i // 4}", **common) for i, v in enumerate(values)]
    (row,) = evaluate_suites(recs)
    groups = [f"q{i // 4}" for i in range(12)]
    assert row.p_value == threshold_pvalue([-v for v in values], -0.3, binary=False,
                                              groups=groups)
    flat = [rec(f"c{i}", None, v, **common) for i, v in enumerate(values)]
    assert evaluate_suites(flat)[0].p_value != row.p_value


def test_ceilings_with_unmeasured_cases():
    ter = [rec(f"c{i}", None, v, binary=False, status="scored", metric="sim.x",
               higher_is_better=False, gate={"min_score": 0.5}) for i, v in enumerate(
                   [0.1, 0.2, 0.15, 0.12])]
    ter.append(rec("u", None, None, binary=False, status="unmeasured", metric="sim.x",
                   higher_is_better=False))
    (row,) = evaluate_suites(ter)
    assert row.unmeasured == 1 and row.verdict == "pass"
    assert row.p_value == threshold_pvalue([-0.1, -0.2, -0.15, -0.12], -0.5, binary=False)
    rate = [rec(f"c{i}", i == 0, higher_is_better=False, gate={"min_pass_rate": 0.5})
            for i in range(10)] + [rec("u", None, higher_is_better=False)]
    (row,) = evaluate_suites(rate)
    assert row.p_value == threshold_pvalue([1.0] * 9 + [0.0], 0.5, binary=True)


def test_pass_rate_ceiling_with_groups():
    values = [0] * 8 + [1] * 4 + [0] * 8
    recs = [rec(f"c{i}", bool(v), group=f"q{i // 4}", higher_is_better=False,
                gate={"min_pass_rate": 0.1}) for i, v in enumerate(values)]
    (row,) = evaluate_suites(recs)
    groups = [f"q{i // 4}" for i in range(20)]
    assert row.p_value == threshold_pvalue([1 - v for v in values], 0.9, binary=True,
                                              groups=groups)


# ---------------------------------------------------------------- comparisons


def _cases(outcomes: list[bool | None], **extra: Any) -> dict[str, dict[str, Any]]:
    return {f"c{i}": rec(f"c{i}", o, **extra) for i, o in enumerate(outcomes)}


def test_comparison_without_shared_cases():
    comp = compare_pairs("s", "m", "tag:x", True, _cases([True]), {"z": rec("z", True)}, POLICY)
    assert (comp.suite, comp.metric, comp.scope, comp.shared, comp.added, comp.removed) == (
        "s", "m", "tag:x", 0, 1, 1)
    assert (comp.gate, comp.regressed, comp.improved, comp.confirmatory) == (None, False, False, False)


def test_comparison_counts_and_lists():
    ref = _cases([True, False, True, False, True])
    cur = _cases([False, True, True, False])
    cur["new"] = rec("new", True)
    comp = compare_pairs("s", "m", "suite", True, ref, cur, POLICY)
    assert (comp.shared, comp.added, comp.removed) == (4, 1, 1)
    assert comp.newly_failing == ["c0"] and comp.newly_passing == ["c1"]
    assert comp.metric == "m" and comp.confirmatory and comp.p_value == comp.gate["p_value"]


def test_comparison_uses_the_policy_margin_and_alpha():
    ref = _cases([True] * 100)
    cur = _cases([True] * 92 + [False] * 8)  # McNemar p = 0.5 ** 8 = 0.0039
    assert compare_pairs("s", "m", "suite", True, ref, cur, POLICY).gate["regressed"]
    wide = compare_pairs("s", "m", "suite", True, ref, cur, GatePolicy(margin=0.2))
    assert not wide.gate["regressed"] and wide.gate["margin"] == 0.2
    strict_alpha = compare_pairs("s", "m", "suite", True, ref, cur, GatePolicy(alpha=0.001))
    assert not strict_alpha.gate["regressed"] and strict_alpha.gate["alpha"] == 0.001
    scores_ref = {c: rec(c, None, v, binary=False) for c, v in
                  zip(ref, spread(0.6, 0.1, 100))}
    scores_cur = {c: rec(c, None, r["value"] - 0.05, binary=False) for c, r in scores_ref.items()}
    for policy, regressed in ((POLICY, True), (GatePolicy(margin=0.1), False)):
        comp = compare_pairs("s", "m", "suite", False, scores_ref, scores_cur, policy)
        assert comp.regressed is regressed and comp.gate["alpha"] == policy.alpha


def test_score_comparison_uses_the_policy_alpha_and_groups():
    ref = {f"c{i}": rec(f"c{i}", None, v, binary=False, group=f"q{i // 4}")
           for i, v in enumerate(spread(0.6, 0.1, 40))}
    cur = {c: rec(c, None, r["value"] - 0.05 + 0.04 * math.sin(i), binary=False)
           for i, (c, r) in enumerate(ref.items())}
    comp = compare_pairs("s", "m", "suite", False, ref, cur, GatePolicy(alpha=0.01))
    assert comp.gate["alpha"] == 0.01 and comp.gate["clusters"] == 10


def test_lower_is_better_comparison_is_the_default_off():
    ref = {f"c{i}": rec(f"c{i}", None, v, binary=False) for i, v in enumerate(spread(.3, .1, 30))}
    cur = {c: rec(c, None, r["value"] + 0.1, binary=False) for c, r in ref.items()}
    up = compare_pairs("s", "m", "suite", False, ref, cur, POLICY)
    assert up.improved and not up.regressed and up.gate["delta"] == pytest.approx(0.1)
    down = compare_pairs("s", "m", "suite", False, ref, cur, POLICY, higher_is_better=False)
    assert down.regressed and down.gate["delta"] == pytest.approx(-0.1)
    cur["c0"] = rec("c0", None, None, binary=False)
    assert compare_pairs("s", "m", "suite", False, ref, cur, POLICY, False).gate["n"] == 29


def test_comparison_clusters_from_either_side():
    ref = _cases([True] * 40, group=None)
    cur = _cases([i % 8 >= 3 for i in range(40)])
    for i, c in enumerate(cur):
        ref[c]["group"] = f"q{i // 8}"
    comp = compare_pairs("s", "m", "suite", True, ref, cur, POLICY)
    assert comp.gate["clusters"] == 5


def test_baseline_and_model_comparisons_keep_suite_and_metric():
    recs = [rec(f"c{i}", i % 5 != 0, base=rec(f"c{i}", True), tags=["t"]) for i in range(40)]
    baseline = {"suites": {"s::exact.match": {"cases": _cases([True] * 40)}}}
    for comps in (compare_to_baseline(recs, baseline, POLICY), compare_models(split_base(recs), POLICY)):
        assert all((c.suite, c.metric) == ("s", "exact.match") for c in comps)
        assert all(c.family_size == len(comps) for c in comps)
        assert comps[0].scope == "suite" and comps[0].regressed


# ---------------------------------------------------------------- adjust, exit_status


def _comp(p: float, regressed: bool, scope: str = "suite") -> Comparison:
    return Comparison("s", "m", scope, 100, 0, 0, {"regressed": regressed, "delta": -0.1},
                      regressed, False, p_value=p, confirmatory=True)


def test_adjust_needs_the_gate_to_regress():
    comp = _comp(0.001, False)
    adjust([], [comp], POLICY)
    assert not comp.regressed
    comp = _comp(0.001, True)
    adjust([], [comp], POLICY)
    assert comp.regressed


def test_adjusted_p_equal_to_alpha_does_not_decide():
    comp = _comp(0.05, True)
    adjust([], [comp], POLICY)
    assert comp.p_adjusted == 0.05 and not comp.regressed
    row = SuiteRow("s", "m", confirmatory=True, p_value=0.01, p_level=0.01,
                   interval_verdict="fail", verdict="fail")
    adjust([row], [], POLICY)
    assert row.p_adjusted == 0.05 and row.verdict == "inconclusive"


def _row(verdict_: str, *, interval: list[float] | None = (0.5, 0.9), n: int = 10,
         unmeasured: int = 0, **extra: Any) -> SuiteRow:
    fields = {"suite": "s", "metric": "m", "verdict": verdict_, "interval_verdict": verdict_,
              "interval": None if interval is None else list(interval), "n": n,
              "unmeasured": unmeasured, **extra}
    return SuiteRow(**fields)


def test_must_pass_failures_fail_the_run():
    assert exit_status([_row("pass", must_pass_failed=["c1"])], [], POLICY, 0)[0] == 1
    assert exit_status([_row("pass")], [], POLICY, 0) == (0, [])


@pytest.mark.parametrize("row, why", [
    (_row("inconclusive"), "the interval straddles the threshold"),
    (_row("inconclusive", interval=None), "too little data to decide"),
    (_row("inconclusive", interval=(0.7, 0.7)), "too little data to decide"),
    (_row("inconclusive", n=3, unmeasured=2), "too little data to decide"),
    (_row("inconclusive", n=4, unmeasured=2), "the interval straddles the threshold"),
])
def test_inconclusive_verdicts_say_why(row, why):
    status, notes = exit_status([replace(row)], [], GatePolicy(inconclusive="warn"), 0)
    assert status == 0 and notes == [
        f"WARNING s [m]: inconclusive: {why}; add cases or samples to decide "
        "(--aie-inconclusive fail makes this fail)"]
    status, notes = exit_status([replace(row)], [], GatePolicy(inconclusive="fail"), 0)
    assert status == 1 and notes == [
        f"s [m]: inconclusive ({why}), counted as a failure (--aie-inconclusive fail)"]
    assert exit_status([replace(row)], [], GatePolicy(inconclusive="pass"), 0) == (0, [])


def test_a_held_back_failure_names_the_family():
    rows = [_row("fail", confirmatory=True, p_value=0.02, p_level=0.025, suite=f"s{i}")
            for i in range(2)]
    status, notes = exit_status(rows, [], POLICY, 0)
    assert status == 0 and len(notes) == 2
    assert "not significant (p=0.02, Holm-adjusted 0.08 over 2 decisions)" in notes[0]


def test_comparison_notes():
    held = _comp(0.03, True, scope="tag:t")
    real = _comp(0.0001, True)
    calm = _comp(0.5, False)
    status, notes = exit_status([], [held, real, calm], POLICY, 0)
    assert status == 11 and len(notes) == 1
    assert notes[0].startswith("s (tag:t) [m]: a drop with p=0.03, not significant after the "
                               "Holm adjustment over 3 decisions")
    status, notes = exit_status([], [_comp(0.03, True), _comp(0.04, True)], POLICY, 0)
    assert status == 0 and notes[0].startswith("s [m]: a drop")


def test_baseline_comparison_goes_on_past_a_suite_without_a_baseline():
    recs = [rec(f"c{i}", i % 5 != 0, suite=suite) for suite in ("a", "b") for i in range(40)]
    baseline = {"suites": {"b::exact.match": {"cases": _cases([True] * 40)}}}
    (comp,) = compare_to_baseline(recs, baseline, POLICY)
    assert comp.suite == "b" and comp.regressed
    assert compare_to_baseline(recs, {}, POLICY) == []


def test_model_comparison_goes_on_past_a_suite_without_base_outcomes():
    recs = [rec(f"c{i}", i % 5 != 0, suite="a") for i in range(40)]
    recs += [rec(f"c{i}", i % 5 != 0, suite="b", base=rec(f"c{i}", True)) for i in range(40)]
    (comp,) = compare_models(split_base(recs), POLICY)
    assert comp.suite == "b" and comp.regressed


@pytest.mark.parametrize("higher", [True, False])
def test_score_suites_are_compared_as_scores_in_the_right_direction(higher):
    values = spread(0.4, 0.1, 30)
    common = dict(binary=False, status="scored", metric="sim.x", higher_is_better=higher,
                  tags=["t"])
    ref = {f"c{i}": rec(f"c{i}", None, v, **common) for i, v in enumerate(values)}
    recs = [rec(f"c{i}", None, v + 0.1, base=ref[f"c{i}"], **common) for i, v in enumerate(values)]
    baseline = {"suites": {"s::sim.x": {"cases": ref}}}
    for comps in (compare_to_baseline(recs, baseline, POLICY), compare_models(split_base(recs), POLICY)):
        for comp in comps:
            assert "sign-flip" in comp.gate["method"]
            assert comp.regressed is not higher and comp.improved is higher
    for r in recs:
        del r["binary"], r["base"]["binary"]
        r["passed"] = r["base"]["passed"] = True
    for r in ref.values():
        r.pop("binary", None)
    for comps in (compare_to_baseline(recs, baseline, POLICY), compare_models(split_base(recs), POLICY)):
        assert all(c.gate["method"].startswith("mcnemar") for c in comps)


def test_a_suite_without_a_threshold_has_every_row_field():
    (row,) = evaluate_suites([rec("a", True), rec("b", False), rec("c", True)])
    assert row.n == 3 and row.threshold is None
    for key in ("verdict", "interval_verdict", "p_value", "p_level", "p_adjusted", "family_size"):
        assert getattr(row, key) is None
    assert exit_status([row], [], POLICY, 0) == (0, [])


def test_records_without_a_direction_are_higher_is_better():
    values = spread(0.4, 0.1, 30)
    ref = {f"c{i}": rec(f"c{i}", None, v, binary=False) for i, v in enumerate(values)}
    recs = [rec(f"c{i}", None, v - 0.1, binary=False, base=ref[f"c{i}"])
            for i, v in enumerate(values)]
    baseline = {"suites": {"s::exact.match": {"cases": ref}}}
    for comps in (compare_to_baseline(recs, baseline, POLICY), compare_models(split_base(recs), POLICY)):
        assert comps[0].regressed and comps[0].gate["delta"] == pytest.approx(-0.1)


def test_sign_flip_monte_carlo_counts_the_observed_pattern_and_ties():
    assert sign_flip_pvalues([0.0, 0.0]) == (1.0, 1.0)  # no change: no evidence either way
    # 20 non-zero differences: beyond exact enumeration, so a seeded sample of sign patterns
    drop, gain = sign_flip_pvalues([-1.0] * 20, n_resamples=9999, seed=0)
    assert (drop, gain) == (1 / 10000, 1.0)  # (count + 1) / (n_resamples + 1): never 0
    drop, gain = sign_flip_pvalues([1.0] * 20, n_resamples=9999, seed=0)
    assert (drop, gain) == (1.0, 1 / 10000)
    # +-1 differences tie often: ties count against the alternative, as in the exact test
    drop, gain = sign_flip_pvalues([-1.0] * 10 + [1.0] * 10, n_resamples=9999, seed=0)
    exact = sps.binom.cdf(10, 20, 0.5)  # P(sum <= 0) = P(at most 10 of 20 signs positive)
    assert drop == pytest.approx(exact, abs=0.02) and gain == pytest.approx(exact, abs=0.02)
