"""Baselines: a run's per-case outcomes saved as versioned JSON, meant to be committed.

``--aie-save-baseline NAME`` writes ``<baseline dir>/NAME.json`` (default dir
``aie-baselines/`` at the project root); ``--aie-baseline NAME`` compares the run against it.
The file is sorted and stable (the same outcomes give the same bytes) and written atomically.

Format versions: 3 (current) also keeps each case's ``output`` (its first
:data:`OUTPUT_CHARS` characters, cut with a note like the results log's long fields), so a
later run can show a changed case's old and new output side by side; version 2 stores each
case's ``group`` (its cluster in paired tests) and ``status``; version 1 files have neither
and still load: their cases are compared as unclustered unless the current run declares
groups for them (a case's group is a property of the dataset, so the current run's
declaration is used first). Cases of versions 1 and 2 have no output (``None``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from pytest_aie._util.files import write_atomic
from pytest_aie.errors import UsageError
from pytest_aie.results.check import field_problem

__all__ = ["BASELINE_FORMAT", "OUTPUT_CHARS", "baseline_path", "load_baseline", "make_baseline", "save_baseline"]

BASELINE_FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
#: Longest output a baseline keeps per case (characters); longer ones are cut with a note.
OUTPUT_CHARS = 2_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RUN_KEYS = ("pytest_aie", "engine", "git_commit", "seed", "versions")


def baseline_path(directory: str | Path, name: str) -> Path:
    if not _NAME.match(name):
        raise UsageError(f"baseline name {name!r} is not a plain file name",
                         fix="use letters, digits, '.', '_' or '-', e.g. --aie-baseline main")
    return Path(directory) / f"{name}.json"


def make_baseline(name: str, header: dict[str, Any], records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A baseline from a run's records: each gated model's cases per suite and metric (a
    suite's reference model is not saved: it is compared against within the run)."""
    from pytest_aie.gates.comparisons import baseline_key
    from pytest_aie.results.log import _cut
    from pytest_aie.results.records import group_records, several_models, status_of

    suites: dict[str, dict[str, Any]] = {}
    groups = group_records(records)
    several = several_models(groups)
    for (suite, metric, model), recs in groups.items():
        key = baseline_key(suite, metric, model, (suite, metric) in several)
        entry = suites.setdefault(key, {"suite": suite, "metric": metric,
                                        "binary": recs[0].get("binary", True), "cases": {}})
        for rec in recs:
            entry["cases"][rec["case_id"]] = {
                "passed": rec.get("passed"), "value": rec.get("value"), "status": status_of(rec),
                "group": None if rec.get("group") in (None, "") else str(rec["group"]),
                "tags": list(rec.get("tags") or ()),
                "output": _cut(str(rec.get("output") or ""), OUTPUT_CHARS)}
    return {
        "format_version": BASELINE_FORMAT,
        "name": name,
        "run": {k: header.get(k) for k in _RUN_KEYS},
        "suites": suites,
    }


def save_baseline(path: Path, baseline: dict[str, Any]) -> Path:
    text = json.dumps(baseline, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    return write_atomic(path, text)


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"baseline {str(path)!r} not found",
                         fix="save one first with --aie-save-baseline NAME (and commit it)")
    fix = "restore it from version control or save it again with --aie-save-baseline"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: baseline is not UTF-8 text (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r})", fix=fix) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: baseline is not valid JSON ({exc.msg})",
                         fix=fix) from None
    except OSError as exc:
        raise UsageError(f"baseline {path} cannot be read ({exc.strerror or exc})",
                         fix=fix) from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version not in READABLE_FORMATS:
        raise UsageError(f"{path}: baseline format {version!r} is not one this version reads "
                         f"({', '.join(map(str, READABLE_FORMATS))})",
                         fix="regenerate it with --aie-save-baseline using this pytest-aie version")
    problem = _shape_problem(data)
    if problem is not None:
        raise UsageError(f"{path}: baseline is not in the shape pytest-aie saves: {problem}",
                         fix=fix)
    return data  # type: ignore[no-any-return]


#: A baseline case's fields and their accepted JSON kinds (absent or null: accepted).
_CASE_KINDS: dict[str, tuple[str, ...]] = {
    "passed": ("bool",), "value": ("number",), "status": ("str",), "group": ("str",),
    "tags": ("list",), "output": ("str",)}


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What in a parsed baseline the comparison could not read, in words (None: nothing)."""
    suites = data.get("suites")
    if not isinstance(suites, dict):
        return f"'suites' is {type(suites).__name__}, not an object"
    for key, entry in suites.items():
        if not isinstance(entry, dict):
            return f"suite {key!r} is {type(entry).__name__}, not an object"
        for name in ("suite", "metric"):
            if not isinstance(entry.get(name), str):
                return f"suite {key!r} has no {name!r} name"
        cases = entry.get("cases")
        if not isinstance(cases, dict):
            return f"suite {key!r}: 'cases' is {type(cases).__name__}, not an object"
        for case_id, case in cases.items():
            if not isinstance(case, dict):
                return f"suite {key!r}, case {case_id!r} is {type(case).__name__}, not an object"
            problem = field_problem(case, _CASE_KINDS)
            if problem is not None:
                return f"suite {key!r}, case {case_id!r}: {problem}"
    return None


def unmatched(records: Iterable[dict[str, Any]], comparisons: Iterable[Any], baseline: dict[str, Any],
              name: str) -> tuple[str | None, list[str]]:
    """After comparing a run with a baseline: ``(error, notes)``. The error (one line) when
    the run has suites and none of them is in the baseline (a renamed test, the wrong
    baseline): the comparison that was asked for did not happen, and a silent 0 would hide
    any drop. A note for each of the run's suites that the baseline lacks (a new suite:
    not compared)."""
    ran = sorted({f"{r['suite']} [{r['metric']}]" for r in records if r.get("gated", True)})
    compared = {f"{c.suite} [{c.metric}]" for c in comparisons}
    if not ran:
        return None, []
    if not compared:
        held = sorted({f"{e.get('suite')} [{e.get('metric')}]"
                       for e in (baseline.get("suites") or {}).values()})
        return (f"pytest-aie: baseline {name} has no suite in common with this run, so nothing "
                f"was compared: it holds {_some(held) or 'no suites'}; this run ran {_some(ran)}. "
                f"Fix: save a baseline of these suites with --aie-save-baseline {name} (a renamed "
                "test is a new suite), or pass the baseline saved from them"), []
    return None, [f"{suite}: not in baseline {name} (a new suite?): not compared"
                  for suite in ran if suite not in compared]


def _some(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
