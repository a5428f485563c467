"""Scores into case outcomes: combining a case's samples, sharing a suite's scores between the
xdist workers of one run, and telling a run that measured nothing.

:class:`~pytest_aie.session.AieSession` decides *when* to score (whole suites, once per run);
this module holds *what* the outcome of those scores is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pytest_aie._util.files import write_atomic
from pytest_aie.scorers.base import Score

__all__ = ["SharedScores", "combine"]


def combine(scores: list[Score]) -> tuple[float | None, bool | None, str]:
    """One case outcome from its samples: mean value; a pass needs a strict majority of the
    measured samples (an even split is a failure); samples without a per-case pass/fail
    (scored) give a scored case."""
    if len(scores) == 1:
        return scores[0].value, scores[0].passed, scores[0].reason
    measured = [s for s in scores if s.measured]
    if not measured:
        return None, None, scores[0].reason
    value = sum(float(s.value) for s in measured if s.value is not None) / len(measured)
    judged = [s for s in measured if s.passed is not None]
    if not judged:
        return value, None, f"mean of {len(measured)} samples; first: {measured[0].reason}"
    wins = sum(1 for s in judged if s.passed)
    tie = " (an even split is not a majority)" if wins * 2 == len(judged) else ""
    first = next((s for s in judged if not s.passed), judged[0])
    return value, wins * 2 > len(judged), \
        f"{wins}/{len(judged)} samples passed{tie}; first {first.status}: {first.reason}"


class SharedScores:
    """A suite's scores in the run store shared by one run's xdist workers, so each suite is
    scored once per run whatever ``-n`` is (no store, no sharing: a run without workers)."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir

    def _path(self, kind: str, suite: str) -> Path | None:
        if self.run_dir is None:
            return None
        digest = hashlib.sha256(f"{kind}\x00{suite}".encode()).hexdigest()[:16]
        return self.run_dir / f"scores-{digest}.json"

    def read(self, kind: str, suite: str) -> dict[str, list[Score]]:
        """The scores another worker already computed (item node id -> per-sample scores)."""
        path = self._path(kind, suite)
        if path is None or not path.is_file():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        return {n: [Score(**s) for s in samples] for n, samples in data.items()}

    def write(self, kind: str, suite: str, scores: dict[str, list[Score]]) -> None:
        path = self._path(kind, suite)
        if path is not None:
            data = {n: [s.to_dict() for s in samples] for n, samples in scores.items()}
            write_atomic(path, json.dumps(data, default=str))

    def write_aggregate(self, key: tuple[str, str, str], value: dict[str, Any]) -> None:
        """A scorer's suite aggregate for (suite, metric, model), for the controller."""
        path = self._path("aggregate\x00" + "\x00".join(key[1:]), key[0])
        if path is not None:
            write_atomic(path.with_name("aggregate-" + path.name),
                         json.dumps({"key": list(key), "value": value}, default=str))

    def read_aggregates(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every suite aggregate the run's workers wrote."""
        if self.run_dir is None or not self.run_dir.is_dir():
            return {}
        out = {}
        for path in sorted(self.run_dir.glob("aggregate-scores-*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            out[(data["key"][0], data["key"][1], data["key"][2])] = data["value"]
        return out
