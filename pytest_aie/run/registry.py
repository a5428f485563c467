"""The run's models by name: the session's model, ``--aie-models`` entries, the finetune
candidate, the judge, and the user's targets, each a :class:`~pytest_aie.run.model.Model` behind
the run store and the generation cache, created on first use.

Names are what suites, records and comparisons use: ``default`` (``--aie-engine`` /
``--aie-model``), ``candidate`` (``--aie-candidate`` or ``--aie-candidate-adapter``),
``judge`` (``--aie-judge``, the embedded model by default), any ``--aie-models`` name,
``judge:[ENGINE:]MODEL`` for a marker's own ``judge_model=``, and ``target:module.function``
for a suite's ``target=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pytest_aie.engines.base import Sampling
from pytest_aie.errors import UsageError
from pytest_aie.run.cache import GenerationCache
from pytest_aie.run.model import Model, Progress, stderr_progress
from pytest_aie.settings import Settings

if TYPE_CHECKING:
    from pytest_aie.suite.spec import SuiteSpec

__all__ = ["ModelRegistry"]


@dataclass
class ModelRegistry:
    settings: Settings
    run_dir: Path | None = None  # the run store shared by one run's xdist workers
    progress: Progress = stderr_progress
    #: the suite whose ``target=`` a ``target:`` name stands for
    find_target: Callable[[str], SuiteSpec] | None = None
    _models: dict[str, Model] = field(default_factory=dict)
    _stores: list[GenerationCache] | None = None

    @property
    def defaults(self) -> Sampling:
        s = self.settings
        return Sampling(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed)

    def stores(self) -> list[GenerationCache]:
        """The run store (first: every worker of the run reads what another generated), then
        the persistent cache."""
        if self._stores is None:
            stores = []
            if self.run_dir is not None:
                stores.append(GenerationCache(self.run_dir / "run.sqlite", "on", same_run=True))
            if self.settings.cache != "off":
                stores.append(GenerationCache(Path(self.settings.cache_dir) / "generations.sqlite",
                                              self.settings.cache))
            self._stores = stores
        return self._stores

    def names(self) -> list[str]:
        extra = ["candidate"] if self.settings.has_candidate else []
        return ["default", *extra, *self.settings.models]

    def known(self, name: str) -> bool:
        return name in self.names() or name in ("judge", "test-body") or \
            name.startswith(("judge:", "target:"))

    def check(self, name: str) -> None:
        """A suite's ``models=`` entry that names no model: one line with the fix."""
        if not self.known(name):
            raise UsageError(f"no model named {name!r}",
                             fix=f"define it with --aie-models {name}=ENGINE:MODEL "
                                 f"(known: {', '.join(self.names())})")

    def get(self, name: str | None = None) -> Model:
        """The named model (``None`` or ``"default"``: the session's model)."""
        name = name or "default"
        if name.startswith("judge:") and name[6:] in self.names():
            return self.get(name[6:])  # a judge that is one of the run's models: one engine
        if name not in self._models:
            self._models[name] = self._create(name)
        return self._models[name]

    def _create(self, name: str) -> Model:
        s = self.settings
        if name.startswith("target:"):
            return self._target_model(name)
        if name == "candidate" and s.candidate_adapter:
            return self._adapter_model(s.candidate_adapter)
        if name == "default":
            engine, ref = s.engine, s.model
        elif name == "candidate" and s.candidate:
            engine, ref = s.candidate
        elif name in s.models:
            engine, ref = s.models[name]
        elif name == "judge" or name.startswith("judge:"):
            engine, ref = s.judge_model(name.partition(":")[2] or None)
        else:
            self.check(name)
            raise AssertionError(name)  # pragma: no cover - check() raised
        from pytest_aie.engines import check_engine_options

        same_engine = engine == s.engine
        options: dict[str, Any] = {"device": s.device, "dtype": s.dtype,
                                   "concurrency": s.concurrency}
        if same_engine:  # --aie-base-url and --aie-engine-options are the main engine's
            check_engine_options(engine, list(s.engine_options))
            options.update(base_url=s.base_url or None, **s.engine_options)
        elif engine == "openai":
            options["base_url"] = None
        return Model(name, engine, ref, options=options, defaults=self.defaults,
                     batch_size=s.batch_size, stores=self.stores(), progress=self.progress)

    def _target_model(self, name: str) -> Model:
        """The user's application of a ``target=`` suite, behind the cache like a model."""
        from pytest_aie.suite.target import TargetEngine

        if self.find_target is None:  # pragma: no cover - the session always sets it
            raise UsageError(f"no suite has the target {name!r}", fix="pass target= on a dataset")
        spec = self.find_target(name)
        opts = spec.target_options
        engine = TargetEngine(spec.target, batch=opts.get("target_batch", False),
                              concurrency=opts.get("target_concurrency", 8),
                              ident=opts.get("target_id"), model=lambda: self.get("default"))
        stores = self.stores() if opts.get("target_cache", True) else \
            [st for st in self.stores() if st.same_run]
        return Model(name, "target", engine.label, engine_obj=engine, defaults=self.defaults,
                     stores=stores, progress=self.progress)

    def _adapter_model(self, path: str) -> Model:
        """The candidate "base + LoRA adapter": the base model's engine, adapter on every
        request (pinned to the adapter's content hash, so the cache sees retraining)."""
        from pytest_aie.engines.base import Capability

        base = self.get("default")
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

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        for store in self._stores or ():
            store.close()
