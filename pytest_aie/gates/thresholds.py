"""Suite thresholds over a run's case records: intervals, threshold verdicts and repeated
sampling (:func:`evaluate_suites`). The paired comparisons (against a stored baseline, or base
vs candidate model) are computed in :mod:`pytest_aie.gates.comparisons`, the family-wise
adjustment in :mod:`pytest_aie.gates.policy` and the exit status in
:mod:`pytest_aie.gates.conclusion`; this docstring describes the family they share.

Everything here works on the plain case records of the results log, so the xdist controller
(which collects no tests itself) can gate on what its workers sent. The numerics are in
:mod:`pytest_aie.stats`.

A record carries what its suite's gate needs: ``binary`` (pass/fail metric or continuous
score), ``status`` (``passed``, ``failed``, ``scored``: a score with no per-case threshold,
or ``unmeasured``), ``gate`` (``min_pass_rate`` / ``min_score`` from the eval marker or
ini), ``group`` (cases that share a group are clustered, in suite intervals and in paired
tests alike), ``samples`` (repeated sampling) and ``base`` (the base model's outcome in a
finetune comparison).

Confirmatory and exploratory decisions
--------------------------------------
The *confirmatory* decisions are the statistical ones that can fail a run, and together
they form one family whose chance of failing a run when nothing is wrong is held at
``alpha`` by Holm's method (:mod:`pytest_aie.stats.multiple`):

* each suite threshold verdict in interval mode (``fail`` needs the interval wholly on the
  wrong side of the threshold *and* the Holm-adjusted p-value of the one-sided test of
  :func:`pytest_aie.stats.threshold_pvalue` below ``alpha``; else ``inconclusive``);
* each paired regression test of a suite against a baseline;
* each base-vs-candidate regression test, per suite *and* per tag (a slice can regress while
  the suite does not, so tags can fail the run; the cost is that every added tag makes
  the family larger).

Regression then needs the adjusted p-value below ``alpha`` and the drop beyond the margin.
Rows and comparisons carry ``p_value`` (unadjusted), ``p_adjusted`` (Holm, over
``family_size`` decisions) and ``confirmatory``. *Exploratory*, shown but never failing
the run through the family: improvements, pass@k and consistency figures. Outside the
family because they are not statistical tests: ``--aie-gate point`` verdicts (the estimate
against the threshold, by request), must-pass cases, and inconclusive verdicts counted as
failures under ``--aie-inconclusive fail``.
"""

from __future__ import annotations

from typing import Any, Iterable

from pytest_aie.gates.policy import GatePolicy, adjust
from pytest_aie.results.records import (
    Key,
    SuiteRow,
    cluster_of,
    group_records,
    several_models,
    status_of,
)

__all__ = ["SuiteRow", "evaluate_suites", "row_name"]


def row_name(row: SuiteRow) -> str:
    """A suite row's display name: ``suite [metric]``, plus ``on MODEL`` in a suite that
    gates several models."""
    return row.name


def _gate_values(recs: list[dict[str, Any]], binary: bool) -> tuple[list[Any], list[Any]]:
    """Values and cluster groups for the aggregate. Repeated samples of one case form a
    cluster, so k samples never count as k independent cases; a case with a declared
    group keeps that group as the cluster of its samples."""
    values: list[Any] = []
    groups: list[Any] = []
    for rec in recs:
        samples = rec.get("samples")
        if samples:
            cluster = cluster_of(rec) or f"case:{rec['case_id']}"
            for s in samples:
                values.append(s.get("passed") if binary else s.get("value"))
                groups.append(cluster)
        else:
            values.append(rec.get("passed") if binary else rec.get("value"))
            groups.append(cluster_of(rec))
    return values, groups


def evaluate_suites(records: Iterable[dict[str, Any]], policy: GatePolicy = GatePolicy(),
                    aggregates: dict[Key, dict[str, Any]] | None = None) -> list[SuiteRow]:
    """One summary row per suite and metric: counts, estimate with interval, threshold,
    verdict, and repeated-sampling figures where cases were sampled more than once;
    ``aggregates``: scorers' own suite figures (corpus BLEU) by suite, metric and model.

    ``passed``/``failed``/``unmeasured`` count real outcomes only; ``scored`` counts cases
    with a score and no per-case threshold, and ``pass_rate`` is over passed and failed
    cases. Verdicts are Holm-adjusted over these rows; :func:`pytest_aie.gates.conclusion.exit_status` adjusts them
    again together with the comparisons."""
    from pytest_aie.stats import aggregate, sampling_summary, sampling_table, verdict

    rows: list[SuiteRow] = []
    by_key = group_records(records)
    several = several_models(by_key)
    for (suite, metric, model), recs in by_key.items():
        binary = all(r.get("binary", True) for r in recs)
        statuses = [status_of(r) for r in recs]
        passed, failed = statuses.count("passed"), statuses.count("failed")
        values, groups = _gate_values(recs, binary)
        has_groups = any(g is not None for g in groups)
        bounds = _bounds(recs)
        agg = aggregate(values, binary=binary, groups=groups if has_groups else None,
                        confidence=policy.confidence, bounds=bounds)
        gate = next((r["gate"] for r in recs if r.get("gate")), None) or {}
        threshold = gate.get("min_pass_rate") if binary else gate.get("min_score")
        if threshold is None:
            threshold = gate.get("min_score") if binary else gate.get("min_pass_rate")
        row = SuiteRow(
            suite=suite, metric=metric, model=model,
            several_models=(suite, metric) in several, binary=binary, n=len(recs),
            passed=passed, failed=failed, scored=statuses.count("scored"),
            unmeasured=statuses.count("unmeasured"),
            pass_rate=passed / (passed + failed) if passed + failed else None,
            estimate=agg.estimate,
            interval=None if agg.low is None or agg.high is None else [agg.low, agg.high],
            interval_method=agg.method, confidence=policy.confidence,
            mean_score=_mean([r.get("value") for r in recs]),
            cached=sum(1 for r in recs if r.get("cached")),
            completion_tokens=sum(r.get("completion_tokens") or 0 for r in recs),
            threshold=threshold,
            must_pass_failed=[r["case_id"] for r, st in zip(recs, statuses)
                              if r.get("must_pass") and st in ("failed", "unmeasured")],
            higher_is_better=all(r.get("higher_is_better", True) for r in recs),
        )
        if threshold is not None:
            if row.higher_is_better:
                row.verdict = verdict(agg, threshold, mode=policy.mode)
            else:  # a ceiling (TER, perplexity): judge the negated scale
                row.verdict = verdict(_negated(agg), -threshold, mode=policy.mode)
            row.interval_verdict = row.verdict
            if policy.mode == "interval":
                row.p_value = _shortfall_p(values, groups if has_groups else None,
                                           threshold, binary, row.higher_is_better, bounds)
                row.p_level = (1 - policy.confidence) / 2
                row.confirmatory = row.p_value is not None
        own = (aggregates or {}).get((suite, metric, model))
        if own is not None:  # the scorer's own suite figures
            budgets = own.get("latency")
            if isinstance(budgets, dict):  # latency budgets, each with its own verdict
                row.budgets = budgets
                if isinstance(own.get("utilization"), dict):  # the decode's MBU and MFU
                    row.utilization = own["utilization"]
                if isinstance(own.get("measured"), dict):  # the probe's p50/p90/p99
                    row.measured = own["measured"]
            elif isinstance(own.get("elo"), dict):  # a ranking, with its expect= gates
                from pytest_aie.judge.elo import decide

                # decided again at the run's level (the scorer's fit used the default)
                row.elo = elo = decide(own["elo"], (1 - policy.confidence) / 2)
                gates = [e for e in elo.get("expect") or () if isinstance(e, dict)]
                verdicts = [e["verdict"] for e in gates]
                if verdicts:
                    worst = "fail" if "fail" in verdicts else \
                        "inconclusive" if "inconclusive" in verdicts else "pass"
                    deciding = [e for e in gates if e["verdict"] == worst]
                    why = "; ".join(f"expect {e['expect']}: {e.get('reason') or worst}"
                                    for e in deciding)
                    row.verdict = row.interval_verdict = worst
                    row.confirmatory, row.p_value, row.verdict_reason = False, None, why
                    row.failed_expectations = [e["expect"] for e in gates
                                               if e["verdict"] == "fail"]
                    if worst == "inconclusive":
                        row.inconclusive_reason = why
                        row.inconclusive_todo = "judge more battles (more cases), or use " \
                            "a judge whose pick does not follow the answer order"
                elif own["elo"].get("expect") is not None and own["elo"].get("reason"):
                    row.verdict = row.interval_verdict = "inconclusive"
                    row.inconclusive_reason = own["elo"]["reason"]
            elif isinstance(own.get("judge"), dict):  # an AI judge's bias and calibration
                row.judge = own["judge"]
                trust = own["judge"].get("trust") or {}
                if trust.get("untrusted"):  # its verdicts decide nothing
                    row.verdict = row.interval_verdict = "inconclusive"
                    row.confirmatory, row.p_value = False, None
                    row.inconclusive_reason = f"judge untrusted: {trust.get('reason')}"
                    if trust.get("todo"):
                        row.inconclusive_todo = trust["todo"]
            else:
                row.corpus = own
        sampled = {r["case_id"]: [s.get("passed") for s in r["samples"]]
                   for r in recs if r.get("samples")}
        if sampled and binary:
            k = max(len(v) for v in sampled.values())
            summary = sampling_summary(sampled, k)
            table = sampling_table(sampled, k)
            row.sampling = {**summary.to_dict(), "pass_at_1": table["pass_at"][1], **table}
        rows.append(row)
    adjust(rows, [], policy)
    return rows


def _bounds(recs: list[dict[str, Any]]) -> tuple[float | None, float | None] | None:
    """The metric's bounds as the records carry them (``[low, high]``, either may be null)."""
    found = next((r["bounds"] for r in recs if isinstance(r.get("bounds"), (list, tuple))
                  and len(r["bounds"]) == 2), None)
    if found is None:
        return None
    low, high = (None if b is None else float(b) for b in found)
    return low, high


def _shortfall_p(values: list[Any], groups: list[Any] | None, threshold: float, binary: bool,
                 higher: bool, bounds: tuple[float | None, float | None] | None = None
                 ) -> float | None:
    """One-sided p-value that the suite is on the wrong side of its threshold (below a
    floor, above a ceiling)."""
    from pytest_aie.stats import threshold_pvalue

    if higher:
        return threshold_pvalue(values, threshold, binary=binary, groups=groups, bounds=bounds)
    if binary:  # a ceiling on a pass rate: the rate of the opposite outcome is a floor
        flipped = [None if v is None else 1.0 - float(v) for v in values]
        return threshold_pvalue(flipped, 1.0 - threshold, binary=True, groups=groups)
    negated = [None if v is None else -float(v) for v in values]
    flipped_bounds = None if bounds is None else (
        None if bounds[1] is None else -bounds[1], None if bounds[0] is None else -bounds[0])
    return threshold_pvalue(negated, -threshold, binary=False, groups=groups,
                            bounds=flipped_bounds)


def _negated(agg: Any) -> Any:
    from dataclasses import replace

    if agg.estimate is None:
        return agg
    return replace(agg, estimate=-agg.estimate, low=-agg.high, high=-agg.low)


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
