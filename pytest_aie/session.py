"""The run-wide state: settings, models, caches, suites, generated outputs, scores, results.

One :class:`AieSession` lives in ``config.stash`` per pytest process. It does the project's
main performance trick, *whole-suite batching*: the first time a test needs a generation,
every selected case that uses the same model is turned into a request and generated in large
batches, then scored suite by suite with the scorer's ``score_batch``; each test is then served
from that result.

Under xdist every worker collects every item; the first worker to need a model takes a file
lock, generates the whole selection into a store shared by the run's workers, and the others
read it, so each request is generated once and batch composition matches ``-n 0``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pytest_aie.cache import GenerationCache
from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation, Sampling
from pytest_aie.errors import AieError, UsageError
from pytest_aie.model import Model, Progress, stderr_progress
from pytest_aie.results import ResultsLog
from pytest_aie.scorers.base import Score
from pytest_aie.settings import Settings
from pytest_aie.suite import SuiteSpec

__all__ = ["AieSession", "CaseRun"]


@dataclass
class CaseRun:
    """What one collected case item needs: its suite and its case."""

    spec: SuiteSpec
    case: Case


@dataclass
class AieSession:
    settings: Settings
    rootdir: Path
    is_worker: bool = False
    run_dir: Path | None = None  # shared by xdist workers of one run
    progress: Progress = stderr_progress
    suites: dict[str, SuiteSpec] = field(default_factory=dict)
    runs: dict[str, CaseRun] = field(default_factory=dict)  # item nodeid -> CaseRun
    outputs: dict[str, Generation] = field(default_factory=dict)
    scores: dict[str, Score] = field(default_factory=dict)
    harness_errors: list[str] = field(default_factory=list)
    log: ResultsLog | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    _models: dict[str, Model] = field(default_factory=dict)
    _failed_models: dict[str, AieError] = field(default_factory=dict)
    _stores: list[GenerationCache] | None = None

    # --- models -------------------------------------------------------------------------
    @property
    def defaults(self) -> Sampling:
        s = self.settings
        return Sampling(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed)

    def stores(self) -> list[GenerationCache]:
        if self._stores is None:
            stores = []
            if self.run_dir is not None:
                stores.append(GenerationCache(self.run_dir / "run.sqlite", "on", same_run=True))
            if self.settings.cache != "off":
                stores.append(GenerationCache(Path(self.settings.cache_dir) / "generations.sqlite",
                                              self.settings.cache))
            self._stores = stores
        return self._stores

    def model_names(self) -> list[str]:
        return ["default", *self.settings.models]

    def model(self, name: str | None = None) -> Model:
        """The named model (``None`` or ``"default"``: the session's model), created lazily."""
        name = name or "default"
        if name not in self._models:
            s = self.settings
            if name == "default":
                engine, ref = s.engine, s.model
            elif name in s.models:
                engine, ref = s.models[name]
            else:
                raise UsageError(f"no model named {name!r}",
                                 fix=f"define it with --aie-models {name}=ENGINE:MODEL "
                                     f"(known: {', '.join(self.model_names())})")
            options = {"device": s.device, "base_url": s.base_url or None,
                       "concurrency": s.concurrency}
            self._models[name] = Model(name, engine, ref, options=options, defaults=self.defaults,
                                       batch_size=s.batch_size, stores=self.stores(),
                                       progress=self.progress)
        return self._models[name]

    # --- generation ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _shared_lock(self, name: str) -> Iterator[None]:
        if self.run_dir is None:
            yield
            return
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        with open(self.run_dir / f"{digest}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure_generated(self, nodeid: str, selected: list[str]) -> None:
        """Generate (whole-suite batched) and score every selected case that shares this
        item's model, unless already done."""
        if nodeid in self.outputs:
            return
        run = self.runs[nodeid]
        name = run.spec.model or "default"
        if name in self._failed_models:
            raise self._failed_models[name]
        model = self.model(name)
        pending = [n for n in selected if n in self.runs and n not in self.outputs
                   and (self.runs[n].spec.model or "default") == name]
        if nodeid not in pending:
            pending.append(nodeid)
        requests = [self.runs[n].spec.request_for(self.runs[n].case, self.defaults) for n in pending]
        try:
            with self._shared_lock(f"model:{name}"):
                gens = model.generate_many(requests, label=f"{len(pending)} cases")
        except AieError as exc:
            self._failed_models[name] = exc
            raise
        for n, gen in zip(pending, gens):
            self.outputs[n] = gen
        self._score(pending)

    def _score(self, nodeids: list[str]) -> None:
        by_suite: dict[str, list[str]] = {}
        for n in nodeids:
            by_suite.setdefault(self.runs[n].spec.suite, []).append(n)
        for suite, ids in by_suite.items():
            spec = self.suites[suite]
            if spec.scorer is None:
                continue
            ok = [n for n in ids if self.outputs[n].error is None]
            for n in ids:
                if self.outputs[n].error is not None:
                    self.scores[n] = Score.unmeasured(spec.scorer.metric,
                                                      f"generation failed: {self.outputs[n].error}")
            if ok:
                scores = spec.scorer.score_batch([self.outputs[n].text for n in ok],
                                                 [self.runs[n].case for n in ok])
                self.scores.update(zip(ok, scores))

    # --- results ------------------------------------------------------------------------
    def record(self, nodeid: str, *, failure: str | None = None) -> dict[str, Any] | None:
        """The results record of a finished case (None for tests without an eval marker)."""
        run = self.runs.get(nodeid)
        if run is None or run.spec.scorer is None or nodeid not in self.outputs:
            return None
        gen, score = self.outputs[nodeid], self.scores[nodeid]
        passed, reason = score.passed, score.reason
        if failure is not None and gen.error is None:  # the test body's own assertion failed
            passed, reason = False, failure
        request = run.spec.request_for(run.case, self.defaults)
        prompt = request.prompt if request.prompt is not None else \
            "\n".join(f"[{m['role']}] {m['content']}" for m in request.messages or ())
        return {
            "type": "case", "suite": run.spec.suite, "case_id": run.case.id, "nodeid": nodeid,
            "metric": score.metric, "value": score.value, "passed": passed, "reason": reason,
            "output": gen.text, "expected": run.case.expected, "prompt": prompt,
            "tags": list(run.case.tags), "source": run.case.source,
            "engine": gen.engine, "model": gen.model, "adapter": gen.adapter,
            "cached": gen.cached, "finish_reason": gen.finish_reason,
            "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "timings": {k: v for k, v in vars(gen.timings).items()},
            "details": score.details,
        }

    def add_record(self, record: dict[str, Any]) -> None:
        """Controller only: keep and log one case record."""
        self.records.append(record)
        if self.log is not None:
            self.log.append(record)

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        for store in self._stores or ():
            store.close()
        if self.log is not None:
            self.log.close()


def progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines on the real terminal's stderr, even while pytest captures output."""

    def emit(message: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        if config.get_verbosity() < 0 and not message.startswith(("generating", "converting")):
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                stderr_progress(message)
        else:  # pragma: no cover - capture plugin disabled
            stderr_progress(message)

    return emit
