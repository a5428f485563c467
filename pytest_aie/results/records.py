"""Case records: their one typed definition (:class:`CaseRecord`, schema version
:data:`FORMAT_VERSION`), reading them back from a results log, a record's status, and
per-suite counts (the results log reads and writes them: :mod:`pytest_aie.results.log`).

One definition feeds every consumer: the session builds a :class:`CaseRecord` per case, model
and metric; its :meth:`~CaseRecord.to_dict` is what travels on the test report (xdist), what
the results log stores, and what the gates, the baseline, the terminal summary and the
report read. docs/results.md's "Results log schema" table lists the same fields (a test checks it).
A record's status is ``passed``, ``failed``, ``scored`` or ``unmeasured``; records written
before ``status`` existed derive it from ``passed``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from pytest_aie.errors import AieError

__all__ = ["FORMAT_VERSION", "STATUSES", "CaseRecord", "ResultsError", "ResultsWarning", "SuiteRow",
           "Key", "basic_summary", "cluster_of", "group_records", "model_of",
           "several_models", "status_of"]

#: The results log's schema version (its run header's ``format_version``). 2: records carry
#: the run's model name (``model``; the engine's model is ``model_id``) and ``gated``, one
#: record per case, model and metric (version 1 had one model and a ``base`` sub-record). 3: the
#: log ends with the run's ``change`` records (its baseline diff) and a ``conclusion`` record
#: (gate policy, suite aggregates, rows, comparisons, exit status): what ``python -m pytest_aie
#: report`` needs to rebuild the report; a log without them (a crash) still loads.
FORMAT_VERSION = 3

#: Record statuses, and the status of an old record without one.
STATUSES = ("passed", "failed", "scored", "unmeasured")


def _f(doc: str, default: Any = None, *, optional: bool = False) -> Any:
    """A record field with its documentation (``optional``: left out of the log when None)."""
    meta = {"doc": doc, "optional": optional}
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class CaseRecord:
    """One case's outcome on one metric for one model: a line of the results log."""

    suite: str = _f("the test function's node id (`file.py::test_name`)")
    case_id: str = _f("the case's id (its `id` field, else its line number)")
    nodeid: str = _f("the pytest item that ran it")
    metric: str = _f("the metric, e.g. `exact.match`, `similarity.rougeL`")
    model: str = _f("the model's name in the run: `default`, `candidate`, an `--aie-models` "
                    "name, `target:module.function`, `test-body`")
    gated: bool = _f("False for a suite's `reference=` model: compared against, never gated", True)
    status: str = _f("`passed`, `failed`, `scored` (a value, no per-case threshold) or "
                     "`unmeasured` (no value: the reason says why)")
    value: float | None = _f("the score (the mean over samples); null when unmeasured")
    passed: bool | None = _f("the per-case verdict; null when scored or unmeasured")
    reason: str = _f("the scorer's one-line reason", "")
    error: str | None = _f("the engine's or target's error, when generation failed")
    binary: bool = _f("a pass/fail metric (the suite figure is a pass rate) or a score (a mean)",
                      True)
    higher_is_better: bool = _f("False for TER, perplexity, latency: thresholds are ceilings",
                                True)
    bounds: list[float | None] | None = _f("the metric's `[lowest, highest]` value (null: "
                                           "unbounded); every value at a bound gets an exact "
                                           "interval", optional=True)
    output: str = _f("the output scored (the first sample's)", "")
    expected: Any = _f("the case's `expected` field")
    prompt: str = _f("the prompt sent (chat messages as `[role] content` lines)", "")
    tags: list[str] = _f("the case's tags", [])
    group: str | None = _f("the case's cluster for intervals (`group` field or `group:` tag)")
    must_pass: bool = _f("the case fails its test even when a suite gate decides", False)
    gate: dict[str, float] | None = _f("the metric's gate: `min_pass_rate` / `min_score`")
    source: str = _f("where the case is defined (`path:line`)", "")
    engine: str = _f("the engine that generated it (`hf`, `openai`, `scripted`, `target`)", "")
    model_id: str = _f("the engine's model (a hub id, folder, served name or target label)", "")
    adapter: str | None = _f("the LoRA adapter applied, if any")
    cached: bool = _f("served from the generation cache", False)
    finish_reason: str | None = _f("`stop`, `length` (cut by max_tokens), `tool_calls`, `error`")
    prompt_tokens: int | None = _f("prompt tokens of the first sample")
    completion_tokens: int = _f("generated tokens over all samples", 0)
    timings: dict[str, Any] = _f("the first sample's timings (seconds: `total`, `ttft`, ...)", {})
    details: dict[str, Any] = _f("the scorer's details for the first sample", {})
    references: Any = _f("the case's `references` list, when it has one", optional=True)
    reference_field: str | None = _f("the case field the scorer compared with, when not "
                                     "`expected`", optional=True)
    reference: Any = _f("that field's value", optional=True)
    consistency: float | None = _f("repeated sampling: the share of samples agreeing with "
                                   "the majority", optional=True)
    samples: list[dict[str, Any]] | None = _f("repeated sampling: each sample's `seed`, "
                                              "`output`, `passed`, `value`, `reason`",
                                              optional=True)
    retrieved: list[dict[str, Any]] | None = _f("what a retrieval or RAG target retrieved, best "
                                                "first: `id`, `score`, `text`, `rank`",
                                                optional=True)
    trajectory: dict[str, Any] | None = _f("an agent's run: `task`, `steps` (each step's "
                                           "`output`, `tool`, `arguments`, `result`, `error`, "
                                           "`refused`, tokens, `seconds`), `answer`, `stopped`",
                                           optional=True)
    type: str = _f("always `case` (the run header's is `run`)", "case")

    def to_dict(self) -> dict[str, Any]:
        """The record as the results log stores it (optional fields only when set)."""
        names, optional = _layout(type(self))
        values = vars(self)
        out = {name: values[name] for name in names}
        for name in optional:
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def schema(cls) -> list[tuple[str, str]]:
        """``(field, documentation)`` for every field: docs/results.md's schema table."""
        return [(f.name, f.metadata["doc"]) for f in fields(cls)]


_LAYOUTS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A record class's field names, in order, and its optional ones (``dataclasses.fields``
    once per class, not once per record)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        fs = fields(cls)
        layout = _LAYOUTS[cls] = (tuple(f.name for f in fs),
                                  tuple(f.name for f in fs if f.metadata.get("optional")))
    return layout


class ResultsError(AieError):
    """A results log that cannot be read at all (missing, empty, no run header)."""


class ResultsWarning(UserWarning):
    """A results log with a damaged line that was skipped (e.g. a crash mid-write)."""


def status_of(case: Mapping[str, Any]) -> str:
    """A record's status; an old record without one: passed True/False/None -> passed,
    failed, unmeasured."""
    status = case.get("status")
    if status in STATUSES:
        return str(status)
    passed = case.get("passed")
    return "passed" if passed is True else "failed" if passed is False else "unmeasured"


def basic_summary(cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-(suite, metric, model) counts, pass rate and mean score, without intervals or
    verdicts.

    Used when no summary is given (the plugin computes a fuller one with statistical gates).
    The pass rate counts passes and failures only (``None`` when there are none: a suite of
    scored cases has a mean score, not a pass rate); the mean score averages every value.
    """
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    sums: dict[tuple[str, str, str], list[float]] = {}
    for case in cases:
        key = (str(case.get("suite", "")), str(case.get("metric", "")),
               str(case.get("model") or "default"))
        row = groups.get(key)
        if row is None:
            row = groups[key] = {"suite": key[0], "metric": key[1], "model": key[2], "n": 0,
                                 "passed": 0,
                                 "failed": 0, "scored": 0, "unmeasured": 0, "pass_rate": None,
                                 "mean_score": None, "verdict": None, "interval": None}
            sums[key] = [0.0, 0]
        row["n"] += 1
        row[status_of(case)] += 1
        value = case.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            sums[key][0] += value
            sums[key][1] += 1
    for key, row in groups.items():
        judged = row["passed"] + row["failed"]
        row["pass_rate"] = row["passed"] / judged if judged else None
        total, count = sums[key]
        row["mean_score"] = total / count if count else None
    return list(groups.values())


Key = tuple[str, str, str]  # suite, metric, model


def model_of(rec: dict[str, Any]) -> str:
    """A record's model (``default`` when the run names none)."""
    return str(rec.get("model") or "default")


def group_records(records: Iterable[dict[str, Any]], *, gated: bool | None = True
                   ) -> dict[Key, list[dict[str, Any]]]:
    """Case records by suite, metric and model (``gated``: only gated records, only a
    suite's reference model's, or both with None)."""
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("type") == "case" and (gated is None or rec.get("gated", True) is gated):
            groups[(rec["suite"], rec["metric"], model_of(rec))].append(rec)
    return dict(sorted(groups.items()))


def several_models(keys: Iterable[Key]) -> set[tuple[str, str]]:
    """The (suite, metric) pairs gated on more than one model: their names say the model."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for suite, metric, model in keys:
        seen[(suite, metric)].add(model)
    return {k for k, v in seen.items() if len(v) > 1}


def cluster_of(rec: dict[str, Any]) -> str | None:
    """A record's cluster for clustered statistics (its ``group``), or None."""
    return f"group:{rec['group']}" if rec.get("group") not in (None, "") else None


@dataclass(slots=True)
class SuiteRow:
    """One suite's gate result for one metric and model, as
    :func:`pytest_aie.gates.thresholds.evaluate_suites` decides it: counts, the estimate with
    its interval, the threshold and verdict, the Holm family's figures, and the scorers' own
    suite figures (latency budgets, Elo ranking, judge calibration, corpus scores) where the
    suite has them. The conclusion record of the results log holds it as :meth:`to_json`
    writes it; :meth:`from_json` reads it back."""

    suite: str
    metric: str
    model: str | None = None
    several_models: bool = False
    binary: bool = True
    n: int = 0
    passed: int = 0
    failed: int = 0
    scored: int = 0
    unmeasured: int = 0
    pass_rate: float | None = None
    estimate: float | None = None
    interval: list[float] | None = None
    interval_method: str | None = None
    confidence: float | None = None
    mean_score: float | None = None
    cached: int = 0
    completion_tokens: int = 0
    threshold: float | None = None
    verdict: str | None = None
    interval_verdict: str | None = None
    p_value: float | None = None
    p_level: float | None = None
    p_adjusted: float | None = None
    confirmatory: bool = False
    family_size: int | None = None
    must_pass_failed: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    # the scorers' own suite figures, and the reasons they give; None: absent from the JSON
    budgets: dict[str, Any] | None = None
    utilization: dict[str, Any] | None = None
    measured: dict[str, Any] | None = None
    elo: dict[str, Any] | None = None
    verdict_reason: str | None = None
    failed_expectations: list[str] | None = None
    judge: dict[str, Any] | None = None
    inconclusive_reason: str | None = None
    inconclusive_todo: str | None = None
    corpus: Any = None
    sampling: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The row's display name: ``suite [metric]``, plus ``on MODEL`` in a suite that
        gates several models."""
        name = f"{self.suite} [{self.metric}]"
        return name + (f" on {self.model}" if self.several_models else "")

    def to_json(self) -> dict[str, Any]:
        """The row as the conclusion record holds it: every field up to
        ``higher_is_better``, then the suite figures the row has, in field order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SUITE_FIGURES and value is None:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteRow:
        """A row as :meth:`to_json` wrote it (keys it does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_SUITE_FIGURES = frozenset(("budgets", "utilization", "measured", "elo", "verdict_reason",
                            "failed_expectations", "judge", "inconclusive_reason",
                            "inconclusive_todo", "corpus", "sampling"))
