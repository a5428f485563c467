"""JSON-schema constrained decoding in the hf engine (xgrammar), on the embedded
SmolLM2-135M-Instruct on CPU.

The fast tests need only the tokenizer (grammar compilation, masking, the missing-package
error); the slow ones generate for real: a judge-like schema over 20 varied judgments in one
batched call, enum schemas, a batch that mixes schema rows and plain rows, sampled rows, a
``maxLength`` that ends a rambling string, and truncation by ``max_tokens``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Iterator

import jsonschema
import pytest

from pytest_aie.engines.base import Capability, Request, Sampling
from pytest_aie.errors import EngineError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

JUDGE = {"type": "object",
         "properties": {"rationale": {"type": "string", "maxLength": 200},
                        "score": {"type": "integer", "minimum": 1, "maximum": 5}},
         "required": ["rationale", "score"], "additionalProperties": False}
VERDICT = {"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}},
           "required": ["verdict"], "additionalProperties": False}
WINNER = {"type": "object", "properties": {"winner": {"enum": ["A", "B", "tie"]}},
          "required": ["winner"], "additionalProperties": False}

JUDGE_RUBRIC = ("You grade answers. Rate the answer to the question from 1 (wrong) to 5 (correct "
                "and complete). Reply with JSON: a one-sentence rationale, then the score. "
                'Example: {{"rationale": "The answer is correct.", "score": 5}}\n\n'
                "Question: {q}\nAnswer: {a}")
PAIRS = [
    ("What is the capital of France?", "Paris."), ("What is 2 + 2?", "5"),
    ("Name a primary color.", "Red."), ("Who wrote Hamlet?", "Charles Dickens."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    ("Translate 'hello' into Spanish.", "Hola."), ("How many legs does a spider have?", "Six."),
    ("What gas do plants absorb?", "Carbon dioxide."), ("What is the largest planet?", "Jupiter."),
    ("Give a synonym of 'happy'.", "Sad."), ("What is the square root of 81?", "9"),
    ("Which ocean is the largest?", "The Pacific Ocean."),
    ("What language is spoken in Brazil?", "Spanish."),
    ("Summarize: The cat sat on the mat all day.", "A cat stayed on a mat."),
    ("What is H2O?", "Water."),
    ("Write a haiku about rain.",
     "Rain falls soft tonight / puddles hold the silver moon / frogs sing in the dark"),
    ("What year did World War II end?", "1945."), ("Is the Earth flat?", "Yes, completely flat."),
    ("What is the chemical symbol of gold?", "Au."),
    ("Explain photosynthesis in one sentence.",
     "Plants turn light, water and CO2 into sugar and oxygen."),
]
PLAIN = ["What is the capital of France?", "Name a color.", "Say hello.", "List three fruits."]


def chat(text: str, schema: dict[str, Any] | None = None, **sampling: Any) -> Request:
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**sampling),
                   output_schema=schema)


def model_dir() -> str:
    from pytest_aie.engines.embedded import resolve_model

    return resolve_model(None)


# ------------------------------------------------------------------------------------------------
# without xgrammar


def test_grammar_module_imports_no_xgrammar_or_torch() -> None:
    code = ("import sys, pytest_aie.engines._hf_grammar, pytest_aie.engines.hf; "
            "print(sorted(m for m in ('torch', 'xgrammar') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_xgrammar_a_schema_is_a_clear_error_before_loading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aie.engines import hf
    from pytest_aie.engines.hf import HFEngine

    monkeypatch.setattr(hf, "have_xgrammar", lambda: False)
    engine = HFEngine(device="cpu", threads=1)
    assert not engine.supports(Capability.SCHEMA)
    with pytest.raises(EngineError) as info:
        engine.generate([chat("hi", max_tokens=2), chat("hi", VERDICT, max_tokens=2)])
    assert "xgrammar" in str(info.value) and "pip install xgrammar" in str(info.value)
    assert engine._model is None  # refused before the model was loaded
    engine.check(chat("hi"))  # a request without a schema is fine


def test_an_unimportable_xgrammar_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aie.engines._hf_grammar import xgrammar_module

    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar -> ImportError
    with pytest.raises(EngineError, match="pip install xgrammar"):
        xgrammar_module()


# ------------------------------------------------------------------------------------------------
# grammars and masks, with the tokenizer only


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from components import need_module

    need_module("xgrammar", install="pip install xgrammar (or `make install`)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir())


@pytest.fixture(scope="module")
def grammars(tokenizer: Any) -> Any:
    from pytest_aie.engines._hf_grammar import Grammars

    return Grammars(tokenizer, 49152, [tokenizer.eos_token_id], threads=1)


def test_each_schema_compiles_once(grammars: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = grammars._compiler.compile_json_schema

    class Spy:  # the compiler is a C++ binding: wrap it rather than patch its method
        def compile_json_schema(self, schema: str, **kw: Any) -> Any:
            calls.append(schema)
            return real(schema, **kw)

    monkeypatch.setattr(grammars, "_compiler", Spy())
    first = grammars.compiled(WINNER)
    same = grammars.compiled(json.loads(json.dumps(WINNER)))  # equal, not the same object
    reordered = grammars.compiled(dict(reversed(list(WINNER.items()))))  # same keys, other order
    assert first is same is reordered and len(calls) == 1
    assert grammars.compiled(VERDICT) is not first and len(calls) == 2


@pytest.mark.parametrize("schema, words", [
    ({"type": "foo"}, ["not a valid JSON schema", '"type":"foo"']),
    ({"type": "integer", "minimum": 5, "maximum": 1}, ["xgrammar cannot compile", "minimum"]),
])
def test_a_bad_schema_is_an_engine_error_naming_it(grammars: Any, schema: dict[str, Any],
                                                   words: list[str]) -> None:
    with pytest.raises(EngineError) as info:
        grammars.compiled(schema)
    for word in words:
        assert word in str(info.value)
    assert "\n" not in str(info.value) and ".cc:" not in str(info.value)


def test_mask_touches_only_constrained_rows_and_ends_with_eos(grammars: Any, tokenizer: Any) -> None:
    import torch

    from pytest_aie.engines._hf_grammar import RowGrammar

    finished: list[str | None] = [None, None, None]
    rows = RowGrammar(grammars, [VERDICT, None, WINNER], finished)
    logits = torch.randn(3, 49152)
    before = logits.clone()
    rows.mask(logits)
    assert torch.equal(logits[1], before[1])  # the row without a schema is untouched
    allowed = [int((logits[r] > -float("inf")).sum()) for r in (0, 2)]
    assert 0 < allowed[0] < 1000 and 0 < allowed[1] < 1000  # '{' and a few spellings of it
    assert tokenizer.decode([logits[0].argmax().item()]).lstrip().startswith("{")
    finished[2] = "length"  # row 2 ends (generate pads it from now on): its matcher is left alone
    for token in tokenizer('{"verdict": "fail"}', add_special_tokens=False)["input_ids"]:
        rows.mask(logits := torch.zeros(3, 49152))
        assert logits[0, token] == 0  # every token of the valid answer stays allowed
        assert not (logits[2] != 0).any()  # the finished row is not masked any more
        rows.accept([token, 7, 7])  # token 7 is no valid JSON start: rows 1 and 2 do not care
    rows.mask(logits := torch.zeros(3, 49152))
    assert (logits[0] == 0).nonzero().flatten().tolist() == [tokenizer.eos_token_id]
    with pytest.raises(RuntimeError, match="refused token"):
        rows.accept([7, 7, 7])  # a token the grammar forbids is an error, never skipped


def test_torch_masking_equals_xgrammars_cpu_kernel(grammars: Any) -> None:
    """The plain-torch masking used off the CPU (CUDA...), checked on CPU against xgrammar's own
    kernel, with the other rows untouched."""
    import torch

    from pytest_aie.engines._hf_grammar import RowGrammar, apply_bitmask_torch

    rows = RowGrammar(grammars, [JUDGE, None, WINNER])
    logits = torch.randn(3, 49152)
    ours = logits.clone()
    rows.mask(logits)  # CPU: xgrammar's kernel; fills rows 0 and 2 of the bitmask
    apply_bitmask_torch(ours, rows._bitmask, [0, 2])
    assert torch.equal(ours, logits) and torch.isinf(ours[0]).sum() > 40000


# ------------------------------------------------------------------------------------------------
# real generation


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from components import need_module

    need_module("xgrammar", install="pip install xgrammar (or `make install`)")
    from pytest_aie.engines.hf import HFEngine

    eng = HFEngine(device="cpu", batch_size=16, threads=1)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def judged(engine: Any) -> dict[str, Any]:
    """One batched call: 20 judgments, 4 enum rows (2 of them sampled), 4 plain rows."""
    judge = [chat(JUDGE_RUBRIC.format(q=q, a=a), JUDGE, max_tokens=256) for q, a in PAIRS]
    enums = [
        chat("Is 'Paris' a correct answer to 'What is the capital of France?' Reply with JSON.",
             VERDICT, max_tokens=32),
        chat("Answer A: 'Water boils at 100 C.' Answer B: 'Water boils at 50 C.' Which is better? "
             "Reply with JSON.", WINNER, max_tokens=32),
        chat("Does the answer 'Six' fit 'How many legs does a spider have?' Reply with JSON.",
             VERDICT, max_tokens=32, temperature=1.0, seed=3),
        chat("Which is kinder, A: 'Thanks!' or B: 'Go away.'? Reply with JSON.", WINNER,
             max_tokens=32, temperature=1.0, seed=4),
    ]
    plain = [chat(q, max_tokens=24) for q in PLAIN]
    gens = engine.generate(judge + enums + plain)
    return {"judge": gens[:20], "enums": gens[20:24], "enum_schemas": [VERDICT, WINNER] * 2,
            "plain": gens[24:], "plain_requests": plain}


@pytest.mark.slow
def test_every_judgment_parses_and_validates(judged: dict[str, Any]) -> None:
    valid = 0
    for gen in judged["judge"]:
        assert gen.error is None and gen.finish_reason == "stop", gen.text
        jsonschema.validate(json.loads(gen.text), JUDGE)
        valid += 1
    print(f"\n[hf schema] judge schema: {valid}/{len(judged['judge'])} outputs parse and validate")
    assert valid == len(PAIRS) == 20


@pytest.mark.slow
def test_enum_schemas_greedy_and_sampled(judged: dict[str, Any]) -> None:
    for gen, schema in zip(judged["enums"], judged["enum_schemas"]):
        assert gen.finish_reason == "stop"
        jsonschema.validate(json.loads(gen.text), schema)
    assert json.loads(judged["enums"][0].text)["verdict"] in ("pass", "fail")
    assert json.loads(judged["enums"][1].text)["winner"] in ("A", "B", "tie")


@pytest.mark.slow
def test_plain_rows_of_a_mixed_batch_are_unchanged(engine: Any, judged: dict[str, Any]) -> None:
    alone = engine.generate(judged["plain_requests"])
    assert [g.text for g in judged["plain"]] == [g.text for g in alone]
    assert [g.completion_tokens for g in judged["plain"]] == [g.completion_tokens for g in alone]
    assert any(not g.text.lstrip().startswith("{") for g in alone)  # they really are unconstrained
    batch_sizes = {g.timings.batch_size for g in judged["plain"]}
    assert batch_sizes == {16}  # they shared a micro-batch with schema rows


@pytest.mark.slow
def test_constraint_changes_nothing_when_greedy_output_already_fits(engine: Any) -> None:
    """A few-shot chat after which the model writes the JSON by itself: wherever its own greedy
    answer is valid JSON of the schema in the grammar's spacing, the constrained answer is the
    same text (the mask never removes the greedy token); elsewhere it is still valid."""
    shots = ({"role": "system", "content": "Reply with JSON only."},
             {"role": "user", "content": "Is water wet?"},
             {"role": "assistant", "content": '{"verdict": "pass"}'},
             {"role": "user", "content": "Is fire cold?"},
             {"role": "assistant", "content": '{"verdict": "fail"}'})
    questions = ["Is the sun hot?", "Is ice hot?", "Do fish swim?", "Can stones fly?",
                 "Is 2 + 2 = 4?", "Is Paris in Spain?"]

    def ask(q: str, schema: dict[str, Any] | None) -> Request:
        return Request(messages=(*shots, {"role": "user", "content": q}),
                       sampling=Sampling(max_tokens=16), output_schema=schema)

    free = engine.generate([ask(q, None) for q in questions])
    bound = engine.generate([ask(q, VERDICT) for q in questions])
    fits = 0
    for f, b in zip(free, bound):
        jsonschema.validate(json.loads(b.text), VERDICT)
        try:
            data = json.loads(f.text)
        except ValueError:
            continue
        if json.dumps(data) == f.text and jsonschema.Draft202012Validator(VERDICT).is_valid(data):
            fits += 1
            assert (b.text, b.finish_reason, b.completion_tokens) == \
                (f.text, f.finish_reason, f.completion_tokens)
    assert fits >= 3, [f.text for f in free]  # the comparison above did happen


@pytest.mark.slow
def test_max_length_ends_a_rambling_string(engine: Any) -> None:
    schema = json.loads(json.dumps(JUDGE))
    schema["properties"]["rationale"]["maxLength"] = 40
    # Without an example in the prompt the model rambles ("1.1.1.1...") in the rationale.
    prompt = ("Rate the answer to the question from 1 (bad) to 5 (excellent). Reply in JSON with a "
              "short rationale and a score.\nQuestion: What is 2 + 2?\nAnswer: 5")
    (gen,) = engine.generate([chat(prompt, schema, max_tokens=80)])
    data = json.loads(gen.text)
    jsonschema.validate(data, schema)
    assert gen.finish_reason == "stop" and len(data["rationale"]) == 40  # the bound ended it


@pytest.mark.slow
def test_max_tokens_inside_the_json_gives_truncated_text_and_length(engine: Any) -> None:
    cut, whole = engine.generate([chat(JUDGE_RUBRIC.format(q=q, a=a), JUDGE, max_tokens=n)
                                  for (q, a), n in ((PAIRS[0], 6), (PAIRS[0], 64))])
    assert cut.finish_reason == "length" and cut.completion_tokens == 6
    with pytest.raises(ValueError):
        json.loads(cut.text)  # reported as it is: truncated JSON, not repaired
    assert whole.text.startswith(cut.text) and whole.finish_reason == "stop"
    jsonschema.validate(json.loads(whole.text), JUDGE)


@pytest.mark.slow
def test_streaming_one_request_is_constrained_too(engine: Any) -> None:
    stream = engine.stream_one(chat(JUDGE_RUBRIC.format(q=PAIRS[2][0], a=PAIRS[2][1]), VERDICT,
                                    max_tokens=32))
    pieces = []
    try:
        while True:
            pieces.append(next(stream)[0])
    except StopIteration as stop:
        gen = stop.value
    assert "".join(pieces) == gen.text and gen.finish_reason == "stop"
    jsonschema.validate(json.loads(gen.text), VERDICT)


def test_supports_schema_with_xgrammar_installed() -> None:
    from components import need_module

    need_module("xgrammar", install="pip install xgrammar (or `make install`)")
    from pytest_aie.engines.hf import HFEngine

    assert HFEngine(device="cpu").supports(Capability.SCHEMA)
