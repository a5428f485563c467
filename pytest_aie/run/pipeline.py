"""Generation and scoring: the whole-suite batched pass.

The unit of work is a :data:`Unit`: one case of one suite for one model. The first test that
needs an output asks :meth:`Pipeline.ensure` for its unit; the pipeline then turns every
selected case into requests, generates them per model in large batches (through
:class:`~pytest_aie.run.model.Model`: run store, cache, de-duplication, progress), and scores each
suite once per eval marker with every model's generations in hand. A model-calling scorer
(:class:`~pytest_aie.scorers.base.ModelScorer`) plans its own requests for the whole suite,
which go through the same models; then it scores with their results.

Under xdist, generation and scoring happen under file locks in the run store shared by the
run's workers: the first worker to get there does the work, the others read it, so each
request is generated once and each suite scored once per run whatever ``-n`` is.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from pytest_aie._util.files import file_lock
from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation, Request
from pytest_aie.errors import AieError, UsageError
from pytest_aie.run.registry import ModelRegistry
from pytest_aie.run.scoring import SharedScores
from pytest_aie.scorers.base import ModelScorer, Sample, Score, Scorer
from pytest_aie.suite.spec import SuiteSpec

__all__ = ["BODY_MODEL", "Pipeline", "Unit", "case_seed"]

#: A case of a suite for one model: ``(suite, case id, model name)``.
Unit = tuple[str, str, str]
#: The model name of a suite whose test body computes the outputs (the ``evaluate`` fixture).
BODY_MODEL = "test-body"


@contextlib.contextmanager
def bulk_allocations() -> Iterator[None]:
    """Pause the cyclic garbage collector while a whole-suite pass allocates its objects.

    A pass over 10,000 cases makes ~100,000 objects that all stay alive (generations, scores,
    records); each one counts toward the collector's thresholds, so it ran dozens of full
    collections over every live object of the session for nothing (a tenth of the plugin's
    overhead at 10k cases). Reference counting still frees everything as usual; the collector
    is switched back on (if it was on) afterwards, also on error.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

@dataclass
class Pipeline:
    registry: ModelRegistry
    suites: dict[str, SuiteSpec]
    run_dir: Path | None = None
    samples_default: int = 1
    has_candidate: bool = False
    outputs: dict[Unit, list[Generation]] = field(default_factory=dict)  # one per sample
    scores: dict[Unit, list[list[Score]]] = field(default_factory=dict)  # per eval, per sample
    #: scorers' suite aggregates (corpus BLEU...), by (suite, metric, model)
    aggregates: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    _cases: dict[tuple[str, str], Case] = field(default_factory=dict)
    _request_memo: dict[tuple[str, str], list[Request]] = field(default_factory=dict)
    _failed_models: dict[str, AieError] = field(default_factory=dict)
    _failed_suites: dict[str, AieError] = field(default_factory=dict)  # scoring failed

    # --- which models a suite runs ------------------------------------------------------
    def models(self, spec: SuiteSpec) -> list[str]:
        """Every model a suite generates with, in order: its ``models=``; its target; its
        ``model=``; in a finetune check the candidate and the base (``default``); else the
        session's model."""
        if spec.body:
            return [BODY_MODEL]
        if spec.target_name:
            return [spec.target_name]
        if spec.variants:
            return list(spec.variants)
        if spec.models:
            return list(spec.models)
        if spec.model:
            return [spec.model]
        if self.has_candidate and spec.evals:
            return ["candidate", "default"]
        return ["default"]

    def reference(self, spec: SuiteSpec) -> str | None:
        """The suite's reference model: generated and compared against, not gated itself."""
        if spec.models or spec.variants:
            return spec.reference
        if self.has_candidate and spec.evals and not (spec.body or spec.target or spec.model):
            return "default"
        return None

    def gated(self, spec: SuiteSpec) -> list[str]:
        """The models that get test items (one per case and model) and gates."""
        ref = self.reference(spec)
        return [m for m in self.models(spec) if m != ref]

    def engine_model(self, unit: Unit) -> str:
        """The run's model that generates a unit: its model name, or a variant's model."""
        return self.suites[unit[0]].model_of(unit[2])

    def add_case(self, case: Case) -> None:
        self._cases[(case.suite, case.id)] = case

    def case(self, unit: Unit) -> Case:
        return self._cases[(unit[0], unit[1])]

    # --- requests -----------------------------------------------------------------------
    def samples(self, spec: SuiteSpec) -> int:
        return spec.samples or self.samples_default

    def requests(self, unit: Unit) -> list[Request]:
        """One request per sample; sample ``i`` gets :func:`case_seed` of the run's (or the
        suite's) seed, the case id and ``i`` (the same for every model of the suite, so
        models are compared on the same draws)."""
        spec = self.suites[unit[0]]
        variant = unit[2] if spec.variants else None
        key = (unit[0], unit[1]) if variant is None else (unit[0], f"{unit[1]}\x00{variant}")
        if key not in self._request_memo:
            case = self.case(unit)
            base = spec.request_for(case, self.registry.defaults, variant)
            seed = base.sampling.seed or 0
            self._request_memo[key] = [
                replace(base, sampling=replace(base.sampling, seed=case_seed(seed, case.id, i)))
                for i in range(self.samples(spec))]
        return self._request_memo[key]

    # --- generation ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _shared_lock(self, name: str) -> Iterator[None]:
        if self.run_dir is None:
            yield
            return
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        with file_lock(self.run_dir / f"{digest}.lock"):
            yield

    def failure(self, suite: str) -> AieError | None:
        """Why a suite cannot be evaluated: one of its models could not generate (its engine
        did not start, its server is unreachable) or its scoring failed; None when it can."""
        if not self._failed_models and not self._failed_suites:
            return None
        if suite in self._failed_suites:
            return self._failed_suites[suite]
        spec = self.suites[suite]
        return next((self._failed_models[spec.model_of(m)] for m in self.models(spec)
                     if spec.model_of(m) in self._failed_models), None)

    def ensure(self, unit: Unit, selected: Sequence[Unit]) -> None:
        """Generate and score ``unit`` unless done: with it, every selected unit not done yet,
        for every model of their suites (the whole selection in one batched pass per model).
        A model that fails stops only the suites that use it: the others are generated and
        scored; the failure is raised for this unit's suite (:meth:`failure`)."""
        failed = self.failure(unit[0])
        if failed is not None:
            raise failed
        if unit in self.outputs:
            return
        with bulk_allocations():
            self._ensure(unit, selected)
        failed = self.failure(unit[0])
        if failed is not None:
            raise failed

    def _ensure(self, unit: Unit, selected: Sequence[Unit]) -> None:
        cases: dict[tuple[str, str], None] = {}
        for u in (*selected, unit):
            if u not in self.outputs and not self.suites[u[0]].body:
                cases.setdefault((u[0], u[1]))
        units = [(s, c, m) for (s, c) in cases for m in self.models(self.suites[s])]
        by_model: dict[str, list[Unit]] = {}
        for u in units:
            by_model.setdefault(self.engine_model(u), []).append(u)
        made: dict[Unit, list[Generation]] = {}
        for name, todo in by_model.items():
            try:
                made.update(zip(todo, self._generate(name, todo)))
            except AieError:
                continue  # remembered in _failed_models: the suites on other models go on
        units = [u for u in units if self.failure(u[0]) is None]
        self.outputs.update((u, made[u]) for u in units)
        self._score(units)

    def _generate(self, name: str, units: list[Unit]) -> list[list[Generation]]:
        if name in self._failed_models:
            raise self._failed_models[name]
        per_unit = [self.requests(u) for u in units]
        flat = [r for reqs in per_unit for r in reqs]
        try:
            model = self.registry.get(name)
            if name.startswith("target:"):  # the target reads the cases, not the requests
                model.engine.bind({r.key(): self.case(u)  # type: ignore[attr-defined]
                                   for u, reqs in zip(units, per_unit) for r in reqs})
            with self._shared_lock(f"model:{name}"):
                gens = model.generate_many(flat, label=f"{len(units)} cases")
        except AieError as exc:
            self._failed_models[name] = exc
            raise
        out, i = [], 0
        for reqs in per_unit:
            out.append(gens[i:i + len(reqs)])
            i += len(reqs)
        return out

    # --- scoring ------------------------------------------------------------------------
    def _score(self, units: list[Unit]) -> None:
        """Score every sample of these units: per suite and eval, one scorer call for all
        its cases and models, once per run (shared with the other workers)."""
        by_suite: dict[str, list[Unit]] = {}
        for u in units:
            by_suite.setdefault(u[0], []).append(u)
        shared = SharedScores(self.run_dir)
        for suite, todo in by_suite.items():
            try:
                self._score_suite(suite, todo, shared)
            except AieError as exc:  # a judge that cannot start: this suite only
                self._failed_suites[suite] = exc
            except Exception as exc:  # a scorer or its model crashed: this suite only
                import traceback

                frame = traceback.extract_tb(exc.__traceback__)[-1]
                self._failed_suites[suite] = UsageError(
                    f"scoring {suite} failed: {type(exc).__name__}: {exc} (at "
                    f"{frame.filename}:{frame.lineno})",
                    fix="fix the scorer, or the model function it calls")

    def _score_suite(self, suite: str, todo: list[Unit], shared: SharedScores) -> None:
        per_eval = []
        for e, ev in enumerate(self.suites[suite].evals):
            kind = f"{e}:{ev.scorer.metric}"
            with self._shared_lock(f"score:{kind}:{suite}"):
                done = shared.read(kind, suite)
                missing = [u for u in todo if _key(u) not in done]
                if missing:
                    got = self._score_units(ev.scorer, missing)
                    done.update({_key(u): s for u, s in got.items()})
                    shared.write(kind, suite, done)
                    self._aggregate(ev.scorer, suite, shared)
            per_eval.append(done)
        for u in todo:
            self.scores[u] = [done[_key(u)] for done in per_eval]

    def _aggregate(self, scorer: Scorer, suite: str, shared: SharedScores) -> None:
        """The scorer's suite aggregate per model, over the first sample of every generated
        case of the suite (computed by the process that scored, shared with the controller)."""
        if type(scorer).suite_aggregate is Scorer.suite_aggregate:
            return  # the scorer has none
        by_model: dict[str, list[Sample]] = {}
        for u, gens in self.outputs.items():
            if u[0] == suite and gens and gens[0].error is None:
                by_model.setdefault(u[2], []).append(self._sample(u, 0))
        for model, samples in by_model.items():
            value = scorer.suite_aggregate(samples)
            if value is not None:
                key = (suite, scorer.metric, model)
                self.aggregates[key] = value
                shared.write_aggregate(key, value)

    def score_body(self, unit: Unit, output: str | Generation) -> None:
        """A suite whose test body computes each output (the ``evaluate`` fixture): score this
        case's output on every eval, right after its body ran."""
        gen = output if isinstance(output, Generation) else Generation(
            text=output, finish_reason="stop", engine="test-body",
            model=unit[0].rsplit("::", 1)[-1])
        self.outputs[unit] = [gen]
        self.scores[unit] = [self._score_units(ev.scorer, [unit])[unit]
                             for ev in self.suites[unit[0]].evals]

    def _sample(self, unit: Unit, i: int) -> Sample:
        suite, case_id, _ = unit
        gens = {m: self.outputs[(suite, case_id, m)][i] for m in self.models(self.suites[suite])
                if (suite, case_id, m) in self.outputs}
        return Sample(case=self.case(unit), request=self.requests(unit)[i],
                      generation=self.outputs[unit][i], model=unit[2], index=i, generations=gens)

    def _score_units(self, scorer: Scorer, units: list[Unit]) -> dict[Unit, list[Score]]:
        """One scorer call for every sample of these units; a sample whose generation failed
        is unmeasured with the error as its reason."""
        flat = [(u, i, g) for u in units for i, g in enumerate(self.outputs[u])]
        ok = [(u, i) for u, i, g in flat if g.error is None]
        results: dict[tuple[Unit, int], Score] = {
            (u, i): Score.unmeasured(scorer.metric, f"generation failed: {g.error}")
            for u, i, g in flat if g.error is not None}
        if ok:
            samples = [self._sample(u, i) for u, i in ok]
            if isinstance(scorer, ModelScorer):
                got = self._score_with_model(scorer, samples)
            else:
                got = scorer.score_samples(samples)
            if len(got) != len(samples):
                raise UsageError(f"scorer {scorer.metric!r} returned {len(got)} scores for "
                                 f"{len(samples)} samples", fix="return one Score per sample")
            results.update(zip(ok, got))
        return {u: [results[(u, i)] for i in range(len(self.outputs[u]))] for u in units}

    def _score_with_model(self, scorer: ModelScorer, samples: list[Sample]) -> list[Score]:
        """Plan, generate the planned requests per model (batched, cached, de-duplicated,
        with progress, like the main pass), run the scorer's follow-up rounds the same way,
        then score with the results."""
        scorer.bind(self._supports)
        plans = scorer.plan(samples)
        if len(plans) != len(samples):
            raise UsageError(f"scorer {scorer.metric!r} planned {len(plans)} request lists for "
                             f"{len(samples)} samples", fix="return one list per sample")
        results = self._run_plans(scorer, samples, plans, scorer.metric)
        for round_no in range(scorer.rounds):
            more = scorer.follow_up(samples, results)
            if len(more) != len(samples) or not any(more):
                break
            got = self._run_plans(scorer, samples, more, f"{scorer.metric} follow-up "
                                                          f"{round_no + 1}")
            results = [r + g for r, g in zip(results, got)]
        return scorer.score_results(samples, results)

    def _supports(self, name: str, capability: str) -> bool:
        """Whether the named model's engine has a capability (starts the engine)."""
        if name in self._failed_models:
            raise self._failed_models[name]
        try:
            return self.registry.get(name).engine.supports(capability)
        except AieError as exc:
            self._failed_models[name] = exc
            raise

    def _run_plans(self, scorer: ModelScorer, samples: list[Sample],
                   plans: list[list[Request | tuple[str, Request]]], label: str
                   ) -> list[list[Generation]]:
        calls: dict[str, list[tuple[int, int, Request]]] = {}
        for s, plan in enumerate(plans):
            for j, call in enumerate(plan):
                name, req = call if isinstance(call, tuple) else (scorer.model_name, call)
                calls.setdefault(name, []).append((s, j, req))
        results: list[list[Generation | None]] = [[None] * len(p) for p in plans]
        for name, todo in calls.items():
            if name in self._failed_models:
                raise self._failed_models[name]
            try:
                model = self.registry.get(name)
                with self._shared_lock(f"model:{name}"):
                    gens = model.generate_many([r for _, _, r in todo],
                                               label=f"{label} ({len(samples)} samples)")
            except AieError as exc:
                self._failed_models[name] = exc
                raise
            for (s, j, _), gen in zip(todo, gens):
                results[s][j] = gen
        return [[g for g in r if g is not None] for r in results]


def _key(unit: Unit) -> str:
    """A unit's key in the shared score store (the suite is the store's own key)."""
    return f"{unit[2]}\x00{unit[1]}"


def case_seed(seed: int, case_id: str, sample: int = 0) -> int:
    """The sampling seed of one sample of one case: a hash of the run's seed, the case id and
    the sample index, in ``[0, 2**31)``. Stable for the same inputs; unrelated across cases
    (no two cases share a random stream) and across run seeds (``--aie-seed 0`` and ``1``
    share no sample seeds)."""
    digest = hashlib.sha256(f"{seed}\x00{case_id}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
