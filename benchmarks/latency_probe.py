"""hf_ttft_ms, hf_tpot_ms, probe_ttft_overhead_ratio: the latency probe on the embedded model.

* ``hf_ttft_ms`` / ``hf_tpot_ms``: the probe's p50 time to first token and time per output token
  (after the first) on the ``hf`` engine, one request at a time, over 8 short chat prompts
  (greedy, 16 new tokens), 2 warm-up requests excluded;
* ``probe_ttft_overhead_ratio``: the probe's median TTFT divided by the median TTFT of a bare
  streamed ``generate`` of the same requests (the chat template, ``model.generate`` in a thread
  with transformers' ``TextIteratorStreamer``, timed at the streamer's first item by hand) on the
  same loaded model, in the same process, alternated request by request (the order flipped each
  round). Target: at most 1.1.

One torch thread by default (``--threads``): on a shared 2-core machine, torch's default of one
thread per core spin-waits against the other processes and the latencies swing 5-10x from run to
run (seen: TPOT 100 ms with one thread, 900 ms with two under load).

Run: ``.venv/bin/python benchmarks/latency_probe.py [--requests 8] [--max-tokens 16] [--rounds 2]
[--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from raw_generate import short_prompts  # noqa: E402

from pytest_aie.engines.base import Request, Sampling  # noqa: E402
from pytest_aie.engines.hf import HFEngine  # noqa: E402
from pytest_aie.latency.marker import percentile_interval  # noqa: E402
from pytest_aie.latency.probe import LatencySample, probe  # noqa: E402


def _log(msg: str) -> None:
    print(f"latency_probe: {msg}", file=sys.stderr, flush=True)


def bare_ttft_ms(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> float:
    """What a user would write by hand: chat template, greedy generate in a thread, the
    streamer's first item timed."""
    import torch
    from transformers import TextIteratorStreamer

    start = time.perf_counter()
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    def run() -> None:
        with torch.inference_mode():
            model.generate(**inputs, streamer=streamer, max_new_tokens=max_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)

    thread = threading.Thread(target=run)
    thread.start()
    first = None
    for _ in streamer:
        if first is None:
            first = time.perf_counter()
    thread.join()
    assert first is not None
    return (first - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's choice)")
    args = parser.parse_args()
    engine = HFEngine(threads=args.threads or None)
    model, tokenizer = engine._load()
    prompts = short_prompts(args.requests)
    requests = [Request(messages=tuple(p), sampling=Sampling(max_tokens=args.max_tokens))
                for p in prompts]

    started = time.perf_counter()
    samples = probe(engine, requests, warmup=2)  # the figures: one request at a time
    _log(f"probe of {len(requests)} requests in {time.perf_counter() - started:.1f}s")
    ttft = percentile_interval([s.value("ttft") for s in samples], 50)
    tpot = percentile_interval([s.value("tpot") for s in samples], 50)
    assert ttft is not None and tpot is not None
    _log(f"ttft p50 {ttft[0]:.1f} ms [{ttft[1]:.1f}, {ttft[2]:.1f}], "
         f"tpot p50 {tpot[0]:.2f} ms [{tpot[1]:.2f}, {tpot[2]:.2f}]")

    probed: list[float] = []
    bare: list[float] = []
    for r in range(args.rounds):  # the overhead: alternated, the order flipped each round
        for i, (req, messages) in enumerate(zip(requests, prompts)):
            def one_probe(req: Request = req) -> None:
                s: LatencySample = probe(engine, [req], warmup=0)[0]
                assert s.ttft_ms is not None
                probed.append(s.ttft_ms)

            def one_bare(messages: list[dict[str, str]] = messages) -> None:
                bare.append(bare_ttft_ms(model, tokenizer, messages, args.max_tokens))

            for step in ((one_probe, one_bare) if (i + r) % 2 == 0 else (one_bare, one_probe)):
                step()
    ratio = statistics.median(probed) / statistics.median(bare)
    _log(f"ttft medians over {len(probed)} requests: probe {statistics.median(probed):.1f} ms, "
         f"bare TextIteratorStreamer {statistics.median(bare):.1f} ms")
    print(f"hf_ttft_ms: {ttft[0]:.2f}")
    print(f"hf_tpot_ms: {tpot[0]:.3f}")
    print(f"probe_ttft_overhead_ratio: {ratio:.3f}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
