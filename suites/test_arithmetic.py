"""Arithmetic with a numeric answer: the last number in the output is compared with the
expected value (tolerance 1e-6). The cases come from a CSV file."""

import pytest


@pytest.mark.dataset("arithmetic.csv", prompt="{question} Reply with just the number.",
                     max_tokens=16)
@pytest.mark.exact("numeric", min_pass_rate=0.5)
def test_arithmetic(case, output):
    assert output.completion_tokens is None or output.completion_tokens <= 16
