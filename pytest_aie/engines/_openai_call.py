"""One request to an OpenAI-compatible server and its answer read into a
:class:`~pytest_aie.engines.base.Generation`: the per-request side of
:class:`pytest_aie.engines.openai.OpenAIEngine` (batching, retries by the client, and error
mapping stay there).

* :func:`params` maps a :class:`~pytest_aie.engines.base.Request` and its
  :class:`~pytest_aie.engines.base.Sampling` to the API's fields;
* :func:`plain` makes one ordinary call and times it (``e2e_s``);
* :func:`streamed` makes one streamed call and measures time to first content token
  (``ttft_s``) and time per output token after it (``tpot_s``), asking without
  ``stream_options`` once the server rejected that field (remembered on the engine);
* both cut the text before the first stop string (:func:`_cut_at_stop`), as the OpenAI API does;
* a chat request with ``tools`` sends them as ``tools=`` (and earlier tool calls in the messages
  with their arguments as JSON strings, as the API wants); ``message.tool_calls`` (streamed:
  the merged ``delta.tool_calls``) come back as ``Generation.tool_calls`` with the arguments
  JSON-decoded (the raw string kept when it is not a JSON object), ``finish_reason
  "tool_calls"``. A server that returned no calls but left ``<tool_call>`` blocks (or a bare
  call's JSON) in the text gets them parsed here (:mod:`._tool_calls`);
* a request with an ``output_schema`` carries it as ``response_format={"type": "json_schema",
  "json_schema": {"name": "output", "schema": ..., "strict": true}}`` (chat: the API's own
  field; raw prompts: the same field in the body of ``/completions``, which vLLM's server reads
  and the OpenAI client has no argument for); :func:`schema_probe` finds out, with one small
  request, whether a server really constrains its answers to such a schema.

The ``openai`` package is reached only through ``engine._openai`` (imported lazily by the
engine), never imported here. API errors propagate to the engine's ``_generate_one``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from pytest_aie.engines._tool_calls import api_messages, call_from_api, parse_tool_calls
from pytest_aie.engines.base import Generation, Request, Timings

if TYPE_CHECKING:
    from pytest_aie.engines.openai import OpenAIEngine


def params(engine: OpenAIEngine, request: Request) -> dict[str, Any]:
    """The create() arguments for ``request``: chat ``messages`` or a ``prompt``, sampling."""
    s = request.sampling
    out: dict[str, Any] = {
        "model": engine.model,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
    }
    if s.stop:
        out["stop"] = list(s.stop)
    if s.seed is not None:
        out["seed"] = s.seed
    if s.logprobs:
        out["logprobs"] = True if request.messages is not None else 0
    if request.messages is not None:
        out["messages"] = api_messages(request.messages)
    else:
        out["prompt"] = request.prompt
    if request.tools is not None:  # chat only: the engine's check refuses tools on a prompt
        out["tools"] = [dict(t) for t in request.tools]
    if request.output_schema is not None:
        response_format = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": request.output_schema, "strict": True}}
        if request.messages is not None:
            out["response_format"] = response_format
        else:  # not an argument of the client's completions.create: sent as a body field
            out["extra_body"] = {"response_format": response_format}
    return out


#: The probe's schema: one property whose only allowed value no model writes unasked.
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"aie_probe": {"type": "string", "enum": ["q7v"]}},
    "required": ["aie_probe"], "additionalProperties": False}
_PROBE_ANSWER = '{"aie_probe":"q7v"}'


def schema_probe(engine: OpenAIEngine, *, chat: bool) -> str | None:
    """Ask the server once (greedy, at most 32 tokens) for JSON of :data:`PROBE_SCHEMA`, through
    the chat endpoint or ``/completions``. ``None`` when the answer follows the schema (the
    server constrains its output); else why not, in words: it rejected ``response_format``
    (HTTP 400/422), or it answered with text that ignores the schema. A truncated answer that
    is a prefix of the only valid one counts as constrained. Other API errors propagate."""
    from pytest_aie.engines.base import Sampling

    sampling = Sampling(max_tokens=32, seed=None)
    if chat:
        request = Request(messages=({"role": "user", "content": "Reply with JSON."},),
                          sampling=sampling, output_schema=PROBE_SCHEMA)
    else:
        request = Request(prompt="JSON:", sampling=sampling, output_schema=PROBE_SCHEMA)
    where = "the chat endpoint" if chat else "/completions"
    openai = engine._openai
    try:
        gen = plain(engine, request)
    except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
        detail = engine._describe(exc)
        body = getattr(exc, "body", None)  # FastAPI servers put the reason in "detail"
        if isinstance(body, dict) and body.get("detail") and str(body["detail"]) not in detail:
            detail += f" ({engine._scrub(str(body['detail']))})"
        return (f"{engine.base_url} rejects response_format on {where}, so it cannot constrain "
                f"output to a JSON schema: {detail}")
    compact = "".join(gen.text.split())
    if compact == _PROBE_ANSWER or (gen.finish_reason == "length" and len(compact) > 2
                                    and _PROBE_ANSWER.startswith(compact)):
        return None
    return (f"{engine.base_url} ignores response_format on {where}: asked for JSON of a schema "
            f"whose only valid answer is {_PROBE_ANSWER}, it answered {gen.text[:60]!r}, so its "
            "answers would not be constrained (transformers serve ignores the field)")


def _call(engine: OpenAIEngine, request: Request, **extra: Any) -> Any:
    kwargs = {**params(engine, request), **extra}
    if request.messages is not None:
        return engine._client.chat.completions.create(**kwargs)
    return engine._client.completions.create(**kwargs)


def _finish(
    engine: OpenAIEngine,
    request: Request,
    text: str,
    finish_reason: str | None,
    usage: Any,
    logprobs: list[float] | None,
    timings: Timings,
    counted_tokens: int | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> Generation:
    text, finish_reason = _cut_at_stop(text, request.sampling.stop, finish_reason)
    if request.tools is not None and not tool_calls:
        # a server that left the calls in the text (transformers serve without a response
        # template for the model, vLLM without a tool parser for it): read them here
        text, tool_calls = parse_tool_calls(text, request.tools)
    if tool_calls and finish_reason in ("stop", None, "function_call"):
        finish_reason = "tool_calls"
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if completion_tokens is None:
        completion_tokens = counted_tokens
    return Generation(
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        engine=engine.name,
        model=engine.model,
        adapter=request.adapter,
        timings=timings,
        token_logprobs=logprobs,
        tool_calls=tool_calls or None,
    )


def plain(engine: OpenAIEngine, request: Request) -> Generation:
    """One non-streamed call; ``Timings.e2e_s`` is its wall time."""
    start = time.perf_counter()
    response = _call(engine, request)
    e2e = time.perf_counter() - start
    if not response.choices:
        return engine._error(request, f"{engine.base_url} answered with no choices")
    choice = response.choices[0]
    calls = None
    if request.messages is not None:
        text = choice.message.content or ""
        calls = [call_from_api(c.id, getattr(c.function, "name", None),
                               getattr(c.function, "arguments", None), i)
                 for i, c in enumerate(getattr(choice.message, "tool_calls", None) or ())
                 if getattr(c, "function", None) is not None]
    else:
        text = choice.text or ""
    return _finish(
        engine, request, text, choice.finish_reason, response.usage,
        _logprobs(choice, chat=request.messages is not None),
        Timings(e2e_s=e2e, batch_size=1), tool_calls=calls,
    )  # fmt: skip


def streamed(engine: OpenAIEngine, request: Request,
             chunk_times: list[float] | None = None) -> Generation:
    """One streamed call, with ``ttft_s`` and ``tpot_s = (e2e - ttft) / (tokens - 1)``;
    ``chunk_times`` gets the ``time.perf_counter()`` arrival of each chunk with content (the
    latency probe's inter-token latencies)."""
    start = time.perf_counter()
    if engine._no_stream_options:
        stream = _call(engine, request, stream=True)
    else:
        try:
            stream = _call(engine, request, stream=True, stream_options={"include_usage": True})
        except (engine._openai.BadRequestError, engine._openai.UnprocessableEntityError) as exc:
            if "stream_options" not in str(exc):
                raise
            engine._no_stream_options = True  # this server rejects the field: ask without it
            stream = _call(engine, request, stream=True)
    chat = request.messages is not None
    pieces: list[str] = []
    logprobs: list[float] = []
    got_logprobs = False
    ttft: float | None = None
    content_chunks = 0
    finish_reason: str | None = None
    usage = None
    calls: dict[int, dict[str, Any]] = {}  # tool-call deltas by index: id, name, argument pieces
    with stream:
        for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue
                piece = (choice.delta.content if chat else choice.text) or ""
                if piece:
                    now = time.perf_counter()
                    if chunk_times is not None:
                        chunk_times.append(now)
                    if ttft is None:
                        ttft = now - start
                    pieces.append(piece)
                    content_chunks += 1
                for delta in (getattr(choice.delta, "tool_calls", None) or ()) if chat else ():
                    _add_call_delta(calls, delta)
                lp = _logprobs(choice, chat=chat)
                if lp is not None:
                    got_logprobs = True
                    logprobs.extend(lp)
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
    e2e = time.perf_counter() - start
    completion_tokens = getattr(usage, "completion_tokens", None) or content_chunks
    tpot = None
    if ttft is not None and completion_tokens and completion_tokens > 1:
        tpot = (e2e - ttft) / (completion_tokens - 1)
    return _finish(
        engine, request, "".join(pieces), finish_reason, usage,
        logprobs if got_logprobs else None,
        Timings(e2e_s=e2e, ttft_s=ttft, tpot_s=tpot, batch_size=1),
        counted_tokens=content_chunks,
        tool_calls=[call_from_api(c["id"], c["name"], "".join(c["arguments"]), i)
                    for i, (_, c) in enumerate(sorted(calls.items()))],
    )  # fmt: skip


def _add_call_delta(calls: dict[int, dict[str, Any]], delta: Any) -> None:
    """Merge one streamed ``tool_calls`` delta: the first of an index brings its id and name,
    later ones pieces of its arguments."""
    index = getattr(delta, "index", None)
    index = len(calls) if index is None else int(index)
    call = calls.setdefault(index, {"id": None, "name": None, "arguments": []})
    call["id"] = call["id"] or getattr(delta, "id", None)
    fn = getattr(delta, "function", None)
    if fn is not None:
        call["name"] = call["name"] or getattr(fn, "name", None)
        if getattr(fn, "arguments", None):
            call["arguments"].append(fn.arguments)


def _logprobs(choice: Any, *, chat: bool) -> list[float] | None:
    """The token log-probabilities of a (chunk's) choice, or None when the server sent none."""
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return None
    if chat:
        content = getattr(lp, "content", None)
        return None if content is None else [float(t.logprob) for t in content]
    values = getattr(lp, "token_logprobs", None)
    return None if values is None else [float(v) for v in values if v is not None]


def _cut_at_stop(
    text: str, stops: Sequence[str], finish_reason: str | None
) -> tuple[str, str | None]:
    """Cut ``text`` before the earliest stop string, as the OpenAI API does."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut < 0:
        return text, finish_reason
    return text[:cut], "stop"
