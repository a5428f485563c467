"""The ``openai`` engine: any OpenAI-compatible server (OpenAI, vLLM, ``transformers serve``...).

Requests go out through the official ``openai`` client, which does the retrying: 408/409/429 and
5xx answers and connection errors are retried ``max_retries`` times with its exponential backoff
(honouring ``Retry-After``), and each attempt is bounded by ``timeout``. This module does not
retry anything itself. A batch is spread over a thread pool of ``concurrency`` workers.

Mapping:

* chat requests (``messages``) -> ``POST /chat/completions``;
  prompt requests -> ``POST /completions``.
* :class:`~pytest_aie.engines.base.Sampling` -> ``temperature``, ``top_p``, ``max_tokens``,
  ``stop``, ``seed``, and ``logprobs`` (chat: ``logprobs=true``; completions: ``logprobs=0``).
* Stop sequences are cut client-side as well (the text ends before the first stop string):
  OpenAI leaves them out, but some compatible servers (``transformers serve``) include them.
* ``Request.stream`` -> a streamed call that measures time to first content token (``ttft_s``)
  and time per output token after it (``tpot_s = (e2e - ttft) / (completion_tokens - 1)``).
  The stream asks for ``stream_options.include_usage``; a server that rejects the field is
  asked again without it, and when no usage arrives the completion tokens are counted as the
  content chunks received (one token per chunk, an approximation).
* ``token_logprobs`` is filled when the server returns log-probabilities, else left ``None``:
  ``transformers serve`` ignores the ``logprobs`` field and returns none.
* :meth:`OpenAIEngine.score_text` (perplexity of given texts) asks ``POST /completions`` with
  ``echo=true, logprobs=1, max_tokens=0`` for the prompt's own log-probabilities; ``vllm serve``
  supports this. Servers that do not (``transformers serve`` ignores ``logprobs``, llama.cpp's
  ``llama-server`` rejects ``echo``, OpenAI's current models refuse it) give an
  :class:`~pytest_aie.errors.EngineError` at the first scored text.

Errors: a request that still fails after the client's retries comes back as a
:class:`~pytest_aie.engines.base.Generation` with ``error`` set and ``finish_reason="error"``;
a server that cannot be reached at all (no request of the batch got through) raises
:class:`~pytest_aie.errors.EngineError`. The API key is read from the environment and never
appears in :meth:`OpenAIEngine.identity`, ``repr``, or any error text.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from pytest_aie.engines.base import Capability, Engine, Generation, Request, Timings
from pytest_aie.errors import AieError, EngineError, require

__all__ = ["OpenAIEngine", "OPENAI_URL"]

OPENAI_URL = "https://api.openai.com/v1"
_LOCAL_KEY = "EMPTY"  # what local servers are conventionally given when they need no key
_FIX_UNREACHABLE = "start the server or set --aie-base-url"
_FIX_NO_PROMPT_LOGPROBS = (
    "use a server that returns prompt log-probabilities for echo=true with logprobs on "
    "/completions (vllm serve), or the hf engine"
)


def _strip_userinfo(url: str) -> str:
    """``url`` without any ``user:password@`` part (credentials never go into identities)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class _Unreachable(Exception):
    """Internal: the server could not be reached (connection refused, DNS failure...)."""


class OpenAIEngine(Engine):
    """Generate with an OpenAI-compatible server through the ``openai`` client.

    Args:
        model: the model id to ask for; ``None`` asks the server's ``/models`` and takes the
            only model listed (an :class:`EngineError` when it lists none or several).
        base_url: the API root (``.../v1``); default ``$OPENAI_BASE_URL``, else api.openai.com.
        api_key_env: the environment variable holding the API key. Unset is fine for a
            custom server (the key ``"EMPTY"`` is sent); for api.openai.com it is an error.
        concurrency: requests in flight at once (threads).
        timeout: seconds per HTTP attempt.
        max_retries: the client's retries for 408/409/429/5xx and connection errors.
    """

    name = "openai"
    capabilities = frozenset(
        {Capability.CHAT, Capability.PROMPT, Capability.STREAM, Capability.TIMINGS,
         Capability.LOGPROBS, Capability.SCORE}
    )
    #: ``max_tokens`` sent when scoring; becomes 1 once the server rejected 0 (see score_text).
    _score_max_tokens: int = 0

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 3,
        **_ignored: Any,
    ) -> None:
        openai = require("openai", "openai", "the openai engine")
        if concurrency < 1:
            raise EngineError(
                f"openai engine concurrency must be at least 1, got {concurrency}",
                fix="pass a positive concurrency",
            )
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.base_url = _strip_userinfo(url)
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.preferred_batch_size = max(64, 8 * self.concurrency)

        key = os.environ.get(api_key_env) or ""
        if not key:
            if urlsplit(url).hostname == urlsplit(OPENAI_URL).hostname:
                raise EngineError(
                    f"the openai engine needs an API key for {self.base_url}, and "
                    f"${api_key_env} is not set",
                    fix=f"export {api_key_env}=<your key>, or set --aie-base-url to a local "
                    "OpenAI-compatible server",
                )
            key = _LOCAL_KEY
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=url, api_key=key, timeout=self.timeout, max_retries=self.max_retries
        )
        self._no_stream_options = False  # set when the server rejected stream_options
        self._lock = threading.Lock()
        self.model = model or self._only_served_model()

    # ---------------------------------------------------------------- identity and helpers

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "base_url": self.base_url}

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, base_url={self.base_url!r})"

    def _scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        key = self._client.api_key  # the key lives only in the client, never in our attributes
        if key and key != _LOCAL_KEY:
            text = text.replace(key, "***")
        return text

    def _unreachable(self, exc: BaseException) -> EngineError:
        detail = self._scrub(str(exc.__cause__ or exc) or type(exc).__name__)
        return EngineError(
            f"cannot reach OpenAI-compatible server at {self.base_url} ({detail})",
            fix=_FIX_UNREACHABLE,
        )

    def _describe(self, exc: BaseException) -> str:
        """One line for a per-request error, without the key."""
        openai = self._openai
        if isinstance(exc, openai.APIStatusError):
            text = f"HTTP {exc.status_code} from {self.base_url}: {exc.message}"
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                text += f" (after {self.max_retries} retries)"
        elif isinstance(exc, openai.APITimeoutError):
            text = (
                f"request to {self.base_url} timed out after {self.timeout:g}s "
                f"({self.max_retries} retries); raise the engine's timeout"
            )
        else:
            text = f"{type(exc).__name__}: {exc}"
        return self._scrub(text)

    def _only_served_model(self) -> str:
        """The one model ``/models`` lists, or an :class:`EngineError`."""
        try:
            ids = [m.id for m in self._client.models.list()]
        except self._openai.APIConnectionError as exc:  # includes timeouts
            raise self._unreachable(exc) from None
        except self._openai.APIStatusError as exc:
            raise EngineError(
                f"cannot list the models of {self.base_url}: {self._describe(exc)}",
                fix="pass the model id with --aie-model",
            ) from None
        if len(ids) != 1:
            listed = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "") if ids else "none"
            raise EngineError(
                f"the openai engine needs a model id: {self.base_url}/models lists "
                f"{len(ids)} models ({listed})",
                fix="pass the model id with --aie-model",
            )
        return ids[0]

    # ---------------------------------------------------------------- generation

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One generation per request, in order, ``concurrency`` requests in flight at once.

        Raises :class:`EngineError` when no request of the batch could reach the server.
        """
        requests = list(requests)
        if not requests:
            return []
        state = {"reached": False}
        unreachable: list[BaseException] = []
        abort = threading.Event()

        def run(request: Request) -> Generation | None:
            if abort.is_set():
                return None
            try:
                gen = self._generate_one(request)
            except _Unreachable as exc:
                with self._lock:
                    if not state["reached"]:
                        unreachable.append(exc)
                        abort.set()
                        return None
                return self._error(request, self._describe(exc.__cause__ or exc))
            with self._lock:
                state["reached"] = True
            return gen

        workers = min(self.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aie-openai") as pool:
            results = list(pool.map(run, requests))
        if unreachable and not state["reached"]:
            raise self._unreachable(unreachable[0].__cause__ or unreachable[0])
        out: list[Generation] = []
        for request, gen in zip(requests, results):
            if gen is None:  # a connection failed before any request got through
                gen = self._error(
                    request, f"could not reach {self.base_url} (a connection failed in this batch)"
                )
            out.append(gen)
        return out

    def _error(self, request: Request, message: str) -> Generation:
        return Generation(
            text="", finish_reason="error", engine=self.name, model=self.model,
            adapter=request.adapter, error=message,
        )  # fmt: skip

    def _generate_one(self, request: Request) -> Generation:
        """Send one request; API failures become a Generation with ``error``."""
        openai = self._openai
        try:
            self.check(request)
        except AieError as exc:
            return self._error(request, str(exc))
        try:
            if request.stream:
                return self._streamed(request)
            return self._plain(request)
        except openai.APITimeoutError as exc:
            return self._error(request, self._describe(exc))
        except openai.APIConnectionError as exc:
            raise _Unreachable(str(exc)) from exc
        except openai.OpenAIError as exc:
            return self._error(request, self._describe(exc))

    def _params(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if s.stop:
            params["stop"] = list(s.stop)
        if s.seed is not None:
            params["seed"] = s.seed
        if s.logprobs:
            params["logprobs"] = True if request.messages is not None else 0
        if request.messages is not None:
            params["messages"] = [dict(m) for m in request.messages]
        else:
            params["prompt"] = request.prompt
        return params

    def _call(self, request: Request, **extra: Any) -> Any:
        params = {**self._params(request), **extra}
        if request.messages is not None:
            return self._client.chat.completions.create(**params)
        return self._client.completions.create(**params)

    def _finish(
        self,
        request: Request,
        text: str,
        finish_reason: str | None,
        usage: Any,
        logprobs: list[float] | None,
        timings: Timings,
        counted_tokens: int | None = None,
    ) -> Generation:
        text, finish_reason = _cut_at_stop(text, request.sampling.stop, finish_reason)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if completion_tokens is None:
            completion_tokens = counted_tokens
        return Generation(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            engine=self.name,
            model=self.model,
            adapter=request.adapter,
            timings=timings,
            token_logprobs=logprobs,
        )

    def _plain(self, request: Request) -> Generation:
        start = time.perf_counter()
        response = self._call(request)
        e2e = time.perf_counter() - start
        if not response.choices:
            return self._error(request, f"{self.base_url} answered with no choices")
        choice = response.choices[0]
        if request.messages is not None:
            text = choice.message.content or ""
        else:
            text = choice.text or ""
        return self._finish(
            request, text, choice.finish_reason, response.usage,
            _logprobs(choice, chat=request.messages is not None),
            Timings(e2e_s=e2e, batch_size=1),
        )  # fmt: skip

    def _streamed(self, request: Request) -> Generation:
        start = time.perf_counter()
        if self._no_stream_options:
            stream = self._call(request, stream=True)
        else:
            try:
                stream = self._call(request, stream=True, stream_options={"include_usage": True})
            except (self._openai.BadRequestError, self._openai.UnprocessableEntityError) as exc:
                if "stream_options" not in str(exc):
                    raise
                self._no_stream_options = True  # this server rejects the field: ask without it
                stream = self._call(request, stream=True)
        chat = request.messages is not None
        pieces: list[str] = []
        logprobs: list[float] = []
        got_logprobs = False
        ttft: float | None = None
        content_chunks = 0
        finish_reason: str | None = None
        usage = None
        with stream:
            for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    piece = (choice.delta.content if chat else choice.text) or ""
                    if piece:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        pieces.append(piece)
                        content_chunks += 1
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
        return self._finish(
            request, "".join(pieces), finish_reason, usage, logprobs if got_logprobs else None,
            Timings(e2e_s=e2e, ttft_s=ttft, tpot_s=tpot, batch_size=1),
            counted_tokens=content_chunks,
        )  # fmt: skip

    # ---------------------------------------------------------------- scoring (perplexity)

    def score_text(
        self, texts: Sequence[str], contexts: Sequence[str] | None = None
    ) -> list[list[float]]:
        """Per-token natural-log probabilities of each text, given its context if any.

        One ``POST /completions`` per non-empty text, ``concurrency`` in flight, retried by the
        client: ``prompt = context + text, echo=true, logprobs=1, max_tokens=0,
        temperature=0``; the answer's ``choices[0].logprobs.token_logprobs`` are the prompt's
        own log-probabilities (``vllm serve`` computes them as ``prompt_logprobs``). A server
        that fails on ``max_tokens=0`` (a 400/422 that does not name echo or logprobs, or a
        5xx after the client's retries: ``transformers serve`` crashes on it) is asked once
        more with ``max_tokens=1``, remembered for later calls when that works; the generated
        token is then cut off by ``usage.prompt_tokens`` (else: the last entry).

        * The prompt's first token has no condition and comes back ``null``: it is left out.
          With a BOS token (added by the server) that null is the BOS, and the text's first
          token counts, conditioned on BOS, as in the ``hf`` engine. A ``null`` anywhere else
          becomes ``nan`` (the perplexity scorer reports that case as unmeasured).
        * With a context, only the tokens after it are returned. Where the text starts is found
          from ``text_offset`` (``tokens`` when there is none): vLLM's offsets are the running
          lengths of the token strings, which may begin with a special token (``<s>``) that the
          prompt does not contain, so the text is located as the end of the token strings
          (exact when they spell the text; else after the context where they spell that,
          e.g. a multi-byte character split over byte tokens that each read U+FFFD). Offsets
          that are not running lengths are taken as positions in the prompt itself.
        * A token straddling the boundary (``"Answer: " + "Paris"`` read as ``[..., ":",
          " Paris"]``) counts as the text's first token, so the text is never left without
          its first characters; its log-probability then also covers the context's last
          characters, and is conditioned on the context before it.
        * Empty texts give ``[]`` without a request; an empty context is no context.

        The engine declares :data:`Capability.SCORE` without asking the server, so a server
        without prompt log-probabilities is found out here, at the first text scored: one
        :class:`EngineError` naming the server, raised once (no new request goes out after
        the first failure; those already in flight finish).
        Other failures after the client's retries (a text longer than the model's context, a
        5xx) also raise :class:`EngineError`, naming the text.
        """
        texts = list(texts)
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"score_text got {len(texts)} texts but {len(contexts)} contexts")
        results: list[list[float]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text]
        if not todo:
            return results
        failures: list[EngineError] = []
        abort = threading.Event()

        def run(i: int) -> None:
            if abort.is_set():
                return
            context = (contexts[i] if contexts is not None else "") or ""
            try:
                results[i] = self._score_one(context, texts[i], f"text {i + 1} of {len(texts)}")
            except EngineError as exc:
                with self._lock:
                    failures.append(exc)
                abort.set()

        workers = min(self.concurrency, len(todo))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aie-openai-score") as pool:
            list(pool.map(run, todo))
        if failures:
            raise failures[0]
        return results

    def _no_prompt_logprobs(self, detail: str) -> EngineError:
        return EngineError(
            f"server at {self.base_url} does not return prompt log-probabilities "
            f"({self._scrub(detail)}), which scoring a text (perplexity) needs",
            fix=_FIX_NO_PROMPT_LOGPROBS,
        )

    def _score_request(self, prompt: str, what: str) -> tuple[Any, int]:
        """The completions answer echoing ``prompt`` with log-probabilities, and the
        ``max_tokens`` it was asked with. API failures become :class:`EngineError`."""
        openai = self._openai
        max_tokens = self._score_max_tokens
        while True:
            try:
                response = self._client.completions.create(
                    model=self.model, prompt=prompt, echo=True, logprobs=1,
                    max_tokens=max_tokens, temperature=0.0,
                )  # fmt: skip
            except openai.APIStatusError as exc:
                code = exc.status_code
                message = str(exc).lower()
                if code in (400, 422) and ("echo" in message or "logprob" in message):
                    raise self._no_prompt_logprobs(_rejection(exc)) from None
                if code in (404, 405, 501):  # no legacy /completions endpoint
                    raise self._no_prompt_logprobs(_rejection(exc)) from None
                if max_tokens == 0 and (code in (400, 422) or code >= 500):
                    # some servers reject max_tokens=0 (400/422) or crash on it (transformers
                    # serve: 500): ask once more for one generated token, cut off afterwards
                    max_tokens = 1
                    continue
                raise self._score_failed(exc, what) from None
            except openai.APITimeoutError as exc:
                raise self._score_failed(exc, what) from None
            except openai.APIConnectionError as exc:
                raise self._unreachable(exc) from None
            except openai.OpenAIError as exc:
                raise self._score_failed(exc, what) from None
            if max_tokens != self._score_max_tokens:
                self._score_max_tokens = max_tokens  # it worked: ask with 1 from now on
            return response, max_tokens

    def _score_failed(self, exc: BaseException, what: str) -> EngineError:
        return EngineError(
            f"scoring {what} with {self.base_url} failed: {self._describe(exc)}",
            fix="check the server's log; a text longer than the model's context cannot be scored",
        )

    def _score_one(self, context: str, text: str, what: str) -> list[float]:
        """The log-probabilities of ``text``'s tokens after ``context`` (see score_text)."""
        prompt = context + text
        response, max_tokens = self._score_request(prompt, what)
        if not response.choices:
            raise self._no_prompt_logprobs("it answered with no choices")
        choice = response.choices[0]
        lp = getattr(choice, "logprobs", None)
        values = getattr(lp, "token_logprobs", None) if lp is not None else None
        if not values:
            raise self._no_prompt_logprobs("its answer to echo=true, logprobs=1 has no "
                                           "token_logprobs")
        if len(values) > 1 and all(v is None for v in values):  # one token: legitimately null
            raise self._no_prompt_logprobs("its token_logprobs are all null")
        echoed = getattr(choice, "text", None)
        if isinstance(echoed, str) and prompt not in echoed:
            raise self._no_prompt_logprobs("it did not echo the prompt, so the log-probabilities "
                                           "are not the prompt's")
        values = list(values)
        n = len(values)
        if max_tokens > 0:  # drop the generated token(s) after the prompt
            prompt_tokens = getattr(response.usage, "prompt_tokens", None)
            known = isinstance(prompt_tokens, int) and 0 < prompt_tokens <= n
            n = prompt_tokens if known else n - 1
            values = values[:n]
        tokens = getattr(lp, "tokens", None)
        offsets = getattr(lp, "text_offset", None)
        tokens = list(tokens[:n]) if tokens is not None and len(tokens) >= n else None
        offsets = list(offsets[:n]) if offsets is not None and len(offsets) >= n else None
        first = 0
        if context:
            first = _first_text_token(context, text, tokens, offsets)
            if first is None:
                raise EngineError(
                    f"server at {self.base_url} returned neither text_offset nor tokens with its "
                    "prompt log-probabilities, so the text cannot be told from its context",
                    fix="score without a context (drop context='prompt'), or use the hf engine",
                )
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

    def close(self) -> None:
        """Close the HTTP client's connections."""
        self._client.close()


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


def _cut_at_stop(
    text: str, stops: Sequence[str], finish_reason: str | None
) -> tuple[str, str | None]:
    """Cut ``text`` before the earliest stop string, as the OpenAI API does."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut < 0:
        return text, finish_reason
    return text[:cut], "stop"
