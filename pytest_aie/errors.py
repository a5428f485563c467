"""Errors the harness raises, and the exit codes a CI job can tell apart.

Every error carries the *problem* and the *fix*, and prints as one line::

    pytest-aie: engine 'hf' cannot load model 'nope': no such folder or model id. Fix: pass --aie-model with ...

Exit codes (they compose with pytest's own 0-5):

====  ==================================================================================
0     every test and eval passed
1     tests or evals failed (pytest's own code)
2-5   pytest's own: interrupted, internal error, usage error, no tests collected
10    the harness could not run: unknown engine, missing model or dependency, unreachable
      server, bad dataset, bad marker or option
11    regression against a stored baseline (statistical gates)
====  ==================================================================================
"""

from __future__ import annotations

from types import ModuleType

__all__ = [
    "EXIT_HARNESS_ERROR",
    "EXIT_REGRESSION",
    "AieError",
    "DatasetError",
    "EngineError",
    "MissingDependency",
    "UsageError",
    "whole_number",
]

EXIT_HARNESS_ERROR = 10
EXIT_REGRESSION = 11


class AieError(Exception):
    """Base class: a problem the user can fix, with the fix."""

    exit_code = EXIT_HARNESS_ERROR

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.problem}. Fix: {self.fix}" if self.fix else self.problem

    def line(self) -> str:
        return f"pytest-aie: {self}"


class UsageError(AieError):
    """A bad option, ini value or marker argument."""


class DatasetError(AieError):
    """A dataset file that cannot be loaded; names the file and line."""


class EngineError(AieError):
    """An engine that cannot be created or cannot serve a request."""


class MissingDependency(EngineError):
    """An optional dependency is not installed; names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {module!r}, which is not installed",
            fix=f"pip install 'pytest-aie[{extra}]'",
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise :class:`MissingDependency`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module exists but something inside it failed: show the real error
        raise MissingDependency(module, extra, purpose) from exc


def whole_number(name: str, value: object, *, least: int = 1, example: int | None = None,
                 where: str = "") -> int:
    """``value`` when it is a whole number (an ``int``, not a ``bool``) of at least ``least``;
    else one :class:`UsageError` naming the option (``where``: what it belongs to, a prefix of
    the message) with an example value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        shown = example if example is not None else max(least, 1) * 2
        raise UsageError(f"{where}{name}={value!r} must be a whole number >= {least}",
                         fix=f"write e.g. {name}={shown}")
    return value
