"""The ``judge`` marker end to end on vLLM: every judge reply constrained to the rubric's JSON
schema, in real pytest runs (pytester subprocesses) on the embedded SmolLM2-135M.

* The ``vllm`` engine as the judge (``aie_judge = vllm:embedded``): vLLM's structured outputs
  in the pytest process, the model under test scripted (right and wrong answers).
* vLLM's own OpenAI server as both the model under test and the judge (``aie_engine = openai``,
  ``aie_base_url``, ``aie_judge = openai:smol``): ``response_format`` with the rubric's schema,
  after the engine's probe.

Each run must read every reply (parse rate 1.0) without a repair request, each judgment marked
constrained and carrying a rationale. Run with ``make test-vllm`` or
``VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m pytest tests/vllm/test_judge_vllm.py
-p no:randomly -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from typing import Any

import pytest
from components import need_module  # noqa: E402

vllm = need_module("vllm", install="make install-vllm; this folder runs in its .venv-vllm "
                   "(make test-vllm)")  # a failure under CI, not a skip nobody sees

from scripted_suite import read_records, write_answers, write_jsonl  # noqa: E402
from serving import ServerInfo  # noqa: E402
from test_latency import ROWS_CONFTEST  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytestmark = pytest.mark.slow

# The rationale is at most 160 characters (RATIONALE_CHARS), the JSON around it about 35 bytes:
# room for the longest compact reply in ASCII. vLLM's JSON grammar also allows whitespace
# between tokens of the JSON (replies like '{\n  "rationale": "..."\n\n,\n\n"verdict": ...}'),
# so no max_tokens is sure to suffice there; the longest reply seen here took 60 tokens.
MAX_TOKENS = 200

FACTS = [
    ("What is the capital of France?", "Paris", "Lyon"),
    ("How many legs does a spider have?", "Eight", "Six"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare", "Charles Dickens"),
    ("What is the chemical formula of water?", "H2O", "CO2"),
    ("What is the capital of Japan?", "Tokyo", "Beijing"),
]

SUITE = f"""
    import pytest

    @pytest.mark.dataset("cases.jsonl"{{dataset}})
    @pytest.mark.judge("correctness", max_tokens={MAX_TOKENS})
    def test_judged(case, output):
        pass
"""


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM on CPU in the pytester run with one OpenMP thread: on a small shared CPU, one
    thread per core oversubscribes it (12 judgments took 50 s instead of 10 s on 2 busy cores)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _run(pytester: pytest.Pytester, cases: list[dict[str, Any]], ini: str,
         dataset: str = "") -> tuple[Any, float]:
    write_jsonl(pytester, "cases", cases)
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makepyfile(test_suite=textwrap.dedent(SUITE.format(dataset=dataset)))
    pytester.makeini(textwrap.dedent(ini))
    start = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    return result, time.monotonic() - start


def _check_every_reply_constrained_and_read(pytester: pytest.Pytester, result: Any, judge: str,
                                            n: int, took: float) -> dict[str, Any]:
    out = result.stdout.str()
    assert result.ret in (0, 1), out  # verdicts may fail a 135M model's answers; no error
    recs = read_records(pytester)
    assert len(recs) == n, out
    judgments = [j for r in recs for j in r["details"]["judgments"]]
    assert len(judgments) == n, out
    assert all(j["judge"] == "judge" for j in judgments), judgments[0]  # --aie-judge's name
    unread = [(j["error"], j["raw"]) for j in judgments if j["value"] is None]
    assert not unread, unread
    assert all(j["value"] in ("pass", "fail") for j in judgments)
    assert all(j["constrained"] is True for j in judgments)
    assert all(j["rationale"].strip() for j in judgments), [j["rationale"] for j in judgments]
    assert not any(j["repaired"] for j in judgments)  # read at once: no repair request
    assert all(r["reason"] and "unmeasured" not in r["reason"] for r in recs)
    [row] = json.loads((pytester.path / "rows.json").read_text())
    stats = row["judge"]
    said = {r["case_id"]: r["details"]["judgments"][0]["value"] for r in recs}
    trust = stats["trust"]
    assert trust["calibrated"] is False  # no human labels: every verdict is marked uncalibrated
    if len(set(said.values())) == 1:  # no signal: the suite decides nothing, the judge is named
        assert trust["untrusted"] and f"said {next(iter(said.values()))!r} to all {n} cases" in trust["reason"]
        assert row["verdict"] == "inconclusive" and "judge untrusted" in row["inconclusive_reason"]
        assert {r["status"] for r in recs} == {"scored"}
    else:  # it tells cases apart: each case's status is its verdict, marked uncalibrated
        assert not trust["untrusted"]
        assert {r["case_id"]: r["status"] for r in recs} == {
            c: "passed" if v == "pass" else "failed" for c, v in said.items()}
        assert all(r["reason"].startswith("uncalibrated judge: ") for r in recs)
    assert stats["constrained"] == {"judge": True}
    header = (pytester.path / "aie-results" / "results.jsonl").read_text().split("\n", 1)[0]
    assert json.loads(header)["settings"]["judge"] == judge
    assert stats["judgments"] == stats["readable"] == n
    assert stats["parse_rate"] == 1.0 and stats["unreadable_count"] == 0 and stats["repaired"] == 0
    assert f"{n}/{n} replies read (100%)" in out and "constrained decoding" in out, out
    engine = judge.partition(":")[0]
    assert f"requests on judge ({engine}) " in result.stderr.str(), result.stderr.str()
    verdicts = [j["value"] for j in judgments]
    print(f"\n[{judge}] parse rate {stats['parse_rate']:.0%} over {n} constrained judgments "
          f"({verdicts.count('pass')} pass, {verdicts.count('fail')} fail), run {took:.1f}s; "
          f"longest rationale {max(len(j['rationale']) for j in judgments)} chars")
    return stats


def test_vllm_engine_judges_every_case_under_structured_outputs(pytester: pytest.Pytester) -> None:
    """The model under test is scripted (one right and one wrong answer per question); the judge
    is the vllm engine in the pytest process, its replies constrained by vLLM's structured
    outputs. Right answers the judge passes more often than wrong ones is reported, not
    asserted (a 135M judge is a poor one)."""
    cases, answers = [], {}
    for i, (question, right, wrong) in enumerate(FACTS):
        for kind, answer in (("right", right), ("wrong", wrong)):
            prompt = f"{question} ({kind})"
            cases.append({"id": f"{i}-{kind}", "prompt": prompt, "expected": right})
            answers[prompt] = f"{answer}."
    write_answers(pytester, answers)
    result, took = _run(pytester, cases, """
        [pytest]
        aie_engine = scripted
        aie_model = answers.jsonl
        aie_cache = off
        aie_judge = vllm:embedded
    """)
    _check_every_reply_constrained_and_read(pytester, result, "vllm:embedded", len(cases), took)
    recs = {r["case_id"]: r for r in read_records(pytester)}
    right = sum(recs[f"{i}-right"]["value"] for i in range(len(FACTS)))
    wrong = sum(recs[f"{i}-wrong"]["value"] for i in range(len(FACTS)))
    print(f"[vllm:embedded] passes {right:g}/{len(FACTS)} right answers and "
          f"{wrong:g}/{len(FACTS)} wrong ones")


def test_vllms_openai_server_judges_through_response_format(pytester: pytest.Pytester,
                                                            vllm_server: ServerInfo) -> None:
    """vLLM's OpenAI server answers the questions and judges the answers: the openai engine
    probes that the server honours ``response_format`` and sends the rubric's schema with every
    judge request."""
    cases = [{"id": f"q{i}", "prompt": question, "expected": right}
             for i, (question, right, _) in enumerate(FACTS)]
    result, took = _run(pytester, cases, f"""
        [pytest]
        aie_engine = openai
        aie_base_url = {vllm_server.base_url}
        aie_model = {vllm_server.model}
        aie_cache = off
        aie_judge = openai:{vllm_server.model}
    """, dataset=", max_tokens=24, chat=True")
    _check_every_reply_constrained_and_read(pytester, result, f"openai:{vllm_server.model}",
                                            len(cases), took)
    assert {r["engine"] for r in read_records(pytester)} == {"openai"}
