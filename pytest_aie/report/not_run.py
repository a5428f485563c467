"""The report of a run that could not start (an engine that cannot be created or reached, a
dataset that cannot be loaded: exit 10 with no case evaluated).

Such a run has nothing to report, but leaving the previous run's report in place would show
an earlier green result as if it were this run's. So the previous report is moved aside to
``<name>.previous.html`` (once: a second run that cannot start replaces its own page, and the
last real report stays where it was moved) and a short page takes its place: this run's start time and command,
the problems that stopped it (one line each, credentials scrubbed), and where the previous
report went. The terminal says so in one line.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Sequence

from pytest_aie._util.files import write_atomic
from pytest_aie._util.redact import scrub_argv, scrub_text

__all__ = ["previous_path", "write_not_started"]


_MARK = "<!-- pytest-aie: a run that could not start -->"


def _is_stub(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return _MARK.encode() in handle.read(200)
    except OSError:
        return False


def previous_path(report: Path) -> Path:
    return report.with_name(f"{report.stem}.previous{report.suffix or '.html'}")


def write_not_started(report: str | os.PathLike[str], header: dict[str, Any],
                      problems: Sequence[str], exit_status: int) -> str:
    """Replace ``report`` with a page saying the run could not start (the old report, if
    any, moved to :func:`previous_path`); returns the line for the terminal."""
    path = Path(report)
    previous = previous_path(path)
    if path.is_file() and not _is_stub(path):  # a stub of an earlier failed start: replaced
        os.replace(path, previous)
    moved = previous if previous.is_file() else None
    command = " ".join(str(a) for a in scrub_argv(header.get("argv") or []))
    items = "\n".join(f"<li><code>{html.escape(scrub_text(p))}</code></li>" for p in problems)
    earlier = (f'<p>The previous run\'s report was moved to <a href="{html.escape(moved.name)}">'
               f"{html.escape(moved.name)}</a>: it is not this run's result.</p>" if moved else "")
    page = f"""<!DOCTYPE html>{_MARK}
<html lang="en"><head><meta charset="utf-8">
<title>pytest-aie report: the run could not start (exit {exit_status})</title></head>
<body>
<h1>pytest-aie: this run could not start (exit {exit_status})</h1>
<p>Started {html.escape(str(header.get("started_at") or "?"))}:
<code>{html.escape(command)}</code>. No case was evaluated, so there are no results.</p>
<h2>What stopped it</h2>
<ul>
{items}
</ul>
{earlier}
</body></html>
"""
    write_atomic(path, page)
    return (f"pytest-aie report: {path} says this run could not start"
            + (f" (the previous run's report moved to {moved})" if moved else ""))
