"""Agents that call tools, and their trajectories.

* :class:`Agent`: a tool-using agent loop on the session's model, batched across tasks (every
  unfinished agent advances one step per engine call); also a batch target for
  ``@pytest.mark.dataset(..., target=Agent(...))``.
* :func:`tool` / :class:`Tool`: typed Python functions as JSON tool schemas.
* :class:`Trajectory` / :class:`Step`: a run step by step (``Generation.trajectory`` holds its dict).
* :class:`Recorder`: the trajectory of your own agent, by wrapping its tools.

Importing this package loads no model library (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_aie.agent.loop import Agent
    from pytest_aie.agent.recorder import Recorder, ToolCallError
    from pytest_aie.agent.tools import Tool, as_tools, tool
    from pytest_aie.agent.trajectory import Step, Trajectory

__all__ = ["Agent", "Recorder", "Step", "Tool", "ToolCallError", "Trajectory", "as_tools", "tool"]

_WHERE = {"Agent": "loop", "Recorder": "recorder", "ToolCallError": "recorder", "Tool": "tools",
          "as_tools": "tools", "tool": "tools", "Step": "trajectory", "Trajectory": "trajectory"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"pytest_aie.agent.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'pytest_aie.agent' has no attribute {name!r}")
