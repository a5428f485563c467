"""The hf engine's prefix cache (``pytest_aie/engines/_hf_prefix.py``), its own decoding loop
(``_hf_loop.py``, finished rows leave the batch) and its column-major linear weights on CPU
(``_hf_loading.column_major_linears``) on the embedded SmolLM2-135M-Instruct: a shared system
prompt is computed once, within a batch and across calls, and the results are those of
``model.generate`` on the weights as the checkpoint lays them out, without the cache."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import EngineError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: A system prompt of well over 64 tokens, as an agent's tool list or a judge's rubric.
SYSTEM = ("You are a careful assistant that answers questions about geography, arithmetic and "
          "units. Answer in one short sentence. Tools: calculate(expression) evaluates "
          "arithmetic; convert(value, from_unit, to_unit) converts km, mi, kg and lb; "
          "capital(country) gives a capital city. Never invent a tool. If unsure, say so. "
          "Reply with the answer only, without any preamble or explanation of your steps.")
TASKS = ["What is the capital of Japan?", "Convert 10 km to miles.", "What is 17 times 23?",
         "Name a country in Europe.", "What is 9 plus 16?"]


def chat(task: str, **sampling: Any) -> Request:
    return Request(messages=({"role": "system", "content": SYSTEM}, {"role": "user", "content": task}),
                   sampling=Sampling(**{"max_tokens": 12, **sampling}))


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[Any, Any]]:
    from pytest_aie.engines.hf import HFEngine

    cached = HFEngine(device="cpu", batch_size=8, threads=1)
    plain = HFEngine(device="cpu", batch_size=8, threads=1, prefix_cache_mb=0)
    plain.own_loop = False  # model.generate, as before the prefix cache and the own loop
    model, _tokenizer = plain._load()
    for module in model.modules():  # and the weights row-major, as the checkpoint loads them
        if isinstance(getattr(module, "weight", None), __import__("torch").Tensor):
            module.weight.data = module.weight.data.contiguous()
    yield cached, plain
    cached.close()
    plain.close()


def test_shared_prefix_gives_the_uncached_results(engines: tuple[Any, Any]) -> None:
    cached, plain = engines
    requests = [chat(t, logprobs=True) for t in TASKS]
    requests.append(chat("Say hello.", temperature=0.8, seed=7))  # a sampled row in the batch
    requests.append(Request(messages=({"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": "Give the answer as JSON."}),
                            sampling=Sampling(max_tokens=20),
                            output_schema={"type": "object", "properties": {"answer": {"type": "string"}},
                                           "required": ["answer"]}))
    before = dict(cached.prefix_cache.stats)
    got, want = cached.generate(requests), plain.generate(requests)
    assert [g.text for g in got] == [w.text for w in want]
    assert [g.completion_tokens for g in got] == [w.completion_tokens for w in want]
    assert [g.prompt_tokens for g in got] == [w.prompt_tokens for w in want]
    for g, w in zip(got[:len(TASKS)], want[:len(TASKS)]):
        assert g.token_logprobs == pytest.approx(w.token_logprobs, abs=2e-3)
    computed = cached.prefix_cache.stats["computed_tokens"] - before["computed_tokens"]
    prompt = min(g.prompt_tokens for g in got)
    # the shared beginning ran once for the batch, not once per row
    assert 64 <= computed < prompt
    assert plain.prefix_cache.stats["computed_tokens"] == 0


def test_a_later_call_reuses_the_stored_prefix(engines: tuple[Any, Any]) -> None:
    cached, plain = engines
    cached.generate([chat(t) for t in TASKS[:3]])
    stats = dict(cached.prefix_cache.stats)
    one = cached.generate([chat("What is the capital of France?")])  # alone, a new task
    assert cached.prefix_cache.stats["hits"] + cached.prefix_cache.stats["reused_tokens"] > \
        stats["hits"] + stats["reused_tokens"]
    # only what the stored prefix lacks was computed (less than one block of 32 tokens)
    assert cached.prefix_cache.stats["computed_tokens"] - stats["computed_tokens"] < 32
    assert one[0].text == plain.generate([chat("What is the capital of France?")])[0].text


def test_short_prompts_and_the_off_switch_do_not_cache() -> None:
    from pytest_aie.engines._hf_prefix import PrefixCache

    cache = PrefixCache(2**20, block=32, min_tokens=64)
    assert cache.length([[1] * 63 + [2]]) == 0  # one row: 63 usable tokens, under min_tokens
    assert cache.length([[1] * 100, [1] * 100]) == 96  # each row keeps one token, cut to a block
    assert cache.length([[1] * 70 + [2] * 30, [1] * 70 + [3] * 30]) == 64
    assert cache.length([[1] * 200, [2] + [1] * 199]) == 0  # nothing in common
    assert PrefixCache(0).usable(object()) is False
    from pytest_aie.engines.hf import HFEngine

    with pytest.raises(EngineError, match="prefix_cache_mb"):
        HFEngine(prefix_cache_mb=-1)


def test_layout_puts_the_padding_between_prefix_and_suffix() -> None:
    from pytest_aie.engines._hf_prefix import prefix_layout

    ids, mask, width = prefix_layout([[5, 6, 7, 8], [5, 6, 9]], 2, 0)
    assert width == 4
    assert ids.tolist() == [[5, 6, 7, 8], [5, 6, 0, 9]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 1]]


def test_store_is_bounded_and_scoped(engines: tuple[Any, Any]) -> None:
    from pytest_aie.engines._hf_prefix import PrefixCache

    cached, _plain = engines
    model, _tokenizer = cached._load()
    ids = list(range(100, 196))  # 96 tokens
    one = PrefixCache(2**30)
    one.expanded(model, "", ids, 2)
    one.expanded(model, "adapter-a", ids, 2)  # another adapter: its own entry, computed again
    assert one.stats["computed_tokens"] == 2 * len(ids)
    one.expanded(model, "", ids + list(range(300, 332)), 1)  # extends the stored 96 tokens
    assert one.stats["computed_tokens"] == 2 * len(ids) + 32
    size = one._entries[("", tuple(ids))][1]
    small = PrefixCache(size)  # room for one 96-token entry
    small.expanded(model, "", ids, 1)
    small.expanded(model, "", [i + 1 for i in ids], 1)
    assert list(small._entries) == [("", tuple(i + 1 for i in ids))]  # the older one was evicted
    tiny = PrefixCache(size - 1)  # an entry larger than the store is used but not kept
    cache = tiny.expanded(model, "", ids, 3)
    assert not tiny._entries and cache.get_seq_length() == len(ids) and cache.layers[0].keys.shape[0] == 3


def test_own_loop_equals_generate_and_drops_finished_rows(engines: tuple[Any, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aie.engines import _hf_loop

    cached, plain = engines
    requests = [Request(messages=({"role": "user", "content": q},), sampling=Sampling(**s))
                for q, s in [("Say hello.", {"max_tokens": 2}),
                             ("List three fruits.", {"max_tokens": 16, "stop": (",",)}),
                             ("Write a haiku about the sea.", {"max_tokens": 16, "temperature": 0.9,
                                                               "seed": 3, "logprobs": True}),
                             ("Name a color.", {"max_tokens": 9})]]
    rows: list[int] = []
    real = _hf_loop.forward

    def counted(model: Any, cache: Any, **inputs: Any) -> Any:
        rows.append(int(inputs["input_ids"].shape[0]))
        return real(model, cache, **inputs)

    monkeypatch.setattr(_hf_loop, "forward", counted)
    got = cached.generate(requests)
    want = plain.generate(requests)  # model.generate: the loop is not called
    assert [g.text for g in got] == [w.text for w in want]
    assert [(g.completion_tokens, g.finish_reason) for g in got] == \
        [(w.completion_tokens, w.finish_reason) for w in want]
    assert got[2].token_logprobs == pytest.approx(want[2].token_logprobs, abs=2e-3)
    # one forward per step; the batch shrinks as rows finish (the 2-token row first)
    assert rows[0] == 4 and rows == sorted(rows, reverse=True) and rows[-1] < 4
    assert rows[3] == 3 and len(rows) <= max(g.completion_tokens for g in got) + 1


def test_linear_weights_are_column_major_on_cpu_with_the_same_values(engines: tuple[Any, Any]) -> None:
    import torch

    from pytest_aie.engines._hf_loading import column_major_linears

    cached, plain = engines
    model, _tokenizer = cached._load()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings()
    assert head.weight.is_contiguous()  # the LM head (tied to the embedding) is left alone
    moved = [m for m in linears if m is not head]
    assert moved and all(m.weight.t().is_contiguous() for m in moved)
    reference, _ = plain._load()  # row-major (the fixture undid it)
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, ref[name]), name
    assert column_major_linears(model) == 0  # already laid out: nothing to do
