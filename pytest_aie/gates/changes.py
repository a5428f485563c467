"""The baseline diff: the cases whose status changed against a stored baseline.

:func:`case_changes` gives one dict per case that passed in the baseline and fails now
(``newly_failing``) or failed there and passes now (``newly_passing``), the same cases that
:func:`pytest_aie.gates.comparisons.compare_pairs` counts, with the old and the new status, value and
output side by side (the old output is what the baseline kept: its first
:data:`pytest_aie.gates.baseline.OUTPUT_CHARS` characters; ``None`` in a baseline saved before
outputs were kept)::

    {"suite", "metric", "model", "case_id", "change": "newly_failing" | "newly_passing",
     "old": {"status", "value", "output"}, "new": {"status", "value", "output"}}
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["CHANGES", "case_changes"]

CHANGES = ("newly_failing", "newly_passing")


def case_changes(records: Iterable[dict[str, Any]], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gated case of ``records`` whose pass/fail outcome differs from ``baseline``'s, in
    suite, metric and model order, then in run order (cases only on one side are not
    changes: the comparison counts them as added or removed)."""
    from pytest_aie.gates.baseline import OUTPUT_CHARS
    from pytest_aie.gates.comparisons import baseline_key
    from pytest_aie.results.log import _cut
    from pytest_aie.results.records import group_records, several_models, status_of

    suites = baseline.get("suites") or {}
    groups = group_records(records)
    several = several_models(groups)
    out: list[dict[str, Any]] = []
    for (suite, metric, model), recs in groups.items():
        entry = suites.get(baseline_key(suite, metric, model, (suite, metric) in several))
        if not entry:
            continue
        old_cases = entry.get("cases") or {}
        for rec in recs:
            old = old_cases.get(rec["case_id"])
            if old is None or old.get("passed") is rec.get("passed"):
                continue
            if old.get("passed") is True and rec.get("passed") is False:
                change = "newly_failing"
            elif old.get("passed") is False and rec.get("passed") is True:
                change = "newly_passing"
            else:  # a change to or from scored/unmeasured: not a pass/fail change
                continue
            output = rec.get("output")
            out.append({
                "suite": suite, "metric": metric, "model": model, "case_id": rec["case_id"],
                "change": change,
                "old": {"status": status_of(old), "value": old.get("value"),
                        "output": old.get("output")},
                "new": {"status": status_of(rec), "value": rec.get("value"),
                        "output": None if output is None else _cut(str(output), OUTPUT_CHARS)},
            })
    return out
