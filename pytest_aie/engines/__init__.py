"""Engines: the registry that creates them, with optional dependencies checked first."""

from __future__ import annotations

from typing import Any, Callable

from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling, Timings
from pytest_aie.errors import UsageError

__all__ = [
    "Capability",
    "Engine",
    "Generation",
    "Request",
    "Sampling",
    "Timings",
    "check_engine_options",
    "create_engine",
    "register_engine",
    "ENGINES",
]

# name -> (module path, class name); imported only when the engine is created.
ENGINES: dict[str, tuple[str, str]] = {
    "hf": ("pytest_aie.engines.hf", "HFEngine"),
    "openai": ("pytest_aie.engines.openai", "OpenAIEngine"),
    "scripted": ("pytest_aie.engines.scripted", "ScriptedEngine"),
    "vllm": ("pytest_aie.engines.vllm", "VLLMEngine"),
}

_FACTORIES: dict[str, Callable[..., Engine]] = {}


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Register a user engine: ``factory(model=..., **options)`` returns an :class:`Engine`."""
    _FACTORIES[name] = factory


def check_engine_options(name: str, keys: list[str]) -> None:
    """Extra engine options (``--aie-engine-options``) must be keyword arguments the engine's
    constructor names: a typo is an error, not silently ignored. Registered engine factories
    (user engines) take whatever they take."""
    import importlib
    import inspect

    if not keys or name in _FACTORIES or name not in ENGINES:
        return
    module, cls = ENGINES[name]
    params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    known = [p for p, v in params.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)
             and p != "model"]
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise UsageError(f"--aie-engine-options: engine {name!r} has no option {unknown[0]!r}",
                         fix=f"use one of {', '.join(known)}")


def create_engine(name: str, **options: Any) -> Engine:
    """Create engine ``name``; options are passed to its constructor."""
    if name in _FACTORIES:
        return _FACTORIES[name](**options)
    if name not in ENGINES:
        known = sorted(set(ENGINES) | set(_FACTORIES))
        raise UsageError(
            f"unknown engine {name!r}",
            fix=f"use --aie-engine with one of {', '.join(known)}",
        )
    import importlib

    module, cls = ENGINES[name]
    engine: Engine = getattr(importlib.import_module(module), cls)(**options)
    return engine
