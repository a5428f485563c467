"""The on-disk generation cache (SQLite).

A generation is cached under a key made of the engine's identity (engine name, model path
or id, content hash or revision of the weights), the adapter, and the full request with its
sampling parameters and seed. A cached generation comes back with ``cached=True`` and its
timings cleared: cached latency is never reported as a measurement.

Modes (``--aie-cache``): ``on`` reads and writes, ``off`` neither, ``refresh`` writes only
(regenerates everything and replaces what was stored).

Safe under ``pytest -n``: every worker opens its own connection; SQLite's WAL journal and
a busy timeout serialise writers, and writes are single upserts.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from pytest_aie.engines.base import Generation, Request, Timings
from pytest_aie.errors import UsageError
from pytest_aie.settings import CACHE_MODES

__all__ = ["GenerationCache", "engine_key"]

_SCHEMA = 1
_BUSY_TIMEOUT_S = 60.0


def _setup(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, engine TEXT,"
        " request TEXT, generation TEXT, schema INTEGER)"
    )
    db.commit()


def engine_key(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class GenerationCache:
    """A SQLite table ``generations(key, engine, request, generation)``."""

    def __init__(self, path: str | Path, mode: str = "on", *, same_run: bool = False) -> None:
        if mode not in CACHE_MODES:
            raise UsageError(f"unknown cache mode {mode!r}",
                             fix=f"use --aie-cache with one of {', '.join(CACHE_MODES)}")
        self.path = Path(path)
        self.mode = mode
        #: A store shared by the xdist workers of one run: its hits are this run's own
        #: generations, so they keep their timings and are not marked cached.
        self.same_run = same_run
        self.hits = 0
        self.misses = 0
        self._local = threading.local()

    @property
    def reads(self) -> bool:
        return self.mode == "on"

    @property
    def writes(self) -> bool:
        return self.mode in ("on", "refresh")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
            deadline = time.monotonic() + _BUSY_TIMEOUT_S
            while True:
                try:
                    _setup(db)
                    break
                except sqlite3.OperationalError as exc:
                    # Switching to WAL needs an exclusive lock, and SQLite reports "database
                    # is locked" at once (without its busy timeout) while another connection
                    # is writing, as when two workers open a new cache file together: retry.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    db.rollback()
                    time.sleep(0.02)
            self._local.db = db
        return db

    @staticmethod
    def key(engine: str, request: Request) -> str:
        return hashlib.sha256(f"{engine}:{request.key()}".encode()).hexdigest()

    def get_many(self, engine: str, requests: Sequence[Request]) -> list[Generation | None]:
        """Cached generations (marked cached, timings cleared) or None, per request."""
        if not self.reads or not requests:
            return [None] * len(requests)
        keys = [self.key(engine, r) for r in requests]
        found: dict[str, str] = {}
        db = self._db()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT key, generation FROM generations WHERE schema=? AND key IN ({marks})",
                (_SCHEMA, *chunk),
            )
            found.update(rows)
        out: list[Generation | None] = []
        for k in keys:
            if k in found:
                gen = Generation.from_dict(json.loads(found[k]))
                if not self.same_run:
                    gen.cached = True
                    gen.timings = Timings()
                out.append(gen)
                self.hits += 1
            else:
                out.append(None)
                self.misses += 1
        return out

    def put_many(self, engine: str, requests: Sequence[Request],
                 generations: Sequence[Generation]) -> None:
        """Store fresh, error-free generations."""
        if not self.writes:
            return
        rows = [
            (self.key(engine, r), engine, json.dumps(r.to_dict(), sort_keys=True),
             json.dumps(g.to_dict(), sort_keys=True), _SCHEMA)
            for r, g in zip(requests, generations)
            if g.error is None and not g.cached
        ]
        if not rows:
            return
        db = self._db()
        with db:
            db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
