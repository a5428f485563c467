"""Knowledge recall: does the model name each country's capital?

The prompt template fills `{country}` from each case; `any_of` passes when the output contains
the expected city (or one of several accepted spellings), ignoring case and punctuation.
"""

import pytest


@pytest.mark.dataset("capitals.jsonl", prompt="What is the capital of {country}? Answer with the city name only.",
                     max_tokens=12)
@pytest.mark.exact("any_of", normalize=["case", "punctuation", "whitespace"], min_pass_rate=0.5)
def test_capital(case, output):
    assert output.finish_reason in ("stop", "length")
