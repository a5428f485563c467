"""The fixtures of pytest-aie: ``output``, ``evaluate``, ``model``, ``models``, ``retriever`` and
``agent``. Registered as a plugin by :func:`pytest_aie.plugin.pytest_configure`; they reach the
run's :class:`~pytest_aie.session.AieSession` through the plugin's ``_aie`` and ``_ensure``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_aie._util.text import show
from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation
from pytest_aie.run.model import Model, Models
from pytest_aie.session import aie_session, ensure_generated


@pytest.fixture
def output(request: pytest.FixtureRequest, case: Case) -> Generation:
    """The model's generation for this test's ``case`` (from the whole-suite batched pass):
    ``output.text``, token counts, finish reason, timings, ``output.cached``."""
    return ensure_generated(request.node).output(request.node.nodeid)


@pytest.fixture
def evaluate(request: pytest.FixtureRequest, case: Case) -> Callable[[Any], None]:
    """Hand this case's output to the test's eval markers: ``evaluate(answer)`` (a ``str``, or a
    Generation). For tests that compute the output themselves (your application called in
    the test body); the markers score it when the body ends, with the same gates, results
    and report as a generated output."""
    aie = aie_session(request.config)
    nodeid = request.node.nodeid

    def hand_over(output: Any) -> None:
        if hasattr(output, "to_generation"):  # an agent's Trajectory
            output = output.to_generation()
        if not isinstance(output, (str, Generation)):
            raise TypeError(f"evaluate() takes the output text (a str), a Generation or an "
                            f"agent's Trajectory, got {type(output).__name__}: "
                            f"{show(output, 80)}")
        aie.submitted[nodeid] = output

    return hand_over


@pytest.fixture(scope="session")
def model(request: pytest.FixtureRequest) -> Model:
    """The session's model (``--aie-engine``/``--aie-model``; default: the embedded
    SmolLM2-135M-Instruct on CPU). ``model.generate("prompt", max_tokens=16)`` returns a
    Generation; ``model.generate_many(requests)`` sends a batch. Cached on disk."""
    return aie_session(request.config).model()


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest) -> Models:
    """Several named models: ``models["base"]``, ``models["candidate"]``; define them with
    ``--aie-models base=hf:PATH,candidate=hf:OTHER`` (ini ``aie_models``)."""
    aie = aie_session(request.config)
    return Models(aie.model, aie.model_names)


@pytest.fixture
def retriever(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """A retriever factory: ``retriever("bm25", corpus="docs.jsonl")`` (kinds: bm25, dense,
    hybrid, hybrid:weighted; ``corpus`` a path relative to the test file, or a list of
    documents; other keywords go to the retriever). Indexed on first search and cached on
    disk by corpus content and settings; the same arguments give the same retriever for the
    whole session. ``retriever(...).search(["query"], k=5)`` returns ranked hits."""
    from pytest_aie.retrieval import make_retriever

    made = aie_session(request.config).retrievers
    base = Path(str(request.node.path)).parent

    def make(kind: str = "hybrid", *, corpus: Any = None, **options: Any) -> Any:
        if isinstance(corpus, (str, Path)) and not Path(corpus).is_absolute():
            corpus = base / corpus
        if isinstance(corpus, (list, tuple)):  # keyed by content: equal lists share a retriever
            from pytest_aie.retrieval import corpus_digest
            from pytest_aie.retrieval.documents import to_documents

            corpus = to_documents(corpus)
            source: Any = ("documents", corpus_digest(corpus))
        else:
            source = corpus
        key = repr((kind, source, sorted(options.items())))
        if key not in made:
            made[key] = make_retriever(kind, corpus=corpus, **options)
        return made[key]

    return make


@pytest.fixture
def agent(model: Model) -> Callable[..., Any]:
    """An agent factory on the session's model: ``agent(tools=[add, lookup]).run("task")``
    returns the :class:`~pytest_aie.agent.Trajectory` (``evaluate(trajectory)`` hands it to
    the test's eval markers); ``.run_many(tasks)`` runs a batch, every agent advancing one
    step per engine call. Keywords are :class:`~pytest_aie.agent.Agent`'s (``max_steps``,
    ``max_seconds``, ``system``, ``protocol``, ``allow_state_changes``)."""
    from pytest_aie.agent import Agent

    class BoundAgent:
        def __init__(self, runner: Agent) -> None:
            self.agent = runner

        def run(self, task: str) -> Any:
            return self.agent.run(model, [task])[0]

        def run_many(self, tasks: list[str]) -> list[Any]:
            return self.agent.run(model, list(tasks))

    def make(tools: Any, **options: Any) -> BoundAgent:
        return BoundAgent(Agent(tools, **options))

    return make
