"""The case data the report's script renders: compact, so a run of 100,000 cases stays small.

The blob is one JSON object in ``<script type="application/json" id="aie-data">``:

* ``table``: the case table, gzip-compressed and base64-encoded, columnar: one array per
  column (suite, metric, model and status as indexes into small tables of names, tags as
  lists of indexes, the output and the reason as indexes into tables of one-line previews,
  flags as bits), so each name and preview is stored once and no field name repeats per case;
* ``detail``: the drill-down (full prompt, output, reference, reason, judge rationales,
  samples, retrieved passages, trajectory, timings), in chunks of :data:`CHUNK` cases, each
  compressed on its own: the page decompresses only the chunk of the case opened. Within a
  chunk, prompts and outputs are interned (one copy of a text shared by several metrics).

Base64 text cannot close a ``<script>`` element, and the page decompresses with the browser's
``DecompressionStream``: no network request. Every string is made visible and cut first
(:mod:`pytest_aie.report.shown`).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any, Iterable, Mapping

from pytest_aie.report.drilldown import (
    judgments_text,
    passages_text,
    ranking_text,
    samples_text,
    trajectory_text,
)
from pytest_aie.report.shown import dumps, name, preview, shown
from pytest_aie.results.records import STATUSES, status_of

__all__ = ["CHUNK", "FLAGS", "PREVIEW_CHARS", "case_blob", "cases_in", "decode", "expected_of"]

#: cases per compressed drill-down chunk
CHUNK = 500
#: characters of the output shown in the table (the drill-down has the full text)
PREVIEW_CHARS = 120
#: characters of the reason shown in the table
REASON_CHARS = 120
#: the flags column's bits
FLAGS = {"cached": 1, "truncated": 2, "flaky": 4, "error": 8}
_STATUS_CODE = {s: s[0] for s in STATUSES}  # passed -> p, failed -> f, scored -> s, unmeasured -> u


def _pack(value: Any) -> str:
    data = dumps(value).encode("utf-8", "surrogatepass")
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def decode(packed: str) -> Any:
    """A packed part of the blob as Python values (for tests and tools)."""
    return json.loads(gzip.decompress(base64.b64decode(packed)).decode("utf-8", "surrogatepass"))


def expected_of(case: Mapping[str, Any]) -> tuple[Any, str | None]:
    """What the case was compared against, and a label when that is not ``expected``: the
    field a scorer was pointed at (``exact(field="answer")``), or a case's ``references``."""
    field = case.get("reference_field")
    if field:
        return case.get("reference"), f"Expected (field {str(field)!r})"
    if case.get("expected") is None and case.get("references") is not None:
        return case.get("references"), "Expected (references)"
    return case.get("expected"), None


class _Names:
    """A table of distinct names, each stored once; a name's index is its id. ``show`` turns
    a new name into what the page shows."""

    def __init__(self, show: Any = name) -> None:
        self.names: list[Any] = []
        self._index: dict[str, int] = {}
        self._show = show

    def __call__(self, value: Any) -> int:
        key = value if isinstance(value, str) else str(value)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = len(self.names)
            self.names.append(self._show(key))
        return idx


def _value(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}") if value == value and abs(value) != float("inf") else str(value)
    return value


def _flags(case: Mapping[str, Any]) -> int:
    bits = 0
    if case.get("cached"):
        bits |= FLAGS["cached"]
    if case.get("finish_reason") == "length":
        bits |= FLAGS["truncated"]
    consistency = case.get("consistency")
    if isinstance(consistency, (int, float)) and consistency < 1:
        bits |= FLAGS["flaky"]
    if case.get("error"):
        bits |= FLAGS["error"]
    return bits


def _detail(case: Mapping[str, Any], text: Any, intern: Any, run_engine: Any,
            run_model: Any) -> dict[str, Any]:
    """One case's drill-down, empty fields left out."""
    expected, label = expected_of(case)
    details = case.get("details") or {}
    row: dict[str, Any] = {
        "nodeid": name(case.get("nodeid")),
        "p": intern(text(case.get("prompt"))),
        "o": intern(text(case.get("output"))),
        "x": text(expected),
        "xl": label,
        "reason": text(case.get("reason")) if len(str(case.get("reason") or "")) > REASON_CHARS
        else None,
        "value": case.get("value") if isinstance(case.get("value"), (int, float)) else None,
        "error": text(case.get("error")),
        "source": name(case.get("source")),
        "tokens": case.get("completion_tokens"),
        "ptokens": case.get("prompt_tokens"),
        "finish": name(case.get("finish_reason")),
        "adapter": name(case.get("adapter")),
        "consistency": case.get("consistency"),
        "timings": {k: v for k, v in (case.get("timings") or {}).items() if v is not None} or None,
    }
    if details.get("judgments"):  # an AI judge: each judgment with its rationale
        row["judge"] = text(judgments_text(details))
    if details.get("ranking"):  # an elo suite: the suite's ranking, best first
        row["ranking"] = text(ranking_text(details))
    if case.get("retrieved"):  # a retrieval or RAG target: the passages, best first
        row["retrieved"] = text(passages_text(case["retrieved"], details.get("relevant")))
    if case.get("trajectory"):  # an agent: its run step by step
        row["trajectory"] = text(trajectory_text(case["trajectory"]))
    if case.get("samples"):  # repeated sampling: each sample's outcome
        row["samples"] = text(samples_text(case["samples"]))
    if details.get("injection"):
        row["flags"] = text("\n".join(details["injection"]))
    if case.get("engine") not in (None, "", run_engine):
        row["engine"] = name(case.get("engine"))
    model_id = case.get("model_id", case.get("model") if "model_id" not in case else None)
    if model_id not in (None, "", run_model):
        row["model_id"] = name(model_id)
    return {k: v for k, v in row.items() if v is not None and v != [] and v != ""}


def case_blob(cases: Iterable[Mapping[str, Any]], max_text_chars: int | None, *,
              run_engine: Any = None, run_model: Any = None,
              page_size: int = 200) -> tuple[dict[str, Any], dict[str, int]]:
    """The blob (``table`` and ``detail`` packed) and the counts per status."""
    suites, metrics, models, tags = _Names(), _Names(), _Names(), _Names()
    # previews repeat (one output scored on several metrics, reasons such as "matched")
    outputs = _Names(lambda text: preview(text, PREVIEW_CHARS))
    reasons = _Names(lambda text: preview(text, REASON_CHARS))
    cols: dict[str, list[Any]] = {k: [] for k in ("s", "m", "md", "id", "v", "tg", "o", "r", "f")}
    status: list[str] = []
    counts = {"total": 0, **{s: 0 for s in STATUSES}}
    chunks: list[str] = []
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    text_index: dict[str, int] = {}

    def text(value: Any) -> Any:
        return shown(value, max_text_chars)

    def intern(value: Any) -> Any:
        if not isinstance(value, str) or len(value) < 16:
            return value if value not in (None, "") else None
        idx = text_index.get(value)
        if idx is None:
            idx = text_index[value] = len(texts)
            texts.append(value)
        return idx

    def flush() -> None:
        chunks.append(_pack({"t": texts, "rows": rows}))
        rows.clear()
        texts.clear()
        text_index.clear()

    for case in cases:
        st = status_of(case)
        counts["total"] += 1
        counts[st] += 1
        status.append(_STATUS_CODE[st])
        cols["s"].append(suites(case.get("suite", "")))
        cols["m"].append(metrics(case.get("metric") or ""))
        cols["md"].append(models(case.get("model") if "model_id" in case else "default"))
        cols["id"].append(name(str(case.get("case_id"))))
        cols["v"].append(_value(case.get("value")))
        cols["tg"].append([tags(t) for t in case.get("tags") or ()])
        output = case.get("output")
        cols["o"].append(outputs(output if isinstance(output, str) else "" if output is None
                                 else json.dumps(output, default=str)))
        cols["r"].append(reasons(str(case.get("reason") or "")))
        cols["f"].append(_flags(case))
        rows.append(_detail(case, text, intern, run_engine, run_model))
        if len(rows) == CHUNK:
            flush()
    if rows:
        flush()
    table = {"n": counts["total"], "suites": suites.names, "metrics": metrics.names,
             "models": models.names, "tags": tags.names, "outputs": outputs.names,
             "reasons": reasons.names, "st": "".join(status), **cols}
    return {"page_size": page_size, "chunk": CHUNK, "flags": FLAGS,
            "table": _pack(table), "detail": chunks}, counts


_STATUS_NAME = {code: status for status, code in _STATUS_CODE.items()}


def cases_in(html: str) -> list[dict[str, Any]]:
    """Read the cases back from a rendered report, as the page shows them: one dict per case
    with ``suite``, ``metric``, ``model``, ``status``, ``case_id``, ``value``, ``tags``,
    ``preview`` (the table's output column), ``prompt``, ``output``, ``expected``,
    ``expected_label``, ``reason`` and the drill-down's other fields (``judge``, ``ranking``,
    ``retrieved``, ``trajectory``, ``samples``, ...). For tests and tools."""
    import re

    match = re.search(r'<script type="application/json" id="aie-data">(.*?)</script>', html, re.S)
    if match is None:
        raise ValueError("not a pytest-aie report: no aie-data block")
    blob = json.loads(match.group(1))
    table = decode(blob["table"])
    out: list[dict[str, Any]] = []
    for packed in blob["detail"]:
        chunk = decode(packed)
        for d in chunk["rows"]:
            i = len(out)
            row = {k: v for k, v in d.items() if k not in ("p", "o", "x", "xl")}
            row.update(
                suite=table["suites"][table["s"][i]], metric=table["metrics"][table["m"][i]],
                model=table["models"][table["md"][i]], status=_STATUS_NAME[table["st"][i]],
                case_id=table["id"][i], value=table["v"][i],
                tags=[table["tags"][t] for t in table["tg"][i]], preview=table["outputs"][table["o"][i]],
                prompt=chunk["t"][d["p"]] if isinstance(d.get("p"), int) else d.get("p", ""),
                output=chunk["t"][d["o"]] if isinstance(d.get("o"), int) else d.get("o", ""),
                expected=d.get("x"), expected_label=d.get("xl"),
                reason=d.get("reason", table["reasons"][table["r"][i]]))
            out.append(row)
    return out
