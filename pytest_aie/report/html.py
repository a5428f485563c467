"""The HTML report: one self-contained file rendered from the results log.

The results log is JSONL: a run header (``{"type": "run", ...}``) on the first line, then one
``{"type": "case", ...}`` record per scored case. :func:`load_results` reads it back, tolerating a
truncated last line (a crash mid-write); :func:`render_html` writes the report atomically.

Report layout (modules of this package):

* :mod:`.sections` and :mod:`.charts`: the run header (with the exit status and its notes), the
  suite table (each metric's interval drawn against its threshold, the verdict, the change
  against the baseline or the other model), the comparisons, the baseline diff, per-tag
  breakdowns, score and latency histograms and Elo leaderboards, rendered on the server
  (jinja2, autoescape on; charts are inline SVG with their numbers as text), so they show
  without JavaScript;
* :mod:`.blob`: the case data, embedded once as a compact JSON blob in
  ``<script type="application/json">`` (columnar, compressed), which a small vanilla script
  renders one page at a time, with filters and a drill-down per case. Model output is
  untrusted: the script only ever writes it with ``textContent``.

Every string shown (case data and run metadata) is made visible first
(:func:`pytest_aie._util.text.visible`): control, bidi-override, zero-width characters and lone
surrogates appear as ``<U+202E>``, so an output cannot reorder or hide text in the page. Long
values are cut (prompt, output, expected, reference, reason: ``max_text_chars``; names and ids:
1,000 characters). A case's status is ``passed``, ``failed``, ``scored`` (a score without a
per-case threshold: neither a pass nor a failure) or ``unmeasured``; pass rates count passes
and failures only, and a suite of scored cases shows its mean score.

The page makes no network requests: CSS and JS are inlined, and a Content-Security-Policy
``<meta>`` allows only the inlined script (by hash), so even an injected inline event handler
could not run.

Command line: ``python -m pytest_aie.report RESULTS.jsonl [REPORT.html]``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_aie._util.files import write_atomic
from pytest_aie._util.redact import scrub
from pytest_aie.errors import AieError
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.report import sections
from pytest_aie.report.blob import case_blob
from pytest_aie.report.shown import MAX_NAME_CHARS, name, script_json
from pytest_aie.results.log import load_results
from pytest_aie.results.records import (
    FORMAT_VERSION,
    ResultsError,
    ResultsWarning,
    SuiteRow,
    basic_summary,
    status_of,
)

if TYPE_CHECKING:
    from importlib.abc import Traversable

    import jinja2

__all__ = [
    "FORMAT_VERSION",
    "MAX_NAME_CHARS",
    "ResultsError",
    "ResultsWarning",
    "basic_summary",
    "load_results",
    "main",
    "render_html",
    "status_of",
    "write_atomic",
]

#: Rows per page in the case table.
PAGE_SIZE = 200
#: Longest prompt/output/reason kept in the report (characters); longer text is cut with a note.
MAX_TEXT_CHARS = 20_000

_TEMPLATE = "report.html.j2"


def _environment() -> jinja2.Environment:
    """A jinja2 environment reading templates from the ``pytest_aie.templates`` package.

    Goes through :mod:`importlib.resources`, so it works for an editable install (where the
    package maps to ``reports/templates``), a wheel, and a zipped install alike.
    """
    import jinja2

    root = _templates()

    def load(name: str) -> tuple[str, None, Any]:
        resource = root.joinpath(name)
        if not resource.is_file():
            raise jinja2.TemplateNotFound(name)
        return resource.read_text(encoding="utf-8"), None, lambda: True

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _templates() -> Traversable:
    """The templates folder: the installed ``pytest_aie.templates`` package, or, when the
    package runs from a source checkout that was never installed, ``reports/templates``."""
    try:
        return importlib.resources.files("pytest_aie.templates")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "reports" / "templates"


def _asset(name: str) -> str:
    return _templates().joinpath(name).read_text(encoding="utf-8")


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def render_html(
    header: Mapping[str, Any],
    cases: Iterable[Mapping[str, Any]],
    summary: Sequence[SuiteRow] | None,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    page_size: int = PAGE_SIZE,
    max_text_chars: int | None = MAX_TEXT_CHARS,
    comparisons: Sequence[Comparison] | None = None,
    changes: Sequence[Mapping[str, Any]] | None = None,
    exit_status: int | None = None,
    notes: Sequence[str] | None = None,
) -> Path:
    """Render the report for one run to ``path`` (written atomically) and return the path.

    ``summary`` is the plugin's per-suite summary (:func:`pytest_aie.gates.thresholds.evaluate_suites`
    rows; counts are taken from ``cases``); ``None`` computes :func:`basic_summary` from
    ``cases``. ``comparisons`` (:class:`~pytest_aie.gates.comparisons.Comparison` objects) and ``changes`` (the baseline
    diff, one dict per case whose status changed) add the change columns and the diff section;
    ``exit_status`` and ``notes`` go in the run header. Prompt, output, expected and reason
    text longer than ``max_text_chars`` is cut.
    """
    from markupsafe import Markup

    path = Path(path)
    cases = list(cases)
    engine = sections.engine_of(header)
    blob, counts = case_blob(cases, max_text_chars, run_engine=engine.get("engine"),
                             run_model=engine.get("model"), page_size=max(1, int(page_size)))
    tallies = basic_summary(cases)
    if summary is None:
        summary = [SuiteRow.from_json(t) for t in tallies]
    summary_rows, totals = sections.summary_rows(
        summary, {(t["suite"], t["metric"], t["model"]): t for t in tallies}, comparisons)
    binary = {(str(r.suite), str(r.metric)): r.binary is not False for r in summary}
    script = _asset("report.js")
    context = {
        "title": name(title or " · ".join(
            str(p) for p in ("pytest-aie report", scrub(engine.get("model")), header.get("started_at"))
            if p)),
        "metadata": sections.metadata(header),
        "exit_status": exit_status,
        "notes": [name(str(n)) for n in notes or ()],
        "summary": summary_rows,
        "show_mean": any(row["mean_score"] for row in summary_rows),
        "show_scored": totals["scored"] > 0,
        "show_threshold": any(row["threshold"] for row in summary_rows),
        "show_change": any("change" in row for row in summary_rows),
        "totals": totals,
        "counts": counts,
        "comparisons": sections.comparison_rows(comparisons, binary),
        "changes": sections.change_rows(changes) if changes is not None else None,
        "tags": sections.tag_breakdown(cases),
        "histograms": sections.score_histograms(cases),
        "latency": sections.latency(cases, summary),
        "elo": sections.elo_boards(summary),
        "page_size": blob["page_size"],
        "css": Markup(_asset("report.css")),
        "script": Markup(script),
        "csp": _csp(script),
        "data_json": Markup(script_json(blob)),
    }
    template = _environment().get_template(_TEMPLATE)
    return write_atomic(path, template.generate(**context))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pytest_aie.report RESULTS.jsonl [REPORT.html]``: render a report from a log."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2 or args[0] in ("-h", "--help"):
        print("usage: python -m pytest_aie.report RESULTS.jsonl [REPORT.html]", file=sys.stderr)
        return 2
    source = Path(args[0])
    target = Path(args[1]) if len(args) == 2 else source.with_suffix(".html")
    try:
        header, cases = load_results(source)
    except AieError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.exit_code
    print(render_html(header, cases, None, target))
    return 0
