"""The model handle that fixtures give tests: an engine, created lazily, behind the cache.

``model.generate("What is 2+2?", max_tokens=8)`` returns a
:class:`~pytest_aie.engines.base.Generation`; ``model.generate_many(requests)`` sends a whole
batch. Every call goes through the generation cache, and fresh results are written back.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence

from pytest_aie.engines import create_engine
from pytest_aie.engines.base import Engine, Generation, Request, Sampling
from pytest_aie.run.cache import GenerationCache, engine_key

__all__ = ["Model", "Models", "Progress", "stderr_progress"]

Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    sys.stderr.write(f"pytest-aie: {message}\n")
    sys.stderr.flush()


class Model:
    """A named model: engine name, model reference and engine options."""

    def __init__(self, name: str, engine: str, model: str, *, options: dict[str, Any] | None = None,
                 defaults: Sampling = Sampling(), batch_size: int = 0,
                 stores: Sequence[GenerationCache] = (), progress: Progress = stderr_progress,
                 engine_obj: Engine | None = None, adapter: str | None = None,
                 owns_engine: bool = True) -> None:
        self.name = name
        self.engine_name = engine
        self.model_ref = model
        self.options = dict(options or {})
        self.defaults = defaults
        self.batch_size = batch_size
        self.stores = list(stores)
        self.progress = progress
        self._engine = engine_obj
        self.adapter = adapter  # applied to every request without one (LoRA candidate)
        self.owns_engine = owns_engine
        self._key: str | None = None
        self.generated = 0  # requests sent to the engine (cache misses)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, engine={self.engine_name!r}, model={self.model_ref or 'embedded'!r})"

    @property
    def engine(self) -> Engine:
        """The engine, created on first use (loading a model can take seconds)."""
        if self._engine is None:
            started = time.perf_counter()
            self._engine = create_engine(self.engine_name, model=self.model_ref or None,
                                         **self.options)
            took = time.perf_counter() - started
            if took > 2:
                self.progress(f"{self.engine_name} engine created in {took:.1f}s")
        return self._engine

    @property
    def identity(self) -> dict[str, Any]:
        return self.engine.identity()

    @property
    def key(self) -> str:
        if self._key is None:  # the engine's identity, plus any extra engine options
            extra = {k: v for k, v in self.options.items()
                     if k not in ("device", "dtype", "base_url", "concurrency")}
            self._key = engine_key({**self.identity, **({"options": extra} if extra else {})})
        return self._key

    def request(self, prompt: str | Sequence[dict[str, str]], *, chat: bool = True,
                adapter: str | None = None, **sampling: Any) -> Request:
        """Build a request with this model's default sampling, overridden by ``sampling``."""
        params = replace(self.defaults, **sampling) if sampling else self.defaults
        if isinstance(prompt, str):
            if chat:
                return Request(messages=({"role": "user", "content": prompt},), sampling=params,
                               adapter=adapter)
            return Request(prompt=prompt, sampling=params, adapter=adapter)
        return Request(messages=tuple(prompt), sampling=params, adapter=adapter)

    def generate(self, prompt: str | Sequence[dict[str, str]], **kwargs: Any) -> Generation:
        """Generate one completion (through the cache)."""
        return self.generate_many([self.request(prompt, **kwargs)])[0]

    def generate_many(self, requests: Sequence[Request], *, label: str = "") -> list[Generation]:
        """Generate a batch: cached results first, the rest in engine batches. Identical
        requests (several suites over one dataset) are generated once."""
        if self.adapter is not None:
            requests = [r if r.adapter else replace(r, adapter=self.adapter) for r in requests]
        unique: dict[str, int] = {}
        index = [unique.setdefault(r.key(), len(unique)) for r in requests]
        if len(unique) < len(requests):
            firsts: dict[int, Request] = {}
            for i, u in enumerate(index):
                firsts.setdefault(u, requests[i])
            once = self.generate_many([firsts[u] for u in range(len(unique))], label=label)
            return [once[u] for u in index]
        for req in requests:
            self.engine.check(req)
        results: list[Generation | None] = [None] * len(requests)
        missing = list(range(len(requests)))
        for store in self.stores:
            if not missing:
                break
            found = store.get_many(self.key, [requests[i] for i in missing])
            for i, gen in zip(list(missing), found):
                if gen is not None:
                    results[i] = gen
            missing = [i for i in missing if results[i] is None]
        if missing:
            size = self.batch_size or self.engine.preferred_batch_size
            total = len(missing)
            if total > 1:
                self.progress(f"generating {total} of {len(requests)} requests on {self.name} "
                              f"({self.engine_name}) {self.engine.describe_batches(total, size)}"
                              + (f" for {label}" if label else "")
                              + (f"; {len(requests) - total} from cache" if total < len(requests) else ""))
            started = time.perf_counter()
            done = 0
            for start in range(0, total, size):
                idx = missing[start:start + size]
                batch = [requests[i] for i in idx]
                gens = self.engine.generate(batch)
                if len(gens) != len(batch):
                    raise RuntimeError(f"engine {self.engine_name!r} returned {len(gens)} results "
                                       f"for {len(batch)} requests")
                for store in self.stores:
                    store.put_many(self.key, batch, gens)
                for i, gen in zip(idx, gens):
                    results[i] = gen
                done += len(idx)
                self.generated += len(idx)
                if total > size:
                    self.progress(f"  {done}/{total} generated "
                                  f"({time.perf_counter() - started:.1f}s)")
        return [r for r in results if r is not None]

    def close(self) -> None:
        if self._engine is not None and self.owns_engine:
            self._engine.close()
        self._engine = None


class Models:
    """Named models (the ``models`` fixture): ``models["base"]``, ``"default"`` in models."""

    def __init__(self, get: Callable[[str], Model], names: Callable[[], list[str]]) -> None:
        self._get = get
        self._names = names

    def __getitem__(self, name: str) -> Model:
        return self._get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()
