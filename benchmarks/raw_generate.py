"""The raw transformers baseline for the throughput benchmarks, and a quick comparison with HFEngine.

:func:`raw_generate_tokens_per_s` is what a careful user would write by hand: the same chat
template, greedy decoding, left padding, the same batch size, chunks of ``batch_size`` in the given
order (no sorting by length). The harness's throughput ratio divides the engine's tokens per second
by this one on the same prompts and machine.

Run it::

    .venv/bin/python benchmarks/raw_generate.py [--prompts 64] [--max-tokens 32] [--batch-size 16]
        [--threads N] [--device cpu] [--repeats 2]

It prints one JSON object with both measurements (each run, and the medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

_SUBJECTS = ["France", "Japan", "Brazil", "Kenya", "Canada", "Italy", "Egypt", "India"]
_TEMPLATES = [
    "What is the capital of {}?",
    "Name one famous food from {}.",
    "Which language is spoken in {}?",
    "Give one fact about {}.",
    "Is {} in Europe? Answer yes or no.",
    "Write one sentence about the weather in {}.",
    "What continent is {} on?",
    "Name a river in {}.",
]


def short_prompts(n: int = 64) -> list[list[dict[str, str]]]:
    """``n`` short single-turn chat prompts (deterministic, of varied lengths)."""
    texts = [t.format(s) for t in _TEMPLATES for s in _SUBJECTS]
    return [[{"role": "user", "content": texts[i % len(texts)]}] for i in range(n)]


SUITE_TEST = """
import pytest

@pytest.mark.dataset("cases.jsonl", max_tokens={max_tokens})
@pytest.mark.exact("regex", pattern=r"\\w")
def test_suite(case, output):
    pass
"""


def write_suite(folder: Path, prompts: list[list[dict[str, str]]], max_tokens: int) -> None:
    """The throughput benchmarks' suite: one case per prompt, a regex eval that every answer
    passes, ``max_tokens`` new tokens per case."""
    with (folder / "cases.jsonl").open("w") as fh:
        for i, msgs in enumerate(prompts):
            fh.write(json.dumps({"id": f"p{i}", "messages": msgs}) + "\n")
    (folder / "test_suite.py").write_text(SUITE_TEST.format(max_tokens=max_tokens))
    (folder / "pytest.ini").write_text("[pytest]\n")


def harness_tokens_per_s(folder: Path, engine: str, batch_size: int) -> float:
    """Run the suite of :func:`write_suite` in this process on a registered ``engine`` (cache
    off); generated tokens per second over the whole pytest run."""
    import contextlib

    import pytest

    results = folder / f"results-{engine}.jsonl"
    args = [str(folder), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--aie-engine",
            engine, "--aie-cache", "off", "--aie-batch-size", str(batch_size), "--aie-results",
            str(results), "--aie-report", str(folder / "report.html"), "--rootdir", str(folder)]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the figures
        code = pytest.main(args)
    took = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"harness run on {engine} failed with exit code {code}")
    records = [r for r in map(json.loads, results.read_text().splitlines()[1:])
               if r.get("type") == "case"]
    return sum(r["completion_tokens"] or 0 for r in records) / took


def _load(model_dir: str | os.PathLike[str], device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).eval()
    return model, tokenizer


def raw_generate_tokens_per_s(
    model_dir: str | os.PathLike[str],
    prompts: list[list[dict[str, str]]],
    max_tokens: int,
    batch_size: int,
    *,
    device: str = "cpu",
    loaded: tuple[Any, Any] | None = None,
) -> tuple[int, float]:
    """Plain batched ``model.generate``: returns (generated tokens, seconds).

    Tokens are counted per row up to its first end-of-sequence token (not included), the way the
    hf engine counts ``completion_tokens``. Seconds cover tokenizing, generating and decoding, not
    loading the model (pass ``loaded=(model, tokenizer)`` to reuse a loaded one).
    """
    import torch

    model, tokenizer = loaded if loaded is not None else _load(model_dir, device)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in chunk]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:].tolist()
        for row in new:
            n = next((k for k, t in enumerate(row) if t in eos_ids), len(row))
            tokens += n
        tokenizer.batch_decode(new, skip_special_tokens=True)
    return tokens, time.perf_counter() - start


def engine_tokens_per_s(engine: Any, prompts: list[list[dict[str, str]]], max_tokens: int) -> tuple[int, float]:
    """The same prompts through an :class:`~pytest_aie.engines.base.Engine`: (tokens, seconds)."""
    from pytest_aie.engines.base import Request, Sampling

    requests = [Request(messages=tuple(m), sampling=Sampling(max_tokens=max_tokens)) for m in prompts]
    start = time.perf_counter()
    results = engine.generate(requests)
    seconds = time.perf_counter() - start
    return sum(g.completion_tokens or 0 for g in results), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each, alternating")
    parser.add_argument("--model", default=None, help="model folder or id (default: the embedded model)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from pytest_aie.engines.embedded import resolve_model
    from pytest_aie.engines.hf import HFEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    prompts = short_prompts(args.prompts)

    started = time.perf_counter()
    loaded = _load(model_dir, args.device)
    raw_load_s = time.perf_counter() - started
    engine = HFEngine(model_dir, device=args.device, batch_size=args.batch_size, threads=args.threads)
    started = time.perf_counter()
    engine._load()  # the engine loads lazily; time the load on its own
    engine_load_s = time.perf_counter() - started

    # Warm up both at the full batch shape, then alternate which goes first: on a GPU the first
    # timed run after idling is slow (clocks, allocator, kernel choice) and would bias the ratio.
    warm = prompts[:args.batch_size]
    raw_generate_tokens_per_s(model_dir, warm, 4, args.batch_size, device=args.device, loaded=loaded)
    engine_tokens_per_s(engine, warm, 4)
    runs: dict[str, list[tuple[int, float]]] = {"raw": [], "hf_engine": []}
    for rep in range(args.repeats):
        order = ("raw", "hf_engine") if rep % 2 == 0 else ("hf_engine", "raw")
        for which in order:
            if which == "raw":
                runs["raw"].append(raw_generate_tokens_per_s(
                    model_dir, prompts, args.max_tokens, args.batch_size, device=args.device, loaded=loaded))
            else:
                runs["hf_engine"].append(engine_tokens_per_s(engine, prompts, args.max_tokens))
    engine.close()

    def summary(items: list[tuple[int, float]], load_s: float) -> dict[str, Any]:
        rates = [t / s for t, s in items]
        return {"tokens": items[0][0], "seconds": [round(s, 3) for _, s in items],
                "tokens_per_s": [round(r, 1) for r in rates],
                "median_tokens_per_s": round(statistics.median(rates), 1), "load_s": round(load_s, 2)}

    raw_summary = summary(runs["raw"], raw_load_s)
    engine_summary = summary(runs["hf_engine"], engine_load_s)
    report = {
        "model": model_dir, "device": args.device, "threads": torch.get_num_threads(),
        "prompts": len(prompts), "max_tokens": args.max_tokens, "batch_size": args.batch_size,
        "raw": raw_summary, "hf_engine": engine_summary,
        "ratio": round(engine_summary["median_tokens_per_s"] / raw_summary["median_tokens_per_s"], 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
