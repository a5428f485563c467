"""Native tool calling in the engines (``Request.tools`` -> ``Generation.tool_calls``).

* the parser of :mod:`pytest_aie.engines._tool_calls` on outputs shaped like real ones (the
  schema-echo case is what the embedded SmolLM2-135M wrote when offered a tool);
* the ``openai`` engine's wire format against a scripted ``http.server`` on 127.0.0.1 (the
  ``FakeServer`` of ``test_engine_openai``): tools sent, tool calls read (also streamed), a server
  that rejects tools, calls left in the text; and against a real ``transformers serve``
  (``@pytest.mark.slow``) on a copy of the embedded model whose tokenizer has a tool-use chat
  template and a response template, so the server itself parses the call;
* the ``hf`` engine: the embedded model's template renders no tools (no Capability.TOOLS), and a
  copy of it with a tool-use template (same weights) gets the tools into its prompt and its
  call parsed.

The embedded 135M model does not call tools of its own accord; asked to repeat a
``<tool_call>`` block, it writes one, which is how the real-model tests get a call to parse.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pytest_aie.engines._tool_calls import (
    api_messages,
    parse_tool_calls,
    template_messages,
    template_uses_tools,
)
from pytest_aie.engines.base import Capability, Generation, Request, Sampling
from pytest_aie.errors import EngineError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                   "b": {"type": "number"}}}}}
TOOLS = (WEATHER, ADD)
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
REPEAT = f"Repeat this text exactly:\n{CALL_TEXT}"
#: A later step of an agent: the model's call, then the tool's result, as the agent sends them.
HISTORY = (
    {"role": "user", "content": "What is the weather in Rome?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny, 25 C"},
)

#: A Hermes/Qwen-style tool-use chat template in SmolLM2's format. Its arguments go through
#: ``tojson`` only, as in many real templates: a JSON string would come out double-encoded.
TOOL_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}You are a helpful \
assistant.{% endif %}

You can call functions. The functions are listed inside <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

To call a function, reply with a JSON object inside <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0]['role'] != 'system' %}<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' and tools %}
{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% if message.content %}{{ message.content }}
{% endif %}{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

#: transformers serve's way to parse the calls (its built-in one for Qwen, here for SmolLM2).
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>",
                       "repeats": True, "content": "json",
                       "transform": {"type": "function", "function": "{content}"}},
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>)", "content": "text"},
    },
}


def tool_model_dir(dest: Path) -> Path:
    """A copy of the embedded model folder (weights linked, not copied) whose tokenizer has
    :data:`TOOL_TEMPLATE` as its chat template and :data:`RESPONSE_TEMPLATE`."""
    from pytest_aie.engines.embedded import resolve_model

    src = Path(resolve_model(None))
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name == "chat_template.jinja":
            continue
        if item.name == "tokenizer_config.json":
            config = json.loads(item.read_text())
            config.pop("chat_template", None)
            config["response_template"] = RESPONSE_TEMPLATE
            (dest / item.name).write_text(json.dumps(config, indent=2))
        elif item.suffix == ".safetensors":
            (dest / item.name).symlink_to(item)
        elif item.is_file():
            shutil.copy(item, dest / item.name)
    (dest / "chat_template.jinja").write_text(TOOL_TEMPLATE)
    return dest


def chat(text: str, tools: tuple[dict, ...] | None = TOOLS, **sampling: Any) -> Request:
    return Request(messages=({"role": "user", "content": text},), tools=tools,
                   sampling=Sampling(**sampling))


# ------------------------------------------------------------------------------------------------
# the parser


def test_hermes_blocks_several_calls_in_order_with_the_rest_as_content() -> None:
    text = ("Let me look both up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
            "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", "
            "\"arguments\": {\"a\": 2, \"b\": 3.5}}\n</tool_call>")
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "Let me look both up."
    assert calls is not None
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("add", {"a": 2, "b": 3.5})]
    assert len({c["id"] for c in calls}) == 2
    assert parse_tool_calls(text, TOOLS)[1] == calls  # ids derive from the text: stable


def test_broken_json_keeps_the_name_and_the_raw_arguments() -> None:
    text = ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": }}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Par')  # cut by max_tokens
    _, calls = parse_tool_calls(text, TOOLS)
    assert calls is not None
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("add", '{"a": 2, "b": }'), ("get_weather", '{"city": "Par')]


def test_arguments_written_as_a_json_string_are_decoded_and_non_objects_kept_raw() -> None:
    text = ('<tool_call>{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}</tool_call>'
            '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>')
    _, calls = parse_tool_calls(text)
    assert calls is not None
    assert calls[0]["arguments"] == {"a": 1, "b": 2}
    assert calls[1]["arguments"] == "[1, 2]"


def test_no_call_leaves_the_text_alone() -> None:
    for text in ("The weather in Paris is sunny.", "", '{"answer": 42}', "[1, 2, 3]",
                 '{"name": "Ada", "age": 36}'):
        assert parse_tool_calls(text, TOOLS) == (text, None)


def test_a_bare_json_call_counts_only_with_a_call_shape_and_an_offered_name() -> None:
    for text in ('{"name": "add", "arguments": {"a": 1, "b": 2}}',
                 '{"name": "add", "parameters": {"a": 1, "b": 2}}',  # Llama 3.1
                 '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```',
                 '{"type": "function", "function": {"name": "add", "arguments": "{\\"a\\": 1, '
                 '\\"b\\": 2}"}}'):
        content, calls = parse_tool_calls(text, TOOLS)
        assert content == "" and calls is not None, text
        assert [(c["name"], c["arguments"]) for c in calls] == [("add", {"a": 1, "b": 2})], text
    listed = '[{"name": "add", "arguments": {"a": 1}}, {"name": "get_weather", "arguments": {}}]'
    calls = parse_tool_calls(listed, TOOLS)[1]
    assert calls is not None and [c["name"] for c in calls] == ["add", "get_weather"]
    # not offered, or not only a call's keys: an answer, not a call
    assert parse_tool_calls('{"name": "delete_all", "arguments": {}}', TOOLS)[1] is None
    assert parse_tool_calls('{"name": "add", "arguments": {}, "note": "x"}', TOOLS)[1] is None
    # what the embedded SmolLM2-135M wrote when told to call get_weather: its schema echoed back
    echo = ('{"type": "function", "function": {"name": "get_weather", "description": "Get the '
            'weather in Paris.", "parameters": {"type": "object", "properties": {"city": '
            '{"type": "string"}}, "required": ["city"]}}}')
    assert parse_tool_calls(echo, TOOLS)[1] is None


def test_messages_for_templates_and_for_the_api() -> None:
    for_template = template_messages(HISTORY)
    assert for_template[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Rome"}
    assert for_template[1]["tool_calls"][0]["id"] == "call_1"
    assert for_template[2] == HISTORY[2]
    assert HISTORY[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'  # a copy
    back = api_messages(for_template)
    assert back[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'
    broken = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{oops"}}]}]
    converted = template_messages(broken)
    assert converted[0]["content"] == ""
    assert converted[0]["tool_calls"][0]["function"]["arguments"] == "{oops"


def test_cached_generations_keep_their_tool_calls_and_tools_key_the_request(tmp_path: Path) -> None:
    from pytest_aie.run.cache import GenerationCache

    calls = [{"id": "call_x_0", "name": "add", "arguments": {"a": 1}},
             {"id": "call_x_1", "name": "add", "arguments": "{bad"}]
    with_tools, without = chat("hi"), chat("hi", tools=None)
    assert "tools" not in without.to_dict() and with_tools.key() != without.key()
    assert Request.from_dict(with_tools.to_dict()) == with_tools
    cache = GenerationCache(tmp_path / "cache.sqlite")
    cache.put_many("e", [with_tools], [Generation(text="", finish_reason="tool_calls",
                                                  tool_calls=calls)])
    [hit, miss] = cache.get_many("e", [with_tools, without])
    assert hit is not None and hit.tool_calls == calls and hit.finish_reason == "tool_calls"
    assert miss is None


# ------------------------------------------------------------------------------------------------
# the openai engine against a scripted server on loopback

from test_engine_openai import FakeServer, Reply, json_reply  # noqa: E402 - tests/ is on sys.path


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[str, dict, int], Reply]], FakeServer]]:
    """Start scripted servers (``respond(path, body, n) -> reply``); all stopped at the end."""
    servers: list[FakeServer] = []

    def start(respond: Callable[[str, dict, int], Reply]) -> FakeServer:
        servers.append(FakeServer(respond).__enter__())
        return servers[-1]

    yield start
    for srv in servers:
        srv.__exit__()


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}


def test_openai_sends_tools_and_history_and_reads_the_calls(fake) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.openai import OpenAIEngine

    reply = _completion({"content": None, "tool_calls": [
        {"id": "call_abc", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_def", "type": "function",
         "function": {"name": "add", "arguments": '{"a": 2, "b": '}}]}, "tool_calls")
    srv = fake(lambda path, body, n: json_reply(200, reply))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    assert engine.supports(Capability.TOOLS)
    # the agent's later step, with the earlier call's arguments given as a dict
    history = list(HISTORY)
    history[1] = template_messages([HISTORY[1]])[0]
    [gen] = engine.generate([Request(messages=tuple(history), tools=TOOLS)])
    assert gen.error is None, gen.error
    assert gen.tool_calls == [
        {"id": "call_abc", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"id": "call_def", "name": "add", "arguments": '{"a": 2, "b": '}]  # broken: kept raw
    assert gen.text == "" and gen.finish_reason == "tool_calls"
    body = srv.posts()[0]["body"]
    assert body["tools"] == [WEATHER, ADD]
    sent = body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome"}'  # a string
    assert sent[2] == HISTORY[2]
    engine.generate([chat("hi", tools=None)])
    assert "tools" not in srv.posts()[-1]["body"]
    engine.close()


def test_openai_streamed_tool_call_deltas_are_merged(fake) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.openai import OpenAIEngine

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    events = [chunk({"role": "assistant", "content": None}),
              chunk(call(0, id="call_a", type="function",
                         function={"name": "get_weather", "arguments": ""})),
              chunk(call(0, function={"arguments": '{"city": '})),
              chunk(call(0, function={"arguments": '"Paris"}'})),
              chunk(call(1, id="call_b", type="function",
                         function={"name": "add", "arguments": '{"a": 1}'})),
              chunk({}, "tool_calls")]
    payload = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    srv = fake(lambda path, body, n: (200, {"Content-Type": "text/event-stream"}, payload))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    [gen] = engine.generate([Request(messages=({"role": "user", "content": "hi"},), tools=TOOLS,
                                     stream=True)])
    assert gen.error is None, gen.error
    assert gen.tool_calls == [{"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                              {"id": "call_b", "name": "add", "arguments": {"a": 1}}]
    assert gen.finish_reason == "tool_calls" and gen.text == ""
    assert srv.posts()[0]["body"]["tools"] == [WEATHER, ADD]
    engine.close()


def test_openai_parses_calls_a_server_left_in_the_text(fake) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.openai import OpenAIEngine

    replies = [_completion({"content": f"Sure.\n{CALL_TEXT}"}, "stop"),
               _completion({"content": '{"name": "delete_all", "arguments": {}}'}, "stop")]
    srv = fake(lambda path, body, n: json_reply(200, replies[n - 1]))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0, concurrency=1)
    left, not_offered = engine.generate([chat("weather?"), chat("clean up")])
    assert left.tool_calls is not None
    assert [(c["name"], c["arguments"]) for c in left.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert left.text == "Sure." and left.finish_reason == "tool_calls"
    assert not_offered.tool_calls is None and not_offered.finish_reason == "stop"
    engine.close()


def test_openai_server_rejecting_tools_is_one_error_with_the_fix(fake) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.openai import OpenAIEngine

    vllm_says = {"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice and '
                                      "--tool-call-parser to be set", "type": "BadRequestError",
                           "code": 400}}  # vLLM 0.32's answer, without the flags
    srv = fake(lambda path, body, n: json_reply(400, vllm_says) if "tools" in body
               else json_reply(200, _completion({"content": "ok"}, "stop")))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0, concurrency=1)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("a"), chat("b"), chat("c")])
    text = str(info.value)
    assert "rejected the request's tools" in text and "--enable-auto-tool-choice" in text
    assert "protocol='text'" in text
    assert len(srv.posts()) == 1  # stopped after the first rejection
    # another 400 on a request with tools stays that request's own error
    srv2 = fake(lambda path, body, n: json_reply(400, {"error": {
        "message": "This model's maximum context length is 2048 tokens"}}))
    engine2 = OpenAIEngine("fake-model", base_url=srv2.base_url, max_retries=0)
    [gen] = engine2.generate([chat("long")])
    assert gen.finish_reason == "error" and "maximum context length" in (gen.error or "")
    engine.close()
    engine2.close()


def test_openai_tools_on_a_raw_prompt_are_an_error_before_sending(fake) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.openai import OpenAIEngine

    srv = fake(lambda path, body, n: json_reply(200, _completion({"content": "x"}, "stop")))
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("fine"), Request(prompt="2+2=", tools=TOOLS)])
    assert "raw prompt" in str(info.value) and "messages" in str(info.value)
    assert srv.posts() == []
    engine.close()


# ------------------------------------------------------------------------------------------------
# the hf engine, and a real transformers serve, on the embedded model's weights


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tool_model_dir(tmp_path_factory.mktemp("tool-model") / "smol-tools")


def test_the_embedded_template_renders_no_tools_so_hf_has_no_native_tools() -> None:
    from pytest_aie.engines.hf import HFEngine

    engine = HFEngine(device="cpu", threads=1)
    assert engine.supports(Capability.CHAT)
    assert not engine.supports(Capability.TOOLS)  # SmolLM2-135M-Instruct's template: no tools
    with pytest.raises(EngineError) as info:
        engine.generate([chat("What is the weather in Paris?")])
    assert "no native tool calling" in str(info.value) and "protocol='text'" in str(info.value)
    assert engine._model is None  # found out from the tokenizer alone
    engine.close()


@pytest.fixture(scope="module")
def hf_tools(tool_model: Path) -> Iterator[Any]:
    from pytest_aie.engines.hf import HFEngine

    engine = HFEngine(str(tool_model), device="cpu", threads=1, batch_size=4)
    yield engine
    engine.close()


def test_hf_tool_template_gets_the_tools_and_the_history_as_dicts(hf_tools: Any) -> None:
    from pytest_aie.engines._hf_decoding import encode

    assert hf_tools.supports(Capability.TOOLS)
    _, tokenizer = hf_tools._load()
    assert template_uses_tools(tokenizer)
    prompt = tokenizer.decode(encode(tokenizer, Request(messages=HISTORY, tools=TOOLS), "m"))
    assert json.dumps(WEATHER) in prompt and json.dumps(ADD) in prompt
    assert '"arguments": {"city": "Rome"}' in prompt  # a dict, not a double-encoded string
    assert "<tool_response>\nsunny, 25 C\n</tool_response>" in prompt
    plain = tokenizer.decode(encode(tokenizer, chat("hi", tools=None), "m"))
    assert "<tools>" not in plain


@pytest.mark.slow
def test_hf_engine_parses_the_call_the_model_writes(hf_tools: Any) -> None:
    with_tools, without, follow_up = hf_tools.generate([
        chat(REPEAT, max_tokens=40), chat(REPEAT, tools=None, max_tokens=40),
        Request(messages=HISTORY, tools=TOOLS, sampling=Sampling(max_tokens=24))])
    assert with_tools.error is None, with_tools.error
    assert with_tools.tool_calls is not None, with_tools.text
    assert [(c["name"], c["arguments"]) for c in with_tools.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    assert with_tools.text == "" and with_tools.finish_reason == "tool_calls"
    assert without.tool_calls is None  # no tools offered: nothing is parsed
    assert follow_up.error is None and follow_up.prompt_tokens and follow_up.completion_tokens


@pytest.mark.slow
def test_transformers_serve_parses_the_call_through_the_openai_engine(tool_model: Path) -> None:
    from serving import serving_or_skip

    from pytest_aie.engines.openai import OpenAIEngine

    with serving_or_skip(model_dir=tool_model) as info:
        engine = OpenAIEngine(base_url=info.base_url, timeout=120, max_retries=0)
        try:
            [gen] = engine.generate([chat(REPEAT, max_tokens=40)])
        finally:
            engine.close()
    assert gen.error is None, gen.error
    assert gen.tool_calls is not None, gen.text
    assert [(c["name"], c["arguments"]) for c in gen.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    # the server parsed it (its ids are <request id>_tool_call_<n>; ours would be call_<hash>_<n>)
    assert "_tool_call_0" in gen.tool_calls[0]["id"]
    assert gen.finish_reason == "tool_calls" and gen.text == ""
