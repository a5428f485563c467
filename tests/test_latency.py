"""Latency budgets: the probe's figures (vLLM's serving-benchmark definitions), percentile
bootstrap intervals, three-way budget verdicts, the ``latency`` marker through whole runs on
the scripted engine, the hf engine (embedded model) and the openai engine against a real
server on loopback, and the probe never reading the generation cache."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from typing import Any, Sequence

import numpy as np
import pytest
from scipy import stats

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling, Timings
from pytest_aie.engines.scripted import ScriptedEngine
from pytest_aie.errors import EngineError, UsageError
from pytest_aie.latency.marker import (
    LatencyScorer,
    budget_verdict,
    evaluate_budgets,
    parse_budgets,
    percentile_interval,
)
from pytest_aie.latency.probe import LatencySample, probe
from pytest_aie.scorers.base import Sample
from pytest_aie.suite.markers import EVAL_MARKERS
from pytest_aie.suite.spec import build_suite

try:  # run as part of a package (tests/__init__.py) or with tests/ on sys.path
    from tests.test_report_sections import rows_of
except ImportError:  # pragma: no cover - depends on how pytest was started
    from test_report_sections import rows_of  # type: ignore[no-redef]

try:  # run as part of a package (tests/__init__.py) or with tests/ on sys.path
    from tests.serving import ServerInfo, openai_server_info  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest was started
    from serving import ServerInfo, openai_server_info  # type: ignore[no-redef]  # noqa: F401


def req(prompt: str, max_tokens: int = 16) -> Request:
    return Request(prompt=prompt, sampling=Sampling(max_tokens=max_tokens))


# ---------------------------------------------------------------------------- definitions

def test_sample_figures_follow_vllms_definitions() -> None:
    # sent at 0 s, chunks at 0.1/0.15/0.2/0.3 s, done at 0.3 s, 4 output tokens
    s = LatencySample.from_times(0.0, [0.1, 0.15, 0.2, 0.3], 0.3, 4)
    assert s.ttft_ms == pytest.approx(100) and s.e2e_ms == pytest.approx(300)
    assert s.tpot_ms == pytest.approx((300 - 100) / 3)  # the first token is not a decode step
    assert s.itl_ms == pytest.approx([50, 50, 100])
    assert s.tokens_per_s == pytest.approx(4 / 0.3) and s.output_tokens == 4
    # the server's token count wins over the chunk count (a chunk may carry several tokens)
    assert LatencySample.from_times(0.0, [0.1, 0.3], 0.3, 5).tpot_ms == pytest.approx(50)
    one = LatencySample.from_times(0.0, [0.1], 0.1, 1)
    assert one.tpot_ms is None and one.itl_ms == [] and one.value("tpot") == []
    nothing = LatencySample.from_times(0.0, [], 0.2, 0)
    assert nothing.ttft_ms is None and nothing.tokens_per_s is None and nothing.e2e_ms == pytest.approx(200)


# ---------------------------------------------------------------------------- statistics

VALUES = [12.0, 15, 11, 30, 22, 18, 14, 16, 40, 13]


@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_percentile_interval_is_scipys_seeded_percentile_bootstrap(q: int) -> None:
    est, low, high = percentile_interval([[v] for v in VALUES], q)
    ref = stats.bootstrap((np.array(VALUES),), lambda x, axis: np.percentile(x, q, axis=axis),
                          vectorized=True, method="percentile", n_resamples=1999,
                          rng=np.random.default_rng(0))
    assert est == pytest.approx(np.percentile(VALUES, q))
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert percentile_interval([[v] for v in VALUES], q) == (est, low, high)  # seeded
    assert low <= est <= high


def test_itl_interval_resamples_whole_requests() -> None:
    # two requests, 50 gaps each: one request is steadily 10 ms, the other 20 ms. Resampling
    # requests, the median can be 10 or 20; resampling gaps as if independent would pin it at 15.
    est, low, high = percentile_interval([[10.0] * 50, [20.0] * 50], 50)
    assert est == pytest.approx(15) and (low, high) == pytest.approx((10, 20))
    assert percentile_interval([[], [float("nan")]], 50) is None
    assert percentile_interval([[7.0, 9.0]], 50) == (8.0, 8.0, 8.0)  # one request: no interval


@pytest.mark.parametrize(("low", "high", "budget", "ceiling", "n", "expected"), [
    (80, 90, 100, True, 10, "pass"),         # the whole interval under the ceiling
    (80, 100, 100, True, 10, "pass"),        # touching it is not over it
    (110, 120, 100, True, 10, "fail"),       # wholly over
    (90, 110, 100, True, 10, "inconclusive"),  # straddles
    (80, 90, 100, True, 1, "inconclusive"),  # one request never decides
    (90, 90, 100, True, 10, "inconclusive"),  # zero width, as the quality gates
    (25, 30, 20, False, 10, "pass"),         # a floor: the whole interval above it
    (10, 15, 20, False, 10, "fail"),
    (15, 25, 20, False, 10, "inconclusive"),
])
def test_budget_verdict_is_three_way(low: float, high: float, budget: float, ceiling: bool,
                                     n: int, expected: str) -> None:
    assert budget_verdict((low + high) / 2, low, high, budget, ceiling=ceiling, n=n) == expected


def test_budget_verdict_without_measurements_is_inconclusive() -> None:
    assert budget_verdict(None, None, None, 100, ceiling=True, n=0) == "inconclusive"


def _sample(ttft: float, e2e: float, tokens: int, itl: list[float] | None = None) -> LatencySample:
    return LatencySample.from_figures(ttft, e2e, tokens, itl)


def test_evaluate_budgets_gives_each_budget_its_percentile_and_verdict() -> None:
    samples = [_sample(100 + i, 1000 + 10 * i, 20, [40.0 + i] * 19) for i in range(10)]
    samples.append(LatencySample.failed("boom", "stream"))  # failures are not measurements
    out = evaluate_budgets(samples, {"ttft_p95_ms": 200, "ttft_p50_ms": 50, "itl_p99_ms": 60,
                                     "min_output_tokens_per_s": 1000, "tpot_p50_ms": 47})
    assert set(out) == {"ttft_p95_ms", "ttft_p50_ms", "itl_p99_ms", "min_output_tokens_per_s",
                        "tpot_p50_ms"}
    ttft = out["ttft_p95_ms"]
    assert ttft["estimate"] == pytest.approx(np.percentile([100 + i for i in range(10)], 95))
    assert ttft["n"] == 10 and ttft["budget"] == 200 and ttft["verdict"] == "pass"
    assert ttft["low"] <= ttft["estimate"] <= ttft["high"] <= 109
    assert out["ttft_p50_ms"]["verdict"] == "fail"
    assert out["itl_p99_ms"]["verdict"] == "pass" and out["itl_p99_ms"]["high"] <= 49
    rates = [20 / ((1000 + 10 * i) / 1000) for i in range(10)]  # tokens / e2e
    floor = out["min_output_tokens_per_s"]
    assert floor["estimate"] == pytest.approx(np.median(rates)) and floor["verdict"] == "fail"
    tpots = [(1000 + 10 * i - 100 - i) / 19 for i in range(10)]  # 47.4 .. 51.2 ms
    assert out["tpot_p50_ms"]["estimate"] == pytest.approx(np.median(tpots))
    assert out["tpot_p50_ms"]["verdict"] == "fail"


@pytest.mark.parametrize(("budgets", "message"), [
    ({"ttft_p75_ms": 10}, "unknown argument 'ttft_p75_ms'"),
    ({"latency_ms": 10}, "unknown argument"),
    ({"e2e_p95_ms": 0}, "must be a positive number"),
    ({"e2e_p95_ms": True}, "must be a positive number"),
    ({"min_output_tokens_per_s": float("nan")}, "must be a positive number"),
])
def test_bad_budgets_are_usage_errors(budgets: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_budgets(budgets)


# ---------------------------------------------------------------------------- the probe

ANSWER = "one two three four five"


class CountingScripted(ScriptedEngine):
    """A scripted engine that counts its streamed requests and how many ran at once."""

    def __init__(self, answer: Any = lambda r: ANSWER, **kwargs: Any) -> None:
        super().__init__(answer, **kwargs)
        self.streamed: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self._count = threading.Lock()

    def stream_one(self, request: Request):  # type: ignore[no-untyped-def]
        with self._count:
            self.streamed.append(str(request.prompt))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return (yield from super().stream_one(request))
        finally:
            with self._count:
                self.in_flight -= 1


def test_probe_measures_exactly_the_engines_time_and_adds_none_of_its_own() -> None:
    # the scripted engine's virtual clock: 20 ms per word, whatever the machine's load, so
    # the probe's figures are known exactly (and anything the probe added would show)
    engine = CountingScripted(token_delay=0.02, virtual_clock=True)
    samples = probe(engine, [req(f"q{i}") for i in range(3)], warmup=0)
    assert [s.index for s in samples] == [0, 1, 2]
    for s in samples:  # 5 words: first after 20 ms, the end after 100 ms
        assert s.error is None and s.method == "stream" and s.output_tokens == 5
        assert s.ttft_ms == pytest.approx(20) and s.e2e_ms == pytest.approx(100)
        assert s.itl_ms == pytest.approx([20] * 4) and s.tpot_ms == pytest.approx(20)
        assert s.tokens_per_s == pytest.approx(5 / 0.1)
    fast = probe(CountingScripted(token_delay=0.0, virtual_clock=True), [req("q")], warmup=0)[0]
    assert fast.ttft_ms == 0 and fast.e2e_ms == 0  # the delay is what is measured, not the probe


def test_probe_measures_real_sleeps_at_least_as_long_as_asked() -> None:
    engine = CountingScripted(token_delay=0.02)
    for s in probe(engine, [req(f"q{i}") for i in range(2)], warmup=0):
        assert s.error is None and s.output_tokens == 5 and len(s.itl_ms) == 4
        assert 20 <= s.ttft_ms <= s.e2e_ms and s.e2e_ms >= 100 and min(s.itl_ms) >= 20
        assert s.tpot_ms == pytest.approx((s.e2e_ms - s.ttft_ms) / 4)
        assert s.tokens_per_s == pytest.approx(5 / (s.e2e_ms / 1000))


def test_virtual_clock_option_is_checked() -> None:
    with pytest.raises(EngineError, match="virtual_clock must be true or false"):
        ScriptedEngine(lambda r: "a", virtual_clock="sometimes")
    assert ScriptedEngine(lambda r: "a", virtual_clock="true").virtual_clock


def test_warmup_requests_run_first_and_are_not_measured() -> None:
    engine = CountingScripted()
    samples = probe(engine, [req("a"), req("b"), req("c")], warmup=2)
    assert engine.streamed == ["a", "b", "a", "b", "c"]
    assert len(samples) == 3
    engine = CountingScripted()
    probe(engine, [req("a")], warmup=3)  # fewer requests than warm-up: cycled
    assert engine.streamed == ["a"] * 4


@pytest.mark.parametrize("concurrency", [1, 3])
def test_probe_keeps_concurrency_requests_in_flight(concurrency: int) -> None:
    engine = CountingScripted(token_delay=0.01)
    samples = probe(engine, [req(f"q{i}") for i in range(6)], concurrency=concurrency, warmup=0)
    # requests overlapped (three at a time), never more than asked: seen by the engine itself,
    # not inferred from a wall time that a loaded machine stretches
    assert engine.most_in_flight == concurrency
    assert len(samples) == 6 and all(s.e2e_ms >= 50 for s in samples)


class TimedEngine(Engine):
    """An engine that reports its own per-request timings (as the vllm engine does)."""

    name = "timed"
    capabilities = frozenset({Capability.PROMPT, Capability.TIMINGS})

    def __init__(self, ttft_s: float | None = 0.05) -> None:
        self.ttft_s = ttft_s
        self.calls: list[int] = []

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name}

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.calls.append(len(requests))
        return [Generation(text="a b c", completion_tokens=3, timings=Timings(
            e2e_s=0.25, ttft_s=self.ttft_s, tpot_s=0.1, batch_size=len(requests)))
            for _ in requests]


def test_engines_with_their_own_timings_are_measured_from_them() -> None:
    engine = TimedEngine()
    samples = probe(engine, [req(f"q{i}") for i in range(5)], concurrency=2, warmup=1)
    assert engine.calls == [1, 2, 2, 1]  # warm-up alone, then `concurrency` per call
    s = samples[0]
    assert s.method == "timings" and s.ttft_ms == pytest.approx(50) and s.e2e_ms == pytest.approx(250)
    assert s.tpot_ms == pytest.approx((250 - 50) / 2) and s.itl_ms == []


class NoTimings(TimedEngine):
    capabilities = frozenset({Capability.PROMPT})


def test_an_engine_that_cannot_be_timed_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="cannot measure latency"):
        probe(NoTimings(), [req("q")])
    with pytest.raises(EngineError, match="cannot measure latency"):  # timings, but no TTFT
        probe(TimedEngine(ttft_s=None), [req("q")], warmup=0)


def test_probe_arguments_are_checked() -> None:
    with pytest.raises(UsageError, match="concurrency=0"):
        probe(CountingScripted(), [req("q")], concurrency=0)
    with pytest.raises(UsageError, match="warmup=-1"):
        probe(CountingScripted(), [req("q")], warmup=-1)
    assert probe(CountingScripted(), []) == []


# ---------------------------------------------------------------------------- the scorer

def _samples(n: int, model: str = "default") -> list[Sample]:
    out = []
    for i in range(n):
        r = req(f"q{i}")
        out.append(Sample(case=Case(id=f"c{i}", fields={"prompt": f"q{i}"}), request=r,
                          generation=Generation(text=ANSWER, cached=True), model=model))
    return out


def _words(request: Request) -> str:
    """q0 gets 2 words, q1 3, ...: with 5 ms per word, q0 takes 10 ms, q1 15 ms, ..."""
    return " ".join(["w"] * (2 + int(str(request.prompt)[1:])))


def test_scorer_scores_every_case_with_its_latency_and_aggregates_the_budgets() -> None:
    engine = CountingScripted(_words, token_delay=0.005, virtual_clock=True)
    # e2e 10, 15, 20, 25 ms: p95 24.25 (its interval at most 25) and p50 17.5 (at least 10)
    scorer = LatencyScorer(lambda: engine, {"e2e_p95_ms": 26, "e2e_p50_ms": 9.5,
                                            "ttft_p50_ms": 100}, warmup=1)
    assert (scorer.binary, scorer.higher_is_better, scorer.bounds) == (False, False, (0.0, None))
    samples = _samples(4)
    scores = scorer.score_samples(samples)
    assert engine.streamed == ["q0", "q0", "q1", "q2", "q3"]  # fresh, though the outputs were cached
    assert [s.metric for s in scores] == ["latency.e2e_ms"] * 4
    for i, s in enumerate(scores):
        assert s.passed is None and s.value == s.details["e2e_ms"] == pytest.approx(10 + 5 * i)
        assert s.details["output_tokens"] == 2 + i and s.details["itl_ms"] == pytest.approx([5] * (1 + i))
        assert s.details["ttft_ms"] == pytest.approx(5) and s.details["concurrency"] == 1
    agg = scorer.suite_aggregate(samples)
    assert agg is not None
    budgets = agg["latency"]
    assert set(budgets) == {"e2e_p95_ms", "e2e_p50_ms", "ttft_p50_ms"}
    for budget in budgets.values():
        assert set(budget) >= {"estimate", "low", "high", "budget", "verdict", "n"} and budget["n"] == 4
    assert budgets["e2e_p95_ms"]["estimate"] == pytest.approx(24.25)  # 20 + 0.85 x 5, by hand
    assert budgets["e2e_p95_ms"]["verdict"] == "pass"  # in seconds (0.024) it would pass too...
    assert budgets["e2e_p50_ms"]["estimate"] == pytest.approx(17.5)
    assert budgets["e2e_p50_ms"]["verdict"] == "fail"  # ...but this would not fail
    # every first token after 5 ms: an interval of zero width decides nothing (as the gates)
    assert budgets["ttft_p50_ms"]["verdict"] == "inconclusive"
    measured = agg["measured"]
    assert measured["requests"] == 4 and measured["failed"] == 0
    assert measured["e2e"] == pytest.approx({"n": 4, "values": 4, "p50": 17.5, "p90": 23.5,
                                             "p99": 24.85})
    assert measured["itl"]["values"] == 1 + 2 + 3 + 4 and measured["itl"]["p50"] == pytest.approx(5)


def test_scorer_cycles_the_requests_to_the_asked_number() -> None:
    engine = CountingScripted()
    scorer = LatencyScorer(lambda: engine, {}, warmup=0, requests=5)
    scores = scorer.score_samples(_samples(2))
    assert engine.streamed == ["q0", "q1", "q0", "q1", "q0"]
    assert len(scores[0].details["repeats"]) == 2 and len(scores[1].details["repeats"]) == 1
    few = LatencyScorer(lambda: CountingScripted(), {}, warmup=0, requests=1)
    assert [s.status for s in few.score_samples(_samples(2))] == ["scored", "unmeasured"]


def test_several_models_are_each_probed_on_their_own_engine() -> None:
    import functools

    engines = {"a": CountingScripted(), "b": CountingScripted()}
    scorer = LatencyScorer(functools.partial(lambda name: engines[name], "a"), {"e2e_p50_ms": 1e6},
                           warmup=0)
    samples = _samples(2, "a") + _samples(3, "b")
    scorer.score_samples(samples)
    assert engines["a"].streamed == ["q0", "q1"] and engines["b"].streamed == ["q0", "q1", "q2"]
    agg = scorer.suite_aggregate(samples[2:])
    assert agg is not None and agg["latency"]["e2e_p50_ms"]["n"] == 3


def test_marker_arguments_are_checked(tmp_path: Any) -> None:
    (tmp_path / "cases.jsonl").write_text('{"id": "a", "prompt": "q"}\n')
    assert "latency" in EVAL_MARKERS

    def build(*args: Any, **kwargs: Any) -> Any:
        return build_suite("s", (("cases.jsonl",), {}), [("latency", args, kwargs)], tmp_path)

    spec = build(ttft_p95_ms=500, min_output_tokens_per_s=5, concurrency=2, warmup=0, requests=8)
    scorer = spec.evals[0].scorer
    assert isinstance(scorer, LatencyScorer) and scorer.metric == "latency.e2e_ms"
    assert scorer.budgets == {"ttft_p95_ms": 500.0, "min_output_tokens_per_s": 5.0}
    assert (scorer.concurrency, scorer.warmup, scorer.requests) == (2, 0, 8)
    for args, kwargs, message in [((), {"ttft_p95": 1}, "unknown argument 'ttft_p95'"),
                                  ((500,), {}, "keyword arguments only"),
                                  ((), {"concurrency": 0}, "concurrency=0"),
                                  ((), {"requests": 0}, "requests=0"),
                                  ((), {"warmup": 1.5}, "warmup=1.5")]:
        with pytest.raises(UsageError, match=message):
            build(*args, **kwargs)


# ---------------------------------------------------------------------------- whole runs

ROWS_CONFTEST = """
    import json
    import pytest
    from pytest_aie.plugin import SESSION_KEY

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(session):
        aie = session.config.stash.get(SESSION_KEY, None)
        if aie is not None and not aie.is_worker:
            with open("rows.json", "w") as fh:
                json.dump(aie.rows, fh, default=str)
"""


def _run_files(pytester: pytest.Pytester, cases: list[dict[str, Any]], test: str,
               ini: str) -> None:
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases))
    pytester.makepyfile(test_latency_suite=textwrap.dedent(test))
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makeini(textwrap.dedent(ini))


def _records(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines[1:]) if r.get("type") == "case"]


def _budgets(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    rows = json.loads((pytester.path / "rows.json").read_text())
    return {r["suite"].rsplit("::", 1)[-1]: r.get("budgets") for r in rows}


TWO_SUITES = """
    import pytest

    @pytest.mark.dataset("cases.jsonl", max_tokens=8, {dataset})
    @pytest.mark.latency({fast}warmup=1)
    def test_fast(case, output):
        pass

    @pytest.mark.dataset("cases.jsonl", max_tokens=8, {dataset})
    @pytest.mark.latency({slow}warmup=1)
    def test_slow(case, output):
        pass
"""


def _suites(dataset: str, fast: str = "", slow: str = "") -> str:
    return TWO_SUITES.format(dataset=dataset, fast=f"{fast}, " if fast else "",
                             slow=f"{slow}, " if slow else "")


def _latency_records(pytester: pytest.Pytester, engine: str, cases: int
                     ) -> list[dict[str, Any]]:
    recs = _records(pytester)
    assert len(recs) == 2 * cases
    for rec in recs:
        assert rec["metric"] == "latency.e2e_ms" and rec["engine"] == engine
        assert rec["status"] == "scored" and rec["higher_is_better"] is False
        d = rec["details"]
        assert rec["value"] == d["e2e_ms"] > 0 and 0 < d["ttft_ms"] <= d["e2e_ms"]
        assert 1 <= d["output_tokens"] <= 8 + 1 and d["error"] is None
    return recs


def _percentile(recs: list[dict[str, Any]], suite: str, key: str, q: float) -> float:
    """The q-th percentile of a suite's logged per-request figures (numpy, independently)."""
    return float(np.percentile([r["details"][key] for r in recs if r["suite"].endswith(suite)], q))


SCRIPTED_INI = """
    [pytest]
    aie_engine = scripted
    aie_model = answers.jsonl
    aie_engine_options = token_delay=0.01,virtual_clock=true
    aie_cache = on
    aie_cache_dir = {cache}
"""

#: c0 answers 2 words, c1 3, ... c4 6: at 10 ms per word on the virtual clock, requests of
#: exactly 20, 30, 40, 50 and 60 ms end to end, each first token at 10 ms
E2E_MS = [20.0, 30.0, 40.0, 50.0, 60.0]


def test_scripted_run_gates_budgets_on_exact_timings_and_the_cache_never_serves_the_probe(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    cases = [{"id": f"c{i}", "prompt": f"q{i}"} for i in range(5)]
    (pytester.path / "answers.jsonl").write_text("\n".join(
        json.dumps({"prompt": f"q{i}", "answer": " ".join(["w"] * (2 + i))}) for i in range(5)))
    # by hand: e2e p90 of 20..60 is 56 (its interval at most 60), p50 is 40 (at least 20); a
    # figure in seconds (0.04) or in microseconds (40000) would turn either verdict round
    _run_files(pytester, cases, _suites("chat=False", fast="e2e_p90_ms=61", slow="e2e_p50_ms=19"),
               SCRIPTED_INI.format(cache=tmp_path_factory.mktemp("cache")))
    for run in ("first", "from the cache"):
        result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
        out = result.stdout.str()
        assert result.ret == 1, out  # test_slow's budget fails the run
        budgets = _budgets(pytester)
        fast, slow = budgets["test_fast"]["e2e_p90_ms"], budgets["test_slow"]["e2e_p50_ms"]
        assert fast["estimate"] == pytest.approx(56) and fast["verdict"] == "pass", budgets
        assert slow["estimate"] == pytest.approx(40) and slow["verdict"] == "fail", budgets
        assert fast["high"] <= 60 + 1e-9 and slow["low"] >= 20 - 1e-9 and slow["n"] == 5
        recs = _latency_records(pytester, "scripted", 5)
        assert all(r["cached"] for r in recs) == (run == "from the cache")
        for rec in recs:  # measured by the probe, never replayed: a cached output has no timings
            i = int(rec["case_id"][1:])
            assert rec["details"]["e2e_ms"] == pytest.approx(E2E_MS[i])
            assert rec["details"]["ttft_ms"] == pytest.approx(10) and rec["details"]["output_tokens"] == 2 + i
            if rec["cached"]:
                assert rec["timings"]["e2e_s"] is None
        result.stdout.fnmatch_lines([
            "*measured over 5 requests (ms): TTFT p50 10.0 p90 10.0 p99 10.0; TPOT p50 10.0 p90 "
            "10.0 p99 10.0; ITL p50 10.0 p90 10.0 p99 10.0; e2e p50 40.0 p90 56.0 p99 59.6",
            "*e2e_p90_ms: 56 [[]36, 60] vs budget 61.0 over 5 requests -> PASS"])
    report = (pytester.path / "aie-results" / "report.html").read_text()
    rows = [r for r in rows_of(report, "aie-latency") if r[0].endswith("test_fast")]
    assert [r[4:] for r in rows] == [["5", "10.0", "10.0", "10.0"]] * 3 + [["5", "40.0", "56.0", "59.6"]]
    verdicts = {r[2]: r[7] for r in rows_of(report, "aie-latency-budgets")}
    assert verdicts == {"e2e_p90_ms": "pass", "e2e_p50_ms": "fail"}


# Budgets no real run can straddle: ten minutes per request must pass, a microsecond must fail.
# They make the verdicts independent of the machine's speed and load (budgets derived from a
# first run's figures failed in CI when the second run, with the other tier beside it, was twice
# as slow); the unit is checked by the budget's estimate, which must be the log's own percentile.
PASSING_P90_MS, FAILING_P50_MS = 600_000.0, 0.001


def _budget_run(pytester: pytest.Pytester, dataset: str, engine: str,
                run: Any) -> list[dict[str, Any]]:
    """One run of two suites on ``engine``: ``test_fast`` with an e2e p90 budget that passes,
    ``test_slow`` with an e2e p50 budget that fails (the run exits 1). The budgets' estimates
    must be the percentiles numpy computes from the logged per-request figures, so a gate that
    read the log's milliseconds in another unit fails here. Returns the case records."""
    _run_files(pytester, CAPITALS, _suites(dataset, fast=f"e2e_p90_ms={PASSING_P90_MS}",
                                           slow=f"e2e_p50_ms={FAILING_P50_MS}"), "[pytest]\n")
    result = run()
    assert result.ret == 1, result.stdout.str()  # test_slow's budget fails the run
    result.stdout.fnmatch_lines(["*GATE FAILED*test_slow*latency budget e2e_p50_ms failed*"])
    recs = _latency_records(pytester, engine, 3)
    budgets = _budgets(pytester)
    fast, slow = budgets["test_fast"]["e2e_p90_ms"], budgets["test_slow"]["e2e_p50_ms"]
    assert (fast["verdict"], slow["verdict"]) == ("pass", "fail"), budgets
    assert fast["estimate"] == pytest.approx(_percentile(recs, "test_fast", "e2e_ms", 90))
    assert slow["estimate"] == pytest.approx(_percentile(recs, "test_slow", "e2e_ms", 50))
    assert fast["budget"] == PASSING_P90_MS and slow["budget"] == FAILING_P50_MS
    return recs


CAPITALS = [{"id": c.lower(), "prompt": f"What is the capital of {c}? One word."}
            for c in ("France", "Japan", "Italy")]


@pytest.mark.slow
def test_hf_run_passes_and_fails_budgets_and_measures_again_from_the_cache(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    options = ["-p", "no:randomly", "--aie-engine", "hf", "--aie-engine-options", "threads=1",
               "-o", f"aie_cache_dir={tmp_path_factory.mktemp('cache')}"]
    first = _budget_run(pytester, "chat=True", "hf", lambda: pytester.runpytest_subprocess(
        *options, "--aie-cache", "refresh"))
    cached = _budget_run(pytester, "chat=True", "hf", lambda: pytester.runpytest_subprocess(
        *options))
    for rec in first:  # one chunk per generated token (the end-of-sequence token's included)
        d = rec["details"]
        assert len(d["itl_ms"]) in (d["output_tokens"] - 1, d["output_tokens"])
        assert d["method"] == "stream" and not rec["cached"]
    assert all(r["cached"] for r in cached)
    before = {(r["suite"], r["case_id"]): r["details"]["ttft_ms"] for r in first}
    after = {(r["suite"], r["case_id"]): r["details"]["ttft_ms"] for r in cached}
    assert all(after[k] != before[k] for k in before)  # measured afresh, not replayed


@pytest.mark.slow
def test_openai_run_against_a_real_server_passes_and_fails_budgets(
        pytester: pytest.Pytester, openai_server_info: ServerInfo) -> None:
    options = ["-p", "no:randomly", "--aie-engine", "openai", "--aie-base-url",
               openai_server_info.base_url, "--aie-cache", "off"]
    recs = _budget_run(pytester, "chat=True", "openai",
                       lambda: pytester.runpytest_subprocess(*options))
    for rec in recs:
        d = rec["details"]
        assert d["method"] == "openai" and d["output_tokens"] == rec["completion_tokens"]
        assert all(g >= 0 for g in d["itl_ms"])


# ---------------------------------------------------------------------------- hf streaming

def _drain(stream: Any) -> tuple[list[tuple[str, float]], Generation]:
    chunks = []
    while True:
        try:
            chunks.append(next(stream))
        except StopIteration as stop:
            return chunks, stop.value


@pytest.mark.slow
def test_hf_stream_one_gives_generates_text_one_chunk_per_token(tmp_path: Any) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pytest_aie.engines.embedded import default_model_dir
    from pytest_aie.engines.hf import HFEngine

    torch.manual_seed(7)  # a LoRA adapter with random non-zero weights: different outputs
    base = AutoModelForCausalLM.from_pretrained(default_model_dir(), dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                    init_lora_weights=False, task_type="CAUSAL_LM")
                   ).save_pretrained(tmp_path / "adapter")
    engine = HFEngine(device="cpu", threads=1)
    plain = Request(messages=({"role": "user", "content": "Write a short poem about the sea."},),
                    sampling=Sampling(max_tokens=12))
    adapted = Request(messages=plain.messages, sampling=Sampling(max_tokens=12, stop=("\n",)),
                      adapter=str(tmp_path / "adapter"))
    try:
        wanted = engine.generate([plain, adapted])
        for request, want in zip((plain, adapted), wanted):
            started = time.perf_counter()
            chunks, got = _drain(engine.stream_one(request))
            assert (got.text, got.completion_tokens, got.finish_reason) == \
                (want.text, want.completion_tokens, want.finish_reason)
            # one chunk per generated token (an end-of-sequence token is one more, uncounted)
            assert len(chunks) in (got.completion_tokens, got.completion_tokens + 1)
            times = [t for _, t in chunks]
            assert started < times[0] and times == sorted(times)
            assert "".join(text for text, _ in chunks).startswith(got.text)  # stop strings cut
        assert wanted[0].text != wanted[1].text  # the adapter was active while streaming
        # streams at once with an adapter loaded run one after the other, each with its own
        # adapter state (peft's active adapter belongs to the model, not to a thread)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            got_texts = [g.text for _, g in pool.map(lambda r: _drain(engine.stream_one(r)),
                                                     [plain, adapted] * 2)]
        assert got_texts == [g.text for g in wanted] * 2
        samples = probe(engine, [plain, adapted, plain], concurrency=2, warmup=0)
        assert all(s.error is None and s.output_tokens for s in samples)
    finally:
        engine.close()
