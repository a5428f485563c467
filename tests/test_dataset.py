"""Unit tests for dataset loading and request building (pytest_aie.dataset)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_aie.dataset import Case, build_request, load_cases, template_fields
from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import DatasetError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(tmp_path: Path, rows: list, name: str = "d.jsonl") -> Path:
    return write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in rows))


def one_error(path: Path, **kwargs) -> str:
    """Loading fails with exactly one DatasetError; its message."""
    with pytest.raises(DatasetError) as info:
        load_cases(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "Fix:" in msg
    return msg


# --------------------------------------------------------------------------- formats

def test_jsonl_loads_fields_and_source(tmp_path):
    path = write(tmp_path, "d.jsonl",
                 '{"id": "a", "prompt": "2+2?", "expected": "4", "level": 1}\n\n'
                 '{"id": "b", "input": "3+3?", "expected": ["6", "six"]}\n')
    cases = load_cases(path)
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0].prompt == "2+2?" and cases[0].expected == "4" and cases[0]["level"] == 1
    assert cases[1].prompt == "3+3?"  # input means prompt
    assert cases[1].expected == ["6", "six"]
    assert cases[0].source == f"{path}:1" and cases[1].source == f"{path}:3"
    assert cases[0].get("missing", "dflt") == "dflt"


def test_ndjson_suffix(tmp_path):
    assert load_cases(jsonl(tmp_path, [{"prompt": "x"}], "d.ndjson"))[0].prompt == "x"


def test_jsonl_crlf_line_endings(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    assert [c.prompt for c in load_cases(path)] == ["a", "b"]


def test_jsonl_with_unicode_line_separators_inside_strings(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028, U+0085 and form feeds raw: one case per line
    rows = [{"prompt": "a\u2028b"}, {"prompt": "c\x85d\x0ce"}, {"prompt": "f"}]
    path = write(tmp_path, "d.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in rows))
    cases = load_cases(path)
    assert [c.prompt for c in cases] == [r["prompt"] for r in rows]
    assert cases[2].source.endswith(":3")


def test_csv(tmp_path):
    path = write(tmp_path, "d.csv", 'id,prompt,expected,tags\n'
                                    'q1,"Capital of France, please",Paris,"geo, easy"\n'
                                    'q2,2+2?,4,\n')
    cases = load_cases(path)
    assert [c.id for c in cases] == ["q1", "q2"]
    assert cases[0].prompt == "Capital of France, please"
    assert cases[0].tags == ("geo", "easy")
    assert cases[1].tags == ()
    assert cases[0].source.endswith(":2") and cases[1].source.endswith(":3")


def test_csv_multiline_cell_keeps_its_newline(tmp_path):
    path = write(tmp_path, "d.csv", 'id,prompt\na,"line one\nline two"\nb,next\n')
    cases = load_cases(path)
    assert cases[0].prompt == "line one\nline two"
    assert cases[1].prompt == "next"


def test_csv_with_byte_order_mark(tmp_path):
    # spreadsheet programs save "CSV UTF-8" with a BOM; the first header must still be "id"
    path = tmp_path / "d.csv"
    path.write_bytes("id,prompt\nq1,héllo\n".encode("utf-8-sig"))
    cases = load_cases(path, require=("prompt",))
    assert cases[0].id == "q1" and cases[0].prompt == "héllo"


def test_jsonl_with_byte_order_mark(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes('{"id": "a", "prompt": "x"}\n'.encode("utf-8-sig"))
    assert load_cases(path)[0].id == "a"


def test_yaml_list(tmp_path):
    path = write(tmp_path, "d.yaml", "- id: a\n  prompt: hi\n  expected: 1\n"
                                     "- id: b\n  prompt: ho\n")
    cases = load_cases(path)
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0].expected == 1
    assert cases[0].source.endswith(":1") and cases[1].source.endswith(":4")


def test_yaml_cases_mapping(tmp_path):
    path = write(tmp_path, "d.yml", "description: demo\ncases:\n  - prompt: hi\n"
                                    "    tags: [x, y]\n  - prompt: ho\n")
    cases = load_cases(path)
    assert [c.prompt for c in cases] == ["hi", "ho"]
    assert cases[0].tags == ("x", "y")
    assert cases[0].id == "line-3" and cases[1].id == "line-5"


def test_yaml_line_numbers_with_nested_lists(tmp_path):
    # nested block lists at the item's indentation must not be taken for cases
    path = write(tmp_path, "d.yaml", "- id: a\n  prompt: hi\n  tags:\n  - x\n  - y\n"
                                     "- id: b\n  prompt: ho\n")
    cases = load_cases(path)
    assert cases[0].tags == ("x", "y")
    assert cases[1].source.endswith(":6")


def test_yaml_flow_style_has_line_numbers(tmp_path):
    path = write(tmp_path, "d.yaml", "[{prompt: a},\n {prompt: b}]\n")
    cases = load_cases(path)
    assert [c.id for c in cases] == ["line-1", "line-2"]


def test_unsupported_suffix(tmp_path):
    msg = one_error(write(tmp_path, "d.txt", "hello"))
    assert "'.txt'" in msg and ".jsonl" in msg


def test_missing_file(tmp_path):
    msg = one_error(tmp_path / "nope.jsonl")
    assert "not found" in msg


# --------------------------------------------------------------------------- ids and tags

def test_default_ids_are_line_numbers(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"}\n')
    assert [c.id for c in load_cases(path)] == ["line-1", "line-3"]


@pytest.mark.parametrize("raw, want", [
    ("simple", "simple"), ("with space", "with-space"), ("a/b\\c", "a-b-c"),
    ("  padded  ", "padded"), ("keep_.:+-chars", "keep_.:+-chars"), (17, "17"),
    ("x[1]", "x-1"),
])
def test_ids_are_sanitized(tmp_path, raw, want):
    assert load_cases(jsonl(tmp_path, [{"id": raw, "prompt": "p"}]))[0].id == want


@pytest.mark.parametrize("raw", ["", None, "!!!", " / ", "::", "\u202e\u200b"])
def test_unusable_ids_fall_back_to_line_number(tmp_path, raw):
    path = jsonl(tmp_path, [{"prompt": "x"}, {"id": raw, "prompt": "p"}])
    assert load_cases(path)[1].id == "line-2"


def test_non_ascii_ids_do_not_collide(tmp_path):
    path = jsonl(tmp_path, [{"id": "日本", "prompt": "p"}, {"id": "中国", "prompt": "q"}])
    assert len({c.id for c in load_cases(path)}) == 2


@pytest.mark.parametrize("raw, want", [
    ("q-париж", "q-париж"), ("東京", "東京"), ("café au lait", "café-au-lait"),
    ("हिन्दी", "हिन्दी"),  # combining vowel signs are part of the word
    ("e\u0301", "\u00e9"),  # one spelling (NFC) for what looks the same
    ("Ελλάδα/Αθήνα", "Ελλάδα-Αθήνα"), ("x²", "x²"),
])
def test_unicode_letters_are_kept_in_ids(tmp_path, raw, want):
    assert load_cases(jsonl(tmp_path, [{"id": raw, "prompt": "p"}]))[0].id == want


def test_cyrillic_ids_do_not_collide(tmp_path):
    # both used to become "q": a false duplicate-id error
    cases = load_cases(jsonl(tmp_path, [{"id": "q-париж", "prompt": "p"},
                                        {"id": "q-москва", "prompt": "q"}]))
    assert [c.id for c in cases] == ["q-париж", "q-москва"]


@pytest.mark.parametrize("raw, want", [
    ("a::b", "a-b"), ("suite::case", "suite-case"), ("a:b", "a:b"), ("tab\there", "tab-here"),
    ("new\nline", "new-line"), ("bell\x07", "bell"), ("rtl\u202eevil", "rtl-evil"),
    ("zero\u200bwidth", "zero-width"), ("nb\u00a0sp", "nb-sp"), ("x[1]", "x-1"),
])
def test_characters_that_break_node_ids_or_terminals_are_replaced(tmp_path, raw, want):
    assert load_cases(jsonl(tmp_path, [{"id": raw, "prompt": "p"}]))[0].id == want


def _safe_id(case_id: str) -> bool:
    import unicodedata

    return (case_id == unicodedata.normalize("NFC", case_id) and "::" not in case_id
            and not case_id.startswith("-") and not case_id.endswith("-")
            and all(c in "_.:+-" or unicodedata.category(c)[0] in "LMN" for c in case_id))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(max_size=20))
def test_any_id_becomes_a_nonempty_safe_id(tmp_path, raw):
    case = load_cases(jsonl(tmp_path, [{"id": raw, "prompt": "p"}]))[0]
    assert case.id and _safe_id(case.id), case.id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=20))
def test_ids_of_letters_and_digits_are_kept(tmp_path, raw):
    import unicodedata

    case = load_cases(jsonl(tmp_path, [{"id": raw, "prompt": "p"}]))[0]
    assert case.id == unicodedata.normalize("NFC", raw)


@pytest.mark.parametrize("tags, want", [
    (["a", "b"], ("a", "b")), ("a, b ,,c", ("a", "b", "c")), ("", ()), (None, ()),
    ([1, "x"], ("1", "x")),
])
def test_tags(tmp_path, tags, want):
    assert load_cases(jsonl(tmp_path, [{"prompt": "p", "tags": tags}]))[0].tags == want


def test_bad_tags(tmp_path):
    msg = one_error(jsonl(tmp_path, [{"prompt": "p"}, {"prompt": "q", "tags": 5}]))
    assert ":2:" in msg and "tags" in msg


# --------------------------------------------------------------------------- bad data

def test_missing_required_field_names_field_and_line(tmp_path):
    path = jsonl(tmp_path, [{"prompt": "a", "expected": 1}, {"prompt": "b"}])
    msg = one_error(path, require=("prompt", "expected"))
    assert f"{path}:2:" in msg and "expected" in msg


def test_missing_prompt_mentions_alternatives(tmp_path):
    msg = one_error(jsonl(tmp_path, [{"question": "a"}]), require=("prompt",))
    assert ":1:" in msg and "prompt (or input/messages)" in msg


@pytest.mark.parametrize("row", [{"input": "hi"}, {"messages": [{"role": "user", "content": "hi"}]}])
def test_input_or_messages_satisfy_required_prompt(tmp_path, row):
    # the plugin requires "prompt" when the marker has no template
    cases = load_cases(jsonl(tmp_path, [row]), require=("prompt",))
    assert len(cases) == 1


def test_template_fields_required(tmp_path):
    path = jsonl(tmp_path, [{"question": "q", "ctx": "c"}, {"question": "q2"}])
    msg = one_error(path, require=template_fields("{ctx}\nQ: {question}"))
    assert ":2:" in msg and "ctx" in msg


def test_invalid_json_line_number(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"}\n{"prompt": oops}\n')
    msg = one_error(path)
    assert f"{path}:4:" in msg and "invalid JSON" in msg


def test_invalid_json_after_unicode_separators_has_right_line(tmp_path):
    path = write(tmp_path, "d.jsonl", json.dumps({"prompt": "a\u2028b"}, ensure_ascii=False)
                 + "\n{bad\n")
    assert f"{path}:2:" in one_error(path)


@pytest.mark.parametrize("name, text", [
    ("d.jsonl", ""), ("d.jsonl", "\n\n  \n"), ("d.csv", ""), ("d.csv", "id,prompt\n"),
    ("d.yaml", ""), ("d.yaml", "cases: []\n"), ("d.yaml", "# only a comment\n"),
])
def test_empty_file(tmp_path, name, text):
    assert "empty" in one_error(write(tmp_path, name, text))


def test_duplicate_ids_name_both_lines(tmp_path):
    path = jsonl(tmp_path, [{"id": "a", "prompt": "1"}, {"id": "b", "prompt": "2"},
                            {"id": "a", "prompt": "3"}])
    msg = one_error(path)
    assert f"{path}:3:" in msg and "line 1" in msg and "'a'" in msg


def test_duplicate_ids_after_sanitizing(tmp_path):
    msg = one_error(jsonl(tmp_path, [{"id": "a b", "prompt": "1"}, {"id": "a/b", "prompt": "2"}]))
    assert ":2:" in msg and "line 1" in msg and "'a-b'" in msg


def test_duplicate_ids_in_yaml_name_both_lines(tmp_path):
    path = write(tmp_path, "d.yaml", "- id: a\n  prompt: x\n  tags:\n  - t\n"
                                     "- id: a\n  prompt: y\n")
    msg = one_error(path)
    assert f"{path}:5:" in msg and "line 1" in msg


def test_csv_extra_cells(tmp_path):
    path = write(tmp_path, "d.csv", "id,prompt\na,ok\nb,Paris, France\n")
    msg = one_error(path)
    assert f"{path}:3:" in msg and "more cells" in msg


def test_csv_missing_cells(tmp_path):
    # csv.DictReader fills missing trailing cells with None, which became the text "None"
    path = write(tmp_path, "d.csv", "id,prompt,expected\na,ok,x\nb,no answer\nc,fine,y\n")
    msg = one_error(path)
    assert f"{path}:3:" in msg and "fewer cells" in msg and "expected" in msg
    assert "as many cells as the header" in msg


def test_csv_missing_cells_after_a_multiline_cell(tmp_path):
    path = write(tmp_path, "d.csv", 'id,prompt,expected\na,"two\nlines",x\nb\n')
    assert f"{path}:4:" in one_error(path)


def test_csv_header_with_a_column_twice(tmp_path):
    # DictReader keeps only the last of two same-named cells: a silent loss
    path = write(tmp_path, "d.csv", "id,prompt,prompt\na,first,second\n")
    msg = one_error(path)
    assert f"{path}:1:" in msg and "'prompt'" in msg


@pytest.mark.parametrize("name, text", [
    ("d.jsonl", '{"prompt": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
    ("d.yaml", "- prompt: x\n  deep: " + "[" * 100_000 + "]" * 100_000 + "\n"),
])
def test_deeply_nested_case_is_one_error(tmp_path, name, text):
    assert "nested too deeply" in one_error(write(tmp_path, name, text))


def test_csv_empty_trailing_cell_is_not_missing(tmp_path):
    path = write(tmp_path, "d.csv", "id,prompt,expected\na,ok,\n")
    assert load_cases(path)[0].expected == ""


# --------------------------------------------------------------------------- encoding

def test_non_utf8_file_names_file_line_and_byte(tmp_path):
    raw = b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n'  # Latin-1
    path = tmp_path / "d.jsonl"
    path.write_bytes(raw)
    msg = one_error(path)
    assert f"{path}:2:" in msg and "UTF-8" in msg
    assert f"byte offset {raw.index(0xe9)}" in msg and "0xe9" in msg
    assert "save the file as UTF-8" in msg


def test_non_utf8_offset_counts_the_byte_order_mark(tmp_path):
    raw = "\ufeff".encode() + b'{"prompt": "\x80"}\n'
    path = tmp_path / "d.jsonl"
    path.write_bytes(raw)
    assert f"byte offset {raw.index(0x80)}" in one_error(path)


@pytest.mark.parametrize("name", ["d.csv", "d.yaml"])
def test_non_utf8_csv_and_yaml(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"- prompt: ok\n" if name == "d.yaml" else b"id,prompt\na,ok\n")
    path.write_bytes(path.read_bytes() + b"\xff\xfe\n")
    msg = one_error(path)
    assert f"{path}:" in msg and "UTF-8" in msg


# --------------------------------------------------------------------------- YAML aliases

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
cases:
  - {prompt: "{x}", expected: *g}
"""


def test_yaml_alias_bomb_is_refused(tmp_path):
    import time

    path = write(tmp_path, "d.yaml", BILLION_LAUGHS)
    assert path.stat().st_size < 500
    started = time.perf_counter()
    msg = one_error(path)
    assert time.perf_counter() - started < 2
    assert "YAML aliases expand to more than" in msg and "nodes" in msg


def test_yaml_alias_bomb_of_long_strings_is_refused(tmp_path):
    # few nodes, but each alias repeats a long text
    text = "big: &big " + "x" * 200_000 + "\ncases:\n" + "".join(
        f"  - {{id: c{i}, prompt: *big}}\n" for i in range(200))
    msg = one_error(write(tmp_path, "d.yaml", text))
    assert "YAML aliases expand to more than" in msg and "characters" in msg


def test_yaml_self_referencing_alias_is_refused(tmp_path):
    msg = one_error(write(tmp_path, "d.yaml", "- &me {prompt: hi, again: *me}\n"))
    assert "refers to itself" in msg and ":1:" in msg


def test_yaml_with_a_few_anchors_still_loads(tmp_path):
    path = write(tmp_path, "d.yaml",
                 "defaults: &d {system: be brief, tags: [geo]}\n"
                 "cases:\n"
                 "  - {<<: *d, id: a, prompt: hi}\n"
                 "  - {<<: *d, id: b, prompt: ho, also: *d}\n")
    cases = load_cases(path)
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0]["system"] == "be brief" and cases[1].tags == ("geo",)
    assert cases[1]["also"] == {"system": "be brief", "tags": ["geo"]}
    assert cases[1].source.endswith(":4")


def test_yaml_shared_context_for_many_cases_loads(tmp_path):
    # the ordinary use of aliases: one long context shared by many cases
    text = "ctx: &ctx " + "y" * 2_000 + "\ncases:\n" + "".join(
        f"  - {{id: c{i}, prompt: *ctx}}\n" for i in range(500))
    assert len(load_cases(write(tmp_path, "d.yaml", text))) == 500


def test_yaml_syntax_error_line(tmp_path):
    path = write(tmp_path, "d.yaml", "- prompt: a\n- prompt: b\n  expected: [1, 2\n- prompt: c\n")
    msg = one_error(path)
    assert "invalid YAML" in msg
    assert re.search(re.escape(str(path)) + r":[34]:", msg), msg


def test_yaml_not_a_list(tmp_path):
    assert "list of cases" in one_error(write(tmp_path, "d.yaml", "prompt: hi\n"))


@pytest.mark.parametrize("row, kind", [([1, 2], "list"), ("text", "str"), (3, "int"), (None, "NoneType")])
def test_non_object_row(tmp_path, row, kind):
    path = write(tmp_path, "d.jsonl", '{"prompt": "ok"}\n' + json.dumps(row) + "\n")
    msg = one_error(path)
    assert f"{path}:2:" in msg and kind in msg


def test_non_object_row_in_yaml(tmp_path):
    msg = one_error(write(tmp_path, "d.yaml", "- prompt: ok\n- just text\n"))
    assert ":2:" in msg and "str" in msg


@pytest.mark.parametrize("messages", [
    "hello", [{"role": "user"}], [{"content": "x"}], ["hi"], {"role": "user", "content": "x"},
])
def test_bad_messages(tmp_path, messages):
    path = jsonl(tmp_path, [{"prompt": "fine"}, {"messages": messages}])
    msg = one_error(path)
    assert f"{path}:2:" in msg and "messages" in msg


# --------------------------------------------------------------------------- build_request

def mk(**fields) -> Case:
    return Case(id="c", fields=fields, source="d.jsonl:1")


def test_build_request_chat_default():
    req = build_request(mk(prompt="2+2?"))
    assert isinstance(req, Request)
    assert req.prompt is None
    assert req.messages == ({"role": "user", "content": "2+2?"},)


def test_build_request_system_message():
    req = build_request(mk(prompt="hi"), system="Be terse.")
    assert req.messages == ({"role": "system", "content": "Be terse."},
                            {"role": "user", "content": "hi"})


def test_build_request_raw_prompt():
    req = build_request(mk(input="raw text"), chat=False, system="ignored for raw")
    assert req.prompt == "raw text" and req.messages is None


def test_build_request_template():
    case = mk(question="Capital of France?", context="Europe", prompt="unused")
    req = build_request(case, prompt='{context}\nQ: {question} Answer as {"a": 1}')
    assert req.messages[0]["content"] == 'Europe\nQ: Capital of France? Answer as {"a": 1}'
    raw = build_request(case, prompt="Q: {question}", chat=False)
    assert raw.prompt == "Q: Capital of France?"


def test_build_request_template_renders_non_strings():
    assert build_request(mk(n=3), prompt="n={n}").messages[0]["content"] == "n=3"


def test_build_request_messages_case():
    msgs = [{"role": "system", "content": "own"}, {"role": "user", "content": "hi"}]
    case = mk(messages=msgs)
    req = build_request(case, system="harness system")
    assert req.messages == tuple(msgs)  # the case's own system message wins
    req.messages[0]["content"] = "changed"
    assert case.fields["messages"][0]["content"] == "own"  # copied, not shared


def test_build_request_messages_get_system_when_they_have_none():
    req = build_request(mk(messages=[{"role": "user", "content": "hi"}]), system="S")
    assert [m["role"] for m in req.messages] == ["system", "user"]


def test_build_request_passes_sampling_and_adapter():
    sampling = Sampling(temperature=0.7, max_tokens=5, seed=3)
    req = build_request(mk(prompt="x"), sampling=sampling, adapter="lora1")
    assert req.sampling == sampling and req.adapter == "lora1"


def test_loaded_cases_build_requests(tmp_path):
    path = write(tmp_path, "d.yaml", "- prompt: a\n- input: b\n"
                                     "- messages:\n  - {role: user, content: c}\n")
    reqs = [build_request(c) for c in load_cases(path, require=("prompt",))]
    assert [r.messages[-1]["content"] for r in reqs] == ["a", "b", "c"]


def test_template_fields():
    assert template_fields('{a} and {b_2} {3x} {"json": 1}') == ("a", "b_2")
    assert template_fields(None) == ()


# --------------------------------------------------------------------------- through pytest

def _run_bad_dataset(pytester: pytest.Pytester, name: str, data: bytes) -> tuple[Any, str]:
    import textwrap

    from scripted_suite import INI, write_answers

    (pytester.path / name).write_bytes(data)
    write_answers(pytester, {"hi": "ok"})
    pytester.makeini(textwrap.dedent(INI))
    pytester.makepyfile(test_suite=f"""
        import pytest

        @pytest.mark.dataset({name!r})
        @pytest.mark.exact()
        def test_eval(case, output):
            pass
    """)
    result = pytester.runpytest()
    return result, str(pytester.path / name)


@pytest.mark.parametrize("name, data, where, problem", [
    ("cases.csv", b"id,prompt,expected\na,hi,ok\nb,hi\n", ":3:", "fewer cells"),
    ("cases.jsonl", b'{"prompt": "hi", "expected": "ok"}\n{"prompt": "h\xe9"}\n', ":2:",
     "not UTF-8"),
    ("cases.yaml", BILLION_LAUGHS.encode(), "", "YAML aliases expand"),
])
def test_bad_dataset_stops_collection_with_one_line_and_exit_10(pytester, name, data, where,
                                                                 problem):
    from pytest_aie.errors import EXIT_HARNESS_ERROR

    result, path = _run_bad_dataset(pytester, name, data)
    assert result.ret == EXIT_HARNESS_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out
    lines = {line.strip() for line in out.splitlines() if "pytest-aie:" in line and problem in line}
    assert len(lines) == 1, out  # one message (it may be echoed, but it is one line)
    line = lines.pop()
    assert f"{path}{where}" in line and "Fix:" in line


def test_unicode_case_ids_run_as_distinct_tests(pytester):
    from scripted_suite import eval_test, read_records, write_scripted_suite

    cases = [{"id": "q-париж", "prompt": "a", "expected": "x"},
             {"id": "q-москва", "prompt": "b", "expected": "y"},
             {"id": "東京", "prompt": "c", "expected": "z"}]
    write_scripted_suite(pytester, cases, {"a": "x", "b": "y", "c": "no"}, eval_test("exact()"))
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    assert [r["case_id"] for r in read_records(pytester)] == ["q-париж", "q-москва", "東京"]
