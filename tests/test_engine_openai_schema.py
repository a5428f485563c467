"""JSON schemas through the ``openai`` engine: ``response_format`` on the wire, and the probe that
keeps a server which rejects or ignores it from passing off free text as constrained.

Fast tests run against the scripted loopback server of ``test_engine_openai``; the slow one
against a real ``transformers serve`` (which ignores ``response_format`` on chat and rejects it
on ``/completions``). vLLM's own server, which honours it, is tested in
``tests/vllm/test_schema_vllm.py``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from pytest_aie.engines.base import Capability, Request, Sampling
from pytest_aie.errors import EngineError

try:  # run as part of a package (tests/__init__.py) or with tests/ on sys.path
    from tests.serving import ServerInfo, free_port, openai_server_info  # noqa: F401
    from tests.test_engine_openai import FakeServer, Reply, chat_completion, fake, json_reply  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest was started
    from serving import ServerInfo, free_port, openai_server_info  # type: ignore[no-redef]  # noqa: F401
    from test_engine_openai import (  # type: ignore[no-redef]  # noqa: F401
        FakeServer,
        Reply,
        chat_completion,
        fake,
        json_reply,
    )

from components import need_module  # noqa: E402

need_module("openai", install="pip install -e '.[openai]' (or `make install`)")
from pytest_aie.engines.openai import OpenAIEngine  # noqa: E402

JUDGE = {"type": "object",
         "properties": {"rationale": {"type": "string", "maxLength": 200},
                        "score": {"type": "integer", "minimum": 1, "maximum": 5}},
         "required": ["rationale", "score"], "additionalProperties": False}
ANSWER = '{"rationale": "Correct.", "score": 5}'
Start = Callable[[Callable[[str, dict, int], Reply]], FakeServer]


def chat(text: str = "Hi", schema: dict[str, Any] | None = None, **kw: Any) -> Request:
    stream = kw.pop("stream", False)
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**kw),
                   output_schema=schema, stream=stream)


def completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {"id": "c", "object": "text_completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}


def schema_of(body: dict[str, Any]) -> Any:
    return ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")


def is_probe(body: dict[str, Any]) -> bool:
    return "aie_probe" in json.dumps(schema_of(body) or {})


def constraining(path: str, body: dict, n: int) -> Reply:
    """A server that follows response_format: the probe's only answer, else ANSWER."""
    text = '{"aie_probe": "q7v"}' if is_probe(body) else ANSWER if schema_of(body) else "free"
    if "prompt" in body:
        return json_reply(200, completion(text))
    return json_reply(200, chat_completion(text))


def test_schema_goes_out_as_response_format_and_the_probe_runs_once(fake: Start) -> None:
    srv = fake(constraining)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    gens = engine.generate([chat("rate", JUDGE), chat("plain"),
                            Request(prompt="rate:", output_schema=JUDGE)])
    assert [g.text for g in gens] == [ANSWER, "free", ANSWER]
    probes = [r for r in srv.posts() if is_probe(r["body"])]
    assert sorted(p["path"] for p in probes) == ["/v1/chat/completions", "/v1/completions"]
    real = [r for r in srv.posts() if not is_probe(r["body"])]
    by_text = {(r["body"].get("messages") or [{"content": r["body"].get("prompt")}])[0]["content"]:
               r for r in real}
    expected = {"type": "json_schema",
                "json_schema": {"name": "output", "schema": JUDGE, "strict": True}}
    assert by_text["rate"]["body"]["response_format"] == expected
    assert by_text["rate:"]["body"]["response_format"] == expected  # a body field on /completions
    assert by_text["rate:"]["path"] == "/v1/completions"
    assert "response_format" not in by_text["plain"]["body"]
    # later calls and supports() reuse the probes' answers
    engine.generate([chat("again", JUDGE), Request(prompt="again:", output_schema=JUDGE)])
    assert engine.supports(Capability.SCHEMA)
    assert len([r for r in srv.posts() if is_probe(r["body"])]) == 2


def test_streamed_requests_carry_the_schema_too(fake: Start) -> None:
    def respond(path: str, body: dict, n: int) -> Reply:
        if not body.get("stream"):
            return constraining(path, body, n)
        event = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                 "choices": [{"index": 0, "delta": {"content": ANSWER}, "finish_reason": "stop"}]}
        return 200, {"Content-Type": "text/event-stream"}, \
            f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode()

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    [gen] = engine.generate([chat("rate", JUDGE, stream=True)])
    assert gen.text == ANSWER and gen.timings.ttft_s is not None
    assert schema_of(srv.posts()[-1]["body"]) == JUDGE and srv.posts()[-1]["body"]["stream"]


def test_a_server_that_ignores_response_format_is_one_clear_error(fake: Start) -> None:
    srv = fake(lambda path, body, n: json_reply(200, chat_completion("Sure! Here you go.")))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("plain"), chat("rate", JUDGE), chat("rate 2", JUDGE)])
    text = str(info.value)
    assert "ignores response_format" in text and "'Sure! Here you go.'" in text
    assert "vllm serve" in text and "\n" not in text
    assert len(srv.posts()) == 1 and is_probe(srv.posts()[0]["body"])  # nothing else was sent
    assert not engine.supports(Capability.SCHEMA)
    assert engine.generate([chat("plain")])[0].text == "Sure! Here you go."  # no schema: fine
    assert len(srv.posts()) == 2  # the probe is not repeated


@pytest.mark.parametrize("status", [400, 422])
def test_a_server_that_rejects_response_format_is_one_clear_error(fake: Start, status: int) -> None:
    def respond(path: str, body: dict, n: int) -> Reply:
        if "response_format" in body:
            return json_reply(status, {"error": {"message": "Unexpected fields in the request: "
                                                            "{'response_format'}"}})
        return json_reply(200, completion("free"))

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    with pytest.raises(EngineError) as info:
        engine.generate([Request(prompt="rate:", output_schema=JUDGE)])
    text = str(info.value)
    assert "rejects response_format" in text and f"HTTP {status}" in text and "/completions" in text
    assert "Fix:" in text and "vllm serve" in text
    assert engine.generate([Request(prompt="x")])[0].text == "free"


def test_a_truncated_probe_answer_on_the_only_valid_path_counts_as_constrained(fake: Start) -> None:
    def respond(path: str, body: dict, n: int) -> Reply:
        if is_probe(body):  # a server that spends the probe's tokens on whitespace
            return json_reply(200, chat_completion('{\n\n\n   "aie_probe":\n\n  "q7', finish="length"))
        return json_reply(200, chat_completion(ANSWER))

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    assert engine.supports(Capability.SCHEMA)
    probe = srv.posts()[0]["body"]
    assert probe["temperature"] == 0 and probe["max_tokens"] == 32 and "seed" not in probe


def test_an_unreachable_server_during_the_probe_is_the_usual_error() -> None:
    engine = OpenAIEngine("m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0,
                          timeout=2)
    with pytest.raises(EngineError, match="cannot reach"):
        engine.supports(Capability.SCHEMA)


# ------------------------------------------------------------------------------------------------
# a real `transformers serve`: response_format is not honoured there, and the engine says so


@pytest.mark.slow
def test_transformers_serve_does_not_constrain_and_the_engine_says_so(
        openai_server_info: ServerInfo) -> None:
    engine = OpenAIEngine(base_url=openai_server_info.base_url, timeout=120, max_retries=0)
    try:
        assert not engine.supports(Capability.SCHEMA)  # chat: the field is ignored
        assert "ignores response_format on the chat endpoint" in (engine._schema_problems[True] or "")
        with pytest.raises(EngineError, match="rejects response_format on /completions"):
            engine.generate([Request(prompt="Rate:", output_schema=JUDGE,
                                     sampling=Sampling(max_tokens=8))])
        assert "HTTP 422" in (engine._schema_problems[False] or "")
    finally:
        engine.close()
