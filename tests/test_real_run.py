"""A small real run of the embedded model through the whole plugin: the hf engine on CPU,
whole-suite batching, the cache, and the same per-case results with and without xdist."""

from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = pytest.mark.slow

CASES = [
    {"id": "france", "country": "France", "expected": "Paris"},
    {"id": "japan", "country": "Japan", "expected": "Tokyo"},
    {"id": "italy", "country": "Italy", "expected": "Rome"},
    {"id": "egypt", "country": "Egypt", "expected": "Cairo"},
    {"id": "canada", "country": "Canada", "expected": "Ottawa"},
    {"id": "kenya", "country": "Kenya", "expected": "Nairobi"},
]


@pytest.fixture
def real_suite(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> pytest.Pytester:
    pytester.makefile(".jsonl", capitals="\n".join(json.dumps(c) for c in CASES))
    pytester.makepyfile(test_capitals="""
        import pytest

        @pytest.mark.dataset("capitals.jsonl", prompt="What is the capital of {country}? "
                             "Answer with the city name only.", max_tokens=8)
        @pytest.mark.exact("any_of", normalize="all", min_pass_rate=0.3)
        def test_capital(case, output):
            assert output.engine == "hf"
            assert output.finish_reason in ("stop", "length")
    """)
    cache = tmp_path_factory.mktemp("gen-cache")
    pytester.makeini(textwrap.dedent(f"""
        [pytest]
        aie_cache_dir = {cache}
    """))
    return pytester


def _records(pytester: pytest.Pytester) -> dict[str, dict]:
    lines = (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()
    return {r["case_id"]: r for r in map(json.loads, lines[1:]) if r.get("type") == "case"}


def test_embedded_model_end_to_end(real_suite: pytest.Pytester) -> None:
    first = real_suite.runpytest_subprocess("-p", "no:randomly", "--aie-cache", "refresh")
    assert first.ret == 0, first.stdout.str()
    first.stdout.fnmatch_lines(["*test_capital [[]exact.any_of[]]: */6 passed*-> PASS (threshold 0.3)"])
    recs = _records(real_suite)
    assert set(recs) == {c["id"] for c in CASES}
    assert sum(r["passed"] is True for r in recs.values()) >= 3  # it knows Paris and Tokyo
    for rec in recs.values():
        assert rec["engine"] == "hf" and "SmolLM2-135M-Instruct" in rec["model_id"] and rec["model"] == "default"
        assert rec["completion_tokens"] and rec["completion_tokens"] <= 8
        assert rec["timings"]["batch_size"] >= 1 and rec["timings"]["e2e_s"] > 0
        assert rec["cached"] is False
    outputs = {k: r["output"] for k, r in recs.items()}

    # Same run from the cache: identical outputs, marked cached, no latency reported.
    second = real_suite.runpytest_subprocess("-p", "no:randomly")
    assert second.ret == 0
    cached = _records(real_suite)
    assert {k: r["output"] for k, r in cached.items()} == outputs
    assert all(r["cached"] and r["timings"]["e2e_s"] is None for r in cached.values())

    # xdist with the cache off generates for real and gives the same per-case results.
    parallel = real_suite.runpytest_subprocess("-n", "2", "--aie-cache", "off")
    assert parallel.ret == 0, parallel.stdout.str()
    par = _records(real_suite)
    assert {k: (r["output"], r["passed"]) for k, r in par.items()} == \
        {k: (r["output"], r["passed"]) for k, r in recs.items()}
    assert not any(r["cached"] for r in par.values())
