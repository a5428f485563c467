"""The ``hf`` engine: transformers in-process, on CPU or CUDA, with real batching.

How a call to :meth:`HFEngine.generate` runs:

1. Each request becomes a prompt: chat messages through the tokenizer's chat template
   (``add_generation_prompt=True``, no extra special tokens), raw prompts as they are.
2. Requests are sorted by (``max_tokens``, prompt length) and cut into micro-batches of
   ``batch_size``; each micro-batch is one left-padded ``model.generate`` call, with the position
   ids taken from the attention mask. Results come back in input order.
3. Token choice is done per row by :class:`_RowSampler`, a logits processor at the end of the
   chain: ``argmax`` when ``temperature == 0``, else temperature + top-p sampling with the row's
   own ``torch.Generator`` seeded from the request's ``seed``. Requests with different sampling
   parameters therefore share a micro-batch, and a seeded request gives the same text whatever
   else is in its batch (up to the float round-off that batching itself brings).
4. Per-row stopping (:class:`_RowStopper`): end-of-sequence token (``finish_reason="stop"``),
   a stop string (text cut before it, ``"stop"``), or the request's ``max_tokens``
   (``"length"``). Rows that finish early stop counting tokens while the rest of the batch runs.

Generation settings that the model folder recommends (``generation_config.json``: repetition
penalty, default temperature, ...) are *not* applied: the request's :class:`Sampling` is the whole
truth, so results do not depend on hidden defaults. The token log-probabilities are those of the
model's raw distribution (temperature 1, before top-p), as OpenAI-compatible servers report them.

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
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling, Timings
from pytest_aie.errors import EngineError, require

__all__ = ["HFEngine", "split_adapter"]

_FIX_MODEL = (
    "--aie-model takes a Hugging Face model id that is already in the local Hugging Face cache, "
    "or a local model folder (with config.json); leave it out for the embedded "
    "SmolLM2-135M-Instruct. No model is downloaded when HF_HUB_OFFLINE=1 or without network"
)
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
_FIX_ADAPTER = (
    "give the request's adapter as the folder of a PEFT LoRA adapter trained on this base model "
    "(adapter_config.json and adapter_model.safetensors, as written by peft's save_pretrained)"
)
#: ``path@<64 hex digits>``: an adapter reference pinned to the folder's content hash.
_PINNED = re.compile(r"^(?P<path>.+)@(?P<rev>[0-9a-f]{64})$")
#: Most tokens of logits that :meth:`HFEngine.score_text` materialises in one forward pass.
_SCORE_TOKEN_BUDGET = 4096


def _torch():  # type: ignore[no-untyped-def]
    return require("torch", "hf", "the hf engine")


def _transformers():  # type: ignore[no-untyped-def]
    return require("transformers", "hf", "the hf engine")


def _peft():  # type: ignore[no-untyped-def]
    return require("peft", "hf", "LoRA adapters")


def split_adapter(ref: str) -> tuple[str, str | None]:
    """``"path@<sha256>"`` -> ``(path, sha256)``; a plain ``"path"`` -> ``(path, None)``."""
    pinned = _PINNED.match(ref)
    return (pinned["path"], pinned["rev"]) if pinned else (ref, None)


class HFEngine(Engine):
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

    LoRA adapters: see the module docstring. :meth:`supports` reports ``Capability.ADAPTERS``
    when ``peft`` is installed (checked without importing it).
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
        **_ignored: Any,
    ) -> None:
        from pytest_aie.embedded import resolve_model

        if batch_size < 1:
            raise EngineError(f"hf engine batch_size must be at least 1, got {batch_size}",
                              fix="pass a positive batch size")
        if dtype != "auto" and dtype.lower() not in _DTYPES:
            raise EngineError(f"hf engine: unknown dtype {dtype!r}",
                              fix=f"use auto or one of {', '.join(sorted(set(_DTYPES.values())))}")
        self.model_ref = resolve_model(model)
        self.local = Path(self.model_ref).is_dir()
        if self.local and not (Path(self.model_ref) / "config.json").is_file():
            raise EngineError(f"model folder {self.model_ref!r} has no config.json", fix=_FIX_MODEL)
        self.requested_device = device
        self.requested_dtype = dtype
        self.batch_size = int(batch_size)
        if threads is None and os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
            workers = max(1, int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
            threads = max(1, (os.cpu_count() or 1) // workers)
        self.threads = threads
        self.preferred_batch_size = max(64, 4 * self.batch_size)
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._dtype: str | None = None
        self._revision: str | None = None
        self._closed = False
        self._peft_model: Any = None  # the PeftModel wrapping self._model, once an adapter is loaded
        self._adapters: dict[str, str] = {}  # Request.adapter reference -> peft adapter name

    def supports(self, capability: str) -> bool:
        if capability == Capability.ADAPTERS:
            return importlib.util.find_spec("peft") is not None
        return super().supports(capability)

    # ------------------------------------------------------------------ identity and loading

    def _resolve_device_dtype(self) -> tuple[str, str]:
        if self._device is None or self._dtype is None:
            torch = _torch()
            device = self.requested_device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            if self.requested_dtype == "auto":
                if device.startswith("cuda"):
                    dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
                else:
                    dtype = "float32"
            else:
                dtype = _DTYPES[self.requested_dtype.lower()]
            self._device, self._dtype = device, dtype
        return self._device, self._dtype

    def _hub_revision(self) -> str | None:
        """The commit of a hub id's snapshot in the local HF cache, or None when not cached."""
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        found = try_to_load_from_cache(self.model_ref, "config.json")
        if isinstance(found, str):
            parts = Path(found).parts
            if "snapshots" in parts:
                return parts[parts.index("snapshots") + 1]
        return None

    def identity(self) -> dict[str, Any]:
        """``{"engine", "model", "revision", "dtype"}``: the revision is the content hash of every
        file in a local folder (hashed once, then cached by size and mtime), or the commit of a
        hub id's cached snapshot."""
        from pytest_aie.embedded import folder_revision

        if self._revision is None:
            if self.local:
                self._revision = folder_revision(self.model_ref)
            else:
                revision = self._hub_revision()
                if revision is None:  # not cached yet: loading downloads it (when online)
                    self._load()
                    revision = self._hub_revision() or "unknown"
                self._revision = revision
        _, dtype = self._resolve_device_dtype()
        return {"engine": self.name, "model": self.model_ref, "revision": self._revision, "dtype": dtype}

    def _load(self) -> tuple[Any, Any]:
        if self._closed:
            raise EngineError("the hf engine was closed", fix="create a new engine")
        if self._model is not None:
            return self._model, self._tokenizer
        torch, transformers = _torch(), _transformers()
        device, dtype = self._resolve_device_dtype()
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
            "TRANSFORMERS_OFFLINE", "") not in ("", "0")
        if not self.local and offline and self._hub_revision() is None:
            raise EngineError(f"model {self.model_ref!r} is not a local folder and not in the "
                              "Hugging Face cache (offline mode)", fix=_FIX_MODEL)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_ref)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.model_ref, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise EngineError(f"hf engine cannot load model {self.model_ref!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                              fix=_FIX_MODEL) from exc
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise EngineError(f"hf engine cannot use device {device!r}: {exc}",
                              fix="pass device='cpu' (--aie-device cpu) or a device that exists") from exc
        model.eval()
        if self.threads is not None and device == "cpu":
            torch.set_num_threads(max(1, int(self.threads)))
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model, self._tokenizer = model, tokenizer
        return model, tokenizer

    # ------------------------------------------------------------------ adapters

    def adapter_revision(self, path: str | os.PathLike[str]) -> str:
        """The sha256 content hash of an adapter folder (every non-hidden file by name and
        contents; file hashes are cached by size and mtime). Does not load the model."""
        from pytest_aie.embedded import folder_revision

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise EngineError(f"LoRA adapter folder {str(path)!r} does not exist", fix=_FIX_ADAPTER)
        if not (folder / "adapter_config.json").is_file():
            raise EngineError(f"LoRA adapter folder {str(path)!r} has no adapter_config.json",
                              fix=_FIX_ADAPTER)
        return folder_revision(folder)

    def resolve_adapter(self, ref: str) -> str:
        """``"path@<sha256 of the folder now>"``, for ``Request.adapter``: the cache key then
        changes whenever the adapter's files do. ``ref`` is a folder path, or an already pinned
        reference (re-pinned to the folder's current contents). The path is kept as given."""
        path, _ = split_adapter(ref)
        return f"{path}@{self.adapter_revision(path)}"

    def _adapter_name(self, model: Any, ref: str) -> str:
        """The peft adapter name for a ``Request.adapter`` reference, loading it on first use."""
        name = self._adapters.get(ref)
        if name is not None:
            return name
        path, pinned = split_adapter(ref)
        revision = self.adapter_revision(path)
        if pinned is not None and pinned != revision:
            raise EngineError(
                f"LoRA adapter folder {path!r} changed after its requests were made "
                f"(sha256 {revision[:12]}, requests pinned {pinned[:12]})",
                fix="do not rewrite an adapter folder during a run; rerun to use its new weights")
        name = f"aie_{revision[:16]}"  # content-addressed: one copy per distinct adapter
        if self._peft_model is None or name not in self._peft_model.peft_config:
            self._load_adapter(model, str(Path(path).expanduser()), name)
        self._adapters[ref] = name
        return name

    def _load_adapter(self, model: Any, folder: str, name: str) -> None:
        peft = _peft()
        try:
            if self._peft_model is None:
                self._peft_model = peft.PeftModel.from_pretrained(
                    model, folder, adapter_name=name, torch_device=self._device or "cpu")
            else:
                self._peft_model.load_adapter(folder, adapter_name=name,
                                              torch_device=self._device or "cpu")
        except Exception as exc:  # peft raises ValueError, KeyError, RuntimeError, OSError, ...
            if self._peft_model is None:  # the base model may hold half-injected layers: reload it
                self._model = self._tokenizer = None
            elif name in self._peft_model.peft_config:
                with contextlib.suppress(Exception):
                    self._peft_model.delete_adapter(name)
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load LoRA adapter {folder!r} into {self.model_ref!r}: {detail}",
                              fix=_FIX_ADAPTER) from exc
        model.eval()

    @contextlib.contextmanager
    def _adapter_active(self, model: Any, ref: str | None) -> Iterator[None]:
        """Within the block, ``model`` (the transformers model, LoRA layers injected in place)
        runs with adapter ``ref`` active, or with every adapter switched off for ``None``."""
        if ref:
            name = self._adapter_name(model, ref)  # loads it first: self._peft_model exists after
            self._peft_model.set_adapter(name)
            yield
        elif self._peft_model is not None:
            with self._peft_model.disable_adapter():
                yield
        else:
            yield

    def close(self) -> None:
        """Drop the model and free its memory (CUDA cache included)."""
        had_model = self._model is not None
        self._model = self._tokenizer = self._peft_model = None
        self._adapters.clear()
        self._closed = True
        if had_model:
            import gc

            gc.collect()
            torch = _torch()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ generation

    def _eos_ids(self, model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source is not None:
                ids.update(int(i) for i in source)
        return ids

    def _encode(self, tokenizer: Any, request: Request) -> list[int]:
        if request.messages is not None:
            if not getattr(tokenizer, "chat_template", None):
                raise EngineError(f"model {self.model_ref!r} has no chat template",
                                  fix="give the case a prompt instead of messages, or use a chat model")
            text = tokenizer.apply_chat_template(
                list(request.messages), tokenize=False, add_generation_prompt=True)
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(tokenizer(request.prompt)["input_ids"])
        if not ids:  # an empty prompt: start from BOS (or EOS), as a model needs one position
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            ids = [int(start)]
        return ids

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """One :class:`Generation` per request, in input order (see the module docstring)."""
        if not requests:
            return []
        model, tokenizer = self._load()
        results: list[Generation | None] = [None] * len(requests)
        encoded: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            self.check(request)
            try:
                encoded[i] = self._encode(tokenizer, request)
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

    def _generate_batch(self, model: Any, tokenizer: Any, requests: list[Request],
                        prompts: list[list[int]]) -> list[Generation]:
        torch, transformers = _torch(), _transformers()
        started = time.perf_counter()
        device = self._device or "cpu"
        pad_id = int(tokenizer.pad_token_id)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding
            if ids:
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
        eos = self._eos_ids(model, tokenizer)
        sampler = _RowSampler([r.sampling for r in requests])
        stopper = _RowStopper(tokenizer, [r.sampling for r in requests], width, eos)
        max_new = max(r.sampling.max_tokens for r in requests)
        config = transformers.GenerationConfig(
            max_new_tokens=max_new, do_sample=False, num_beams=1,
            eos_token_id=sorted(eos) or None, pad_token_id=pad_id,
            bos_token_id=getattr(model.generation_config, "bos_token_id", None),
        )
        with torch.inference_mode():
            model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device),
                generation_config=config,
                logits_processor=transformers.LogitsProcessorList([sampler]),
                stopping_criteria=transformers.StoppingCriteriaList([stopper]),
            )
        elapsed = time.perf_counter() - started
        out: list[Generation] = []
        for row, request in enumerate(requests):
            tokens, reason, text = stopper.result(row)
            logprobs = sampler.logprobs[row][:tokens] if request.sampling.logprobs else None
            out.append(Generation(
                text=text, prompt_tokens=len(prompts[row]), completion_tokens=tokens,
                finish_reason=reason, engine=self.name, model=self.model_ref, adapter=request.adapter,
                timings=Timings(e2e_s=elapsed, batch_size=len(requests)), token_logprobs=logprobs,
            ))
        return out

    # ------------------------------------------------------------------ scoring

    def score_text(self, texts: list[str], contexts: list[str] | None = None, *,
                   adapter: str | None = None) -> list[list[float]]:
        """Per-token log-probabilities (natural log) of each text under the model.

        With a context, ``text`` is scored after ``context`` (tokenized separately and joined, so
        the text's tokens are the same with or without a context). Without one, the text is
        scored after the tokenizer's BOS token when it has one; else its first token has no
        condition and is left out. Batched with right padding (causal attention never looks at
        the padding after a row), in batches capped by tokens. Empty texts give ``[]``.
        ``adapter``: score under that LoRA adapter (a ``Request.adapter`` reference); by default
        under the base model, with any loaded adapters switched off.
        """
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"score_text got {len(texts)} texts but {len(contexts)} contexts")
        model, tokenizer = self._load()
        torch = _torch()
        rows: list[tuple[list[int], int]] = []  # (ids, index of the first scored token)
        for i, text in enumerate(texts):
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            prefix: list[int] = []
            if contexts is not None and contexts[i]:
                prefix = list(tokenizer(contexts[i], add_special_tokens=False)["input_ids"])
            elif tokenizer.bos_token_id is not None:
                prefix = [int(tokenizer.bos_token_id)]
            start = max(len(prefix), 1)
            rows.append((prefix + ids, start))
        results: list[list[float]] = [[] for _ in texts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        pad_id = int(tokenizer.pad_token_id)
        device = self._device or "cpu"
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            width = max(len(rows[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                seq = rows[i][0]
                ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[r, :len(seq)] = 1
            with torch.inference_mode(), self._adapter_active(model, adapter):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for r, i in enumerate(batch):
                seq, first = rows[i]
                if first >= len(seq):
                    continue
                pred = logits[r, first - 1:len(seq) - 1].float().log_softmax(-1)
                target = ids[r, first:len(seq)].to(pred.device)
                results[i] = pred.gather(-1, target[:, None])[:, 0].tolist()
            batch.clear()

        for i in order:
            width = len(rows[i][0])
            if batch and ((len(batch) + 1) * width > _SCORE_TOKEN_BUDGET or len(batch) >= self.batch_size):
                flush()
            batch.append(i)
        flush()
        return results


class _RowSampler:
    """A logits processor (last in the chain) that picks each row's next token itself, then
    masks every other token so ``generate``'s greedy step takes it. Records the raw
    log-probability of each chosen token. Rows use their own CPU ``torch.Generator``."""

    def __init__(self, samplings: list[Sampling]) -> None:
        torch = _torch()
        self.samplings = samplings
        self.generators: list[Any] = []
        for s in samplings:
            if s.temperature > 0:
                gen = torch.Generator(device="cpu")
                gen.manual_seed(s.seed if s.seed is not None else torch.seed())
                self.generators.append(gen)
            else:
                self.generators.append(None)
        self.want_logprobs = any(s.logprobs for s in samplings)
        self.logprobs: list[list[float]] = [[] for _ in samplings]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = _torch()
        raw = scores.float()
        chosen = raw.argmax(dim=-1)
        sampled = [r for r, g in enumerate(self.generators) if g is not None]
        if sampled:
            rows_cpu = raw[sampled].cpu()
            for k, r in enumerate(sampled):
                s = self.samplings[r]
                probs = (rows_cpu[k] / s.temperature).softmax(-1)
                if s.top_p < 1.0:
                    sorted_p, idx = probs.sort(descending=True)
                    keep = sorted_p.cumsum(-1) - sorted_p < s.top_p  # smallest set reaching top_p
                    filtered = torch.zeros_like(probs)
                    filtered[idx[keep]] = sorted_p[keep]
                    probs = filtered
                chosen[r] = int(torch.multinomial(probs, 1, generator=self.generators[r]))
        if self.want_logprobs:
            logp = raw.log_softmax(-1).gather(-1, chosen[:, None])[:, 0].tolist()
            for r, s in enumerate(self.samplings):
                if s.logprobs:
                    self.logprobs[r].append(float(logp[r]))
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, chosen[:, None], 0.0)
        return out


class _RowStopper:
    """A stopping criterion that ends each row on its own terms: an end-of-sequence token, a
    stop string, or its ``max_tokens``; it keeps the row's token count, reason and text."""

    def __init__(self, tokenizer: Any, samplings: list[Sampling], prompt_width: int,
                 eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.samplings = samplings
        self.width = prompt_width
        self.eos = eos_ids
        self.tokens: list[list[int]] = [[] for _ in samplings]
        self.done: list[str | None] = [None] * len(samplings)  # "stop" | "length" | None
        self.text: list[str | None] = [None] * len(samplings)
        # A stop string ending at the newest token lies within its last len(stop) tokens
        # (every token decodes to at least one character), so only that tail is decoded.
        self.tail = [max((len(x) for x in s.stop), default=0) + 2 for s in samplings]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = _torch()
        last = input_ids[:, -1].tolist()
        for r, token in enumerate(last):
            if self.done[r] is not None:
                continue
            s = self.samplings[r]
            if token in self.eos:
                self.done[r] = "stop"
                continue
            self.tokens[r].append(int(token))
            if s.stop:
                tail = self.tokenizer.decode(self.tokens[r][-self.tail[r]:], skip_special_tokens=True)
                if any(x in tail for x in s.stop):
                    self.done[r] = "stop"
                    self.text[r] = self._cut(r)
                    continue
            if len(self.tokens[r]) >= s.max_tokens:
                self.done[r] = "length"
        return torch.tensor([d is not None for d in self.done], dtype=torch.bool,
                            device=input_ids.device)

    def _cut(self, r: int) -> str:
        text = self.tokenizer.decode(self.tokens[r], skip_special_tokens=True)
        hits = [text.find(x) for x in self.samplings[r].stop if x and x in text]
        return text[:min(hits)] if hits else text

    def result(self, r: int) -> tuple[int, str, str]:
        """(completion tokens without the end-of-sequence token, finish reason, text)."""
        text = self.text[r]
        if text is None:
            text = self._cut(r)  # also catches a stop string the tail check could not see
        reason = self.done[r] or "length"
        if self.text[r] is None and text != self.tokenizer.decode(self.tokens[r], skip_special_tokens=True):
            reason = "stop"
        return len(self.tokens[r]), reason, text
