"""vllm_suite_throughput_ratio and vllm_vs_hf_throughput (runs in .venv-vllm: `make install-vllm`).

* ``vllm_suite_throughput_ratio``: generated tokens per second through the harness for a 64-case
  suite on the vllm engine, divided by raw ``LLM.chat`` on the same prompts (greedy, 32 new
  tokens), same process, same loaded engine, alternated and repeated; the median over rounds
  of each round's ratio (both sides run back to back in a round).
* ``vllm_vs_hf_throughput``: the vllm engine's tokens per second through the harness divided by
  the hf engine's on the same suite, same run (each engine loaded once, outside the timing).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from raw_generate import harness_tokens_per_s, short_prompts, write_suite  # noqa: E402

N_CASES, MAX_TOKENS = 64, 32

def _log(msg: str) -> None:
    print(f"vllm_throughput: {msg}", file=sys.stderr, flush=True)


def main(repeats: int = 3) -> None:
    from vllm import SamplingParams

    from pytest_aie.engines import register_engine
    from pytest_aie.engines.hf import HFEngine
    from pytest_aie.engines.vllm import VLLMEngine

    class WarmVLLM(VLLMEngine):
        def close(self) -> None:  # kept loaded across the repeated runs
            pass

    class WarmHF(HFEngine):
        def close(self) -> None:
            pass

    vllm_engine = WarmVLLM(device="cpu")
    llm: Any = vllm_engine._load()
    hf_engine = WarmHF(device="cpu", dtype="float32", batch_size=16)
    hf_engine._load()
    register_engine("bench-vllm", lambda **kw: vllm_engine)
    register_engine("bench-hf", lambda **kw: hf_engine)
    prompts = short_prompts(N_CASES)
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_suite(folder, prompts, MAX_TOKENS)
        raw, through, hf = [], [], []
        for i in range(repeats):
            started = time.perf_counter()
            outs = llm.chat([list(m) for m in prompts], params, use_tqdm=False)
            took = time.perf_counter() - started
            raw.append(sum(len(o.outputs[0].token_ids) for o in outs) / took)
            through.append(harness_tokens_per_s(folder, "bench-vllm", N_CASES))
            hf.append(harness_tokens_per_s(folder, "bench-hf", N_CASES))
            _log(f"round {i + 1}/{repeats}: raw LLM.chat {raw[-1]:.1f} tok/s, harness on vllm "
                 f"{through[-1]:.1f} tok/s, harness on hf {hf[-1]:.1f} tok/s")
    ratio = statistics.median([t / r for t, r in zip(through, raw)])
    versus = statistics.median([t / h for t, h in zip(through, hf)])
    print(f"vllm_suite_throughput_ratio: {ratio:.3f}")
    print(f"vllm_vs_hf_throughput: {versus:.3f}")


if __name__ == "__main__":
    main()
