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
from importlib import metadata
from pathlib import Path
from typing import IO, Any

__all__ = ["FORMAT_VERSION", "ResultsLog", "run_header"]

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
