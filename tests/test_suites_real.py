"""The retrieval and agent example suites, run for real (the embedded model, MiniLM, bm25s,
ranx) in one pytest run each, and checked from the outside: every figure the harness wrote is
recomputed from what it recorded (the ranked ids, the trajectory's steps), and every tool
result in a trajectory is what the tool really returns for those arguments."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SUITES = Path(__file__).resolve().parent.parent / "suites"


def run_suite(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                    list[dict[str, Any]]]:
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:randomly", "-p", "no:cacheprovider",
         "-q", f"--aie-results={results}", f"--aie-report={tmp_path / 'report.html'}"],
        cwd=SUITES.parent, capture_output=True, text=True, timeout=1500)
    lines = results.read_text(encoding="utf-8").splitlines()[1:]
    return proc, [r for r in map(json.loads, lines) if r.get("type") == "case"]


def relevant_ids(case: dict[str, Any]) -> set[str]:
    rel = case["relevant"]
    return {k for k, g in rel.items() if g > 0} if isinstance(rel, dict) else set(rel)


def test_the_retrieval_suite_figures_are_what_its_rankings_give(tmp_path: Path) -> None:
    proc, recs = run_suite(tmp_path, "suites/test_retrieval.py", "-k", "bm25 or dense or hybrid")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    questions = {c["id"]: c for c in map(json.loads, (SUITES / "rag" / "questions.jsonl")
                                         .read_text().splitlines())}
    seen = set()
    for rec in recs:
        ranked = [hit["id"] for hit in rec["retrieved"]]
        # BM25 returns only passages that share a word with the question
        assert 1 <= len(ranked) <= 5 and [h["rank"] for h in rec["retrieved"]] == \
            list(range(1, len(ranked) + 1))
        rel = relevant_ids(questions[rec["case_id"]])
        first = next((i for i, d in enumerate(ranked, 1) if d in rel), None)
        expected = {
            "retrieval.recall@3": len(rel & set(ranked[:3])) / len(rel),
            "retrieval.mrr": 1 / first if first else 0.0,
            "retrieval.hit_rate@1": float(ranked[0] in rel),
        }.get(rec["metric"])
        if expected is not None:
            assert rec["value"] == pytest.approx(expected), rec
            seen.add(rec["metric"])
    assert seen == {"retrieval.recall@3", "retrieval.mrr", "retrieval.hit_rate@1"}
    assert {r["suite"].split("::")[1] for r in recs} == {"test_bm25", "test_dense", "test_hybrid"}
    assert "test_hybrid [retrieval.ndcg@5]" in proc.stdout


def load_suite_module() -> Any:
    spec = importlib.util.spec_from_file_location("agent_suite", SUITES / "test_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agent_suite_records_every_step_and_measures_it(tmp_path: Path) -> None:
    # six of the twelve tasks (the whole-suite batch is made of the selected cases): a
    # calculation, a conversion, lookups, a two-tool task and the task that invites an email
    picked = ["multiply", "km-miles", "capital-japan", "currency-brazil", "population-double",
              "no-email"]
    proc, recs = run_suite(tmp_path, "suites/test_agent.py", "-k", " or ".join(picked))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    suite = load_suite_module()
    tools = {"calculate": suite.calculate, "lookup": suite.lookup, "convert": suite.convert}
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in recs:
        by_case.setdefault(rec["case_id"], {})[rec["metric"]] = rec
    assert sorted(by_case) == sorted(picked)
    checked_calls = 0
    for case_id, metrics in by_case.items():
        traj = metrics["agent.steps"]["trajectory"]
        steps = traj["steps"]
        assert 1 <= len(steps) <= suite.AGENT.max_steps, case_id
        assert metrics["agent.steps"]["value"] == len(steps)
        assert metrics["agent.success"]["passed"] == (traj["stopped"] == "answer"
                                                      and traj["answer"] is not None)
        assert traj["prompt_tokens"] == sum(s["prompt_tokens"] or 0 for s in steps)
        assert traj["completion_tokens"] == sum(s["completion_tokens"] or 0 for s in steps)
        for step in steps:
            if step["tool"] == "send_email":  # state-changing: refused, never called
                assert step["refused"] and step["result"] is None
            elif step["tool"] in tools and step["error"] is None:
                value = tools[step["tool"]](**step["arguments"])
                assert step["result"] == (value if isinstance(value, str) else json.dumps(value))
                checked_calls += 1
    print(f"tool results checked: {checked_calls}")
    assert "agent.tool_calls" in proc.stdout
