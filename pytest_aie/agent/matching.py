"""Tool calls against an expected sequence: the ``tool_calls`` check of an agent's trajectory.

* :func:`expected_calls` reads a case's expected calls: tool names, or ``{"tool", "arguments"}``
  dicts whose arguments are compared as a subset (numbers within ``tolerance``).
* :func:`match_calls` compares the calls made with them: ``exact`` (the same calls in the same
  order, nothing else), ``in_order`` (a subsequence; other calls may come between) or
  ``subset`` (each expected call matched by a different call made, in any order: a maximum
  bipartite matching), with the first mismatch explained.
* :func:`show_call` writes a call for a message: ``lookup(country="Japan")``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, NamedTuple, Sequence

__all__ = ["CallMatch", "MODES", "expected_calls", "match_calls", "show_call"]

MODES = ("exact", "in_order", "subset")
_SHOW = 80  # characters of a call shown in a message at most


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def show_call(tool: str, arguments: Any = None) -> str:
    """``lookup(country="Japan", field="capital")``; ``lookup`` without arguments (an expected
    call that takes any); arguments that are not a JSON object are shown as they came; long
    calls are cut."""
    if arguments is None:
        text = tool
    elif isinstance(arguments, Mapping):
        text = f"{tool}(" + ", ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=False)}"
                                       for k, v in arguments.items()) + ")"
    else:
        text = f"{tool}({arguments!r})"
    return text if len(text) <= _SHOW else text[:_SHOW - 3] + "..."


def expected_calls(raw: Any) -> list[dict[str, Any]]:
    """Expected calls as ``[{"tool": name, "arguments": dict | None}]`` from a list of tool
    names and ``{"tool": name, "arguments": {...}}`` dicts (a JSON string of such a list is read
    first); :class:`ValueError` for anything else."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("is a string that is not a JSON list of calls") from None
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"must be a list of calls, not {type(raw).__name__}")
    out: list[dict[str, Any]] = []
    for n, item in enumerate(raw):
        if isinstance(item, str) and item:
            out.append({"tool": item, "arguments": None})
            continue
        if isinstance(item, Mapping) and isinstance(item.get("tool"), str) and item["tool"] \
                and set(item) <= {"tool", "arguments"} \
                and (item.get("arguments") is None or isinstance(item["arguments"], Mapping)):
            args = item.get("arguments")
            out.append({"tool": item["tool"], "arguments": None if args is None else dict(args)})
            continue
        raise ValueError(f"item {n} is {item!r}: each expected call is a tool name or "
                         '{"tool": name, "arguments": {...}}')
    return out


def _value_mismatch(want: Any, got: Any, where: str, tolerance: float) -> str | None:
    """Why ``got`` does not match ``want`` (None when it does): dicts as subsets (every
    expected key, equal values; other keys allowed), lists item by item, numbers within
    ``tolerance`` (relative or absolute), anything else equal."""
    name = where or "the arguments"
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return f"{name} is {json.dumps(got, default=str)}, expected an object"
        for key, value in want.items():
            path = f"{where}.{key}" if where else str(key)
            if key not in got:
                return f"{path!r} is missing (expected {json.dumps(value, default=str)})"
            why = _value_mismatch(value, got[key], path, tolerance)
            if why is not None:
                return why
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return (f"{name!r} is {json.dumps(got, default=str)}, expected "
                    f"{json.dumps(want, default=str)}")
        for i, (w, g) in enumerate(zip(want, got)):
            why = _value_mismatch(w, g, f"{where}[{i}]", tolerance)
            if why is not None:
                return why
        return None
    if _is_number(want) and _is_number(got):
        if math.isclose(float(want), float(got), rel_tol=tolerance, abs_tol=tolerance):
            return None
    elif type(want) is type(got) and want == got:
        return None
    return f"{name!r} is {json.dumps(got, default=str)}, expected {json.dumps(want, default=str)}"


def _call_mismatch(want: Mapping[str, Any], got: Mapping[str, Any], tolerance: float) -> str | None:
    """Why an actual call does not match an expected one (None when it does)."""
    if got["tool"] != want["tool"]:
        return f"expected {want['tool']}, got {got['tool']}"
    if want.get("arguments") is None:
        return None
    args = got.get("arguments")
    if not isinstance(args, Mapping):
        return f"its arguments are not a JSON object: {show_call(got['tool'], args)}"
    return _value_mismatch(want["arguments"], args, "", tolerance)


class CallMatch(NamedTuple):
    """The outcome of :func:`match_calls`: ``matched``, the first ``mismatch`` explained (None
    when matched), and for each expected call the index (in ``actual``) of the call that
    matched it (None: unmatched)."""

    matched: bool
    mismatch: str | None
    pairs: tuple[int | None, ...] = ()


def _actual(actual: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for item in actual:
        if isinstance(item, str):
            out.append({"tool": item, "arguments": None})
        elif isinstance(item, Mapping) and isinstance(item.get("tool"), str):
            out.append(dict(item))
        else:
            raise ValueError(f"a call is a tool name or a dict with 'tool', not {item!r}")
    return out


def _where(calls: list[dict[str, Any]], k: int) -> str:
    step = calls[k].get("index")
    return f"call {k + 1}" + (f" (step {step})" if isinstance(step, int) else "")


def _made(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return "the agent made no calls"
    names = ", ".join(c["tool"] for c in calls[:12]) + (" ..." if len(calls) > 12 else "")
    return f"calls made: {names}"


def _not_found(want: dict[str, Any], j: int, calls: list[dict[str, Any]], start: int,
               used: set[int], tolerance: float) -> str:
    """Why expected call ``j`` has no match at or after ``start`` among the calls not ``used``
    by earlier expected calls."""
    label = f"expected call {j + 1} {show_call(want['tool'], want.get('arguments'))}"
    for k in range(start, len(calls)):
        if k not in used and calls[k]["tool"] == want["tool"]:  # the right tool, wrong arguments
            why = _call_mismatch(want, calls[k], tolerance)
            return f"{label}: {_where(calls, k)} {calls[k]['tool']}: {why}"
    fit = [k for k in range(len(calls)) if _call_mismatch(want, calls[k], tolerance) is None]
    free = [k for k in fit if k not in used]
    if free:
        last = max(used)
        return (f"{label}: wrong order: it was made as {_where(calls, free[0])}, before "
                f"{_where(calls, last)} {calls[last]['tool']} that matched an earlier expected call")
    if fit:
        return (f"{label}: only {len(fit)} such call{'s' if len(fit) > 1 else ''} made, "
                "each matched by an earlier expected call")
    return f"{label}: no call to {want['tool']}; {_made(calls)}"


def match_calls(actual: Sequence[Any], expected: Sequence[Any], mode: str = "exact", *,
                tolerance: float = 1e-6) -> CallMatch:
    """Compare the calls made (:func:`tool_sequence`'s dicts, or tool names) with the
    expected ones (tool names, or ``{"tool": name, "arguments": {...}}``).

    An expected call without ``arguments`` matches any call of that tool; with them, the
    expected arguments must be a subset of the call's (every expected key present with an
    equal value, nested objects the same way, lists item by item, numbers within
    ``tolerance``, relative or absolute). ``mode``:

    * ``exact``: the same calls in the same order, nothing more;
    * ``in_order``: the expected calls appear in this order, other calls may come between
      and around them (the earliest match of each is taken, which finds a match whenever
      one exists);
    * ``subset``: each expected call is matched by its own call, in any order, other calls
      allowed (a maximum bipartite matching, so repeated expected calls need as many calls).
    """
    if mode not in MODES:
        raise ValueError(f"unknown match mode {mode!r}; use one of {', '.join(MODES)}")
    calls = _actual(actual)
    wanted = expected_calls(list(expected))
    if mode == "exact":
        return _exact(calls, wanted, tolerance)
    if mode == "in_order":
        return _in_order(calls, wanted, tolerance)
    return _subset(calls, wanted, tolerance)


def _exact(calls: list[dict[str, Any]], wanted: list[dict[str, Any]], tolerance: float) -> CallMatch:
    pairs: list[int | None] = []
    for k in range(max(len(calls), len(wanted))):
        if k >= len(calls):
            want = wanted[k]
            return CallMatch(False, f"missing call {k + 1}: expected "
                                    f"{show_call(want['tool'], want.get('arguments'))}; the agent "
                                    f"made only {len(calls)}", tuple(pairs + [None] * (len(wanted) - k)))
        if k >= len(wanted):
            return CallMatch(False, f"extra {_where(calls, k)}: "
                                    f"{show_call(calls[k]['tool'], calls[k].get('arguments'))} "
                                    f"(expected only {len(wanted)} calls)", tuple(pairs))
        why = _call_mismatch(wanted[k], calls[k], tolerance)
        if why is not None:
            where = _where(calls, k)
            if calls[k]["tool"] != wanted[k]["tool"]:
                elsewhere = [i for i, c in enumerate(calls) if c["tool"] == wanted[k]["tool"]]
                if elsewhere:
                    why += f" ({wanted[k]['tool']} is {_where(calls, elsewhere[0])}: wrong order)"
            else:
                where += f" {calls[k]['tool']}"
            return CallMatch(False, f"{where}: {why}",
                             tuple(pairs + [None] * (len(wanted) - k)))
        pairs.append(k)
    return CallMatch(True, None, tuple(pairs))


def _in_order(calls: list[dict[str, Any]], wanted: list[dict[str, Any]],
              tolerance: float) -> CallMatch:
    pairs: list[int | None] = []
    start = 0
    for j, want in enumerate(wanted):
        k = next((k for k in range(start, len(calls))
                  if _call_mismatch(want, calls[k], tolerance) is None), None)
        if k is None:
            why = _not_found(want, j, calls, start, {p for p in pairs if p is not None},
                             tolerance)
            return CallMatch(False, why, tuple(pairs + [None] * (len(wanted) - j)))
        pairs.append(k)
        start = k + 1
    return CallMatch(True, None, tuple(pairs))


def _subset(calls: list[dict[str, Any]], wanted: list[dict[str, Any]], tolerance: float) -> CallMatch:
    fits = [[k for k, call in enumerate(calls) if _call_mismatch(want, call, tolerance) is None]
            for want in wanted]
    owner: dict[int, int] = {}  # call -> expected call it matches

    def augment(j: int, seen: set[int]) -> bool:  # Kuhn's augmenting path
        for k in fits[j]:
            if k not in seen:
                seen.add(k)
                if k not in owner or augment(owner[k], seen):
                    owner[k] = j
                    return True
        return False

    missing = [j for j in range(len(wanted)) if not augment(j, set())]
    pairs = {j: k for k, j in owner.items()}
    result = tuple(pairs.get(j) for j in range(len(wanted)))
    if not missing:
        return CallMatch(True, None, result)
    j = missing[0]
    want = wanted[j]
    if fits[j]:  # every call that fits is taken by another expected call
        n = len(fits[j])
        return CallMatch(False, f"expected call {j + 1} "
                                f"{show_call(want['tool'], want.get('arguments'))}: only {n} "
                                f"such call{'s' if n > 1 else ''} made, each matched by another "
                                "expected call", result)
    return CallMatch(False, _not_found(want, j, calls, 0, set(), tolerance), result)
