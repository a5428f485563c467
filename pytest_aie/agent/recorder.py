"""Trajectories of your own agent: :class:`Recorder` wraps its tools and records every call.

::

    def my_agent(case):
        rec = Recorder([search, calculate], task=case["question"])
        answer = run_my_framework(case["question"], tools=rec.tools)   # or rec.call("search", q=...)
        return rec.finish(answer)                                        # a Trajectory

``@pytest.mark.dataset("tasks.jsonl", target=my_agent)`` (or ``evaluate(rec.finish(answer))`` in a
test body) then hands the trajectory to the agent checks like a built-in agent's. Each call is a
step with its arguments, result or exception, and seconds (since the previous step ended: the
agent's own work and model call, then the tool); :meth:`Recorder.output` attaches a model reply
and its tokens to the next step. A call is checked before it is made: an unknown tool, arguments
that fail the tool's schema and a state-changing tool (refused unless
``allow_state_changes=True``) are recorded and raise :class:`ToolCallError` to the agent, as does
the tool's own exception (re-raised as it is). :meth:`Recorder.finish` adds the final answer as the
last step (``tool: None``) and returns the :class:`Trajectory` (``protocol: "custom"``).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from typing import Any, Callable, Iterable

from pytest_aie.agent.loop import _as_text
from pytest_aie.agent.tools import Tool, as_tools
from pytest_aie.agent.trajectory import Step, Stopped, Trajectory

__all__ = ["Recorder", "ToolCallError"]


class ToolCallError(Exception):
    """A call the recorder did not make: an unknown tool, bad arguments, or a refused tool."""


class Recorder:
    """Wraps tools so that every call is recorded; see the module docstring."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]], *, task: str = "",
                 allow_state_changes: bool = False) -> None:
        self._tools = as_tools(tools)
        self._by_name = {t.name: t for t in self._tools}
        self.task = task
        self.allow_state_changes = allow_state_changes
        self.steps: list[Step] = []
        self._lock = threading.Lock()
        self._mark = time.perf_counter()
        self._pending: tuple[str, int | None, int | None] | None = None
        #: the wrapped tools, with the functions' names, docstrings and signatures
        self.tools: list[Callable[..., Any]] = [self._wrapped(t) for t in self._tools]

    def _wrapped(self, t: Tool) -> Callable[..., Any]:
        names = list(inspect.signature(t.fn).parameters)

        @functools.wraps(t.fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            # positional arguments by the parameters' order (extras fail the schema check)
            positional = {names[i] if i < len(names) else f"_arg{i}": a for i, a in enumerate(args)}
            return self.call(t.name, **positional, **kwargs)

        return call

    def output(self, text: str, *, prompt_tokens: int | None = None,
               completion_tokens: int | None = None) -> None:
        """The model's reply (and its tokens) that led to the next call or the answer."""
        with self._lock:
            self._pending = (text, prompt_tokens, completion_tokens)

    def _step(self, tool: str | None, arguments: Any) -> Step:
        """A new step (under the lock), taking the pending model output."""
        text, prompt, completion = self._pending or ("", None, None)
        self._pending = None
        step = Step(index=len(self.steps), output=text, tool=tool, arguments=arguments,
                    prompt_tokens=prompt, completion_tokens=completion)
        self.steps.append(step)
        return step

    def _close(self, step: Step) -> None:
        with self._lock:
            now = time.perf_counter()
            step.seconds = now - self._mark
            self._mark = now

    def call(self, name: str, /, **arguments: Any) -> Any:
        """Call tool ``name`` with keyword ``arguments``, recording the call as a step."""
        with self._lock:
            step = self._step(name, dict(arguments))
        tool = self._by_name.get(name)
        if tool is None:
            step.error = (f"unknown tool {name!r}; the tools are: "
                          f"{', '.join(sorted(self._by_name)) or '(none)'}")
        elif (problem := tool.validate(dict(arguments))) is not None:
            step.error = problem
        elif tool.changes_state and not self.allow_state_changes:
            step.refused = True
            step.error = f"refused: {name} changes state, and this run does not allow state changes"
        if step.error is not None:
            self._close(step)
            raise ToolCallError(step.error)
        try:
            result = tool.call(dict(arguments))  # type: ignore[union-attr]
        except Exception as exc:
            step.error = f"{type(exc).__name__}: {exc}"
            self._close(step)
            raise
        step.result = _as_text(result)
        self._close(step)
        return result

    def finish(self, answer: str | None, *, stopped: Stopped | None = None,
               error: str | None = None) -> Trajectory:
        """The trajectory: the calls so far, then the answer as the last step (when given).
        ``stopped`` defaults to ``"answer"`` with an answer, else ``"error"``."""
        with self._lock:
            steps = list(self.steps)
            if answer is not None:
                step = self._step(None, None)
                steps.append(step)
        if answer is not None:
            self._close(step)
        return Trajectory(task=self.task, protocol="custom", tools=[t.schema() for t in self._tools],
                          state_changing=[t.name for t in self._tools if t.changes_state],
                          steps=steps, answer=answer,
                          stopped=stopped or ("answer" if answer is not None else "error"),
                          error=error if error is not None or answer is not None
                          else "the agent gave no answer")
