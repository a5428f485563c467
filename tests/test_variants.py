"""``dataset(variants={...})``: variants of the prompt, system prompt, sampling or model as the
"models" of one suite: their own test items and records, paired comparisons between them, one
batched pass per engine."""

from __future__ import annotations

import textwrap

import pytest
from scripted_suite import read_records, write_answers, write_jsonl

VARIANTS = """
    import pytest

    @pytest.mark.dataset("cases.jsonl", variants={
        "short": {"prompt": "{q} briefly"},
        "long": {"prompt": "{q} in detail", "max_tokens": 50},
        "sys": {"prompt": "{q} briefly", "system": "Be kind."},
    }, reference="short")
    @pytest.mark.exact("contains")
    def test_variants(case, output):
        pass
"""


def _setup(pytester: pytest.Pytester, test: str) -> None:
    n = 30
    write_jsonl(pytester, "cases", ({"id": f"c{i}", "q": f"q{i}", "expected": f"a{i}"}
                                    for i in range(n)))
    answers = {f"q{i} briefly": f"a{i}" for i in range(n)}
    answers.update({f"q{i} in detail": (f"a{i} indeed" if i % 3 else "no idea") for i in range(n)})
    write_answers(pytester, answers)
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\naie_cache = off\n")
    pytester.makepyfile(test_suite=textwrap.dedent(test))


def test_each_variant_is_a_model_of_the_suite(pytester: pytest.Pytester) -> None:
    _setup(pytester, VARIANTS)
    result = pytester.runpytest_subprocess("-v")
    out = result.stdout.str() + result.stderr.str()
    # one batched pass for all three variants: they run on the same engine
    assert "generating 90 of 90 requests on default (scripted)" in out, out
    recs = read_records(pytester)
    by = {(r["model"], r["case_id"]): r for r in recs}
    assert {m for m, _ in by} == {"short", "long", "sys"}
    assert by[("long", "c0")]["status"] == "failed" and by[("long", "c1")]["status"] == "passed"
    assert by[("sys", "c0")]["prompt"].startswith("[system] Be kind.")
    assert "test_variants[c0@long]" in out and "test_variants[c0@sys]" in out
    assert "test_variants[c0@short]" not in out  # the reference is compared against, not gated
    # the paired comparison of each variant with the reference
    assert "long vs short" in out or "short vs long" in out, out


@pytest.mark.parametrize("variants, message", [
    ('{"a": {}}', "must name at least two variants"),
    ('{"a": {"sytem": "x"}, "b": {}}', "sets unknown 'sytem'"),
    ('{"a": {"temperature": 9}, "b": {}}', "temperature must be in [0, 2]"),
])
def test_bad_variants_are_one_clear_error(pytester: pytest.Pytester, variants: str,
                                          message: str) -> None:
    _setup(pytester, f"""
        import pytest

        @pytest.mark.dataset("cases.jsonl", prompt="{{q}} briefly", variants={variants})
        @pytest.mark.exact("contains")
        def test_variants(case, output):
            pass
    """)
    result = pytester.runpytest_subprocess()
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 10 and message in out, out
