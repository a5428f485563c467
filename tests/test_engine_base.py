"""Unit tests for the engine interface's value types (pytest_aie.engines.base) and for
``parse_models`` (pytest_aie.settings)."""

from __future__ import annotations

import json
from typing import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_aie.engines.base import Capability, Engine, Generation, Request, Sampling, Timings
from pytest_aie.errors import EngineError, UsageError
from pytest_aie.settings import parse_models

# --------------------------------------------------------------------------- Sampling


def test_sampling_defaults_are_greedy():
    s = Sampling()
    assert (s.temperature, s.top_p, s.max_tokens, s.stop, s.seed, s.logprobs) == (
        0.0, 1.0, 64, (), 0, False)


@pytest.mark.parametrize("kwargs, words", [
    ({"temperature": -0.1}, ["temperature", "[0, 2]", "-0.1"]),
    ({"temperature": 2.5}, ["temperature", "2.5"]),
    ({"temperature": float("nan")}, ["temperature", "nan"]),
    ({"top_p": 0.0}, ["top_p", "(0, 1]", "0.0"]),
    ({"top_p": 1.01}, ["top_p", "1.01"]),
    ({"max_tokens": 0}, ["max_tokens", "at least 1", "0"]),
    ({"max_tokens": -5}, ["max_tokens", "-5"]),
])
def test_sampling_validation_messages(kwargs, words):
    with pytest.raises(ValueError) as info:
        Sampling(**kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"temperature": 2}, {"top_p": 1e-9},
                                    {"top_p": 1}, {"max_tokens": 1}, {"seed": None}])
def test_sampling_boundaries_are_accepted(kwargs):
    Sampling(**kwargs)


def test_sampling_stop_normalised_to_tuple():
    assert Sampling(stop="\n").stop == ("\n",)
    assert Sampling(stop=["a", "b"]).stop == ("a", "b")
    assert Sampling(stop=["a"]) == Sampling(stop=("a",))
    hash(Sampling(stop=["a"]))  # frozen and hashable


def test_sampling_from_dict_names_unknown_parameters():
    with pytest.raises(ValueError) as info:
        Sampling.from_dict({"temperature": 0.5, "top_k": 40, "beams": 2})
    msg = str(info.value)
    assert "'beams'" in msg and "'top_k'" in msg and "max_tokens" in msg
    assert Sampling.from_dict({"max_tokens": 3, "stop": ["x"]}) == Sampling(max_tokens=3, stop=("x",))


# --------------------------------------------------------------------------- Request

def test_request_needs_exactly_one_of_messages_or_prompt():
    with pytest.raises(ValueError, match="exactly one of messages= or prompt="):
        Request()
    with pytest.raises(ValueError, match="exactly one of"):
        Request(messages=({"role": "user", "content": "x"},), prompt="x")
    Request(prompt="")  # an empty prompt is still a prompt


@pytest.mark.parametrize("message", [{"role": "user"}, {"content": "x"}, {}])
def test_request_messages_need_role_and_content(message):
    with pytest.raises(ValueError, match="'role' and 'content'"):
        Request(messages=(message,))


def test_request_copies_messages():
    msgs = [{"role": "user", "content": "x"}]
    req = Request(messages=msgs)
    msgs[0]["content"] = "changed"
    msgs.append({"role": "user", "content": "more"})
    assert req.messages == ({"role": "user", "content": "x"},)
    assert isinstance(req.messages, tuple)


MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                 "content": st.text(max_size=20)})
SAMPLING = st.builds(
    Sampling,
    temperature=st.floats(0, 2),
    top_p=st.floats(0.01, 1),
    max_tokens=st.integers(1, 4096),
    stop=st.lists(st.text(min_size=1, max_size=4), max_size=3).map(tuple),
    seed=st.none() | st.integers(0, 2**31),
    logprobs=st.booleans(),
)
REQUEST = st.builds(
    Request,
    messages=st.none(),
    prompt=st.text(max_size=30),
    sampling=SAMPLING,
    adapter=st.none() | st.text(min_size=1, max_size=8),
    output_schema=st.none() | st.just({"type": "object", "required": ["a"]}),
    stream=st.booleans(),
) | st.builds(
    Request,
    messages=st.lists(MESSAGE, min_size=1, max_size=4).map(tuple),
    sampling=SAMPLING,
    adapter=st.none() | st.text(min_size=1, max_size=8),
)


@given(REQUEST)
def test_request_round_trips_through_dict_and_json(req):
    again = Request.from_dict(req.to_dict())
    assert again == req
    assert again.key() == req.key()
    through_json = Request.from_dict(json.loads(json.dumps(req.to_dict())))
    assert through_json == req and through_json.key() == req.key()


@given(REQUEST, REQUEST)
def test_request_key_equal_iff_requests_equal(a, b):
    assert (a.key() == b.key()) == (a == b)


def test_request_key_is_a_fixed_hash():
    # the key is a cache key across runs and machines: it must not change with hash seeds or
    # dict order; this value pins the serialisation (update it only on purpose)
    req = Request(messages=({"content": "hi", "role": "user"},), sampling=Sampling(stop=["\n"]))
    same = Request(messages=[{"role": "user", "content": "hi"}], sampling=Sampling(stop="\n"))
    assert req.key() == same.key()
    assert len(req.key()) == 64 and int(req.key(), 16) >= 0
    blob = json.dumps(req.to_dict(), sort_keys=True, separators=(",", ":"))
    import hashlib
    assert req.key() == hashlib.sha256(blob.encode()).hexdigest()


@pytest.mark.parametrize("change", [
    {"sampling": Sampling(temperature=1.0)}, {"sampling": Sampling(top_p=0.5)},
    {"sampling": Sampling(max_tokens=10)}, {"sampling": Sampling(stop=("x",))},
    {"sampling": Sampling(seed=7)}, {"sampling": Sampling(logprobs=True)},
    {"adapter": "a"}, {"output_schema": {"type": "string"}}, {"stream": True},
])
def test_request_key_changes_with_every_field(change):
    base = dict(prompt="p")
    assert Request(**base, **change).key() != Request(**base).key()


def test_request_from_dict_with_missing_optional_parts():
    req = Request.from_dict({"prompt": "x"})
    assert req == Request(prompt="x")
    req = Request.from_dict({"messages": [{"role": "user", "content": "x"}], "sampling": None})
    assert req.sampling == Sampling()


# --------------------------------------------------------------------------- Generation

def test_generation_round_trip():
    g = Generation(text="hi", prompt_tokens=3, completion_tokens=1, finish_reason="stop",
                   engine="hf", model="m", adapter="a",
                   timings=Timings(e2e_s=0.5, ttft_s=0.1, tpot_s=0.02, batch_size=8),
                   cached=False, error=None, token_logprobs=[-0.1, -2.0])
    again = Generation.from_dict(json.loads(json.dumps(g.to_dict())))
    assert again == g and isinstance(again.timings, Timings)


def test_generation_from_dict_without_timings():
    assert Generation.from_dict({"text": "x"}).timings == Timings()
    assert Generation.from_dict({"text": "x", "timings": None}).timings == Timings()


# --------------------------------------------------------------------------- Engine.check

class _Minimal(Engine):
    name = "minimal"
    capabilities = frozenset({Capability.PROMPT})

    def identity(self):
        return {"engine": self.name}

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        return [Generation(text="") for _ in requests]


@pytest.mark.parametrize("req, words", [
    (Request(prompt="x", adapter="lora"), ["adapter", "'lora'"]),
    (Request(prompt="x", output_schema={"type": "object"}), ["JSON schema"]),
    (Request(prompt="x", sampling=Sampling(logprobs=True)), ["log-probabilities"]),
    (Request(messages=({"role": "user", "content": "x"},)), ["chat messages"]),
])
def test_engine_check_refuses_what_it_cannot_do(req, words):
    with pytest.raises(EngineError) as info:
        _Minimal().check(req)
    msg = str(info.value)
    assert "'minimal'" in msg and "Fix:" in msg
    for word in words:
        assert word in msg


def test_engine_check_accepts_supported_requests():
    engine = _Minimal()
    engine.check(Request(prompt="x"))
    assert engine.supports(Capability.PROMPT) and not engine.supports(Capability.CHAT)
    with engine as e:
        assert e is engine


# --------------------------------------------------------------------------- parse_models

@pytest.mark.parametrize("raw, want", [
    ("", {}),
    ("base=hf:HuggingFaceTB/SmolLM2-135M",
     {"base": ("hf", "HuggingFaceTB/SmolLM2-135M")}),
    ("base=hf:org/a, judge=openai:gpt-4o-mini",
     {"base": ("hf", "org/a"), "judge": ("openai", "gpt-4o-mini")}),
    ("a=org/model", {"a": ("dflt", "org/model")}),  # no engine prefix: the default engine
    ("a=./models/x:v2", {"a": ("dflt", "./models/x:v2")}),  # a path with a colon
    ("a=/abs/path", {"a": ("dflt", "/abs/path")}),
    ("a=scripted:answers.jsonl\nb=hf:m\n\n", {"a": ("scripted", "answers.jsonl"), "b": ("hf", "m")}),
    (" a = hf : m ,, ", {"a": ("hf", "m")}),
    ("a=C:\\models\\x", {"a": ("dflt", "C:\\models\\x")}),  # a Windows drive, not an engine
    ("a=C:/models/x", {"a": ("dflt", "C:/models/x")}),
    ("a=hf:C:\\models\\x", {"a": ("hf", "C:\\models\\x")}),
])
def test_parse_models(raw, want):
    assert parse_models(raw, "dflt") == want


@pytest.mark.parametrize("raw", ["justamodel", "=hf:m", "a=", "a= ", "a=b=c,=x"])
def test_parse_models_bad_entries(raw):
    with pytest.raises(UsageError) as info:
        parse_models(raw, "hf")
    assert "NAME=[ENGINE:]MODEL" in str(info.value)
    assert "--aie-models" in str(info.value)
