"""The hf engine on the embedded SmolLM2-135M-Instruct, on CPU."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from statistics import mean
from typing import Iterator

import pytest

from pytest_aie.engines.base import Capability, Request, Sampling
from pytest_aie.errors import EngineError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTIONS = [
    "What is the capital of France?",
    "Name a color.",
    "Write a haiku about the sea.",
    "Say hello.",
    "Why is the sky blue? Explain briefly, with some detail, for a ten year old child.",
    "List three fruits.",
]


def chat(text: str, **sampling: object) -> Request:
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**sampling))


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    from pytest_aie.engines.hf import HFEngine

    # threads=1: on a shared 2-core machine two spinning torch threads can be 10x slower.
    eng = HFEngine(device="cpu", batch_size=4, threads=1)  # 4 < len(QUESTIONS): several micro-batches
    yield eng
    eng.close()


def test_import_pulls_in_no_torch() -> None:
    code = "import sys, pytest_aie.engines.hf; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_model_path_is_named() -> None:
    from pytest_aie.engines.hf import HFEngine

    with pytest.raises(EngineError) as info:
        HFEngine("/no/such/model-folder")
    assert "/no/such/model-folder" in str(info.value) and "--aie-model" in str(info.value)


def test_uncached_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aie.engines.hf import HFEngine

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    eng = HFEngine("pytest-aie-test/definitely-not-a-cached-model")
    with pytest.raises(EngineError) as info:
        eng.generate([chat("hi", max_tokens=2)])
    assert "definitely-not-a-cached-model" in str(info.value) and "--aie-model" in str(info.value)


@pytest.mark.slow
def test_identity_is_stable_and_needs_no_model_load(engine) -> None:  # type: ignore[no-untyped-def]
    from pytest_aie.engines.hf import HFEngine

    other = HFEngine("embedded", device="cpu", threads=1)
    ident = other.identity()
    assert other._model is None  # computing the identity loaded nothing
    assert ident == engine.identity()
    assert ident["engine"] == "hf" and ident["dtype"] == "float32"
    assert len(ident["revision"]) == 64 and os.path.isdir(ident["model"])
    assert engine.supports(Capability.SCORE) and engine.supports(Capability.LOGPROBS)


@pytest.mark.slow
def test_batch_equals_one_by_one_in_input_order(engine) -> None:  # type: ignore[no-untyped-def]
    requests = [chat(q, max_tokens=16) for q in QUESTIONS]
    batched = engine.generate(requests)
    singles = [engine.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in singles]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in singles]
    assert len({g.text for g in batched}) == len(QUESTIONS)  # distinct answers: order is checked
    assert "Paris" in batched[0].text
    reversed_ = engine.generate(requests[::-1])
    assert [g.text for g in reversed_] == [g.text for g in batched][::-1]
    for g in batched:
        assert g.engine == "hf" and g.timings.e2e_s and g.timings.e2e_s > 0
        assert g.timings.batch_size in (2, 4) and g.timings.ttft_s is None


@pytest.mark.slow
def test_chat_template_is_applied(engine) -> None:  # type: ignore[no-untyped-def]
    tok = engine._tokenizer
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    templated = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert templated.endswith("<|im_start|>assistant\n")
    via_chat, via_raw = engine.generate(
        [chat(QUESTIONS[0], max_tokens=12), Request(prompt=templated, sampling=Sampling(max_tokens=12))])
    assert via_chat.text == via_raw.text and "Paris" in via_chat.text
    assert via_chat.prompt_tokens == len(tok(templated, add_special_tokens=False)["input_ids"])
    (bare,) = engine.generate([Request(prompt=QUESTIONS[0], sampling=Sampling(max_tokens=12))])
    assert bare.prompt_tokens < via_chat.prompt_tokens and bare.text != via_chat.text


@pytest.mark.slow
def test_finish_reasons_and_stop_strings(engine) -> None:  # type: ignore[no-untyped-def]
    count = "Count from 1 to 10, separated by commas."
    eos, length, free, stopped = engine.generate([
        chat(QUESTIONS[0], max_tokens=40),
        chat(QUESTIONS[4], max_tokens=5),
        chat(count, max_tokens=40),
        chat(count, max_tokens=40, stop=("5", "five")),
    ])
    assert eos.finish_reason == "stop" and eos.completion_tokens < 40 and eos.text.endswith(".")
    assert "<|im_end|>" not in eos.text
    assert length.finish_reason == "length" and length.completion_tokens == 5
    assert "5" in free.text  # without the stop string the model does get there
    assert stopped.finish_reason == "stop" and "5" not in stopped.text
    assert free.text.startswith(stopped.text) and stopped.text.strip()
    assert stopped.completion_tokens < free.completion_tokens


@pytest.mark.slow
def test_seeds_are_reproducible_whatever_the_batch(engine) -> None:  # type: ignore[no-untyped-def]
    def story(seed: int) -> Request:
        return chat("Tell me a short story.", temperature=1.0, top_p=0.95, max_tokens=12, seed=seed)

    first = engine.generate([story(1), story(2), story(3), story(4)])
    again = engine.generate([chat("Say hello.", max_tokens=3), story(3), story(1)])
    assert again[1].text == first[2].text and again[2].text == first[0].text
    assert len({g.text for g in first}) > 1  # different seeds sample different texts


@pytest.mark.slow
def test_logprobs_have_the_completions_shape_and_match_scoring(engine) -> None:  # type: ignore[no-untyped-def]
    prompt = "The capital of France is"
    with_lp, without = engine.generate([
        Request(prompt=prompt, sampling=Sampling(max_tokens=8, logprobs=True)),
        Request(prompt=prompt, sampling=Sampling(max_tokens=8)),
    ])
    assert without.token_logprobs is None and with_lp.text == without.text
    lps = with_lp.token_logprobs
    assert lps is not None and len(lps) == with_lp.completion_tokens == 8
    assert all(lp <= 0 for lp in lps)
    # Greedy tokens are the argmax: their log-probabilities are those that scoring the same
    # continuation gives (when re-tokenizing the text gives the generated tokens back).
    (scored,) = engine.score_text([with_lp.text], [prompt])
    if len(scored) == len(lps):
        assert scored == pytest.approx(lps, abs=2e-3)
    sampled = engine.generate([Request(prompt=prompt, sampling=Sampling(
        temperature=0.8, max_tokens=6, seed=5, logprobs=True))])[0]
    assert len(sampled.token_logprobs) == sampled.completion_tokens


@pytest.mark.slow
def test_score_text(engine) -> None:  # type: ignore[no-untyped-def]
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    words = sentence.rstrip(".").split()
    shuffled = " ".join(random.Random(0).sample(words, len(words))) + "."
    texts = [sentence, shuffled, "", "Paris"]
    scores = engine.score_text(texts)
    tok = engine._tokenizer
    assert len(scores[0]) == len(tok(sentence, add_special_tokens=False)["input_ids"])
    assert scores[2] == [] and all(lp <= 0 for lp in scores[0])
    assert mean(scores[0]) > mean(scores[1]) + 1.0
    singles = [engine.score_text([t])[0] for t in texts]
    for batched, single in zip(scores, singles):
        assert batched == pytest.approx(single, abs=1e-3)
    in_context, out_of_context = engine.score_text(["Paris", "Paris"],
                                                   ["The capital of France is ", "My favourite fruit is "])
    assert len(in_context) == len(out_of_context) and sum(in_context) > sum(out_of_context)
    with pytest.raises(ValueError):
        engine.score_text(["a", "b"], ["only one"])


@pytest.mark.slow
def test_close_frees_the_model() -> None:
    from pytest_aie.engines.hf import HFEngine

    eng = HFEngine(device="cpu", threads=1)
    assert eng.generate([chat("Say hello.", max_tokens=2)])[0].completion_tokens == 2
    eng.close()
    assert eng._model is None
    with pytest.raises(EngineError, match="closed"):
        eng.generate([chat("Say hello.", max_tokens=2)])


@pytest.mark.slow
def test_a_failing_request_does_not_sink_its_batch(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    real = type(engine)._generate_batch

    def flaky(self, model, tokenizer, requests, prompts):  # type: ignore[no-untyped-def]
        if any(r.prompt == "BOOM" for r in requests):
            raise RuntimeError("simulated kernel failure\nwith detail")
        return real(self, model, tokenizer, requests, prompts)

    monkeypatch.setattr(type(engine), "_generate_batch", flaky)
    ok1, bad, ok2, empty = engine.generate([
        Request(prompt="Hello", sampling=Sampling(max_tokens=2)),
        Request(prompt="BOOM", sampling=Sampling(max_tokens=2)),
        chat("Say hello.", max_tokens=2),
        Request(prompt="", sampling=Sampling(max_tokens=2)),
    ])
    assert bad.finish_reason == "error" and bad.error and "simulated kernel failure" in bad.error
    assert bad.text == "" and "\n" not in bad.error
    for g in (ok1, ok2, empty):
        assert g.error is None and g.completion_tokens == 2 and g.finish_reason == "length"
    assert empty.prompt_tokens == 1  # an empty prompt starts from the BOS token
