"""Comparative evaluation: which of three system prompts gives better answers?

The three variants of the suite differ only in their system prompt; the embedded model
answers every question under each. The `elo` marker has the judge (the embedded model, on the
`preference` rubric) compare the answers pairwise on every case, in both orders (a judge that
changes its mind when the order changes records a tie), and ranks the variants: a
Bradley-Terry fit on the Elo scale with bootstrap intervals, online Elo as the book defines
it, and the judge's position-flip rate. `expect=` gates the ranking: pass when the interval of
the rating difference is above zero, fail when below, inconclusive when it straddles zero.
"""

import pytest

VARIANTS = {
    "plain": {},
    "concise": {"system": "You are a helpful teacher. Answer in one or two clear sentences."},
    "pirate": {"system": "You are a pirate. Answer in pirate speak, with lots of arrr."},
}


@pytest.mark.dataset("explain.jsonl", prompt="{question}", variants=VARIANTS, max_tokens=48)
@pytest.mark.elo(expect=["concise > pirate"])
def test_system_prompts(case, output):
    """One test per question and variant; the ranking is in the summary."""
