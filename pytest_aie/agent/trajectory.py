"""An agent's run, step by step: :class:`Trajectory` and its :class:`Step`\\ s.

``Trajectory.to_dict()`` is the format that rides on ``Generation.trajectory``, into the results
log and the report's drill-down, and that the agent checks read::

    {"task": str, "protocol": "native" | "text" | "custom",
     "tools": [OpenAI tool schema, ...], "state_changing": [tool names],
     "steps": [{"index", "output", "tool", "arguments", "result", "error", "refused",
                "prompt_tokens", "completion_tokens", "seconds"}, ...],
     "answer": str | None, "stopped": "answer" | "max_steps" | "max_seconds" | "error",
     "error": str | None, "prompt_tokens": int, "completion_tokens": int, "seconds": float}

A step that calls no tool and gives the final answer has ``tool: None`` and is the last step; a
step whose reply could not be read has ``tool: None`` and an ``error``; an unknown tool is a step
with ``tool`` set to that name and ``error`` "unknown tool ...".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_aie.engines.base import Generation, Timings

__all__ = ["Step", "Trajectory"]

Stopped = Literal["answer", "max_steps", "max_seconds", "error"]


@dataclass
class Step:
    """One step: the model's reply and the tool call it made (if any), with its outcome."""

    index: int
    output: str
    tool: str | None = None
    arguments: dict[str, Any] | str | None = None  # str: arguments that were not a JSON object
    result: str | None = None
    error: str | None = None  # the tool's exception, or why the call was not made
    refused: bool = False  # a state-changing tool refused in an eval run
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "output": self.output, "tool": self.tool,
                "arguments": self.arguments, "result": self.result, "error": self.error,
                "refused": self.refused, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(index=int(data["index"]), output=str(data.get("output") or ""),
                   tool=data.get("tool"), arguments=data.get("arguments"),
                   result=data.get("result"), error=data.get("error"),
                   refused=bool(data.get("refused", False)),
                   prompt_tokens=data.get("prompt_tokens"),
                   completion_tokens=data.get("completion_tokens"),
                   seconds=float(data.get("seconds") or 0.0))


@dataclass
class Trajectory:
    """An agent's whole run on one task."""

    task: str
    protocol: Literal["native", "text", "custom"]
    tools: list[dict[str, Any]] = field(default_factory=list)
    state_changing: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None
    stopped: Stopped = "error"
    error: str | None = None
    #: why the run could not be measured (the model failed on a request): the case's error
    failure: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens or 0 for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens or 0 for s in self.steps)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "protocol": self.protocol, "tools": list(self.tools),
                "state_changing": list(self.state_changing),
                "steps": [s.to_dict() for s in self.steps], "answer": self.answer,
                "stopped": self.stopped, "error": self.error,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        return cls(task=str(data.get("task", "")), protocol=data.get("protocol", "custom"),
                   tools=list(data.get("tools") or []),
                   state_changing=list(data.get("state_changing") or []),
                   steps=[Step.from_dict(s) for s in data.get("steps") or []],
                   answer=data.get("answer"), stopped=data.get("stopped", "error"),
                   error=data.get("error"))

    def to_generation(self, *, engine: str = "agent", model: str = "") -> Generation:
        """The run as a generation: its text is the answer (``""`` when none), its
        ``trajectory`` this run's dict. ``finish_reason`` is ``"stop"`` when the agent answered,
        else ``"error"``; ``error`` is set only when the run could not be measured (the model
        failed on a request), not when the agent ran out of budget."""
        return Generation(
            text=self.answer or "",
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            finish_reason="stop" if self.stopped == "answer" else "error",
            engine=engine, model=model, error=self.failure,
            timings=Timings(e2e_s=self.seconds), trajectory=self.to_dict())
