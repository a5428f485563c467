"""The elo marker through real pytest runs on the scripted engine: a round robin of variants
judged in both orders, the ranking and its expect= gates, human preference files, and the
adaptive schedule that needs fewer judge calls than a round robin."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from scripted_suite import read_records, write_answers, write_jsonl
from test_judge import JUDGEFNS
from test_latency import ROWS_CONFTEST

#: a judge that prefers the longer answer (consistently, in both orders)
LONGER = "scripted:judgefns:longer"


#: judges whose pick does not depend on the answers: the first shown, or a coin (a hash of
#: the whole request, so the swapped order gets its own toss)
BLIND = r'''

def first(request):
    return json.dumps({"rationale": "the first one", "winner": "A"})


def coin(request):
    import hashlib

    toss = hashlib.sha256(json.dumps(request.messages).encode()).digest()[0] % 2
    return json.dumps({"rationale": "a coin", "winner": "AB"[toss]})
'''


def _suite(pytester: pytest.Pytester, marker: str, n: int = 12, models: int = 3,
           extra: str = "", judge: str = LONGER, equal: bool = False) -> None:
    """Variants v0..v{models-1}; variant vK answers case i with K+1 words (v2 > v1 > v0), except
    that every variant answers case 0 with one word; ``equal``: every variant answers alike
    (two words)."""
    write_jsonl(pytester, "cases", ({"id": f"c{i}", "q": f"q{i}"} for i in range(n)))
    answers = {f"q{i} as v{k}": (f"answer {i}" if equal else "word" if i == 0 else
                                 " ".join(["word"] * (k + 1)))
               for i in range(n) for k in range(models)}
    write_answers(pytester, answers)
    pytester.makepyfile(judgefns=JUDGEFNS + BLIND)
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makeini(f"[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n"
                     f"aie_cache = off\naie_judge = {judge}\n{extra}")
    variants = ", ".join(f'"v{k}": {{"prompt": "{{q}} as v{k}"}}' for k in range(models))
    pytester.makepyfile(test_suite=textwrap.dedent(f"""
        import pytest

        @pytest.mark.dataset("cases.jsonl", variants={{{variants}}})
        @pytest.mark.{marker}
        def test_ranked(case, output):
            pass
    """))


def _elo(pytester: pytest.Pytester) -> dict[str, Any]:
    rows = json.loads((pytester.path / "rows.json").read_text())
    return next(r["elo"] for r in rows if r.get("elo"))


def test_round_robin_ranks_the_variants_and_gates_expectations(pytester: pytest.Pytester) -> None:
    _suite(pytester, 'elo(expect=["v2 > v0", "v0 > v1"])')
    result = pytester.runpytest_subprocess()
    out = result.stdout.str()
    elo = _elo(pytester)
    assert [r["model"] for r in elo["ranking"]] == ["v2", "v1", "v0"]
    # 3 pairs x 12 cases, both orders each: 72 judge calls, all read
    assert elo["battles"] == elo["judge_battles"] == 36 and elo["judge_calls"] == 72
    assert elo["unreadable_battles"] == 0 and elo["flip_rate"]["flip_rate"] == 0.0
    verdicts = {g["expect"]: g["verdict"] for g in elo["expect"]}
    assert verdicts == {"v2 > v0": "pass", "v0 > v1": "fail"}
    assert result.ret == 1, out  # a failed ranking expectation fails the run
    assert "expect v0 > v1" in out and "FAIL" in out, out
    assert "1. v2" in out, out
    # the win-rate matrix, each pair once: v0 loses to v1 on 11 cases and ties on c0
    assert "v0 vs v1 4% (0-11-1)" in out, out
    # each case record carries its battles; v2 wins all of its battles except on c0 (ties)
    recs = {(r["model"], r["case_id"]): r for r in read_records(pytester)}
    assert recs[("v2", "c1")]["value"] == 1.0 and recs[("v2", "c0")]["value"] == 0.5
    assert recs[("v0", "c1")]["value"] == 0.0
    # the ranking rides on every case record (the results log) and into the report
    board = recs[("v2", "c1")]["details"]["ranking"]
    assert [r["model"] for r in board] == ["v2", "v1", "v0"]
    assert recs[("v0", "c3")]["details"]["expect"][1] == {"expect": "v0 > v1", "verdict": "fail"}
    html = (pytester.path / "aie-results" / "report.html").read_text()
    assert "Ranking (Bradley-Terry" in html  # the drill-down block
    from pytest_aie.report.blob import cases_in  # the case data (packed in the page)
    assert any("expect v0 > v1: fail" in c.get("ranking", "") for c in cases_in(html))
    # online Elo as the book defines it is computed too, in judging order
    online = elo["online"]["ratings"]
    assert online["v2"] > online["v1"] > online["v0"]
    # the verdicts: the sign test on the decisive battles (v2 vs v0 11-0 with the tie on c0)
    gate = {g["expect"]: g for g in elo["expect"]}["v2 > v0"]
    assert (gate["wins"], gate["losses"], gate["ties"]) == (11, 0, 1)
    assert gate["p_value"] == pytest.approx(0.5 ** 11)
    assert elo["no_signal"] is None and [r["rank"] for r in elo["ranking"]] == [1, 2, 3]
    # two ties are two ties, not "won 1 of 2"
    assert recs[("v2", "c0")]["reason"].startswith("0 won, 0 lost, 2 tied of 2 battles"), \
        recs[("v2", "c0")]["reason"]
    assert recs[("v2", "c1")]["reason"].startswith("2 won, 0 lost, 0 tied of 2 battles")
    # no baseline: no baseline diff in the report
    assert "No case changed status" not in html and 'id="diff"' not in html


def test_every_failed_expectation_is_named(pytester: pytest.Pytester) -> None:
    _suite(pytester, 'elo(expect=["v2 > v0", "v0 > v1", "v1 > v2"])')
    result = pytester.runpytest_subprocess()
    out = result.stdout.str()
    assert result.ret == 1, out
    row = next(r for r in json.loads((pytester.path / "rows.json").read_text()) if r.get("elo"))
    assert row["verdict"] == "fail" and row["failed_expectations"] == ["v0 > v1", "v1 > v2"]
    # the suite row says which expectations decided it, never "no threshold"
    suite_line = next(line for line in out.splitlines() if "-> FAIL" in line)
    assert "no threshold" not in suite_line and "expect v0 > v1" in suite_line \
        and "expect v1 > v2" in suite_line, suite_line
    # the closing line names both failed expectations
    closing = next(line for line in out.splitlines() if "GATE FAILED" in line)
    assert "v0 > v1" in closing and "v1 > v2" in closing, closing
    # and so do the report's notes
    html = (pytester.path / "aie-results" / "report.html").read_text()
    assert "expect v0 &gt; v1 FAILED" in html and "expect v1 &gt; v2 FAILED" in html


@pytest.mark.parametrize("judge", ["first", "coin"])
def test_a_judge_blind_to_the_answers_gives_no_signal_and_fails_nothing(
        pytester: pytest.Pytester, judge: str) -> None:
    # three equally good variants, judged by a judge whose pick ignores the answers
    _suite(pytester, 'elo(expect=["v0 > v1", "v1 > v2", "v2 > v0", "v0 >= v2 - 200"])',
           judge=f"scripted:judgefns:{judge}", equal=True)
    result = pytester.runpytest_subprocess()
    out = result.stdout.str()
    elo = _elo(pytester)
    assert result.ret != 1 and "GATE FAILED" not in out, out
    assert [g["verdict"] for g in elo["expect"]] == ["inconclusive"] * 4
    assert elo["no_signal"] and "changed with the answer order" in elo["no_signal"]
    assert [r["rank"] for r in elo["ranking"]] == [None] * 3
    assert [r["model"] for r in elo["ranking"]] == ["v0", "v1", "v2"]  # the suite's order
    assert "no signal, no ranking" in out and "1. v" not in out, out
    html = (pytester.path / "aie-results" / "report.html").read_text()
    assert "No signal, no ranking" in html


def test_human_preferences_alone_rank_the_models(pytester: pytest.Pytester) -> None:
    lines = [{"case": f"c{i}", "model_a": "v0", "model_b": "v1", "winner": "v0"} for i in range(9)]
    lines += [{"case": "c9", "model_a": "v0", "model_b": "v1", "winner": "tie"}]
    lines += [{"case": f"c{i}", "model_a": "v1", "model_b": "v2", "winner": "b"} for i in range(8)]
    pytester.makefile(".jsonl", prefs="\n".join(json.dumps(x) for x in lines))
    _suite(pytester, 'elo(judge=False, battles="prefs.jsonl", expect=["v0 > v1"])')
    result = pytester.runpytest_subprocess()
    elo = _elo(pytester)
    assert elo["human_battles"] == 18 and elo["judge_battles"] == 0 and elo["judge_calls"] == 0
    assert "on judge" not in result.stdout.str() + result.stderr.str()
    assert elo["expect"][0]["verdict"] == "pass"


def test_a_bad_battles_file_is_one_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", prefs=json.dumps({"model_a": "v0", "model_b": "zz",
                                                  "winner": "a"}))
    _suite(pytester, 'elo(battles="prefs.jsonl")')
    result = pytester.runpytest_subprocess()
    out = result.stdout.str() + result.stderr.str()
    assert "prefs.jsonl:1: model 'zz' is not a model of this suite" in out, out


@pytest.mark.parametrize("marker, message", [
    ('elo(expect=["v2 >> v0"])', "cannot read the ranking expectation"),
    ('elo("correctness")', "is a verdict rubric"),
    ('elo(budget=0)', "budget=0) must be a whole number >= 1"),
    ('elo(judge=False)', "needs battles="),
])
def test_bad_elo_arguments(pytester: pytest.Pytester, marker: str, message: str) -> None:
    _suite(pytester, marker, n=3)
    result = pytester.runpytest_subprocess()
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 10 and message in out, out


def test_an_adaptive_schedule_needs_fewer_judge_calls_than_a_round_robin(
        pytester: pytest.Pytester) -> None:
    _suite(pytester, "elo(budget=120, round_size=24)", n=60, models=4)
    result = pytester.runpytest_subprocess()
    out = result.stdout.str() + result.stderr.str()
    elo = _elo(pytester)
    assert [r["model"] for r in elo["ranking"]] == ["v3", "v2", "v1", "v0"], out
    assert elo["round_robin_battles"] == 6 * 60
    assert elo["judge_battles"] <= 120 and elo["rounds"] >= 2
    assert "follow-up" in out  # later rounds went through the pipeline like the first
