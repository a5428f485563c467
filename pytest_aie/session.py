"""The run-wide state: settings, the run's models, its suites and case items, its records and
its conclusion.

One :class:`AieSession` lives in ``config.stash`` per pytest process. It holds the parts,
one concern each: the models by name (:class:`~pytest_aie.run.registry.ModelRegistry`), the
whole-suite batched generation and scoring (:class:`~pytest_aie.run.pipeline.Pipeline`), the
typed case records (:class:`~pytest_aie.results.records.CaseRecord`) and, on the controller, the
gates and comparisons that decide the exit status (:mod:`pytest_aie.gates.thresholds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation
from pytest_aie.errors import AieError
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.results.log import ResultsLog, reference_fields
from pytest_aie.results.records import CaseRecord, SuiteRow
from pytest_aie.run.model import Model, Progress, stderr_progress
from pytest_aie.run.pipeline import Pipeline, Unit, case_seed
from pytest_aie.run.scoring import combine
from pytest_aie.settings import Settings
from pytest_aie.suite.spec import Eval, SuiteSpec

__all__ = ["SESSION_KEY", "AieSession", "CaseRun", "HarnessFailure", "aie_session", "case_seed", "ensure_generated"]


@dataclass
class CaseRun:
    """What one collected case item needs: its suite, its case and the model it evaluates."""

    spec: SuiteSpec
    case: Case
    model: str

    @property
    def unit(self) -> Unit:
        return (self.spec.suite, self.case.id, self.model)


@dataclass
class AieSession:
    settings: Settings
    rootdir: Path
    is_worker: bool = False
    run_dir: Path | None = None  # shared by xdist workers of one run
    progress: Progress = stderr_progress
    suites: dict[str, SuiteSpec] = field(default_factory=dict)
    runs: dict[str, CaseRun] = field(default_factory=dict)  # item nodeid -> CaseRun
    harness_errors: list[str] = field(default_factory=list)
    shown_errors: set[str] = field(default_factory=set)  # already printed by pytest
    failed_items: set[str] = field(default_factory=set)  # harness errors a test already failed on
    submitted: dict[str, Any] = field(default_factory=dict)  # test-body outputs (evaluate)
    retrievers: dict[str, Any] = field(default_factory=dict)  # the retriever fixture's, by arguments
    log: ResultsLog | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    suite_rows: list[SuiteRow] = field(default_factory=list)  # per-suite gate results
    baseline_comparisons: list[Comparison] = field(default_factory=list)
    model_comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    saved_baseline: str | None = None
    baseline_data: dict[str, Any] | None = None  # loaded at configure time
    changes: list[dict[str, Any]] = field(default_factory=list)  # the baseline diff
    aggregates: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    pytest_status: int = 0  # pytest's own exit status, before the gates
    policy: Any = None

    def __post_init__(self) -> None:
        from pytest_aie.run.registry import ModelRegistry

        self.registry = ModelRegistry(self.settings, run_dir=self.run_dir, progress=self.progress,
                                      find_target=self._target_suite)
        self.pipeline = Pipeline(self.registry, self.suites, run_dir=self.run_dir,
                                 samples_default=self.settings.samples,
                                 has_candidate=self.settings.has_candidate)

    def _target_suite(self, name: str) -> SuiteSpec:
        return next(s for s in self.suites.values() if s.target_name == name)

    # --- models and items ---------------------------------------------------------------
    def model(self, name: str | None = None) -> Model:
        """The named model (``None`` or ``"default"``: the session's model), created lazily."""
        return self.registry.get(name)

    def model_names(self) -> list[str]:
        return self.registry.names()

    def add_suite(self, spec: SuiteSpec) -> list[tuple[Case, str]]:
        """Register a suite; its test items as ``(case, id)``: one per case, or one per case
        and gated model when several models are gated."""
        for name in self.pipeline.models(spec):
            self.registry.check(spec.model_of(name))
        self.suites[spec.suite] = spec
        gated = self.pipeline.gated(spec)
        if len(gated) == 1:
            return [(c, c.id) for c in spec.cases]
        from dataclasses import replace

        return [(replace(c, model=m), f"{c.id}@{m}") for c in spec.cases for m in gated]

    def add_run(self, nodeid: str, case: Case) -> None:
        spec = self.suites[case.suite]
        model = case.model or self.pipeline.gated(spec)[0]
        self.runs[nodeid] = CaseRun(spec, case, model)
        self.pipeline.add_case(case)

    def output(self, nodeid: str) -> Generation:
        return self.pipeline.outputs[self.runs[nodeid].unit][0]

    def ensure_generated(self, nodeid: str, selected: list[str]) -> None:
        """Generate (whole-suite batched, every model of the suites) and score this item's
        case and every other selected one, unless already done."""
        unit = self.runs[nodeid].unit
        if unit in self.pipeline.scores:  # the common case: done by an earlier item's pass
            return
        self.pipeline.ensure(unit, [self.runs[n].unit for n in selected if n in self.runs])

    def score_body(self, nodeid: str, output: str | Generation) -> None:
        self.pipeline.score_body(self.runs[nodeid].unit, output)

    # --- records ------------------------------------------------------------------------
    def gate(self, ev: Eval) -> dict[str, float]:
        """An eval's gate: its marker's thresholds, else the run's ``--aie-min-*`` defaults."""
        gate = {k: v for k, v in ev.gate.items() if v is not None}
        if not gate:
            s = self.settings
            gate = {k: v for k, v in (("min_pass_rate", s.min_pass_rate),
                                      ("min_score", s.min_score)) if v is not None}
        return gate

    def case_records(self, nodeid: str, *, failure: str | None = None) -> list[dict[str, Any]]:
        """The results records of a finished item: one per eval marker for its model; the
        suite's first gated model also carries the reference model's records. ``failure``:
        the test body's own assertion failed. Items without an eval marker have none."""
        run = self.runs.get(nodeid)
        if run is None or not run.spec.evals or run.unit not in self.pipeline.outputs:
            return []
        units = [run.unit]
        ref = self.pipeline.reference(run.spec)
        if ref is not None and run.model == self.pipeline.gated(run.spec)[0]:
            ref_unit = (run.spec.suite, run.case.id, ref)
            if ref_unit in self.pipeline.outputs:
                units.append(ref_unit)
        return [self._record(nodeid, u, e, failure if u == run.unit else None).to_dict()
                for u in units for e in range(len(run.spec.evals))]

    def _record(self, nodeid: str, unit: Unit, e: int, failure: str | None) -> CaseRecord:
        run = self.runs[nodeid]
        ev = run.spec.evals[e]
        gens, scores = self.pipeline.outputs[unit], self.pipeline.scores[unit][e]
        requests = self.pipeline.requests(unit)
        gen = gens[0]
        value, passed, reason = combine(scores)
        if failure is not None and gen.error is None:  # the test body's own assertion failed
            passed, reason = False, failure
        error = next((g.error for g in gens if g.error is not None), None)
        if error is not None:  # a server's error may quote credentials back: never stored
            from pytest_aie._util.redact import scrub_text

            error, reason = scrub_text(error), scrub_text(reason)
        request = requests[0]
        prompt = request.prompt if request.prompt is not None else \
            "\n".join(f"[{m['role']}] {m['content']}" for m in request.messages or ())
        status = "passed" if passed is True else "failed" if passed is False else \
            "unmeasured" if value is None else "scored"
        rec = CaseRecord(
            suite=run.spec.suite, case_id=run.case.id, nodeid=nodeid, metric=scores[0].metric,
            model=unit[2], gated=unit[2] != self.pipeline.reference(run.spec),
            status=status, value=value, passed=passed, reason=reason,
            error=error,
            binary=ev.scorer.binary, higher_is_better=ev.scorer.higher_is_better,
            bounds=None if ev.scorer.binary else list(ev.scorer.bounds),
            output=gen.text, expected=run.case.expected, prompt=prompt or "",
            tags=list(run.case.tags), group=_group(run.case),
            must_pass=bool(run.case.id in ev.must_pass or run.case.fields.get("must_pass")),
            gate=self.gate(ev) or None, source=run.case.source,
            engine=gen.engine, model_id=gen.model, adapter=gen.adapter, cached=gen.cached,
            finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
            completion_tokens=sum(g.completion_tokens or 0 for g in gens),
            timings=dict(vars(gen.timings)), details=scores[0].details,
            references=run.case.fields.get("references"),
            retrieved=gen.retrieved, trajectory=gen.trajectory,
            **reference_fields(ev.scorer, run.case))  # what the scorer compared with
        if len(gens) > 1:
            from pytest_aie.stats.sampling import consistency

            rec.consistency = consistency([sc.passed for sc in scores])
            rec.samples = [
                {"seed": r.sampling.seed, "output": g.text, "passed": sc.passed, "value": sc.value,
                 "reason": sc.reason} for r, g, sc in zip(requests, gens, scores)]
        return rec

    # --- conclusion ---------------------------------------------------------------------
    def conclude(self, status: int, run_dir: Path | None = None) -> int:
        """Controller, at session end: the run's conclusion
        (:func:`pytest_aie.gates.conclusion.conclude`: suite verdicts, comparisons with the
        baseline and between models), the baseline file if asked for; returns the exit
        status."""
        from pytest_aie.gates.conclusion import conclude
        from pytest_aie.gates.policy import gate_policy
        from pytest_aie.run.scoring import SharedScores

        s = self.settings
        self.pytest_status = status
        self.policy = policy = gate_policy(vars(s))
        aggregates = {**self.pipeline.aggregates, **SharedScores(run_dir).read_aggregates()}
        self.aggregates = aggregates
        baseline = None
        if s.baseline:
            from pytest_aie.gates.baseline import baseline_path, load_baseline

            baseline = (s.baseline, self.baseline_data
                        or load_baseline(baseline_path(s.baseline_dir, s.baseline)))
        c = conclude(self.records, policy, aggregates=aggregates, status=status,
                     baseline=baseline, harness_errors=self.harness_errors)
        self.suite_rows, self.changes = c.rows, c.changes
        self.baseline_comparisons, self.model_comparisons = c.baseline_comparisons, c.model_comparisons
        if s.save_baseline and self.records:
            from pytest_aie.gates.baseline import baseline_path, make_baseline, save_baseline

            header = self.log.header if self.log is not None else {}
            self.saved_baseline = str(save_baseline(baseline_path(s.baseline_dir, s.save_baseline),
                                                    make_baseline(s.save_baseline, header,
                                                                  self.records)))
        self.notes = c.notes + c.missing
        self.harness_errors.extend(e for e in c.harness_errors if e not in self.harness_errors)
        return c.exit_status

    def write_conclusion(self, status: int) -> None:
        """Controller, after :meth:`conclude`: append the baseline diff (one ``change`` record
        per case) and the ``conclusion`` record to the results log (see
        :mod:`pytest_aie.gates.conclusion`), so that the report can be rebuilt from the log."""
        if self.log is None or not self.records or self.policy is None:
            return
        from pytest_aie.gates.conclusion import conclusion_record

        for change in self.changes:
            self.log.append({"type": "change", **change})
        self.log.append(conclusion_record(
            policy=self.policy, aggregates=self.aggregates, rows=self.suite_rows,
            comparisons=self.baseline_comparisons + self.model_comparisons,
            baseline=self.settings.baseline, changes=len(self.changes),
            pytest_status=self.pytest_status, exit_status=status, notes=self.notes,
            harness_errors=self.harness_errors))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The suite rows as the conclusion record holds them (JSON), for a conftest that
        inspects the run; the package reads the typed :attr:`suite_rows`."""
        return [row.to_json() for row in self.suite_rows]

    def add_record(self, record: dict[str, Any]) -> None:
        """Controller only: keep and log one case record."""
        self.records.append(record)
        if self.log is not None:
            self.log.append(record)

    def close(self) -> None:
        self.registry.close()
        if self.log is not None:
            self.log.close()


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


#: where the plugin keeps the run's :class:`AieSession` (``config.stash[SESSION_KEY]``)
SESSION_KEY = pytest.StashKey[AieSession]()
_SELECTED_KEY = pytest.StashKey[list[str]]()  # the node ids of the selected eval cases


def aie_session(config: pytest.Config) -> AieSession:
    """The run's session, as the plugin stashed it on the config."""
    return config.stash[SESSION_KEY]


class HarnessFailure(Exception):
    """The engine could not be created or reached: raised from the first test of a suite that
    needs it (the run exits 10; the suite's other cases are skipped, other suites run)."""

    def __init__(self, exc: AieError) -> None:
        from pytest_aie._util.redact import scrub_text

        super().__init__(scrub_text(exc.line()))  # a server's error may quote credentials
        self.error = exc


def ensure_generated(item: pytest.Item) -> AieSession:
    """Generate (whole-suite batched) what this case item needs. An engine that cannot run
    stops only the suites that use it: the first of their cases fails with the one-line
    error (the run exits 10), the others are skipped with it as the reason; suites on other
    engines run on."""
    aie = aie_session(item.config)
    try:
        aie.ensure_generated(item.nodeid, item.config.stash.get(_SELECTED_KEY, []))
    except AieError as exc:
        line = exc.line()
        if line in aie.failed_items:
            pytest.skip(f"pytest-aie: not evaluated: {line.removeprefix('pytest-aie: ')}")
        aie.failed_items.add(line)
        raise HarnessFailure(exc) from None
    return aie
