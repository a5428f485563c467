"""Latency budgets: the ``latency`` eval marker, percentiles with bootstrap intervals, verdicts.

::

    @pytest.mark.dataset("cases.jsonl", max_tokens=64)
    @pytest.mark.latency(ttft_p95_ms=500, tpot_p50_ms=40, itl_p99_ms=120, e2e_p95_ms=3000,
                         min_output_tokens_per_s=20, concurrency=1, warmup=2, requests=None)
    def test_latency(case, output): ...

The suite's requests are measured by the probe (:mod:`pytest_aie.latency.probe`: on their own,
``concurrency`` at a time, after ``warmup`` unmeasured requests, never from the generation
cache), once each (``requests=None``) or cycled to ``requests`` measured requests. Every case
gets one :class:`~pytest_aie.scorers.base.Score` on the metric ``latency.e2e_ms``: its
end-to-end time (the median when it was measured several times), with all its latency figures
in ``details`` (and so in the results log). A latency is not a pass or a fail on its own.

Budgets: ``{ttft,tpot,itl,e2e}_p{50,90,95,99}_ms`` are ceilings on that percentile (ITL pooled
over the requests' inter-token gaps), ``min_output_tokens_per_s`` a floor on the median of the
requests' output tokens per second. Each percentile gets a seeded bootstrap interval
(:func:`scipy.stats.bootstrap`, percentile method, resampling whole requests, so one request's
many ITL gaps count as one request) and a three-way verdict (:func:`budget_verdict`): ``pass``
when the whole interval is on the right side of the budget, ``fail`` when it is wholly on the
wrong side, else ``inconclusive`` (also with fewer than 2 requests or an interval of zero
width, as the quality gates do). The scorer's :meth:`~LatencyScorer.suite_aggregate` returns
``{"latency": {budget name: {"estimate", "low", "high", "budget", "verdict", "n"}}}``, the
measured p50/p90/p99 of each measure under ``measured`` (:func:`measured_figures`), and,
per model, the decode's MBU and MFU under ``utilization``
(:func:`pytest_aie.latency.utilization.utilization`: from the median TPOT; each case's ``details``
carry the same entry, so the results log has it).
"""

from __future__ import annotations

import math
import re
import statistics
import warnings
from dataclasses import replace
from typing import Any, Callable, ClassVar, Sequence

from pytest_aie.errors import UsageError
from pytest_aie.latency.probe import LatencySample, probe
from pytest_aie.latency.utilization import UtilizationOptions
from pytest_aie.scorers.base import EvalMarker, Sample, Score, Scorer

__all__ = ["MARKER", "MEASURES", "LatencyScorer", "budget_verdict", "evaluate_budgets", "fmt_ms",
           "measured_figures", "measured_line", "parse_budgets", "percentile_interval",
           "samples_of"]

_BUDGET = re.compile(r"^(ttft|tpot|itl|e2e)_p(50|90|95|99)_ms$")
FLOOR = "min_output_tokens_per_s"
METRIC = "latency.e2e_ms"
_MIN_REQUESTS = 2  # as the quality gates: fewer measured requests never decide
#: The per-request measures shown in the terminal and the report, with their labels.
MEASURES = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "e2e"}
#: The percentiles shown.
SHOWN_PERCENTILES = (50, 90, 99)


# ---------------------------------------------------------------------------- statistics

def percentile_interval(values: Sequence[Sequence[float]], q: float, *, confidence: float = 0.95,
                        n_resamples: int = 1999, seed: int | None = 0
                        ) -> tuple[float, float, float] | None:
    """``(estimate, low, high)`` for the ``q``-th percentile of the values pooled over
    requests (``values[i]``: request ``i``'s values, one for TTFT, one per gap for ITL), with a
    :func:`scipy.stats.bootstrap` interval that resamples whole requests (percentile method,
    seeded). None when nothing was measured; the interval is the estimate itself for a single
    request."""
    import numpy as np
    from scipy import stats

    rows = [[float(v) for v in vs if math.isfinite(v)] for vs in values]
    rows = [r for r in rows if r]
    if not rows:
        return None
    width = max(len(r) for r in rows)
    table = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        table[i, :len(r)] = r
    flat = table[~np.isnan(table)]
    estimate = float(np.percentile(flat, q))
    if len(rows) < 2:
        return estimate, estimate, estimate
    pick = np.percentile if width == 1 else np.nanpercentile

    def statistic(index: Any, axis: int = -1) -> Any:
        chosen = table[index.astype(int)]  # (..., requests, width)
        return pick(chosen.reshape(*chosen.shape[:-2], -1), q, axis=-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.arange(len(rows), dtype=float),), statistic, vectorized=True,
                              method="percentile", confidence_level=confidence,
                              n_resamples=n_resamples, rng=np.random.default_rng(seed),
                              batch=max(1, 2_000_000 // table.size))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # every resample gave the same value
        low = high = estimate
    return estimate, min(low, estimate), max(high, estimate)


def budget_verdict(estimate: float | None, low: float | None, high: float | None, budget: float,
                   *, ceiling: bool, n: int) -> str:
    """The quality gates' three-way rule (:func:`pytest_aie.stats.verdict`, interval mode) on a
    latency budget: for a ceiling ``pass`` when ``high <= budget``, ``fail`` when
    ``low > budget``; for a floor ``pass`` when ``low >= budget``, ``fail`` when
    ``high < budget``; ``inconclusive`` otherwise, with fewer than 2 requests, or with an
    interval of zero width."""
    from pytest_aie.stats import Aggregate, verdict

    if estimate is None or low is None or high is None:
        return "inconclusive"
    if ceiling:  # judge the negated scale, as the gates do for lower-is-better metrics
        estimate, low, high, budget = -estimate, -high, -low, -budget
    agg = Aggregate(n=n, measured=n, unmeasured=0, estimate=estimate, low=low, high=high,
                    method="bootstrap-percentile", confidence=0.95)
    return verdict(agg, budget, mode="interval")


def parse_budgets(budgets: dict[str, Any]) -> dict[str, float]:
    """Validate the marker's budget arguments: known names, positive finite numbers."""
    out = {}
    for name, value in budgets.items():
        if name != FLOOR and not _BUDGET.match(name):
            raise UsageError(f"@pytest.mark.latency got unknown argument {name!r}",
                             fix="use budgets named {ttft,tpot,itl,e2e}_p{50,90,95,99}_ms or "
                                 f"{FLOOR}, and concurrency, warmup, requests")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value <= 0:
            raise UsageError(f"@pytest.mark.latency({name}={value!r}) must be a positive number",
                             fix=f"write e.g. {name}=500")
        out[name] = float(value)
    return out


def evaluate_budgets(samples: Sequence[LatencySample], budgets: dict[str, float], *,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each budget's percentile (its estimate and bootstrap interval over the measured
    requests), the budget, and its verdict."""
    measured = [s for s in samples if s.error is None]
    out: dict[str, dict[str, Any]] = {}
    for name, budget in budgets.items():
        if name == FLOOR:
            metric, q, ceiling = "tokens_per_s", 50.0, False
        else:
            m = _BUDGET.match(name)
            assert m is not None  # parse_budgets checked
            metric, q, ceiling = m[1], float(m[2]), True
        per_request = [s.value(metric) for s in measured]
        n = sum(1 for v in per_request if v)
        got = percentile_interval(per_request, q, confidence=confidence, seed=seed)
        estimate, low, high = got if got is not None else (None, None, None)
        out[name] = {"estimate": estimate, "low": low, "high": high, "budget": budget,
                     "verdict": budget_verdict(estimate, low, high, budget, ceiling=ceiling, n=n),
                     "n": n, "confidence": confidence,
                     "kind": "ceiling" if ceiling else "floor"}
    return out


def measured_figures(samples: Sequence[LatencySample]) -> dict[str, Any]:
    """What the probe measured, as the terminal and the report show it: ``requests`` (measured
    ones), ``failed``, and per measure of :data:`MEASURES` ``{"n": requests with a value,
    "values": values pooled, "p50", "p90", "p99"}`` in ms (the same pooled percentiles as the
    budgets' estimates; ITL pooled over every gap). Failed requests are not measurements."""
    import numpy as np

    ok = [s for s in samples if s.error is None]
    out: dict[str, Any] = {"requests": len(ok), "failed": len(samples) - len(ok)}
    for metric in MEASURES:
        per_request = [s.value(metric) for s in ok]
        pooled = [v for vs in per_request for v in vs]
        if not pooled:
            continue
        ps = np.percentile(pooled, SHOWN_PERCENTILES)
        out[metric] = {"n": sum(1 for vs in per_request if vs), "values": len(pooled),
                       **{f"p{q}": float(p) for q, p in zip(SHOWN_PERCENTILES, ps)}}
    return out


def fmt_ms(value: Any) -> str:
    """A time in ms as the terminal and the report print it: one decimal (three significant
    digits below 1 ms)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def measured_line(figures: dict[str, Any]) -> str:
    """One terminal line: ``measured over 40 requests (ms): TTFT p50 12.1 p90 15.0 p99 18.2;
    ...``."""
    parts = [f"{label} " + " ".join(f"p{q} {fmt_ms(figures[m].get(f'p{q}'))}"
                                     for q in SHOWN_PERCENTILES)
             for m, label in MEASURES.items() if isinstance(figures.get(m), dict)]
    failed = f", {figures['failed']} failed" if figures.get("failed") else ""
    return (f"measured over {figures.get('requests', 0)} requests{failed} (ms): "
            + ("; ".join(parts) or "nothing measured"))


def samples_of(record: Any) -> list[LatencySample]:
    """The probe's measurements a latency case record carries in its ``details`` (the first,
    then its ``repeats``); none for another metric's record or a record without them."""
    if not isinstance(record, dict) or not str(record.get("metric") or "").startswith("latency."):
        return []
    details = record.get("details")
    if not isinstance(details, dict):
        return []
    repeats = details.get("repeats")
    found = [LatencySample.from_dict(d)
             for d in [details, *(repeats if isinstance(repeats, list) else [])]]
    return [s for s in found if s is not None]


# ---------------------------------------------------------------------------- the scorer

class LatencyScorer(Scorer):
    """Scores each case with its measured latency (see the module docstring). ``engine``:
    the suite's engine getter as eval-marker factories get it (``engine()``); when it is the
    plugin's ``functools.partial(getter, model name)``, each model of a several-model suite is
    probed on its own engine (``getter(sample.model)``)."""

    marker: ClassVar[str] = "latency"
    binary: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = False

    def __init__(self, engine: Callable[..., Any], budgets: dict[str, float] | None = None, *,
                 concurrency: int = 1, warmup: int = 2, requests: int | None = None,
                 progress: Callable[[str], None] | None = None,
                 utilization: UtilizationOptions | None = None) -> None:
        for name, value, least in (("concurrency", concurrency, 1), ("warmup", warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"@pytest.mark.latency({name}={value!r}) must be a whole "
                                 f"number >= {least}", fix=f"write e.g. {name}={least + 1}")
        if requests is not None and (isinstance(requests, bool) or not isinstance(requests, int)
                                     or requests < 1):
            raise UsageError(f"@pytest.mark.latency(requests={requests!r}) must be a whole "
                             "number >= 1, or None (each of the suite's requests once)",
                             fix="write e.g. requests=32")
        self._engine = engine
        self.budgets = dict(budgets or {})
        self.concurrency, self.warmup, self.requests = concurrency, warmup, requests
        self.progress = progress
        self.utilization_options = utilization or UtilizationOptions()  # the run's MBU/MFU options
        #: measured samples by model name, each with the sample position it measured
        self.measured: dict[str, list[tuple[int, LatencySample]]] = {}
        #: the decode's MBU and MFU by model name (see :mod:`pytest_aie.latency.utilization`)
        self.utilization: dict[str, dict[str, Any]] = {}

    @property
    def metric(self) -> str:
        return METRIC

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return (0.0, None)

    def score(self, output: str, case: Any) -> Score:
        raise TypeError("the latency scorer measures the suite's requests on its engine: the "
                        "harness scores it through score_samples(), not score()")

    def engine_for(self, model: str) -> Any:
        import functools

        get = self._engine
        if isinstance(get, functools.partial) and get.args:
            return get.func(model)
        return get()

    def score_samples(self, samples: Sequence[Sample]) -> list[Score]:
        by_model: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            by_model.setdefault(s.model, []).append(i)
        per_sample: dict[int, list[LatencySample]] = {}
        for model, positions in by_model.items():
            if model == "test-body":  # the test computed its outputs: no model to time
                continue
            order = [positions[k % len(positions)] for k in range(self.requests or len(positions))]
            reqs = [_probe_request(samples[i]) for i in order]
            got = probe(self.engine_for(model), reqs, concurrency=self.concurrency,
                        warmup=self.warmup, progress=self.progress)
            kept = self.measured.setdefault(model, [])
            for i, lat in zip(order, got):
                per_sample.setdefault(i, []).append(lat)
                kept.append((i, lat))
            self.utilization[model] = self._utilization(model, [lat for _, lat in kept])
        return [self._case_score(per_sample.get(i, []), s) for i, s in enumerate(samples)]

    def _utilization(self, model: str, lats: list[LatencySample]) -> dict[str, Any]:
        from pytest_aie.latency.utilization import Footprint, footprint, utilization

        try:
            fp = footprint(self.engine_for(model), self.utilization_options)
        except Exception as exc:  # noqa: BLE001 - a figure we cannot work out is unmeasured
            fp = Footprint(reason=f"cannot read the model's size: {exc}")
        return utilization([x.tpot_ms for x in lats if x.error is None], fp,
                           concurrency=self.concurrency, opts=self.utilization_options)

    def _case_score(self, lats: list[LatencySample], sample: Sample) -> Score:
        if sample.model == "test-body":
            return Score.unmeasured(METRIC, "latency is measured on a model; this test "
                                            "computes its own outputs")
        if not lats:
            return Score.unmeasured(METRIC, f"not probed (requests={self.requests} is fewer "
                                            "than the suite's requests)")
        ok = [x for x in lats if x.error is None and x.e2e_ms is not None]
        first = (ok or lats)[0]
        details: dict[str, Any] = {**first.to_dict(), "concurrency": self.concurrency}
        if sample.model in self.utilization:
            details["utilization"] = self.utilization[sample.model]
        if len(lats) > 1:
            details["repeats"] = [x.to_dict() for x in lats if x is not first]
        if not ok:
            return Score(METRIC, None, None, f"latency probe failed: {first.error}", details)
        value = statistics.median(x.e2e_ms for x in ok if x.e2e_ms is not None)
        ttft = "-" if first.ttft_ms is None else f"{first.ttft_ms:.1f}"
        tpot = "-" if first.tpot_ms is None else f"{first.tpot_ms:.2f}"
        reason = (f"e2e {value:.1f} ms, ttft {ttft} ms, tpot {tpot} ms, "
                  f"{first.output_tokens} tokens" + (f" ({len(ok)} probes)" if len(ok) > 1 else ""))
        return Score(METRIC, value, None, reason, details)

    def suite_aggregate(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        models = {s.model for s in samples}
        lats = [lat for m in models for _, lat in self.measured.get(m, [])]
        if not lats:
            return None
        found = [self.utilization[m] for m in models if m in self.utilization]
        return {"latency": evaluate_budgets(lats, self.budgets),
                "measured": measured_figures(lats),
                **({"utilization": found[0]} if len(found) == 1 else {}),
                "requests": len(lats), "failed": sum(1 for x in lats if x.error is not None),
                "concurrency": self.concurrency, "warmup": self.warmup}


def _probe_request(sample: Sample) -> Any:
    """The sample's request as its model received it (a LoRA candidate's adapter included)."""
    req = sample.request
    if req.adapter is None and sample.generation.adapter:
        req = replace(req, adapter=sample.generation.adapter)
    return req


def _latency(*args: Any, base_dir: Any, engine: Callable[..., Any], concurrency: int = 1,
             warmup: int = 2, requests: int | None = None,
             utilization: UtilizationOptions | None = None, **budgets: Any) -> Scorer:
    """The ``latency`` marker's scorer; ``utilization``: the run's MBU/MFU options (a run
    option, :data:`pytest_aie.suite.markers.RUN_OPTIONS`)."""
    if args:
        raise UsageError("@pytest.mark.latency takes keyword arguments only",
                         fix="write e.g. @pytest.mark.latency(ttft_p95_ms=500)")
    return LatencyScorer(engine, parse_budgets(budgets), concurrency=concurrency,
                         warmup=warmup, requests=requests, utilization=utilization)


#: the ``latency`` eval marker (listed in :mod:`pytest_aie.suite.markers`)
MARKER = EvalMarker(
    "latency", _latency,
    "latency(*, ttft_p95_ms=None, tpot_p50_ms=None, itl_p99_ms=None, e2e_p95_ms=None, ..., "
    "min_output_tokens_per_s=None, concurrency=1, warmup=2, requests=None): measure the "
    "suite's requests on the model, on their own (concurrency at a time, after warmup "
    "requests, never from the cache; requests=N cycles them to N), and gate each budget "
    "{ttft,tpot,itl,e2e}_p{50,90,95,99}_ms (a ceiling in ms) or min_output_tokens_per_s "
    "(a floor on the median) with its bootstrap interval: pass, fail or inconclusive. "
    "Each case's score is its end-to-end latency in ms.")
