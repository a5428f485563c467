"""suite_throughput_ratio: generated tokens per second through the harness for a 64-case suite
on the embedded model, divided by raw transformers batched ``generate`` on the same prompts and
settings (greedy, 32 new tokens, batches of 16), measured in the same process, alternated and
repeated: the median over rounds of each round's harness/raw ratio (a round runs both sides back
to back, so the ratio of one round cancels the drift of a shared machine's load between rounds).

Both sides exclude loading the model (the harness gets an already loaded engine through
``register_engine``); the harness side includes everything else a user pays for: collecting the
suite, building requests, whole-suite batching, scoring, the results log and the HTML report.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from raw_generate import (  # noqa: E402
    harness_tokens_per_s,
    raw_generate_tokens_per_s,
    short_prompts,
    write_suite,
)

N_CASES, MAX_TOKENS, BATCH = 64, 32, 16

def _log(msg: str) -> None:
    print(f"suite_throughput: {msg}", file=sys.stderr, flush=True)


def suite_throughput_ratio(repeats: int = 5) -> float:
    from pytest_aie.engines import register_engine
    from pytest_aie.engines.embedded import default_model_dir
    from pytest_aie.engines.hf import HFEngine

    class WarmEngine(HFEngine):
        def close(self) -> None:  # kept loaded across the repeated runs
            pass

    model_dir = default_model_dir()
    prompts = short_prompts(N_CASES)
    engine = WarmEngine(str(model_dir), device="cpu", batch_size=BATCH)
    engine._load()
    register_engine("bench-hf", lambda **kw: engine)
    raw_loaded = (engine._model, engine._tokenizer)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_suite(folder, prompts, MAX_TOKENS)
        harness, raw = [], []
        for i in range(repeats):
            tokens, seconds = raw_generate_tokens_per_s(model_dir, prompts, MAX_TOKENS, BATCH,
                                                        loaded=raw_loaded)
            raw.append(tokens / seconds)
            harness.append(harness_tokens_per_s(folder, "bench-hf", N_CASES))
            _log(f"round {i + 1}/{repeats}: raw {raw[-1]:.1f} tok/s, harness {harness[-1]:.1f} "
                 f"tok/s, ratio {harness[-1] / raw[-1]:.3f}")
    return statistics.median([h / r for h, r in zip(harness, raw)])


if __name__ == "__main__":
    ratio = suite_throughput_ratio()
    print(f"suite_throughput_ratio: {ratio:.3f}")
