"""Reading a run's case records back: the results log, a record's status, and per-suite counts.

Shared by the report, the gates and the baseline: one definition of what a record's status is
(``passed``, ``failed``, ``scored``, ``unmeasured``; records written before ``status`` existed
derive it from ``passed``) and of how a results log is read, tolerating a truncated last line.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_aie.errors import AieError
from pytest_aie.results import FORMAT_VERSION

__all__ = ["STATUSES", "ResultsError", "ResultsWarning", "basic_summary", "load_results",
           "status_of"]

#: Record statuses, and the status of an old record without one.
STATUSES = ("passed", "failed", "scored", "unmeasured")


class ResultsError(AieError):
    """A results log that cannot be read at all (missing, empty, no run header)."""


class ResultsWarning(UserWarning):
    """A results log with a damaged line that was skipped (e.g. a crash mid-write)."""


def load_results(jsonl_path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a results log: ``(header, cases)``.

    A line that is not valid JSON is skipped with a :class:`ResultsWarning` and the records
    around it are kept: a truncated last line is what a crash mid-write leaves. Records of
    other types than ``run`` and ``case`` are ignored (forward compatibility).

    Raises :class:`ResultsError` if the file is missing or has no run header.
    """
    path = Path(jsonl_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"results log {path} not found",
                           fix="run pytest with pytest-aie first, or pass the right path") from None
    header: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    last = len(lines)
    while last > 0 and not lines[last - 1].strip():
        last -= 1
    for no, raw in enumerate(lines[:last], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = "truncated last line (the run probably stopped mid-write)" if no == last \
                else f"damaged line ({exc})"
            warnings.warn(f"{path}:{no}: skipped a {where}", ResultsWarning, stacklevel=2)
            continue
        if not isinstance(record, dict):
            warnings.warn(f"{path}:{no}: skipped a line that is not a JSON object",
                          ResultsWarning, stacklevel=2)
            continue
        kind = record.get("type")
        if kind == "case":
            cases.append(record)
        elif kind == "run":
            if header is None:
                header = record
            else:
                warnings.warn(f"{path}:{no}: skipped a second run header; one log holds one run",
                              ResultsWarning, stacklevel=2)
    if header is None:
        raise ResultsError(f"results log {path} has no run header (a first line with "
                           f'"type": "run")', fix="pass a results log written by pytest-aie")
    version = header.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        warnings.warn(f"{path}: results format version {version} is newer than this pytest-aie "
                      f"reads ({FORMAT_VERSION}); some fields may be missing from the report",
                      ResultsWarning, stacklevel=2)
    return header, cases

def status_of(case: Mapping[str, Any]) -> str:
    """A record's status; an old record without one: passed True/False/None -> passed,
    failed, unmeasured."""
    status = case.get("status")
    if status in STATUSES:
        return str(status)
    passed = case.get("passed")
    return "passed" if passed is True else "failed" if passed is False else "unmeasured"


def basic_summary(cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-(suite, metric) counts, pass rate and mean score, without intervals or verdicts.

    Used when no summary is given (the plugin computes a fuller one with statistical gates).
    The pass rate counts passes and failures only (``None`` when there are none: a suite of
    scored cases has a mean score, not a pass rate); the mean score averages every value.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    sums: dict[tuple[str, str], list[float]] = {}
    for case in cases:
        key = (str(case.get("suite", "")), str(case.get("metric", "")))
        row = groups.get(key)
        if row is None:
            row = groups[key] = {"suite": key[0], "metric": key[1], "n": 0, "passed": 0,
                                 "failed": 0, "scored": 0, "unmeasured": 0, "pass_rate": None,
                                 "mean_score": None, "verdict": None, "interval": None}
            sums[key] = [0.0, 0]
        row["n"] += 1
        row[status_of(case)] += 1
        value = case.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            sums[key][0] += value
            sums[key][1] += 1
    for key, row in groups.items():
        judged = row["passed"] + row["failed"]
        row["pass_rate"] = row["passed"] / judged if judged else None
        total, count = sums[key]
        row["mean_score"] = total / count if count else None
    return list(groups.values())
