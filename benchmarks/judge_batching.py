"""``judge_batching_speedup``: judge calls per second through the harness (the judge marker
batches a whole suite's judgments) divided by the same calls one at a time on the same engine,
in the same run.

The model under test is scripted (its answers cost nothing), the judge is the embedded model on
the hf engine with constrained decoding (the default judge). The harness side is a whole
``pytest`` run of a correctness-judged suite (cache off), engine start included; the other side
sends the same judge requests (rebuilt by the judge scorer from the same cases and answers) to
one hf engine one request per ``generate`` call (the first ``--serial`` of them: calls per
second is a rate), engine start excluded. So the ratio is conservative.

    .venv/bin/python benchmarks/judge_batching.py [--cases 32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = [
    ("What is the capital of France?", "Paris", "The capital of France is Paris."),
    ("How many legs does a spider have?", "Eight", "A spider has six legs."),
    ("Which planet is known as the Red Planet?", "Mars", "Mars is the Red Planet."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare", "Charles Dickens wrote it."),
    ("What is the chemical formula of water?", "H2O", "Water is H2O."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean", "The Atlantic Ocean."),
    ("How many days are in a week?", "Seven", "There are seven days in a week."),
    ("What do bees make?", "Honey", "Bees make honey and wax."),
]

TEST = """
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.judge("correctness")
def test_judged(case, output):
    pass
"""


def write_suite(folder: Path, n: int) -> list[dict[str, str]]:
    cases, answers = [], {}
    for i in range(n):
        q, expected, answer = QUESTIONS[i % len(QUESTIONS)]
        prompt = f"{q} (case {i})"
        cases.append({"id": f"c{i}", "prompt": prompt, "expected": expected})
        answers[prompt] = answer
    (folder / "cases.jsonl").write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    (folder / "answers.jsonl").write_text(
        "\n".join(json.dumps({"prompt": p, "answer": a}) for p, a in answers.items()) + "\n")
    (folder / "test_judged.py").write_text(TEST)
    (folder / "pytest.ini").write_text("[pytest]\naie_engine = scripted\n"
                                       f"aie_model = {folder / 'answers.jsonl'}\naie_cache = off\n")
    return cases


def harness(folder: Path) -> tuple[int, float, list[dict]]:
    """(judge calls, seconds, records) of one pytest run of the judged suite."""
    import pytest

    results = folder / "results.jsonl"
    args = [str(folder), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
            str(folder), "--aie-results", str(results), "--aie-report", str(folder / "r.html")]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        pytest.main(args)
    took = time.perf_counter() - started
    records = [r for r in map(json.loads, results.read_text().splitlines()[1:]) if r.get("type") == "case"]
    calls = sum(len(r["details"]["judgments"]) + sum(j["repaired"] for j in r["details"]["judgments"])
                for r in records)
    return calls, took, records


def one_at_a_time(folder: Path, cases: list[dict[str, str]], answers: dict[str, str],
                  limit: int) -> tuple[int, float, int]:
    """The same judge requests (the first ``limit`` of them), one per generate call:
    (calls, seconds, readable replies)."""
    from pytest_aie.dataset import Case
    from pytest_aie.engines.base import Capability, Generation, Request, Sampling
    from pytest_aie.engines.hf import HFEngine
    from pytest_aie.judge.scorer import build_judge
    from pytest_aie.judge.verdicts import read_reply
    from pytest_aie.scorers.base import Sample

    engine = HFEngine()
    scorer = build_judge("correctness", base_dir=folder)
    scorer.bind(lambda name, cap: engine.supports(cap) if cap == Capability.SCHEMA else False)
    samples = []
    for c in cases:
        req = Request(messages=({"role": "user", "content": c["prompt"]},), sampling=Sampling())
        gen = Generation(text=answers[c["prompt"]])
        samples.append(Sample(case=Case(id=c["id"], fields=c), request=req, generation=gen,
                              model="default", generations={"default": gen}))
    requests = [r for plan in scorer.plan(samples) for r in plan][:limit]
    engine.generate([requests[0][1]])  # warm up (first call compiles the vocabulary)
    started = time.perf_counter()
    replies = [engine.generate([r])[0] for _, r in requests]
    took = time.perf_counter() - started
    readable = sum(read_reply(g, scorer.rubric).value is not None for g in replies)
    return len(requests), took, readable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--serial", type=int, default=8,
                        help="how many of the same calls to time one at a time (a rate)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = write_suite(folder, args.cases)
        answers = {json.loads(x)["prompt"]: json.loads(x)["answer"]
                   for x in (folder / "answers.jsonl").read_text().splitlines()}
        calls_h, took_h, records = harness(folder)
        read_h = sum(1 for r in records for j in r["details"]["judgments"] if j["value"] is not None)
        calls_s, took_s, read_s = one_at_a_time(folder, cases, answers, args.serial)
    batched, serial = calls_h / took_h, calls_s / took_s
    print(f"judge_batching: harness {calls_h} calls in {took_h:.1f} s ({read_h} readable), "
          f"one at a time {calls_s} calls in {took_s:.1f} s ({read_s} readable)", file=sys.stderr)
    print(f"judge_calls_per_s_batched: {batched:.3f}")
    print(f"judge_calls_per_s_serial: {serial:.3f}")
    print(f"judge_batching_speedup: {batched / serial:.2f}")


if __name__ == "__main__":
    main()
