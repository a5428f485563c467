"""The end of a results log: what the run concluded, kept so that the report can be rebuilt.

At session end the controller appends to the results log one ``change`` record per case
whose status changed against the baseline (:func:`pytest_aie.changes.case_changes`, one line
each so that lines stay bounded), then one ``conclusion`` record (:func:`conclusion_record`).
``python -m pytest_aie report`` (:mod:`pytest_aie.rebuild`) reads them back; a log without
a conclusion (the run crashed) is rebuilt from its case records and its header's settings.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping

__all__ = ["CONCLUSION_FIELDS", "aggregates_from", "conclusion_record", "gate_policy"]

#: The ``conclusion`` record's fields and what they hold (the README's schema section).
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


def gate_policy(settings: Mapping[str, Any]) -> Any:
    """The :class:`~pytest_aie.gates.GatePolicy` of a run's settings (a
    :class:`~pytest_aie.settings.Settings` as a dict, e.g. the results log header's)."""
    from pytest_aie.gates import GatePolicy

    defaults = GatePolicy()
    return GatePolicy(mode="point" if settings.get("gate") == "point" else "interval",
                      inconclusive=str(settings.get("inconclusive") or defaults.inconclusive),
                      confidence=float(settings.get("confidence") or defaults.confidence),
                      margin=float(settings.get("regression_margin", defaults.margin)),
                      alpha=float(settings.get("alpha") or defaults.alpha))


def conclusion_record(*, policy: Any, aggregates: Mapping[tuple[str, str, str], Any],
                      rows: list[dict[str, Any]], comparisons: list[Any], baseline: str | None,
                      changes: int, pytest_status: int, exit_status: int, notes: list[str],
                      harness_errors: list[str]) -> dict[str, Any]:
    """The ``conclusion`` record (``comparisons``: :class:`~pytest_aie.comparisons.Comparison`
    objects or their dicts)."""
    return {
        "type": "conclusion",
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "policy": dict(vars(policy)),
        "aggregates": [{"suite": k[0], "metric": k[1], "model": k[2], "value": v}
                       for k, v in sorted(aggregates.items())],
        "rows": rows,
        "comparisons": [c if isinstance(c, dict) else c.to_dict() for c in comparisons],
        "baseline": baseline or None,
        "changes": changes,
        "pytest_status": int(pytest_status),
        "exit_status": int(exit_status),
        "notes": list(notes),
        "harness_errors": list(harness_errors),
    }


def aggregates_from(conclusion: Mapping[str, Any]) -> dict[tuple[str, str, str], Any]:
    """A conclusion record's suite aggregates, keyed as :func:`evaluate_suites` reads them."""
    out = {}
    for item in conclusion.get("aggregates") or ():
        if isinstance(item, dict) and {"suite", "metric", "model"} <= item.keys():
            out[(str(item["suite"]), str(item["metric"]), str(item["model"]))] = item.get("value")
    return out
