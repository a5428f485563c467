"""``make bench``: run every benchmark, one ``name: value`` line per figure on stdout;
progress and details go to stderr. Each benchmark runs in its own process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
FIGURE = re.compile(r"^[a-z][a-z0-9_]*: -?[0-9.]+(e-?[0-9]+)?$")
BENCHMARKS = [
    "suite_throughput.py",      # suite_throughput_ratio
    "plugin_overhead.py",       # plugin_overhead_ratio
    "multi_model_overhead.py",  # multi_model_overhead_ratio
    "embedding_throughput.py",  # embedding_throughput_ratio
    "demo_time.py",             # demo_seconds_warm
    "gate_simulations.py",      # aa_rate_clustered, aa_rate_tags, aa_rate_score_n8, power_5pt_n1000
    "aa_embedded.py",           # aa_rate_embedded, aa_embedded_mean_pass_rate (about 20 minutes)
    "latency_probe.py",         # hf_ttft_ms, hf_tpot_ms, probe_ttft_overhead_ratio
    "judge_batching.py",        # judge_batching_speedup (about 8 minutes)
    "elo_scheduling.py",        # elo_calls_ratio, elo_scheduled_agreement (2-4 minutes)
    "retrieval.py",             # bm25_qps_10k, dense_qps_10k, dense_index_10k_s, hnsw_recall_at_10
    "agent_batching.py",        # agent_step_batching_speedup
    "report_scale.py",          # report_{1k,10k,100k}_mb, report_{1k,10k,100k}_open_s, report_100k_filter_s
    "vllm_throughput.py",       # vllm_suite_throughput_ratio, vllm_vs_hf_throughput (.venv-vllm)
]
#: benchmarks that run in vLLM's own environment (`make install-vllm`)
VLLM_PYTHON = HERE.parent / ".venv-vllm" / "bin" / "python"


def main() -> int:
    failed = 0
    for name in BENCHMARKS:
        print(f"bench: running {name}", file=sys.stderr, flush=True)
        python = str(VLLM_PYTHON) if name.startswith("vllm_") else sys.executable
        if name.startswith("vllm_") and not VLLM_PYTHON.exists():
            failed += 1
            print(f"bench: {name} needs {VLLM_PYTHON} (make install-vllm)", file=sys.stderr)
            continue
        proc = subprocess.run([python, str(HERE / name)], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout.splitlines():
            if FIGURE.match(line):
                print(line, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)
        if proc.returncode != 0:
            failed += 1
            print(f"bench: {name} failed with exit code {proc.returncode}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
