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
* ``Request.tools`` (chat requests only; on a raw prompt an :class:`EngineError`) -> ``tools=``;
  ``message.tool_calls`` -> ``Generation.tool_calls`` (arguments JSON-decoded, the raw string
  kept when they are not a JSON object) and ``finish_reason="tool_calls"``; calls a server left
  in the text are parsed client-side (see :mod:`pytest_aie.engines._openai_call`). A server
  that rejects ``tools`` (HTTP 400/422 naming tools: vLLM started without
  ``--enable-auto-tool-choice --tool-call-parser ...``) makes :meth:`OpenAIEngine.generate`
  raise one :class:`EngineError` naming the fix. ``transformers serve`` hands ``tools`` to the
  model's chat template and parses calls only for models with a response template (Qwen, or a
  tokenizer with ``response_template``); a chat template without tools drops them silently.
* ``token_logprobs`` is filled when the server returns log-probabilities, else left ``None``:
  ``transformers serve`` ignores the ``logprobs`` field and returns none.
* ``Request.output_schema`` -> ``response_format={"type": "json_schema", "json_schema":
  {"name": "output", "schema": ..., "strict": true}}``, on ``/chat/completions`` and (as a body
  field) on ``/completions``; vLLM's server honours it on both (``vllm serve`` 0.32: structured
  outputs, xgrammar by default). OpenAI's strict mode also wants ``additionalProperties: false``
  and every property in ``required``. Servers differ, so the engine does not take the field on
  trust: before the first request with a schema on an endpoint (chat or completions), one small
  probe asks for JSON of a schema with a single valid answer (``_openai_call.schema_probe``). A
  server that rejects the field (HTTP 400/422: ``transformers serve`` on ``/completions``) or
  ignores it (``transformers serve`` on chat: it logs "Ignoring unsupported fields" and answers
  freely) makes :meth:`OpenAIEngine.generate` raise one :class:`EngineError` naming the problem
  and the fix; nothing unconstrained is passed off as constrained. ``supports(Capability.SCHEMA)``
  runs the chat probe (once per engine; it needs the server).
* :meth:`OpenAIEngine.score_text` (perplexity of given texts) asks ``POST /completions`` with
  ``echo=true, logprobs=1, max_tokens=0`` for the prompt's own log-probabilities; ``vllm serve``
  supports this. Servers that do not (``transformers serve`` ignores ``logprobs``, llama.cpp's
  ``llama-server`` rejects ``echo``, OpenAI's current models refuse it) give an
  :class:`~pytest_aie.errors.EngineError` at the first scored text.

Errors: a request that still fails after the client's retries comes back as a
:class:`~pytest_aie.engines.base.Generation` with ``error`` set and ``finish_reason="error"``;
a server that cannot be reached at all (no request of the batch got through) raises
:class:`~pytest_aie.errors.EngineError`. The API key is read from the environment and never
appears in :meth:`OpenAIEngine.identity`, ``repr``, or any error text: a server or proxy that
quotes the request back in its error (the URL password as Basic-auth base64, an echoed path with
``?api_key=``, the bearer token) has every credential the engine sent replaced by ``***``
before the error reaches a record or a message. A base URL with a query string
(``http://proxy/v1?api_key=...``, ``?api-version=``) keeps the query on every request (the
client's ``default_query``), rather than being joined into the middle of the path.

Layout: this module holds the engine (client setup, identity, batching, error mapping); one
request's parameters, plain and streamed calls and timings are in
:mod:`pytest_aie.engines._openai_call`, scoring (``score_text``) in
:mod:`pytest_aie.engines._openai_score`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pytest_aie.engines import _openai_call, _openai_score
from pytest_aie.engines.base import Capability, Engine, Generation, Request
from pytest_aie.errors import AieError, EngineError, require

__all__ = ["OpenAIEngine", "OPENAI_URL"]

OPENAI_URL = "https://api.openai.com/v1"
_LOCAL_KEY = "EMPTY"  # what local servers are conventionally given when they need no key
_FIX_UNREACHABLE = "start the server or set --aie-base-url"
_FIX_TOOLS = ("start the server with tool calling on (vLLM: --enable-auto-tool-choice "
              "--tool-call-parser <parser for the model>, e.g. hermes), or let the agent use its "
              "text protocol (protocol='text')")
_FIX_SCHEMA = ("serve the model with vLLM (vllm serve), which honours response_format, or use "
               "the hf engine (constrained with xgrammar); or send the request without "
               "output_schema")


def _strip_userinfo(url: str) -> str:
    """``url`` without any ``user:password@`` part and with secret query parameters
    (``?api_key=``) masked: credentials never go into identities or messages."""
    from pytest_aie._util.redact import scrub_text

    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return scrub_text(url)


def _split_query(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its ``?query`` (and trailing ``/``), and the query's parameters: the
    client joins paths onto the base URL as text, so a query left in it would end up in the
    middle of the path (``/v1/?api_key=...chat/completions``); the parameters go out as the
    client's ``default_query`` on every request instead."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(query="", fragment="")).rstrip("/"), query


#: Shortest credential replaced wherever it occurs (a shorter one would mangle any text).
_MIN_SECRET = 4


def _sent_secrets(client: Any, local_key: str) -> set[str]:
    """The credentials a client sends, as a server could quote them back: the API key, the
    base URL's password (raw and percent-decoded) and ``user:password`` as Basic-auth base64,
    and the values of secret query parameters. Read from the client each time, so that no
    attribute of the engine holds them."""
    import base64

    from pytest_aie._util.redact import is_secret_name

    out: set[str] = set()
    key = client.api_key
    if isinstance(key, str) and key and key != local_key:
        out.add(key)
    parts = urlsplit(str(client.base_url))
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        pair = f"{user}:{password}".encode()
        basic = base64.b64encode(pair).decode()
        out |= {parts.password, password, basic, basic.rstrip("="),
                base64.urlsafe_b64encode(pair).decode()}
    for name, value in (getattr(client, "default_query", None) or {}).items():
        if is_secret_name(str(name)) and value:
            out |= {str(value), quote(str(value), safe="")}
    return {s for s in out if len(s) >= _MIN_SECRET}


class _Unreachable(Exception):
    """Internal: the server could not be reached (connection refused, DNS failure...)."""


class _Refused(Exception):
    """Internal: the server refused our credentials (HTTP 401/403): no request can succeed."""


class _ToolsRejected(Exception):
    """Internal: the server rejected a request's ``tools`` (HTTP 400/422 naming tools)."""


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
         Capability.LOGPROBS, Capability.SCORE, Capability.SCHEMA, Capability.TOOLS}
    )
    #: ``max_tokens`` sent when scoring; becomes 1 once the server rejected 0 (see score_text).
    _score_max_tokens: int = 0
    _served_tokenizer: Any  # set by _openai_score.served_tokenizer on first use

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
        url, query = _split_query(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL)
        self.base_url = _strip_userinfo(url + (f"?{urlencode(query)}" if query else ""))
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
            base_url=url, api_key=key, timeout=self.timeout, max_retries=self.max_retries,
            default_query=query or None,  # a base URL's ?query is sent on every request
        )
        self._no_stream_options = False  # set when the server rejected stream_options
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()
        #: chat endpoint? -> None when the server constrains output to a schema, else why not
        self._schema_problems: dict[bool, str | None] = {}
        self.model = model or self._only_served_model()

    # ---------------------------------------------------------------- identity and helpers

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.model, "base_url": self.base_url}

    def describe_batches(self, n: int, call_size: int) -> str:
        return f"with up to {min(n, self.concurrency)} requests in flight"

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, base_url={self.base_url!r})"

    def _scrub(self, text: str) -> str:
        """``text`` (a server's error, quoted back) with every credential this engine sends
        replaced by ``***``: the API key, the base URL's password and its Basic-auth base64,
        secret query values (``?api_key=``), then whatever :func:`~pytest_aie._util.redact.scrub_text`
        recognises (URL passwords, ``Bearer``/``Basic`` tokens, secret query parameters)."""
        from pytest_aie._util.redact import scrub_text

        for secret in sorted(_sent_secrets(self._client, _LOCAL_KEY), key=len, reverse=True):
            text = text.replace(secret, "***")
        return scrub_text(text)

    def _unreachable(self, exc: BaseException) -> EngineError:
        detail = self._scrub(str(exc.__cause__ or exc) or type(exc).__name__)
        return EngineError(
            f"cannot reach OpenAI-compatible server at {self.base_url} ({detail})",
            fix=_FIX_UNREACHABLE,
        )

    def _refused(self, exc: BaseException) -> EngineError:
        """401/403: every request would fail the same way, so the run stops at once."""
        status = getattr(exc, "status_code", None)
        what = "wrong or missing API key" if status == 401 else "the key may not use this model"
        return EngineError(
            f"{self.base_url} refused the request with HTTP {status} ({what}): "
            f"{self._scrub(getattr(exc, 'message', None) or str(exc))}",
            fix="set the right key in $OPENAI_API_KEY (or the engine's api_key_env) "
                "and check --aie-model",
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
            ids: list[str] = [m.id for m in self._client.models.list()]
        except self._openai.APIConnectionError as exc:  # includes timeouts
            raise self._unreachable(exc) from None
        except (self._openai.AuthenticationError, self._openai.PermissionDeniedError) as exc:
            raise self._refused(exc) from None
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

    # ---------------------------------------------------------------- JSON schemas

    def supports(self, capability: str) -> bool:
        """As declared, except ``Capability.SCHEMA``: whether the server really constrains chat
        answers to a JSON schema, found out by one probe request (see the module docstring)."""
        if capability == Capability.SCHEMA:
            return self._schema_problem(chat=True) is None
        return super().supports(capability)

    def check(self, request: Request) -> None:
        if request.tools is not None and request.messages is None:
            raise EngineError("the openai engine sends tools only with chat messages, and this "
                              "request is a raw prompt",
                              fix="give the request messages instead of a prompt")
        if request.output_schema is not None:
            problem = self._schema_problem(chat=request.messages is not None)
            if problem is not None:
                raise EngineError(problem, fix=_FIX_SCHEMA)
        super().check(request)

    def _schema_problem(self, *, chat: bool) -> str | None:
        """Why the server does not constrain output to a schema on that endpoint (``None``:
        it does); probed once per endpoint. Raises :class:`EngineError` when the server cannot
        be reached or refuses the key, or fails the probe otherwise."""
        with self._schema_lock:
            if chat not in self._schema_problems:
                openai = self._openai
                try:
                    problem = _openai_call.schema_probe(self, chat=chat)
                except openai.APIConnectionError as exc:  # includes timeouts
                    raise self._unreachable(exc) from None
                except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                    raise self._refused(exc) from None
                except openai.OpenAIError as exc:
                    raise EngineError(
                        f"cannot tell whether {self.base_url} constrains output to a JSON schema: "
                        f"{self._describe(exc)}", fix=_FIX_UNREACHABLE) from None
                self._schema_problems[chat] = problem
            return self._schema_problems[chat]

    # ---------------------------------------------------------------- generation

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One generation per request, in order, ``concurrency`` requests in flight at once.

        Raises :class:`EngineError` when no request of the batch could reach the server, when
        requests carry an ``output_schema`` that the server would not honour, when one carries
        ``tools`` with a raw prompt, and when the server rejects ``tools``.
        """
        requests = list(requests)
        if not requests:
            return []
        for request in requests:  # tools on a raw prompt: one error, before any request
            if request.tools is not None and request.messages is None:
                self.check(request)
        for chat in sorted({r.messages is not None for r in requests if r.output_schema is not None}):
            problem = self._schema_problem(chat=chat)  # one error for the batch, before any request
            if problem is not None:
                raise EngineError(problem, fix=_FIX_SCHEMA)
        state = {"reached": False}
        unreachable: list[BaseException] = []
        refused: list[BaseException] = []
        tools_rejected: list[BaseException] = []
        abort = threading.Event()

        def run(request: Request) -> Generation | None:
            if abort.is_set():
                return None
            try:
                gen = self._generate_one(request)
            except _Refused as exc:
                with self._lock:
                    refused.append(exc)
                abort.set()
                return None
            except _ToolsRejected as exc:
                with self._lock:
                    tools_rejected.append(exc)
                abort.set()
                return None
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
        if refused:
            raise self._refused(refused[0].__cause__ or refused[0])
        if tools_rejected:
            cause = tools_rejected[0].__cause__ or tools_rejected[0]
            raise EngineError(f"{self.base_url} rejected the request's tools: "
                              f"{self._describe(cause)}", fix=_FIX_TOOLS)
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
            adapter=request.adapter, error=self._scrub(message),
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
                return _openai_call.streamed(self, request)
            return _openai_call.plain(self, request)
        except openai.APITimeoutError as exc:
            return self._error(request, self._describe(exc))
        except openai.APIConnectionError as exc:
            raise _Unreachable(str(exc)) from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise _Refused(str(exc)) from exc
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if request.tools is not None and "tool" in str(exc).lower():
                raise _ToolsRejected(str(exc)) from exc  # every request with tools would fail
            return self._error(request, self._describe(exc))
        except openai.OpenAIError as exc:
            return self._error(request, self._describe(exc))

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
        return _openai_score.score_texts(self, texts, contexts)

    def close(self) -> None:
        """Close the HTTP client's connections."""
        self._client.close()
