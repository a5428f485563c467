"""Real components a test needs (a browser, ``transformers serve``, a model, an optional package):
skip when one is missing on a developer's machine, FAIL when it is missing in CI.

A skipped test is a green test. In CI (``CI`` set to ``true``, ``1`` or ``yes``, as GitHub,
GitLab and most runners do) every component ``make test`` installs must be there, so a test that
cannot start its component fails with the reason instead of skipping it away. Use :func:`need`
wherever a test would call ``pytest.skip`` for a missing component, and :func:`need_module`
instead of ``pytest.importorskip``.

:func:`pytest_runtest_makereport` is a safety net, registered by ``tests/conftest.py``: under CI
it turns any skip that did not come through :func:`need` (a bare ``pytest.skip`` or
``importorskip``) into a failure too.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Iterator, NoReturn

import pytest

__all__ = ["in_ci", "need", "need_module", "pytest_runtest_makereport"]

_FALSE = ("", "0", "false", "no", "off")


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
        how = install or "pip install -e '.[dev]' (or `make install`)"
        need(component or f"Python package {name.split('.')[0]}", f"cannot import {name} ({exc}); {how}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Under CI, a skip that bypassed :func:`need` is reported as a failure with its reason."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    where, line, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, str(report.longrepr))
    report.outcome = "failed"
    report.longrepr = (f"{where}:{line}: skipped under CI={os.environ.get('CI')}, which must not skip: "
                       f"{reason}. Install what it needs (`make test` does).")
