"""The vllm engine where vllm is not installed (the main test environment): one line naming
what is missing, exit 10. Its real tests are in tests/vllm (`make test-vllm`)."""

from __future__ import annotations

import sys

import pytest
from scripted_suite import eval_test, write_jsonl

from pytest_aie.engines import check_engine_options
from pytest_aie.errors import EXIT_HARNESS_ERROR, UsageError


def test_without_vllm_the_engine_is_one_line_and_exit_10(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    write_jsonl(pytester, "cases", [{"id": "a", "prompt": "q", "expected": "x"}])
    pytester.makepyfile(test_suite=eval_test("exact()"))
    result = pytester.runpytest("--aie-engine", "vllm", "--aie-cache", "off")
    assert result.ret == EXIT_HARNESS_ERROR
    result.stdout.fnmatch_lines(["*the vllm engine needs the vllm package*Fix: install vLLM*"])
    assert "Traceback" not in result.stdout.str()


def test_vllm_engine_options_are_checked_without_vllm() -> None:
    check_engine_options("vllm", ["max_model_len", "gpu_memory_utilization", "enforce_eager",
                                  "tensor_parallel_size", "kv_cache_gb", "enable_lora"])
    with pytest.raises(UsageError, match="no option 'max_model_length'.*max_model_len"):
        check_engine_options("vllm", ["max_model_length"])
