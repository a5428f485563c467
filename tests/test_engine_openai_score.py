"""Tests of :meth:`OpenAIEngine.score_text` (prompt log-probabilities for perplexity).

Fast tests run a tiny OpenAI-compatible HTTP server on 127.0.0.1 in a thread that answers
``/v1/completions`` with ``echo`` + ``logprobs`` the way ``vllm serve`` does: the prompt's tokens
(optionally led by a ``<s>`` BOS token), ``token_logprobs`` with a leading ``null``, and
``text_offset`` as the running lengths of the token strings. Its tokenizer is a regex (words
carry their leading space) and its log-probabilities come from :func:`lp`, so each test can
write the expected tokens down by hand. Nothing in the engine is mocked.

The slow test runs the real ``transformers serve`` (which ignores ``logprobs``) and expects the
clear :class:`EngineError`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Capability
from pytest_aie.errors import EngineError

try:  # run as part of a package (tests/__init__.py) or with tests/ on sys.path
    from tests.serving import serving_or_skip
except ImportError:  # pragma: no cover - depends on how pytest was started
    from serving import serving_or_skip  # type: ignore[no-redef]
from components import need_module  # noqa: E402

need_module("openai", install="pip install -e '.[openai]' (or `make install`)")
from pytest_aie.engines.openai import OpenAIEngine  # noqa: E402

BOS = "<s>"
_TOKEN = re.compile(r" ?[A-Za-z0-9]+| ?[^A-Za-z0-9 ]| ")


def lp(i: int, token: str) -> float:
    """The fake model's log-probability of the prompt's token ``i`` (``token``)."""
    return -round(0.5 + 0.25 * i + 0.01 * len(token), 6)


def tokenize(text: str, *, byte_tokens: bool = False) -> list[str]:
    """The fake tokenizer: words with their leading space, single other characters. With
    ``byte_tokens``, a non-ASCII character becomes one token per UTF-8 byte, each read as
    U+FFFD (what vLLM's per-token decoding gives for byte-fallback pieces)."""
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if byte_tokens and not tok.isascii():
            out.extend("\ufffd" * len(tok.encode("utf-8")))
        else:
            out.append(tok)
    assert byte_tokens or "".join(out) == text
    return out


def vllm_echo(prompt: str, *, bos: bool = False, byte_tokens: bool = False,
              generated: tuple[str, ...] = ()) -> dict[str, Any]:
    """A ``/v1/completions`` answer for ``echo=true, logprobs=1`` in vLLM's shape."""
    prompt_tokens = ([BOS] if bos else []) + tokenize(prompt, byte_tokens=byte_tokens)
    tokens = prompt_tokens + list(generated)
    values: list[float | None] = [None] + [lp(i, t) for i, t in enumerate(tokens)][1:]
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok)
    return {
        "id": "cmpl-1", "object": "text_completion", "created": 0, "model": "fake-model",
        "choices": [{
            "index": 0, "text": prompt + "".join(generated), "finish_reason": "length",
            "stop_reason": None, "prompt_logprobs": None,
            "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": offsets,
                         "top_logprobs": [None] + [{t: v} for t, v in zip(tokens[1:], values[1:])]},
        }],
        "usage": {"prompt_tokens": len(prompt_tokens), "completion_tokens": len(generated) or 1,
                  "total_tokens": len(tokens) + 1},
    }  # fmt: skip


Reply = tuple[int, dict[str, Any]]


class Server:
    """A loopback HTTP server answering every POST with ``respond(body, n)``; it records the
    JSON bodies it received."""

    def __init__(self, respond: Callable[[dict, int], Reply],
                 get: Callable[[str], Reply] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                with lock:
                    server.bodies.append(body)
                    server.paths.append(self.path)
                    n = len(server.bodies)
                self.reply(*respond(body, n))

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                with lock:
                    server.paths.append(self.path)
                self.reply(*(get(self.path) if get is not None else (404, {"detail": "no"})))

            def reply(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Server, OpenAIEngine]]]:
    """``serve(respond, **engine_kwargs)`` -> (server, engine pointed at it)."""
    opened: list[tuple[Server, OpenAIEngine]] = []

    def start(respond: Callable[[dict, int], Reply], get: Callable[[str], Reply] | None = None,
              **kwargs: Any) -> tuple[Server, OpenAIEngine]:
        srv = Server(respond, get)
        engine = OpenAIEngine("fake-model", base_url=srv.base_url,
                              **{"max_retries": 0, "timeout": 10, **kwargs})
        opened.append((srv, engine))
        return srv, engine

    yield start
    for srv, engine in opened:
        engine.close()
        srv.close()


def vllm(**shape: Any) -> Callable[[dict, int], Reply]:
    return lambda body, n: (200, vllm_echo(body["prompt"], **shape))


# ------------------------------------------------------------------------------------------------
# values, request, context handling


def test_declares_score_capability() -> None:
    assert Capability.SCORE in OpenAIEngine.capabilities


def test_scores_texts_without_context(serve) -> None:
    srv, engine = serve(vllm(), concurrency=3)
    texts = ["Hello world", "The cat sat.", "", "x"]
    got = engine.score_text(texts)
    # the first token of each text has no condition (null): left out
    assert got[0] == [lp(1, " world")]
    assert got[1] == [lp(1, " cat"), lp(2, " sat"), lp(3, ".")]
    assert got[2] == []  # an empty text is not sent
    assert got[3] == []  # a one-token text has no conditioned token
    assert len(srv.bodies) == 3
    assert sorted(b["prompt"] for b in srv.bodies) == sorted(["Hello world", "The cat sat.", "x"])
    assert set(srv.paths) - {"/tokenizer_info"} == {"/v1/completions"}
    assert srv.paths.count("/tokenizer_info") == 1  # asked once per engine, then remembered
    for body in srv.bodies:
        assert body["echo"] is True
        assert body["logprobs"] == 1
        assert body["max_tokens"] == 0  # vLLM: echo the prompt only, generate nothing
        assert body["model"] == "fake-model" and body["temperature"] == 0


def test_vllm_tokenizer_endpoints_give_the_hf_convention(serve, recwarn) -> None:
    """A vLLM server with /tokenize and /tokenizer_info: the texts are tokenized by the server
    and sent as token ids, led by the BOS token (or the context's ids), so every token of the
    text is scored, as by the hf and vllm engines."""
    vocab: dict[str, int] = {"<s>": 1}

    def ids(text: str) -> list[int]:
        if text == "<s>":  # a special token is one id
            return [1]
        return [vocab.setdefault(t, len(vocab) + 1) for t in tokenize(text)]

    def respond(body: dict, n: int) -> Reply:
        if "tokenize" in str(body.get("prompt", "")) or "add_special_tokens" in body:
            return 200, {"tokens": ids(body["prompt"]), "count": 0, "max_model_len": 2048}
        prompt = body["prompt"]
        assert isinstance(prompt, list), "scored texts go out as token ids"
        values = [None] + [lp(i, str(t)) for i, t in enumerate(prompt)][1:]
        return 200, {"id": "c", "object": "text_completion", "created": 0, "model": "fake-model",
                     "choices": [{"index": 0, "text": "", "finish_reason": "length",
                                  "logprobs": {"tokens": None, "token_logprobs": values,
                                               "text_offset": None, "top_logprobs": None}}],
                     "usage": {"prompt_tokens": len(prompt), "completion_tokens": 0,
                               "total_tokens": len(prompt)}}

    def get(path: str) -> Reply:
        if path == "/tokenizer_info":
            return 200, {"bos_token": "<s>", "tokenizer_class": "Fake"}
        return 404, {"detail": "Not Found"}

    srv, engine = serve(respond, get)
    got = engine.score_text(["Hello world", "Paris."], contexts=["", "Answer:"])
    sent = [b["prompt"] for b in srv.bodies if isinstance(b.get("prompt"), list)]
    hello, world, answer, colon, paris, dot = (vocab[t] for t in
                                                ("Hello", " world", "Answer", ":", "Paris", "."))
    assert sorted(sent) == sorted([[1, hello, world], [answer, colon, paris, dot]])
    assert got[0] == [lp(1, str(hello)), lp(2, str(world))]  # the first word counts, after BOS
    assert got[1] == [lp(2, str(paris)), lp(3, str(dot))]  # only the text, after its context
    assert {p for p in srv.paths if p != "/v1/completions"} == {"/tokenize", "/tokenizer_info"}
    assert not [w for w in recwarn if "does not tokenize" in str(w.message)]


def test_bos_token_makes_the_first_text_token_count(serve) -> None:
    _, engine = serve(vllm(bos=True))
    [got] = engine.score_text(["Hello world"])
    # tokens <s>, Hello, " world": the null belongs to <s>; "Hello" is conditioned on it
    assert got == [lp(1, "Hello"), lp(2, " world")]


@pytest.mark.parametrize("bos", [False, True])
def test_context_tokens_are_left_out_by_offsets(serve, bos: bool) -> None:
    srv, engine = serve(vllm(bos=bos))
    k = 1 if bos else 0  # index shift of the prompt's tokens
    got = engine.score_text(
        [" Paris.", "Paris", " four"],
        ["The capital of France is", "Answer: ", "2 + 2 ="],
    )
    assert [b["prompt"] for b in sorted(srv.bodies, key=lambda b: b["prompt"])] == [
        "2 + 2 = four", "Answer: Paris", "The capital of France is Paris."]
    # "The capital of France is" = 5 tokens, then " Paris", "."
    assert got[0] == [lp(5 + k, " Paris"), lp(6 + k, ".")]
    # "Answer: " + "Paris" is read "Answer", ":", " Paris": the token straddling the boundary
    # (its space is the context's) counts as the text's
    assert got[1] == [lp(2 + k, " Paris")]
    # "2", " +", " 2", " =", " four"
    assert got[2] == [lp(4 + k, " four")]
    # a context that also occurs earlier in the token strings ("s" inside "<s>"): the text is
    # located from the end, where the token strings spell it
    assert engine.score_text([" is it"], ["s"]) == [[lp(1 + k, " is"), lp(2 + k, " it")]]


def test_context_with_byte_tokens_in_the_text(serve) -> None:
    # "日本" comes back as six byte tokens that each read U+FFFD, so the token strings do not
    # spell the text (counting from the end would land inside it); they do spell the context,
    # and the text starts right after it.
    _, engine = serve(vllm(bos=True, byte_tokens=True))
    [got] = engine.score_text(["日本 ok"], ["Say:"])
    tokens = [BOS, "Say", ":"] + ["\ufffd"] * 6 + [" ok"]
    assert tokenize("Say:日本 ok", byte_tokens=True) == tokens[1:]
    assert got == [lp(i, t) for i, t in enumerate(tokens) if i >= 3]


def test_offsets_in_prompt_coordinates_and_offsets_alone(serve) -> None:
    # A server whose text_offset are positions in the prompt (its <s> at 0, zero-wide), and one
    # that sends offsets without token strings: both are taken as prompt positions.
    def respond(body: dict, n: int) -> Reply:
        data = vllm_echo(body["prompt"], bos=True)
        logprobs = data["choices"][0]["logprobs"]
        logprobs["text_offset"] = [0] + [o - len(BOS) for o in logprobs["text_offset"][1:]]
        if "alone" in body["prompt"]:
            logprobs["tokens"] = None
        return 200, data

    _, engine = serve(respond)
    got = engine.score_text(["Paris", "Paris alone"], ["Answer: ", "Answer: "])
    assert got[0] == [lp(3, " Paris")]  # <s> Answer : " Paris"
    assert got[1] == [lp(3, " Paris"), lp(4, " alone")]


def test_no_offsets_and_no_tokens_with_a_context(serve) -> None:
    def respond(body: dict, n: int) -> Reply:
        data = vllm_echo(body["prompt"])
        data["choices"][0]["logprobs"].update(tokens=None, text_offset=None)
        return 200, data

    _, engine = serve(respond)
    assert engine.score_text(["a b"]) == [[lp(1, " b")]]  # no context: no boundary needed
    with pytest.raises(EngineError) as info:
        engine.score_text(["b c"], ["a "])
    assert "neither text_offset nor tokens" in info.value.problem
    assert "context" in info.value.fix


def test_mid_prompt_null_becomes_nan(serve) -> None:
    def respond(body: dict, n: int) -> Reply:
        data = vllm_echo(body["prompt"])
        data["choices"][0]["logprobs"]["token_logprobs"][2] = None
        return 200, data

    _, engine = serve(respond)
    [got] = engine.score_text(["a b c d"])
    assert len(got) == 3 and math.isnan(got[1])
    assert got[0] == lp(1, " b") and got[2] == lp(3, " d")


@pytest.mark.parametrize("status,error", [
    (400, {"error": {"message": "max_tokens: Input should be greater than or equal to 1"}}),
    (500, "Internal Server Error"),  # transformers serve: generate() raises on max_new_tokens=0
])
def test_max_tokens_zero_refused_falls_back_to_one(serve, status: int, error: Any) -> None:
    # Asked again with max_tokens=1, the generated token (after usage.prompt_tokens entries)
    # is cut off, and the engine remembers to ask with 1.
    def respond(body: dict, n: int) -> Reply:
        if body["max_tokens"] == 0:
            return status, error
        return 200, vllm_echo(body["prompt"], generated=(" and",))

    srv, engine = serve(respond)
    assert engine.score_text(["Hello world"], ["Say: "]) == [[lp(2, " Hello"), lp(3, " world")]]
    assert [b["max_tokens"] for b in srv.bodies] == [0, 1]
    assert engine.score_text(["good day"]) == [[lp(1, " day")]]
    assert [b["max_tokens"] for b in srv.bodies] == [0, 1, 1]  # 1 at once, now


def test_generated_token_cut_without_usage(serve) -> None:
    def respond(body: dict, n: int) -> Reply:
        if body["max_tokens"] == 0:
            return 422, {"detail": "max_tokens must be at least 1"}
        data = vllm_echo(body["prompt"], generated=(" and",))
        del data["usage"]
        return 200, data

    _, engine = serve(respond)
    assert engine.score_text(["a b c"]) == [[lp(1, " b"), lp(2, " c")]]


# ------------------------------------------------------------------------------------------------
# servers without prompt log-probabilities


def _plain_completion(prompt: str, logprobs: Any) -> dict[str, Any]:
    return {"id": "c", "object": "text_completion", "created": 0, "model": "fake-model",
            "choices": [{"index": 0, "text": " and so on", "finish_reason": "length",
                         "logprobs": logprobs}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}


NO_LOGPROBS: dict[str, Callable[[dict, int], Reply]] = {
    # transformers serve: ignores logprobs and echo, generates
    "no logprobs": lambda b, n: (200, _plain_completion(b["prompt"], None)),
    "all null": lambda b, n: (200, {**vllm_echo(b["prompt"]), "choices": [{
        **vllm_echo(b["prompt"])["choices"][0],
        "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, None],
                     "text_offset": [0, 1], "top_logprobs": None}}]}),
    # echo ignored: log-probabilities of a generated continuation, not of the prompt
    "not echoed": lambda b, n: (200, _plain_completion(b["prompt"], {
        "tokens": [" and", " so", " on"], "token_logprobs": [-1.0, -2.0, -3.0],
        "text_offset": [0, 4, 7], "top_logprobs": None})),
    # llama.cpp's llama-server
    "echo rejected": lambda b, n: (400, {"error": {
        "code": 400, "message": "Only no echo is supported", "type": "invalid_request_error"}}),
    "no completions endpoint": lambda b, n: (404, {"error": {"message": "Not Found"}}),
}


@pytest.mark.parametrize("case", list(NO_LOGPROBS))
def test_server_without_prompt_logprobs_raises_once(serve, case: str) -> None:
    srv, engine = serve(NO_LOGPROBS[case], concurrency=1)
    with pytest.raises(EngineError) as info:
        engine.score_text(["one two", "three four", "five six"], ["a", "b", "c"])
    err = info.value
    assert err.problem.startswith(
        f"server at {srv.base_url} does not return prompt log-probabilities"), err.problem
    assert "vllm serve" in err.fix and "hf engine" in err.fix
    assert len(srv.bodies) == 1  # found out at the first text: nothing more was sent
    print(f"{case}: {err.line()}")


def test_transformers_serve_shape_raises_the_clear_error(serve) -> None:
    # What transformers serve does: 500 on max_tokens=0; with 1, a completion without logprobs
    def respond(body: dict, n: int) -> Reply:
        if body["max_tokens"] == 0:
            return 500, "Internal Server Error"
        return 200, _plain_completion(body["prompt"], None)

    srv, engine = serve(respond, concurrency=4)
    with pytest.raises(EngineError) as info:
        engine.score_text([f"text {i}" for i in range(20)])
    assert "does not return prompt log-probabilities" in info.value.problem
    assert "has no token_logprobs" in info.value.problem
    assert len(srv.bodies) < 20  # stopped early


def test_other_failures_name_the_text(serve) -> None:
    def respond(body: dict, n: int) -> Reply:
        if "long" in body["prompt"]:
            return 400, {"error": {"message": "This model's maximum context length is 8 tokens."}}
        return 200, vllm_echo(body["prompt"])

    _, engine = serve(respond, concurrency=1)
    with pytest.raises(EngineError) as info:
        engine.score_text(["fine text", "a long text"])
    assert "scoring text 2 of 2" in info.value.problem
    assert "maximum context length" in info.value.problem
    assert "does not return prompt log-probabilities" not in info.value.problem


def test_mismatched_contexts_is_a_value_error(serve) -> None:
    _, engine = serve(vllm())
    with pytest.raises(ValueError, match="2 texts but 1 contexts"):
        engine.score_text(["a", "b"], ["only one"])


# ------------------------------------------------------------------------------------------------
# end to end with the perplexity scorer


@pytest.mark.parametrize("kind", ["perplexity", "bits_per_byte"])
def test_perplexity_scorer_with_openai_engine(serve, kind: str) -> None:
    from pytest_aie.scorers.perplexity import PerplexityScorer

    srv, engine = serve(vllm(bos=True))
    scorer = PerplexityScorer(engine, kind=kind, context="prompt")
    cases = [
        Case(id="paris", fields={"prompt": "The capital of France is", "expected": " Paris."}),
        Case(id="four", fields={"prompt": "2 + 2 =", "expected": [" four", " 4"]}),
    ]
    paris, four = scorer.score_batch(["ignored", "ignored"], cases)
    assert len(srv.bodies) == 3  # one request per reference
    # <s> The capital of France is -> " Paris" is token 6, "." token 7
    lps = [lp(6, " Paris"), lp(7, ".")]
    # four: " four" and " 4" are each token 5 after <s> 2 " +" " 2" " ="; aggregate keeps the best
    if kind == "perplexity":
        assert paris.value == pytest.approx(math.exp(-sum(lps) / 2), rel=1e-12)
        best = min(math.exp(-lp(5, " four")), math.exp(-lp(5, " 4")))
    else:
        assert paris.value == pytest.approx(-sum(lps) / math.log(2) / len(" Paris."), rel=1e-12)
        best = min(-lp(5, " four") / math.log(2) / 5, -lp(5, " 4") / math.log(2) / 2)
    assert four.value == pytest.approx(best, rel=1e-12)
    assert paris.measured and four.measured


def test_perplexity_scorer_surfaces_the_clear_error(serve) -> None:
    from pytest_aie.scorers.perplexity import PerplexityScorer

    srv, engine = serve(NO_LOGPROBS["no logprobs"])
    scorer = PerplexityScorer(engine, kind="perplexity")  # building it passes: SCORE declared
    with pytest.raises(EngineError, match="does not return prompt log-probabilities"):
        scorer.score_batch(["x"], [Case(id="a", fields={"prompt": "p", "expected": "Some text"})])


# ------------------------------------------------------------------------------------------------
# the real transformers serve


@pytest.mark.slow
def test_transformers_serve_gives_the_clear_error() -> None:
    with serving_or_skip(startup_timeout_s=300) as info:
        engine = OpenAIEngine(base_url=info.base_url, timeout=120, max_retries=1)
        with pytest.raises(EngineError) as err:
            engine.score_text(["Paris is the capital of France."], ["Geography: "])
        problem = err.value.problem
        assert problem.startswith(
            f"server at {info.base_url} does not return prompt log-probabilities"), problem
        assert "vllm serve" in err.value.fix
        print(err.value.line())
        engine.close()
