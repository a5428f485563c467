"""Reading a case record back from a results log safely: the shape every reader (gates,
comparisons, report, baseline diff) relies on, checked once when the log is read.

* :func:`uncut` undoes what the log's bounded lines did to a structured field: a ``trajectory``,
  ``retrieved`` list or ``details`` longer than :data:`~pytest_aie.results.log.MAX_FIELD_CHARS` is
  stored as the head of its JSON text (a string), which cannot be read as the structure. The
  field becomes ``None`` and the head is kept under ``cut_text``; the caller says so.
* :func:`case_problem` says what is wrong with a record (``None``: nothing) in words, for a
  line like ``results.jsonl:7: case record: 'suite' is missing``.

The expected types come from :class:`~pytest_aie.results.records.CaseRecord`'s annotations, so a new
field is checked as soon as it is declared. ``null`` is accepted for every field but the
three that identify a record (``suite``, ``metric``, ``case_id``): older logs leave fields out
or empty, and the readers treat a missing value and ``null`` alike.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any

from pytest_aie.results.records import CaseRecord

__all__ = ["case_problem", "field_problem", "other_problem", "structured_fields", "uncut"]

_REQUIRED = ("suite", "metric", "case_id")
_STATUSES = ("passed", "failed", "scored", "unmeasured")


@functools.cache
def _kinds() -> dict[str, tuple[str, ...]]:
    """Each CaseRecord field's accepted JSON kinds, from its annotation: ``str``, ``bool``,
    ``number``, ``int``, ``list``, ``dict`` (an ``Any`` field accepts anything: no entry)."""
    out: dict[str, tuple[str, ...]] = {}
    for f in fields(CaseRecord):
        text = str(f.type)
        if text == "Any":
            continue
        kinds = []
        for part in (p.strip() for p in _top_level(text)):
            head = part.split("[", 1)[0]
            kind = {"str": "str", "bool": "bool", "float": "number", "int": "int",
                    "list": "list", "dict": "dict"}.get(head)
            if kind:
                kinds.append(kind)
        if kinds:
            out[f.name] = tuple(kinds)
    return out


def _top_level(annotation: str) -> list[str]:
    """``"list[float | None] | None"`` -> ``["list[float | None]", "None"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(annotation):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(annotation[start:i])
            start = i + 1
    parts.append(annotation[start:])
    return parts


def structured_fields() -> set[str]:
    """The record fields that hold a list or an object (never a string)."""
    return {name for name, kinds in _kinds().items()
            if set(kinds) <= {"list", "dict"}}


def _is(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def uncut(record: dict[str, Any]) -> list[str]:
    """Structured fields of ``record`` that the log cut to text: set to ``None`` (their text
    kept under ``record["cut_text"]``); returns their names."""
    cut = record.get("cut")
    if not isinstance(cut, dict):
        return []
    lost = [name for name in cut if name in structured_fields()
            and isinstance(record.get(name), str)]
    if lost:
        kept = record.setdefault("cut_text", {})
        for name in lost:
            if isinstance(kept, dict):
                kept[name] = record[name]
            record[name] = None
    return lost


def case_problem(record: dict[str, Any]) -> str | None:
    """What makes ``record`` unreadable as a case record, in words; ``None`` when it reads."""
    for name in _REQUIRED:
        value = record.get(name)
        if value is None:
            return f"{name!r} is missing"
        if not (isinstance(value, str) or name == "case_id" and _is(value, "int")) or value == "":
            return f"{name!r} is {_short(value)}, not a non-empty string"
    problem = field_problem(record, {k: v for k, v in _kinds().items() if k not in _REQUIRED})
    if problem is not None:
        return problem
    if record.get("status") is not None and record["status"] not in _STATUSES:
        return f"'status' is {_short(record['status'])}, not one of {', '.join(_STATUSES)}"
    for name, inner in (("tags", "str"), ("samples", "dict"), ("retrieved", "dict")):
        items = record.get(name)
        if isinstance(items, list) and not all(_is(i, inner) for i in items):
            return f"{name!r} holds an entry that is not {'a string' if inner == 'str' else 'an object'}"
    gate = record.get("gate")
    if isinstance(gate, dict) and not all(_is(v, "number") or v is None for v in gate.values()):
        return f"'gate' is {_short(gate)}, not thresholds (numbers)"
    bounds = record.get("bounds")
    if isinstance(bounds, list) and (len(bounds) != 2 or not all(
            b is None or _is(b, "number") for b in bounds)):
        return f"'bounds' is {_short(bounds)}, not [lowest, highest]"
    return None


def field_problem(record: dict[str, Any], spec: dict[str, tuple[str, ...]]) -> str | None:
    """The first field of ``record`` whose value (present and not null) is none of the JSON
    kinds ``spec`` accepts for it (``str``, ``bool``, ``int``, ``number``, ``list``, ``dict``),
    in words; ``None`` when every field reads."""
    for name, kinds in spec.items():
        value = record.get(name)
        if value is not None and not any(_is(value, k) for k in kinds):
            return f"{name!r} is {_short(value)}, not {' or '.join(kinds)}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: A conclusion record's fields that the rebuild reads: name -> accepted kinds.
_CONCLUSION: dict[str, tuple[str, ...]] = {"exit_status": ("int",), "pytest_status": ("int",), "rows": ("list",),
               "comparisons": ("list",), "notes": ("list",), "harness_errors": ("list",),
               "policy": ("dict",), "aggregates": ("list",), "baseline": ("str",),
               "changes": ("int",)}
_CHANGE = {"suite": ("str",), "metric": ("str",), "case_id": ("str", "int"),
           "change": ("str",), "old": ("dict",), "new": ("dict",), "model": ("str",)}


def other_problem(record: dict[str, Any]) -> str | None:
    """What makes a ``conclusion`` or ``change`` record unreadable (``None``: it reads, or it
    is of another type, which readers ignore)."""
    kind = record.get("type")
    if kind == "conclusion":
        if record.get("exit_status") is None:
            return "'exit_status' is missing"
        spec = _CONCLUSION
    elif kind == "change":
        spec = _CHANGE
    else:
        return None
    problem = field_problem(record, spec)
    if problem is not None:
        return problem
    for name in ("rows", "comparisons", "aggregates"):
        if not all(isinstance(i, dict) for i in record.get(name) or ()):
            return f"{name!r} holds an entry that is not an object"
    for name in ("notes", "harness_errors"):
        if not all(isinstance(i, str) for i in record.get(name) or ()):
            return f"{name!r} holds an entry that is not a string"
    return None
