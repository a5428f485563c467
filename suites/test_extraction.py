"""Structured output: the model must return JSON that validates against person.schema.json
(checked with the jsonschema package). Markdown code fences around the JSON are allowed."""

import pytest


@pytest.mark.dataset(
    "extraction.jsonl",
    prompt='Extract the person\'s name and age from the text as JSON like {"name": "...", "age": 0}. '
           "Text: {text}\nJSON:",
    max_tokens=32,
)
@pytest.mark.exact("json_schema", schema="person.schema.json")
def test_extract_person(case, output):
    assert case["text"]
