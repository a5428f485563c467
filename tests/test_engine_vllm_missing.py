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


def test_suites_on_other_engines_run_on_when_one_engine_cannot_start(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """One suite on vllm (missing), one on the scripted engine: the scripted suite is gated
    and passes; the vllm suite's first case fails with the one line and the rest are
    skipped with it as the reason; the run exits 10."""
    monkeypatch.setitem(sys.modules, "vllm", None)
    write_jsonl(pytester, "cases", [{"id": f"c{i}", "prompt": f"q{i}", "expected": "yes"}
                                    for i in range(5)])
    write_jsonl(pytester, "answers", [{"prompt": f"q{i}", "answer": "yes"} for i in range(5)])
    pytester.makepyfile(test_suite="""
        import pytest

        @pytest.mark.dataset("cases.jsonl", model="big")
        @pytest.mark.exact("match")
        def test_on_vllm(case, output):
            pass

        @pytest.mark.dataset("cases.jsonl", model="small")
        @pytest.mark.exact("match", min_pass_rate=0.5)
        def test_on_scripted(case, output):
            pass
    """)
    result = pytester.runpytest("--aie-models", "big=vllm:x,small=scripted:answers.jsonl",
                                "--aie-cache", "off", "-p", "no:randomly", "-rs")
    out = result.stdout.str()
    assert result.ret == EXIT_HARNESS_ERROR, out
    result.assert_outcomes(passed=5, errors=1, skipped=4)
    assert out.count("the vllm engine needs the vllm package") >= 2  # the failure, the skips
    result.stdout.fnmatch_lines(["*SKIPPED [[]4[]]*: pytest-aie: not evaluated: the vllm engine needs*",
                                 "*test_on_scripted [[]exact.match[]]*5/5 passed*PASS*"])
