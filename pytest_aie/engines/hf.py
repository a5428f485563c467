"""The ``hf`` engine: transformers in-process, on CPU or CUDA, with real batching.

How a call to :meth:`HFEngine.generate` runs:

1. Each request becomes a prompt: chat messages through the tokenizer's chat template
   (``add_generation_prompt=True``, no extra special tokens), raw prompts as they are.
2. Requests are sorted by (``max_tokens``, prompt length) and cut into micro-batches of
   ``batch_size``; each micro-batch is one left-padded ``model.generate`` call, with the position
   ids taken from the attention mask. Results come back in input order. The rows' shared
   beginning (a system prompt with its tools or rubric) is computed once and kept for later
   calls (:mod:`._hf_prefix`; ``prefix_cache_mb``, 256 by default, 0 turns it off); streamed
   requests (:meth:`HFEngine.stream_one`, the latency probe) never use it. Micro-batches run
   through the engine's own decoding loop (:mod:`._hf_loop`), in which rows that finished leave
   the batch instead of riding along as padding (``model.generate`` for models whose cache is
   not a plain ``DynamicCache``, and for streamed requests).
3. Token choice is done per row by :class:`~pytest_aie.engines._hf_decoding.RowSampler`, a
   logits processor at the end of the chain: ``argmax`` when ``temperature == 0``, else
   temperature + top-p sampling with the row's own ``torch.Generator`` seeded from the
   request's ``seed``. Requests with different sampling parameters therefore share a
   micro-batch, and a seeded request gives the same text whatever else is in its batch (up to
   the float round-off that batching itself brings).
4. Per-row stopping (:class:`~pytest_aie.engines._hf_decoding.RowStopper`): end-of-sequence
   token (``finish_reason="stop"``), a stop string (text cut before it, ``"stop"``), or the
   request's ``max_tokens`` (``"length"``). Rows that finish early stop counting tokens while
   the rest of the batch runs.

Generation settings that the model folder recommends (``generation_config.json``: repetition
penalty, default temperature, ...) are *not* applied: the request's :class:`Sampling` is the whole
truth, so results do not depend on hidden defaults. The token log-probabilities are those of the
model's raw distribution (temperature 1, before top-p and before a JSON schema's mask), as
OpenAI-compatible servers report them.

LoRA adapters (with ``peft`` installed; :attr:`Capability.ADAPTERS`): ``Request.adapter`` is the
folder of a PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``), given as
``"path"`` or, pinned to its contents, ``"path@<sha256>"`` from :meth:`HFEngine.resolve_adapter`.
Each adapter folder is loaded once into the one loaded base model (``PeftModel.from_pretrained``
for the first, ``load_adapter`` for later ones, under a name made from its content hash). A batch
is split by adapter; each group runs in its own micro-batches with its adapter active
(``set_adapter``), requests without an adapter with the adapters switched off
(``disable_adapter``), so a base request gives the same result with or without adapters loaded.

The generation cache keys a request by its fields, ``adapter`` included, and :meth:`identity` only
describes the base model: callers that cache should put :meth:`HFEngine.resolve_adapter`'s
``"path@<sha256>"`` in ``Request.adapter``, so that retraining an adapter in place changes the key.
The engine checks a pinned hash against the folder when it loads the adapter.

JSON schemas (with ``xgrammar`` installed; :attr:`Capability.SCHEMA`): a request's
``output_schema`` constrains its output to JSON that matches the schema, by a grammar that masks
the tokens the schema does not allow next (:mod:`._hf_grammar`, which lists the keywords
xgrammar does not enforce). Each distinct schema is compiled once per engine, before anything is
generated (an invalid schema is an :class:`EngineError`). Rows with different schemas and rows
without one share micro-batches: the grammar leaves the logits of rows without a schema
untouched. Greedy decoding stays greedy among the allowed tokens. A row that reaches
``max_tokens`` inside its JSON ends there, truncated, with ``finish_reason="length"``.

Native tool calls (:attr:`Capability.TOOLS`, only for a model whose chat template renders a
``tools`` list: the embedded SmolLM2-135M-Instruct's does not, so an agent uses its text protocol
there): a request's ``tools`` go to ``apply_chat_template(..., tools=...)`` and earlier
tool-call arguments into the messages as dicts; the calls are parsed out of the generated text
(``<tool_call>{...}</tool_call>`` blocks, or a reply that is only a call's JSON) by
:mod:`._tool_calls` into ``Generation.tool_calls``, the text keeping what is left, and
``finish_reason="tool_calls"``.

The pieces live in private sibling modules: model loading in :mod:`._hf_loading`, prompt
encoding and the per-row sampler and stopper in :mod:`._hf_decoding`, JSON-schema grammars in
:mod:`._hf_grammar`, LoRA adapters in :mod:`._hf_adapters` (:func:`split_adapter` is
re-exported here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any, Generator, Sequence

from pytest_aie.engines._hf_adapters import AdapterMixin, split_adapter
from pytest_aie.engines._hf_decoding import (
    RowSampler,
    RowStopper,
    encode,
    eos_ids,
    left_padded,
)
from pytest_aie.engines._hf_grammar import FIX_XGRAMMAR, Grammars, RowGrammar, have_xgrammar
from pytest_aie.engines._hf_loading import (
    DTYPES,
    FIX_MODEL,
    hub_revision,
    load_model,
    load_tokenizer,
    resolve_device_dtype,
    torch_module,
    transformers_module,
)
from pytest_aie.engines._hf_loop import decode
from pytest_aie.engines._hf_prefix import PrefixCache, plain_cache, prefix_layout
from pytest_aie.engines._hf_scoring import ScoringMixin
from pytest_aie.engines._tool_calls import parse_tool_calls, template_uses_tools
from pytest_aie.engines.base import (
    Capability,
    Engine,
    Generation,
    Request,
    Timings,
)
from pytest_aie.errors import EngineError

__all__ = ["HFEngine", "split_adapter"]



class HFEngine(ScoringMixin, AdapterMixin, Engine):
    """Run a causal language model with transformers, batched.

    ``model``: a local model folder, a Hugging Face model id (from the local HF cache), or
    ``None``/``"embedded"`` for the embedded SmolLM2-135M-Instruct. ``device``: ``"auto"`` (CUDA
    when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... ``dtype``: ``"auto"``
    (float32 on CPU, bfloat16 on CUDA when supported, else float16), or an explicit name.
    ``batch_size``: rows per ``generate`` call. ``threads``: CPU threads for torch, set with
    ``torch.set_num_threads`` when the model loads (process-wide); by default torch's own choice,
    except under pytest-xdist, where each worker takes ``cpu_count // workers`` (at least 1): torch
    threads that outnumber free cores spin-wait on each other and can run 10-50x slower. Other
    keyword options are ignored, so the session can pass one option set to every engine.

    Timings: a row's ``e2e_s`` is the wall time of its whole micro-batch (tokenizing, generating,
    decoding) and ``batch_size`` says how many requests shared it. The latency of one request
    inside a batch is not measurable, so ``ttft_s`` and ``tpot_s`` stay ``None``.

    The model loads on first use (``generate``, ``score_text``), once; :meth:`identity` does not
    need it, so a fully cached run never loads the weights.

    LoRA adapters and JSON schemas: see the module docstring. :meth:`supports` reports
    ``Capability.ADAPTERS`` when ``peft`` is installed and ``Capability.SCHEMA`` when ``xgrammar``
    is (checked without importing them), and ``Capability.TOOLS`` when the model's chat template
    renders a ``tools`` list (see the module docstring).
    """

    name = "hf"
    capabilities = frozenset(
        {Capability.CHAT, Capability.PROMPT, Capability.LOGPROBS, Capability.SCORE, Capability.TIMINGS}
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        threads: int | None = None,
        prefix_cache_mb: float = 256,
        **_ignored: Any,
    ) -> None:
        from pytest_aie.engines.embedded import resolve_model

        if batch_size < 1:
            raise EngineError(f"hf engine batch_size must be at least 1, got {batch_size}",
                              fix="pass a positive batch size")
        if dtype != "auto" and dtype.lower() not in DTYPES:
            raise EngineError(f"hf engine: unknown dtype {dtype!r}",
                              fix=f"use auto or one of {', '.join(sorted(set(DTYPES.values())))}")
        self.model_ref = resolve_model(model)
        self.local = Path(self.model_ref).is_dir()
        if self.local and not (Path(self.model_ref) / "config.json").is_file():
            raise EngineError(f"model folder {self.model_ref!r} has no config.json", fix=FIX_MODEL)
        self.requested_device = device
        self.requested_dtype = dtype
        self.batch_size = int(batch_size)
        if threads is None and os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
            workers = max(1, int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
            threads = max(1, (os.cpu_count() or 1) // workers)
        self.threads = threads
        self.preferred_batch_size = max(64, 4 * self.batch_size)
        self.micro_batch = self.batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._dtype: str | None = None
        self._revision: str | None = None
        self._closed = False
        self._peft_model: Any = None  # the PeftModel wrapping self._model, once an adapter is loaded
        self._adapters: dict[str, str] = {}  # Request.adapter reference -> peft adapter name
        self._stream_lock = threading.Lock()  # stream_one with adapters: one at a time
        self._grammars: Grammars | None = None  # JSON-schema grammars of the loaded tokenizer
        self._template_tools: bool | None = None  # does the chat template render tools?
        if prefix_cache_mb < 0:
            raise EngineError(f"hf engine prefix_cache_mb must be 0 (off) or more, got {prefix_cache_mb}",
                              fix="give a size in MB (--aie-engine-options prefix_cache_mb=256), or 0 "
                                  "to turn prefix caching off")
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20))
        #: run micro-batches through the engine's own loop, where finished rows leave the
        #: batch (:mod:`._hf_loop`); False: ``model.generate``, as before (tests compare them)
        self.own_loop = True
        self._plain_cache: bool | None = None

    def supports(self, capability: str) -> bool:
        if capability == Capability.ADAPTERS:
            return importlib.util.find_spec("peft") is not None
        if capability == Capability.SCHEMA:
            return have_xgrammar()
        if capability == Capability.TOOLS:
            return self._template_has_tools()
        return super().supports(capability)

    def _template_has_tools(self) -> bool:
        """Whether the model's chat template renders a ``tools`` list (read from the tokenizer,
        loaded alone when the model is not loaded yet; once per engine)."""
        if self._template_tools is None:
            tokenizer = self._tokenizer
            if tokenizer is None:
                tokenizer = load_tokenizer(self.model_ref, local=self.local)
            self._template_tools = template_uses_tools(tokenizer)
        return self._template_tools

    def check(self, request: Request) -> None:
        if request.output_schema is not None and not have_xgrammar():
            raise EngineError("the hf engine needs the Python package 'xgrammar' to constrain "
                              "output to a JSON schema, and it is not installed", fix=FIX_XGRAMMAR)
        super().check(request)

    def _grammar_set(self, model: Any, tokenizer: Any) -> Grammars:
        """The loaded tokenizer's :class:`Grammars` (its vocabulary compiled on first use)."""
        if self._grammars is None:
            head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            weight = getattr(head, "weight", None)
            width = int(weight.shape[0]) if weight is not None else \
                int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
            self._grammars = Grammars(tokenizer, width, sorted(eos_ids(model, tokenizer)),
                                      threads=self.threads)
        return self._grammars

    # ------------------------------------------------------------------ identity and loading

    def _resolve_device_dtype(self) -> tuple[str, str]:
        if self._device is None or self._dtype is None:
            self._device, self._dtype = resolve_device_dtype(self.requested_device, self.requested_dtype)
        return self._device, self._dtype

    def identity(self) -> dict[str, Any]:
        """``{"engine", "model", "revision", "dtype"}``: the revision is the content hash of every
        file in a local folder (hashed once, then cached by size and mtime), or the commit of a
        hub id's cached snapshot."""
        from pytest_aie.engines.embedded import folder_revision

        if self._revision is None:
            if self.local:
                self._revision = folder_revision(self.model_ref)
            else:
                revision = hub_revision(self.model_ref)
                if revision is None:  # not cached yet: loading downloads it (when online)
                    self._load()
                    revision = hub_revision(self.model_ref) or "unknown"
                self._revision = revision
        _, dtype = self._resolve_device_dtype()
        return {"engine": self.name, "model": self.model_ref, "revision": self._revision, "dtype": dtype}

    def _load(self) -> tuple[Any, Any]:
        if self._closed:
            raise EngineError("the hf engine was closed", fix="create a new engine")
        if self._model is not None:
            return self._model, self._tokenizer
        device, dtype = self._resolve_device_dtype()
        self._model, self._tokenizer = load_model(self.model_ref, local=self.local, device=device,
                                                  dtype=dtype, threads=self.threads)
        return self._model, self._tokenizer

    def close(self) -> None:
        """Drop the model and free its memory (CUDA cache included)."""
        had_model = self._model is not None
        self._model = self._tokenizer = self._peft_model = None
        self._grammars = None
        self._plain_cache = None
        self.prefix_cache.clear()
        self._adapters.clear()
        self._closed = True
        if had_model:
            import gc

            gc.collect()
            torch = torch_module()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One :class:`Generation` per request, in input order (see the module docstring)."""
        if not requests:
            return []
        for request in requests:  # before loading the model: a request we cannot serve fails fast
            self.check(request)
        model, tokenizer = self._load()
        results: list[Generation | None] = [None] * len(requests)
        encoded: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            if request.output_schema is not None:  # compile every schema first: a bad one fails fast
                self._grammar_set(model, tokenizer).compiled(request.output_schema)
            try:
                encoded[i] = encode(tokenizer, request, self.model_ref)
            except EngineError as exc:
                results[i] = self._error(request, str(exc))
        groups: dict[str | None, list[int]] = {}  # adapter reference -> request indices
        for i in encoded:
            groups.setdefault(requests[i].adapter or None, []).append(i)
        for ref in groups:  # load every adapter before generating anything: a bad one fails fast
            if ref:
                self._adapter_name(model, ref)
        for ref, members in groups.items():
            order = sorted(members, key=lambda i: (requests[i].sampling.max_tokens, len(encoded[i]), i))
            with self._adapter_active(model, ref):
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start:start + self.batch_size]
                    for i, gen in zip(chunk, self._generate_isolated(model, tokenizer, requests,
                                                                     encoded, chunk)):
                        results[i] = gen
        return [g for g in results if g is not None]

    def _generate_isolated(self, model: Any, tokenizer: Any, requests: Sequence[Request],
                           encoded: dict[int, list[int]], chunk: list[int]) -> list[Generation]:
        """One micro-batch; when it fails, each request again on its own, so that one bad
        request (too long for the model, say) comes back as an error and the others as results."""
        try:
            return self._generate_batch(model, tokenizer, [requests[i] for i in chunk],
                                        [encoded[i] for i in chunk])
        except (RuntimeError, ValueError, IndexError) as exc:
            if len(chunk) > 1:
                return [g for i in chunk
                        for g in self._generate_isolated(model, tokenizer, requests, encoded, [i])]
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return [self._error(requests[chunk[0]], f"hf engine failed on this request: {message}")]

    def _error(self, request: Request, message: str) -> Generation:
        return Generation(text="", finish_reason="error", engine=self.name, model=self.model_ref,
                          adapter=request.adapter, error=message)

    def _own_loop(self, model: Any) -> bool:
        """Whether micro-batches run through :func:`._hf_loop.decode` (finished rows leave the
        batch) rather than ``model.generate``: when :attr:`own_loop` is on and the model's cache
        is a plain ``DynamicCache``."""
        if self._plain_cache is None:
            self._plain_cache = plain_cache(model)
        return self.own_loop and self._plain_cache

    def _generate_batch(self, model: Any, tokenizer: Any, requests: list[Request],
                        prompts: list[list[int]]) -> list[Generation]:
        torch = torch_module()
        started = time.perf_counter()
        kwargs, sampler, stopper = self._generate_kwargs(model, tokenizer, requests, prompts)
        with torch.inference_mode():
            if self._own_loop(model):
                config = kwargs.pop("generation_config")
                decode(model, **kwargs, max_new_tokens=config.max_new_tokens,
                       pad_token_id=config.pad_token_id)
            else:
                model.generate(**kwargs)
        elapsed = time.perf_counter() - started
        return [self._result(request, len(prompts[row]), sampler, stopper, row,
                             Timings(e2e_s=elapsed, batch_size=len(requests)))
                for row, request in enumerate(requests)]

    def _result(self, request: Request, prompt_tokens: int, sampler: RowSampler,
                stopper: RowStopper, row: int, timings: Timings) -> Generation:
        tokens, reason, text = stopper.result(row)
        logprobs = sampler.logprobs[row][:tokens] if request.sampling.logprobs else None
        calls = None
        if request.tools is not None:
            text, calls = parse_tool_calls(text, request.tools)
            if calls and reason == "stop":
                reason = "tool_calls"
        return Generation(
            text=text, prompt_tokens=prompt_tokens, completion_tokens=tokens,
            finish_reason=reason, engine=self.name, model=self.model_ref, adapter=request.adapter,
            timings=timings, token_logprobs=logprobs, tool_calls=calls,
        )

    def _generate_kwargs(self, model: Any, tokenizer: Any, requests: list[Request],
                         prompts: list[list[int]], *, cached: bool = True,
                         ) -> tuple[dict[str, Any], RowSampler, RowStopper]:
        """``model.generate``'s arguments for one left-padded micro-batch, with its per-row
        sampler and stopper; with ``cached``, the rows' shared prefix comes from the prefix
        cache (:mod:`._hf_prefix`) when it is long enough."""
        transformers = transformers_module()
        device = self._device or "cpu"
        pad_id = int(tokenizer.pad_token_id)
        shared = self.prefix_cache.length(prompts) if cached and self.prefix_cache.usable(model) else 0
        if shared:
            input_ids, attention, width = prefix_layout(prompts, shared, pad_id)
        else:
            input_ids, attention, width = left_padded(prompts, pad_id)
        eos = eos_ids(model, tokenizer)
        stopper = RowStopper(tokenizer, [r.sampling for r in requests], width, eos)
        schemas = [r.output_schema for r in requests]
        grammar = None
        if any(s is not None for s in schemas):
            grammar = RowGrammar(self._grammar_set(model, tokenizer), schemas, stopper.done)
        sampler = RowSampler([r.sampling for r in requests], grammar)
        max_new = max(r.sampling.max_tokens for r in requests)
        config = transformers.GenerationConfig(
            max_new_tokens=max_new, do_sample=False, num_beams=1,
            eos_token_id=sorted(eos) or None, pad_token_id=pad_id,
            bos_token_id=getattr(model.generation_config, "bos_token_id", None),
        )
        kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
                  "generation_config": config,
                  "logits_processor": transformers.LogitsProcessorList([sampler]),
                  "stopping_criteria": transformers.StoppingCriteriaList([stopper])}
        if shared:
            kwargs["past_key_values"] = self.prefix_cache.expanded(
                model, requests[0].adapter or "", prompts[0][:shared], len(prompts))
        return kwargs, sampler, stopper

    def stream_one(self, request: Request) -> Generator[tuple[str, float], None, Generation]:
        """Generate one request on its own, streamed through transformers'
        ``TextIteratorStreamer`` (the latency probe's way in). Yields ``(text,
        time.perf_counter())`` once per generated token as it leaves the model, the
        end-of-sequence token included (``text``: what the streamer released then, ``""``
        mid-word; what it holds back to the end is added to the last token's), and returns the
        request's :class:`Generation`, sampled and stopped exactly as :meth:`generate` does it.
        With LoRA adapters in play, streamed requests run one at a time (the active adapter
        belongs to the model, not to a thread)."""
        torch, transformers = torch_module(), transformers_module()
        model, tokenizer = self._load()
        self.check(request)
        prompt = encode(tokenizer, request, self.model_ref)
        kwargs, sampler, stopper = self._generate_kwargs(model, tokenizer, [request], [prompt],
                                                         cached=False)
        streamer = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True,
                                                     skip_special_tokens=True)
        lock = self._stream_lock if (request.adapter or self._peft_model is not None) \
            else contextlib.nullcontext()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with lock, torch.inference_mode(), self._adapter_active(model, request.adapter or None):
                    model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # handed to the caller, after ending the stream
                failure.append(exc)
                streamer.end()

        started = time.perf_counter()
        thread = threading.Thread(target=run, name="aie-hf-stream", daemon=True)
        thread.start()
        held: list[tuple[str, float]] = []  # the last two items: the very last is end()'s flush
        try:
            for text in streamer:
                held.append((text, time.perf_counter()))
                if len(held) > 2:
                    yield held.pop(0)
        finally:
            thread.join()
        if failure:
            exc = failure[0]
            if not isinstance(exc, (RuntimeError, ValueError, IndexError)):
                raise exc
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return self._error(request, f"hf engine failed on this request: {message}")
        if len(held) == 2:
            yield held[0][0] + held[1][0], held[0][1]
        return self._result(request, len(prompt), sampler, stopper, 0,
                            Timings(e2e_s=time.perf_counter() - started, batch_size=1))
