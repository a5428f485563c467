"""Classification with a closed label set: after normalisation (case, punctuation,
whitespace) the whole output must equal the label. A system prompt constrains the format."""

import pytest


@pytest.mark.dataset(
    "sentiment.yaml",
    system="You are a sentiment classifier. Reply with one word: positive or negative.",
    prompt="Review: {review}\nSentiment:",
    max_tokens=4,
)
@pytest.mark.exact("match", normalize="all")
def test_sentiment(case, output):
    assert case.expected in ("positive", "negative")
