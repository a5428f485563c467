"""Tests of the ``openai`` engine.

Two kinds of server, both real HTTP on 127.0.0.1:

* a tiny ``http.server`` in a thread that answers from a script (503 twice, then a completion;
  a 400 that echoes the Authorization header...). It checks what goes over the wire and that
  the ``openai`` client's own retries are wired through; no code of the engine is mocked.
* ``transformers serve`` with the embedded SmolLM2-135M-Instruct (``@pytest.mark.slow``), one
  per session, from :mod:`serving`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from pytest_aie.engines import create_engine
from pytest_aie.engines.base import Capability, Generation, Request, Sampling
from pytest_aie.errors import EngineError

try:  # run as part of a package (tests/__init__.py) or with tests/ on sys.path
    from tests.serving import ServerInfo, free_port, openai_server_info  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest was started
    from serving import ServerInfo, free_port, openai_server_info  # type: ignore[no-redef]  # noqa: F401

from components import need_module  # noqa: E402

need_module("openai", install="pip install -e '.[openai]' (or `make install`)")
from pytest_aie.engines.openai import OpenAIEngine  # noqa: E402

SECRET = "sk-aie-test-7Qz9dont-leak-me-41f3"  # a key distinctive enough to grep for


# ------------------------------------------------------------------------------------------------
# a scripted OpenAI-compatible HTTP server on loopback

Reply = tuple[int, dict[str, str], bytes]


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()


def chat_completion(content: str, *, logprobs: list[float] | None = None, finish: str = "stop") -> dict:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish,
        "logprobs": None,
    }
    if logprobs is not None:
        choice["logprobs"] = {
            "content": [{"token": f"t{i}", "logprob": v, "bytes": None, "top_logprobs": []}
                        for i, v in enumerate(logprobs)]
        }  # fmt: skip
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }  # fmt: skip


class FakeServer:
    """A ThreadingHTTPServer whose replies come from ``respond(path, body, n)``; it records
    every request (method, path, headers, JSON body)."""

    def __init__(self, respond: Callable[[str, dict, int], Reply]) -> None:
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                with server._lock:
                    server.requests.append(
                        {"method": self.command, "path": self.path,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body}
                    )  # fmt: skip
                    n = len(server.requests)
                status, headers, payload = server.respond(self.path, body, n)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[str, dict, int], Reply]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(respond: Callable[[str, dict, int], Reply]) -> FakeServer:
        srv = FakeServer(respond).__enter__()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.__exit__()


def chat(text: str = "Hi", **sampling: Any) -> Request:
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**sampling))


# ------------------------------------------------------------------------------------------------
# fast tests against the scripted server


@pytest.mark.parametrize("status", [503, 429])
def test_client_retries_transient_errors_then_succeeds(fake, status: int) -> None:
    def respond(path: str, body: dict, n: int) -> Reply:
        if n <= 2:  # the first two attempts fail; retry-after-ms keeps the backoff short
            return json_reply(status, {"error": {"message": "busy"}}, {"retry-after-ms": "10"})
        return json_reply(200, chat_completion("Paris."))

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=3, timeout=5)
    [gen] = engine.generate([chat("Capital of France?")])
    assert len(srv.posts()) == 3
    assert all(r["path"] == "/v1/chat/completions" for r in srv.posts())
    assert gen.error is None
    assert gen.text == "Paris."
    assert (gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == (11, 3, "stop")
    assert gen.engine == "openai" and gen.model == "fake-model"
    assert gen.timings.e2e_s is not None and gen.timings.e2e_s > 0


def test_error_after_retries_is_a_per_request_error(fake) -> None:
    srv = fake(lambda path, body, n: json_reply(500, {"error": {"message": "boom"}},
                                                {"retry-after-ms": "10"}))  # fmt: skip
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=2, timeout=5)
    gens = engine.generate([chat("a"), chat("b")])
    assert len(srv.posts()) == 2 * 3  # each request: one try and two retries
    for gen in gens:
        assert gen.finish_reason == "error"
        assert gen.text == ""
        assert "HTTP 500" in gen.error and "boom" in gen.error


def test_sampling_is_mapped_to_the_request_body(fake) -> None:
    def respond(path: str, body: dict, n: int) -> Reply:
        if path.endswith("/completions") and "prompt" in body:
            return json_reply(200, {
                "id": "c", "object": "text_completion", "created": 0, "model": "fake-model",
                "choices": [{"index": 0, "text": " four", "finish_reason": "length",
                             "logprobs": {"tokens": [" four"], "token_logprobs": [-0.25],
                                          "top_logprobs": None, "text_offset": [0]}}],
                "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
            })  # fmt: skip
        return json_reply(200, chat_completion("ok", logprobs=[-0.5, -1.5]))

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    gens = engine.generate([
        chat("x", temperature=0.7, top_p=0.9, max_tokens=12, stop=("END", "\n\n"), seed=7,
             logprobs=True),
        Request(prompt="2 + 2 =", sampling=Sampling(max_tokens=1, logprobs=True, seed=None)),
    ])  # fmt: skip
    chat_body = next(r["body"] for r in srv.posts() if "messages" in r["body"])
    prompt_body = next(r["body"] for r in srv.posts() if "prompt" in r["body"])
    assert chat_body["model"] == "fake-model"
    assert chat_body["messages"] == [{"role": "user", "content": "x"}]
    assert (chat_body["temperature"], chat_body["top_p"], chat_body["max_tokens"]) == (0.7, 0.9, 12)
    assert chat_body["stop"] == ["END", "\n\n"] and chat_body["seed"] == 7
    assert chat_body["logprobs"] is True
    assert prompt_body["prompt"] == "2 + 2 =" and prompt_body["logprobs"] == 0
    assert "seed" not in prompt_body and "stop" not in prompt_body
    assert {r["path"] for r in srv.posts()} == {"/v1/chat/completions", "/v1/completions"}
    assert gens[0].token_logprobs == [-0.5, -1.5]
    assert gens[1].text == " four" and gens[1].finish_reason == "length"
    assert gens[1].token_logprobs == [-0.25]


def test_stream_retries_without_stream_options_when_rejected(fake) -> None:
    def sse(events: list[dict]) -> bytes:
        return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"

    def chunk(content: str | None, finish: str | None = None) -> dict:
        return {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}

    def respond(path: str, body: dict, n: int) -> Reply:
        if "stream_options" in body:
            return json_reply(400, {"error": {"message": "Unrecognized field stream_options"}})
        events = [chunk("Hel"), chunk("lo"), chunk(" STOP here"), chunk(None, "stop")]
        return 200, {"Content-Type": "text/event-stream"}, sse(events)

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, max_retries=0)
    [gen] = engine.generate([Request(messages=({"role": "user", "content": "hi"},), stream=True,
                                     sampling=Sampling(stop=("STOP",)))])  # fmt: skip
    bodies = [r["body"] for r in srv.posts()]
    assert "stream_options" in bodies[0] and "stream_options" not in bodies[1]
    assert all(b["stream"] is True for b in bodies)
    assert gen.error is None, gen.error
    assert gen.text == "Hello "  # cut before the stop string the server left in
    assert gen.finish_reason == "stop"
    assert gen.prompt_tokens is None  # no usage: tokens are counted as content chunks
    assert gen.completion_tokens == 3
    t = gen.timings
    assert t.ttft_s is not None and t.e2e_s is not None and 0 < t.ttft_s <= t.e2e_s
    assert t.tpot_s is not None and t.tpot_s >= 0
    # the engine remembers: the next stream goes without stream_options at once
    engine.generate([Request(prompt="x", stream=True)])
    assert "stream_options" not in srv.posts()[-1]["body"] and len(srv.posts()) == 3


def test_model_defaults_to_the_only_served_model(fake) -> None:
    models = {"data": [{"id": "only-one", "object": "model", "created": 0, "owned_by": "me"}],
              "object": "list"}  # fmt: skip
    srv = fake(lambda path, body, n: json_reply(200, models))
    engine = OpenAIEngine(base_url=srv.base_url, max_retries=0)
    assert engine.model == "only-one"
    assert engine.identity() == {"engine": "openai", "model": "only-one", "base_url": srv.base_url}
    assert srv.requests[0]["path"] == "/v1/models"


def test_several_served_models_ask_for_aie_model(fake) -> None:
    models = {"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "me"} for m in ("a", "b")]}
    srv = fake(lambda path, body, n: json_reply(200, models))
    with pytest.raises(EngineError) as info:
        OpenAIEngine(base_url=srv.base_url, max_retries=0)
    assert "--aie-model" in str(info.value) and "2 models" in str(info.value)


def test_unreachable_server_raises_engine_error_with_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    engine = OpenAIEngine("m", base_url=url, max_retries=1, timeout=2)
    start = time.monotonic()
    with pytest.raises(EngineError) as info:
        engine.generate([chat("a"), chat("b"), chat("c")])
    elapsed = time.monotonic() - start
    err = info.value
    assert err.problem.startswith(f"cannot reach OpenAI-compatible server at {url}")
    assert err.fix == "start the server or set --aie-base-url"
    print(f"unreachable server reported in {elapsed:.2f}s")
    with pytest.raises(EngineError, match="cannot reach OpenAI-compatible server"):
        OpenAIEngine(base_url=url, max_retries=0, timeout=2)  # asks /models at once


def test_missing_key_for_api_openai_com(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("AIE_TEST_NO_KEY", raising=False)
    with pytest.raises(EngineError) as info:
        OpenAIEngine("gpt-4o-mini", api_key_env="AIE_TEST_NO_KEY")
    assert "$AIE_TEST_NO_KEY is not set" in info.value.problem
    assert "export AIE_TEST_NO_KEY" in info.value.fix and "--aie-base-url" in info.value.fix


def test_api_key_never_leaks(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIE_TEST_KEY", SECRET)

    def respond(path: str, body: dict, n: int) -> Reply:  # a server that echoes the header back
        auth = srv.requests[-1]["headers"].get("authorization", "")
        return json_reply(400, {"error": {"message": f"bad request from {auth}"}})

    srv = fake(respond)
    engine = OpenAIEngine("fake-model", base_url=srv.base_url, api_key_env="AIE_TEST_KEY",
                          max_retries=0)  # fmt: skip
    [gen] = engine.generate([chat("hi")])
    assert srv.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # the key is used
    assert gen.finish_reason == "error" and "bad request from Bearer ***" in gen.error
    seen = [repr(engine), json.dumps(engine.identity()), json.dumps(gen.to_dict()), str(vars(engine))]
    url = f"http://127.0.0.1:{free_port()}/v1"
    dead = OpenAIEngine("m", base_url=url, api_key_env="AIE_TEST_KEY", max_retries=0, timeout=2)
    with pytest.raises(EngineError) as info:
        dead.generate([chat("hi")])
    seen += [str(info.value), repr(info.value), info.value.line(), repr(dead)]
    for text in seen:
        assert SECRET not in text


PASSWORD = "pw-Qx81!secret"  # a URL password; quoted back as base64 of "alice:" + it
QUERY_SECRET = "qs-77aie-query-secret"


def echoing(srv_ref: list[FakeServer], status: int = 400) -> Callable[[str, dict, int], Reply]:
    """A server (or proxy) that quotes the request back in its error: path and Authorization."""
    def respond(path: str, body: dict, n: int) -> Reply:
        req = srv_ref[0].requests[-1]
        return json_reply(status, {"error": {"message": f"no route {req['path']} for "
                                                        f"Authorization: {req['headers'].get('authorization')}"}})
    return respond


def credential_url(srv: FakeServer) -> str:
    return srv.base_url.replace("http://", f"http://alice:{PASSWORD}@") + \
        f"?api_key={QUERY_SECRET}&api-version=2024-06"


def test_base_url_query_is_kept_on_every_request_not_joined_into_the_path(fake) -> None:
    srv = fake(lambda path, body, n: json_reply(200, chat_completion("ok")))
    engine = OpenAIEngine("fake-model", base_url=credential_url(srv), max_retries=0)
    [gen] = engine.generate([chat("hi")])
    assert gen.error is None and gen.text == "ok"
    assert srv.posts()[0]["path"] == f"/v1/chat/completions?api_key={QUERY_SECRET}&api-version=2024-06"
    assert engine.base_url == f"{srv.base_url}?api_key=***&api-version=2024-06"


def test_credentials_quoted_back_by_the_server_are_redacted(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    monkeypatch.setenv("AIE_TEST_KEY", SECRET)
    ref: list[FakeServer] = []
    srv = fake(echoing(ref))
    ref.append(srv)
    engine = OpenAIEngine("fake-model", base_url=credential_url(srv), api_key_env="AIE_TEST_KEY",
                          max_retries=0)
    [gen] = engine.generate([chat("hi")])
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    sent = srv.posts()[0]
    assert sent["headers"]["authorization"] == f"Basic {basic}"  # what the server quotes back
    assert gen.error == (f"HTTP 400 from {srv.base_url}?api_key=***&api-version=2024-06: Error "
                         "code: 400 - no route /v1/chat/completions?api_key=***&api-version=2024-06 "
                         "for Authorization: Basic ***")
    ref[0] = refused = fake(echoing(ref, status=401))  # a 401 stops the run: an EngineError
    engine = OpenAIEngine("fake-model", base_url=credential_url(refused),
                          api_key_env="AIE_TEST_KEY", max_retries=0)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("hi")])
    for text in (gen.error, str(info.value), repr(engine), json.dumps(engine.identity())):
        for secret in (PASSWORD, basic, QUERY_SECRET, SECRET):
            assert secret not in text, (secret, text)
    assert "Authorization: Basic ***" in str(info.value)


def test_capabilities_and_registry(fake) -> None:
    srv = fake(lambda path, body, n: json_reply(200, chat_completion("x")))
    engine = create_engine("openai", model="fake-model", base_url=srv.base_url, unknown_opt=1)
    assert isinstance(engine, OpenAIEngine)
    for cap in (Capability.CHAT, Capability.PROMPT, Capability.STREAM, Capability.TIMINGS,
                Capability.LOGPROBS):
        assert engine.supports(cap)
    assert not engine.supports(Capability.ADAPTERS)
    gens = engine.generate([Request(prompt="x", adapter="my-lora"), chat("y")])
    assert gens[0].finish_reason == "error" and "adapter" in gens[0].error
    assert gens[1].text == "x" and len(srv.posts()) == 1  # the refused request was not sent
    assert engine.generate([]) == []
    engine.close()


# ------------------------------------------------------------------------------------------------
# slow tests against a real `transformers serve` with the embedded model


@pytest.fixture(scope="module")
def served(openai_server_info: ServerInfo) -> Iterator[OpenAIEngine]:
    engine = OpenAIEngine(base_url=openai_server_info.base_url, concurrency=4, timeout=120,
                          max_retries=1)  # fmt: skip
    yield engine
    engine.close()


QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.mark.slow
def test_real_server_greedy_chat(served: OpenAIEngine, openai_server_info: ServerInfo) -> None:
    assert served.model == openai_server_info.model  # taken from /v1/models
    req = chat(QUESTION, max_tokens=24)
    [a] = served.generate([req])
    assert a.error is None, a.error
    assert "paris" in a.text.lower()
    assert a.prompt_tokens and a.prompt_tokens > 5
    assert a.completion_tokens and 0 < a.completion_tokens <= 24
    assert a.finish_reason in ("stop", "length")
    assert a.timings.e2e_s and a.timings.e2e_s > 0
    assert a.token_logprobs is None
    [b] = served.generate([req])
    assert b.text == a.text  # greedy decoding is deterministic
    print(f"chat request latency: {a.timings.e2e_s:.2f}s, {b.timings.e2e_s:.2f}s "
          f"({a.completion_tokens} tokens); server started in {openai_server_info.startup_s:.1f}s")


@pytest.mark.slow
def test_real_server_batch_keeps_order(served: OpenAIEngine) -> None:
    # Same prompt, max_tokens 1..8: each result's token count says which request it answers.
    reqs = [chat("Count from 1 to 30, separated by commas.", max_tokens=k) for k in range(1, 9)]
    start = time.monotonic()
    gens = served.generate(reqs)
    wall = time.monotonic() - start
    assert [g.error for g in gens] == [None] * 8
    assert [g.completion_tokens for g in gens] == list(range(1, 9))
    assert all(g.finish_reason == "length" for g in gens)
    for shorter, longer in zip(gens, gens[1:]):  # greedy: each text extends the previous one
        assert longer.text.startswith(shorter.text.rstrip())
    print(f"8 requests, concurrency 4: {wall:.2f}s wall, "
          f"sum of e2e {sum(g.timings.e2e_s for g in gens):.2f}s")


@pytest.mark.slow
def test_real_server_streaming_timings(served: OpenAIEngine) -> None:
    plain, streamed = served.generate([
        chat(QUESTION, max_tokens=16),
        Request(messages=({"role": "user", "content": QUESTION},), sampling=Sampling(max_tokens=16),
                stream=True),
    ])  # fmt: skip
    assert streamed.error is None, streamed.error
    assert streamed.text == plain.text
    assert streamed.completion_tokens == plain.completion_tokens and streamed.completion_tokens > 1
    assert streamed.prompt_tokens == plain.prompt_tokens  # usage arrived in the stream
    t = streamed.timings
    assert t.ttft_s is not None and t.e2e_s is not None and 0 < t.ttft_s <= t.e2e_s
    assert t.tpot_s is not None and t.tpot_s > 0
    assert t.tpot_s == pytest.approx((t.e2e_s - t.ttft_s) / (streamed.completion_tokens - 1))
    assert plain.timings.ttft_s is None
    print(f"stream: ttft {t.ttft_s * 1000:.0f} ms, tpot {t.tpot_s * 1000:.0f} ms, "
          f"e2e {t.e2e_s:.2f}s; non-streamed e2e {plain.timings.e2e_s:.2f}s")


@pytest.mark.slow
def test_real_server_stop_strings(served: OpenAIEngine) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    free, stopped, streamed = served.generate([
        chat(prompt, max_tokens=32),
        chat(prompt, max_tokens=32, stop=("5",)),
        Request(messages=({"role": "user", "content": prompt},),
                sampling=Sampling(max_tokens=32, stop=("5",)), stream=True),
    ])  # fmt: skip
    assert "5" in free.text  # without the stop string the model goes past 5
    for gen in (stopped, streamed):
        assert gen.error is None, gen.error
        assert "5" not in gen.text and gen.text.strip()
        assert free.text.startswith(gen.text)
        assert gen.finish_reason == "stop"
        assert gen.completion_tokens < free.completion_tokens


@pytest.mark.slow
def test_real_server_prompt_completions(served: OpenAIEngine) -> None:
    # transformers serve implements the legacy /v1/completions endpoint.
    reqs = [Request(prompt="The capital of France is", sampling=Sampling(max_tokens=8)),
            Request(prompt="The capital of France is", sampling=Sampling(max_tokens=8), stream=True)]
    plain, streamed = served.generate(reqs)
    assert plain.error is None, plain.error
    assert plain.text.strip()
    assert plain.prompt_tokens == 5 and plain.completion_tokens == 8  # no chat template added
    assert plain.finish_reason == "length"
    assert streamed.text == plain.text and streamed.timings.ttft_s is not None


@pytest.mark.slow
def test_real_server_logprobs_requested_but_not_returned(served: OpenAIEngine) -> None:
    # transformers serve ignores `logprobs`: the text comes back, token_logprobs stays None.
    [gen] = served.generate([chat(QUESTION, max_tokens=4, logprobs=True)])
    assert gen.error is None and gen.text
    assert gen.token_logprobs is None
    assert isinstance(gen, Generation)
