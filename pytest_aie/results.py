"""The results log: one JSONL file per run, a header line first, then one line per scored case,
flushed as each case completes, so a crash loses nothing that finished.

Only one process writes it (the xdist controller, or the only process); workers send their
case records to it attached to their test reports.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Iterable

__all__ = ["FORMAT_VERSION", "ResultsLog", "run_header", "summarize"]

FORMAT_VERSION = 1
_VERSIONED = ("pytest", "torch", "transformers", "openai", "vllm", "sentence-transformers",
              "pytest-xdist")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(cwd: str | Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_header(*, settings: dict[str, Any], rootdir: str | Path, argv: list[str]) -> dict[str, Any]:
    """Run metadata: versions, engine, model, git commit, seed, start time (no secrets)."""
    from pytest_aie import __version__

    return {
        "type": "run",
        "format_version": FORMAT_VERSION,
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pytest_aie": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "engine": {"engine": settings.get("engine"), "model": settings.get("model") or "embedded"},
        "seed": settings.get("seed"),
        "git_commit": git_commit(rootdir),
        "argv": list(argv),
        "versions": {d: v for d in _VERSIONED if (v := _version(d))},
        "settings": {k: v for k, v in settings.items() if k not in ("cache_dir",)},
    }


class ResultsLog:
    """Appends records to a JSONL file, one flushed line each."""

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.records: list[dict[str, Any]] = []
        self._fh: IO[str] | None = None
        self._closed = False

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:  # opened on the first record: runs without evals write nothing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(json.dumps(self.header, default=str, ensure_ascii=False) + "\n")
        self._fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self._fh.flush()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self._closed:
            self._write(record)

    def close(self) -> None:
        self._closed = True
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per suite and metric: n, passed, failed, unmeasured, pass rate, cached count."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("type") == "case":
            groups[(rec["suite"], rec["metric"])].append(rec)
    summary = []
    for (suite, metric), recs in sorted(groups.items()):
        passed = sum(1 for r in recs if r.get("passed") is True)
        failed = sum(1 for r in recs if r.get("passed") is False)
        unmeasured = len(recs) - passed - failed
        measured = passed + failed
        values = [r["value"] for r in recs if r.get("value") is not None]
        summary.append({
            "suite": suite,
            "metric": metric,
            "n": len(recs),
            "passed": passed,
            "failed": failed,
            "unmeasured": unmeasured,
            "pass_rate": passed / measured if measured else None,
            "mean_score": sum(values) / len(values) if values else None,
            "cached": sum(1 for r in recs if r.get("cached")),
            "completion_tokens": sum(r.get("completion_tokens") or 0 for r in recs),
            "verdict": None,
            "interval": None,
        })
    return summary
