"""Your own application as the thing under test: a *target* callable instead of a bare model.

``@pytest.mark.dataset("cases.jsonl", target=answer)`` sends every case to ``answer`` and hands
what it returns to the suite's eval markers, gates, results and report, exactly as a model's
generation would be. The target is wrapped in an :class:`~pytest_aie.engines.base.Engine`, so it
gets the harness's whole-suite pass, de-duplication, generation cache, progress lines and the
xdist run store for free.

A target is any of:

* ``def answer(case) -> str``: one case at a time, run ``target_concurrency`` at once in
  threads (default 8);
* ``async def answer(case) -> str``: run on one event loop with at most ``target_concurrency``
  in flight;
* ``def answer(cases) -> list[str]`` with ``target_batch=True``: the whole suite in one call
  (``target_batch=16``: in calls of 16 cases).

* an object with ``run_cases(cases, model) -> list[Generation]``: a *batch target* that the
  harness hands the whole suite (a retriever's ``as_target()``, an
  :class:`~pytest_aie.agent.Agent`); its ``target_identity(model)`` names what its outputs
  depend on, for the cache, and its ``target_label`` its name. A pytest-aie error it raises
  (:class:`~pytest_aie.errors.AieError`: a configuration problem) is one line for the suite,
  not an error on each case; an optional ``check_suite(cases, scorers, options)`` is called
  when the suite is built, before anything runs.

A parameter named ``model`` receives the session's model (``model.generate(...)``), so a
target can be "retrieve, then ask the model". It may return a ``str`` or a
:class:`~pytest_aie.engines.base.Generation`; an exception becomes that case's error (the case is
unmeasured, and the run's exit status says the target failed on it).

**Caching.** Outputs are cached like generations, keyed by the case's fields and the target's
identity: its name and a digest of its code (``target_id="rag-v3"`` names a version yourself,
for example when the target's behaviour depends on data or a model the code does not show).
``target_cache=False`` never reads or writes the persistent cache.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling, Timings
from pytest_aie.errors import AieError, UsageError

__all__ = ["TargetEngine", "target_label", "target_request"]


def target_label(fn: Callable[..., Any]) -> str:
    """The target's name in results and reports: ``module.qualname``."""
    label = getattr(fn, "target_label", None)
    if isinstance(label, str):
        return label
    module = getattr(fn, "__module__", "") or ""
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module.rsplit('.', 1)[-1]}.{name}" if module else name


def target_request(fields: dict[str, Any], sampling: Sampling) -> Request:
    """The request that stands for one case of a target suite: the case's fields, so that the
    cache and de-duplication key on everything the target can read."""
    text = json.dumps(fields, sort_keys=True, default=str, ensure_ascii=False)
    return Request(prompt=text, sampling=sampling)


class TargetEngine(Engine):
    """Runs a user's callable on cases; see the module docstring."""

    name = "target"
    capabilities = frozenset({Capability.PROMPT, Capability.CHAT, Capability.TIMINGS})

    def __init__(self, fn: Callable[..., Any], *, batch: bool | int = False,
                 concurrency: int = 8, ident: str | None = None,
                 model: Callable[[], Any] | None = None) -> None:
        self._runner = getattr(fn, "run_cases", None)
        if not callable(fn) and self._runner is None:
            raise UsageError(f"target={fn!r} is not callable",
                             fix="pass a function: target=my_app (not target=my_app())")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"target_concurrency={concurrency!r} must be a whole number >= 1",
                             fix="write e.g. target_concurrency=8")
        self.fn = fn
        self.batch = batch
        self.concurrency = concurrency
        self.label = target_label(fn)
        self.ident = ident
        self._get_model = model
        self._is_async = self._runner is None and inspect.iscoroutinefunction(fn)
        params = inspect.signature(self._runner or fn).parameters
        self._wants_model = "model" in params
        self._cases: dict[str, Any] = {}
        self.preferred_batch_size = 4096
        if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
            self.micro_batch = batch

    def identity(self) -> dict[str, Any]:
        from pytest_aie._util.digest import code_digest

        if self._runner is not None and self.ident is None:
            model = self._get_model() if self._get_model is not None else None
            version = getattr(self.fn, "target_identity")(model)  # noqa: B009 - a protocol
            return {"engine": self.name, "model": self.label, "version": version}
        ident = {"engine": self.name, "model": self.label,
                 "version": self.ident or code_digest(self.fn)}
        if self._wants_model and self._get_model is not None:
            # a target that calls the session's model: its outputs change with that model
            ident["uses"] = self._get_model().key
        return ident

    def bind(self, cases: dict[str, Any]) -> None:
        """Which case each request stands for (request key -> case)."""
        self._cases.update(cases)

    def describe_batches(self, n: int, call_size: int) -> str:
        if self.batch or self._runner is not None:
            return super().describe_batches(n, call_size)
        return f"with up to {min(n, self.concurrency)} cases in flight"

    # ------------------------------------------------------------------ running the target

    def _kwargs(self) -> dict[str, Any]:
        if self._wants_model and self._get_model is not None:
            return {"model": self._get_model()}
        return {}

    def _wrap(self, out: Any, took: float, batch_size: int) -> Generation:
        if not isinstance(out, (str, Generation)) and callable(getattr(out, "to_generation", None)):
            out = out.to_generation()  # an agent's Trajectory (pytest_aie.agent.Recorder.finish)
        if isinstance(out, Generation):
            return out
        if not isinstance(out, str):
            return self._failed(f"target returned {type(out).__name__}, not text "
                                "(return a str, a Generation or an agent's Trajectory)")
        return Generation(text=out, finish_reason="stop", engine=self.name, model=self.label,
                          timings=Timings(e2e_s=took, batch_size=batch_size))

    def _failed(self, message: str) -> Generation:
        return Generation(text="", finish_reason="error", engine=self.name, model=self.label,
                          error=message)

    def _one(self, case: Any) -> Generation:
        started = time.perf_counter()
        try:
            out = self.fn(case, **self._kwargs())
        except Exception as exc:  # noqa: BLE001 - a failing case must not lose the suite
            return self._failed(f"target raised {type(exc).__name__}: {exc}")
        return self._wrap(out, time.perf_counter() - started, 1)

    async def _all_async(self, cases: list[Any]) -> list[Generation]:
        gate = asyncio.Semaphore(self.concurrency)
        kwargs = self._kwargs()

        async def one(case: Any) -> Generation:
            async with gate:
                started = time.perf_counter()
                try:
                    out = await self.fn(case, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    return self._failed(f"target raised {type(exc).__name__}: {exc}")
                return self._wrap(out, time.perf_counter() - started, 1)

        return list(await asyncio.gather(*(one(c) for c in cases)))

    def _batch_call(self, cases: list[Any]) -> list[Generation]:
        started = time.perf_counter()
        try:
            outs = list(self.fn(cases, **self._kwargs()))
        except Exception as exc:  # noqa: BLE001
            return [self._failed(f"target raised {type(exc).__name__}: {exc}")] * len(cases)
        took = time.perf_counter() - started
        if len(outs) != len(cases):
            return [self._failed(f"batch target returned {len(outs)} outputs for {len(cases)} "
                                 "cases")] * len(cases)
        return [self._wrap(o, took, len(cases)) for o in outs]

    def _run_cases(self, cases: list[Any]) -> list[Generation]:
        started = time.perf_counter()
        try:
            outs = list(self._runner(cases, **self._kwargs()))  # type: ignore[misc]
        except AieError:
            raise  # a configuration error: one line for the suite, not one per case and metric
        except Exception as exc:  # noqa: BLE001 - the suite's cases become errors, not a crash
            return [self._failed(f"{self.label} raised {type(exc).__name__}: {exc}")] * len(cases)
        if len(outs) != len(cases):
            return [self._failed(f"{self.label} returned {len(outs)} outputs for {len(cases)} "
                                 "cases")] * len(cases)
        return [self._wrap(o, time.perf_counter() - started, len(cases)) for o in outs]

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        missing = [r for r in requests if r.key() not in self._cases]
        if missing:
            raise UsageError("a target was asked for a request that is no case of its suite",
                             fix="targets run only through @pytest.mark.dataset(target=...)")
        cases = [self._cases[r.key()] for r in requests]
        if self._runner is not None:
            return self._run_cases(cases)
        if self.batch:
            size = self.micro_batch or len(cases)
            out: list[Generation] = []
            for start in range(0, len(cases), size):
                out.extend(self._batch_call(cases[start:start + size]))
            return out
        if self._is_async:
            return asyncio.run(self._all_async(cases))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(cases)) or 1,
                                thread_name_prefix="aie-target") as pool:
            return list(pool.map(self._one, cases))
