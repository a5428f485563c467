"""Drive the system's headless Chromium with Python playwright, for tests of the HTML report.

Never runs ``playwright install``: it uses the Chromium the OS ships (Debian: ``apt-get install
chromium``, which ``make browser`` does). :func:`chromium_or_skip` skips the calling test with
a clear reason when playwright or Chromium is missing or does not start, so the suite stays green
on a developer's machine without a browser; under ``CI=true`` it fails instead
(:func:`components.need`).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from components import need  # tests/ is on sys.path (tests/conftest.py is imported from it)

__all__ = ["CHROMIUM_ARGS", "PageLog", "chromium_or_skip", "find_chromium", "open_page"]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")


def find_chromium() -> str | None:
    """The Chromium executable: ``$AIE_CHROMIUM`` if set, else the first system one found."""
    override = os.environ.get("AIE_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_or_skip() -> Iterator[Any]:
    """Yield a launched playwright ``Browser`` (system Chromium, headless); skip if unavailable
    (fail under CI)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("browser", "the Python package playwright is not installed (pip install -e '.[dev]'); "
             "never run `playwright install`, the system Chromium is used")
    executable = find_chromium()
    if executable is None:
        need("browser", "no system Chromium found (`make browser`, or Debian: apt-get install -y "
             "chromium), or set AIE_CHROMIUM=/path/to/chromium")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, headless=True,
                                         args=CHROMIUM_ARGS, timeout=60_000)
        except PlaywrightError as exc:
            need("browser", f"could not start Chromium at {executable}: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page did besides rendering: console errors, uncaught errors, requests, dialogs."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.page_errors


@contextmanager
def open_page(browser: Any, path: Path, *, width: int = 1400, height: int = 900) -> Iterator[tuple[Any, PageLog]]:
    """Open ``path`` via file:// in a fresh context; yield ``(page, log)``.

    Every request is recorded, and any that is not ``file:`` or ``data:`` is aborted, so a report
    that tried to reach the network shows up in ``log.requests`` without leaving the machine.
    Dialogs (``alert`` and friends) are recorded and dismissed.
    """
    log = PageLog()
    context = browser.new_context(viewport={"width": width, "height": height}, java_script_enabled=True)
    try:
        def route(r: Any) -> None:
            if r.request.url.startswith(("file:", "data:")):
                r.continue_()
            else:
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: log.page_errors.append(str(e)))
        page.on("request", lambda r: log.requests.append(r.url))

        def on_dialog(d: Any) -> None:
            log.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", on_dialog)
        page.goto(path.resolve().as_uri(), wait_until="load")
        yield page, log
    finally:
        context.close()
