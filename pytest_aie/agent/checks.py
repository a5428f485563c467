"""Checks on an agent's trajectory: pure functions on the trajectory dict.

A trajectory is the dict of ``Generation.trajectory`` (``Trajectory.to_dict()``; the format is in
:mod:`pytest_aie.agent.trajectory`). Nothing here runs a model or a tool; every function reads the
dict and returns plain data (dicts, lists, numbers) that can go into a score's ``details``.

* :func:`tool_sequence`: the calls the agent made, in order (every step that names a tool, also
  calls that failed, were refused or named an unknown tool: the model made them).
* :func:`match_calls`: those calls against an expected sequence (``exact``, ``in_order``,
  ``subset``), with the first mismatch explained (in :mod:`pytest_aie.agent.matching`).
* :func:`invalid_arguments`: each call's arguments against its tool's JSON schema (``jsonschema``);
  a call to a tool the agent was not offered is invalid.
* :func:`find_loops`: the same tool with the same arguments called ``repeats`` times.
* :func:`no_progress`: the run's last ``window`` steps produced no new tool result.
* :func:`tool_errors`, :func:`refusals`, :func:`steps`, :func:`tokens`, :func:`offered_tools`.

A malformed trajectory (no ``steps`` list, a step that is not a dict) raises :class:`ValueError`.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from pytest_aie.agent.matching import MODES, CallMatch, expected_calls, match_calls, show_call
from pytest_aie.agent.tools import arguments_problem, schema_validator

__all__ = ["CallMatch", "MODES", "expected_calls", "find_loops", "invalid_arguments",
           "match_calls", "no_progress", "offered_tools", "refusals", "show_call", "steps", "tokens",
           "tool_errors", "tool_sequence"]

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


def offered_tools(traj: Mapping[str, Any]) -> list[str]:
    """The names of the tools the agent was offered (``traj["tools"]``), in their order."""
    return list(_schemas(traj))


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
        validator = self._built.get(tool)
        if validator is None:
            validator = self._built[tool] = schema_validator(self.schemas[tool], f"tool {tool!r}")
        return arguments_problem(validator, arguments)


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
