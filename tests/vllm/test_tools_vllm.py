"""Native tool calls on vLLM: the vllm engine (``LLM.chat(..., tools=...)``, calls parsed from
the text by pytest-aie) and vLLM's OpenAI server (``--enable-auto-tool-choice --tool-call-parser
hermes``: the server parses the calls) through the openai engine.

The model is the embedded SmolLM2-135M-Instruct. Its own chat template renders no tools, so the
engine does not claim native tool calling for it; the tool-use tests run on a copy of its folder
(the same weights, linked) with a Hermes-style tool template (``tool_model_dir`` of
``tests/test_engine_tools.py``). Asked to repeat a ``<tool_call>`` block, the model writes one,
so there is a real call to parse; the prompt's token count, equal to the hf tokenizer's
rendering with the tools, shows that the tools reached the prompt.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from components import need_module  # noqa: E402

vllm = need_module("vllm", install="make install-vllm; this folder runs in its .venv-vllm "
                   "(make test-vllm)")  # a failure under CI, not a skip nobody sees

from serving import serving_or_skip  # noqa: E402
from test_engine_tools import HISTORY, REPEAT, TOOLS, chat, tool_model_dir  # noqa: E402

from pytest_aie.engines.base import Capability, Request, Sampling  # noqa: E402
from pytest_aie.errors import EngineError  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tool_model_dir(tmp_path_factory.mktemp("tool-model") / "smol-tools")


def test_embedded_template_has_no_tools_so_no_native_tool_calling() -> None:
    from pytest_aie.engines.vllm import VLLMEngine

    engine = VLLMEngine(device="cpu")
    assert not engine.supports(Capability.TOOLS)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("What is the weather in Paris?")])
    assert "no native tool calling" in str(info.value)
    assert engine._llm is None  # found out from the tokenizer, before starting vLLM
    engine.close()


@pytest.fixture(scope="module")
def engine(tool_model: Path) -> Iterator[Any]:
    from pytest_aie.engines.vllm import VLLMEngine

    eng = VLLMEngine(str(tool_model), device="cpu")
    yield eng
    eng.close()


def test_vllm_engine_sends_tools_and_parses_the_call(engine: Any, tool_model: Path) -> None:
    from transformers import AutoTokenizer

    from pytest_aie.engines._hf_decoding import encode

    assert engine.supports(Capability.TOOLS)
    requests = [chat(REPEAT, max_tokens=40), chat(REPEAT, tools=None, max_tokens=40),
                Request(messages=HISTORY, tools=TOOLS, sampling=Sampling(max_tokens=24)),
                Request(messages=HISTORY, tools=TOOLS[:1], sampling=Sampling(max_tokens=24))]
    call, without, follow_up, one_tool = engine.generate(requests)
    for gen in (call, without, follow_up, one_tool):
        assert gen.error is None, gen.error
    # the tools (and the history, arguments as dicts) reached the prompt: the same tokens as
    # the hf tokenizer's rendering, with the tool list of each request
    tokenizer = AutoTokenizer.from_pretrained(str(tool_model))
    for request, gen in zip(requests, (call, without, follow_up, one_tool)):
        assert gen.prompt_tokens == len(encode(tokenizer, request, "m")), request
    assert call.prompt_tokens is not None and without.prompt_tokens is not None
    assert call.prompt_tokens > without.prompt_tokens + 50  # the tools' schemas
    assert call.tool_calls is not None, call.text
    assert [(c["name"], c["arguments"]) for c in call.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    assert call.text == "" and call.finish_reason == "tool_calls"
    assert without.tool_calls is None


@pytest.mark.slow
def test_vllm_server_parses_the_call_through_the_openai_engine(engine: Any, tool_model: Path) -> None:
    from pytest_aie.engines.openai import OpenAIEngine

    engine.close()  # one vLLM at a time on a small machine
    with serving_or_skip(model_dir=tool_model, kind="vllm", threads=None,
                         extra_args=("--enable-auto-tool-choice",
                                     "--tool-call-parser", "hermes")) as info:
        client = OpenAIEngine(base_url=info.base_url, timeout=120, max_retries=0)
        try:
            call, follow_up = client.generate([
                chat(REPEAT, max_tokens=40),
                Request(messages=HISTORY, tools=TOOLS, sampling=Sampling(max_tokens=24))])
        finally:
            client.close()
    assert call.error is None and follow_up.error is None, (call.error, follow_up.error)
    assert call.tool_calls is not None, call.text
    assert [(c["name"], c["arguments"]) for c in call.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    # parsed by the server (vLLM's ids), not by the engine's fallback (call_<hash>_<n>)
    assert not re.fullmatch(r"call_[0-9a-f]{8}_\d+", call.tool_calls[0]["id"])
    assert call.finish_reason == "tool_calls" and call.text == ""
    assert follow_up.prompt_tokens and follow_up.completion_tokens
