"""A real judge: the embedded 135M model grades 52 answers through the hf engine with
grammar-constrained decoding, in one pytest run. Every reply must parse (the README reports
the parse rate); the judge's agreement with the known right/wrong labels is reported, not
asserted (a 135M judge is a poor one)."""

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
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", "Pablo Picasso"),
    ("What gas do humans breathe in to live?", "Oxygen", "Helium"),
    ("What is the freezing point of water in Celsius?", "0 degrees", "30 degrees"),
    ("How many hours are in a day?", "24", "12"),
    ("What is the capital of Japan?", "Tokyo", "Beijing"),
    ("Which organ pumps blood through the body?", "The heart", "The liver"),
    ("What is the opposite of hot?", "Cold", "Warm"),
    ("How many sides does a square have?", "Four", "Five"),
    ("Which star is at the center of our solar system?", "The Sun", "Sirius"),
    ("What do cows drink?", "Water", "Milk"),
    ("What is 2 plus 2?", "4", "5"),
    ("Which is the longest river in Africa?", "The Nile", "The Thames"),
    ("In which country are the pyramids of Giza?", "Egypt", "Mexico"),
]


def test_embedded_judge_parses_every_reply_under_constrained_decoding(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    cases, answers = [], {}
    for i, (question, right, wrong) in enumerate(FACTS):
        for kind, answer in (("right", right), ("wrong", wrong)):
            prompt = f"{question} ({kind})"
            cases.append({"id": f"{i}-{kind}", "prompt": prompt, "expected": right,
                          "human": "pass" if kind == "right" else "fail"})
            answers[prompt] = f"{answer}."
    assert len(cases) == 52
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases),
                      answers="\n".join(json.dumps({"prompt": p, "answer": a})
                                        for p, a in answers.items()))
    pytester.makeconftest(textwrap.dedent(ROWS_CONFTEST))
    pytester.makepyfile(test_judged="""
        import pytest

        @pytest.mark.dataset("cases.jsonl")
        @pytest.mark.judge("correctness", human="human")
        def test_judged(case, output):
            pass
    """)
    cache = tmp_path_factory.mktemp("judge-cache")
    pytester.makeini(f"[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n"
                     f"aie_cache_dir = {cache}\n")  # the judge: the default, embedded on hf
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    out = result.stdout.str()
    recs = [r for r in map(json.loads,
            (pytester.path / "aie-results" / "results.jsonl").read_text().splitlines()[1:]) if r.get("type") == "case"]
    judgments = [j for r in recs for j in r["details"]["judgments"]]
    assert len(judgments) == 52, out
    assert all(j["constrained"] for j in judgments)
    assert all(j["value"] in ("pass", "fail") and j["rationale"] for j in judgments), \
        [j for j in judgments if j["value"] is None][:3]
    assert not any(j["repaired"] for j in judgments)
    assert {r["status"] for r in recs} <= {"passed", "failed"}
    judge = json.loads((pytester.path / "rows.json").read_text())[0]["judge"]
    assert judge["parse_rate"] == 1.0 and judge["judgments"] == 52
    human = judge["human"]
    assert human["used"] == 52 and "kappa" in human
    print(f"\nembedded judge: parse rate {judge['parse_rate']:.0%} over {judge['judgments']} "
          f"judgments; Cohen's kappa {human['kappa']['kappa']}; rates {human.get('rates')}; "
          f"{json.dumps(judge.get('length_bias'))}")
    assert "52/52 replies read (100%)" in out, out
