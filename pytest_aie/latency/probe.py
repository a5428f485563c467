"""The latency probe: an engine's latency on given requests, measured on their own.

A suite's outputs are generated in one whole-suite batch, where a request's latency is mostly
queueing behind the others, and may come from the generation cache, where there is no latency
at all. The probe does neither: it sends the requests straight to the engine (never through
:meth:`pytest_aie.run.model.Model.generate_many` and its cache), ``concurrency`` at a time (one by
default: a closed loop, each worker sending its next request when the last one finished, as
vLLM's serving benchmark does with ``--max-concurrency``), after ``warmup`` requests whose
figures are thrown away.

Per request, a :class:`LatencySample`, with the definitions of vLLM's serving benchmark:

* ``ttft_ms``: from sending the request to its first output chunk;
* ``e2e_ms``: from sending it to its end;
* ``tpot_ms``: time per output token after the first, ``(e2e - ttft) / (output_tokens - 1)``
  (undefined for a single token);
* ``itl_ms``: inter-token latencies, the gaps between consecutive streamed chunks;
* ``output_tokens``: the engine's count of generated tokens (a server's ``usage``, else the chunks);
* ``tokens_per_s``: ``output_tokens / e2e``.

How each engine is measured:

* an engine with ``stream_one(request)`` (``hf`` through transformers' ``TextIteratorStreamer``,
  one chunk per generated token; ``scripted`` with its simulated ``token_delay``): the probe
  reads the chunk times it yields and the :class:`Generation` it returns (start and end read
  from the engine's ``clock()`` when it has one: the scripted engine's ``virtual_clock``, whose
  figures are exact, else ``time.perf_counter``);
* ``openai``: a streamed call (:func:`pytest_aie.engines._openai_call.streamed`), one chunk per
  streamed piece of content;
* any other engine (``vllm``): ``engine.generate`` on one request at a time (``concurrency``
  requests per call when asked for more), with the engine's own per-request
  :class:`~pytest_aie.engines.base.Timings` (``ttft_s``, ``e2e_s``); no ITL. An engine that
  reports no time to first token cannot be measured: :class:`EngineError`.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

from pytest_aie.engines.base import Capability, Engine, Generation, Request
from pytest_aie.errors import EngineError, UsageError

__all__ = ["LatencySample", "measure_one", "probe", "probe_method"]

#: How the probe measures an engine: ``stream`` (the engine's stream_one), ``openai`` (a
#: streamed API call) or ``timings`` (the engine's own per-request timings).
Method = str


@dataclass
class LatencySample:
    """One measured request (milliseconds; ``None`` where undefined)."""

    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float | None
    output_tokens: int | None
    tokens_per_s: float | None
    itl_ms: list[float] = field(default_factory=list)
    method: str = "stream"
    error: str | None = None  # the request failed: no figures
    index: int = 0  # position among the probe's measured requests

    @classmethod
    def from_times(cls, start: float, chunks: Sequence[float], end: float,
                   output_tokens: int | None, method: Method = "stream") -> LatencySample:
        """From ``time.perf_counter()`` readings: the request's start, each chunk's arrival,
        its end."""
        ttft = (chunks[0] - start) * 1000 if chunks else None
        itl = [(b - a) * 1000 for a, b in zip(chunks, chunks[1:])]
        tokens = output_tokens if output_tokens is not None else len(chunks)
        return cls.from_figures(ttft, (end - start) * 1000, tokens, itl, method)

    @classmethod
    def from_figures(cls, ttft_ms: float | None, e2e_ms: float | None, tokens: int | None,
                     itl_ms: list[float] | None = None, method: Method = "stream",
                     tpot_ms: float | None = None) -> LatencySample:
        """TPOT and tokens per second from TTFT, end-to-end time and the token count
        (``tpot_ms`` is used only when those cannot give it)."""
        if ttft_ms is not None and e2e_ms is not None and tokens is not None and tokens > 1:
            tpot_ms = (e2e_ms - ttft_ms) / (tokens - 1)
        rate = tokens / (e2e_ms / 1000) if tokens and e2e_ms and e2e_ms > 0 else None
        return cls(ttft_ms=ttft_ms, tpot_ms=tpot_ms, e2e_ms=e2e_ms, output_tokens=tokens,
                   tokens_per_s=rate, itl_ms=list(itl_ms or []), method=method)

    @classmethod
    def failed(cls, error: str, method: Method) -> LatencySample:
        return cls(None, None, None, None, None, method=method, error=error)

    def value(self, metric: str) -> list[float]:
        """The sample's values of ``ttft``/``tpot``/``itl``/``e2e``/``tokens_per_s`` (a list:
        ITL has one per gap; the others one, or none when undefined)."""
        if metric == "itl":
            return [v for v in self.itl_ms if math.isfinite(v)]
        got = {"ttft": self.ttft_ms, "tpot": self.tpot_ms, "e2e": self.e2e_ms,
               "tokens_per_s": self.tokens_per_s}[metric]
        return [] if got is None or not math.isfinite(got) else [float(got)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LatencySample | None:
        """A sample as :meth:`to_dict` wrote it (a case record's ``details``, or one of its
        ``repeats``), or None when ``data`` holds no probe figures (another scorer's details,
        a field cut in the results log)."""
        if not isinstance(data, dict) or "e2e_ms" not in data or "ttft_ms" not in data:
            return None

        def ms(key: str) -> float | None:
            v = data.get(key)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
                and math.isfinite(v) else None

        itl = data.get("itl_ms")
        tokens = data.get("output_tokens")
        error = data.get("error")
        return cls(ttft_ms=ms("ttft_ms"), tpot_ms=ms("tpot_ms"), e2e_ms=ms("e2e_ms"),
                   output_tokens=tokens if isinstance(tokens, int) else None,
                   tokens_per_s=ms("tokens_per_s"),
                   itl_ms=[float(v) for v in itl if isinstance(v, (int, float))
                           and not isinstance(v, bool)] if isinstance(itl, list) else [],
                   method=str(data.get("method") or "stream"),
                   error=None if error is None else str(error))


# ---------------------------------------------------------------------------- one request

def probe_method(engine: Engine) -> Method:
    """How :func:`probe` measures ``engine`` (see the module docstring)."""
    if callable(getattr(engine, "stream_one", None)):
        return "stream"
    if engine.name == "openai" and hasattr(engine, "_client"):
        return "openai"
    if not engine.supports(Capability.TIMINGS):
        raise _cannot(engine)
    return "timings"


def _cannot(engine: Engine) -> EngineError:
    return EngineError(f"engine {engine.name!r} cannot measure latency: it neither streams "
                       "nor reports each request's time to first token",
                       fix="run latency suites on the hf, openai or vllm engine")


def _drain(stream: Iterator[tuple[str, float]]) -> tuple[list[float], Generation | None]:
    """Every chunk time of a ``stream_one`` generator, and the Generation it returns."""
    times: list[float] = []
    while True:
        try:
            _, at = next(stream)
        except StopIteration as stop:
            return times, stop.value
        times.append(at)


def _measure_stream(engine: Engine, request: Request) -> LatencySample:
    # an engine may keep its own clock (the scripted engine's virtual one); its chunk times
    # are on that clock, so the start and end must be too
    clock: Callable[[], float] = getattr(engine, "clock", None) or time.perf_counter
    start = clock()
    times, gen = _drain(engine.stream_one(request))  # type: ignore[attr-defined]
    end = clock()
    if gen is not None and gen.error is not None:
        return LatencySample.failed(gen.error, "stream")
    return LatencySample.from_times(start, times, end,
                                    None if gen is None else gen.completion_tokens)


def _measure_openai(engine: Any, request: Request) -> LatencySample:
    from pytest_aie.engines import _openai_call

    openai = engine._openai
    engine.check(request)
    times: list[float] = []
    start = time.perf_counter()
    try:
        gen = _openai_call.streamed(engine, replace(request, stream=True), chunk_times=times)
    except openai.APITimeoutError as exc:
        return LatencySample.failed(engine._describe(exc), "openai")
    except openai.APIConnectionError as exc:
        raise engine._unreachable(exc) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise engine._refused(exc) from None
    except openai.OpenAIError as exc:
        return LatencySample.failed(engine._describe(exc), "openai")
    end = time.perf_counter()
    return LatencySample.from_times(start, times, end, gen.completion_tokens, "openai")


def _from_timings(engine: Engine, gen: Generation) -> LatencySample:
    if gen.error is not None:
        return LatencySample.failed(gen.error, "timings")
    t = gen.timings
    if t.ttft_s is None or t.e2e_s is None:
        raise _cannot(engine)
    return LatencySample.from_figures(
        t.ttft_s * 1000, t.e2e_s * 1000, gen.completion_tokens, None, "timings",
        tpot_ms=None if t.tpot_s is None else t.tpot_s * 1000)


def _measure_timings(engine: Engine, requests: Sequence[Request]) -> list[LatencySample]:
    gens = engine.generate(list(requests))
    return [_from_timings(engine, g) for g in gens]


def measure_one(engine: Engine, request: Request) -> LatencySample:
    """Send one request to ``engine`` now and measure it (no cache, no batch)."""
    method = probe_method(engine)
    if method == "stream":
        return _measure_stream(engine, request)
    if method == "openai":
        return _measure_openai(engine, request)
    return _measure_timings(engine, [request])[0]


# ---------------------------------------------------------------------------- the probe

def _check_args(concurrency: int, warmup: int) -> None:
    for name, value, least in (("concurrency", concurrency, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"latency probe: {name}={value!r} must be a whole number >= {least}",
                             fix=f"write e.g. {name}={max(least, 1 if name == 'concurrency' else 2)}")


def probe(engine: Engine, requests: Sequence[Request], *, concurrency: int = 1,
          warmup: int = 2, progress: Callable[[str], None] | None = None) -> list[LatencySample]:
    """Measure ``engine`` on ``requests``: first ``warmup`` requests (the first ones of the
    list, cycled; one at a time; not measured), then each request once, ``concurrency`` in
    flight. One :class:`LatencySample` per request, in order (``index`` its position)."""
    _check_args(concurrency, warmup)
    requests = list(requests)
    if not requests:
        return []
    method = probe_method(engine)
    if progress is not None:
        progress(f"latency probe: {len(requests)} requests on {engine.name} ({method}), "
                 f"concurrency {concurrency}, {warmup} warm-up")
    for i in range(warmup):
        measure_one(engine, requests[i % len(requests)])
    if method == "timings":  # the engine times each request itself; c requests per call
        samples = [s for start in range(0, len(requests), concurrency)
                   for s in _measure_timings(engine, requests[start:start + concurrency])]
    elif concurrency == 1:
        samples = [measure_one(engine, r) for r in requests]
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="aie-probe") as pool:
            samples = list(pool.map(lambda r: measure_one(engine, r), requests))
    for i, s in enumerate(samples):
        s.index = i
    return samples
