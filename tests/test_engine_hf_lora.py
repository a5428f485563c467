"""Per-request LoRA adapters in the hf engine, with real peft adapters on the embedded SmolLM2.

The adapters come from ``tests/lora_adapters.py`` (random, non-zero weights; a negated twin;
the merged model as the reference).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from lora_adapters import Lora, make_lora

from pytest_aie.engines.base import Capability, Generation, Request, Sampling
from pytest_aie.errors import EngineError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTIONS = ["Name a color.", "Say hello.", "List three fruits.", "What is two plus two?"]
TOKENS = 12


def chat(text: str, adapter: str | None = None, **sampling: object) -> Request:
    sampling.setdefault("max_tokens", TOKENS)
    return Request(messages=({"role": "user", "content": text},), sampling=Sampling(**sampling),  # type: ignore[arg-type]
                   adapter=adapter)


def outcome(g: Generation) -> tuple[object, ...]:
    return (g.text, g.finish_reason, g.completion_tokens, g.prompt_tokens, g.token_logprobs, g.adapter)


# ------------------------------------------------------------------ no model needed


def test_split_adapter() -> None:
    from pytest_aie.engines.hf import split_adapter

    sha = "ab" * 32
    assert split_adapter(f"/a/b@{sha}") == ("/a/b", sha)
    assert split_adapter("/a/b") == ("/a/b", None)
    assert split_adapter("/a/user@host/b") == ("/a/user@host/b", None)  # '@' in a path is kept
    assert split_adapter(f"/a/b@{sha[:-1]}") == (f"/a/b@{sha[:-1]}", None)


def test_missing_or_incomplete_adapter_folder_is_named(tmp_path: Path) -> None:
    from pytest_aie.engines.hf import HFEngine

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # a model folder that is never loaded
    eng = HFEngine(str(tmp_path / "model"), device="cpu", threads=1)
    assert eng.supports(Capability.ADAPTERS)  # peft is installed in the test environment
    missing = str(tmp_path / "no-such-adapter")
    for call in (eng.resolve_adapter, eng.adapter_revision):
        with pytest.raises(EngineError) as info:
            call(missing)
        assert missing in str(info.value) and "adapter_config.json" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError) as info:
        eng.resolve_adapter(str(tmp_path / "empty"))
    assert "has no adapter_config.json" in str(info.value) and "save_pretrained" in str(info.value)
    assert eng._model is None  # none of this loaded the model


# ------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> Lora:
    import torch

    torch.set_num_threads(1)
    return make_lora(tmp_path_factory.mktemp("lora"))


@dataclass
class Loaded:
    engine: object
    base: list[Generation]  # greedy QUESTIONS before any adapter was loaded
    base_scores: list[list[float]]


SCORED = ["The sky is blue because of Rayleigh scattering.", "Paris is the capital of France."]


@pytest.fixture(scope="module")
def loaded() -> Iterator[Loaded]:
    from pytest_aie.engines.hf import HFEngine

    eng = HFEngine(device="cpu", batch_size=4, threads=1)
    base = eng.generate([chat(q) for q in QUESTIONS])
    scores = eng.score_text(SCORED)
    assert eng._peft_model is None
    yield Loaded(eng, base, scores)
    eng.close()


@pytest.mark.slow
def test_adapter_changes_outputs_and_base_stays_the_same(lora: Lora, loaded: Loaded) -> None:
    eng = loaded.engine
    tuned = eng.generate([chat(q, adapter=lora.adapter) for q in QUESTIONS])  # type: ignore[attr-defined]
    assert [g.adapter for g in tuned] == [lora.adapter] * len(QUESTIONS)
    assert all(g.finish_reason in ("stop", "length") and g.error is None for g in tuned)
    assert sum(t.text != b.text for t, b in zip(tuned, loaded.base)) >= 2
    # Base requests on the engine that now holds an adapter: the adapter is switched off.
    again = eng.generate([chat(q) for q in QUESTIONS])  # type: ignore[attr-defined]
    assert [outcome(g) for g in again] == [outcome(g) for g in loaded.base]
    assert all(g.adapter is None for g in again)
    assert eng.score_text(SCORED) == loaded.base_scores  # type: ignore[attr-defined]
    assert eng.score_text(SCORED, adapter=lora.adapter) != loaded.base_scores  # type: ignore[attr-defined]


@pytest.mark.slow
def test_mixed_batch_equals_separate_batches(lora: Lora, loaded: Loaded) -> None:
    eng = loaded.engine
    refs = [None, lora.adapter, lora.negated]
    mixed = []
    for k, q in enumerate(QUESTIONS):  # interleaved: base, A, B, base, A, B, ...
        for ref in refs:  # the same sampling for a question under each adapter
            if k % 2:  # some rows sampled with a seed and logprobs, some greedy
                mixed.append(chat(q, adapter=ref, temperature=0.9, seed=k, logprobs=True))
            else:
                mixed.append(chat(q, adapter=ref, stop=(".",)))
    together = eng.generate(mixed)  # type: ignore[attr-defined]
    assert [g.adapter for g in together] == [r.adapter for r in mixed]
    for ref in refs:
        idx = [i for i, r in enumerate(mixed) if r.adapter == ref]
        alone = eng.generate([mixed[i] for i in idx])  # type: ignore[attr-defined]
        assert [outcome(g) for g in alone] == [outcome(together[i]) for i in idx]
    texts = {ref: [together[i].text for i, r in enumerate(mixed) if r.adapter == ref] for ref in refs}
    assert texts[lora.adapter] != texts[lora.negated]
    assert texts[lora.adapter] != texts[None] and texts[lora.negated] != texts[None]
    assert all(g.token_logprobs and len(g.token_logprobs) == g.completion_tokens
               for g, r in zip(together, mixed) if r.sampling.logprobs)


@pytest.mark.slow
def test_adapter_equals_the_merged_model(lora: Lora, loaded: Loaded) -> None:
    from pytest_aie.engines.hf import HFEngine

    tuned = loaded.engine.generate([chat(q, adapter=lora.adapter) for q in QUESTIONS])  # type: ignore[attr-defined]
    merged_engine = HFEngine(lora.merged, device="cpu", batch_size=4, threads=1)
    try:
        merged = merged_engine.generate([chat(q) for q in QUESTIONS])
        merged_scores = merged_engine.score_text(SCORED)
    finally:
        merged_engine.close()
    assert [g.text for g in tuned] == [g.text for g in merged]
    assert [g.completion_tokens for g in tuned] == [g.completion_tokens for g in merged]
    adapter_scores = loaded.engine.score_text(SCORED, adapter=lora.adapter)  # type: ignore[attr-defined]
    for a, m in zip(adapter_scores, merged_scores):
        assert a == pytest.approx(m, abs=1e-3)


@pytest.mark.slow
def test_pinned_references(lora: Lora, loaded: Loaded, tmp_path: Path) -> None:
    eng = loaded.engine
    pinned = eng.resolve_adapter(lora.adapter)  # type: ignore[attr-defined]
    path, _, sha = pinned.rpartition("@")
    assert path == lora.adapter and len(sha) == 64 and pinned == eng.resolve_adapter(pinned)  # type: ignore[attr-defined]
    plain, pin = eng.generate([chat(QUESTIONS[0], adapter=lora.adapter),  # type: ignore[attr-defined]
                               chat(QUESTIONS[0], adapter=pinned)])
    assert pin.adapter == pinned and plain.text == pin.text
    assert (pin.text, pin.completion_tokens) == (plain.text, plain.completion_tokens)
    # A changed folder changes the pin, and a stale pin is refused before anything loads.
    copy = tmp_path / "copy"
    shutil.copytree(lora.adapter, copy)
    stale = eng.resolve_adapter(str(copy))  # type: ignore[attr-defined]
    assert stale.rpartition("@")[2] == sha  # same files, same hash, whatever the folder
    (copy / "adapter_config.json").write_text((copy / "adapter_config.json").read_text() + "\n")
    assert eng.resolve_adapter(str(copy)) != stale  # type: ignore[attr-defined]
    with pytest.raises(EngineError) as info:
        eng.generate([chat(QUESTIONS[0], adapter=stale)])  # type: ignore[attr-defined]
    assert str(copy) in str(info.value) and "changed" in str(info.value) and "rerun" in str(info.value)


@pytest.mark.slow
def test_bad_adapters_are_engine_errors(lora: Lora, loaded: Loaded, tmp_path: Path) -> None:
    import json

    from pytest_aie.engines.hf import HFEngine

    wrong = tmp_path / "wrong-target"
    shutil.copytree(lora.adapter, wrong)
    config = json.loads((wrong / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_proj"]
    (wrong / "adapter_config.json").write_text(json.dumps(config))
    missing = str(tmp_path / "missing")

    eng = loaded.engine  # an engine that already holds adapters: load_adapter fails
    before = eng.generate([chat(QUESTIONS[0], adapter=lora.adapter)])  # type: ignore[attr-defined]
    for bad in (str(wrong), missing):
        with pytest.raises(EngineError) as info:
            eng.generate([chat(QUESTIONS[0]), chat(QUESTIONS[1], adapter=bad)])  # type: ignore[attr-defined]
        assert bad in str(info.value) and "PEFT LoRA adapter" in str(info.value)
    after = eng.generate([chat(QUESTIONS[0], adapter=lora.adapter)])  # type: ignore[attr-defined]
    assert [outcome(g) for g in after] == [outcome(g) for g in before]

    fresh = HFEngine(device="cpu", threads=1)  # the first adapter fails: PeftModel.from_pretrained
    try:
        with pytest.raises(EngineError) as info:
            fresh.generate([chat(QUESTIONS[0], adapter=str(wrong), max_tokens=2)])
        assert str(wrong) in str(info.value) and "no_such_proj" in str(info.value)
        (base,) = fresh.generate([chat(QUESTIONS[0])])  # the model is reloaded clean
        assert base.text == loaded.base[0].text
    finally:
        fresh.close()
