"""The agent loop: tools, a model, and a batch of tasks advancing in lockstep.

``Agent(tools).run(model, tasks)`` runs one agent per task. Every round, each unfinished agent
sends its conversation so far, and all of them go to the model in **one**
``model.generate_many`` call (so a suite of agents runs at the engine's batched speed); then each
agent reads its reply, runs the tool it asked for, and records the step. A round's seconds are
the engine call's wall time, plus, for each agent, its own tool's time.

Per agent:

* **protocol**: native tool calling where the engine has it (``Capability.TOOLS``), else the text
  protocol of :mod:`pytest_aie.agent.protocol` (``protocol="auto"``; or force ``"native"`` /
  ``"text"``);
* **budgets**: at most ``max_steps`` steps (``stopped: "max_steps"``) and ``max_seconds`` of its
  own time, the sum of its steps' seconds (``stopped: "max_seconds"``), checked after each step;
  a tool runs in a worker thread and is given only the time left, so a tool that blocks ends
  the run at ``max_seconds`` with the step's error "timed out" (a Python thread cannot be
  killed: the abandoned call runs on in the background, see
  :func:`~pytest_aie.agent.tools.call_within`);
* **failures are steps**: an unknown tool, arguments that fail the tool's JSON schema
  (``jsonschema``), a tool that raises, a state-changing tool refused (``refused: True`` unless
  ``allow_state_changes=True``) are recorded with the step's ``error`` and fed back to the model,
  and the run goes on; an unreadable reply is fed back once (a second in a row ends the run); a
  request the model failed on ends the run and leaves the case unmeasured.

An Agent is also a *batch target*: ``@pytest.mark.dataset("tasks.jsonl", target=Agent(...))``
runs every case's task (``task="question"``: the case field, or a function of the case) and
hands each trajectory, as a Generation, to the suite's eval markers. When that suite is built,
:meth:`Agent.check_suite` checks every case's task and expected tool names against the agent
(:mod:`pytest_aie.agent.config`): a problem is one line for the suite, before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence, cast

from pytest_aie.agent import config
from pytest_aie.agent.protocol import (
    PROTOCOL_VERSION,
    REQUIRED_NOTE,
    UNPARSEABLE_FEEDBACK,
    assistant_call_message,
    parse_reply,
    reply_schema,
    result_message,
    text_system_prompt,
    tool_message,
)
from pytest_aie.agent.tools import Tool, ToolTimeout, as_tools, call_within
from pytest_aie.agent.trajectory import Step, Stopped, Trajectory
from pytest_aie.engines.base import Capability, Generation, Request
from pytest_aie.errors import UsageError, whole_number

__all__ = ["Agent"]

Protocol = Literal["native", "text"]
#: the clock that steps' seconds are read from (tests replace it with a fake clock)
_clock = time.perf_counter
_PARAMETERS = ("tools", "system", "task", "max_steps", "max_seconds", "allow_state_changes",
               "protocol", "max_tokens", "temperature", "name", "constrained", "tool_choice")


@dataclass
class _Run:
    """One agent's state while the batch runs."""

    trajectory: Trajectory
    messages: list[dict[str, Any]]
    done: bool = False
    told_format: bool = False  # the last reply was unreadable and the model was told so

    def finish(self, stopped: Stopped, error: str | None = None, answer: str | None = None,
               failure: str | None = None) -> None:
        self.trajectory.stopped = stopped
        self.trajectory.error = error
        self.trajectory.answer = answer
        self.trajectory.failure = failure
        self.done = True


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


class Agent:
    """A tool-using agent; see the module docstring."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]], *, system: str | None = None,
                 task: str | Callable[[Any], str] = "question", max_steps: int = 8,
                 max_seconds: float = 60.0, allow_state_changes: bool = False,
                 protocol: Literal["auto", "native", "text"] = "auto", max_tokens: int = 256,
                 temperature: float = 0.0, name: str | None = None,
                 constrained: bool | Literal["auto"] = "auto",
                 tool_choice: Literal["auto", "required"] = "auto", **unknown: Any) -> None:
        if unknown:  # prompt=, timeout=, a typo: one line naming the parameter meant
            raise config.unknown_options(unknown, _PARAMETERS)
        self.tools = as_tools(tools)
        self._by_name = {t.name: t for t in self.tools}
        whole_number("max_steps", max_steps, example=8)
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) \
                or not max_seconds > 0:
            raise UsageError(f"max_seconds={max_seconds!r} must be a number > 0",
                             fix="write e.g. max_seconds=60")
        if protocol not in ("auto", "native", "text"):
            raise UsageError(f"protocol={protocol!r} is not one of 'auto', 'native', 'text'",
                             fix="leave protocol='auto': native tool calls where the engine has them")
        if not (isinstance(task, str) or callable(task)):
            raise UsageError(f"task={task!r} must be a case field name or a function of the case",
                             fix="write task='question' or task=lambda case: ...")
        self.system = system
        self.task = task
        self.max_steps = max_steps
        self.max_seconds = float(max_seconds)
        self.allow_state_changes = allow_state_changes
        self.protocol = protocol
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = name
        if constrained not in ("auto", True, False):
            raise UsageError(f"constrained={constrained!r} is not 'auto', True or False",
                             fix="leave constrained='auto': replies constrained to the protocol "
                                 "where the engine can")
        self.constrained = constrained
        if tool_choice not in ("auto", "required"):
            raise UsageError(f"tool_choice={tool_choice!r} is not 'auto' or 'required'",
                             fix="write tool_choice='required' to make the first reply a tool call")
        self.tool_choice = tool_choice

    # ------------------------------------------------------------------ batch target

    @property
    def target_label(self) -> str:
        return f"agent:{self.name or 'agent'}"

    def settings(self) -> dict[str, Any]:
        from pytest_aie._util.digest import code_digest

        return {"system": self.system,
                "task": self.task if isinstance(self.task, str) else code_digest(self.task),
                "max_steps": self.max_steps, "max_seconds": self.max_seconds,
                "allow_state_changes": self.allow_state_changes, "protocol": self.protocol,
                "max_tokens": self.max_tokens, "temperature": self.temperature,
                "constrained": self.constrained, "tool_choice": self.tool_choice,
                "protocol_version": PROTOCOL_VERSION}

    def target_identity(self, model: Any) -> str:
        """What the agent's outputs depend on: its tools' schemas and code, its settings and
        system prompt, and the model."""
        blob = {"tools": [{"schema": t.schema(), "code": t.digest(),
                           "changes_state": t.changes_state} for t in self.tools],
                "settings": self.settings(),
                "model": model.key if model is not None else None}
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def task_text(self, case: Any) -> str:
        """The task of one case (a plain string is its own task)."""
        if isinstance(case, str):
            return case
        if callable(self.task):
            return str(self.task(case))
        try:
            return str(case[self.task])
        except (KeyError, TypeError):
            raise UsageError(f"case {getattr(case, 'id', '')!r} has no field {self.task!r} "
                             "for the agent's task",
                             fix="give every case that field, or Agent(task=...) names another") \
                from None

    def check_suite(self, cases: Sequence[Any], scorers: Sequence[Any],
                    options: Mapping[str, Any]) -> None:
        """Called when a suite with this target is built, before anything runs: every case's
        task, the tool names its expected calls name, and the dataset marker's ``options``
        (:func:`pytest_aie.agent.config.check_suite`); the first problem is one error."""
        config.check_suite(self, cases, scorers, options)

    def run_cases(self, cases: Sequence[Any], model: Any) -> list[Generation]:
        """Run every case's task as one batch; each trajectory as a Generation. A case
        without a task is a configuration error for the whole suite (one
        :class:`~pytest_aie.errors.DatasetError`), not one failure per case."""
        for case in cases:
            config.check_task(self.task, case)
        return [traj.to_generation(engine="agent", model=getattr(model, "name", ""))
                for traj in self.run(model, list(cases))]

    # ------------------------------------------------------------------ the loop

    def _protocol(self, model: Any) -> Protocol:
        native = bool(model.engine.supports(Capability.TOOLS))
        if self.protocol == "native" and not native:
            raise UsageError(f"protocol='native' but engine {model.engine.name!r} has no native "
                             "tool calling", fix="use protocol='auto' or 'text'")
        if self.protocol == "text":
            return "text"
        return "native" if native else "text"

    def _start(self, task: str, protocol: Protocol) -> list[dict[str, Any]]:
        schemas = [t.schema() for t in self.tools]
        system = self.system
        if self.tool_choice == "required":
            system = f"{system}\n\n{REQUIRED_NOTE}" if system else REQUIRED_NOTE
        if protocol == "text":
            return [{"role": "system", "content": text_system_prompt(schemas, system)},
                    {"role": "user", "content": task}]
        first = [{"role": "system", "content": system}] if system else []
        return [*first, {"role": "user", "content": task}]

    def _request(self, model: Any, run: _Run, protocol: Protocol) -> Request:
        request: Request = model.request(cast(Sequence[dict[str, str]], run.messages),
                                          max_tokens=self.max_tokens,
                                          temperature=self.temperature)
        if protocol == "native":
            request = dataclasses.replace(request, tools=tuple(t.schema() for t in self.tools))
        elif self._constrain(model):
            request = dataclasses.replace(
                request, output_schema=reply_schema(
                    [t.schema() for t in self.tools],
                    answer=not (self.tool_choice == "required" and not run.trajectory.steps)))
        return request

    def _constrain(self, model: Any) -> bool:
        """Whether text-protocol replies are constrained to :func:`reply_schema`."""
        can = bool(model.engine.supports(Capability.SCHEMA))
        if self.constrained is True and not can:
            raise UsageError(f"constrained=True but engine {model.engine.name!r} cannot "
                             "constrain its output to a JSON schema",
                             fix="use constrained='auto' (or False), or an engine with "
                                 "constrained decoding (hf with xgrammar, vllm)")
        return can and self.constrained is not False

    def run(self, model: Any, tasks: Sequence[Any]) -> list[Trajectory]:
        """One trajectory per task (a string, or a case), all advancing one step per engine call."""
        if isinstance(tasks, str):
            raise UsageError("Agent.run takes a list of tasks", fix="write run(model, [task])")
        if not tasks:
            return []
        protocol = self._protocol(model)
        schemas = [t.schema() for t in self.tools]
        changing = [t.name for t in self.tools if t.changes_state]
        runs = []
        for task in tasks:
            text = self.task_text(task)
            runs.append(_Run(Trajectory(task=text, protocol=protocol, tools=schemas,
                                        state_changing=changing),
                             self._start(text, protocol)))
        active = list(runs)
        round_no = 0
        while active:
            round_no += 1
            requests = [self._request(model, r, protocol) for r in active]
            started = _clock()
            generations = model.generate_many(requests,
                                              label=f"{self.target_label} step {round_no}")
            took = _clock() - started
            for run, gen in zip(active, generations):
                self._advance(run, gen, took, protocol)
            active = [r for r in active if not r.done]
        return [r.trajectory for r in runs]

    def _advance(self, run: _Run, gen: Generation, took: float, protocol: Protocol) -> None:
        steps = run.trajectory.steps
        step = Step(index=len(steps), output=gen.text, prompt_tokens=gen.prompt_tokens,
                    completion_tokens=gen.completion_tokens, seconds=took)
        if gen.error is not None:
            step.error = f"the model failed: {gen.error}"
            steps.append(step)
            run.finish("error", error=step.error, failure=step.error)
            return
        if protocol == "native":
            self._native(run, gen, step)
        else:
            self._text(run, gen, step)
        if run.done:
            return
        if len(steps) >= self.max_steps:
            run.finish("max_steps", error=f"no answer after {len(steps)} steps "
                                          f"(max_steps={self.max_steps})")
        elif run.trajectory.seconds >= self.max_seconds:
            self._out_of_time(run)

    def _text(self, run: _Run, gen: Generation, step: Step) -> None:
        reply = parse_reply(gen.text)
        run.trajectory.steps.append(step)
        run.messages.append({"role": "assistant", "content": gen.text})
        if reply.kind == "answer":
            run.finish("answer", answer=reply.answer)
            return
        if reply.kind == "unparseable":
            step.error = 'unparseable reply: no JSON object with "tool" or "answer"'
            if run.told_format:
                run.finish("error", error="unparseable reply again after being told the format")
                return
            run.told_format = True
            run.messages.append({"role": "user", "content": UNPARSEABLE_FEEDBACK})
            return
        run.told_format = False
        assert reply.tool is not None
        self._call(run, step, reply.tool, reply.arguments)
        run.messages.append(result_message(reply.tool, step.result, step.error))

    def _native(self, run: _Run, gen: Generation, step: Step) -> None:
        steps = run.trajectory.steps
        calls = gen.tool_calls or []
        if not calls:
            steps.append(step)
            run.finish("answer", answer=gen.text.strip())
            return
        room = self.max_steps - len(steps)
        made = calls[:room]
        run.messages.append(assistant_call_message(gen.text, made))
        for k, call in enumerate(made):
            this = step if k == 0 else Step(index=len(steps), output="")
            steps.append(this)
            self._call(run, this, str(call.get("name") or ""), call.get("arguments"))
            run.messages.append(tool_message(call, this.result, this.error))
            if run.done:  # the time budget ran out in that call: the rest are not made
                return
        if len(calls) > room:
            run.finish("max_steps", error=f"no answer after {len(steps)} steps "
                                          f"(max_steps={self.max_steps}); "
                                          f"{len(calls) - room} more calls of the last reply "
                                          "not made")

    def _out_of_time(self, run: _Run, why: str = "") -> None:
        """End ``run`` at its ``max_seconds`` budget."""
        run.finish("max_seconds", error=f"no answer after {run.trajectory.seconds:.2f} s "
                                        f"(max_seconds={self.max_seconds:g}){why}")

    def _call(self, run: _Run, step: Step, name: str, arguments: Any) -> None:
        """Run one requested call and record its outcome in ``step``; the tool gets the time
        left of ``max_seconds`` (a call still running then ends the run)."""
        step.tool = name
        step.arguments = arguments if isinstance(arguments, (dict, str)) else _as_text(arguments)
        tool = self._by_name.get(name)
        if tool is None:
            step.error = (f"unknown tool {name!r}; the tools are: "
                          f"{', '.join(sorted(self._by_name)) or '(none)'}")
            return
        problem = tool.validate(arguments)
        if problem is not None:
            step.error = problem
            return
        if tool.changes_state and not self.allow_state_changes:
            step.refused = True
            step.error = (f"refused: {name} changes state, and this run does not allow state "
                          "changes")
            return
        left = self.max_seconds - run.trajectory.seconds
        if left <= 0:
            step.error = f"not called: no time left (max_seconds={self.max_seconds:g})"
            self._out_of_time(run)
            return
        started = _clock()
        timed_out = False
        try:
            step.result = _as_text(call_within(tool, cast(dict[str, Any], arguments), left))
        except ToolTimeout:
            timed_out = True
            step.error = (f"timed out: {name} did not return within the {left:.2f} s left "
                          f"(max_seconds={self.max_seconds:g}); the call was abandoned")
        except Exception as exc:  # noqa: BLE001 - a failing tool is a step, fed back to the model
            step.error = f"{type(exc).__name__}: {exc}"
        finally:
            step.seconds += _clock() - started
        if timed_out:
            self._out_of_time(run, f": {name} was still running and was abandoned")
