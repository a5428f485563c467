"""The end of a results log: what the run concluded, kept so that the report can be rebuilt.

At session end the controller appends to the results log one ``change`` record per case
whose status changed against the baseline (:func:`pytest_aie.gates.changes.case_changes`, one line
each so that lines stay bounded), then one ``conclusion`` record (:func:`conclusion_record`).
``python -m pytest_aie report`` (:mod:`pytest_aie.rebuild`) reads them back; a log without
a conclusion (the run crashed) is rebuilt from its case records and its header's settings.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from pytest_aie._util.text import oneline
from pytest_aie.errors import EXIT_REGRESSION
from pytest_aie.gates.baseline import unmatched
from pytest_aie.gates.changes import case_changes
from pytest_aie.gates.comparisons import Comparison, compare_models, compare_to_baseline
from pytest_aie.gates.policy import GatePolicy, adjust
from pytest_aie.gates.thresholds import evaluate_suites, row_name
from pytest_aie.results.records import Key, SuiteRow, group_records, several_models, status_of

__all__ = ["CONCLUSION_FIELDS", "Conclusion", "ConclusionRecord", "aggregates_from", "conclude", "conclusion_record",
           "evidence_problems", "exit_status"]

#: The ``conclusion`` record's fields and what they hold (docs/results.md's schema section).
CONCLUSION_FIELDS = {
    "finished_at": "when the run concluded (UTC, ISO 8601)",
    "policy": "the gate policy: `mode`, `inconclusive`, `confidence`, `margin`, `alpha`",
    "aggregates": "the scorers' suite-level figures (corpus scores, latency budgets, Elo "
                  "ratings, judge calibration): a list of `suite`, `metric`, `model`, `value`",
    "rows": "the suite rows the gates decided (the terminal's and the report's suite table)",
    "comparisons": "the paired comparisons (against the baseline: `models` null; between two "
                   "models of the run: `models` [reference, compared])",
    "baseline": "the baseline compared against (`--aie-baseline`), or null",
    "changes": "how many `change` records precede it",
    "pytest_status": "pytest's own exit status before the gates",
    "exit_status": "the run's exit status",
    "notes": "the lines that explain the exit status",
    "harness_errors": "harness problems (exit 10), one line each",
}


@dataclass(slots=True)
class ConclusionRecord:
    """The results log's ``conclusion`` record (:data:`CONCLUSION_FIELDS`), typed: what the
    run concluded, as :meth:`to_json` writes it to the log and :meth:`from_json` reads it
    back (:mod:`pytest_aie.rebuild`)."""

    policy: dict[str, Any]
    aggregates: dict[Key, Any]
    rows: list[SuiteRow]
    comparisons: list[Comparison]
    baseline: str | None
    changes: int
    pytest_status: int
    exit_status: int
    notes: list[str]
    harness_errors: list[str]
    finished_at: str = ""
    #: the results log shortened a field too long for one line (its original length by
    #: field): the record is not the whole conclusion
    cut: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the results log holds it."""
        return {
            "type": "conclusion",
            "finished_at": self.finished_at or _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"),
            "policy": dict(self.policy),
            "aggregates": [{"suite": k[0], "metric": k[1], "model": k[2], "value": v}
                           for k, v in sorted(self.aggregates.items())],
            "rows": [row.to_json() for row in self.rows],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "baseline": self.baseline or None,
            "changes": self.changes,
            "pytest_status": int(self.pytest_status),
            "exit_status": int(self.exit_status),
            "notes": list(self.notes),
            "harness_errors": list(self.harness_errors),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConclusionRecord:
        """A ``conclusion`` record as the results log holds it. A field the log shortened
        (``cut``) no longer has its type: it reads as empty."""
        def items(key: str) -> list[Any]:
            value = data.get(key)
            return list(value) if isinstance(value, list) else []

        return cls(
            policy=dict(data["policy"]) if isinstance(data.get("policy"), dict) else {},
            aggregates=aggregates_from(data),
            rows=[SuiteRow.from_json(r) for r in items("rows") if isinstance(r, dict)],
            comparisons=[Comparison.from_dict(c) for c in items("comparisons")
                         if isinstance(c, dict)],
            baseline=data.get("baseline") or None,
            changes=int(data.get("changes") or 0),
            pytest_status=int(data.get("pytest_status") or 0),
            exit_status=int(data.get("exit_status") or 0),
            notes=[str(n) for n in items("notes")],
            harness_errors=[str(h) for h in items("harness_errors")],
            finished_at=str(data.get("finished_at") or ""),
            cut=dict(data["cut"]) if isinstance(data.get("cut"), dict) else None,
        )


def conclusion_record(*, policy: Any, aggregates: Mapping[tuple[str, str, str], Any],
                      rows: list[SuiteRow], comparisons: list[Comparison], baseline: str | None,
                      changes: int, pytest_status: int, exit_status: int, notes: list[str],
                      harness_errors: list[str]) -> dict[str, Any]:
    """The ``conclusion`` record, as the results log holds it (:meth:`ConclusionRecord.to_json`)."""
    return ConclusionRecord(dict(vars(policy)), dict(aggregates), rows, comparisons, baseline,
                            changes, pytest_status, exit_status, notes, harness_errors).to_json()


def aggregates_from(conclusion: Mapping[str, Any]) -> dict[tuple[str, str, str], Any]:
    """A conclusion record's suite aggregates, keyed as :func:`evaluate_suites` reads them."""
    out = {}
    for item in conclusion.get("aggregates") or ():
        if isinstance(item, dict) and {"suite", "metric", "model"} <= item.keys():
            out[(str(item["suite"]), str(item["metric"]), str(item["model"]))] = item.get("value")
    return out


def exit_status(rows: list[SuiteRow], comparisons: list[Comparison], policy: GatePolicy,
                status: int) -> tuple[int, list[str]]:
    """The run's exit status after the gates, and the lines that explain it.

    First the family-wise adjustment over all of ``rows`` and ``comparisons``
    (:func:`~pytest_aie.gates.policy.adjust`, in place, so that what is shown is what decided). Precedence:
    pytest's own failures and interruptions stay; a regression (exit 11) beats evals failed
    (exit 1); a suite verdict of ``fail``, a must-pass case that failed, or an
    inconclusive verdict under ``--aie-inconclusive fail`` means evals failed.
    """
    m = adjust(rows, comparisons, policy)
    notes: list[str] = []
    failed = False
    for row in rows:
        name = row_name(row)
        held_back = row.verdict == "inconclusive" and row.interval_verdict == "fail"
        if row.verdict == "fail":
            failed = True
            for text in row.failed_expectations or ():  # each failed ranking gate
                reason = next((e.get("reason") for e in (row.elo or {}).get("expect")
                               or () if e.get("expect") == text), None)
                notes.append(f"{name}: expect {text} FAILED: {reason}")
        elif row.verdict == "inconclusive":
            why = (f"the interval is on the wrong side of the threshold, but the shortfall is not "
                   f"significant (p={row.p_value:.3g}, Holm-adjusted {row.p_adjusted:.3g} "
                   f"over {m} decisions)" if held_back else
                   "too little data to decide" if row.interval is None
                   or row.interval[0] == row.interval[1] or row.n - row.unmeasured < 2
                   else "the interval straddles the threshold")
            todo = "add cases or samples to decide"
            if row.inconclusive_reason:
                why = row.inconclusive_reason
                todo = row.inconclusive_todo or "calibrate or change the judge"
            if policy.inconclusive == "fail":
                failed = True
                notes.append(f"{name}: inconclusive ({why}), counted as a failure "
                             "(--aie-inconclusive fail)")
            elif policy.inconclusive == "warn":
                notes.append(f"WARNING {name}: inconclusive: {why}; "
                             f"{todo} (--aie-inconclusive fail makes this fail)")
        if row.must_pass_failed:
            failed = True
        for budget, b in (row.budgets or {}).items():
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


def evidence_problems(records: list[dict[str, Any]]) -> list[str]:
    """Suites whose verdict would rest on nothing: cases the engine could not generate (an
    infrastructure failure, not a model failure) or no measured case at all. Each is a
    harness problem (exit 10): a run never passes on zero measured cases."""
    out = []
    groups = group_records(records, gated=None)
    several = several_models(groups)
    for (suite, metric, model), recs in groups.items():
        where = f"{suite} [{metric}]" + (f" on {model}" if (suite, metric) in several else "")
        errors = [r for r in recs if r.get("error")]
        measured = [r for r in recs if status_of(r) != "unmeasured"]
        if errors:
            out.append(f"pytest-aie: {where}: the engine failed on {len(errors)} of "
                       f"{len(recs)} cases ({oneline(errors[0]['error'], 300)}). Fix: check the "
                       f"engine or server and rerun; no verdict is given on cases that were not "
                       f"generated")
        elif not measured:
            out.append(f"pytest-aie: {where}: none of {len(recs)} cases was measured "
                       f"({oneline(recs[0].get('reason'), 300)}). Fix: make the scorer able to "
                       f"score (see the reason); a suite never passes on zero measured cases")
    return out


@dataclass
class Conclusion:
    """What a run concluded: its suite rows, comparisons, changed cases, exit status and the
    lines that explain it, and its harness problems."""

    rows: list[SuiteRow]
    baseline_comparisons: list[Comparison]
    model_comparisons: list[Comparison]
    changes: list[dict[str, Any]]
    exit_status: int
    notes: list[str]
    harness_errors: list[str]
    #: one line per suite of the run that the baseline lacks
    missing: list[str] = field(default_factory=list)

    @property
    def comparisons(self) -> list[Comparison]:
        return self.baseline_comparisons + self.model_comparisons


def conclude(records: list[dict[str, Any]], policy: GatePolicy, *,
             aggregates: Mapping[Key, Any], status: int,
             baseline: tuple[str, dict[str, Any]] | None = None,
             harness_errors: Iterable[str] = ()) -> Conclusion:
    """The run's conclusion from its case records: the one path of the live run
    (:meth:`pytest_aie.session.AieSession.conclude`) and of ``python -m pytest_aie report``
    (:mod:`pytest_aie.rebuild`), so the two cannot disagree. Suite verdicts
    (:func:`~pytest_aie.gates.thresholds.evaluate_suites`), the comparison with ``baseline``
    (its name and data) and the cases whose status changed against it, the comparisons
    between the run's models, the exit status after pytest's own ``status``
    (:func:`exit_status`), and the harness problems (``harness_errors`` so far, a baseline
    that does not match, suites whose verdict would rest on nothing)."""
    harness = list(harness_errors)
    rows = evaluate_suites(records, policy, dict(aggregates))
    baseline_comparisons: list[Comparison] = []
    changes: list[dict[str, Any]] = []
    missing: list[str] = []
    if baseline is not None:
        name, data = baseline
        baseline_comparisons = compare_to_baseline(records, data, policy)
        error, missing = unmatched(records, baseline_comparisons, data, name)
        if error is not None and error not in harness:
            harness.append(error)
        changes = case_changes(records, data)
    model_comparisons = compare_models(records, policy)
    final, notes = exit_status(rows, baseline_comparisons + model_comparisons, policy, status)
    harness += [e for e in evidence_problems(records) if e not in harness]
    return Conclusion(rows, baseline_comparisons, model_comparisons, changes, final, notes, harness,
                      missing)
