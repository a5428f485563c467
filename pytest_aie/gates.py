"""Statistical gates over a run's case records: intervals, threshold verdicts, repeated
sampling, and the exit status; the paired comparisons (against a stored baseline, or base vs
candidate model) are computed in :mod:`pytest_aie.comparisons`.

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

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal

from pytest_aie.results.records import status_of

if TYPE_CHECKING:
    from pytest_aie.comparisons import Comparison

__all__ = ["GatePolicy", "adjust", "evaluate_suites", "exit_status", "row_name", "several_models"]

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class GatePolicy:
    """Run-wide gate settings (options ``--aie-gate``, ``--aie-inconclusive``, ...)."""

    mode: Literal["interval", "point"] = "interval"  # three-way, or the point estimate
    inconclusive: str = "warn"  # what an inconclusive verdict does: fail, pass, warn
    confidence: float = 0.95
    margin: float = 0.02
    alpha: float = 0.05


Key = tuple[str, str, str]  # suite, metric, model


def _model(rec: dict[str, Any]) -> str:
    return str(rec.get("model") or "default")


def _group_records(records: Iterable[dict[str, Any]], *, gated: bool | None = True
                   ) -> dict[Key, list[dict[str, Any]]]:
    """Case records by suite, metric and model (``gated``: only gated records, only a
    suite's reference model's, or both with None)."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("type") == "case" and (gated is None or rec.get("gated", True) is gated):
            groups[(rec["suite"], rec["metric"], _model(rec))].append(rec)
    return dict(sorted(groups.items()))


def several_models(keys: Iterable[Key]) -> set[tuple[str, str]]:
    """The (suite, metric) pairs gated on more than one model: their names say the model."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for suite, metric, model in keys:
        seen[(suite, metric)].add(model)
    return {k for k, v in seen.items() if len(v) > 1}


def row_name(row: dict[str, Any]) -> str:
    """A suite row's display name: ``suite [metric]``, plus ``on MODEL`` in a suite that
    gates several models."""
    name = f"{row['suite']} [{row['metric']}]"
    return name + (f" on {row['model']}" if row.get("several_models") else "")


def _cluster(rec: dict[str, Any]) -> str | None:
    return f"group:{rec['group']}" if rec.get("group") not in (None, "") else None


def _gate_values(recs: list[dict[str, Any]], binary: bool) -> tuple[list[Any], list[Any]]:
    """Values and cluster groups for the aggregate. Repeated samples of one case form a
    cluster, so k samples never count as k independent cases; a case with a declared
    group keeps that group as the cluster of its samples."""
    values: list[Any] = []
    groups: list[Any] = []
    for rec in recs:
        samples = rec.get("samples")
        if samples:
            cluster = _cluster(rec) or f"case:{rec['case_id']}"
            for s in samples:
                values.append(s.get("passed") if binary else s.get("value"))
                groups.append(cluster)
        else:
            values.append(rec.get("passed") if binary else rec.get("value"))
            groups.append(_cluster(rec))
    return values, groups


def evaluate_suites(records: Iterable[dict[str, Any]], policy: GatePolicy = GatePolicy(),
                    aggregates: dict[Key, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One summary row per suite and metric: counts, estimate with interval, threshold,
    verdict, and repeated-sampling figures where cases were sampled more than once;
    ``aggregates``: scorers' own suite figures (corpus BLEU) by suite, metric and model.

    ``passed``/``failed``/``unmeasured`` count real outcomes only; ``scored`` counts cases
    with a score and no per-case threshold, and ``pass_rate`` is over passed and failed
    cases. Verdicts are Holm-adjusted over these rows; :func:`exit_status` adjusts them
    again together with the comparisons."""
    from pytest_aie.stats import aggregate, sampling_summary, sampling_table, verdict

    rows = []
    by_key = _group_records(records)
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
        row: dict[str, Any] = {
            "suite": suite, "metric": metric, "model": model,
            "several_models": (suite, metric) in several, "binary": binary, "n": len(recs),
            "passed": passed, "failed": failed, "scored": statuses.count("scored"),
            "unmeasured": statuses.count("unmeasured"),
            "pass_rate": passed / (passed + failed) if passed + failed else None,
            "estimate": agg.estimate, "interval": None if agg.low is None else [agg.low, agg.high],
            "interval_method": agg.method, "confidence": policy.confidence,
            "mean_score": _mean([r.get("value") for r in recs]),
            "cached": sum(1 for r in recs if r.get("cached")),
            "completion_tokens": sum(r.get("completion_tokens") or 0 for r in recs),
            "threshold": threshold, "verdict": None, "interval_verdict": None,
            "p_value": None, "p_level": None, "p_adjusted": None, "confirmatory": False,
            "family_size": None,
            "must_pass_failed": [r["case_id"] for r, st in zip(recs, statuses)
                                 if r.get("must_pass") and st in ("failed", "unmeasured")],
        }
        higher = all(r.get("higher_is_better", True) for r in recs)
        row["higher_is_better"] = higher
        if threshold is not None:
            if higher:
                row["verdict"] = verdict(agg, threshold, mode=policy.mode)
            else:  # a ceiling (TER, perplexity): judge the negated scale
                row["verdict"] = verdict(_negated(agg), -threshold, mode=policy.mode)
            row["interval_verdict"] = row["verdict"]
            if policy.mode == "interval":
                row["p_value"] = _shortfall_p(values, groups if has_groups else None,
                                              threshold, binary, higher, bounds)
                row["p_level"] = (1 - policy.confidence) / 2
                row["confirmatory"] = row["p_value"] is not None
        own = (aggregates or {}).get((suite, metric, model))
        if own is not None:  # the scorer's own suite figures
            budgets = own.get("latency")
            if isinstance(budgets, dict):  # latency budgets, each with its own verdict
                row["budgets"] = budgets
                if isinstance(own.get("utilization"), dict):  # the decode's MBU and MFU
                    row["utilization"] = own["utilization"]
                if isinstance(own.get("measured"), dict):  # the probe's p50/p90/p99
                    row["measured"] = own["measured"]
            elif isinstance(own.get("elo"), dict):  # a ranking, with its expect= gates
                from pytest_aie.judge.elo import decide

                # decided again at the run's level (the scorer's fit used the default)
                row["elo"] = decide(own["elo"], (1 - policy.confidence) / 2)
                gates = [e for e in row["elo"].get("expect") or () if isinstance(e, dict)]
                verdicts = [e["verdict"] for e in gates]
                if verdicts:
                    worst = "fail" if "fail" in verdicts else \
                        "inconclusive" if "inconclusive" in verdicts else "pass"
                    deciding = [e for e in gates if e["verdict"] == worst]
                    why = "; ".join(f"expect {e['expect']}: {e.get('reason') or worst}"
                                    for e in deciding)
                    row.update(verdict=worst, interval_verdict=worst, confirmatory=False,
                               p_value=None, verdict_reason=why,
                               failed_expectations=[e["expect"] for e in gates
                                                    if e["verdict"] == "fail"])
                    if worst == "inconclusive":
                        row["inconclusive_reason"] = why
                        row["inconclusive_todo"] = "judge more battles (more cases), or use " \
                            "a judge whose pick does not follow the answer order"
                elif own["elo"].get("expect") is not None and own["elo"].get("reason"):
                    row.update(verdict="inconclusive", interval_verdict="inconclusive",
                               inconclusive_reason=own["elo"]["reason"])
            elif isinstance(own.get("judge"), dict):  # an AI judge's bias and calibration
                row["judge"] = own["judge"]
                trust = own["judge"].get("trust") or {}
                if trust.get("untrusted"):  # its verdicts decide nothing
                    row.update(verdict="inconclusive", interval_verdict="inconclusive",
                               confirmatory=False, p_value=None,
                               inconclusive_reason=f"judge untrusted: {trust.get('reason')}")
                    if trust.get("todo"):
                        row["inconclusive_todo"] = trust["todo"]
            else:
                row["corpus"] = own
        sampled = {r["case_id"]: [s.get("passed") for s in r["samples"]]
                   for r in recs if r.get("samples")}
        if sampled and binary:
            k = max(len(v) for v in sampled.values())
            summary = sampling_summary(sampled, k)
            table = sampling_table(sampled, k)
            row["sampling"] = {**summary.to_dict(), "pass_at_1": table["pass_at"][1], **table}
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


def adjust(rows: list[dict[str, Any]], comparisons: list[Comparison], policy: GatePolicy) -> int:
    """Holm's adjustment over every confirmatory decision of ``rows`` and ``comparisons``
    (see the module docstring); sets ``p_adjusted``, ``family_size`` and the final
    ``verdict`` / ``regressed`` in place and returns the family's size. Idempotent: it
    starts from the unadjusted ``interval_verdict`` and ``gate["regressed"]``.

    A threshold verdict is decided at one-sided level ``(1 - confidence) / 2`` and a
    regression at ``alpha``; p-values enter the family as ``p * alpha / level`` so that a
    family of one decides exactly as the decision alone."""
    from pytest_aie.stats import holm

    alpha = policy.alpha
    members: list[tuple[float, Any]] = []
    for row in rows:
        if row.get("confirmatory") and row.get("p_value") is not None:
            members.append((min(1.0, row["p_value"] * alpha / row["p_level"]), row))
    for comp in comparisons:
        if comp.confirmatory and comp.p_value is not None:
            members.append((comp.p_value, comp))
    adjusted = holm([p for p, _ in members])
    m = len(members)
    for p_adj, (_, item) in zip(adjusted, members):
        if not isinstance(item, dict):  # a Comparison (rows are dicts)
            item.p_adjusted, item.family_size = p_adj, m
            item.regressed = bool(item.gate and item.gate["regressed"]) and p_adj < alpha
        else:
            item["p_adjusted"], item["family_size"] = p_adj, m
            if item["interval_verdict"] == "fail":
                item["verdict"] = "fail" if p_adj < alpha else "inconclusive"
    return m


def exit_status(rows: list[dict[str, Any]], comparisons: list[Comparison], policy: GatePolicy,
                status: int) -> tuple[int, list[str]]:
    """The run's exit status after the gates, and the lines that explain it.

    First the family-wise adjustment over all of ``rows`` and ``comparisons``
    (:func:`adjust`, in place, so that what is shown is what decided). Precedence:
    pytest's own failures and interruptions stay; a regression (exit 11) beats evals failed
    (exit 1); a suite verdict of ``fail``, a must-pass case that failed, or an
    inconclusive verdict under ``--aie-inconclusive fail`` means evals failed.
    """
    from pytest_aie.errors import EXIT_REGRESSION

    m = adjust(rows, comparisons, policy)
    notes: list[str] = []
    failed = False
    for row in rows:
        name = row_name(row)
        held_back = row["verdict"] == "inconclusive" and row.get("interval_verdict") == "fail"
        if row["verdict"] == "fail":
            failed = True
            for text in row.get("failed_expectations") or ():  # each failed ranking gate
                reason = next((e.get("reason") for e in (row.get("elo") or {}).get("expect")
                               or () if e.get("expect") == text), None)
                notes.append(f"{name}: expect {text} FAILED: {reason}")
        elif row["verdict"] == "inconclusive":
            why = (f"the interval is on the wrong side of the threshold, but the shortfall is not "
                   f"significant (p={row['p_value']:.3g}, Holm-adjusted {row['p_adjusted']:.3g} "
                   f"over {m} decisions)" if held_back else
                   "too little data to decide" if row["interval"] is None
                   or row["interval"][0] == row["interval"][1] or row["n"] - row["unmeasured"] < 2
                   else "the interval straddles the threshold")
            todo = "add cases or samples to decide"
            if row.get("inconclusive_reason"):
                why = row["inconclusive_reason"]
                todo = row.get("inconclusive_todo") or "calibrate or change the judge"
            if policy.inconclusive == "fail":
                failed = True
                notes.append(f"{name}: inconclusive ({why}), counted as a failure "
                             "(--aie-inconclusive fail)")
            elif policy.inconclusive == "warn":
                notes.append(f"WARNING {name}: inconclusive: {why}; "
                             f"{todo} (--aie-inconclusive fail makes this fail)")
        if row.get("must_pass_failed"):
            failed = True
        for budget, b in (row.get("budgets") or {}).items():
            # a budget's verdict is its bootstrap interval against the budget (three-way);
            # not a p-value test, so outside the Holm family, like point verdicts
            if b.get("verdict") == "fail":
                failed = True
            elif b.get("verdict") == "inconclusive" and policy.inconclusive == "fail":
                failed = True
                notes.append(f"{name}: latency budget {budget} inconclusive, counted as a "
                             "failure (--aie-inconclusive fail)")
            elif b.get("verdict") == "inconclusive" and policy.inconclusive == "warn":
                notes.append(f"WARNING {name}: latency budget {budget} inconclusive: the "
                             "interval straddles the budget; measure more requests to decide")
    for comp in comparisons:
        if comp.confirmatory and comp.gate and comp.gate.get("regressed") and not comp.regressed:
            where = comp.suite + (f" ({comp.scope})" if comp.scope != "suite" else "")
            notes.append(f"{where} [{comp.metric}]: a drop with p={comp.p_value:.3g}, not "
                         f"significant after the Holm adjustment over {m} decisions "
                         f"(adjusted p={comp.p_adjusted:.3g}): not a regression")
    if any(c.regressed for c in comparisons):
        return EXIT_REGRESSION, notes
    if failed and status == 0:
        return 1, notes
    return status, notes
