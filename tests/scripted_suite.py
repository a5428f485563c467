"""Helpers for pytester runs on the scripted engine: cases, scripted answers, one eval test
function, and the ini that points the plugin at them."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Iterable

import pytest

INI = """
    [pytest]
    aie_engine = scripted
    aie_model = answers.jsonl
    aie_cache = off
"""


def write_jsonl(pytester: pytest.Pytester, name: str, rows: Iterable[dict[str, Any]]) -> None:
    pytester.makefile(".jsonl", **{name: "\n".join(json.dumps(r) for r in rows)})


def write_answers(pytester: pytest.Pytester, answers: dict[str, str], name: str = "answers") -> None:
    write_jsonl(pytester, name, ({"prompt": k, "answer": v} for k, v in answers.items()))


def write_scripted_suite(pytester: pytest.Pytester, cases: Iterable[dict[str, Any]],
                         answers: dict[str, str], test: str, test_module: str = "test_suite") -> None:
    """cases.jsonl, answers.jsonl, the test module and an ini selecting the scripted engine."""
    write_jsonl(pytester, "cases", cases)
    write_answers(pytester, answers)
    pytester.makepyfile(**{test_module: test})
    pytester.makeini(textwrap.dedent(INI))


def eval_test(marker: str, name: str = "test_eval") -> str:
    """A test module with one dataset-driven eval test under ``marker`` (e.g. ``exact()``)."""
    return textwrap.dedent(f"""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.{marker}
        def {name}(case, output):
            pass
    """)


def read_records(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """The case records of the last run's results log (without the header)."""
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines[1:]) if r.get("type") == "case"]  # not the conclusion
