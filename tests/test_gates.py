"""Unit tests of pytest_aie.gates.thresholds on plain case records: counts by status, ceiling verdicts,
clustered paired comparisons, baselines with groups, the family-wise adjustment and exit
status, pass@k rows. (The same paths through the plugin: test_gates_plugin.py.)"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from pytest_aie.errors import EXIT_REGRESSION, UsageError
from pytest_aie.gates.baseline import BASELINE_FORMAT, load_baseline, make_baseline
from pytest_aie.gates.comparisons import Comparison, compare_models, compare_to_baseline
from pytest_aie.gates.conclusion import exit_status
from pytest_aie.gates.policy import GatePolicy, adjust
from pytest_aie.gates.thresholds import evaluate_suites

POLICY = GatePolicy()


def rec(case_id: str, passed: bool | None = None, value: float | None = None, *,
        suite: str = "s", metric: str = "exact.match", **extra: Any) -> dict[str, Any]:
    out = {"type": "case", "suite": suite, "metric": metric, "case_id": case_id,
           "passed": passed, "value": value if value is not None else
           (None if passed is None else float(passed)), "binary": True, "tags": []}
    out.update(extra)
    return out


def split_base(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records written with a ``base`` outcome (shorthand in these tests) as the run writes
    them: the candidate's record, and the reference model's record of the same case."""
    out = []
    for r in recs:
        base = r.get("base")
        cand = {k: v for k, v in r.items() if k != "base"}
        if base is None:
            out.append(cand)
            continue
        out.append({**cand, "model": "candidate"})
        outcome = {k: v for k, v in base.items() if k not in ("suite", "metric", "case_id")}
        out.append({**cand, "passed": None, "value": None, "status": None, **outcome,
                    "model": "default", "gated": False})
    return out


def spread(mean: float, sd: float, n: int) -> list[float]:
    """n deterministic values with the given mean and about the given spread."""
    return list(mean + sd * sps.norm.ppf((np.arange(n) + 0.5) / n))


# ---------------------------------------------------------------- counts (item 5)


def test_scored_cases_are_counted_apart_from_passed():
    recs = [rec(f"c{i}", None, v, status="scored", binary=False, metric="sim.bertscore",
                gate={"min_score": 0.5}) for i, v in enumerate(spread(0.8, 0.05, 8))]
    recs.append(rec("u", None, None, status="unmeasured", binary=False, metric="sim.bertscore"))
    (row,) = evaluate_suites(recs)
    assert (row.passed, row.failed, row.scored, row.unmeasured) == (0, 0, 8, 1)
    assert row.pass_rate is None
    assert row.estimate == pytest.approx(0.8) and row.verdict == "pass"


def test_records_without_status_derive_it_from_passed():
    recs = [rec("a", True), rec("b", False), rec("c", None), rec("d", True, status="passed")]
    (row,) = evaluate_suites(recs)
    assert (row.passed, row.failed, row.scored, row.unmeasured) == (2, 1, 0, 1)
    assert row.pass_rate == pytest.approx(2 / 3)


# ---------------------------------------------------------------- ceilings (item 23)


def _ter_suite(values: list[float], ceiling: float) -> dict[str, Any]:
    recs = [rec(f"c{i}", None, v, status="scored", binary=False, metric="sim.ter",
                higher_is_better=False, gate={"min_score": ceiling}, output="x", expected="x")
            for i, v in enumerate(values)]
    (row,) = evaluate_suites(recs)
    return row


@pytest.mark.parametrize("ceiling,expected", [
    (0.50, "pass"),  # the whole interval is under the ceiling
    (0.31, "inconclusive"),  # the ceiling lies inside the interval
    (0.29, "inconclusive"),
    (0.20, "fail"),  # the whole interval is above the ceiling
])
def test_ceiling_verdicts_with_a_real_interval(ceiling, expected):
    row = _ter_suite(spread(0.30, 0.08, 40), ceiling)
    low, high = row.interval
    assert low < 0.30 < high and high - low > 0.03  # a non-degenerate interval
    assert row.verdict == expected and not row.higher_is_better
    if expected == "fail":
        assert row.p_value < 0.001  # the test is of "above the ceiling"
    else:
        assert row.p_value > 0.1


def test_pass_rate_ceiling():
    # a pass/fail metric where lower is better (e.g. a refusal rate) with a ceiling
    recs = [rec(f"c{i}", i < 30, higher_is_better=False, gate={"min_pass_rate": 0.1})
            for i in range(100)]
    (row,) = evaluate_suites(recs)
    assert row.verdict == "fail" and row.p_value < 1e-6
    assert evaluate_suites([{**r, "gate": {"min_pass_rate": 0.6}} for r in recs])[0].verdict == "pass"


def test_paired_comparison_of_a_lower_is_better_score():
    rng = np.random.default_rng(1)
    ter = rng.uniform(0.2, 0.6, 200)

    def run(values: np.ndarray) -> list[dict[str, Any]]:
        return [rec(f"c{i}", None, float(v), status="scored", binary=False, metric="sim.ter",
                    higher_is_better=False) for i, v in enumerate(values)]

    baseline = make_baseline("b", {}, run(ter))
    (worse,) = compare_to_baseline(run(ter + 0.05 + rng.normal(0, 0.02, 200)), baseline, POLICY)
    assert worse.regressed and not worse.improved and worse.gate["delta"] < -0.04
    (better,) = compare_to_baseline(run(ter - 0.05 + rng.normal(0, 0.02, 200)), baseline, POLICY)
    assert better.improved and not better.regressed


# ---------------------------------------------------------------- clusters (item 7)


def test_sampled_cases_keep_their_declared_group_as_cluster():
    recs = []
    rng = np.random.default_rng(0)
    for i in range(20):
        samples = [{"passed": bool(x), "value": None} for x in rng.random(3) < 0.7]
        recs.append(rec(f"c{i}", True, group=f"g{i // 4}", samples=samples))
    (row,) = evaluate_suites(recs)
    assert "(5 groups)" in row.interval_method
    ungrouped = evaluate_suites([{**r, "group": None} for r in recs])[0]
    assert "(20 groups)" in ungrouped.interval_method


def _clustered_runs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """100 cases in 10 groups; the current run loses exactly one whole group."""
    base = [rec(f"c{i}", True, group=f"g{i // 10}") for i in range(100)]
    cur = [rec(f"c{i}", i >= 10, group=f"g{i // 10}") for i in range(100)]
    return base, cur


def test_baseline_stores_groups_and_paired_test_uses_clusters():
    base, cur = _clustered_runs()
    baseline = make_baseline("main", {}, base)
    assert baseline["format_version"] == BASELINE_FORMAT == 3
    case = baseline["suites"]["s::exact.match"]["cases"]["c3"]
    assert case["group"] == "g0" and case["status"] == "passed"
    (comp,) = compare_to_baseline(cur, baseline, POLICY)
    assert comp.gate["clusters"] == 10 and not comp.regressed
    assert comp.newly_failing == [f"c{i}" for i in range(10)]
    # the current run's groups are used even against a baseline that has none
    plain = make_baseline("main", {}, [{**r, "group": None} for r in base])
    assert compare_to_baseline(cur, plain, POLICY)[0].gate["clusters"] == 10
    # without groups anywhere, ten newly failing cases out of none newly passing regress
    (flat,) = compare_to_baseline([{**r, "group": None} for r in cur], plain, POLICY)
    assert flat.regressed and flat.gate["clusters"] is None


def test_version_1_baselines_still_load(tmp_path):
    base, cur = _clustered_runs()
    old = make_baseline("old", {}, [{**r, "group": None} for r in base])
    old["format_version"] = 1
    for case in old["suites"]["s::exact.match"]["cases"].values():
        del case["group"], case["status"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = load_baseline(path)
    (comp,) = compare_to_baseline([{**r, "group": None} for r in cur], loaded, POLICY)
    assert comp.shared == 100 and comp.regressed
    path.write_text(json.dumps({**old, "format_version": 4}))
    with pytest.raises(UsageError, match="format 4"):
        load_baseline(path)


def test_candidate_comparison_uses_the_records_groups():
    base, cur = _clustered_runs()
    recs = [{**c, "base": {"passed": b["passed"], "value": b["value"]}} for b, c in zip(base, cur)]
    (comp,) = compare_models(split_base(recs), POLICY)
    assert comp.gate["clusters"] == 10 and not comp.regressed


# ---------------------------------------------------------------- family-wise control (item 8)


def _tagged_run(drop_in_t0: tuple[int, int]) -> list[dict[str, Any]]:
    """1000 cases in 10 tags of 100. Tag t0 has (b newly failing, c newly passing); the
    other tags two of each, so the suite as a whole barely moves."""
    recs = []
    for t in range(10):
        b, c = drop_in_t0 if t == 0 else (2, 2)
        for j in range(100):
            base_pass = j >= b + c or j < b  # j < b: newly failing; b <= j < b + c: newly passing
            cand_pass = j >= b
            recs.append(rec(f"t{t}-{j}", cand_pass, tags=[f"t{t}"],
                            base={"passed": base_pass, "value": float(base_pass)}))
    return recs


def test_one_tag_at_p_0_03_among_eleven_decisions_does_not_fail_the_run():
    comps = compare_models(split_base(_tagged_run((9, 2))), POLICY)
    assert len(comps) == 11
    t0 = next(c for c in comps if c.scope == "tag:t0")
    # alone this would be a regression: McNemar p = P(X >= 9 | 11, 1/2) = 0.0327, delta -7 pts
    assert t0.p_value == pytest.approx(67 / 2048) and t0.gate["regressed"]
    assert not t0.regressed and t0.confirmatory and t0.family_size == 11
    assert t0.p_adjusted == pytest.approx(min(1.0, 11 * 67 / 2048))
    status, notes = exit_status([], comps, POLICY, 0)
    assert status == 0 and not any(c.regressed for c in comps)
    assert any("t0" in n and "Holm" in n for n in notes)
    assert "Holm-adjusted" in t0.line()


def test_a_clear_tag_regression_survives_the_adjustment():
    comps = compare_models(split_base(_tagged_run((20, 0))), POLICY)
    t0 = next(c for c in comps if c.scope == "tag:t0")
    assert t0.regressed and t0.p_adjusted < 0.05
    assert exit_status([], comps, POLICY, 0)[0] == EXIT_REGRESSION


def _suite(name: str, passes: int, n: int, threshold: float) -> list[dict[str, Any]]:
    return [rec(f"c{i}", i < passes, suite=name, gate={"min_pass_rate": threshold})
            for i in range(n)]


def test_threshold_verdicts_are_adjusted_with_the_family():
    alone = evaluate_suites(_suite("a", 80, 100, 0.88))
    # Wilson upper bound 0.867 < 0.88; exact binomial p = 0.0147 (x2 for the one-sided 2.5%)
    assert alone[0].verdict == "fail" and alone[0].interval[1] < 0.88
    assert alone[0].p_value == pytest.approx(sps.binomtest(80, 100, 0.88, alternative="less").pvalue)
    assert alone[0].confirmatory and alone[0].family_size == 1
    assert exit_status(alone, [], POLICY, 0)[0] == 1
    rows = evaluate_suites(_suite("a", 80, 100, 0.88) + _suite("b", 95, 100, 0.5))
    a = rows[0]
    assert a.interval_verdict == "fail" and a.verdict == "inconclusive"
    assert a.p_adjusted == pytest.approx(2 * 2 * a.p_value) and a.family_size == 2
    status, notes = exit_status(rows, [], POLICY, 0)
    assert status == 0 and any("not significant" in n and "Holm" in n for n in notes)
    # a comparison joins the family: adjust again, idempotently
    comp = Comparison("x", "m", "suite", 10, 0, 0, {"regressed": False}, False, False,
                      p_value=0.9, confirmatory=True)
    assert adjust(rows, [comp], POLICY) == 3 == adjust(rows, [comp], POLICY)
    assert rows[0].p_adjusted == pytest.approx(3 * 2 * a.p_value)


def test_point_mode_verdicts_are_outside_the_family():
    policy = GatePolicy(mode="point")
    (row,) = evaluate_suites(_suite("a", 80, 100, 0.88), policy)
    assert row.verdict == "fail" and row.p_value is None and not row.confirmatory


# ---------------------------------------------------------------- pass@k rows (item 11)


def test_rows_report_pass_at_every_k():
    outcomes = {"a": [True, False, False, False], "b": [True, True, None, True],
                "c": [False, False, False, False]}
    recs = [rec(cid, True, samples=[{"passed": p, "value": None} for p in s])
            for cid, s in outcomes.items()]
    (row,) = evaluate_suites(recs)
    sampling = row.sampling
    assert list(sampling["pass_at"]) == [1, 2, 3, 4] and list(sampling["pass_hat"]) == [1, 2, 3, 4]
    assert sampling["pass_at_1"] == sampling["pass_at"][1] == pytest.approx((0.25 + 1 + 0) / 3)
    assert sampling["pass_at"][3] == pytest.approx((0.75 + 1.0 + 0.0) / 3)  # b counts at k=3
    assert sampling["skipped_at"][4] == 1 and sampling["k"] == 4
    assert sampling["pass_at_k"] == sampling["pass_at"][4]


def test_latency_budgets_from_the_scorers_aggregate_decide_the_exit_status():
    recs = [rec(f"c{i}", None, 100.0 + i, status="scored", binary=False, metric="latency.e2e_ms",
                higher_is_better=False) for i in range(10)]

    def budgets(verdict: str) -> dict:
        return {("s", "latency.e2e_ms", "default"): {"latency": {"ttft_p95_ms": {
            "estimate": 80.0, "low": 70.0, "high": 90.0, "budget": 50.0, "verdict": verdict,
            "n": 10}}}}

    (row,) = evaluate_suites(recs, POLICY, budgets("fail"))
    assert row.budgets["ttft_p95_ms"]["verdict"] == "fail" and row.corpus is None
    assert exit_status([row], [], POLICY, 0)[0] == 1
    (row,) = evaluate_suites(recs, POLICY, budgets("pass"))
    assert exit_status([row], [], POLICY, 0) == (0, [])
    (row,) = evaluate_suites(recs, POLICY, budgets("inconclusive"))
    status, notes = exit_status([row], [], POLICY, 0)
    assert status == 0 and any("ttft_p95_ms inconclusive" in n for n in notes)
    strict = GatePolicy(inconclusive="fail")
    assert exit_status([row], [], strict, 0)[0] == 1


def _scores(values: list[float], threshold: float, *, bounds: Any = (0.0, 1.0), higher: bool = True,
            groups: list[str | None] | None = None) -> list[dict[str, Any]]:
    return [rec(f"c{i}", None, v, metric="retrieval.mrr", binary=False, higher_is_better=higher,
                bounds=None if bounds is None else list(bounds), gate={"min_score": threshold},
                **({"group": groups[i]} if groups else {}))
            for i, v in enumerate(values)]


def test_a_perfect_bounded_metric_gets_an_exact_interval_and_a_verdict() -> None:
    # 22 cases all at MRR 1.0: the bootstrap has no spread (zero width, "too little data");
    # the metric's bounds give the Clopper-Pearson interval of 22 successes in 22
    row = evaluate_suites(_scores([1.0] * 22, 0.7))[0]
    exact = sps.binomtest(22, 22).proportion_ci(0.95, method="exact")
    assert row.interval == pytest.approx([exact.low, 1.0])
    assert row.verdict == "pass" and row.interval_method.startswith("exact")
    assert row.p_value == pytest.approx(0.7 ** 22)
    # the same values without bounds (an old log) stay undecided, as before
    assert evaluate_suites(_scores([1.0] * 22, 0.7, bounds=None))[0].verdict == "inconclusive"
    # three cases cannot show a mean of at least 0.7; every case at the floor fails
    assert evaluate_suites(_scores([1.0] * 3, 0.7))[0].verdict == "inconclusive"
    zero = evaluate_suites(_scores([0.0] * 22, 0.7))[0]
    assert zero.verdict == "fail" and zero.interval[0] == 0.0
    # a 1-5 judge scale, and a ceiling (lower is better) with every value at the floor
    five = evaluate_suites(_scores([5.0] * 30, 4.0, bounds=(1.0, 5.0)))[0]
    assert five.verdict == "pass" and five.interval[0] == pytest.approx(1 + 4 * 0.025 ** (1 / 30))
    ceiling = evaluate_suites(_scores([0.0] * 22, 0.2, higher=False))[0]
    assert ceiling.verdict == "pass" and ceiling.p_value == pytest.approx(0.8 ** 22)
    # an interior constant value has no exact bound: undecided
    assert evaluate_suites(_scores([0.5] * 22, 0.3))[0].verdict == "inconclusive"
    # a shared group counts once: 22 cases in 2 clusters are 2 units
    grouped = evaluate_suites(_scores([1.0] * 22, 0.7, groups=["a"] * 11 + ["b"] * 11))[0]
    assert grouped.verdict == "inconclusive" and grouped.interval[0] == pytest.approx(0.025 ** 0.5)
