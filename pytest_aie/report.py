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
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_aie.errors import AieError

if TYPE_CHECKING:
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

#: The results-log format this module reads and renders.
FORMAT_VERSION = 1
#: Rows per page in the case table.
PAGE_SIZE = 200
#: Longest prompt/output/reason kept in the report (characters); longer text is cut with a note.
MAX_TEXT_CHARS = 20_000

_TEMPLATE = "report.html.j2"
_ASSETS = ("report.css", "report.js")


class ResultsError(AieError):
    """A results log that cannot be read at all (missing, empty, no run header)."""


class ResultsWarning(UserWarning):
    """A results log with a damaged line that was skipped (e.g. a crash mid-write)."""


# --------------------------------------------------------------------------- loading


def load_results(jsonl_path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a results log: ``(header, cases)``.

    A line that is not valid JSON is skipped with a :class:`ResultsWarning` and the records
    around it are kept: a truncated last line is what a crash mid-write leaves. Records of
    other types than ``run`` and ``case`` are ignored (forward compatibility).

    Raises :class:`ResultsError` if the file is missing or has no run header.
    """
    path = Path(jsonl_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"results log {path} not found",
                           fix="run pytest with pytest-aie first, or pass the right path") from None
    header: dict[str, Any] | None = None
    cases: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    last = len(lines)
    while last > 0 and not lines[last - 1].strip():
        last -= 1
    for no, raw in enumerate(lines[:last], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = "truncated last line (the run probably stopped mid-write)" if no == last \
                else f"damaged line ({exc})"
            warnings.warn(f"{path}:{no}: skipped a {where}", ResultsWarning, stacklevel=2)
            continue
        if not isinstance(record, dict):
            warnings.warn(f"{path}:{no}: skipped a line that is not a JSON object",
                          ResultsWarning, stacklevel=2)
            continue
        kind = record.get("type")
        if kind == "case":
            cases.append(record)
        elif kind == "run":
            if header is None:
                header = record
            else:
                warnings.warn(f"{path}:{no}: skipped a second run header; one log holds one run",
                              ResultsWarning, stacklevel=2)
    if header is None:
        raise ResultsError(f"results log {path} has no run header (a first line with "
                           f'"type": "run")', fix="pass a results log written by pytest-aie")
    version = header.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        warnings.warn(f"{path}: results format version {version} is newer than this pytest-aie "
                      f"reads ({FORMAT_VERSION}); some fields may be missing from the report",
                      ResultsWarning, stacklevel=2)
    return header, cases


def basic_summary(cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-(suite, metric) counts and pass rate, without intervals or verdicts.

    Used when no summary is given (the plugin computes a fuller one with statistical gates).
    The pass rate counts measured cases only; ``None`` when nothing was measured.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for case in cases:
        key = (str(case.get("suite", "")), str(case.get("metric", "")))
        row = groups.get(key)
        if row is None:
            row = groups[key] = {"suite": key[0], "metric": key[1], "n": 0, "passed": 0,
                                 "failed": 0, "unmeasured": 0, "pass_rate": None,
                                 "verdict": None, "interval": None}
        row["n"] += 1
        passed = case.get("passed")
        if passed is True:
            row["passed"] += 1
        elif passed is False:
            row["failed"] += 1
        else:
            row["unmeasured"] += 1
    for row in groups.values():
        measured = row["passed"] + row["failed"]
        row["pass_rate"] = row["passed"] / measured if measured else None
    return list(groups.values())


# --------------------------------------------------------------------------- rendering


def _environment() -> "jinja2.Environment":
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


def _templates() -> Any:
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


def _clip(text: Any, limit: int | None) -> Any:
    if not isinstance(text, str) or limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [report cut {len(text) - limit} more characters]"


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


def _case_blob(header: Mapping[str, Any], cases: Iterable[Mapping[str, Any]],
               max_text_chars: int | None) -> tuple[dict[str, Any], dict[str, int]]:
    """The compact case data the page's script renders, plus pass/fail/unmeasured counts."""
    engine = header.get("engine") if isinstance(header.get("engine"), Mapping) else {}
    run_engine, run_model = engine.get("engine"), engine.get("model")
    suites: list[str] = []
    suite_index: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    counts = {"total": 0, "passed": 0, "failed": 0, "unmeasured": 0}
    for case in cases:
        suite = str(case.get("suite", ""))
        idx = suite_index.get(suite)
        if idx is None:
            idx = suite_index[suite] = len(suites)
            suites.append(suite)
        passed = case.get("passed")
        counts["total"] += 1
        counts["passed" if passed is True else "failed" if passed is False else "unmeasured"] += 1
        row: dict[str, Any] = {
            "s": idx,
            "id": case.get("case_id"),
            "nodeid": case.get("nodeid"),
            "metric": case.get("metric"),
            "value": case.get("value"),
            "passed": passed if isinstance(passed, bool) else None,
            "reason": _clip(case.get("reason"), max_text_chars),
            "prompt": _clip(case.get("prompt"), max_text_chars),
            "output": _clip(case.get("output"), max_text_chars),
            "expected": case.get("expected"),
            "tags": [str(t) for t in case.get("tags") or ()],
            "cached": case.get("cached"),
            "timings": case.get("timings"),
            "tokens": case.get("completion_tokens"),
            "source": case.get("source"),
        }
        if case.get("engine") not in (None, run_engine):
            row["engine"] = case.get("engine")
        if case.get("model") not in (None, run_model):
            row["model"] = case.get("model")
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


def _summary_rows(summary: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    totals = {"n": 0, "passed": 0, "failed": 0, "unmeasured": 0}
    for item in summary:
        interval = item.get("interval")
        interval_text = ""
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            fmt = _percent if item.get("binary", True) else _number  # pass rate or score
            interval_text = f"{fmt(interval[0])} – {fmt(interval[1])}"
        verdict = item.get("verdict")
        row = {
            "suite": str(item.get("suite", "")),
            "metric": str(item.get("metric") or ""),
            "n": int(item.get("n") or 0),
            "passed": int(item.get("passed") or 0),
            "failed": int(item.get("failed") or 0),
            "unmeasured": int(item.get("unmeasured") or 0),
            "pass_rate": _percent(item.get("pass_rate")),
            "mean_score": _number(item.get("mean_score")),
            "interval": interval_text,
            "verdict": str(verdict) if verdict else "",
        }
        for key in totals:
            totals[key] += row[key]
        rows.append(row)
    measured = totals["passed"] + totals["failed"]
    totals["pass_rate"] = _percent(totals["passed"] / measured) if measured else "—"
    return rows, totals


def _metadata(header: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for the run metadata block, in display order, present values only."""
    engine = header.get("engine") if isinstance(header.get("engine"), Mapping) else {}
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
        ("Command", shlex.join(str(a) for a in argv) if isinstance(argv, list) else argv),
    ]
    for key, value in engine.items():
        if key not in ("engine", "model", "revision") and value not in (None, ""):
            pairs.append((f"Engine {key}", value))
    versions = header.get("versions")
    if isinstance(versions, Mapping) and versions:
        pairs.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return [(label, value if isinstance(value, str) else json.dumps(value, default=str))
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

    ``summary`` is the plugin's per-suite summary (``suite, n, passed, failed, unmeasured,
    pass_rate, metric, verdict, interval``); ``None`` computes :func:`basic_summary` from
    ``cases``. Prompt, output and reason text longer than ``max_text_chars`` is cut.
    """
    from markupsafe import Markup

    path = Path(path)
    blob, counts = _case_blob(header, cases, max_text_chars)
    blob["page_size"] = max(1, int(page_size))
    if summary is None:
        summary = _summary_from_blob(blob)
    summary_rows, totals = _summary_rows(summary)
    engine = header.get("engine") if isinstance(header.get("engine"), Mapping) else {}
    script = _asset("report.js")
    context = {
        "title": title or " · ".join(
            str(p) for p in ("pytest-aie report", engine.get("model"), header.get("started_at")) if p),
        "metadata": _metadata(header),
        "summary": summary_rows,
        "show_mean": any(row["mean_score"] for row in summary_rows),
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


def _summary_from_blob(blob: Mapping[str, Any]) -> list[dict[str, Any]]:
    suites = blob["suites"]
    return basic_summary({"suite": suites[c["s"]], "metric": c.get("metric"), "passed": c.get("passed")}
                         for c in blob["cases"])


def write_atomic(path: str | os.PathLike[str], chunks: Iterable[str] | str) -> Path:
    """Write text to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``.

    A reader sees the old file or the new one, never a half-written one; on any error the
    temp file is removed and the old file is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            if isinstance(chunks, str):
                handle.write(chunks)
            else:
                for chunk in chunks:
                    handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
