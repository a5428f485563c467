"""A real judge: the embedded 135M model grades 26 answers (13 right, 13 wrong) through the hf
engine with grammar-constrained decoding, in one pytest run. Every reply must parse (the README
reports the parse rate). Whether the 135M judge is any good is not asserted (it is a poor one);
what is asserted is that the harness tells the truth about it, on its real verdicts: each
case's status follows its recorded verdict, kappa and the detection rates are those of the
recorded verdicts against the labels (computed here independently), and the discrimination
check decides on them, so that a judge that says "pass" to everything, or agrees with the labels
no better than chance, makes the suite inconclusive (with the judge named), never green."""

from __future__ import annotations

import json
import textwrap

import pytest
from test_latency import ROWS_CONFTEST

pytestmark = pytest.mark.slow

FACTS = [
    ("What is the capital of France?", "Paris", "Lyon"),
    ("How many legs does a spider have?", "Eight", "Six"),
    ("Which planet is known as the Red Planet?", "Mars", "Venus"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare", "Charles Dickens"),
    ("What is the chemical formula of water?", "H2O", "CO2"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean", "The Indian Ocean"),
    ("How many days are in a week?", "Seven", "Ten"),
    ("What do bees make?", "Honey", "Milk"),
    ("What is the boiling point of water at sea level in Celsius?", "100 degrees", "50 degrees"),
    ("Which animal is known as the king of the jungle?", "The lion", "The rabbit"),
    ("What color is the sky on a clear day?", "Blue", "Green"),
    ("How many continents are there?", "Seven", "Three"),
    ("What is the largest planet in the solar system?", "Jupiter", "Mercury"),
]


def test_embedded_judge_reads_every_reply_and_the_harness_reports_what_it_really_said(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    cases, answers = [], {}
    for i, (question, right, wrong) in enumerate(FACTS):
        for kind, answer in (("right", right), ("wrong", wrong)):
            prompt = f"{question} ({kind})"
            cases.append({"id": f"{i}-{kind}", "prompt": prompt, "expected": right,
                          "human": "pass" if kind == "right" else "fail"})
            answers[prompt] = f"{answer}."
    assert len(cases) == 2 * len(FACTS) == 26
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases),
                      answers="\n".join(json.dumps({"prompt": p, "answer": a})
                                        for p, a in answers.items()))
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makepyfile(test_judged="""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.judge("correctness", human="human", min_pass_rate=0.5)
        def test_judged(case, output):
            pass
    """)
    cache = tmp_path_factory.mktemp("judge-cache")
    pytester.makeini(f"[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n"
                     f"aie_cache_dir = {cache}\n")  # the judge: the default, embedded on hf
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    out = result.stdout.str()
    recs = {r["case_id"]: r for r in map(json.loads, (
        pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:])
        if r.get("type") == "case"}
    assert len(recs) == 26, out
    judgments = {c: r["details"]["judgments"] for c, r in recs.items()}
    assert all(len(j) == 1 and j[0]["constrained"] and not j[0]["repaired"]
               for j in judgments.values())
    said = {c: j[0]["value"] for c, j in judgments.items()}
    assert set(said.values()) <= {"pass", "fail"} and all(j[0]["rationale"]
                                                          for j in judgments.values()), said
    assert all(j[0]["model"].startswith("hf:") for j in judgments.values())
    row = json.loads((pytester.path / "rows.json").read_text())[0]
    judge = row["judge"]
    assert judge["parse_rate"] == 1.0 and judge["judgments"] == 26
    assert "26/26 replies read (100%)" in out, out

    # kappa and the detection rates are those of the recorded verdicts (statsmodels' kappa)
    from statsmodels.stats.inter_rater import cohens_kappa

    human = {c["id"]: c["human"] for c in cases}
    table = [[sum(1 for c in said if said[c] == a and human[c] == b) for b in ("fail", "pass")]
             for a in ("fail", "pass")]
    kappa = judge["human"]["kappa"]["kappa"]
    constant = len(set(said.values())) == 1
    if not constant:
        assert kappa == pytest.approx(cohens_kappa(table).kappa, abs=1e-9)
    tp = sum(1 for c in said if said[c] == human[c] == "pass")
    tn = sum(1 for c in said if said[c] == human[c] == "fail")
    assert judge["human"]["rates"]["tpr"] == pytest.approx(tp / 13)
    assert judge["human"]["rates"]["tnr"] == pytest.approx(tn / 13)

    # labels without min_kappa= do not calibrate the judge: every verdict is marked so
    trust = judge["trust"]
    assert trust["calibrated"] is False and "no min_kappa=" in trust["uncalibrated"]
    if constant or kappa <= 0:  # no signal: the suite decides nothing, the judge named
        only = next(iter(said.values()))
        assert trust["untrusted"] and (
            f"said {only!r} to all 26 cases" if constant else
            f"no better than chance (Cohen's kappa {kappa:.2f})") in trust["reason"], trust
        assert "judge 'judge' (hf:SmolLM2-135M-Instruct" in trust["reason"]
        assert row["verdict"] == "inconclusive" and "judge untrusted" in row["inconclusive_reason"]
        assert {r["status"] for r in recs.values()} == {"scored"}
        assert result.ret == 0 and "WARNING" in out, out
    else:  # it tells some cases apart: each case's status is its verdict, marked uncalibrated
        assert "no_signal" not in trust and not trust["untrusted"]
        assert {c: r["status"] for c, r in recs.items()} == {
            c: "passed" if v == "pass" else "failed" for c, v in said.items()}
        assert all(r["reason"].startswith("uncalibrated judge: ") for r in recs.values())
        assert row["verdict"] in ("pass", "fail", "inconclusive")
    print(f"\nembedded judge: {sum(v == 'pass' for v in said.values())} of 26 passed; "
          f"Cohen's kappa {kappa}; tpr {tp}/13, tnr {tn}/13; verdict {row['verdict']}; "
          f"{trust.get('no_signal') or 'discriminates'}")
