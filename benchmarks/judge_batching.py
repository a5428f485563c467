"""``judge_batching_speedup``: judge calls per second batched, as the harness sends them, divided
by the same calls one at a time, on the same already-loaded engine, side by side.

The judge is the embedded model on the hf engine with constrained decoding (the default judge);
the requests are the ones the judge marker builds (the ``correctness`` rubric, rebuilt by the
judge scorer from a suite's cases and a scripted model's answers, JSON schema included). One
engine is loaded and warmed up (model, grammar vocabulary, the rubric's prefix in the prefix
cache) before anything is timed, so start-up counts on neither side. Then ``--rounds`` rounds,
each: all ``--cases`` requests in one ``generate`` call (what ``Model.generate_many`` does with up
to ``preferred_batch_size`` requests; the engine cuts them into micro-batches of 16), then
``--serial`` of them one per ``generate`` call (calls per second is a rate; each round takes the
next ones). The figure is the median of the rounds' ratios, so a load swing on this shared
machine hits both sides of a round alike. Both sides use the same prefix cache.

``--harness`` also times a whole ``pytest`` run of the judged suite (engine start, pytest start
and the grammar's vocabulary included) and prints its calls per second over the one-at-a-time
rate as ``judge_batching_harness_speedup`` (not part of ``make bench``).

    .venv/bin/python benchmarks/judge_batching.py [--cases 32] [--serial 8] [--rounds 2] [--harness]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def write_suite(folder: Path, n: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The judged suite's files; returns its cases and the scripted model's answers."""
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
    return cases, answers


def harness(folder: Path) -> tuple[int, float, int]:
    """(judge calls, seconds, readable verdicts) of one whole pytest run of the judged suite."""
    import pytest

    results = folder / "results.jsonl"
    args = [str(folder), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
            str(folder), "--aie-results", str(results), "--aie-report", str(folder / "r.html")]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        pytest.main(args)
    took = time.perf_counter() - started
    records = [r for r in map(json.loads, results.read_text().splitlines()[1:]) if r.get("type") == "case"]
    judgments = [j for r in records for j in r["details"]["judgments"]]
    calls = len(judgments) + sum(j["repaired"] for j in judgments)
    return calls, took, sum(j["value"] is not None for j in judgments)


def judge_requests(folder: Path, cases: list[dict[str, str]], answers: dict[str, str],
                   engine: Any) -> tuple[list[Any], Any]:
    """The judge requests the judge marker builds for these cases and answers, and its scorer."""
    from pytest_aie.dataset import Case
    from pytest_aie.engines.base import Capability, Generation, Request, Sampling
    from pytest_aie.judge.scorer import build_judge
    from pytest_aie.scorers.base import Sample

    scorer = build_judge("correctness", base_dir=folder)
    scorer.bind(lambda name, cap: engine.supports(cap) if cap == Capability.SCHEMA else False)
    samples = []
    for c in cases:
        req = Request(messages=({"role": "user", "content": c["prompt"]},), sampling=Sampling())
        gen = Generation(text=answers[c["prompt"]])
        samples.append(Sample(case=Case(id=c["id"], fields=c), request=req, generation=gen,
                              model="default", generations={"default": gen}))
    requests = [r for plan in scorer.plan(samples) for _, r in plan]
    if any(r.output_schema is None for r in requests):
        sys.exit("judge_batching: the hf engine cannot constrain output here (install xgrammar)")
    return requests, scorer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--serial", type=int, default=8,
                        help="how many of the same calls to time one at a time per round (a rate)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--harness", action="store_true",
                        help="also time a whole pytest run of the suite (start-up included)")
    args = parser.parse_args()
    from pytest_aie.engines.hf import HFEngine
    from pytest_aie.judge.verdicts import read_reply

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases, answers = write_suite(folder, args.cases)
        engine = HFEngine()
        requests, scorer = judge_requests(folder, cases, answers, engine)
        started = time.perf_counter()
        engine.generate(requests[:2])  # model, grammar vocabulary, the rubric's shared prefix
        print(f"judge_batching: engine start and warm-up {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        ratios, batched_rates, serial_rates = [], [], []
        agree = compared = readable = replies = 0
        for rnd in range(args.rounds):
            started = time.perf_counter()
            batched = engine.generate(requests)
            took_b = time.perf_counter() - started
            picked = [(rnd * args.serial + k) % len(requests) for k in range(args.serial)]
            started = time.perf_counter()
            serial = [engine.generate([requests[i]])[0] for i in picked]
            took_s = time.perf_counter() - started
            rate_b, rate_s = len(requests) / took_b, len(picked) / took_s
            batched_rates.append(rate_b)
            serial_rates.append(rate_s)
            ratios.append(rate_b / rate_s)
            values_b = [read_reply(g, scorer.rubric).value for g in batched]
            values_s = [read_reply(g, scorer.rubric).value for g in serial]
            readable += sum(v is not None for v in values_b + values_s)
            replies += len(values_b) + len(values_s)
            agree += sum(values_b[i] == v for i, v in zip(picked, values_s))
            compared += len(picked)
            print(f"judge_batching: round {rnd + 1}: {len(requests)} batched calls in {took_b:.1f} s, "
                  f"{len(picked)} one at a time in {took_s:.1f} s, ratio {ratios[-1]:.2f}",
                  file=sys.stderr)
        print(f"judge_batching: {readable} of {replies} replies readable; one-at-a-time verdicts "
              f"equal to the batched ones for {agree} of {compared}; prefix cache "
              f"{engine.prefix_cache.stats}", file=sys.stderr)
        engine.close()
        serial_rate = statistics.median(serial_rates)
        print(f"judge_calls_per_s_batched: {statistics.median(batched_rates):.3f}")
        print(f"judge_calls_per_s_serial: {serial_rate:.3f}")
        print(f"judge_batching_speedup: {statistics.median(ratios):.2f}")
        if args.harness:
            calls, took, read = harness(folder)
            print(f"judge_batching: harness {calls} calls in {took:.1f} s ({read} readable)",
                  file=sys.stderr)
            print(f"judge_batching_harness_speedup: {calls / took / serial_rate:.2f}")


if __name__ == "__main__":
    main()
