"""AI-as-a-judge: the embedded model answers questions, and a judge grades each answer.

The judge is `--aie-judge` (here the default: the same embedded 135M model, on the hf engine,
its reply constrained to the rubric's JSON by grammar-constrained decoding). Each case's
verdict comes with the judge's rationale (in the results log and the report).

Twelve answers carry a human label (`human` in facts.jsonl, with the exact answer that was
labelled: a label for an answer the model no longer gives is stale and not used). The summary
shows the judge's agreement with those labels (Cohen's kappa with its interval, true-positive
and true-negative rates); `min_kappa=0.4` marks a judge below it as untrusted, and its
verdicts as inconclusive. A 135M-parameter judge is not a good judge: expect that here.
"""

import pytest

DATASET = dict(prompt="{question} Answer in one sentence.", max_tokens=40)


@pytest.mark.dataset("facts.jsonl", **DATASET)
@pytest.mark.judge("correctness", human="human", min_kappa=0.4, min_pass_rate=0.5)
def test_correct_per_judge(case, output):
    """Pass/fail against the reference answer (judges/correctness.j2)."""

