"""Statistical gates over a run's case records: intervals, threshold verdicts, repeated
sampling, and paired comparisons (against a stored baseline, or base vs candidate model).

Everything here works on the plain case records of the results log, so the xdist controller
(which collects no tests itself) can gate on what its workers sent. The numerics are in
:mod:`pytest_aie.stats`.

A record carries what its suite's gate needs: ``binary`` (pass/fail metric or continuous
score), ``gate`` (``min_pass_rate`` / ``min_score`` from the eval marker or ini), ``group``
(cases that share a group are clustered), ``samples`` (repeated sampling) and ``base`` (the
base model's outcome in a finetune comparison).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["GatePolicy", "Comparison", "evaluate_suites", "compare_pairs", "compare_models"]

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class GatePolicy:
    """Run-wide gate settings (options ``--aie-gate``, ``--aie-inconclusive``, ...)."""

    mode: str = "interval"  # "interval" (three-way) or "point" (point estimate vs threshold)
    inconclusive: str = "warn"  # what an inconclusive verdict does: fail, pass, warn
    confidence: float = 0.95
    margin: float = 0.02
    alpha: float = 0.05


def _key(rec: dict[str, Any]) -> tuple[str, str]:
    return rec["suite"], rec["metric"]


def _group_records(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("type") == "case":
            groups[_key(rec)].append(rec)
    return dict(sorted(groups.items()))


def _gate_values(recs: list[dict[str, Any]], binary: bool) -> tuple[list[Any], list[Any]]:
    """Values and cluster groups for the aggregate. Repeated samples of one case form a
    cluster, so k samples never count as k independent cases."""
    values: list[Any] = []
    groups: list[Any] = []
    for rec in recs:
        samples = rec.get("samples")
        if samples:
            for s in samples:
                values.append(s.get("passed") if binary else s.get("value"))
                groups.append(f"case:{rec['case_id']}")
        else:
            values.append(rec.get("passed") if binary else rec.get("value"))
            groups.append(f"group:{rec['group']}" if rec.get("group") is not None else None)
    return values, groups


def evaluate_suites(records: Iterable[dict[str, Any]], policy: GatePolicy = GatePolicy()
                    ) -> list[dict[str, Any]]:
    """One summary row per suite and metric: counts, estimate with interval, threshold,
    verdict, and repeated-sampling figures where cases were sampled more than once."""
    from pytest_aie.stats import aggregate, sampling_summary, verdict

    rows = []
    for (suite, metric), recs in _group_records(records).items():
        binary = all(r.get("binary", True) for r in recs)
        passed = sum(1 for r in recs if r.get("passed") is True)
        failed = sum(1 for r in recs if r.get("passed") is False)
        values, groups = _gate_values(recs, binary)
        has_groups = any(g is not None for g in groups)
        agg = aggregate(values, binary=binary, groups=groups if has_groups else None,
                        confidence=policy.confidence)
        gate = next((r["gate"] for r in recs if r.get("gate")), None) or {}
        threshold = gate.get("min_pass_rate") if binary else gate.get("min_score")
        if threshold is None:
            threshold = gate.get("min_score") if binary else gate.get("min_pass_rate")
        row: dict[str, Any] = {
            "suite": suite, "metric": metric, "binary": binary, "n": len(recs),
            "passed": passed, "failed": failed, "unmeasured": len(recs) - passed - failed,
            "pass_rate": passed / (passed + failed) if passed + failed else None,
            "estimate": agg.estimate, "interval": None if agg.low is None else [agg.low, agg.high],
            "interval_method": agg.method, "confidence": policy.confidence,
            "mean_score": _mean([r.get("value") for r in recs]),
            "cached": sum(1 for r in recs if r.get("cached")),
            "completion_tokens": sum(r.get("completion_tokens") or 0 for r in recs),
            "threshold": threshold, "verdict": None, "must_pass_failed": [
                r["case_id"] for r in recs if r.get("must_pass") and r.get("passed") is not True],
        }
        higher = all(r.get("higher_is_better", True) for r in recs)
        row["higher_is_better"] = higher
        if threshold is not None:
            if higher:
                row["verdict"] = verdict(agg, threshold, mode=policy.mode)
            else:  # a ceiling (TER, perplexity): judge the negated scale
                row["verdict"] = verdict(_negated(agg), -threshold, mode=policy.mode)
        if metric.rsplit(".", 1)[-1] in ("bleu", "chrf", "ter"):
            row["corpus"] = _corpus(recs)
        sampled = {r["case_id"]: [s.get("passed") for s in r["samples"]]
                   for r in recs if r.get("samples")}
        if sampled:
            k = max(len(v) for v in sampled.values())
            summary = sampling_summary(sampled, k)
            row["sampling"] = {**summary.to_dict(), "pass_at_1": sampling_summary(sampled, 1).pass_at_k}
        rows.append(row)
    return rows


def _negated(agg: Any) -> Any:
    from dataclasses import replace

    if agg.estimate is None:
        return agg
    return replace(agg, estimate=-agg.estimate, low=-agg.high, high=-agg.low)


def _corpus(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Corpus-level BLEU/chrF/TER of the suite (not the mean of sentence scores)."""
    from pytest_aie.scorers.similarity import corpus_scores

    outputs = [r.get("output") for r in recs]
    refs = [r.get("references") if r.get("references") is not None else r.get("expected")
            for r in recs]
    result = corpus_scores(outputs, refs)  # type: ignore[arg-type]
    return {k: v for k, v in result.items() if k != "signatures"}


def _mean(values: list[Any]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclass
class Comparison:
    """A paired comparison of one suite (or one tag within it) between two runs or models."""

    suite: str
    metric: str
    scope: str  # "suite" or "tag:NAME"
    shared: int
    added: int  # cases only in the new run
    removed: int  # cases only in the reference
    gate: dict[str, Any] | None
    regressed: bool
    improved: bool
    newly_failing: list[str] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def line(self) -> str:
        g = self.gate or {}
        delta = g.get("delta")
        ci = f" [{g['low']:+.3f}, {g['high']:+.3f}]" if g.get("low") is not None else ""
        p = f", p={g['p_value']:.3g}" if g.get("p_value") is not None else ""
        state = "REGRESSION" if self.regressed else "improved" if self.improved else "no significant change"
        where = self.suite + (f" ({self.scope})" if self.scope != "suite" else "")
        text = (f"{where} [{self.metric}]: {state}: delta "
                f"{'n/a' if delta is None else f'{delta:+.3f}'}{ci}{p} on {self.shared} shared cases")
        if self.added or self.removed:
            text += f" ({self.added} added, {self.removed} removed since the reference)"
        return text


def compare_pairs(suite: str, metric: str, scope: str, binary: bool,
                  reference: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]],
                  policy: GatePolicy, higher_is_better: bool = True) -> Comparison:
    """Paired gate on the cases both sides share: McNemar-based for pass/fail, paired
    bootstrap for scores; regression needs significance *and* a drop beyond the margin."""
    from pytest_aie.stats import paired_binary_gate, paired_score_gate

    shared = [c for c in current if c in reference]  # in run order
    added = len(set(current) - set(reference))
    removed = len(set(reference) - set(current))
    if not shared:
        return Comparison(suite, metric, scope, 0, added, removed, None, False, False)
    if binary:
        res = paired_binary_gate([reference[c].get("passed") for c in shared],
                                 [current[c].get("passed") for c in shared],
                                 margin=policy.margin, alpha=policy.alpha)
    else:  # lower-is-better scores are compared on the negated scale: a rise is a drop
        sign = 1.0 if higher_is_better else -1.0

        def vals(side: dict[str, dict[str, Any]]) -> list[float | None]:
            return [None if side[c].get("value") is None else sign * side[c]["value"] for c in shared]

        res = paired_score_gate(vals(reference), vals(current), margin=policy.margin,
                                alpha=policy.alpha)
    failing = [c for c in shared if reference[c].get("passed") is True
               and current[c].get("passed") is False]
    passing = [c for c in shared if reference[c].get("passed") is False
               and current[c].get("passed") is True]
    return Comparison(suite, metric, scope, len(shared), added, removed, res.to_dict(),
                      res.regressed, res.improved, failing, passing)


def compare_to_baseline(records: Iterable[dict[str, Any]], baseline: dict[str, Any],
                        policy: GatePolicy) -> list[Comparison]:
    """Each suite of this run against the same suite in a stored baseline."""
    out = []
    suites = baseline.get("suites", {})
    for (suite, metric), recs in _group_records(records).items():
        ref = suites.get(f"{suite}::{metric}")
        if ref is None:
            continue
        binary = all(r.get("binary", True) for r in recs)
        higher = all(r.get("higher_is_better", True) for r in recs)
        current = {r["case_id"]: r for r in recs}
        out.append(compare_pairs(suite, metric, "suite", binary, ref["cases"], current, policy,
                                 higher))
    return out


def compare_models(records: Iterable[dict[str, Any]], policy: GatePolicy) -> list[Comparison]:
    """Base vs candidate in one run (records with a ``base`` outcome): per suite and per tag."""
    out = []
    for (suite, metric), recs in _group_records(records).items():
        paired = [r for r in recs if r.get("base") is not None]
        if not paired:
            continue
        binary = all(r.get("binary", True) for r in paired)
        higher = all(r.get("higher_is_better", True) for r in paired)
        ref = {r["case_id"]: r["base"] for r in paired}
        cur = {r["case_id"]: r for r in paired}
        out.append(compare_pairs(suite, metric, "suite", binary, ref, cur, policy, higher))
        tags = sorted({t for r in paired for t in r.get("tags") or ()})
        for tag in tags:
            ids = {r["case_id"] for r in paired if tag in (r.get("tags") or ())}
            out.append(compare_pairs(suite, metric, f"tag:{tag}", binary,
                                     {c: ref[c] for c in ids}, {c: cur[c] for c in ids}, policy,
                                     higher))
    return out


def exit_status(rows: list[dict[str, Any]], comparisons: list[Comparison], policy: GatePolicy,
                status: int) -> tuple[int, list[str]]:
    """The run's exit status after the gates, and the lines that explain it.

    Precedence: pytest's own failures and interruptions stay; a regression (exit 11) beats
    evals failed (exit 1); a suite verdict of ``fail``, a must-pass case that failed, or an
    inconclusive verdict under ``--aie-inconclusive fail`` means evals failed.
    """
    from pytest_aie.errors import EXIT_REGRESSION

    notes: list[str] = []
    failed = False
    for row in rows:
        name = f"{row['suite']} [{row['metric']}]"
        if row["verdict"] == "fail":
            failed = True
        elif row["verdict"] == "inconclusive":
            if policy.inconclusive == "fail":
                failed = True
                notes.append(f"{name}: inconclusive, counted as a failure (--aie-inconclusive fail)")
            elif policy.inconclusive == "warn":
                notes.append(f"WARNING {name}: inconclusive: the interval straddles the threshold; "
                             "add cases or samples to decide (--aie-inconclusive fail makes this fail)")
        if row.get("must_pass_failed"):
            failed = True
    if any(c.regressed for c in comparisons):
        return EXIT_REGRESSION, notes
    if failed and status == 0:
        return 1, notes
    return status, notes
