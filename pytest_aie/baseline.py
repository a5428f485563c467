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

from pytest_aie.errors import UsageError
from pytest_aie.files import write_atomic

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
    from pytest_aie.comparisons import baseline_key
    from pytest_aie.gates import _group_records, several_models
    from pytest_aie.records import status_of
    from pytest_aie.results import _cut

    suites: dict[str, dict[str, Any]] = {}
    groups = _group_records(records)
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: baseline is not valid JSON ({exc.msg})",
                         fix="restore it from version control or save it again") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version not in READABLE_FORMATS:
        raise UsageError(f"{path}: baseline format {version!r} is not one this version reads "
                         f"({', '.join(map(str, READABLE_FORMATS))})",
                         fix="regenerate it with --aie-save-baseline using this pytest-aie version")
    return data  # type: ignore[no-any-return]
