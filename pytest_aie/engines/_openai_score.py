"""Scoring given texts (perplexity) with an OpenAI-compatible server: the engine side of
:meth:`pytest_aie.engines.openai.OpenAIEngine.score_text`, whose docstring describes the
behaviour in full.

* :func:`score_texts` spreads the texts over ``engine.concurrency`` threads and raises the
  first failure once;
* against a vLLM server started with ``--enable-tokenizer-info-endpoint``, texts are tokenized
  by the server (``/tokenize``; its BOS token from ``/tokenizer_info``) and scored as token ids
  with :func:`~pytest_aie.engines.base.scoring_rows`, the convention of the ``hf`` and ``vllm``
  engines (see :func:`served_tokenizer`);
* each text is one ``POST /completions`` with ``echo=true, logprobs=1, max_tokens=0,
  temperature=0``, asked again with ``max_tokens=1`` (remembered on the engine) when the server
  fails on 0;
* :func:`_first_text_token` finds where the text starts after its context in the echoed
  tokens, from ``text_offset`` or the token strings.

The ``openai`` package is reached only through ``engine._openai`` (imported lazily by the
engine), never imported here.
"""

from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from pytest_aie.engines.base import scoring_rows
from pytest_aie.errors import EngineError

if TYPE_CHECKING:
    from pytest_aie.engines.openai import OpenAIEngine

_FIX_NO_PROMPT_LOGPROBS = (
    "use a server that returns prompt log-probabilities for echo=true with logprobs on "
    "/completions (vllm serve), or the hf engine"
)


def score_texts(
    engine: OpenAIEngine, texts: Sequence[str], contexts: Sequence[str] | None = None
) -> list[list[float]]:
    """Per-token natural-log probabilities of each text after its context (see
    :meth:`OpenAIEngine.score_text`); ``[]`` for an empty text, without a request."""
    texts = list(texts)
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"score_text got {len(texts)} texts but {len(contexts)} contexts")
    results: list[list[float]] = [[] for _ in texts]
    todo = [i for i, text in enumerate(texts) if text]
    if not todo:
        return results
    failures: list[EngineError] = []
    abort = threading.Event()
    tokenizer = served_tokenizer(engine)

    def run(i: int) -> None:
        if abort.is_set():
            return
        context = (contexts[i] if contexts is not None else "") or ""
        what = f"text {i + 1} of {len(texts)}"
        try:
            if tokenizer is not None:
                [(ids, first)] = scoring_rows(tokenizer, [texts[i]], [context])
                results[i] = _score_ids(engine, ids, first, what)
            else:
                results[i] = _score_one(engine, context, texts[i], what)
        except EngineError as exc:
            with engine._lock:
                failures.append(exc)
            abort.set()

    workers = min(engine.concurrency, len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aie-openai-score") as pool:
        list(pool.map(run, todo))
    if failures:
        raise failures[0]
    return results


class ServedTokenizer:
    """The served model's tokenizer, reached through vLLM's ``POST /tokenize``, in the shape
    :func:`~pytest_aie.engines.base.scoring_rows` calls: ``tok(text, add_special_tokens=False)
    ["input_ids"]`` and ``tok.bos_token_id``."""

    def __init__(self, engine: OpenAIEngine, root: str, bos_token_id: int | None) -> None:
        self.engine, self.root, self.bos_token_id = engine, root, bos_token_id

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        answer = _server_json(self.engine, "post", f"{self.root}/tokenize",
                              {"model": self.engine.model, "prompt": text,
                               "add_special_tokens": add_special_tokens})
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise EngineError(f"{self.root}/tokenize answered without a list of token ids",
                              fix="use a vLLM server, or the hf engine")
        return {"input_ids": tokens}


_UNPROBED = object()


def served_tokenizer(engine: OpenAIEngine) -> ServedTokenizer | None:
    """The server's tokenizer when it is a vLLM server with ``/tokenize`` and
    ``/tokenizer_info`` (``--enable-tokenizer-info-endpoint``), asked once per engine; else
    None, and the text is scored as a string (a server without a BOS token of its own then
    leaves the text's first token unscored: a warning says so, once)."""
    probed = getattr(engine, "_served_tokenizer", _UNPROBED)
    if probed is not _UNPROBED:
        return probed  # type: ignore[return-value]
    tokenizer: ServedTokenizer | None = None
    root = str(engine._client.base_url).rstrip("/")
    root = root[:-3] if root.endswith("/v1") else root
    try:
        info = _server_json(engine, "get", f"{root}/tokenizer_info", None)
        bos = info.get("bos_token") if isinstance(info, dict) else None
        if isinstance(bos, dict):
            bos = bos.get("content")
        tokenizer = ServedTokenizer(engine, root, None)
        if isinstance(bos, str) and bos:
            ids = tokenizer(bos)["input_ids"]
            if len(ids) != 1:
                raise EngineError(f"the BOS token {bos!r} of {root} tokenizes to {ids}",
                                  fix="report this server's tokenizer to pytest-aie")
            tokenizer.bos_token_id = ids[0]
    except _NotServed:
        tokenizer = None
        warnings.warn(
            f"pytest-aie: {engine.base_url} does not tokenize for us (no vLLM /tokenize and "
            "/tokenizer_info): perplexity through it follows the server's own tokenization, "
            "and a text's first token is unscored unless the server adds a BOS token. Start "
            "vLLM with --enable-tokenizer-info-endpoint for the convention of the hf and vllm "
            "engines.", stacklevel=2)
    engine._served_tokenizer = tokenizer
    return tokenizer


class _NotServed(Exception):
    """The server has no such endpoint (404/405/501)."""


def _server_json(engine: OpenAIEngine, method: str, url: str, body: dict[str, Any] | None) -> Any:
    """A JSON answer from one of the server's own endpoints, through the openai client (its
    key, timeout and retries)."""
    openai = engine._openai
    try:
        if method == "get":
            return engine._client.get(url, cast_to=object)
        return engine._client.post(url, body=body, cast_to=object)
    except openai.APIStatusError as exc:
        if exc.status_code in (404, 405, 501):
            raise _NotServed(url) from None
        raise _score_failed(engine, exc, url) from None
    except openai.APIConnectionError as exc:
        raise engine._unreachable(exc) from None
    except openai.OpenAIError as exc:
        raise _score_failed(engine, exc, url) from None


def _score_ids(engine: OpenAIEngine, ids: list[int], first: int, what: str) -> list[float]:
    """The log-probabilities of ``ids[first:]``, sent as token ids (no tokenization by the
    server, so the row is exactly the one :func:`scoring_rows` made)."""
    response, _ = _score_request(engine, ids, what)
    if not response.choices:
        raise _no_prompt_logprobs(engine, "it answered with no choices")
    lp = getattr(response.choices[0], "logprobs", None)
    values = getattr(lp, "token_logprobs", None) if lp is not None else None
    if not values or len(values) < len(ids):
        raise _no_prompt_logprobs(engine, "its answer to echo=true, logprobs=1 does not cover "
                                          "the prompt's tokens")
    return [math.nan if v is None else float(v) for v in values[first:len(ids)]]


def _no_prompt_logprobs(engine: OpenAIEngine, detail: str) -> EngineError:
    return EngineError(
        f"server at {engine.base_url} does not return prompt log-probabilities "
        f"({engine._scrub(detail)}), which scoring a text (perplexity) needs",
        fix=_FIX_NO_PROMPT_LOGPROBS,
    )


def _score_failed(engine: OpenAIEngine, exc: BaseException, what: str) -> EngineError:
    return EngineError(
        f"scoring {what} with {engine.base_url} failed: {engine._describe(exc)}",
        fix="check the server's log; a text longer than the model's context cannot be scored",
    )


def _score_request(engine: OpenAIEngine, prompt: str | list[int], what: str) -> tuple[Any, int]:
    """The completions answer echoing ``prompt`` with log-probabilities, and the
    ``max_tokens`` it was asked with. API failures become :class:`EngineError`."""
    openai = engine._openai
    max_tokens = engine._score_max_tokens
    while True:
        try:
            response = engine._client.completions.create(
                model=engine.model, prompt=prompt, echo=True, logprobs=1,
                max_tokens=max_tokens, temperature=0.0,
            )  # fmt: skip
        except openai.APIStatusError as exc:
            code = exc.status_code
            message = str(exc).lower()
            if code in (400, 422) and ("echo" in message or "logprob" in message):
                raise _no_prompt_logprobs(engine, _rejection(exc)) from None
            if code in (404, 405, 501):  # no legacy /completions endpoint
                raise _no_prompt_logprobs(engine, _rejection(exc)) from None
            if max_tokens == 0 and (code in (400, 422) or code >= 500):
                # some servers reject max_tokens=0 (400/422) or crash on it (transformers
                # serve: 500): ask once more for one generated token, cut off afterwards
                max_tokens = 1
                continue
            raise _score_failed(engine, exc, what) from None
        except openai.APITimeoutError as exc:
            raise _score_failed(engine, exc, what) from None
        except openai.APIConnectionError as exc:
            raise engine._unreachable(exc) from None
        except openai.OpenAIError as exc:
            raise _score_failed(engine, exc, what) from None
        if max_tokens != engine._score_max_tokens:
            engine._score_max_tokens = max_tokens  # it worked: ask with 1 from now on
        return response, max_tokens


def _score_one(engine: OpenAIEngine, context: str, text: str, what: str) -> list[float]:
    """The log-probabilities of ``text``'s tokens after ``context`` (see score_text)."""
    prompt = context + text
    response, max_tokens = _score_request(engine, prompt, what)
    if not response.choices:
        raise _no_prompt_logprobs(engine, "it answered with no choices")
    choice = response.choices[0]
    lp = getattr(choice, "logprobs", None)
    values = getattr(lp, "token_logprobs", None) if lp is not None else None
    if not values:
        raise _no_prompt_logprobs(engine, "its answer to echo=true, logprobs=1 has no "
                                          "token_logprobs")
    if len(values) > 1 and all(v is None for v in values):  # one token: legitimately null
        raise _no_prompt_logprobs(engine, "its token_logprobs are all null")
    echoed = getattr(choice, "text", None)
    if isinstance(echoed, str) and prompt not in echoed:
        raise _no_prompt_logprobs(engine, "it did not echo the prompt, so the "
                                          "log-probabilities are not the prompt's")
    values = list(values)
    n = len(values)
    if max_tokens > 0:  # drop the generated token(s) after the prompt
        prompt_tokens = getattr(response.usage, "prompt_tokens", None)
        if isinstance(prompt_tokens, int) and 0 < prompt_tokens <= n:
            n = prompt_tokens
        else:
            n -= 1
        values = values[:n]
    tokens = getattr(lp, "tokens", None)
    offsets = getattr(lp, "text_offset", None)
    tokens = list(tokens[:n]) if tokens is not None and len(tokens) >= n else None
    offsets = list(offsets[:n]) if offsets is not None and len(offsets) >= n else None
    first = 0
    if context:
        found = _first_text_token(context, text, tokens, offsets)
        if found is None:
            raise EngineError(
                f"server at {engine.base_url} returned neither text_offset nor tokens with its "
                "prompt log-probabilities, so the text cannot be told from its context",
                fix="score without a context (drop context='prompt'), or use the hf engine",
            )
        first = found
    out: list[float] = []
    for i in range(first, n):
        v = values[i]
        if v is None:
            if i == 0:
                continue  # the prompt's first token: nothing to condition on
            out.append(math.nan)
        else:
            out.append(float(v))
    return out


def _rejection(exc: Any) -> str:
    """A short reason for an API status error answering echo with logprobs."""
    message = str(getattr(exc, "message", "") or exc)
    prefix = f"Error code: {exc.status_code} - "
    if message.startswith(prefix):
        message = message[len(prefix):]
    return f"it answered HTTP {exc.status_code} to echo=true with logprobs: {message}"


def _first_text_token(
    context: str, text: str, tokens: list[Any] | None, offsets: list[Any] | None
) -> int | None:
    """Index of the first token of ``text`` in the echoed ``context + text`` (the token that
    covers the text's first character, even when it starts inside the context), or None when
    the server sent neither token strings nor offsets. See :meth:`OpenAIEngine.score_text`."""
    if tokens is not None and not all(isinstance(t, str) for t in tokens):
        tokens = None
    if offsets is not None and not all(isinstance(o, int) for o in offsets):
        offsets = None
    ends: list[float] = []
    if tokens is not None and (offsets is None or all(
        offsets[i + 1] - offsets[i] == len(tokens[i]) for i in range(len(tokens) - 1)
    )):  # offsets are the running lengths of the token strings (vLLM, OpenAI)
        served = "".join(tokens)
        if served.endswith(text):  # exact: the token strings spell the text
            boundary = len(served) - len(text)
        else:  # they spell the context, or neither (then the excess is taken as a prefix)
            at = served.find(context)
            boundary = at + len(context) if at >= 0 else len(served) - len(text)
        pos = 0
        for tok in tokens:
            pos += len(tok)
            ends.append(pos)
    elif offsets is not None:  # offsets are positions in the prompt itself
        boundary = len(context)
        ends = [float(o) for o in offsets[1:]] + [math.inf]
    else:
        return None
    return next((i for i, end in enumerate(ends) if end > boundary), len(ends))
