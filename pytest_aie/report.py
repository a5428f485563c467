"""The HTML report: one self-contained file rendered from the results log.

The results log is JSONL: a run header (``{"type": "run", ...}``) on the first line, then one
``{"type": "case", ...}`` record per scored case. :func:`load_results` reads it back, tolerating a
truncated last line (a crash mid-write); :func:`render_html` writes the report atomically.

Report layout:

* run metadata and the per-suite summary table are rendered on the server (jinja2, autoescape
  on), so they show without JavaScript;
* the case data is embedded once as a JSON blob in ``<script type="application/json">`` (with
  every ``<`` ``>`` ``&`` escaped, so no string can close the tag), and a small vanilla script
  renders the case rows client-side, one page at a time, with a text filter and a
  "failures only" toggle. Model output is untrusted: the script only ever writes it with
  ``textContent``.

Every string shown (case data and run metadata) is made visible first
(:func:`pytest_aie.text.visible`): control, bidi-override, zero-width characters and lone
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
import json
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_aie.drilldown import judgments_text, passages_text, ranking_text, trajectory_text
from pytest_aie.errors import AieError
from pytest_aie.files import write_atomic
from pytest_aie.records import (
    STATUSES,
    ResultsError,
    ResultsWarning,
    basic_summary,
    load_results,
    status_of,
)
from pytest_aie.redact import scrub, scrub_argv
from pytest_aie.results import FORMAT_VERSION
from pytest_aie.text import visible

if TYPE_CHECKING:
    from importlib.abc import Traversable

    import jinja2

__all__ = [
    "FORMAT_VERSION",
    "ResultsError",
    "ResultsWarning",
    "basic_summary",
    "load_results",
    "render_html",
    "write_atomic",
]

#: Rows per page in the case table.
PAGE_SIZE = 200
#: Longest prompt/output/reason kept in the report (characters); longer text is cut with a note.
MAX_TEXT_CHARS = 20_000
#: Longest name, id, tag or metadata value kept in the report.
MAX_NAME_CHARS = 1_000

_TEMPLATE = "report.html.j2"
_ASSETS = ("report.css", "report.js")


# --------------------------------------------------------------------------- rendering


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
        return Path(__file__).resolve().parent.parent / "reports" / "templates"


def _asset(name: str) -> str:
    return _templates().joinpath(name).read_text(encoding="utf-8")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, inf) replaced by strings JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

_MAY_NEED_MARKS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
    "\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff]")


def _visible(text: str) -> str:
    """``text`` as the page shows it: invisible and direction-changing characters and lone
    surrogates written as ``<U+XXXX>`` (newlines, tabs and CR LF line ends kept)."""
    if not _MAY_NEED_MARKS.search(text):  # the common case, without a pass per character
        return text
    return "\r\n".join(visible(part, keep_newlines=True) for part in text.split("\r\n"))


def _clip(text: Any, limit: int | None) -> Any:
    if not isinstance(text, str) or limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [report cut {len(text) - limit} more characters]"


def _shown(value: Any, limit: int | None) -> Any:
    """``value`` as the report shows it: strings made visible and cut to ``limit``; a
    structure (an expected dict or list) keeps its shape, unless its JSON text is longer
    than ``limit``, when it becomes that text, cut."""
    if isinstance(value, str):
        if (limit is None or len(value) <= limit) and not _MAY_NEED_MARKS.search(value):
            return value  # the common case, without two more calls per field of each case
        return _clip(_visible(value), limit)
    if isinstance(value, (dict, list, tuple)):
        if limit is not None:
            text = json.dumps(_finite(value), ensure_ascii=False, indent=2, default=str)
            if len(text) > limit:
                return _clip(_visible(text), limit)
        return _deep_visible(value)
    return value


def _deep_visible(value: Any) -> Any:
    if isinstance(value, str):
        return _visible(value)
    if isinstance(value, dict):
        return {_visible(str(k)): _deep_visible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_visible(v) for v in value]
    return value

def _script_json(value: Any) -> str:
    """JSON safe to place inside ``<script type="application/json">``.

    ``<`` ``>`` ``&`` become ``\\u003c`` etc., so no string can close the tag or open a comment;
    U+2028/U+2029 are escaped too. ``JSON.parse`` gives back the original strings.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=str)
    except ValueError:  # NaN/inf somewhere in arbitrary "expected" data
        text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"), default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))

def _expected(case: Mapping[str, Any]) -> tuple[Any, str | None]:
    """What the case was compared against, and a label when that is not ``expected``: the
    field a scorer was pointed at (``exact(field="answer")``), or a case's ``references``."""
    field = case.get("reference_field")
    if field:
        return case.get("reference"), f"Expected (field {str(field)!r})"
    if case.get("expected") is None and case.get("references") is not None:
        return case.get("references"), "Expected (references)"
    return case.get("expected"), None


def _engine(header: Mapping[str, Any]) -> Mapping[str, Any]:
    """The header's engine block (engine, model, revision, options), or an empty one."""
    engine = header.get("engine")
    return engine if isinstance(engine, Mapping) else {}


def _case_blob(header: Mapping[str, Any], cases: Iterable[Mapping[str, Any]],
               max_text_chars: int | None) -> tuple[dict[str, Any], dict[str, int]]:
    """The compact case data the page's script renders, plus counts per status."""
    engine = _engine(header)
    run_engine, run_model = engine.get("engine"), engine.get("model")
    suites: list[str] = []
    suite_index: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    counts = {"total": 0, **{s: 0 for s in STATUSES}}

    def name(value: Any) -> Any:
        return _shown(value, MAX_NAME_CHARS)

    def text(value: Any) -> Any:
        return _shown(value, max_text_chars)

    for case in cases:
        suite = str(case.get("suite", ""))
        idx = suite_index.get(suite)
        if idx is None:
            idx = suite_index[suite] = len(suites)
            suites.append(name(suite))
        status = status_of(case)
        counts["total"] += 1
        counts[status] += 1
        expected, label = _expected(case)
        row: dict[str, Any] = {
            "s": idx,
            "st": status,
            "id": name(case.get("case_id")),
            "nodeid": name(case.get("nodeid")),
            "metric": name(case.get("metric")),
            "value": case.get("value"),
            "reason": text(case.get("reason")),
            "prompt": text(case.get("prompt")),
            "output": text(case.get("output")),
            "expected": text(expected),
            "expected_label": label,
            "tags": [name(str(t)) for t in case.get("tags") or ()],
            "cached": case.get("cached"),
            "timings": case.get("timings"),
            "tokens": case.get("completion_tokens"),
            "source": name(case.get("source")),
        }
        details = case.get("details") or {}
        if details.get("judgments"):  # an AI judge: each judgment with its rationale
            row["judge"] = text(judgments_text(details))
        if details.get("ranking"):  # an elo suite: the suite's ranking, best first
            row["ranking"] = text(ranking_text(details))
        if case.get("retrieved"):  # a retrieval or RAG target: the passages, best first
            row["retrieved"] = text(passages_text(case["retrieved"], details.get("relevant")))
        if case.get("trajectory"):  # an agent: its run step by step
            row["trajectory"] = text(trajectory_text(case["trajectory"]))
        if details.get("injection"):
            row["flags"] = text("\n".join(details["injection"]))
        if case.get("engine") not in (None, run_engine):
            row["engine"] = name(case.get("engine"))
        # format 2: the run's model name and the engine's model; format 1: the engine's only
        model_id = case.get("model_id", case.get("model"))
        run_name = case.get("model") if "model_id" in case else None
        shown = [str(m) for m in (run_name if run_name != "default" else None,
                                  model_id if model_id != run_model else None) if m is not None]
        if shown:
            row["model"] = name(" · ".join(shown))
        rows.append({k: v for k, v in row.items() if v is not None and v != []})
    return {"suites": suites, "cases": rows}, counts

def _percent(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.1f}%"
    return "—"


def _number(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.3g}"
    return ""

_COUNTS = ("n", "passed", "failed", "scored", "unmeasured")


def _summary_rows(summary: Sequence[Mapping[str, Any]],
                  tallies: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Display rows for the suite table, and the totals. ``tallies`` (from
    :func:`basic_summary` of the cases shown) supplies the counts and pass rate, so the table
    agrees with the case rows whatever the summary counted; verdicts, intervals and mean
    scores come from ``summary``."""
    rows = []
    totals: dict[str, Any] = {k: 0 for k in _COUNTS}
    models: dict[tuple[str, str], set[str]] = {}
    for item in summary:
        models.setdefault((str(item.get("suite", "")), str(item.get("metric") or "")),
                          set()).add(str(item.get("model") or "default"))
    for item in summary:
        suite, metric = str(item.get("suite", "")), str(item.get("metric") or "")
        model = str(item.get("model") or "default")
        counted = (tallies or {}).get((suite, metric, model))
        if counted is None and "model" not in item:  # a summary that does not name models
            same = [t for k, t in (tallies or {}).items() if k[:2] == (suite, metric)]
            counted = same[0] if len(same) == 1 else None
        counted = counted or item
        if len(models[(suite, metric)]) > 1:  # a suite gated on several models: one row each
            metric = f"{metric} · {model}"
        interval = item.get("interval")
        interval_text = ""
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            fmt = _percent if item.get("binary", True) else _number  # pass rate or score
            interval_text = f"{fmt(interval[0])} – {fmt(interval[1])}"
        verdict = item.get("verdict")
        row: dict[str, Any] = {
            "suite": _shown(suite, MAX_NAME_CHARS),
            "metric": _shown(metric, MAX_NAME_CHARS),
            **{k: int(counted.get(k) or 0) for k in _COUNTS},
            "mean_score": _number(item.get("mean_score", counted.get("mean_score"))),
            "interval": interval_text,
            "verdict": _shown(str(verdict), MAX_NAME_CHARS) if verdict else "",
        }
        judged = row["passed"] + row["failed"]
        row["pass_rate"] = _percent(row["passed"] / judged) if judged else "—"
        for key in _COUNTS:
            totals[key] += row[key]
        rows.append(row)
    judged = totals["passed"] + totals["failed"]
    totals["pass_rate"] = _percent(totals["passed"] / judged) if judged else "—"
    return rows, totals


def _metadata(header: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for the run metadata block, in display order, present values only
    (credentials scrubbed, even from a log written before pytest-aie scrubbed them)."""
    header = scrub(dict(header))
    engine = _engine(header)
    argv = header.get("argv")
    pairs: list[tuple[str, Any]] = [
        ("Started", header.get("started_at")),
        ("Engine", engine.get("engine")),
        ("Model", engine.get("model")),
        ("Revision", engine.get("revision")),
        ("Git commit", header.get("git_commit") or "not recorded"),
        ("Seed", header.get("seed")),
        ("pytest-aie", header.get("pytest_aie")),
        ("Python", header.get("python")),
        ("Platform", header.get("platform")),
        ("Command", shlex.join(str(a) for a in scrub_argv(argv)) if isinstance(argv, list) else argv),
    ]
    for key, value in engine.items():
        if key not in ("engine", "model", "revision") and value not in (None, ""):
            pairs.append((f"Engine {key}", value))
    versions = header.get("versions")
    if isinstance(versions, Mapping) and versions:
        pairs.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return [(label, _shown(value if isinstance(value, str) else json.dumps(value, default=str),
                           2 * MAX_NAME_CHARS))
            for label, value in pairs if value is not None and value != ""]

def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def render_html(
    header: Mapping[str, Any],
    cases: Iterable[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]] | None,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    page_size: int = PAGE_SIZE,
    max_text_chars: int | None = MAX_TEXT_CHARS,
) -> Path:
    """Render the report for one run to ``path`` (written atomically) and return the path.

    ``summary`` is the plugin's per-suite summary (``suite, metric, verdict, interval,
    mean_score, binary``; counts are taken from ``cases``); ``None`` computes
    :func:`basic_summary` from ``cases``. Prompt, output, expected and reason text longer than
    ``max_text_chars`` is cut.
    """
    from markupsafe import Markup

    path = Path(path)
    cases = list(cases)
    blob, counts = _case_blob(header, cases, max_text_chars)
    blob["page_size"] = max(1, int(page_size))
    tallies = basic_summary(cases)
    if summary is None:
        summary = tallies
    summary_rows, totals = _summary_rows(summary, {(t["suite"], t["metric"], t["model"]): t
                                                   for t in tallies})
    engine = _engine(header)
    script = _asset("report.js")
    context = {
        "title": _shown(title or " · ".join(
            str(p) for p in ("pytest-aie report", scrub(engine.get("model")), header.get("started_at"))
            if p), MAX_NAME_CHARS),
        "metadata": _metadata(header),
        "summary": summary_rows,
        "show_mean": any(row["mean_score"] for row in summary_rows),
        "show_scored": totals["scored"] > 0,
        "totals": totals,
        "counts": counts,
        "page_size": blob["page_size"],
        "css": Markup(_asset("report.css")),
        "script": Markup(script),
        "csp": _csp(script),
        "data_json": Markup(_script_json(blob)),
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


if __name__ == "__main__":
    raise SystemExit(main())
