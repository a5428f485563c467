"""pytest-aie's figures in pytest's own ``--junitxml`` file.

Each case is its own pytest test item (one per case, or per case and model when a suite
gates several models), so each ``<testcase>`` gets that case's properties
(:func:`case_properties`, through the item's ``user_properties``)::

    aie.suite, aie.case_id, aie.model, aie.cached, aie.latency_s
    aie.<metric>.status, aie.<metric>.value          (per eval marker)
    aie.<metric>@<model>.status, ...                 (the suite's reference model, when it has one)

The suite-level figures are only known at session end, when no test item is left to carry
them: they go to the ``<testsuite>``'s own properties (:func:`suite_properties`)::

    aie.suite[<suite> [<metric>]( on <model>)].verdict / .value / .interval / .threshold / .n
    aie.exit_status
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from pytest_aie.results.records import SuiteRow

__all__ = ["case_properties", "suite_properties"]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def case_properties(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """A case item's properties from its records (one per eval marker and model; the
    first record is the item's own model)."""
    if not records:
        return []
    first = records[0]
    own = first.get("model")
    out = [("aie.suite", _text(first.get("suite"))), ("aie.case_id", _text(first.get("case_id"))),
           ("aie.model", _text(own)), ("aie.cached", _text(bool(first.get("cached"))))]
    latency = (first.get("timings") or {}).get("total")
    if isinstance(latency, (int, float)) and not first.get("cached"):
        out.append(("aie.latency_s", _text(float(latency))))
    for rec in records:
        name = f"aie.{rec.get('metric')}" + ("" if rec.get("model") == own else f"@{rec.get('model')}")
        out.append((f"{name}.status", _text(rec.get("status"))))
        out.append((f"{name}.value", _text(rec.get("value"))))
    return out


def suite_properties(rows: Iterable[SuiteRow], exit_status: int | None
                     ) -> list[tuple[str, str]]:
    """The run's suite rows and exit status, as ``<testsuite>`` properties."""
    from pytest_aie.gates.thresholds import row_name

    out = []
    for row in rows:
        name = f"aie.suite[{row_name(row)}]"
        interval = row.interval
        out += [(f"{name}.verdict", _text(row.verdict or "none")),
                (f"{name}.value", _text(row.estimate)),
                (f"{name}.interval", "" if not interval else
                 f"{_text(interval[0])},{_text(interval[1])}"),
                (f"{name}.threshold", _text(row.threshold)),
                (f"{name}.n", _text(row.n))]
    if exit_status is not None:
        out.append(("aie.exit_status", str(exit_status)))
    return out
