"""Unit tests for the scripted engine (pytest_aie.engines.scripted)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_aie.engines import create_engine
from pytest_aie.engines.base import Capability, Request, Sampling
from pytest_aie.engines.scripted import ScriptedEngine, prompt_text
from pytest_aie.errors import EngineError


def chat(text: str, **kwargs) -> Request:
    return Request(messages=({"role": "user", "content": text},), **kwargs)


def write_answers(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- sources

def test_mapping_answers_chat_and_raw_prompts():
    engine = ScriptedEngine({"2+2?": "4", "Capital of France?": "Paris"})
    gens = engine.generate([chat("2+2?"), Request(prompt="Capital of France?")])
    assert [g.text for g in gens] == ["4", "Paris"]
    assert all(g.finish_reason == "stop" and g.error is None for g in gens)
    assert all(g.engine == "scripted" and g.model == "mapping" for g in gens)
    assert gens[0].prompt_tokens == 1 and gens[0].completion_tokens == 1


def test_mapping_looks_up_the_last_user_message():
    engine = ScriptedEngine({"second": "B", "first": "A"})
    req = Request(messages=({"role": "system", "content": "sys"},
                            {"role": "user", "content": "first"},
                            {"role": "assistant", "content": "A"},
                            {"role": "user", "content": "second"}))
    assert engine.generate([req])[0].text == "B"


def test_prompt_text_without_user_message_uses_the_last_message():
    req = Request(messages=({"role": "system", "content": "only system"},))
    assert prompt_text(req) == "only system"


def test_mapping_keys_and_values_become_strings():
    assert ScriptedEngine({1: 2}).generate([Request(prompt="1")])[0].text == "2"


def test_unknown_prompt_gets_default():
    assert ScriptedEngine({}).generate([chat("?")])[0].text == ""
    g = ScriptedEngine({}, default="I don't know").generate([chat("?")])[0]
    assert g.text == "I don't know" and g.finish_reason == "stop" and g.error is None


def test_callable_receives_the_request():
    seen = []

    def answer(request: Request) -> str:
        seen.append(request)
        return prompt_text(request).upper()

    engine = ScriptedEngine(answer)
    req = chat("shout", sampling=Sampling(max_tokens=5))
    assert engine.generate([req])[0].text == "SHOUT"
    assert seen == [req]
    assert "answer" in engine.identity()["model"]


def test_jsonl_file(tmp_path):
    path = write_answers(tmp_path / "a.jsonl", [{"prompt": "2+2?", "answer": "4"},
                                                {"prompt": "n", "answer": 7}])
    engine = ScriptedEngine(path)
    assert [g.text for g in engine.generate([chat("2+2?"), chat("n")])] == ["4", "7"]
    assert engine.generate([chat("2+2?")])[0].model == path


def test_jsonl_file_through_create_engine(tmp_path):
    path = write_answers(tmp_path / "a.jsonl", [{"prompt": "hi", "answer": "hello"}])
    engine = create_engine("scripted", model=path, device="cpu")  # unknown options ignored
    assert isinstance(engine, ScriptedEngine)
    assert engine.generate([chat("hi")])[0].text == "hello"


def test_jsonl_blank_lines_and_unicode_separators(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"prompt": "p\u2028q", "answer": "a\x85b"}, {"prompt": "x", "answer": "y"}]
    path.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n\n  \n"
                    + json.dumps(rows[1]) + "\r\n", encoding="utf-8")
    engine = ScriptedEngine(str(path))
    assert engine.generate([Request(prompt="p\u2028q"), chat("x")])[0].text == "a\x85b"
    assert engine.generate([chat("x")])[0].text == "y"


@pytest.mark.parametrize("bad", ['{"prompt": "x"}', '{"answer": "x"}', "not json", "[1, 2]",
                                 '"just a string"', "3"])
def test_jsonl_bad_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "a.jsonl"
    path.write_text('{"prompt": "ok", "answer": "fine"}\n\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(EngineError) as info:
        ScriptedEngine(str(path))
    assert f"{path}:3:" in str(info.value)
    assert "Fix:" in str(info.value)


def test_missing_answers_file(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        ScriptedEngine(str(tmp_path / "nope.jsonl"))


def test_no_script_is_empty():
    engine = ScriptedEngine()
    assert engine.identity()["model"] == "empty"
    assert engine.generate([chat("x")])[0].text == ""


# --------------------------------------------------------------------------- strict

def test_strict_mode_errors_per_request():
    engine = ScriptedEngine({"known": "yes"}, strict=True)
    gens = engine.generate([chat("known"), chat("unknown prompt")])
    assert gens[0].text == "yes" and gens[0].error is None
    assert gens[1].error is not None and "'unknown prompt'" in gens[1].error
    assert gens[1].finish_reason == "error" and gens[1].text == ""


def test_default_none_is_an_error_too():
    g = ScriptedEngine({}, default=None).generate([chat("x")])[0]
    assert g.finish_reason == "error" and g.error


def test_callable_returning_none_is_an_error():
    g = ScriptedEngine(lambda r: None).generate([chat("x")])[0]
    assert g.finish_reason == "error" and g.error


# --------------------------------------------------------------------------- truncation

def test_max_tokens_truncates_words():
    engine = ScriptedEngine({"q": "one two three four five"})
    g = engine.generate([chat("q", sampling=Sampling(max_tokens=3))])[0]
    assert g.text == "one two three" and g.finish_reason == "length" and g.completion_tokens == 3


def test_exactly_max_tokens_is_a_stop():
    g = ScriptedEngine({"q": "one two"}).generate([chat("q", sampling=Sampling(max_tokens=2))])[0]
    assert g.text == "one two" and g.finish_reason == "stop"


def test_stop_string_cuts_before_it():
    engine = ScriptedEngine({"q": "Answer: 4\nExplanation: because"})
    g = engine.generate([chat("q", sampling=Sampling(stop="\n"))])[0]
    assert g.text == "Answer: 4" and g.finish_reason == "stop"


def test_earliest_of_several_stop_strings_wins():
    engine = ScriptedEngine({"q": "a b STOP2 c STOP1 d"})
    g = engine.generate([chat("q", sampling=Sampling(stop=("STOP1", "STOP2")))])[0]
    assert g.text == "a b " and g.finish_reason == "stop"


def test_stop_before_the_token_limit_is_a_stop():
    engine = ScriptedEngine({"q": "a b . c d e f"})
    g = engine.generate([chat("q", sampling=Sampling(stop=("."), max_tokens=4))])[0]
    assert g.text == "a b " and g.finish_reason == "stop"


def test_stop_after_the_token_limit_is_a_length():
    engine = ScriptedEngine({"q": "a b c d . e"})
    g = engine.generate([chat("q", sampling=Sampling(stop=("."), max_tokens=2))])[0]
    assert g.text == "a b" and g.finish_reason == "length"


def test_empty_stop_string_is_ignored():
    g = ScriptedEngine({"q": "a b"}).generate([chat("q", sampling=Sampling(stop=("",)))])[0]
    assert g.text == "a b"


@given(words=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), max_size=12),
       max_tokens=st.integers(1, 15))
def test_truncation_property(words, max_tokens):
    answer = " ".join(words)
    g = ScriptedEngine({"q": answer}).generate([chat("q", sampling=Sampling(max_tokens=max_tokens))])[0]
    assert g.completion_tokens == min(len(words), max_tokens)
    assert g.finish_reason == ("length" if len(words) > max_tokens else "stop")
    assert answer.startswith(g.text)


# --------------------------------------------------------------------------- batches, identity

def test_batches_and_timings_are_recorded():
    engine = ScriptedEngine({})
    engine.generate([chat(str(i)) for i in range(5)])
    gens = engine.generate([chat("a"), chat("b")])
    assert engine.calls == [5, 2]
    assert all(g.timings.batch_size == 2 for g in gens)
    assert engine.generate([]) == [] and engine.calls[-1] == 0


def test_adapter_is_passed_through():
    g = ScriptedEngine({"q": "x"}).generate([chat("q", adapter="lora-1")])[0]
    assert g.adapter == "lora-1"


def test_capabilities():
    engine = ScriptedEngine({})
    engine.check(chat("x", adapter="a", output_schema={"type": "object"}))
    engine.check(Request(prompt="x"))
    assert engine.supports(Capability.CHAT) and not engine.supports(Capability.LOGPROBS)
    with pytest.raises(EngineError, match="log-probabilities"):
        engine.check(chat("x", sampling=Sampling(logprobs=True)))


def test_identity_is_stable_and_tracks_the_answers(tmp_path):
    a = ScriptedEngine({"q": "1", "r": "2"})
    b = ScriptedEngine({"r": "2", "q": "1"})
    assert a.identity() == b.identity()
    assert a.identity() == a.identity()
    assert ScriptedEngine({"q": "other"}).identity() != a.identity()
    assert set(a.identity()) >= {"engine", "model", "revision"}
    assert a.identity()["engine"] == "scripted"


def test_identity_of_a_file_follows_its_content(tmp_path):
    path = tmp_path / "a.jsonl"
    write_answers(path, [{"prompt": "q", "answer": "1"}])
    first = ScriptedEngine(str(path)).identity()
    assert ScriptedEngine(str(path)).identity() == first
    write_answers(path, [{"prompt": "q", "answer": "2"}])
    assert ScriptedEngine(str(path)).identity() != first


@pytest.mark.parametrize("other", [{"default": "fallback"}, {"strict": True}])
def test_identity_tracks_default_and_strict(other):
    # they change the outputs, so they must change the cache identity
    assert ScriptedEngine({"q": "1"}, **other).identity() != ScriptedEngine({"q": "1"}).identity()


def test_identity_tells_callables_apart():
    one = ScriptedEngine(lambda r: "A")
    two = ScriptedEngine(lambda r: "B")
    assert one.identity() != two.identity()
    assert one.identity() == ScriptedEngine(one._fn).identity()


def _named_answer(request: Request) -> str:
    return "named"


def test_identity_of_a_function_is_stable_across_instances():
    assert ScriptedEngine(_named_answer).identity() == ScriptedEngine(_named_answer).identity()
    assert "_named_answer" in ScriptedEngine(_named_answer).identity()["model"]


def test_close_and_context_manager():
    with ScriptedEngine({"q": "x"}) as engine:
        assert engine.generate([chat("q")])[0].text == "x"


def test_identity_is_the_same_in_another_process(tmp_path):
    """The identity is a cache key across runs, so no hash randomisation may leak into it."""
    import subprocess
    import sys

    (tmp_path / "answers_mod.py").write_text(
        "def answer(request):\n"
        "    return 'yes' if request.prompt in {'a', 'b', 'c', 'd'} else 'no'\n")
    code = ("import json, answers_mod; from pytest_aie.engines.scripted import ScriptedEngine; "
            "print(json.dumps([ScriptedEngine(answers_mod.answer).identity(), "
            "ScriptedEngine({'q': 'x', 'r': 'y'}, default='d').identity()]))")
    outs = {subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, text=True,
                           capture_output=True, env={**__import__("os").environ,
                                                     "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2", "3")}
    assert len(outs) == 1
    identities = json.loads(outs.pop())
    assert identities[0]["model"] == "answer"
