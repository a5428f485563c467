"""Loading for the ``hf`` engine: lazy torch/transformers, device and dtype choice, the local
Hugging Face cache, and reading a model and tokenizer from a folder or a cached hub id.

Private to :mod:`pytest_aie.engines.hf`; torch and transformers are imported inside functions
only, so importing this module stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_aie.errors import EngineError, require

__all__ = ["DTYPES", "FIX_MODEL", "hub_revision", "load_model", "load_tokenizer",
           "resolve_device_dtype", "torch_module", "transformers_module"]

FIX_MODEL = (
    "--aie-model takes a Hugging Face model id that is already in the local Hugging Face cache, "
    "or a local model folder (with config.json); leave it out for the embedded "
    "SmolLM2-135M-Instruct. No model is downloaded when HF_HUB_OFFLINE=1 or without network"
)
#: Accepted dtype names (lower case) -> the torch dtype attribute.
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def torch_module() -> ModuleType:
    """``torch``, or a :class:`~pytest_aie.errors.MissingDependency` naming the ``hf`` extra."""
    return require("torch", "hf", "the hf engine")


def transformers_module() -> ModuleType:
    """``transformers``, or a :class:`~pytest_aie.errors.MissingDependency` naming the ``hf`` extra."""
    return require("transformers", "hf", "the hf engine")


def resolve_device_dtype(requested_device: str, requested_dtype: str) -> tuple[str, str]:
    """``(device, dtype)`` for the requested pair: ``"auto"`` device is CUDA when available, else
    CPU; ``"auto"`` dtype is float32 on CPU, bfloat16 on CUDA when supported, else float16. An
    explicit dtype must be a key of :data:`DTYPES` (case-insensitive)."""
    torch = torch_module()
    device = requested_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested_dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    else:
        dtype = DTYPES[requested_dtype.lower()]
    return device, dtype


def hub_revision(model_ref: str) -> str | None:
    """The commit of a hub id's snapshot in the local HF cache, or None when not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model_ref, "config.json")
    if isinstance(found, str):
        parts = Path(found).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    return None


def load_tokenizer(model_ref: str, *, local: bool) -> Any:
    """The model's tokenizer alone (no weights: its chat template is all some callers need).
    Raises :class:`EngineError` when the model is neither a local folder nor cached while
    offline, or cannot be read."""
    transformers = transformers_module()
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "") not in ("", "0")
    if not local and offline and hub_revision(model_ref) is None:
        raise EngineError(f"model {model_ref!r} is not a local folder and not in the "
                          "Hugging Face cache (offline mode)", fix=FIX_MODEL)
    try:
        return transformers.AutoTokenizer.from_pretrained(model_ref)
    except (OSError, ValueError) as exc:
        raise EngineError(f"hf engine cannot load model {model_ref!r}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          fix=FIX_MODEL) from exc


def column_major_linears(model: Any) -> int:
    """Lay out the weight of every linear layer but the LM head column-major in memory (the
    same values: the transpose of a contiguous transposed copy); return how many changed.

    On a CPU, ``F.linear(x, W)`` computes ``x @ W.T``; with ``W`` stored row-major (as
    checkpoints load) MKL takes a slow path for the few rows of a decoding step. Measured on
    this project's 2-core AVX-512 machine with the embedded model: one decoding step of 16 rows
    0.23-0.26 s row-major, 0.16-0.18 s column-major; of 4 rows 0.11-0.13 and 0.09-0.10 s; of one
    row 0.057-0.060 s either way; prefill-sized inputs (340-5,440 rows) within 10% either way
    (a 1536x576 layer alone: 16 rows 0.81 ms row-major, 0.17 ms column-major). The LM head
    (often the embedding matrix itself) stays as it is: column-major it made one-row steps
    slower. ``tests/test_engine_hf_prefix.py`` checks that the results stay the same."""
    torch = torch_module()
    heads = [getter() for getter in (getattr(model, "get_output_embeddings", None),
                                     getattr(model, "get_input_embeddings", None)) if getter]
    seen: set[int] = {id(h.weight) for h in heads if getattr(h, "weight", None) is not None}
    changed = 0
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(module, torch.nn.Linear) or weight is None or weight.dim() != 2:
                continue
            if id(weight) in seen or not weight.is_contiguous():
                continue
            seen.add(id(weight))
            weight.data = weight.data.t().contiguous().t()
            changed += 1
    return changed


def load_model(model_ref: str, *, local: bool, device: str, dtype: str,
               threads: int | None) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the causal LM on ``device`` in eval mode, and its tokenizer set to
    left padding (pad token = EOS when it has none). ``threads`` sets torch's CPU threads
    (process-wide) when the device is the CPU. Raises :class:`EngineError` when the model is
    neither a local folder nor cached while offline, cannot be read, or the device is unusable."""
    torch, transformers = torch_module(), transformers_module()
    tokenizer = load_tokenizer(model_ref, local=local)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            model_ref, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise EngineError(f"hf engine cannot load model {model_ref!r}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          fix=FIX_MODEL) from exc
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise EngineError(f"hf engine cannot use device {device!r}: {exc}",
                          fix="pass device='cpu' (--aie-device cpu) or a device that exists") from exc
    model.eval()
    if device == "cpu":
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        column_major_linears(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
