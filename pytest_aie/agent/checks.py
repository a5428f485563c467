"""Checks on an agent's trajectory: pure functions on the trajectory dict.

A trajectory is the dict of ``Generation.trajectory`` (``Trajectory.to_dict()``; the format is in
:mod:`pytest_aie.agent.trajectory`). Nothing here runs a model or a tool; every function reads the
dict and returns plain data (dicts, lists, numbers) that can go into a score's ``details``.

* :func:`tool_sequence`: the calls the agent made, in order (every step that names a tool, also
  calls that failed, were refused or named an unknown tool: the model made them).
* :func:`match_calls`: those calls against an expected sequence (``exact``, ``in_order``,
  ``subset``), with the first mismatch explained.
* :func:`invalid_arguments`: each call's arguments against its tool's JSON schema (``jsonschema``);
  a call to a tool the agent was not offered is invalid.
* :func:`find_loops`: the same tool with the same arguments called ``repeats`` times.
* :func:`no_progress`: the run's last ``window`` steps produced no new tool result.
* :func:`tool_errors`, :func:`refusals`, :func:`steps`, :func:`tokens`.

A malformed trajectory (no ``steps`` list, a step that is not a dict) raises :class:`ValueError`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, NamedTuple, Sequence

__all__ = ["CallMatch", "MODES", "expected_calls", "find_loops", "invalid_arguments",
           "match_calls", "no_progress", "refusals", "show_call", "steps", "tokens",
           "tool_errors", "tool_sequence"]

MODES = ("exact", "in_order", "subset")
_SHOW = 80  # characters of a call shown in a message at most


# ---------------------------------------------------------------------------- reading


def _steps(traj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(traj, Mapping):
        raise ValueError(f"a trajectory is a dict, not {type(traj).__name__}")
    raw = traj.get("steps")
    if not isinstance(raw, (list, tuple)):
        raise ValueError("the trajectory has no 'steps' list")
    for n, step in enumerate(raw):
        if not isinstance(step, Mapping):
            raise ValueError(f"step {n} of the trajectory is a {type(step).__name__}, not a dict")
    return list(raw)


def _index(step: Mapping[str, Any], n: int) -> int:
    index = step.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else n


def tool_sequence(traj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls made, in order: ``[{"index": step index, "tool": name, "arguments": ...}]``
    for every step that names a tool (also calls that failed, were refused, or named a tool
    the agent was not offered); the final answer and unreadable replies are not calls."""
    return [{"index": _index(s, n), "tool": str(s["tool"]), "arguments": s.get("arguments")}
            for n, s in enumerate(_steps(traj)) if s.get("tool") is not None]


def steps(traj: Mapping[str, Any]) -> int:
    """How many steps the run took (model replies, and each call of a reply with several)."""
    return len(_steps(traj))


def tokens(traj: Mapping[str, Any]) -> dict[str, int] | None:
    """``{"prompt", "completion", "total"}`` tokens of the run, or None when nothing reports
    them (an agent of your own that records no token counts): the steps' counts when any step
    has one, else the trajectory's own totals when they are above zero."""
    rows = _steps(traj)
    if any(s.get(k) is not None for s in rows for k in ("prompt_tokens", "completion_tokens")):
        prompt = sum(int(s.get("prompt_tokens") or 0) for s in rows)
        completion = sum(int(s.get("completion_tokens") or 0) for s in rows)
    else:
        prompt = int(traj.get("prompt_tokens") or 0)
        completion = int(traj.get("completion_tokens") or 0)
        if prompt + completion <= 0:
            return None
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


# ---------------------------------------------------------------------------- expected calls


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


# ---------------------------------------------------------------------------- arguments


def _schemas(traj: Mapping[str, Any]) -> dict[str, Any]:
    """Tool name -> its parameters' JSON schema, from the OpenAI-format tool schemas in
    ``traj["tools"]`` (a bare ``{"name", "parameters"}`` is read too)."""
    out: dict[str, Any] = {}
    for entry in traj.get("tools") or ():
        if not isinstance(entry, Mapping):
            continue
        inner = entry.get("function")
        fn: Mapping[str, Any] = inner if isinstance(inner, Mapping) else entry
        name = fn.get("name")
        if isinstance(name, str):
            params = fn.get("parameters")
            out[name] = params if isinstance(params, Mapping) else {"type": "object"}
    return out


class _Validators:
    """jsonschema validators per tool, built on first use (jsonschema imported lazily)."""

    def __init__(self, traj: Mapping[str, Any]) -> None:
        self.schemas = _schemas(traj)
        self._built: dict[str, Any] = {}

    def problem(self, tool: str, arguments: Any) -> str | None:
        """Why a call's arguments are invalid (None when valid)."""
        if tool not in self.schemas:
            offered = ", ".join(sorted(self.schemas)) or "(none)"
            return f"unknown tool {tool!r}; the agent was offered: {offered}"
        if not isinstance(arguments, Mapping):
            return f"arguments must be a JSON object, got {show_call(tool, arguments)}"
        import jsonschema

        validator = self._built.get(tool)
        if validator is None:
            schema = self.schemas[tool]
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"tool {tool!r}: its parameters are not a valid JSON Schema: "
                                 f"{exc.message}") from None
            validator = self._built[tool] = cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"invalid arguments{f' at {where!r}' if where else ''}: {error.message}"


def invalid_arguments(traj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls whose arguments fail their tool's JSON schema (from ``traj["tools"]``), each
    ``{"index", "tool", "arguments", "error"}`` with jsonschema's message (the best match, and
    where in the arguments); arguments that are not a JSON object, and calls to a tool the
    agent was not offered, are invalid too. :class:`ValueError` when a tool's own schema is not
    valid JSON Schema."""
    calls = tool_sequence(traj)
    check = _Validators(traj)
    out = []
    for call in calls:
        problem = check.problem(call["tool"], call["arguments"])
        if problem is not None:
            out.append({**call, "error": problem})
    return out


# ---------------------------------------------------------------------------- errors


def tool_errors(traj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls that failed: each ``{"index", "tool", "arguments", "error", "kind"}`` with
    ``kind`` one of ``refused`` (a state-changing tool refused), ``unknown_tool``,
    ``invalid_arguments`` (against the tool's schema) or ``raised`` (the tool raised, or the
    agent recorded another error for the call). Unreadable replies are not calls (see
    :func:`no_progress`)."""
    rows = _steps(traj)
    check = _Validators(traj)
    out = []
    for n, step in enumerate(rows):
        if step.get("tool") is None or not (step.get("error") or step.get("refused")):
            continue
        tool, args = str(step["tool"]), step.get("arguments")
        if step.get("refused"):
            kind = "refused"
        elif tool not in check.schemas:
            kind = "unknown_tool"
        elif check.problem(tool, args) is not None:
            kind = "invalid_arguments"
        else:
            kind = "raised"
        out.append({"index": _index(step, n), "tool": tool, "arguments": args,
                    "error": str(step.get("error") or "refused"), "kind": kind})
    return out


def refusals(traj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The calls refused (a tool marked as changing state, in a run that does not allow
    state changes): ``{"index", "tool", "arguments", "error"}`` each."""
    return [{"index": _index(s, n), "tool": s.get("tool"), "arguments": s.get("arguments"),
             "error": s.get("error")} for n, s in enumerate(_steps(traj)) if s.get("refused")]


# ---------------------------------------------------------------------------- loops and progress


def _canonical(value: Any) -> str:
    """A key for equal arguments: JSON with sorted keys, whole floats as integers."""
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, Mapping):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True, default=str)


def find_loops(traj: Mapping[str, Any], repeats: int = 3) -> dict[str, Any] | None:
    """The first call (same tool, same arguments: equal JSON, key order and ``1`` vs ``1.0``
    aside) made ``repeats`` times in the run, **consecutive or not** (an agent alternating
    between two calls loops too), whatever each call's outcome; None when there is none.
    The call is ``{"tool", "arguments", "count" (times made in the whole run), "indices"
    (its steps)}``; "first" is the one that reached ``repeats`` earliest."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats={repeats!r} must be a whole number >= 2")
    calls = tool_sequence(traj)
    seen: dict[tuple[str, str], list[int]] = {}
    first: tuple[str, str] | None = None
    for call in calls:
        key = (call["tool"], _canonical(call["arguments"]))
        seen.setdefault(key, []).append(call["index"])
        if first is None and len(seen[key]) == repeats:
            first = key
    if first is None:
        return None
    made = next(c for c in calls if (c["tool"], _canonical(c["arguments"])) == first)
    return {"tool": made["tool"], "arguments": made["arguments"], "count": len(seen[first]),
            "indices": seen[first]}


def no_progress(traj: Mapping[str, Any], window: int = 3) -> dict[str, Any] | None:
    """Whether the run ended stuck: its **last** ``window`` steps made no progress. None when
    it made progress (or has fewer than ``window`` steps), else ``{"window", "steps": [{"index",
    "why"}]}`` for those steps.

    A step makes progress when it gives the final answer (no tool, no error), or when its tool
    call succeeded with a result this tool had not returned before in the run (the same tool
    and result text as an earlier step is nothing new). A call that failed (raised, refused,
    unknown tool, invalid arguments) and an unreadable reply make no progress."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} must be a whole number >= 1")
    rows = _steps(traj)
    seen: dict[tuple[str, str], int] = {}
    why: list[tuple[int, str | None]] = []  # (index, None: progress)
    for n, step in enumerate(rows):
        index, tool, error = _index(step, n), step.get("tool"), step.get("error")
        if tool is None:
            why.append((index, f"unreadable reply: {error}" if error else None))
        elif error or step.get("refused"):
            why.append((index, f"{tool} failed: {error or 'refused'}"))
        else:
            key = (str(tool), str(step.get("result")))
            if key in seen:
                why.append((index, f"{tool} returned the same result as step {seen[key]}"))
            else:
                seen[key] = index
                why.append((index, None))
    tail = why[-window:]
    if len(tail) < window or any(reason is None for _, reason in tail):
        return None
    return {"window": window, "steps": [{"index": i, "why": r} for i, r in tail]}
