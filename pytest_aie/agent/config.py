"""An Agent's configuration, checked before anything runs.

* :func:`unknown_options`: a keyword :class:`~pytest_aie.agent.Agent` does not take
  (``prompt=``, ``timeout=``, a typo) is one :class:`~pytest_aie.errors.UsageError` naming the
  parameter meant, never silently ignored.
* :func:`check_suite`: when a suite with ``target=Agent(...)`` is built (collection, before any
  generation), every case has the agent's task (the field ``Agent(task=...)`` names, or the
  function it names runs on the case), every tool name in a case's expected calls (the
  ``tool_calls`` check's field, ``expected_tools`` by default) is one of the agent's tools, and
  the dataset marker sets nothing an Agent target would ignore (``prompt=``, ``system=``, the
  sampling arguments). Each problem is one line for the whole suite (exit 10), not one error
  per case and metric.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, Protocol, Sequence

from pytest_aie.errors import DatasetError, UsageError

__all__ = ["check_suite", "check_task", "unknown_options", "unknown_tool"]

#: what a user who writes the key most likely meant
_MEANT = {"prompt": "task", "question": "task", "input": "task", "query": "task",
          "instructions": "system", "system_prompt": "system", "max_iterations": "max_steps",
          "max_turns": "max_steps", "iterations": "max_steps", "timeout": "max_seconds",
          "time_limit": "max_seconds", "max_time": "max_seconds", "model": "(none: the agent "
          "runs on the session's model, --aie-model or the dataset marker's model=)"}
#: dataset-marker arguments an Agent target does not use, and the Agent parameter instead
_MARKER_ARGS = {"prompt": "task", "system": "system", "max_tokens": "max_tokens",
                "temperature": "temperature", "top_p": None, "stop": None, "seed": None}
_TASK_FIELDS = ("question", "task", "query", "prompt", "input", "instruction")


def unknown_options(given: Mapping[str, Any], known: Sequence[str]) -> UsageError:
    """The error for keywords ``Agent(...)`` does not take: the first, and what was meant."""
    name = sorted(given)[0]
    meant = _MEANT.get(name) or next(iter(difflib.get_close_matches(name, known, n=1)), None)
    if meant is None:
        hint = f"Agent takes {', '.join(f'{k}=' for k in known)}"
    elif meant.startswith("("):
        hint = f"drop {name}= {meant}"
    elif name in ("prompt", "question", "input", "query"):
        hint = ("write Agent(task='question'): the case field that holds each task (or "
                "task=lambda case: ...); the system prompt is Agent(system=...)")
    else:
        hint = f"write Agent({meant}=...)"
    return UsageError(f"Agent(...) got unknown keyword {name}={given[name]!r}", fix=hint)


class _Configured(Protocol):
    """What :func:`check_suite` reads of an :class:`~pytest_aie.agent.Agent`."""

    @property
    def task(self) -> Any: ...
    @property
    def tools(self) -> Sequence[Any]: ...
    @property
    def name(self) -> str | None: ...


def check_suite(agent: _Configured, cases: Sequence[Any], scorers: Sequence[Any],
                options: Mapping[str, Any]) -> None:
    """Raise one :class:`UsageError` / :class:`DatasetError` for the first problem of a suite
    whose target is ``agent`` (see the module docstring)."""
    for arg, instead in _MARKER_ARGS.items():
        if options.get(arg) is not None:
            fix = (f"drop it and write target=Agent(..., {instead}=...)" if instead != "task"
                   else "drop prompt=; the agent's task is the case field Agent(task='question') "
                        "names, or task=lambda case: ... builds it")
            if instead is None:
                fix = "drop it: an Agent target does not take it"
            raise UsageError(f"@pytest.mark.dataset({arg}=...) is not used by a target=Agent(...) "
                             "suite", fix=fix)
    for case in cases:
        check_task(agent.task, case)
    known = sorted(t.name for t in agent.tools)
    for scorer in scorers:
        names: Callable[[Any], list[str]] | None = getattr(scorer, "expected_tool_names", None)
        if names is None:
            continue
        for case in cases:
            unknown = [n for n in names(case) if n not in known]
            if unknown:
                raise unknown_tool(case, getattr(scorer, "field", "expected_tools"), unknown[0],
                                    known, agent.name)


def _where(case: Any) -> str:
    source = getattr(case, "source", "")
    return (f"{source}: " if source else "") + f"case {getattr(case, 'id', '')!r}"


def check_task(task: str | Callable[[Any], str], case: Any) -> None:
    """One :class:`DatasetError` when ``case`` has no task for ``Agent(task=task)``."""
    if callable(task):
        try:
            text = task(case)
        except Exception as exc:  # noqa: BLE001 - the user's function: its error, one line
            raise DatasetError(f"{_where(case)}: Agent(task=...) raised {type(exc).__name__}: "
                               f"{exc}", fix="make task=... work on every case") from None
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{_where(case)}: Agent(task=...) gave {text!r}, not a task",
                               fix="make task=... return the task's text for every case")
        return
    fields = getattr(case, "fields", None)
    if not isinstance(fields, Mapping) or task in fields:
        return
    have = [k for k in fields if k not in ("id", "tags")]
    other = next((f for f in _TASK_FIELDS if f in fields), None)
    fix = (f"name the field that holds the task: Agent(task={other!r})" if other else
           f"add {task!r} to every case, or name the field with Agent(task='...') "
           "(task=lambda case: ... builds it)")
    raise DatasetError(f"{_where(case)} has no field {task!r}, the agent's task "
                       f"(Agent(task={task!r}); its fields: {', '.join(have) or 'none'})", fix=fix)


def unknown_tool(case: Any, field: str, name: str, known: list[str],
                 agent: str | None = None) -> UsageError:
    """The error for an expected call of a tool the agent does not have (one line, exit 10)."""
    close = difflib.get_close_matches(name, known, n=1)
    fix = (f"did you mean {close[0]!r}? " if close else "") + \
        f"name one of the agent's tools in {field}, or give the agent that tool"
    who = f"agent {agent!r}" if agent else "the agent"
    return UsageError(f"{_where(case)}: {field} names tool {name!r}, which {who} does not have "
                      f"(its tools: {', '.join(known) or 'none'})", fix=fix)
