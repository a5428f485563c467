"""The scripted engine: deterministic canned answers, for unit tests of your own evals.

Answers come from one of:

* a mapping from prompt text (the last user message for chat requests) to answer;
* a callable ``fn(request) -> str``;
* a JSONL file of ``{"prompt": ..., "answer": ...}`` lines (``--aie-model path/to/answers.jsonl``);
* ``module:function`` naming such a callable (``--aie-judge scripted:my_judges:honest``).

A prompt with no scripted answer gets ``default`` (``""`` unless set), or, with
``strict=True``, a per-request error. Usage from Python::

    from pytest_aie.engines.scripted import ScriptedEngine
    engine = ScriptedEngine({"2+2?": "4"})

and from the command line: ``pytest --aie-engine scripted --aie-model answers.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generator, Mapping, Sequence

from pytest_aie._util.digest import code_digest
from pytest_aie.engines.base import Capability, Engine, Generation, Request, Timings
from pytest_aie.errors import EngineError

__all__ = ["ScriptedEngine", "prompt_text"]


def prompt_text(request: Request) -> str:
    """The text a scripted answer is looked up by: the prompt, or the last user message."""
    if request.prompt is not None:
        return request.prompt
    assert request.messages is not None
    users = [m["content"] for m in request.messages if m["role"] == "user"]
    return users[-1] if users else request.messages[-1]["content"]


def _load_jsonl(path: Path) -> dict[str, str]:
    answers: dict[str, str] = {}
    # split on "\n" only: str.splitlines() also splits on U+2028, U+0085 and form feeds,
    # which JSON writers leave raw inside strings
    for no, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers[str(row["prompt"])] = str(row["answer"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EngineError(
                f"{path}:{no}: scripted answers need one JSON object per line with "
                f"'prompt' and 'answer' ({type(exc).__name__})",
                fix='write lines like {"prompt": "2+2?", "answer": "4"}',
            ) from None
    return answers


def _is_import_spec(text: str) -> bool:
    """``package.module:function`` (and not an existing file such as ``C:answers.jsonl``)."""
    import re

    return bool(re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text)) and not Path(text).is_file()


def _import_callable(spec: str) -> Callable[[Request], str]:
    """The answering function named by ``module:function`` (importable from the rootdir or
    the test folders, like conftest helpers)."""
    import importlib

    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"scripted answers {spec!r}: {exc}",
                          fix="name a function fn(request) -> str as module:function, "
                              "importable from the test run") from None
    if not callable(fn):
        raise EngineError(f"scripted answers {spec!r} is not callable",
                          fix="name a function fn(request) -> str")
    return fn  # type: ignore[no-any-return]


class ScriptedEngine(Engine):
    """Answers from a script; counts tokens as whitespace-separated words.

    ``token_delay``: seconds that :meth:`stream_one` sleeps before each word, a simulated time
    per output token for tests of latency measurement (``generate`` never sleeps).
    ``virtual_clock``: instead of sleeping, :meth:`stream_one` advances a clock of its own (one
    per thread) by ``token_delay`` per word, and the latency probe reads that clock
    (:meth:`clock`): each request's figures are exact (TTFT one delay, end to end one delay per
    word), however loaded the machine.
    """

    name = "scripted"
    capabilities = frozenset({Capability.CHAT, Capability.PROMPT, Capability.ADAPTERS,
                              Capability.SCHEMA, Capability.TIMINGS})
    preferred_batch_size = 4096

    def __init__(
        self,
        script: Mapping[str, str] | Callable[[Request], str] | str | Path | None = None,
        *,
        model: str | None = None,
        default: str | None = "",
        strict: bool = False,
        token_delay: float = 0.0,
        virtual_clock: bool | str = False,
        **_ignored: Any,
    ) -> None:
        if not token_delay >= 0:
            raise EngineError(f"scripted engine token_delay must be >= 0 seconds, got {token_delay!r}",
                              fix="pass a delay such as token_delay=0.01")
        self.token_delay = float(token_delay)
        if isinstance(virtual_clock, str):  # from --aie-engine-options virtual_clock=true
            if virtual_clock.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise EngineError(f"scripted engine virtual_clock must be true or false, got "
                                  f"{virtual_clock!r}", fix="pass virtual_clock=true")
            virtual_clock = virtual_clock.strip().lower() in ("true", "1", "yes")
        self.virtual_clock = bool(virtual_clock)
        self._virtual = threading.local()
        source = script if script is not None else model
        self._fn: Callable[[Request], str] | None = None
        self._answers: dict[str, str] = {}
        if callable(source):
            self._fn = source
            self._label = getattr(source, "__qualname__", None) or type(source).__qualname__
        elif isinstance(source, Mapping):
            self._answers = {str(k): str(v) for k, v in source.items()}
            self._label = "mapping"
        elif source not in (None, "") and _is_import_spec(str(source)):
            self._fn = _import_callable(str(source))
            self._label = str(source)
        elif source not in (None, ""):
            path = Path(str(source))
            if not path.is_file():
                raise EngineError(f"scripted answers file {str(path)!r} not found",
                                  fix="pass --aie-model with a JSONL file of prompt/answer lines")
            self._answers = _load_jsonl(path)
            self._label = str(path)
        else:
            self._label = "empty"
        self.default = default
        self.strict = strict
        self.calls: list[int] = []  # batch sizes seen, for tests of batching

    def identity(self) -> dict[str, Any]:
        # everything that decides the outputs: the answers (or the callable's code), and what
        # unknown prompts get
        script = {"answers": self._answers, "default": self.default, "strict": self.strict,
                  "code": code_digest(self._fn) if self._fn is not None else None}
        digest = hashlib.sha256(json.dumps(script, sort_keys=True).encode()).hexdigest()
        return {"engine": self.name, "model": self._label, "revision": digest[:16]}

    def _answer(self, request: Request) -> str | None:
        if self._fn is not None:
            return self._fn(request)
        text = prompt_text(request)
        if text in self._answers:
            return self._answers[text]
        return None if self.strict else self.default

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.calls.append(len(requests))
        return [self._generate_one(req, len(requests)) for req in requests]

    def stream_one(self, request: Request) -> Generator[tuple[str, float], None, Generation]:
        """One request streamed word by word (the latency probe's way in): before each word,
        sleep ``token_delay`` seconds, then yield ``(word, time.perf_counter())``; return the
        Generation that :meth:`generate` gives for it."""
        gen = self._generate_one(request, 1)
        for i, word in enumerate(gen.text.split()):
            if self.virtual_clock:
                self._virtual.now = self.clock() + self.token_delay
            else:
                time.sleep(self.token_delay)
            yield (word if i == 0 else " " + word), self.clock()
        if self.virtual_clock:
            self._virtual.done = True
        return gen

    def clock(self) -> float:
        """Seconds on the clock :meth:`stream_one`'s times are on: this thread's virtual clock
        with ``virtual_clock`` (each request's times start at 0 on it: reading the clock after a
        stream ended rewinds it for the next request), else ``time.perf_counter()``."""
        if not self.virtual_clock:
            return time.perf_counter()
        now: float = getattr(self._virtual, "now", 0.0)
        if getattr(self._virtual, "done", False):  # a request's end was read: the next starts
            self._virtual.done, self._virtual.now = False, 0.0  # at 0, so equal requests give
        return now  # bit-identical figures

    def _generate_one(self, req: Request, batch_size: int) -> Generation:
        answer = self._answer(req)
        if answer is None:
            return Generation(text="", finish_reason="error", engine=self.name,
                              model=self._label, adapter=req.adapter,
                              error=f"no scripted answer for {prompt_text(req)[:80]!r}")
        words = answer.split()
        finish = "stop"
        if len(words) > req.sampling.max_tokens:
            answer = " ".join(words[: req.sampling.max_tokens])
            finish = "length"
        for stop in req.sampling.stop:
            if stop and stop in answer:
                answer = answer[: answer.index(stop)]
                finish = "stop"
        return Generation(
            text=answer,
            prompt_tokens=len(prompt_text(req).split()),
            completion_tokens=len(answer.split()),
            finish_reason=finish,
            engine=self.name,
            model=self._label,
            adapter=req.adapter,
            timings=Timings(batch_size=batch_size),
        )
