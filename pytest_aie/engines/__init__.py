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
    "create_engine",
    "register_engine",
    "ENGINES",
]

# name -> (module path, class name); imported only when the engine is created.
ENGINES: dict[str, tuple[str, str]] = {
    "hf": ("pytest_aie.engines.hf", "HFEngine"),
    "openai": ("pytest_aie.engines.openai", "OpenAIEngine"),
    "scripted": ("pytest_aie.engines.scripted", "ScriptedEngine"),
}

_FACTORIES: dict[str, Callable[..., Engine]] = {}


def register_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Register a user engine: ``factory(model=..., **options)`` returns an :class:`Engine`."""
    _FACTORIES[name] = factory


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
    return getattr(importlib.import_module(module), cls)(**options)
