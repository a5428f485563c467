"""MBU and MFU (pytest_aie.latency.utilization): the formulas on hand-computed figures, the accelerator
table and its names, the CPU's figures from the user, the parameter count from safetensors
headers against transformers, the options, and whole latency runs on the scripted engine whose
MBU is recomputed by hand from the results log's own TPOTs."""

from __future__ import annotations

import json
import statistics
import textwrap
from pathlib import Path
from typing import Any

import pytest
from components import not_on_this_machine
from test_latency import ROWS_CONFTEST
from test_settings import FakeConfig

from pytest_aie.engines.scripted import ScriptedEngine
from pytest_aie.errors import UsageError
from pytest_aie.latency.utilization import (
    ACCELERATORS,
    Footprint,
    UtilizationOptions,
    count_parameters,
    detect_accelerator,
    find_accelerator,
    footprint,
    mbu,
    mfu,
    parse_param_count,
    summary_line,
    utilization,
)
from pytest_aie.settings import Settings

# ---------------------------------------------------------------------------- the formulas


def test_mbu_and_mfu_by_hand_for_a_7b_model_in_bf16_at_30_tokens_per_s_on_h100_sxm() -> None:
    # 7e9 params x 2 bytes x 30 tokens/s = 420 GB/s of weights read, of 3,350 GB/s
    assert mbu(7e9, 2, 30, 3.35e12) == pytest.approx(420e9 / 3.35e12)
    # 30 tokens/s x 2 x 7e9 = 420 GFLOP/s, of 989.5 TFLOP/s dense BF16 (1,979 with sparsity)
    assert mfu(7e9, 30, 989.5e12) == pytest.approx(420e9 / 989.5e12)
    fp = Footprint(params=7_000_000_000, params_source="given", dtype="bfloat16", device="cuda")
    # TPOTs of 30, 33.3 and 40 ms: the median 33.3 ms is 30 tokens/s
    u = utilization([30.0, 1000 / 30, 40.0, None], fp,
                    opts=UtilizationOptions(accelerator="h100-sxm"))
    assert u["decode_tokens_per_s"] == pytest.approx(30) and u["requests"] == 3
    assert u["mbu"] == pytest.approx(0.125373, rel=1e-5)
    assert u["mfu"] == pytest.approx(0.000424457, rel=1e-5)
    assert (u["accelerator"], u["bytes_per_param"], u["peak_bandwidth"]) == ("h100-sxm", 2.0, 3.35e12)
    assert u["reason"] is None and u["mfu_reason"] is None
    line = summary_line(u)
    assert line.startswith("MBU 12.54%; MFU 0.04%") and "30.0 tokens/s" in line
    assert "7B params x 2 bytes (bfloat16) on h100-sxm" in line


def test_the_same_tokens_per_s_on_a_float32_model_use_4_bytes_and_the_fp32_peak() -> None:
    fp = Footprint(params=1_000_000_000, dtype="float32", device="cuda")
    u = utilization([10.0], fp, opts=UtilizationOptions(accelerator="a100-40gb"))
    assert u["mbu"] == pytest.approx(1e9 * 4 * 100 / 1555e9)
    assert u["mfu"] == pytest.approx(100 * 2 * 1e9 / 19.5e12)  # plain FP32, not TF32


def test_tensor_parallel_gpus_add_up_their_peaks() -> None:
    fp = Footprint(params=70_000_000_000, dtype="bfloat16", device="cuda", devices=4)
    u = utilization([50.0], fp, opts=UtilizationOptions(accelerator="h200"))
    assert u["peak_bandwidth"] == 4 * 4.8e12
    assert u["mbu"] == pytest.approx(70e9 * 2 * 20 / (4 * 4.8e12))


def test_fp8_on_an_a100_has_an_mbu_but_no_mfu() -> None:
    u = utilization([20.0], Footprint(params=8_000_000_000, dtype="fp8", device="cuda"),
                    opts=UtilizationOptions(accelerator="a100-80gb"))
    assert u["mbu"] == pytest.approx(8e9 * 1 * 50 / 2039e9)
    assert u["mfu"] is None and "no fp8 peak" in u["mfu_reason"]


# ---------------------------------------------------------------------------- the table


def test_the_table_holds_the_datasheets_dense_figures() -> None:
    h100 = ACCELERATORS["h100-sxm"]
    assert h100.bandwidth == 3.35e12 and h100.flops["float32"] == 67e12
    assert h100.flops["bfloat16"] == h100.flops["float16"] == 1979e12 / 2
    assert h100.flops["tf32"] == 989e12 / 2 and h100.flops["fp8"] == 3958e12 / 2
    pcie = ACCELERATORS["h100-pcie"]
    assert pcie.bandwidth == 2.0e12 and pcie.flops["bfloat16"] == 1513e12 / 2
    h200 = ACCELERATORS["h200"]
    assert h200.bandwidth == 4.8e12 and h200.flops == h100.flops  # same compute as H100 SXM
    assert ACCELERATORS["a100-40gb"].bandwidth == 1555e9
    assert ACCELERATORS["a100-80gb"].bandwidth == 2039e9
    assert ACCELERATORS["a100-80gb"].flops["bfloat16"] == 312e12
    assert "fp8" not in ACCELERATORS["a100-40gb"].flops
    l4 = ACCELERATORS["l4"]
    assert l4.bandwidth == 300e9 and l4.flops["bfloat16"] == 121e12 and l4.flops["fp8"] == 242.5e12
    for acc in ACCELERATORS.values():
        assert acc.source and acc.flops["float32"] < acc.flops["bfloat16"]


@pytest.mark.parametrize("given, name", [
    ("h100-sxm", "h100-sxm"), ("H100 SXM", "h100-sxm"), ("nvidia h100_sxm5", "h100-sxm"),
    ("H100 PCIe", "h100-pcie"), ("h200", "h200"), ("NVIDIA H200 SXM 141GB", "h200"),
    ("A100 40GB", "a100-40gb"), ("a100-80GB", "a100-80gb"), ("A100 80GB PCIe", "a100-80gb-pcie"),
    (" L4 ", "l4"),
])
def test_accelerator_names_ignore_case_spaces_and_dashes(given: str, name: str) -> None:
    assert find_accelerator(given).name == name


def test_an_unknown_accelerator_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(UsageError, match="'tpu-v5' is not a known accelerator.*h100-sxm, "
                                         "h100-pcie, h200, a100-40gb, a100-80gb"):
        find_accelerator("tpu-v5")
    with pytest.raises(UsageError, match="not a known accelerator"):
        find_accelerator("h100")  # SXM or PCIe? the user says which


@pytest.mark.parametrize("device, name", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-40gb"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
    ("NVIDIA A100 80GB PCIe", "a100-80gb-pcie"), ("NVIDIA L4", "l4"),
    ("NVIDIA L40S", None), ("NVIDIA H100 NVL", None), ("NVIDIA GeForce RTX 4090", None),
])
def test_cuda_device_names_are_recognised(device: str, name: str | None) -> None:
    found = detect_accelerator(device)
    assert (found.name if found else None) == name


def test_an_unknown_gpu_is_unmeasured_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_aie.latency.utilization as mod

    monkeypatch.setattr(mod, "_cuda_name", lambda: "NVIDIA GeForce RTX 4090")
    u = utilization([10.0], Footprint(params=10, dtype="bfloat16", device="cuda"),
                    opts=UtilizationOptions())
    assert u["mbu"] is None and "'NVIDIA GeForce RTX 4090' is not in the table" in u["reason"]
    monkeypatch.setattr(mod, "_cuda_name", lambda: "NVIDIA L4")
    u = utilization([10.0], Footprint(params=10, dtype="bfloat16", device="cuda:0"),
                    opts=UtilizationOptions())
    assert u["accelerator"] == "l4" and u["mbu"] == pytest.approx(10 * 2 * 100 / 300e9)


# ---------------------------------------------------------------------------- the CPU


def test_the_cpu_needs_the_users_bandwidth_and_peak_flops() -> None:
    fp = Footprint(params=135_000_000, params_source="x", dtype="float32", device="cpu")
    none = utilization([25.0], fp, opts=UtilizationOptions())
    assert none["mbu"] is None and none["mfu"] is None
    assert "--aie-cpu-bandwidth-gbs" in none["reason"]
    assert summary_line(none).startswith("MBU unmeasured: no peak bandwidth for the model on cpu")
    bw = utilization([25.0], fp, opts=UtilizationOptions(cpu_bandwidth_gbs=40))
    assert bw["mbu"] == pytest.approx(135e6 * 4 * 40 / 40e9) and bw["accelerator"] == "cpu"
    assert bw["mfu"] is None and "--aie-cpu-peak-gflops" in bw["mfu_reason"]
    assert "MFU unmeasured: pass --aie-cpu-peak-gflops" in summary_line(bw)
    both = utilization([25.0], fp, opts=UtilizationOptions(cpu_bandwidth_gbs=40,
                                                            cpu_peak_gflops=500))
    assert both["mfu"] == pytest.approx(40 * 2 * 135e6 / 500e9)


def test_without_tpot_nothing_is_measured() -> None:
    fp = Footprint(params=10, dtype="float32", device="cpu")
    u = utilization([None, None], fp, opts=UtilizationOptions(cpu_bandwidth_gbs=40))
    assert u["mbu"] is None and "TPOT is undefined" in u["reason"]


# ---------------------------------------------------------------------------- the model


def test_safetensors_count_equals_transformers_parameter_count() -> None:
    transformers = pytest.importorskip("transformers")
    from pytest_aie.engines.embedded import default_model_dir

    folder = default_model_dir()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert count_parameters(folder) == sum(p.numel() for p in model.parameters()) > 100_000_000


def test_sharded_folders_are_counted_from_their_index(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    save_file({"a": np.zeros((3, 4), dtype=np.float32)}, str(tmp_path / "m-1.safetensors"))
    save_file({"b": np.zeros((5,), dtype=np.float16), "c": np.zeros((2, 2, 2), dtype=np.float32)},
              str(tmp_path / "m-2.safetensors"))
    save_file({"x": np.zeros((100,), dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-2.safetensors"}}))
    assert count_parameters(tmp_path) == 12 + 5 + 8
    with pytest.raises(ValueError, match="no safetensors"):
        count_parameters(tmp_path / "nothing")


class _FolderEngine:
    name = "vllm"

    def __init__(self, folder: Path, dtype: str, device: str = "cuda", tp: int = 1) -> None:
        self.model_ref, self.local, self.dtype, self.device = str(folder), True, dtype, device
        self.options = {"tensor_parallel_size": tp}


def test_footprint_of_a_local_folder_engine() -> None:
    from pytest_aie.engines.embedded import default_model_dir

    folder = default_model_dir()
    fp = footprint(_FolderEngine(folder, "bfloat16", tp=2), UtilizationOptions())
    assert fp.params == count_parameters(folder) and fp.bytes_per_param == 2.0
    assert (fp.device, fp.devices, fp.reason) == ("cuda", 2, None)
    assert "safetensors headers" in fp.params_source
    # a counted folder wins over --aie-model-params, which only fills in what is unknown
    assert footprint(_FolderEngine(folder, "float32"),
                     UtilizationOptions(model_params=7)).params == fp.params


def test_footprint_of_the_hf_engine_reads_its_cpu_float32_default() -> None:
    pytest.importorskip("torch")
    from pytest_aie.engines.embedded import default_model_dir
    from pytest_aie.engines.hf import HFEngine

    engine = HFEngine(device="cpu")  # not loaded: the count comes from the headers
    fp = footprint(engine, UtilizationOptions())
    assert (fp.dtype, fp.device, fp.bytes_per_param) == ("float32", "cpu", 4.0)
    assert fp.params == count_parameters(default_model_dir())


def test_a_quantized_folder_is_unmeasured(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"bits": 4}}))
    fp = footprint(_FolderEngine(tmp_path, "float16"), UtilizationOptions())
    assert fp.params is None and "quantized" in (fp.reason or "")


def test_engines_without_a_model_folder_need_the_users_count_and_dtype() -> None:
    engine = ScriptedEngine({})
    fp = footprint(engine, UtilizationOptions())
    assert fp.params is None and "pass --aie-model-params" in (fp.reason or "")
    fp = footprint(engine, UtilizationOptions(model_params=135_000_000))
    assert fp.params == 135_000_000 and "pass --aie-dtype" in (fp.reason or "")
    fp = footprint(engine, UtilizationOptions(model_params=135_000_000, dtype="bf16"))
    assert (fp.dtype, fp.bytes_per_param, fp.reason, fp.device) == ("bfloat16", 2.0, None, None)
    u = utilization([10.0], fp, opts=UtilizationOptions(model_params=1))
    assert "on a remote server" in u["reason"]


@pytest.mark.parametrize("raw, n", [("135M", 135_000_000), ("7B", 7_000_000_000),
                                    ("1.5b", 1_500_000_000), ("7e9", 7_000_000_000),
                                    ("135000000", 135_000_000), ("70 B", 70_000_000_000)])
def test_parameter_counts_parse(raw: str, n: int) -> None:
    assert parse_param_count(raw) == n


@pytest.mark.parametrize("raw", ["seven", "7X", "", "0", "-3B"])
def test_bad_parameter_counts_do_not_parse(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_param_count(raw)


# ---------------------------------------------------------------------------- the options


def test_options_parse_and_default_to_unset() -> None:
    s = Settings.from_config(FakeConfig())  # type: ignore[arg-type]
    assert (s.accelerator, s.cpu_bandwidth_gbs, s.cpu_peak_gflops, s.model_params) == \
        ("", None, None, None)
    s = Settings.from_config(FakeConfig(  # type: ignore[arg-type]
        aie_accelerator="H100 SXM", aie_cpu_bandwidth_gbs="40", aie_cpu_peak_gflops="800",
        aie_model_params="135M"))
    assert (s.accelerator, s.cpu_bandwidth_gbs, s.cpu_peak_gflops, s.model_params) == \
        ("h100-sxm", 40.0, 800.0, 135_000_000)


@pytest.mark.parametrize("options, message", [
    ({"aie_accelerator": "tpu"}, "--aie-accelerator 'tpu' is not a known accelerator"),
    ({"aie_cpu_bandwidth_gbs": "fast"}, "--aie-cpu-bandwidth-gbs .* must be a positive number"),
    ({"aie_cpu_bandwidth_gbs": "-4"}, "--aie-cpu-bandwidth-gbs must be a positive number"),
    ({"aie_cpu_peak_gflops": "nan"}, "--aie-cpu-peak-gflops must be a positive number"),
    ({"aie_model_params": "seven"}, "--aie-model-params .* must be a parameter count"),
])
def test_bad_options_are_usage_errors(options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Settings.from_config(FakeConfig(**options))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- whole runs

SUITE = """
    import pytest

    @pytest.mark.dataset("cases.jsonl", max_tokens=8, chat=False)
    @pytest.mark.latency(e2e_p95_ms=600000, warmup=1)
    def test_speed(case, output):
        pass
"""

INI = """
    [pytest]
    aie_engine = scripted
    aie_model = answers.jsonl
    aie_engine_options = token_delay=0.004
    aie_cache = off
"""


def _latency_run(pytester: pytest.Pytester, *args: str) -> tuple[Any, dict[str, Any],
                                                                   list[dict[str, Any]]]:
    cases = [{"id": f"c{i}", "prompt": f"q{i}"} for i in range(4)]
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases))
    (pytester.path / "answers.jsonl").write_text("\n".join(
        json.dumps({"prompt": f"q{i}", "answer": "one two three four five six"}) for i in range(4)))
    pytester.makepyfile(test_speed=textwrap.dedent(SUITE))
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makeini(textwrap.dedent(INI))
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)
    rows = json.loads((pytester.path / "rows.json").read_text())
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()
    return result, rows[0], [r for r in map(json.loads, lines[1:]) if r.get("type") == "case"]


def test_a_latency_run_with_the_cpu_bandwidth_reports_the_hand_computed_mbu(
        pytester: pytest.Pytester) -> None:
    result, row, recs = _latency_run(pytester, "--aie-cpu-bandwidth-gbs", "400",
                                     "--aie-model-params", "135M", "--aie-dtype", "float32")
    assert result.ret == 0, result.stdout.str()
    u = row["utilization"]
    tpots = [r["details"]["tpot_ms"] for r in recs]
    assert len(tpots) == 4 and all(t >= 4 for t in tpots)  # 4 ms per word
    by_hand = 135e6 * 4 * (1000 / statistics.median(tpots)) / 400e9
    assert u["mbu"] == pytest.approx(by_hand, rel=1e-9)
    assert (u["params"], u["bytes_per_param"], u["accelerator"]) == (135_000_000, 4.0, "cpu")
    assert u["mfu"] is None and "--aie-cpu-peak-gflops" in u["mfu_reason"]
    for rec in recs:  # the results log carries the suite's figures on each latency case
        assert rec["details"]["utilization"] == u
    result.stdout.fnmatch_lines([f"*MBU {by_hand:.2%}; MFU unmeasured: pass --aie-cpu-peak-gflops*"
                                 "135M params x 4 bytes (float32) on cpu: 400 GB/s*"])


def test_a_latency_run_without_the_bandwidth_says_why_mbu_is_unmeasured(
        pytester: pytest.Pytester) -> None:
    result, row, recs = _latency_run(pytester, "--aie-model-params", "135M",
                                     "--aie-dtype", "float32")
    assert result.ret == 0, result.stdout.str()
    u = row["utilization"]
    assert u["mbu"] is None and u["mfu"] is None and u["decode_tokens_per_s"] > 0
    result.stdout.fnmatch_lines(["*MBU unmeasured: no peak bandwidth for the model on a remote "
                                 "server: pass --aie-accelerator NAME*--aie-cpu-bandwidth-gbs N"])
    result, row, _ = _latency_run(pytester, "--aie-cpu-bandwidth-gbs", "400")
    assert "MBU unmeasured: the scripted engine's parameter count is unknown: pass " \
           "--aie-model-params" in result.stdout.str()


def test_an_unknown_accelerator_stops_the_run_before_it_starts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--aie-accelerator", "tpu-v5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'tpu-v5' is not a known accelerator (known: h100-sxm, h100-pcie, h200" in \
        result.stderr.str()


# ---------------------------------------------------------------------------- the GPU script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def _script(tmp_path: Path, fake_smi: str | None, **env: str) -> Any:
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if fake_smi is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{fake_smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    path = os.pathsep.join([str(bin_dir), os.environ["PATH"]])  # the fake nvidia-smi first
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": path, "PYTHON": sys.executable, **env})


@pytest.mark.parametrize("fake_smi, line", [
    (None, "gpu_check: no GPU: nvidia-smi is not installed"),
    ('echo "NVIDIA-SMI has failed because it could not communicate with the driver" >&2; exit 9',
     "gpu_check: no GPU: nvidia-smi lists no GPU (NVIDIA-SMI has failed"),
])
def test_gpu_script_without_a_gpu_stops_with_one_line(tmp_path: Path, fake_smi: str | None,
                                                      line: str) -> None:
    import shutil

    if fake_smi is None and shutil.which("nvidia-smi"):
        not_on_this_machine("this machine has nvidia-smi")  # a no-GPU check; CI too
    done = _script(tmp_path, fake_smi)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(line), done.stderr


def test_gpu_script_with_a_gpu_but_no_cuda_torch_stops_with_one_line(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        not_on_this_machine("this Python's torch has CUDA")
    done = _script(tmp_path, 'echo "NVIDIA H100 80GB HBM3"')
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no GPU for torch" in done.stderr, done.stderr


@pytest.mark.slow
def test_gpu_script_suite_runs_on_the_hf_engine_and_prints_consistent_figures(
        tmp_path: Path) -> None:
    import re

    done = _script(tmp_path, None, AIE_GPU_CHECK_ENGINE="hf", AIE_GPU_CHECK_CASES="3",
                   AIE_GPU_CHECK_MAX_TOKENS="8", AIE_CPU_BANDWIDTH_GBS="20")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "the GPU and vllm checks are skipped" in out and "answers:     " in out
    assert re.search(r"throughput:  [0-9.]+ output tokens/s", out), out
    assert re.search(r"TTFT:        p50 [0-9.]+ ms", out), out
    tpot = float(re.search(r"TPOT:        p50 ([0-9.]+) ms", out)[1])  # type: ignore[index]
    got = re.search(r"^MBU ([0-9.]+)%.*?([0-9.]+)M params x 4 bytes \(float32\) on cpu: 20 GB/s",
                    out, re.M)
    assert got is not None, out
    by_hand = float(got[2]) * 1e6 * 4 * (1000 / tpot) / 20e9  # from the printed figures
    assert float(got[1]) / 100 == pytest.approx(by_hand, rel=0.01)


def test_the_docs_table_shows_the_modules_figures() -> None:
    import re

    latency = (Path(__file__).resolve().parents[1] / "docs" / "evals" / "latency.md").read_text(
        encoding="utf-8")
    section = latency.split("\n## MBU and MFU\n", 1)[1].split("\n## ", 1)[0]
    unit = {"TB/s": 1e12, "GB/s": 1e9, "TF": 1e12}

    def value(cell: str) -> float | None:
        cell = cell.strip().replace(",", "")
        if not cell:
            return None
        number, suffix = cell.split(" ")
        return float(number) * unit[suffix]

    rows = [[cell.strip().strip("`") for cell in line.split("|")[1:7]]
            for line in section.splitlines() if re.match(r"\| `[a-z0-9]", line)]
    assert [r[0] for r in rows] == list(ACCELERATORS)
    for name, bandwidth, fp32, tf32, bf16, fp8 in rows:
        acc = ACCELERATORS[name]
        assert value(bandwidth) == pytest.approx(acc.bandwidth)
        for cell, dtype in ((fp32, "float32"), (tf32, "tf32"), (bf16, "bfloat16"), (fp8, "fp8")):
            assert value(cell) == pytest.approx(acc.flops.get(dtype)), (name, dtype)
