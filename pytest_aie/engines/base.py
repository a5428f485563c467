"""The engine interface: a batch of requests in, one generation per request out.

Every engine (``hf``, ``openai``, ``scripted``; later ``vllm``) implements :class:`Engine`.
The interface is batch-first on purpose: the harness collects a whole suite's requests and
hands them to :meth:`Engine.generate` in one call, so an engine can run them at its own speed.

Requests and results are plain dataclasses whose fields are JSON-serialisable, so they can be
cached, logged, and shipped between xdist workers unchanged.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

__all__ = [
    "Capability",
    "Engine",
    "Generation",
    "Request",
    "Sampling",
    "Timings",
    "scoring_rows",
]


class Capability:
    """Names of optional engine features, checked with :meth:`Engine.supports`."""

    CHAT = "chat"  # accepts chat messages (applies a chat template or a chat API)
    PROMPT = "prompt"  # accepts a raw prompt string
    LOGPROBS = "logprobs"  # returns per-token log-probabilities of the completion
    SCORE = "score"  # can score a given text (prompt log-probabilities, for perplexity)
    STREAM = "stream"  # measures time to first token by streaming
    ADAPTERS = "adapters"  # per-request adapter (LoRA) names
    SCHEMA = "schema"  # per-request output JSON schema (constrained decoding)
    TIMINGS = "timings"  # per-request wall-clock timings
    TOOLS = "tools"  # native tool calling: Request.tools in, Generation.tool_calls out


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. ``temperature=0`` means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    logprobs: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if isinstance(self.stop, str):  # a lone string is one stop sequence
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sampling:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown sampling parameter(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)


@dataclass(frozen=True)
class Request:
    """One generation request: chat ``messages`` or a raw ``prompt`` (exactly one)."""

    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    adapter: str | None = None  # adapter (LoRA) name, for engines with Capability.ADAPTERS
    output_schema: dict[str, Any] | None = None  # JSON schema, for Capability.SCHEMA
    stream: bool = False  # ask for streaming timings (time to first token)
    #: JSON tool schemas in the OpenAI format ({"type": "function", "function": {...}}),
    #: for engines with Capability.TOOLS (the agent loop uses a text protocol elsewhere)
    tools: tuple[dict[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request needs exactly one of messages= or prompt=")
        if self.messages is not None:
            msgs = tuple(dict(m) for m in self.messages)
            for m in msgs:
                if "role" not in m or "content" not in m:
                    raise ValueError(f"chat message needs 'role' and 'content': {m!r}")
            object.__setattr__(self, "messages", msgs)
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(dict(t) for t in self.tools))

    def to_dict(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs once per case (cache keys).
        s = self.sampling
        out: dict[str, Any] = {
            "messages": None if self.messages is None else [dict(m) for m in self.messages],
            "prompt": self.prompt,
            "sampling": {"temperature": s.temperature, "top_p": s.top_p,
                         "max_tokens": s.max_tokens, "stop": list(s.stop), "seed": s.seed,
                         "logprobs": s.logprobs},
            "adapter": self.adapter,
            "output_schema": self.output_schema,
            "stream": self.stream,
        }
        if self.tools is not None:  # only when set: older cache keys stay valid
            out["tools"] = [dict(t) for t in self.tools]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        data = dict(data)
        sampling = data.pop("sampling", None) or {}
        sampling = dict(sampling)
        if "stop" in sampling:
            sampling["stop"] = tuple(sampling["stop"])
        msgs = data.pop("messages", None)
        tools = data.pop("tools", None)
        return cls(
            tools=tuple(tools) if tools is not None else None,
            messages=tuple(msgs) if msgs is not None else None,
            sampling=Sampling(**sampling),
            **data,
        )

    def key(self) -> str:
        """A stable hash of everything that determines the output (for the cache)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Timings:
    """Wall-clock timings in seconds, where the engine could measure them (else None)."""

    e2e_s: float | None = None  # request (or its batch) start to last token
    ttft_s: float | None = None  # time to first token (streaming engines)
    tpot_s: float | None = None  # time per output token after the first
    batch_size: int | None = None  # how many requests shared the measured call


@dataclass
class Generation:
    """The result of one :class:`Request`."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "stop", "length", or "error"
    engine: str = ""
    model: str = ""
    adapter: str | None = None
    timings: Timings = field(default_factory=Timings)
    cached: bool = False  # served from the generation cache: timings are not measurements
    error: str | None = None  # set when the engine failed on this request
    token_logprobs: list[float] | None = None
    #: native tool calls the model made: [{"id": ..., "name": ..., "arguments": {...} or the
    #: raw string when it is not JSON}] (engines with Capability.TOOLS)
    tool_calls: list[dict[str, Any]] | None = None
    #: what a retrieval or RAG target retrieved, best first: [{"id", "score", "text"}]
    retrieved: list[dict[str, Any]] | None = None
    #: an agent's run, step by step (see pytest_aie.agent.trajectory)
    trajectory: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        data = dict(data)
        data["timings"] = Timings(**(data.get("timings") or {}))
        return cls(**data)


class Engine(abc.ABC):
    """A batch-first text generation backend.

    Subclasses set :attr:`name` and :attr:`capabilities`, implement :meth:`generate` and
    :meth:`identity`, and may override :meth:`close`. Engines are created lazily by the
    session (the first test that needs one) and closed once at session end.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: How many requests the harness hands over per call; engines micro-batch inside.
    preferred_batch_size: int = 64

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    #: Requests the engine runs together inside one call (None: all it is handed).
    micro_batch: int | None = None

    def describe_batches(self, n: int, call_size: int) -> str:
        """How ``n`` requests handed over ``call_size`` at a time are really run, for the
        progress line (``in 3 batches of up to 16``)."""
        inner = min(call_size, self.micro_batch or call_size)
        sizes = [min(call_size, n - start) for start in range(0, n, call_size)]
        count = sum(-(-size // inner) for size in sizes)
        return f"in {count} batch{'es' if count != 1 else ''} of up to {min(n, inner)}"

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies this engine's outputs: engine name, model path or id, and a
        content hash or revision of the weights. Used as part of the cache key."""

    @abc.abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Generate one :class:`Generation` per request, in order.

        A failure that concerns one request (a refused prompt, a server error after retries)
        should come back as a Generation with ``error`` set and ``finish_reason="error"``;
        a failure of the engine as a whole (server unreachable) raises
        :class:`pytest_aie.errors.EngineError`.
        """

    def check(self, request: Request) -> None:
        """Raise :class:`pytest_aie.errors.EngineError` when this engine cannot serve request."""
        from pytest_aie.errors import EngineError

        if request.adapter and not self.supports(Capability.ADAPTERS):
            raise EngineError(
                f"engine {self.name!r} cannot apply adapter {request.adapter!r}",
                fix="use an engine with adapter support (hf with peft, or vllm)",
            )
        if request.output_schema is not None and not self.supports(Capability.SCHEMA):
            raise EngineError(
                f"engine {self.name!r} cannot constrain output to a JSON schema",
                fix="drop output_schema or use an engine with constrained decoding",
            )
        if request.sampling.logprobs and not self.supports(Capability.LOGPROBS):
            raise EngineError(
                f"engine {self.name!r} does not return token log-probabilities",
                fix="use the hf engine, or an OpenAI-compatible server that returns logprobs",
            )
        if request.tools is not None and not self.supports(Capability.TOOLS):
            raise EngineError(f"engine {self.name!r} has no native tool calling",
                              fix="let the agent use its text protocol (protocol='text')")
        if request.messages is not None and not self.supports(Capability.CHAT):
            raise EngineError(f"engine {self.name!r} does not accept chat messages",
                              fix="give the case a prompt instead of messages")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources (models, connections)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scoring_rows(tokenizer: Any, texts: Sequence[str], contexts: Sequence[str] | None
                 ) -> list[tuple[list[int], int]]:
    """The one perplexity convention of every engine that scores text in process: per text,
    ``(token ids, index of the first scored token)``. The text is scored after its context
    (tokenized separately and joined), else after the tokenizer's BOS token when it has one,
    so every token of the text is scored; without either its first token is left out."""
    rows = []
    for i, text in enumerate(texts):
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        prefix: list[int] = []
        if contexts is not None and contexts[i]:
            prefix = list(tokenizer(contexts[i], add_special_tokens=False)["input_ids"])
        elif tokenizer.bos_token_id is not None:
            prefix = [int(tokenizer.bos_token_id)]
        rows.append((prefix + ids, max(len(prefix), 1)))
    return rows
