"""pytest-aie: evaluation-first testing for applications built on foundation models.

What you write suites, scorers, engines and targets against is importable from here::

    from pytest_aie import Case, Score, Scorer, Request, Generation, register_eval_marker

Every name is loaded on first use, so ``import pytest_aie`` loads no model library (no torch,
no transformers, no openai). Deeper module paths are the package's inside and may move.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_aie.agent.loop import Agent
    from pytest_aie.agent.recorder import Recorder
    from pytest_aie.agent.tools import Tool, tool
    from pytest_aie.agent.trajectory import Trajectory
    from pytest_aie.dataset import Case, load_cases
    from pytest_aie.engines import register_engine
    from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling
    from pytest_aie.errors import AieError, DatasetError, EngineError, UsageError
    from pytest_aie.retrieval import BM25, Dense, Document, Hit, Hybrid, Retriever, make_retriever
    from pytest_aie.scorers.base import ModelScorer, Sample, Score, Scorer
    from pytest_aie.suite.markers import register_eval_marker

from pytest_aie._version import __version__ as __version__

__all__ = [
    "BM25",
    "Agent",
    "AieError",
    "Capability",
    "Case",
    "DatasetError",
    "Dense",
    "Document",
    "Engine",
    "EngineError",
    "Generation",
    "Hit",
    "Hybrid",
    "ModelScorer",
    "Recorder",
    "Request",
    "Retriever",
    "Sample",
    "Sampling",
    "Score",
    "Scorer",
    "Tool",
    "Trajectory",
    "UsageError",
    "load_cases",
    "make_retriever",
    "register_engine",
    "register_eval_marker",
    "tool",
]

# public name -> the module that defines it; imported on first use
_WHERE = {
    "Case": "dataset", "load_cases": "dataset",
    "Score": "scorers.base", "Scorer": "scorers.base", "ModelScorer": "scorers.base",
    "Sample": "scorers.base",
    "Request": "engines.base", "Sampling": "engines.base", "Generation": "engines.base",
    "Engine": "engines.base", "Capability": "engines.base",
    "register_engine": "engines",
    "register_eval_marker": "suite.markers",
    "Agent": "agent.loop", "tool": "agent.tools", "Tool": "agent.tools",
    "Recorder": "agent.recorder", "Trajectory": "agent.trajectory",
    "make_retriever": "retrieval", "Retriever": "retrieval", "BM25": "retrieval",
    "Dense": "retrieval", "Hybrid": "retrieval", "Document": "retrieval", "Hit": "retrieval",
    "AieError": "errors", "UsageError": "errors", "DatasetError": "errors", "EngineError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"pytest_aie.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'pytest_aie' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
