"""Reading a judge's reply: the JSON object the rubric asked for, or why not.

A reply is read leniently where the meaning is unambiguous (a code fence around the JSON, text
before or after it, ``"4"`` for ``4``, ``"Pass"`` for ``"pass"``) and refused otherwise: a
missing verdict, a verdict off the scale, truncated JSON. A refused reply gets one repair
request (:func:`repair_request`); what still cannot be read is *unmeasured*, with the raw text
kept, never a pass or a fail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from pytest_aie.engines.base import Generation, Request
from pytest_aie.judge.rubrics import Rubric

__all__ = ["Reading", "pair_winner", "read_reply", "repair_request", "unswapped"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


@dataclass(frozen=True)
class Reading:
    """One judge reply, read: ``value`` is on the rubric's scale (None: unreadable)."""

    value: Any
    rationale: str
    error: str | None = None  # why the reply could not be read


def _objects(text: str) -> list[Any]:
    """Every JSON object in ``text``, first to last (inside code fences first)."""
    found: list[Any] = []
    decoder = json.JSONDecoder()
    for chunk in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        i = chunk.find("{")
        while i != -1:
            try:
                obj, end = decoder.raw_decode(chunk, i)
            except json.JSONDecodeError:
                i = chunk.find("{", i + 1)
                continue
            if isinstance(obj, dict):
                found.append(obj)
            i = chunk.find("{", end)
    return found


def _on_scale(value: Any, rubric: Rubric) -> Any:
    """The scale value ``value`` stands for, or None."""
    if rubric.output == "score":
        if isinstance(value, bool):
            return None
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.0+)?\s*", value):
            value = float(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return value if isinstance(value, int) and value in rubric.scale else None
    if not isinstance(value, str):
        return None
    by_lower = {str(v).lower(): v for v in rubric.scale}
    return by_lower.get(value.strip().lower())


def read_reply(gen: Generation, rubric: Rubric) -> Reading:
    """Read one reply; a reply cut by ``max_tokens`` or an engine error is unreadable."""
    if gen.error is not None:
        return Reading(None, "", f"the judge failed: {gen.error}")
    text = gen.text or ""
    if not text.strip():
        return Reading(None, "", "the judge's reply is empty")
    field = rubric.field
    objects = [o for o in _objects(text) if field in o]
    if not objects:
        cut = " (cut off by max_tokens)" if gen.finish_reason == "length" else ""
        what = "no JSON object" if not _objects(text) else f"no {field!r} key"
        return Reading(None, "", f"the reply has {what}{cut}")
    obj = objects[0]
    value = _on_scale(obj[field], rubric)
    rationale = obj.get("rationale", obj.get("reason", obj.get("explanation", "")))
    rationale = rationale if isinstance(rationale, str) else json.dumps(rationale)
    if value is None:
        choices = ", ".join(json.dumps(v) for v in rubric.scale)
        return Reading(None, rationale, f"{field} {obj[field]!r} is not on the scale ({choices})")
    return Reading(value, rationale.strip())


def repair_request(request: Request, gen: Generation, error: str, rubric: Rubric) -> Request:
    """The one retry for an unreadable reply: the conversation so far, the reply, and what
    was wrong with it."""
    note = (f"Your reply could not be read: {error}. Reply again with only the JSON object. "
            + rubric.format_text())
    messages = (*(request.messages or ({"role": "user", "content": request.prompt or ""},)),
                {"role": "assistant", "content": gen.text[:2000]},
                {"role": "user", "content": note})
    return replace(request, messages=messages, prompt=None)


_SWAP = {"A": "B", "B": "A", "tie": "tie"}


def unswapped(label: str) -> str:
    """A winner given with the answers shown as (B, A), in the original (A, B) labels."""
    return _SWAP[label]


def pair_winner(ab: str | None, ba: str | None) -> str | None:
    """The winner of one pair judged in both orders (``ba`` as the judge said it, on the
    swapped answers): the same winner both times, else a tie; None when either is missing."""
    from pytest_aie.stats.agreement import consistent_winner

    return None if ab is None or ba is None else consistent_winner(ab, unswapped(ba))
