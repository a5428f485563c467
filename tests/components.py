"""Real components a test needs (a browser, ``transformers serve``, a model, an optional package):
skip when one is missing on a developer's machine, FAIL when it is missing in CI.

A skipped test is a green test. In CI (``CI`` set to ``true``, ``1`` or ``yes``, as GitHub,
GitLab and most runners do) every component ``make test`` installs must be there, so a test that
cannot start its component fails with the reason instead of skipping it away. Use :func:`need`
wherever a test would call ``pytest.skip`` for a missing component, and :func:`need_module`
instead of ``pytest.importorskip``.

:func:`pytest_runtest_makereport` is a safety net, registered by ``tests/conftest.py``: under CI
it turns any skip that did not come through :func:`need` (a bare ``pytest.skip`` or
``importorskip``) into a failure too. :func:`pytest_make_collect_report` does the same for skips
at collection (a module-level ``importorskip``), which never reach a test's report.

A skip that is right on some machines and wrong on none (a check of the no-GPU path on a machine
that has a GPU) is declared with :func:`not_on_this_machine`: it skips in CI too, with its reason
in the skip summary. It is for a test whose subject is absent on this machine by design, never
for a component ``make test`` installs.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Iterator, NoReturn

import pytest

__all__ = ["MACHINE_SKIP", "in_ci", "need", "need_module", "not_on_this_machine",
           "pytest_make_collect_report", "pytest_runtest_makereport"]

_FALSE = ("", "0", "false", "no", "off")
#: How a skip declared by :func:`not_on_this_machine` begins (the hooks let these through).
MACHINE_SKIP = "not on this machine: "


def in_ci() -> bool:
    """Whether the tests run in CI: ``$CI`` is set to anything but empty/0/false/no/off."""
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def need(component: str, reason: str, *, detail: str = "") -> NoReturn:
    """The test cannot run because ``component`` is unavailable (``reason``, one line, says why
    and how to get it): skip it, or fail it under CI, where every component must be installed.
    ``detail`` (a log's tail, say) is shown only with the failure."""
    message = f"{component} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} [CI={os.environ.get('CI')}: a missing component fails in CI "
                    f"instead of skipping; `make test` installs it]{chr(10) + detail if detail else ''}",
                    pytrace=False)
    pytest.skip(message, allow_module_level=True)


def need_module(name: str, component: str | None = None, *, install: str | None = None) -> ModuleType:
    """``pytest.importorskip`` that fails under CI: import and return module ``name``, or
    :func:`need` it (``install``: how to get it, default ``pip install -e '.[dev]'``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        problem = str(exc)  # need() below, outside the handler: one line, no chained traceback
    how = install or "pip install -e '.[dev]' (or `make install`)"
    need(component or f"Python package {name.split('.')[0]}", f"cannot import {name} ({problem}); {how}")


def not_on_this_machine(reason: str) -> NoReturn:
    """Skip, in CI as well: what the test checks cannot happen on this machine (``reason``
    says why, e.g. "this machine has nvidia-smi", for a test of the no-GPU path)."""
    pytest.skip(MACHINE_SKIP + reason, allow_module_level=True)


def _skip_reason(longrepr: Any) -> tuple[str, int, str]:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[0]), int(longrepr[1] or 0), str(longrepr[2])
    return "", 0, str(longrepr)


def _must_not_skip(where: str, line: int, reason: str) -> str:
    return (f"{where}:{line}: skipped under CI={os.environ.get('CI')}, which must not skip: "
            f"{reason}. Install what it needs (`make test` does).")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Under CI, a skip that bypassed :func:`need` is reported as a failure with its reason."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    where, line, reason = _skip_reason(report.longrepr)
    if MACHINE_SKIP in reason:
        return
    report.outcome = "failed"
    report.longrepr = _must_not_skip(where, line, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under CI, a module skipped while it was collected (a module-level ``importorskip`` or
    ``pytest.skip(allow_module_level=True)``) is a collection error with its reason: its tests
    would otherwise vanish from the run without a line."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()):
        return
    where, line, reason = _skip_reason(report.longrepr)
    if MACHINE_SKIP in reason:
        return
    report.outcome = "failed"
    report.longrepr = _must_not_skip(where or str(collector.path), line, reason)
