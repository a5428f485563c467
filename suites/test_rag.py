"""Gating your own application, not the bare model: a tiny RAG function (retrieve a passage
from a dict, then ask the model) evaluated two ways.

* ``target=``: pytest-aie calls the application for the whole suite at once (here as a batch,
  so the model generates at engine speed), caches its outputs, and scores them.
* the test body: the test calls the application itself and hands the answer to the eval
  markers with ``evaluate(...)``; plain pytest style, scored when the body ends.
"""

import pytest

DOCS = {
    "eiffel": "The Eiffel Tower stands in Paris. It was finished in 1889.",
    "everest": "Mount Everest, in the Himalaya, is 8849 metres tall.",
    "nile": "The Nile is about 6650 kilometres long and flows into the Mediterranean Sea.",
}


def retrieve(question: str) -> str:
    """The passage sharing the most words with the question."""
    words = set(question.lower().replace("?", "").split())
    return max(DOCS.values(), key=lambda doc: len(words & set(doc.lower().split())))


def prompt(question: str) -> str:
    return f"Context: {retrieve(question)}\nQuestion: {question}\nAnswer in a few words."


def answer_all(cases, model):
    """The application, batch-first: one model call for every question."""
    requests = [model.request(prompt(case["question"]), max_tokens=16) for case in cases]
    return [gen.text for gen in model.generate_many(requests)]


@pytest.mark.dataset("rag.jsonl", target=answer_all, target_batch=True)
@pytest.mark.exact("contains", normalize="all", min_pass_rate=0.3)
def test_rag_as_target(case, output):
    assert output.engine == "target"


@pytest.mark.dataset("rag.jsonl")
@pytest.mark.exact("contains", normalize="all", min_pass_rate=0.3)
def test_rag_in_the_test_body(case, model, evaluate):
    evaluate(model.generate(prompt(case["question"]), max_tokens=16).text)
