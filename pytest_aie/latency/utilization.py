"""Model bandwidth utilisation (MBU) and model FLOP utilisation (MFU) of decoding.

As Chip Huyen's *AI Engineering* (chapter 9) defines them, for a decoder at batch size 1, which
reads every weight once per generated token and does about two FLOPs per parameter per token::

    decode tokens/s = 1000 / median TPOT (ms)                       (one request's decode rate)
    MBU = parameter count x bytes per parameter x decode tokens/s / peak memory bandwidth
    MFU = decode tokens/s x 2 x parameter count / peak FLOP/s for the weights' dtype

Only the weights are counted (not the KV cache or activations), so MBU is a lower bound on the
memory traffic. At ``concurrency`` > 1 the figures stay per request: MBU is still the weight
traffic when the engine runs the requests in flight in one forward step (vLLM), and MFU is
then a lower bound (a step computes up to ``concurrency`` tokens).

The peak figures come from :data:`ACCELERATORS` (vendors' datasheets, dense, i.e. without
2:4 sparsity), chosen by ``--aie-accelerator NAME`` or detected from
``torch.cuda.get_device_name()`` when the engine runs on CUDA; on a CPU from the user's
``--aie-cpu-bandwidth-gbs`` (and ``--aie-cpu-peak-gflops`` for MFU). Parameter count: the
safetensors headers of a local model folder (no weights are read), else
``--aie-model-params``. Bytes per parameter: the engine's dtype (``--aie-dtype`` for engines
without one). Anything unknown leaves the figure unmeasured, with the reason.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pytest_aie.errors import UsageError

__all__ = ["ACCELERATORS", "Accelerator", "Footprint", "UtilizationOptions",
           "count_parameters", "detect_accelerator", "find_accelerator", "footprint", "mbu",
           "mfu", "parse_param_count", "summary_line", "utilization"]

TB, TF = 1e12, 1e12


@dataclass(frozen=True)
class Accelerator:
    """Peak memory bandwidth (bytes/s) and dense peak FLOP/s per dtype (``float32``: plain
    FP32, not TF32; ``tf32``, ``bfloat16``, ``float16``, ``fp8``: tensor cores)."""

    name: str
    label: str
    bandwidth: float
    flops: dict[str, float]
    source: str
    aliases: tuple[str, ...] = ()


def _hopper(bandwidth: float, fp32: float, tf32_sparse: float, bf16_sparse: float,
            fp8_sparse: float) -> tuple[float, dict[str, float]]:
    # the datasheets give tensor-core figures "with sparsity": dense is half
    return bandwidth, {"float32": fp32, "tf32": tf32_sparse / 2, "bfloat16": bf16_sparse / 2,
                       "float16": bf16_sparse / 2, "fp8": fp8_sparse / 2}


_H100_SXM = _hopper(3.35 * TB, 67 * TF, 989 * TF, 1979 * TF, 3958 * TF)
_H100_PCIE = _hopper(2.0 * TB, 51 * TF, 756 * TF, 1513 * TF, 3026 * TF)
_H200 = _hopper(4.8 * TB, 67 * TF, 989 * TF, 1979 * TF, 3958 * TF)
_A100 = {"float32": 19.5 * TF, "tf32": 156 * TF, "bfloat16": 312 * TF, "float16": 312 * TF}
_L4 = {"float32": 30.3 * TF, "tf32": 120 * TF / 2, "bfloat16": 242 * TF / 2,
       "float16": 242 * TF / 2, "fp8": 485 * TF / 2}

#: The known accelerators, by canonical name.
ACCELERATORS: dict[str, Accelerator] = {a.name: a for a in (
    # NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100, "H100 SXM" column): 3.35 TB/s;
    # FP32 67 TF; TF32 989, BF16/FP16 1,979, FP8 3,958 TF "with sparsity" (dense: half)
    Accelerator("h100-sxm", "NVIDIA H100 SXM 80GB", *_H100_SXM,
                source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM",
                aliases=("h100 sxm5", "h100 80gb hbm3", "h100 sxm 80gb")),
    # NVIDIA H100 PCIe product brief PB-11133-001 and datasheet: 2 TB/s ("greater than 2,000
    # GBps"); FP32 51 TF; TF32 756, BF16/FP16 1,513, FP8 3,026 TF with sparsity (dense: half)
    Accelerator("h100-pcie", "NVIDIA H100 PCIe 80GB", *_H100_PCIE,
                source="NVIDIA H100 datasheet, H100 PCIe; H100 PCIe product brief PB-11133-001",
                aliases=("h100 pcie 80gb",)),
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200, "H200 SXM"): 141 GB HBM3e at
    # 4.8 TB/s; FP32 67 TF; TF32 989, BF16/FP16 1,979, FP8 3,958 TF with sparsity (dense: half)
    Accelerator("h200", "NVIDIA H200 SXM 141GB", *_H200,
                source="NVIDIA H200 Tensor Core GPU datasheet, H200 SXM",
                aliases=("h200 sxm", "h200 141gb", "h200 sxm 141gb")),
    # NVIDIA A100 datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4): 40GB 1,555 GB/s
    # (SXM and PCIe); FP32 19.5 TF; TF32 156, BF16/FP16 312 TF dense (312/624 with sparsity);
    # no FP8
    Accelerator("a100-40gb", "NVIDIA A100 40GB", 1555e9, dict(_A100),
                source="NVIDIA A100 Tensor Core GPU datasheet, A100 40GB",
                aliases=("a100 40gb sxm", "a100 sxm4 40gb", "a100 pcie 40gb", "a100 40gb pcie")),
    # same datasheet: A100 80GB SXM 2,039 GB/s (same FLOP/s as the 40GB)
    Accelerator("a100-80gb", "NVIDIA A100 80GB SXM", 2039e9, dict(_A100),
                source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM",
                aliases=("a100 80gb sxm", "a100 sxm4 80gb", "a100 sxm 80gb")),
    # same datasheet: A100 80GB PCIe 1,935 GB/s
    Accelerator("a100-80gb-pcie", "NVIDIA A100 80GB PCIe", 1935e9, dict(_A100),
                source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe",
                aliases=("a100 pcie 80gb",)),
    # NVIDIA L4 datasheet (nvidia.com/en-us/data-center/l4): 24 GB GDDR6 at 300 GB/s; FP32
    # 30.3 TF; TF32 120, BF16/FP16 242, FP8 485 TF with sparsity (dense: half)
    Accelerator("l4", "NVIDIA L4 24GB", 300e9, _L4,
                source="NVIDIA L4 Tensor Core GPU datasheet", aliases=("l4 24gb",)),
)}


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[6:] if key.startswith("nvidia") else key


_BY_KEY = {_norm(alias): acc for acc in ACCELERATORS.values()
           for alias in (acc.name, acc.label, *acc.aliases)}


def find_accelerator(name: str) -> Accelerator:
    """The accelerator called ``name`` (case, spaces, dashes and a leading "NVIDIA" ignored),
    or a :class:`UsageError` naming the known ones."""
    found = _BY_KEY.get(_norm(name))
    if found is None:
        raise UsageError(f"--aie-accelerator {name!r} is not a known accelerator "
                         f"(known: {', '.join(ACCELERATORS)})",
                         fix="pass one of those, or --aie-cpu-bandwidth-gbs for a CPU")
    return found


def detect_accelerator(device_name: str) -> Accelerator | None:
    """The table's entry for a ``torch.cuda.get_device_name()`` such as ``"NVIDIA H100 80GB
    HBM3"``, ``"NVIDIA A100-SXM4-40GB"`` or ``"NVIDIA L4"``; None for any other card (an H100
    NVL, an H200 NVL...)."""
    key = _norm(device_name)
    if "nvl" in key:
        return None
    if "h200" in key:
        return ACCELERATORS["h200"]
    if "h100" in key:
        return ACCELERATORS["h100-pcie" if "pcie" in key else "h100-sxm"]
    if "a100" in key:
        if "80gb" in key:
            return ACCELERATORS["a100-80gb-pcie" if "pcie" in key else "a100-80gb"]
        return ACCELERATORS["a100-40gb"]
    if re.fullmatch(r"l4(24gb)?", key):
        return ACCELERATORS["l4"]
    return _BY_KEY.get(key)


# ---------------------------------------------------------------------------- the options

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_param_count(raw: str) -> int:
    """``"135M"``, ``"7B"``, ``"1.5b"``, ``"7e9"`` or ``"135000000"`` -> a parameter count;
    ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([kmbgt]?)\s*", raw.lower())
    if m is None:
        raise ValueError(raw)
    value = float(m[1]) * _SUFFIX[m[2]]
    if not math.isfinite(value) or value < 1:
        raise ValueError(raw)
    return int(round(value))


@dataclass(frozen=True)
class UtilizationOptions:
    """The run's options for MBU and MFU (built by
    :meth:`pytest_aie.settings.Settings.utilization_options`; unset: detect and count)."""

    accelerator: str = ""  # a canonical name of ACCELERATORS; "" = detect
    cpu_bandwidth_gbs: float | None = None
    cpu_peak_gflops: float | None = None
    model_params: int | None = None
    dtype: str = "auto"  # --aie-dtype: bytes per parameter for engines without a dtype


# ---------------------------------------------------------------------------- the model

BYTES = {"float32": 4.0, "fp32": 4.0, "bfloat16": 2.0, "bf16": 2.0, "float16": 2.0,
         "fp16": 2.0, "half": 2.0, "fp8": 1.0, "float8_e4m3fn": 1.0, "float8_e5m2": 1.0}
_CANONICAL = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
              "float8_e4m3fn": "fp8", "float8_e5m2": "fp8"}


def _dtype_name(dtype: Any) -> str:
    name = str(dtype).lower().removeprefix("torch.")
    return _CANONICAL.get(name, name)


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    return sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("adapter"))


def count_parameters(folder: str | Path) -> int:
    """The parameter count of a local model folder's safetensors weights, from their headers
    (:func:`safetensors.safe_open`: no tensor is read). ValueError naming what is missing."""
    folder = Path(folder)
    files = _safetensors_files(folder)
    if not files:
        raise ValueError(f"no safetensors weights in {folder}")
    try:
        from safetensors import safe_open
    except ImportError:
        raise ValueError("the safetensors package is not installed") from None
    total = 0
    for path in files:
        with safe_open(str(path), framework="numpy") as fh:
            for key in fh.keys():
                total += math.prod(fh.get_slice(key).get_shape())
    return total


@dataclass(frozen=True)
class Footprint:
    """What MBU and MFU need to know of a model and where it runs."""

    params: int | None = None
    params_source: str = ""
    dtype: str | None = None
    device: str | None = None  # "cuda", "cpu", or None when unknown (a remote server)
    devices: int = 1  # tensor-parallel GPUs sharing the weights
    reason: str | None = None  # why the parameter count or dtype is unknown

    @property
    def bytes_per_param(self) -> float | None:
        return None if self.dtype is None else BYTES.get(self.dtype)


def _engine_device_dtype(engine: Any) -> tuple[str | None, str | None]:
    resolve = getattr(engine, "_resolve_device_dtype", None)  # the hf engine
    if callable(resolve):
        device, dtype = resolve()
        return str(device), str(dtype)
    device = getattr(engine, "device", None)  # the vllm engine
    dtype = getattr(engine, "dtype", None)
    if dtype == "auto":  # vLLM chose it from the model: ask the loaded engine
        llm = getattr(engine, "_llm", None)
        config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        dtype = getattr(config, "dtype", None)
    return (None if device is None else str(device),
            None if dtype in (None, "auto") else _dtype_name(dtype))


def footprint(engine: Any, opts: UtilizationOptions | None = None) -> Footprint:
    """The engine's model: parameters counted from a local folder's safetensors headers (else
    ``--aie-model-params``), its dtype and device."""
    opts = opts or UtilizationOptions()
    device, dtype = _engine_device_dtype(engine)
    if dtype is None and opts.dtype not in ("", "auto"):
        dtype = _dtype_name(opts.dtype)
    devices = int((getattr(engine, "options", None) or {}).get("tensor_parallel_size") or 1)
    params, source, reason = None, "", None
    ref = getattr(engine, "model_ref", None)
    folder = Path(str(ref)) if ref and getattr(engine, "local", False) else None
    if folder is None and ref and getattr(engine, "name", "") in ("hf", "vllm"):
        folder = _cached_snapshot(str(ref))
    if folder is not None:
        config = folder / "config.json"
        quantized = config.is_file() and "quantization_config" in json.loads(
            config.read_text(encoding="utf-8"))
        if quantized:
            reason = f"{folder.name} is a quantized model: its bytes per parameter are not the dtype's"
        else:
            try:
                params, source = count_parameters(folder), f"safetensors headers in {folder}"
            except (ValueError, OSError) as exc:
                reason = f"cannot count the parameters: {exc}"
    if params is None and opts.model_params is not None:
        params, source, reason = opts.model_params, "--aie-model-params", None
    if params is None and reason is None:
        reason = (f"the {getattr(engine, 'name', 'engine')} engine's parameter count is unknown: "
                  "pass --aie-model-params (e.g. 7B)")
    if dtype is None and reason is None:
        reason = (f"the {getattr(engine, 'name', 'engine')} engine's weights dtype is unknown: "
                  "pass --aie-dtype (e.g. bfloat16)")
    elif dtype is not None and dtype not in BYTES and reason is None:
        reason = f"bytes per parameter of dtype {dtype!r} unknown"
    return Footprint(params, source, dtype, device, devices, reason)


def _cached_snapshot(model_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


# ---------------------------------------------------------------------------- the figures

def mbu(params: float, bytes_per_param: float, tokens_per_s: float, bandwidth: float) -> float:
    """Model bandwidth utilisation: weight bytes read per second over the peak bandwidth."""
    return params * bytes_per_param * tokens_per_s / bandwidth


def mfu(params: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOP utilisation: ``2 x params`` FLOPs per token over the peak FLOP/s."""
    return tokens_per_s * 2 * params / peak_flops


@dataclass(frozen=True)
class _Peak:
    name: str | None = None
    source: str = ""
    bandwidth: float | None = None
    flops: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    mfu_reason: str | None = None


def _cuda_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_name())
    except Exception:  # noqa: BLE001 - a broken driver must not fail the run
        return None


def _peak(fp: Footprint, opts: UtilizationOptions) -> _Peak:
    if opts.accelerator:
        acc = find_accelerator(opts.accelerator)
        return _Peak(acc.name, f"--aie-accelerator ({acc.source})", acc.bandwidth, acc.flops)
    if fp.device is not None and fp.device.startswith("cuda"):
        card = _cuda_name()
        found = detect_accelerator(card) if card else None
        if found is None:
            return _Peak(reason=f"the GPU {card or '(unnamed)'!r} is not in the table: pass "
                                f"--aie-accelerator (known: {', '.join(ACCELERATORS)})")
        return _Peak(found.name, f"torch.cuda: {card} ({found.source})", found.bandwidth,
                     found.flops)
    if opts.cpu_bandwidth_gbs is not None:
        flops = {} if opts.cpu_peak_gflops is None else {"*": opts.cpu_peak_gflops * 1e9}
        return _Peak("cpu", "--aie-cpu-bandwidth-gbs", opts.cpu_bandwidth_gbs * 1e9, flops,
                     mfu_reason=None if flops else "pass --aie-cpu-peak-gflops for the CPU's "
                                                   "peak FLOP/s")
    where = "on a remote server" if fp.device is None else f"on {fp.device}"
    return _Peak(reason=f"no peak bandwidth for the model {where}: pass --aie-accelerator "
                        f"NAME ({', '.join(ACCELERATORS)}) or --aie-cpu-bandwidth-gbs N")


def utilization(tpot_ms: Sequence[float | None], fp: Footprint, *, concurrency: int = 1,
                opts: UtilizationOptions | None = None) -> dict[str, Any]:
    """The suite's ``utilization`` entry from its measured requests' TPOTs: decode tokens/s
    from the median TPOT, the model's footprint, the peak figures, MBU and MFU (None with
    ``reason`` / ``mfu_reason`` when unmeasured)."""
    opts = opts or UtilizationOptions()
    kept = [float(t) for t in tpot_ms if t is not None and math.isfinite(t) and t > 0]
    median = statistics.median(kept) if kept else None
    rate = None if median is None else 1000.0 / median
    peak = _peak(fp, opts)
    bandwidth = None if peak.bandwidth is None else peak.bandwidth * fp.devices
    bpp = fp.bytes_per_param
    flops_one = peak.flops.get("*", peak.flops.get(fp.dtype or "")) if peak.flops else None
    flops = None if flops_one is None else flops_one * fp.devices
    out: dict[str, Any] = {
        "decode_tokens_per_s": rate, "tpot_ms_median": median, "requests": len(kept),
        "concurrency": concurrency, "params": fp.params, "params_source": fp.params_source,
        "dtype": fp.dtype, "bytes_per_param": bpp, "accelerator": peak.name,
        "accelerator_source": peak.source, "devices": fp.devices,
        "peak_bandwidth": bandwidth, "peak_flops": flops, "mbu": None, "mfu": None,
        "reason": None, "mfu_reason": None}
    reason = (fp.reason or peak.reason
              or (None if rate is not None else "no request decoded more than one token, so "
                                                "TPOT is undefined"))
    if reason is not None:
        out["reason"] = out["mfu_reason"] = reason
        return out
    assert rate is not None and fp.params is not None and bpp is not None and bandwidth
    out["mbu"] = mbu(fp.params, bpp, rate, bandwidth)
    if flops:
        out["mfu"] = mfu(fp.params, rate, flops)
    else:
        out["mfu_reason"] = peak.mfu_reason or (f"{peak.name} has no {fp.dtype} peak FLOP/s "
                                                "in the table")
    return out


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _count(n: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:g}"


def summary_line(u: dict[str, Any]) -> str:
    """One terminal line: ``MBU 41.2%, MFU 0.9% (...)`` or ``MBU unmeasured: <reason>``."""
    if u.get("mbu") is None:
        return f"MBU unmeasured: {u.get('reason') or 'unknown'}"
    mfu_text = (f"MFU {u['mfu']:.2%}" if u.get("mfu") is not None
                else f"MFU unmeasured: {u.get('mfu_reason')}")
    peaks = _si(u["peak_bandwidth"], "B/s")
    if u.get("peak_flops"):
        peaks += f", {_si(u['peak_flops'], 'FLOP/s')}"
    warn = " -- above 100%: check the peak figure, parameter count and dtype" \
        if u["mbu"] > 1 else ""
    return (f"MBU {u['mbu']:.2%}; {mfu_text} (decode {u['decode_tokens_per_s']:.1f} tokens/s "
            f"from the median TPOT {u['tpot_ms_median']:.2f} ms; {_count(u['params'])} params x "
            f"{u['bytes_per_param']:g} bytes ({u['dtype']}) on {u['accelerator']}: {peaks})"
            + warn)
