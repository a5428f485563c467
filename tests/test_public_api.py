"""The curated public face: ``pytest_aie.__all__`` resolves lazily and loads no model library."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pytest_aie


@pytest.mark.parametrize("name", pytest_aie.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(pytest_aie, name)
    assert value is not None
    assert name in dir(pytest_aie)


def test_all_is_the_lazy_table() -> None:
    assert sorted(pytest_aie.__all__) == sorted(pytest_aie._WHERE)
    assert len(set(pytest_aie.__all__)) == len(pytest_aie.__all__)
    assert pytest_aie.__version__


def test_unknown_name_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        pytest_aie.no_such_thing  # noqa: B018


def test_import_loads_no_model_library() -> None:
    code = ("import sys, pytest_aie\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_load_no_model_library() -> None:
    code = ("import sys, pytest_aie\n"
            "for name in pytest_aie.__all__: getattr(pytest_aie, name)\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_documented_deep_paths_still_import() -> None:
    """Paths the documentation has shown users keep working after the package moves."""
    from pytest_aie.agent import Agent, tool
    from pytest_aie.engines.base import Generation, Request, Sampling
    from pytest_aie.retrieval import BM25, Dense, Hybrid
    from pytest_aie.scorers.base import ModelScorer, Score, Scorer
    from pytest_aie.suite import register_eval_marker

    assert register_eval_marker is pytest_aie.register_eval_marker
    assert (Agent, tool, Generation, Request, Sampling, BM25, Dense, Hybrid, ModelScorer,
            Score, Scorer) == tuple(getattr(pytest_aie, n) for n in (
                "Agent", "tool", "Generation", "Request", "Sampling", "BM25", "Dense", "Hybrid",
                "ModelScorer", "Score", "Scorer"))
