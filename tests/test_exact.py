"""Unit tests for the exact scorers (pytest_aie.scorers.exact): pure logic, no model."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_aie.dataset import Case
from pytest_aie.errors import UsageError
from pytest_aie.scorers.base import Score
from pytest_aie.scorers.exact import KINDS, NORMALIZERS, ExactScorer, extract_number, normalize

ALL_OPTION_SETS = [combo for r in range(len(NORMALIZERS) + 1)
                   for combo in itertools.combinations(NORMALIZERS, r)]


def case(expected=None, **fields) -> Case:
    if expected is not None:
        fields["expected"] = expected
    return Case(id="c", fields=fields)


def score(kind: str, output, expected=None, **kwargs) -> Score:
    s = ExactScorer(kind, **kwargs).score(output, case(expected))
    assert s.reason, "every score has a reason"
    assert s.metric == f"exact.{kind}"
    return s


def passes(kind: str, output, expected=None, **kwargs) -> bool:
    s = score(kind, output, expected, **kwargs)
    assert s.measured, s.reason
    assert s.value == (1.0 if s.passed else 0.0)
    return bool(s.passed)


# --------------------------------------------------------------------------- normalize

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60) | st.lists(
    st.sampled_from(["a", "an", "the", "The", "A", "AN", " ", "\t", "\n", ".", ",", "!", "'",
                     "x", "y", "ß", "İ", "ﬀ", "t.he", "a.n", "-"]), max_size=20).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=TEXT, options=st.sampled_from(ALL_OPTION_SETS))
def test_normalize_is_idempotent_for_every_option_subset(text, options):
    once = normalize(text, options)
    assert normalize(once, options) == once


@given(text=TEXT)
def test_normalize_with_no_options_is_identity(text):
    assert normalize(text, ()) == text


@pytest.mark.parametrize("options, text, want", [
    (("case",), "Hello  World", "hello  world"),
    (("case",), "STRASSE", "strasse"),
    (("case",), "Straße", "strasse"),  # casefold, not lower
    (("whitespace",), "  a \t b\n\nc  ", "a b c"),
    (("punctuation",), "Hello, world!", "Hello world"),
    (("punctuation",), "it's 3.5", "its 35"),
    # punctuation alone still collapses the whitespace its removal leaves behind
    (("punctuation",), "Paris , France", "Paris France"),
    (("punctuation",), " a - b ", "a b"),
    (("punctuation",), "x\t.\ny", "x y"),
    # punctuation of any script, not only ASCII's
    (("punctuation",), "\u201cParis\u201d", "Paris"),
    (("punctuation",), "\u00bfQu\u00e9?", "Qu\u00e9"),
    (("punctuation",), "\u6771\u4eac\u3002", "\u6771\u4eac"),
    (("punctuation",), "a \u2014 b\u2026", "a b"),
    (("punctuation",), "\u00abx\u00bb", "x"),
    # symbols that are not punctuation stay (ASCII's $+<=>^`|~ go, as string.punctuation has them)
    (("punctuation",), "5 \u00b0C for \u20ac3 ($4+)", "5 \u00b0C for \u20ac3 4"),
    (("whitespace",), "a\u00a0\u2003b", "a b"),  # Unicode spaces
    (("case",), "  A  ", "  a  "),  # case alone leaves whitespace as it is
    (("articles",), "The cat and a dog", "cat and dog"),
    (("articles",), "theory another", "theory another"),  # whole words only
    (("articles",), "THE end", "end"),
    (NORMALIZERS, "  The Quick, brown FOX!  ", "quick brown fox"),
])
def test_normalize_options(options, text, want):
    assert normalize(text, options) == want


def test_normalize_default_is_all():
    assert normalize(" The  END. ") == "end"


@pytest.mark.parametrize("options", [o for o in ALL_OPTION_SETS if set(o) & {"whitespace", "punctuation", "articles"}])
def test_every_option_that_removes_text_collapses_whitespace(options):
    # removing punctuation or articles leaves gaps; each of them (and whitespace) closes them
    got = normalize("x ,  . y", options)
    assert "  " not in got and not got.startswith(" ") and not got.endswith(" ")


@pytest.mark.parametrize("options", [("case",), ()])
def test_options_that_remove_nothing_keep_whitespace(options):
    assert normalize(" x  y ", options) == " x  y "


def test_curly_quotes_in_output_match_plain_expected():
    assert passes("match", "\u201cParis.\u201d", "Paris", normalize="all")
    assert passes("contains", "It is \u00abParis\u00bb!", "paris", normalize="all")


# --------------------------------------------------------------------------- construction errors

def test_unknown_kind_names_valid_kinds():
    with pytest.raises(UsageError) as info:
        ExactScorer("equals")
    msg = str(info.value)
    assert "'equals'" in msg
    for kind in KINDS:
        assert kind in msg


def test_unknown_normalizer_names_valid_options():
    with pytest.raises(UsageError) as info:
        ExactScorer("match", normalize=["case", "stemming"])
    msg = str(info.value)
    assert "'stemming'" in msg
    for name in NORMALIZERS:
        assert name in msg


def test_unknown_normalizer_as_single_string():
    with pytest.raises(UsageError, match="'cases'"):
        ExactScorer("match", normalize="cases")


@pytest.mark.parametrize("kwargs", [{"pattern": "(unclosed"}, {"extract": "[a-"}])
def test_invalid_regex_is_usage_error(kwargs):
    kind = "regex" if "pattern" in kwargs else "match"
    with pytest.raises(UsageError, match="invalid regular expression"):
        ExactScorer(kind, **kwargs)


def test_invalid_per_case_pattern_is_unmeasured_naming_field_and_error():
    # one bad case must not stop the whole session after generation
    s = score("regex", "x", "(oops")
    assert not s.measured
    assert "'expected'" in s.reason and "invalid regular expression" in s.reason
    assert "'(oops'" in s.reason and "missing )" in s.reason


def test_invalid_per_case_pattern_in_custom_field():
    s = ExactScorer("regex", field="pattern").score("x", case(pattern="[z-a]"))
    assert not s.measured and "'pattern'" in s.reason


def test_one_invalid_per_case_pattern_leaves_the_others_scored():
    cases = [Case(id=str(i), fields={"expected": e}) for i, e in enumerate([r"\d+", "(", "b"])]
    got = ExactScorer("regex").score_batch(["42", "x", "a"], cases)
    assert [s.passed for s in got] == [True, None, False]


@pytest.mark.parametrize("value", [0, -1, "1", float("nan"), float("inf"), True])
def test_bad_regex_timeout_is_usage_error(value):
    with pytest.raises(UsageError, match="regex_timeout"):
        ExactScorer("regex", pattern="x", regex_timeout=value)


def test_regex_timeout_default_is_one_second():
    import inspect

    default = inspect.signature(ExactScorer).parameters["regex_timeout"].default
    assert default == 1.0 and ExactScorer("regex").regex_timeout == 1.0


CATASTROPHIC = (r"^(a|a)+$", "a" * 40 + "b")  # exponential backtracking in any engine


@pytest.mark.parametrize("kwargs, expected", [
    ({}, CATASTROPHIC[0]), ({"pattern": CATASTROPHIC[0]}, None),
])
def test_catastrophic_regex_times_out_as_unmeasured(kwargs, expected):
    import time

    started = time.perf_counter()
    s = ExactScorer("regex", regex_timeout=0.2, **kwargs).score(CATASTROPHIC[1], case(expected))
    assert time.perf_counter() - started < 2
    assert not s.measured and s.reason.startswith("regex timed out after 0.2s: '^(a|a)+$'")


def test_catastrophic_extract_pattern_times_out_as_unmeasured():
    scorer = ExactScorer("match", extract=CATASTROPHIC[0], regex_timeout=0.2)
    s = scorer.score(CATASTROPHIC[1], case("a"))
    assert not s.measured and "regex timed out after 0.2s" in s.reason


def test_nested_quantifier_from_the_issue_is_quick():
    # ^(a+)+$ on 26 "a"s and a "b" took 13 s with Python's re
    import time

    started = time.perf_counter()
    assert not passes("regex", "a" * 26 + "b", r"^(a+)+$")
    assert time.perf_counter() - started < 1


def test_normalize_spellings():
    assert ExactScorer("match", normalize=True).norm == NORMALIZERS
    assert ExactScorer("match", normalize="all").norm == NORMALIZERS
    assert ExactScorer("match", normalize=None).norm == ()
    assert ExactScorer("match", normalize=False).norm == ()
    assert ExactScorer("match", normalize="case").norm == ("case",)
    # canonical order whatever the order given
    assert ExactScorer("match", normalize=["whitespace", "case"]).norm == ("case", "whitespace")


# --------------------------------------------------------------------------- unmeasured

@pytest.mark.parametrize("kind", ["match", "contains", "any_of", "contains_all", "regex",
                                  "numeric"])
def test_missing_expected_is_unmeasured(kind):
    s = ExactScorer(kind).score("anything", Case(id="c", fields={"prompt": "p"}))
    assert not s.measured and s.value is None and s.passed is None
    assert "'expected'" in s.reason


def test_missing_custom_field_names_it():
    s = ExactScorer("match", field="answer").score("x", case("x"))
    assert not s.measured and "'answer'" in s.reason
    assert ExactScorer("match", field="answer").score("x", case(answer="x")).passed


@pytest.mark.parametrize("kind, kwargs", [(k, {"schema": {"type": "object"}} if k == "json_schema"
                                           else {}) for k in KINDS])
@pytest.mark.parametrize("output", [None, 42, ["a"], b"bytes"])
def test_non_string_output_is_unmeasured(kind, kwargs, output):
    s = ExactScorer(kind, **kwargs).score(output, case("x"))
    assert not s.measured
    assert type(output).__name__ in s.reason


@pytest.mark.parametrize("kind, needs", [("match", True), ("contains", True), ("any_of", True),
                                         ("numeric", True), ("json", False)])
def test_needs_expected(kind, needs):
    assert ExactScorer(kind).needs_expected is needs


def test_regex_needs_expected_only_without_pattern():
    assert ExactScorer("regex").needs_expected
    assert not ExactScorer("regex", pattern="x").needs_expected
    assert not ExactScorer("json_schema", schema={"type": "object"}).needs_expected


# --------------------------------------------------------------------------- match

def test_match_exact_by_default():
    assert passes("match", "Paris", "Paris")
    assert not passes("match", "paris", "Paris")
    assert not passes("match", "Paris.", "Paris")
    assert not passes("match", " Paris", "Paris")


def test_match_normalised():
    assert passes("match", "  the PARIS. ", "Paris", normalize="all")
    assert passes("match", "PARIS", "paris", normalize=["case"])
    assert not passes("match", "PARIS.", "paris", normalize=["case"])


def test_match_any_of_list():
    assert passes("match", "colour", ["color", "colour"])
    s = score("match", "hue", ["color", "colour"])
    assert s.passed is False and "'color'" in s.reason and "'hue'" in s.reason


def test_match_non_string_expected_is_compared_as_text():
    assert passes("match", "4", 4)


@given(st.text(max_size=30))
def test_match_accepts_its_own_output(text):
    assert passes("match", text, text)


# --------------------------------------------------------------------------- contains / any_of

def test_contains_single():
    assert passes("contains", "The capital is Paris.", "Paris")
    s = score("contains", "The capital is Lyon.", "Paris")
    assert s.passed is False and "'Paris'" in s.reason


def test_contains_all_needs_every_needle():
    assert passes("contains_all", "red green blue", ["red", "blue"])
    s = score("contains_all", "red green", ["red", "blue"])
    assert s.passed is False and s.reason == "output does not contain 'blue'"


# A list in expected means one thing for match, contains, any_of and numeric: alternatives, any one
# counts (the README's dataset table says so). Each row: an output that holds only the second
# alternative passes, and one that holds neither fails.
@pytest.mark.parametrize("kind, second_only, neither, expected", [
    ("match", "3", "4", ["three", "3"]),
    ("contains", "The answer is 3.", "The answer is 4.", ["three", "3"]),
    ("any_of", "The answer is 3.", "The answer is 4.", ["three", "3"]),
    ("numeric", "so 3", "so 4", ["30", "3"]),
])
def test_a_list_in_expected_means_any_alternative_counts(kind, second_only, neither, expected):
    assert passes(kind, second_only, expected)
    assert not passes(kind, neither, expected)


def test_contains_with_alternatives_passes_an_answer_with_one_of_them():
    # the bug: an answer with alternatives ("three" / "3") failed contains, which needed both
    s = score("contains", "There are 3 apples.", ["three", "3"])
    assert s.passed and s.reason == "output contains '3'"
    s = score("contains", "There are four apples.", ["three", "3"])
    assert s.passed is False and s.reason == "output contains none of ['three', '3']"
    # contains_all is the explicit way to ask for every string
    assert not passes("contains_all", "There are 3 apples.", ["three", "3"])


def test_contains_and_any_of_agree_everywhere():
    outputs = ["red", "blue", "red and blue", "green", ""]
    lists = [["red"], ["red", "blue"], ["blue", "green"], "red"]
    for output, expected in itertools.product(outputs, lists):
        a = ExactScorer("contains").score(output, case(expected))
        b = ExactScorer("any_of").score(output, case(expected))
        want = any(e in output for e in (expected if isinstance(expected, list) else [expected]))
        assert a.passed is b.passed is want, (output, expected)


def test_numeric_alternatives_reason_and_bad_alternative():
    s = score("numeric", "it is 5", [3, "4"])
    assert s.passed is False and s.reason == "expected one of 3, 4, got 5"
    s = score("numeric", "it is 5", [5, "five"])
    assert not s.measured and s.reason == "expected value 'five' is not a number"
    s = score("numeric", "it is 5", [])
    assert not s.measured and "empty list" in s.reason


def test_contains_normalised():
    assert not passes("contains", "PARIS", "paris")
    assert passes("contains", "It is PARIS!", "paris", normalize=["case"])


@pytest.mark.parametrize("kind", ["contains", "any_of", "contains_all", "match"])
@pytest.mark.parametrize("expected", [[], ".", ["?", "!"]])
def test_expected_with_nothing_to_find_is_unmeasured(kind, expected):
    # an empty needle is in every output: that would be a pass without evidence
    s = score(kind, "anything at all", expected, normalize="all")
    assert not s.measured and "empty" in s.reason


@pytest.mark.parametrize("kind", ["contains", "any_of", "contains_all"])
def test_empty_string_needle_is_unmeasured_without_normalisation(kind):
    s = score(kind, "anything", "")
    assert not s.measured and "empty" in s.reason


@pytest.mark.parametrize("kind", ["any_of", "contains"])
def test_alternatives_skip_options_empty_after_normalisation(kind):
    assert passes(kind, "it is blue", ["...", "blue"], normalize="all")
    assert not passes(kind, "it is red", ["...", "blue"], normalize="all")


def test_match_of_literally_empty_expected_still_compares():
    assert passes("match", "", "")
    assert not passes("match", "x", "")


def test_any_of_one_suffices():
    assert passes("any_of", "I think it is green", ["red", "green"])
    s = score("any_of", "purple", ["red", "green"])
    assert s.passed is False and "'red'" in s.reason and "'green'" in s.reason


def test_any_of_single_string_expected():
    assert passes("any_of", "so red", "red")


# --------------------------------------------------------------------------- regex

def test_regex_pattern_kwarg():
    assert passes("regex", "Date: 2024-03-01.", pattern=r"\d{4}-\d{2}-\d{2}")
    s = score("regex", "Date: March 1st", pattern=r"\d{4}-\d{2}-\d{2}")
    assert s.passed is False and r"\d{4}" in s.reason


def test_regex_per_case_expected_pattern():
    assert passes("regex", "order #1234", r"#\d+")
    assert not passes("regex", "order 1234", r"#\d+")


def test_regex_pattern_kwarg_wins_over_expected():
    assert passes("regex", "abc", "zzz", pattern="b")


@pytest.mark.parametrize("flags, text, ok", [
    ("", "HELLO", False), ("i", "HELLO", True),
    ("", "x\nfoo", False), ("m", "x\nfoo", True),
    ("", "a\nb", False), ("s", "a\nb", True),
])
def test_regex_flags(flags, text, ok):
    pattern = {"HELLO": "^hello$", "x\nfoo": "^foo$", "a\nb": "a.b"}[text]
    assert passes("regex", text, pattern=pattern, flags=flags) is ok
    # the flags also apply to patterns taken from each case
    assert passes("regex", text, pattern, flags=flags) is ok


# --------------------------------------------------------------------------- json

@pytest.mark.parametrize("output", [
    '{"a": 1}', '[1, 2]', '"str"', "3", "```json\n{\"a\": 1}\n```", "```\n[1]\n```",
    "  ```JSON\n{\"a\": [1, 2]}\n```  ",
])
def test_json_valid(output):
    assert passes("json", output)


@pytest.mark.parametrize("output", ["{a: 1}", "", "Sure! {\"a\": 1}", "{\"a\": 1", "```json\n{\n```"])
def test_json_invalid_names_the_problem(output):
    s = score("json", output)
    assert s.passed is False and "not valid JSON" in s.reason and "line" in s.reason


@pytest.mark.parametrize("output", ["```json\n" + " " * 200_000 + "x", "```\n" + "\n" * 200_000])
def test_json_fence_search_is_linear_in_long_whitespace(output):
    # a model that degenerates into whitespace must not stall scoring (was quadratic: ~20 s)
    import time

    started = time.perf_counter()
    assert not passes("json", output)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("output, want", [
    ("```json \n{\"a\": 1}\n```", {"a": 1}), ("```\n\n[1]\n\n```\n", [1]),
    ("```\n\"```\"\n```", "```"),
])
def test_json_fence_variants(output, want):
    assert passes("json", output, want if isinstance(want, (dict, list)) else None)


def test_json_fence_with_prose_language_is_not_a_fence():
    assert not passes("json", "```json please\n{}\n```")


def test_json_equality_with_dict_expected():
    assert passes("json", '{"b": 2, "a": 1}', {"a": 1, "b": 2})
    s = score("json", '{"a": 2}', {"a": 1})
    assert s.passed is False and "differs" in s.reason and s.details["parsed"] == {"a": 2}


def test_json_equality_with_list_expected():
    assert passes("json", "[1, 2]", [1, 2])
    assert not passes("json", "[2, 1]", [1, 2])


def test_json_string_expected_is_not_compared():
    assert passes("json", '{"a": 1}', "anything")


@settings(max_examples=50, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                        max_size=3),
                    max_leaves=10))
def test_json_round_trips_any_value(value):
    text = json.dumps(value)
    assert passes("json", text)
    assert passes("json", f"```json\n{text}\n```")
    if isinstance(value, dict):
        assert passes("json", text, value)


# --------------------------------------------------------------------------- json_schema

PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_json_schema_dict_pass():
    assert passes("json_schema", '{"name": "Ada", "age": 36}', schema=PERSON)


def test_json_schema_violation_names_the_path():
    s = score("json_schema", '{"name": "Ada", "age": 36, "tags": ["x", 5]}', schema=PERSON)
    assert s.passed is False
    assert "tags/1" in s.reason and "'string'" in s.reason
    s = score("json_schema", '{"name": "Ada", "age": -1}', schema=PERSON)
    assert s.passed is False and "at age" in s.reason


def test_json_schema_missing_property_is_at_root():
    s = score("json_schema", '{"name": "Ada"}', schema=PERSON)
    assert s.passed is False and "(root)" in s.reason and "'age'" in s.reason


def test_json_schema_invalid_json():
    s = score("json_schema", "name: Ada", schema=PERSON)
    assert s.passed is False and "not valid JSON" in s.reason


def test_json_schema_file_relative_to_base_dir(tmp_path):
    (tmp_path / "person.schema.json").write_text(json.dumps(PERSON))
    scorer = ExactScorer("json_schema", schema="person.schema.json", base_dir=tmp_path)
    assert scorer.score('{"name": "Ada", "age": 1}', case()).passed
    assert scorer.score('{"name": 1, "age": 1}', case()).passed is False


def test_json_schema_file_missing(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        ExactScorer("json_schema", schema="nope.json", base_dir=tmp_path)


def test_json_schema_file_invalid_json(tmp_path):
    (tmp_path / "s.json").write_text('{\n  "type": "object",\n  oops\n}')
    with pytest.raises(UsageError) as info:
        ExactScorer("json_schema", schema="s.json", base_dir=tmp_path)
    assert "s.json:3" in str(info.value)


def test_json_schema_file_not_a_schema(tmp_path):
    (tmp_path / "s.json").write_text('{"type": "objekt"}')
    with pytest.raises(UsageError, match="not a valid JSON Schema"):
        ExactScorer("json_schema", schema="s.json", base_dir=tmp_path)


def test_json_schema_requires_a_schema():
    with pytest.raises(UsageError, match="needs a schema"):
        ExactScorer("json_schema")


# --------------------------------------------------------------------------- numeric

@pytest.mark.parametrize("text, want", [
    ("42", 42.0),
    ("The answer is 42.", 42.0),
    ("first 3 then 7", 7.0),
    ("It costs $1,234,567.89 in total", 1234567.89),
    ("x = -3", -3.0),
    ("+2.5", 2.5),
    ("about .5 of it", 0.5),
    ("6.02e23 atoms", 6.02e23),
    ("between 5-10 days", 10.0),  # a hyphen after a digit is a range, not a minus sign
    ("on 2024-01-05", 5.0),
    ("no digits here", None),
    ("", None),
])
def test_extract_number(text, want):
    assert extract_number(text) == want


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_extract_number_reads_thousands_separators(n):
    assert extract_number(f"total: {n:,} units") == n
    assert extract_number(f"total: {n} units") == n


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_extract_number_reads_repr_of_floats(x):
    assert extract_number(f"result {x!r}") == pytest.approx(x, rel=1e-12, abs=0)


def test_numeric_pass_and_fail():
    assert passes("numeric", "So the result is 12.", "12")
    s = score("numeric", "So the result is 13.", 12)
    assert s.passed is False and "12" in s.reason and "13" in s.reason and s.details["got"] == 13


def test_numeric_expected_with_separators():
    assert passes("numeric", "1234", "1,234")


def test_numeric_tolerance():
    assert passes("numeric", "3.14", 3.14159, tolerance=0.01)
    assert not passes("numeric", "3.14", 3.14159, tolerance=0.001)
    assert not passes("numeric", "3.14", 3.14159)  # default is tight


def test_numeric_rel_tolerance():
    assert passes("numeric", "1050", 1000, rel_tolerance=0.05)
    assert not passes("numeric", "1060", 1000, rel_tolerance=0.05)


def test_numeric_no_number_fails():
    s = score("numeric", "I don't know", 3)
    assert s.passed is False and "no number" in s.reason


def test_numeric_non_numeric_expected_is_unmeasured():
    s = ExactScorer("numeric").score("3", case("three"))
    assert not s.measured and "'three'" in s.reason


# --------------------------------------------------------------------------- extract

def test_extract_with_group():
    kwargs = {"extract": r"Answer:\s*(\w+)"}
    assert passes("match", "Let me think... Answer: Paris", "Paris", **kwargs)
    assert not passes("match", "Answer: Lyon", "Paris", **kwargs)


def test_extract_without_group_uses_whole_match():
    assert passes("match", "blah <<Paris>> blah", "<<Paris>>", extract=r"<<\w+>>")


def test_extract_found_nothing_fails_with_reason():
    s = score("match", "no marker", "Paris", extract=r"Answer: (\w+)")
    assert s.passed is False and "extract pattern" in s.reason


def test_extract_feeds_numeric():
    assert passes("numeric", "Step 1: 5 apples. Final: 12. Checked in 3 steps.", 12,
                  extract=r"Final: ([\d.]+)")


@pytest.mark.parametrize("kind, expected, kwargs", [
    ("match", "None", {}), ("regex", None, {"pattern": "."}), ("contains", "x", {}),
])
def test_extract_group_that_did_not_take_part_finds_nothing(kind, expected, kwargs):
    # the optional group is None: that is "found nothing", never the text "None" or a crash
    s = score(kind, "answer: x", expected, extract=r"answer: (\d+)?", **kwargs)
    assert s.passed is False and "extract pattern" in s.reason


def test_extract_uses_flags():
    assert passes("match", "ANSWER: paris", "paris", extract=r"answer: (\w+)", flags="i")


# --------------------------------------------------------------------------- batch

def test_score_batch_scores_each_case():
    scorer = ExactScorer("match")
    cases = [Case(id=str(i), fields={"expected": str(i)}) for i in range(3)]
    got = scorer.score_batch(["0", "x", "2"], cases)
    assert [s.passed for s in got] == [True, False, True]
    assert all(s.reason for s in got)


def test_reason_is_bounded_for_long_output():
    s = score("match", "x" * 10_000, "y")
    assert s.passed is False and len(s.reason) < 400
    assert re.search(r"x{50}", s.reason)


# --------------------------------------------------------------------------- through pytest

def test_invalid_regex_in_one_case_leaves_it_unmeasured_and_the_run_goes_on(pytester):
    from scripted_suite import eval_test, read_records, write_scripted_suite

    cases = [{"id": "ok", "prompt": "a", "expected": r"^\d+$"},
             {"id": "bad", "prompt": "b", "expected": "(unclosed"},
             {"id": "slow", "prompt": "c", "expected": r"^(a|a)+$"}]
    answers = {"a": "42", "b": "x", "c": "a" * 40 + "b"}
    write_scripted_suite(pytester, cases, answers, eval_test('exact("regex", regex_timeout=0.2)'))
    result = pytester.runpytest()
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    records = {r["case_id"]: r for r in read_records(pytester)}
    assert set(records) == {"ok", "bad", "slow"}
    assert records["ok"]["passed"] is True
    for cid, why in (("bad", "invalid regular expression"), ("slow", "timed out after 0.2s")):
        assert records[cid]["passed"] is None
        assert records[cid].get("status", "unmeasured") == "unmeasured"
        assert why in json.dumps(records[cid]), records[cid]


# --------------------------------------------------------------------------- mutation survivors
# Gaps found by mutation testing (mutmut over pytest_aie/scorers/exact.py; see README,
# "Mutation testing"): each test below kills at least one mutant that survived the tests above.

def test_default_kind_is_match():
    scorer = ExactScorer()
    assert scorer.kind == "match" and scorer.metric == "exact.match"
    assert scorer.score("Paris", case("Paris")).passed
    assert scorer.score("Paris.", case("Paris")).passed is False


@pytest.mark.parametrize("kind, output, fields", [
    ("match", 42, {"expected": "x"}),           # output not text
    ("regex", "x", {"expected": "(oops"}),      # invalid per-case pattern
    ("match", "x", {}),                         # no expected field
    ("numeric", "3", {"expected": "three"}),    # expected not a number
    ("contains", "x", {"expected": "..."}),     # nothing to find
])
def test_unmeasured_scores_carry_their_metric(kind, output, fields):
    # the metric names the record's column in results and reports, measured or not
    s = ExactScorer(kind, normalize="all" if kind == "contains" else None).score(
        output, Case(id="c", fields=fields))
    assert not s.measured and s.metric == f"exact.{kind}"


def test_timed_out_regex_is_unmeasured_with_its_metric():
    s = ExactScorer("regex", regex_timeout=0.2).score(CATASTROPHIC[1], case(CATASTROPHIC[0]))
    assert not s.measured and s.metric == "exact.regex"


def test_contains_all_with_one_empty_needle_among_others_is_unmeasured():
    # contains_all needs every needle: one with nothing to find would make the check vacuous
    s = score("contains_all", "Paris is nice", ["Paris", ""])
    assert not s.measured and "expected '' is empty: it would be found in any output" == s.reason
    s = score("contains_all", "Paris is nice", ["Paris", "?"], normalize="all")
    assert not s.measured and s.reason.startswith("expected '?' is empty after normalisation "
                                                  "(case, whitespace, punctuation, articles)")


def test_contains_reason_names_the_expected_value_as_given():
    s = score("contains", "it is paris", "PARIS", normalize=["case"])
    assert s.passed and s.reason == "output contains 'PARIS'"
    s = score("contains_all", "paris and lyon", ["Paris", "Lyon"], normalize=["case"])
    assert s.passed and s.reason == "output contains all 2 expected strings"


@pytest.mark.parametrize("output, want", [
    (json.dumps({"a": 1, "b": [1, 2]}, indent=2), {"a": 1, "b": [1, 2]}),  # pretty, no fence
    (json.dumps([1, 2], indent=1), [1, 2]),
    ("```json\n[1, 2]```", [1, 2]),               # closing fence on the last line of JSON
    ("```\n{\"a\": 1}```", {"a": 1}),
])
def test_json_multiline_and_tight_fences(output, want):
    assert passes("json", output, want)


@pytest.mark.parametrize("text", [
    "```json\n{}",            # opening fence only
    "{}\n```",                # closing fence only
    "x\n[1]```",              # closing fence only, short first line
    "```.json\n{}\n```",      # not a language name
    "```{\n}\n```",
])
def test_strip_fence_needs_a_whole_fence_with_a_language_name(text):
    from pytest_aie.scorers.exact import _strip_fence

    assert _strip_fence(text) == text


def test_json_schema_reports_the_first_violation_by_path():
    # several violations: the first in path order is reported, whatever the schema's order
    schema = {"type": "object", "properties": {"b": {"type": "integer"},
                                               "a": {"type": "integer"}}}
    s = score("json_schema", '{"a": "x", "b": "y"}', schema=schema)
    assert s.passed is False and s.reason.startswith("schema violation at a: ")


def test_json_schema_file_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "person.schema.json").write_text(json.dumps(PERSON))
    monkeypatch.chdir(tmp_path)
    scorer = ExactScorer("json_schema", schema="person.schema.json")
    assert scorer.score('{"name": "Ada", "age": 1}', case()).passed


def test_json_schema_file_missing_names_the_path(tmp_path):
    with pytest.raises(UsageError) as info:
        ExactScorer("json_schema", schema="nope.json", base_dir=tmp_path)
    assert str(tmp_path / "nope.json") in str(info.value)


@pytest.mark.parametrize("make", [
    lambda tmp: ExactScorer("regex", pattern="x", regex_timeout=-1),
    lambda tmp: ExactScorer("regex", pattern="(x"),
    lambda tmp: ExactScorer("json_schema"),
    lambda tmp: ExactScorer("json_schema", schema="nope.json", base_dir=tmp),
    lambda tmp: ExactScorer("json_schema", schema="bad.json", base_dir=tmp),
    lambda tmp: ExactScorer("json_schema", schema="notschema.json", base_dir=tmp),
])
def test_every_usage_error_has_a_problem_and_a_fix(make, tmp_path):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "notschema.json").write_text('{"type": "objekt"}')
    with pytest.raises(UsageError) as info:
        make(tmp_path)
    assert info.value.problem and info.value.problem != "None"
    assert info.value.fix and ". Fix: " in str(info.value)
    assert "regex_timeout" in str(info.value) or "schema" in str(info.value) \
        or "regular expression" in str(info.value)


def test_numeric_pass_records_the_number_read():
    s = score("numeric", "about 3.14", 3.14159, tolerance=0.01)
    assert s.passed and s.details["got"] == 3.14
