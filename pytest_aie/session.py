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
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pytest_aie.cache import GenerationCache
from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation, Request, Sampling
from pytest_aie.errors import AieError, UsageError
from pytest_aie.files import file_lock
from pytest_aie.model import Model, Progress, stderr_progress
from pytest_aie.results import ResultsLog, reference_fields
from pytest_aie.scorers.base import Sample, Score
from pytest_aie.scoring import SharedScores, combine, evidence_problems
from pytest_aie.settings import Settings
from pytest_aie.suite import Eval, SuiteSpec

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
    outputs: dict[str, list[Generation]] = field(default_factory=dict)  # one per sample
    scores: dict[str, list[list[Score]]] = field(default_factory=dict)  # per eval, per sample
    base_outputs: dict[str, list[Generation]] = field(default_factory=dict)  # finetune comparison
    base_scores: dict[str, list[list[Score]]] = field(default_factory=dict)
    harness_errors: list[str] = field(default_factory=list)
    shown_errors: set[str] = field(default_factory=set)  # already printed by pytest
    submitted: dict[str, Any] = field(default_factory=dict)  # test-body outputs (evaluate)
    log: ResultsLog | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per-suite gate results
    baseline_comparisons: list[Any] = field(default_factory=list)
    model_comparisons: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    saved_baseline: str | None = None
    baseline_data: dict[str, Any] | None = None  # loaded at configure time
    _models: dict[str, Model] = field(default_factory=dict)
    _request_memo: dict[str, list[Request]] = field(default_factory=dict)
    _failed_models: dict[str, AieError] = field(default_factory=dict)
    _stores: list[GenerationCache] | None = None

    # --- models -------------------------------------------------------------------------
    @property
    def defaults(self) -> Sampling:
        s = self.settings
        return Sampling(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed)

    @property
    def _shared(self) -> SharedScores:
        return SharedScores(self.run_dir)

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
        extra = ["candidate"] if self.settings.has_candidate else []
        return ["default", *extra, *self.settings.models]

    def model(self, name: str | None = None) -> Model:
        """The named model (``None`` or ``"default"``: the session's model), created lazily."""
        name = name or "default"
        if name not in self._models and name.startswith("target:"):
            self._models[name] = self._target_model(name)
        if name not in self._models:
            s = self.settings
            if name == "default":
                engine, ref = s.engine, s.model
            elif name == "candidate" and s.candidate_adapter:
                self._models[name] = self._adapter_model(s.candidate_adapter)
                return self._models[name]
            elif name == "candidate" and s.candidate:
                engine, ref = s.candidate
            elif name in s.models:
                engine, ref = s.models[name]
            else:
                raise UsageError(f"no model named {name!r}",
                                 fix=f"define it with --aie-models {name}=ENGINE:MODEL "
                                     f"(known: {', '.join(self.model_names())})")
            from pytest_aie.engines import check_engine_options

            check_engine_options(engine, list(s.engine_options))
            options = {"device": s.device, "dtype": s.dtype, "base_url": s.base_url or None,
                       "concurrency": s.concurrency, **s.engine_options}
            self._models[name] = Model(name, engine, ref, options=options, defaults=self.defaults,
                                       batch_size=s.batch_size, stores=self.stores(),
                                       progress=self.progress)
        return self._models[name]

    def _target_model(self, name: str) -> Model:
        """The user's application of a ``target=`` suite, behind the cache like a model."""
        from pytest_aie.target import TargetEngine

        spec = next(s for s in self.suites.values() if s.target_name == name)
        opts = spec.target_options
        engine = TargetEngine(spec.target, batch=opts.get("target_batch", False),
                              concurrency=opts.get("target_concurrency", 8),
                              ident=opts.get("target_id"), model=lambda: self.model("default"))
        stores = self.stores() if opts.get("target_cache", True) else \
            [st for st in self.stores() if getattr(st, "same_run", False)]
        return Model(name, "target", engine.label, engine_obj=engine, defaults=self.defaults,
                     stores=stores, progress=self.progress)

    def _adapter_model(self, path: str) -> Model:
        """The candidate "base + LoRA adapter": the base model's engine, adapter on every
        request (pinned to the adapter's content hash, so the cache sees retraining)."""
        from pytest_aie.engines.base import Capability

        base = self.model("default")
        engine = base.engine
        if not engine.supports(Capability.ADAPTERS):
            raise UsageError(f"--aie-candidate-adapter needs an engine with LoRA adapters; "
                             f"{engine.name!r} has none",
                             fix="use --aie-engine hf with `pip install peft`, or pass a merged "
                                 "model with --aie-candidate")
        resolve = getattr(engine, "resolve_adapter", None)
        ref = resolve(path) if resolve is not None else path
        return Model("candidate", base.engine_name, base.model_ref, engine_obj=engine,
                     defaults=self.defaults, batch_size=self.settings.batch_size,
                     stores=self.stores(), progress=self.progress, adapter=ref, owns_engine=False)

    # --- generation ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _shared_lock(self, name: str) -> Iterator[None]:
        if self.run_dir is None:
            yield
            return
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        with file_lock(self.run_dir / f"{digest}.lock"):
            yield

    def primary_model_name(self) -> str:
        return "candidate" if self.settings.has_candidate else "default"

    def primary_model(self, spec: SuiteSpec) -> str:
        """The model a suite evaluates: its target, its own model, else the candidate in a
        finetune comparison, else the session's model."""
        return spec.target_name or spec.model or self.primary_model_name()

    def samples(self, spec: SuiteSpec) -> int:
        return spec.samples or self.settings.samples

    def _requests(self, nodeid: str) -> list[Request]:
        """One request per sample (seeds from :func:`case_seed`)."""
        if nodeid in self._request_memo:
            return self._request_memo[nodeid]
        self._request_memo[nodeid] = reqs = self._build_requests(nodeid)
        return reqs

    def _build_requests(self, nodeid: str) -> list[Request]:
        """Sample ``i`` of a case gets :func:`case_seed` of the run's (or the suite's) seed,
        the case id and ``i``: independent across cases and across runs' seeds."""
        run = self.runs[nodeid]
        base = run.spec.request_for(run.case, self.defaults)
        seed = base.sampling.seed or 0
        return [replace(base, sampling=replace(base.sampling, seed=case_seed(seed, run.case.id, i)))
                for i in range(self.samples(run.spec))]

    def _generate_for(self, name: str, nodeids: list[str]) -> list[list[Generation]]:
        if name in self._failed_models:
            raise self._failed_models[name]
        per_case = [self._requests(n) for n in nodeids]
        flat = [r for reqs in per_case for r in reqs]
        if name.startswith("target:"):  # the target reads the cases, not the requests
            bind = self.model(name).engine.bind  # type: ignore[attr-defined]
            bind({r.key(): self.runs[n].case for n, reqs in zip(nodeids, per_case) for r in reqs})
        try:
            with self._shared_lock(f"model:{name}"):
                gens = self.model(name).generate_many(flat, label=f"{len(nodeids)} cases")
        except AieError as exc:
            self._failed_models[name] = exc
            raise
        out, i = [], 0
        for reqs in per_case:
            out.append(gens[i:i + len(reqs)])
            i += len(reqs)
        return out

    def ensure_generated(self, nodeid: str, selected: list[str]) -> None:
        """Generate (whole-suite batched) and score every selected case that shares this
        item's model, unless already done. In a finetune comparison the base model
        generates the same cases too."""
        if nodeid in self.outputs:
            return
        name = self.primary_model(self.runs[nodeid].spec)
        pending = [n for n in selected if n in self.runs and n not in self.outputs
                   and not self.runs[n].spec.body
                   and self.primary_model(self.runs[n].spec) == name]
        if nodeid not in pending:
            pending.append(nodeid)
        for n, gens in zip(pending, self._generate_for(name, pending)):
            self.outputs[n] = gens
        self._score(pending, self.outputs, self.scores)
        if self.settings.has_candidate and name == "candidate":
            compare = [n for n in pending if self.runs[n].spec.scorer is not None]
            for n, gens in zip(compare, self._generate_for("default", compare)):
                self.base_outputs[n] = gens
            self._score(compare, self.base_outputs, self.base_scores)

    def _score(self, nodeids: list[str], outputs: dict[str, list[Generation]],
               scores: dict[str, list[list[Score]]]) -> None:
        """Score every sample of every case: one ``score_batch`` call per suite and eval."""
        by_suite: dict[str, list[str]] = {}
        for n in nodeids:
            by_suite.setdefault(self.runs[n].spec.suite, []).append(n)
        side = "base" if scores is self.base_scores else "main"
        for suite, ids in by_suite.items():
            per_eval = []
            for e, ev in enumerate(self.suites[suite].evals):
                kind = f"{side}:{e}:{ev.scorer.metric}"
                with self._shared_lock(f"score:{kind}:{suite}"):
                    shared = self._shared.read(kind, suite)
                    missing = [n for n in ids if n not in shared]
                    if missing:
                        self._score_suite(ev.scorer, missing, outputs, shared)
                        self._shared.write(kind, suite, shared)
                per_eval.append(shared)
            for n in ids:
                scores[n] = [shared[n] for shared in per_eval]

    def score_body(self, nodeid: str, output: str | Generation) -> None:
        """A suite whose test body computes each output (the ``evaluate`` fixture): score this
        case's output on every eval, right after its body ran."""
        run = self.runs[nodeid]
        gen = output if isinstance(output, Generation) else Generation(
            text=output, finish_reason="stop", engine="test-body",
            model=run.spec.suite.rsplit("::", 1)[-1])
        self.outputs[nodeid] = [gen]
        per_eval = []
        for ev in run.spec.evals:
            got: dict[str, list[Score]] = {}
            self._score_suite(ev.scorer, [nodeid], self.outputs, got)
            per_eval.append(got[nodeid])
        self.scores[nodeid] = per_eval

    def _score_suite(self, scorer: Any, ids: list[str], outputs: dict[str, list[Generation]],
                     scores: dict[str, list[Score]]) -> None:
        """One ``score_batch`` call for every sample of these cases of one suite."""
        flat = [(n, i, g) for n in ids for i, g in enumerate(outputs[n])]
        ok = [(n, i, g) for n, i, g in flat if g.error is None]
        results: dict[tuple[str, int], Score] = {
            (n, i): Score.unmeasured(scorer.metric, f"generation failed: {g.error}")
            for n, i, g in flat if g.error is not None}
        if ok:
            def sample(n: str, i: int, g: Generation) -> Sample:
                name = self.primary_model(self.runs[n].spec) if outputs is self.outputs \
                    else "default"  # the base model of a finetune comparison
                return Sample(case=self.runs[n].case, request=self._requests(n)[i],
                              generation=g, model=name, index=i, generations={name: g})

            got = scorer.score_samples([sample(n, i, g) for n, i, g in ok])
            results.update({(n, i): sc for (n, i, _), sc in zip(ok, got)})
        for n in ids:
            scores[n] = [results[(n, i)] for i in range(len(outputs[n]))]

    # --- results ------------------------------------------------------------------------
    def gate(self, ev: Eval) -> dict[str, float]:
        """An eval's gate: its marker's thresholds, else the run's ``--aie-min-*`` defaults."""
        gate = {k: v for k, v in ev.gate.items() if v is not None}
        if not gate:
            s = self.settings
            gate = {k: v for k, v in (("min_pass_rate", s.min_pass_rate),
                                      ("min_score", s.min_score)) if v is not None}
        return gate

    def case_records(self, nodeid: str, *, failure: str | None = None) -> list[dict[str, Any]]:
        """The results records of a finished case, one per eval marker (none for tests
        without one). ``failure``: the test body's own assertion failed."""
        run = self.runs.get(nodeid)
        if run is None or not run.spec.evals or nodeid not in self.outputs:
            return []
        return [self._record(nodeid, e, failure) for e in range(len(run.spec.evals))]

    def _record(self, nodeid: str, e: int, failure: str | None) -> dict[str, Any]:
        run = self.runs[nodeid]
        ev = run.spec.evals[e]
        gens, scores = self.outputs[nodeid], self.scores[nodeid][e]
        gen = gens[0]
        value, passed, reason = combine(scores)
        if failure is not None and gen.error is None:  # the test body's own assertion failed
            passed, reason = False, failure
        request = self._requests(nodeid)[0]
        prompt = request.prompt if request.prompt is not None else \
            "\n".join(f"[{m['role']}] {m['content']}" for m in request.messages or ())
        status = "passed" if passed is True else "failed" if passed is False else \
            "unmeasured" if value is None else "scored"
        record: dict[str, Any] = {
            "type": "case", "suite": run.spec.suite, "case_id": run.case.id, "nodeid": nodeid,
            "metric": scores[0].metric, "value": value, "passed": passed, "status": status,
            "reason": reason,
            "error": next((g.error for g in gens if g.error is not None), None),
            "binary": ev.scorer.binary,
            "higher_is_better": ev.scorer.higher_is_better,
            "output": gen.text, "expected": run.case.expected, "prompt": prompt,
            "tags": list(run.case.tags), "group": _group(run.case),
            "must_pass": bool(run.case.id in ev.must_pass or run.case.fields.get("must_pass")),
            "gate": self.gate(ev) or None, "source": run.case.source,
            "engine": gen.engine, "model": gen.model, "adapter": gen.adapter,
            "cached": gen.cached, "finish_reason": gen.finish_reason,
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": sum(g.completion_tokens or 0 for g in gens),
            "timings": dict(vars(gen.timings)),
            "details": scores[0].details,
        }
        if "references" in run.case.fields:
            record["references"] = run.case.fields["references"]
        record.update(reference_fields(ev.scorer, run.case))  # what the scorer compared with
        if len(gens) > 1:
            from pytest_aie.stats.sampling import consistency

            record["consistency"] = consistency([sc.passed for sc in scores])
            record["samples"] = [
                {"seed": r.sampling.seed, "output": g.text, "passed": sc.passed, "value": sc.value,
                 "reason": sc.reason} for r, g, sc in zip(self._requests(nodeid), gens, scores)]
        if nodeid in self.base_outputs:
            bvalue, bpassed, breason = combine(self.base_scores[nodeid][e])
            record["base"] = {"passed": bpassed, "value": bvalue, "reason": breason,
                              "output": self.base_outputs[nodeid][0].text,
                              "model": self.base_outputs[nodeid][0].model}
        return record

    def conclude(self, status: int) -> int:
        """Controller, at session end: suite verdicts, comparisons (baseline, base vs
        candidate), the baseline file if asked for; returns the exit status."""
        from pytest_aie.gates import (
            GatePolicy,
            compare_models,
            compare_to_baseline,
            evaluate_suites,
            exit_status,
        )

        s = self.settings
        policy = GatePolicy(mode=s.gate, inconclusive=s.inconclusive, confidence=s.confidence,
                            margin=s.regression_margin, alpha=s.alpha)
        self.rows = evaluate_suites(self.records, policy)
        if s.baseline:
            from pytest_aie.baseline import baseline_path, load_baseline

            baseline = self.baseline_data or load_baseline(baseline_path(s.baseline_dir,
                                                                         s.baseline))
            self.baseline_comparisons = compare_to_baseline(self.records, baseline, policy)
        if s.has_candidate:
            self.model_comparisons = compare_models(self.records, policy)
        if s.save_baseline and self.records:
            from pytest_aie.baseline import baseline_path, make_baseline, save_baseline

            header = self.log.header if self.log is not None else {}
            self.saved_baseline = str(save_baseline(baseline_path(s.baseline_dir, s.save_baseline),
                                                    make_baseline(s.save_baseline, header,
                                                                  self.records)))
        status, self.notes = exit_status(self.rows, self.baseline_comparisons
                                         + self.model_comparisons, policy, status)
        self.harness_errors.extend(e for e in evidence_problems(self.records)
                                   if e not in self.harness_errors)
        return status

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


def case_seed(seed: int, case_id: str, sample: int = 0) -> int:
    """The sampling seed of one sample of one case: a hash of the run's seed, the case id and
    the sample index, in ``[0, 2**31)``. Stable for the same inputs; unrelated across cases
    (no two cases share a random stream) and across run seeds (``--aie-seed 0`` and ``1``
    share no sample seeds)."""
    digest = hashlib.sha256(f"{seed}\x00{case_id}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _group(case: Case) -> str | None:
    """The case's cluster for intervals: its ``group`` field, else a ``group:NAME`` tag."""
    if case.fields.get("group") not in (None, ""):
        return str(case.fields["group"])
    return next((t.split(":", 1)[1] for t in case.tags if t.startswith("group:")), None)


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
